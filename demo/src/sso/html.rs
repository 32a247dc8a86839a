//! Plain HTML pages, no templates, no scripts, a little CSS, and the
//! headers every page goes out with.

use axum::{
    http::{
        HeaderValue,
        header::{CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS},
    },
    response::{Html, Response},
};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The look both servers share; `--accent` tells them apart.
const STYLE: &str = "\
:root{--accent:#2456a6}\
*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,sans-serif;color:#1d2430;background:#f4f6f9;margin:0}\
header{background:var(--accent);color:#fff;padding:.7em 1.2em;font-weight:600}\
main{max-width:34em;margin:2.5em auto;background:#fff;border-radius:10px;\
padding:1.6em 2em;box-shadow:0 1px 4px #0002}\
@media (max-width:36em){main{margin:1em .75em;padding:1.2em 1.1em}}\
h1{font-size:1.45em;margin:.2em 0 .6em}\
p{margin:.6em 0}\
.notice{border-left:4px solid var(--accent);background:#eef3fb;padding:.6em .9em}\
.problem{border-left:4px solid #c0392b;background:#fdf0ee;padding:.6em .9em}\
form{margin:1em 0}\
label{display:block;margin:.5em 0}\
input{font:inherit;padding:.4em .5em;width:100%;border:1px solid #b8c0cc;border-radius:6px}\
button,a.button{font:inherit;text-decoration:none;display:inline-block;padding:.45em 1.1em;border-radius:6px;border:1px solid var(--accent);\
background:var(--accent);color:#fff;cursor:pointer;margin:.3em .3em .3em 0}\
button.secondary{background:#fff;color:var(--accent)}\
small,.muted{color:#5b6573}\
code{background:#eef0f3;padding:0 .3em;border-radius:4px}";

/// A page titled `title` (and the site's name) around `body` (already
/// HTML), under a header bar saying `site`, in `accent` colour.
pub fn page_of(site: &str, accent: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · {site}</title><style>{STYLE}:root{{--accent:{accent}}}</style></head>\
         <body><header>{site}</header><main>\n{body}\n</main></body></html>\n",
        title = escape(title),
        site = escape(site),
    ))
}

/// A page of the demo application.
pub fn page(title: &str, body: &str) -> Html<String> {
    page_of(super::SITE, "#2456a6", title, body)
}

/// What every response of the demo's servers carries: no page may be
/// framed by another site (`frame-ancestors 'none'`, and
/// `X-Frame-Options` for browsers without CSP), so a "Continue as ...?"
/// button cannot be clicked through a transparent frame (clickjacking);
/// and no content sniffing.
pub async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
