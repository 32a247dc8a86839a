//! What the SSO demo's HTTP tests share: the demo served on loopback (its
//! app servers over a private redis-server, its built-in provider on
//! `localhost`, another site than the app's `127.0.0.1`), and a person's
//! steps through it with a cookie-keeping client.

use std::{collections::HashMap, time::Duration};

use crate::common::*;
use demo::sso::{
    OidcSettings, Settings,
    app::{Providers, router},
    pages::Message,
};
use reqwest::{StatusCode, header::LOCATION};
use test_kit::{OidcProvider, OidcProviderSettings};
use tower_pipeline_oidc::ResponseMode;
use tower_pipeline_state::Store;

/// One identity provider and `instances` app servers sharing one store, as
/// behind a load balancer: all have the public origin of the first.
pub(crate) struct Deployment {
    pub(crate) settings: Settings,
    pub(crate) apps: Vec<Server>,
    _idp: Option<Server>,
}

impl Deployment {
    /// One app server over `redis`, as `cargo run -p demo` runs.
    pub(crate) async fn single(redis: &RedisServer) -> Self {
        Self::configured(redis, 1, |_| {}).await
    }

    /// `instances` app servers over `redis`, with the settings `configure`
    /// changes from the binary's defaults.
    pub(crate) async fn configured(
        redis: &RedisServer,
        instances: usize,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut stores = Vec::new();
        for _ in 0..instances {
            // Each instance has its own connection: only Redis is shared.
            stores.push(redis_store(&redis.url()).await);
        }
        Self::over(stores, configure).await
    }

    /// One app server per store in `stores`.
    pub(crate) async fn over<St: Store>(
        stores: Vec<St>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::over_with(stores, configure, |idp, _| idp).await
    }

    /// [`over`](Self::over), with the provider's routes as `provider`
    /// makes them of the built-in ones (and the settings).
    pub(crate) async fn over_with<St: Store>(
        stores: Vec<St>,
        configure: impl FnOnce(&mut Settings),
        provider: impl FnOnce(axum::Router, &Settings) -> axum::Router,
    ) -> Self {
        // Listeners first: the app must know its own URL, and the provider
        // the app's, before either serves.
        let idp_listener = listener().await;
        let mut listeners = Vec::new();
        for _ in 0..stores.len() {
            listeners.push(listener().await);
        }
        let mut settings = Settings::builtin(
            &format!("http://{}", listeners[0].local_addr().unwrap()),
            &format!(
                "http://localhost:{}",
                idp_listener.local_addr().unwrap().port()
            ),
        );
        configure(&mut settings);
        let mut apps = Vec::new();
        for (listener, store) in listeners.into_iter().zip(stores) {
            let providers = Providers::new(&settings).expect("valid provider settings");
            apps.push(Server::axum(
                listener,
                router(store, settings.clone(), providers),
            ));
        }
        let idp = Server::axum(
            idp_listener,
            provider(settings.builtin_provider(), &settings),
        );
        Self {
            settings,
            apps,
            _idp: Some(idp),
        }
    }

    /// One app server over `redis` that signs in with node `oidc-provider`
    /// (registered with the app's redirect URI and post-logout redirect
    /// URI), and no plain OAuth 2.0 provider.
    pub(crate) async fn with_oidc_provider(redis: &RedisServer) -> (Self, OidcProvider) {
        let listener = listener().await;
        let mut settings = Settings::builtin(
            &format!("http://{}", listener.local_addr().unwrap()),
            "http://localhost:9",
        );
        let op = OidcProvider::start_with(
            &settings.redirect_uri(),
            &OidcProviderSettings {
                post_logout_redirect_uri: Some(settings.post_logout_redirect_uri()),
                ..OidcProviderSettings::default()
            },
        );
        settings.oidc = OidcSettings {
            issuer: op.issuer.clone(),
            client_id: OidcProvider::CLIENT_ID.to_owned(),
            client_secret: Some(OidcProvider::CLIENT_SECRET.to_owned()),
            display_name: "oidc-provider".to_owned(),
            response_mode: ResponseMode::Query,
        };
        settings.oauth = None;
        let providers = Providers::new(&settings).expect("valid provider settings");
        let store = redis_store(&redis.url()).await;
        let app = Server::axum(listener, router(store, settings.clone(), providers));
        let deployment = Self {
            settings,
            apps: vec![app],
            _idp: None,
        };
        (deployment, op)
    }

    /// The built-in provider's origin.
    pub(crate) fn issuer(&self) -> &str {
        &self.settings.oidc.issuer
    }

    /// `path` on instance `i`.
    pub(crate) fn at(&self, i: usize, path: &str) -> String {
        self.apps[i].url(path)
    }

    /// A URL on the public origin, sent to instance `i` (what the load
    /// balancer does).
    pub(crate) fn via(&self, i: usize, url: &str) -> String {
        let path = url
            .strip_prefix(&self.settings.app_origin)
            .unwrap_or_else(|| panic!("{url} is not on the app's origin"));
        self.at(i, path)
    }
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn query(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

pub(crate) async fn post_form(
    browser: &reqwest::Client,
    url: &str,
    body: String,
) -> reqwest::Response {
    browser
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Whether `body` is the page of `message`, names no engine outcome nor a
/// provider's error code, and speaks plainly (see [`speaks_plainly`]).
pub(crate) fn shows(body: &str, message: &Message) -> bool {
    const CODES: &[&str] = &[
        "no_flow",
        "other_browser",
        "cross_site",
        "nonce_mismatch",
        "nonce_replayed",
        "nonce_missing",
        "signature_changed",
        "unknown_flow_kind",
        "missing_layer",
        "stale_step",
        "not_navigation",
        "invalid_grant",
        "access_denied",
        "Outcome",
    ];
    let title = format!("<h1>{}</h1>", message.title.replace('\'', "&#39;"));
    speaks_plainly(body);
    body.contains(&title) && !CODES.iter().any(|code| body.contains(code))
}

/// The text of the elements of `html` that hold sentences (headings,
/// paragraphs, buttons, notices), tags and entities aside; `<code>` and
/// `<small>` parts left out.
pub(crate) fn sentences(html: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for tag in ["h1", "p", "button"] {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        let mut rest = html;
        while let Some(at) = rest.find(&open) {
            let after = &rest[at + open.len()..];
            // `<p` must not match `<pre`, nor `<button` another tag.
            if !after.starts_with(['>', ' ']) {
                rest = after;
                continue;
            }
            let start = after.find('>').unwrap() + 1;
            let end = after.find(&close).unwrap_or(after.len());
            let inner = &after[start..end.max(start)];
            let mut text = String::new();
            let mut skipping = 0usize;
            let mut chars = inner.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '<' {
                    let tag_end = inner[i..].find('>').map_or(inner.len(), |end| i + end);
                    let tag = &inner[i..tag_end];
                    if tag.starts_with("<code") || tag.starts_with("<small") {
                        skipping += 1;
                    } else if tag.starts_with("</code") || tag.starts_with("</small") {
                        skipping = skipping.saturating_sub(1);
                    }
                    while chars.peek().is_some_and(|(j, _)| *j <= tag_end) {
                        chars.next();
                    }
                    continue;
                }
                if skipping == 0 {
                    text.push(c);
                }
            }
            texts.push(
                text.replace("&#39;", "'")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&"),
            );
            rest = &after[end.min(after.len())..];
        }
    }
    texts
}

/// Panics when a sentence of the page starts in lowercase, or the page's
/// title lacks the site's name.
pub(crate) fn speaks_plainly(html: &str) {
    if let Some(title) = html
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| title)
    {
        assert!(
            [" · Demo app", " · Demo ID", " · Demo Hub"]
                .iter()
                .any(|site| title.ends_with(site)),
            "a title without the site's name: {title:?}"
        );
    }
    for text in sentences(html) {
        let text = text.trim();
        let starts = std::iter::once(text).chain(
            text.match_indices(". ")
                .map(|(at, _)| text[at + 2..].trim_start()),
        );
        for sentence in starts {
            let first = sentence.chars().next();
            assert!(
                !first.is_some_and(char::is_lowercase),
                "a sentence that starts in lowercase: {sentence:?} in {text:?}"
            );
        }
    }
}

/// The id in a signed flow cookie's value: after the signature (44
/// characters of base64), before the ticket (`<id>.<ticket>`).
pub(crate) fn flow_id(cookie: &cookie::Cookie) -> String {
    let value = &cookie.value()[44..];
    value.split('.').next().unwrap().to_owned()
}

/// Starts a sign-in on instance `i` with the start form's `fields`;
/// returns the response.
pub(crate) async fn start_with(
    deployment: &Deployment,
    browser: &reqwest::Client,
    i: usize,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    post_form(browser, &deployment.at(i, path), form(fields)).await
}

/// Starts a sign-in with Demo ID on instance `i`, as the start page's
/// button does; returns the provider's authorize URL.
pub(crate) async fn start(deployment: &Deployment, browser: &reqwest::Client, i: usize) -> String {
    let started = start_with(deployment, browser, i, "/sso/start", &[("return_to", "/")]).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = location(&started);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", deployment.issuer())),
        "{authorize}"
    );
    authorize
}

/// Signs in at the provider's form (either face); returns the callback URL
/// it redirects to.
pub(crate) async fn sign_in_at_provider(
    browser: &reqwest::Client,
    authorize: &str,
    user: &str,
    password: &str,
) -> String {
    let form_page = browser.get(authorize).send().await.unwrap();
    assert_eq!(form_page.status(), StatusCode::OK);
    assert!(
        form_page
            .text()
            .await
            .unwrap()
            .contains("name=\"password\"")
    );
    let params = query(authorize);
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    fields.extend([
        ("username", user),
        ("password", password),
        ("action", "sign_in"),
    ]);
    let endpoint = authorize.split_once('?').unwrap().0;
    let signed_in = post_form(browser, endpoint, form(&fields)).await;
    assert_eq!(
        signed_in.status(),
        StatusCode::SEE_OTHER,
        "signing in as {user}"
    );
    location(&signed_in)
}

/// Follows the provider's redirect back to instance `i`.
pub(crate) async fn follow_callback(
    deployment: &Deployment,
    browser: &reqwest::Client,
    callback: &str,
    i: usize,
) -> reqwest::Response {
    browser
        .get(deployment.via(i, callback))
        .send()
        .await
        .unwrap()
}

/// Where the callback sent the browser: the flow's own link,
/// `<path>?flow=<reference>.2` (made for the confirmation, step 2), which
/// its pages use from then on.
pub(crate) fn flow_link_at(back: &reqwest::Response, path: &str) -> String {
    assert_eq!(
        back.status(),
        StatusCode::SEE_OTHER,
        "the callback went through"
    );
    let link = location(back);
    let marked = link
        .strip_prefix(&format!("{path}?flow="))
        .unwrap_or_else(|| panic!("not the flow's link: {link}"));
    let (reference, step) = marked.split_once('.').unwrap();
    assert_eq!((reference.len(), step), (20, "2"), "{link}");
    link
}

/// [`flow_link_at`] for the OpenID sign-in.
pub(crate) fn flow_link(back: &reqwest::Response) -> String {
    flow_link_at(back, "/sso")
}

/// The link of the flow at `link`, made for step `step`.
pub(crate) fn at_step(link: &str, step: u8) -> String {
    let (base, _) = link.rsplit_once('.').unwrap();
    format!("{base}.{step}")
}

/// Shows the confirmation at the flow's `link` on instance `i`, and
/// continues on instance `j` with its form (which posts back to the same
/// link); then answers "Stay signed in?" with Yes, which finishes the
/// sign-in: the browser is sent where it was going (`/`). Returns that
/// page (a GET).
pub(crate) async fn confirm(
    deployment: &Deployment,
    browser: &reqwest::Client,
    link: &str,
    i: usize,
    j: usize,
) -> (StatusCode, String) {
    let done = continue_and_stay(deployment, browser, link, i, j).await;
    if done.status() != StatusCode::SEE_OTHER {
        return (done.status(), done.text().await.unwrap());
    }
    assert_eq!(location(&done), "/", "signed in: on to a GET page");
    page(browser.get(deployment.at(j, "/")).send().await.unwrap()).await
}

/// The confirmation and "Stay signed in?" of the flow at `link`, as in
/// [`confirm`]; returns the answer to the last one (the finish).
pub(crate) async fn continue_and_stay(
    deployment: &Deployment,
    browser: &reqwest::Client,
    link: &str,
    i: usize,
    j: usize,
) -> reqwest::Response {
    let asked = browser.get(deployment.at(i, link)).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    assert_eq!(
        asked.headers()["content-security-policy"],
        "frame-ancestors 'none'",
        "the confirmation cannot be framed"
    );
    let asked = asked.text().await.unwrap();
    assert!(asked.contains("Continue as"), "{asked}");
    speaks_plainly(&asked);
    assert!(
        asked.contains(&format!("<form method=\"post\" action=\"{link}\">")),
        "the form posts back to this flow: {asked}"
    );
    let confirmed = post_form(
        browser,
        &deployment.at(j, link),
        form(&[("action", "continue")]),
    )
    .await;
    if confirmed.status() != StatusCode::SEE_OTHER {
        return confirmed;
    }
    let next = location(&confirmed);
    assert_eq!(next, at_step(link, 3), "on to the next question's page");
    let asked = browser.get(deployment.at(j, &next)).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let asked = asked.text().await.unwrap();
    assert!(asked.contains("<h1>Stay signed in?</h1>"), "{asked}");
    speaks_plainly(&asked);
    let done = post_form(
        browser,
        &deployment.at(j, &next),
        form(&[("action", "stay")]),
    )
    .await;
    if done.status() == StatusCode::SEE_OTHER {
        let reference = link
            .split_once("?flow=")
            .unwrap()
            .1
            .split('.')
            .next()
            .unwrap();
        let ended = flow_cookie(&done).expect("the finish sets the flow's cookie again");
        assert_eq!(ended.name(), format!("pipeline_id.{reference}"));
        assert_eq!(
            ended.max_age(),
            Some(cookie::time::Duration::seconds(
                deployment.settings.replay_window.as_secs() as i64
            )),
            "the ended flow's cookie lives as long as its replays are answered: {ended}"
        );
    }
    done
}

pub(crate) async fn page(response: reqwest::Response) -> (StatusCode, String) {
    (response.status(), response.text().await.unwrap())
}

/// The flow's fields as the record under `key` holds them.
pub(crate) fn stored(redis: &RedisServer, key: &str) -> serde_json::Value {
    let raw = redis
        .get(key)
        .unwrap_or_else(|| panic!("no record under {key}"));
    serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["data"].clone()
}

/// The records of flows still going on (not ended).
pub(crate) fn live_flows(redis: &RedisServer) -> Vec<String> {
    redis
        .keys()
        .into_iter()
        .filter(|key| {
            redis
                .get(key)
                .is_some_and(|_| stored(redis, key).get("ended").is_none())
        })
        .collect()
}

/// How the flow under `key` ended (`finished`, `cancelled`, `failed`), as
/// its ended record says; checks that the record keeps nothing a step
/// bound.
pub(crate) fn ended_as(redis: &RedisServer, key: &str) -> String {
    let record = stored(redis, key);
    assert_eq!(record["data"], serde_json::json!({}), "{record}");
    assert!(record.get("nonce").is_none(), "{record}");
    record["ended"]["how"]["as"]
        .as_str()
        .unwrap_or_else(|| panic!("not ended: {record}"))
        .to_owned()
}

/// A browser's fetch (`Sec-Fetch-Mode: cors`), as a script sends it.
pub(crate) fn as_fetch(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-dest", "empty")
}

/// How long a test waits for a lifetime to pass: `lifetime` and a margin
/// (Redis expires keys to the millisecond, the engine's deadlines to the
/// second).
pub(crate) async fn outlive(lifetime: Duration) {
    tokio::time::sleep(lifetime + Duration::from_millis(1500)).await;
}
