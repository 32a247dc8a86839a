//! What each page says, in plain words: one [`Message`] per outcome a person
//! can meet, with the status it is answered with, what happened, and what to
//! do next. Never an engine outcome code or a provider's own words: those
//! go to the log. The tests read the titles from here.

use std::time::Duration;

use axum::http::StatusCode;

/// What the person can do next, as buttons under the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start a new sign-in (and go back to the start page).
    StartAgain,
    /// Reload this page, or go back to the start page.
    TryAgain,
    /// Go to the start page.
    Home,
}

/// A page for one outcome.
#[derive(Clone, Copy, Debug)]
pub struct Message {
    /// The stable name logged for it (the request log's `outcome`).
    pub outcome: &'static str,
    /// The status it is answered with.
    pub status: StatusCode,
    /// The heading and the page title.
    pub title: &'static str,
    /// What happened, and what it means for the person. `{idle}` stands
    /// for how long a sign-in waits without activity, `{max}` for how long
    /// it may take at all.
    pub text: &'static str,
    /// The way on.
    pub next: Next,
}

/// How long sign-ins live, as the pages say it.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// How long a sign-in waits without activity.
    pub idle: Duration,
    /// How long it may take at all.
    pub max: Duration,
}

impl Message {
    /// The text with `{idle}` and `{max}` spelt out.
    pub fn text(&self, lifetimes: Lifetimes) -> String {
        self.text
            .replace("{idle}", &in_words(lifetimes.idle))
            .replace("{max}", &in_words(lifetimes.max))
    }
}

/// A duration as a person says it: "30 days", "2 hours", "10 minutes",
/// "1 minute", "30 seconds" (the largest unit it is a whole number of).
pub fn in_words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (n, unit) = [(86_400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The provider's answer names a sign-in of this browser but was not made
/// for it (a forged or mixed-up `state`). The sign-in itself goes on.
pub const NOT_THIS_SIGN_IN: Message = Message {
    outcome: "answer_not_for_this_sign_in",
    status: StatusCode::BAD_REQUEST,
    title: "This answer is not for your sign-in",
    text: "The identity provider's answer that brought you here was not made \
           for the sign-in going on in this browser, so it was not used. \
           Finish signing in where you started, or start again.",
    next: Next::StartAgain,
};

/// The request names a sign-in whose cookie this browser does not have: it
/// was started in another browser (a planted link), or this browser no
/// longer keeps it (finished, or pushed out by newer sign-ins).
pub const OTHER_BROWSER: Message = Message {
    outcome: "not_this_browsers_sign_in",
    status: StatusCode::BAD_REQUEST,
    title: "This sign-in is not going on in this browser",
    text: "This link belongs to a sign-in that was started in another \
           browser, or that this browser no longer keeps (it has finished, \
           or several sign-ins were started after it). Nothing was signed \
           in. Start again here.",
    next: Next::StartAgain,
};

/// A step of the sign-in was posted from another website: a `form_post`
/// answer to a site that does not accept cross-site callbacks, or another
/// site submitting the flow's form.
pub const CROSS_SITE: Message = Message {
    outcome: "posted_from_another_site",
    status: StatusCode::FORBIDDEN,
    title: "This step came from another website",
    text: "Your browser sent this step of the sign-in from another website, \
           and this site takes it only from its own pages, so nothing was \
           done. If the identity provider sent you here, this site is not set \
           up for the way it answers (its operator can change that). Start \
           again.",
    next: Next::StartAgain,
};

/// The provider's answer (the callback) came a second time.
pub const ALREADY_USED: Message = Message {
    outcome: "link_already_used",
    status: StatusCode::BAD_REQUEST,
    title: "This sign-in link was already used",
    text: "The identity provider's answer works only once, and this one has \
           been used. If you are not signed in yet, start again.",
    next: Next::StartAgain,
};

/// The browser has no sign-in going on (finished, cancelled, never
/// started here, or its cookie was not accepted).
pub const NO_SIGN_IN: Message = Message {
    outcome: "no_sign_in",
    status: StatusCode::BAD_REQUEST,
    title: "There is no sign-in in progress",
    text: "This browser has no sign-in going on: it has already finished or \
           been cancelled, or it was started in another browser.",
    next: Next::StartAgain,
};

/// The sign-in waited too long (or its record was lost), and this request
/// could not start it again by itself (a background request: the
/// person's own next page does).
pub const EXPIRED: Message = Message {
    outcome: "expired",
    status: StatusCode::BAD_REQUEST,
    title: "This sign-in expired",
    text: "A sign-in waits {idle} without activity and takes {max} at most, \
           and this one went past that (or it was lost). Nothing was signed \
           in. Start again.",
    next: Next::StartAgain,
};

/// Back to a page of a sign-in the person cancelled.
pub const CANCELLED: Message = Message {
    outcome: "sign_in_was_cancelled",
    status: StatusCode::OK,
    title: "This sign-in was cancelled",
    text: "You cancelled it, so nothing was signed in and its pages no \
           longer work. Start again to sign in.",
    next: Next::StartAgain,
};

/// Back to a page of a sign-in that failed, or an answer for it again.
pub const ENDED: Message = Message {
    outcome: "sign_in_has_ended",
    status: StatusCode::BAD_REQUEST,
    title: "This sign-in has ended",
    text: "It did not go through, so nothing was signed in and its pages \
           and links no longer work. Start again.",
    next: Next::StartAgain,
};

/// A form of the sign-in made for an earlier step (a page left open, or
/// brought back by Back) was sent after the sign-in moved on: nothing was
/// done, and the person is shown where the sign-in is now (the demo
/// redirects there; this page is for a browser that does not follow).
pub const STALE_PAGE: Message = Message {
    outcome: "stale_page",
    status: StatusCode::CONFLICT,
    title: "This page was out of date",
    text: "Your sign-in had moved on since this page was shown, so its \
           answer was not used. Go on from where the sign-in is now.",
    next: Next::TryAgain,
};

/// A start or sign-out button pressed on another website (a forged
/// form): refused, nothing done.
pub const FORM_FROM_ANOTHER_SITE: Message = Message {
    outcome: "form_from_another_site",
    status: StatusCode::FORBIDDEN,
    title: "This button was on another website",
    text: "Your browser sent this from a page of another website, and this \
           site takes sign-in and sign-out only from its own pages, so \
           nothing was done.",
    next: Next::Home,
};

/// A sign-in started by a request that is not a page the person opened (a
/// script's `fetch`, a prefetch, a preview): not started, so it cannot
/// push out the sign-in the person is in.
pub const NOT_A_PAGE: Message = Message {
    outcome: "not_started_in_the_background",
    status: StatusCode::BAD_REQUEST,
    title: "Sign-in starts from this site's pages",
    text: "A sign-in starts when you press a sign-in button on this site, \
           not from a preview or a script, so none was started.",
    next: Next::StartAgain,
};

/// A start that asked to send the person to another site afterwards (an
/// open-redirect attempt): refused.
pub const BAD_START: Message = Message {
    outcome: "start_not_of_this_site",
    status: StatusCode::BAD_REQUEST,
    title: "This sign-in button is not one of ours",
    text: "It asked to send you somewhere outside this site after signing \
           in, so no sign-in was started. Use the buttons on this site's \
           pages.",
    next: Next::Home,
};

/// The callback page was opened without what the provider sends back.
pub const MISSING_ANSWER: Message = Message {
    outcome: "missing_provider_answer",
    status: StatusCode::BAD_REQUEST,
    title: "This page needs the identity provider's answer",
    text: "It was opened without the details the identity provider sends \
           back after you sign in there. Start again.",
    next: Next::StartAgain,
};

/// The provider did not accept the code (`invalid_grant`...).
pub const CODE_REFUSED: Message = Message {
    outcome: "provider_refused_code",
    status: StatusCode::BAD_GATEWAY,
    title: "The identity provider refused the sign-in",
    text: "It did not accept the code it gave us, which happens when a sign-in \
           is answered twice or left open too long. Nothing was signed in. \
           Start again.",
    next: Next::StartAgain,
};

/// The provider answered with an error other than a cancel.
pub const PROVIDER_DECLINED: Message = Message {
    outcome: "provider_declined",
    status: StatusCode::BAD_REQUEST,
    title: "The identity provider did not sign you in",
    text: "It ended the sign-in without saying who you are. Start again, or \
           try later.",
    next: Next::StartAgain,
};

/// The provider cannot be reached, or answered something unusable.
pub const PROVIDER_UNREACHABLE: Message = Message {
    outcome: "provider_unreachable",
    status: StatusCode::BAD_GATEWAY,
    title: "We could not reach the identity provider",
    text: "It did not answer us, or not in a way we understand. Nothing was \
           signed in. Try again in a moment.",
    next: Next::TryAgain,
};

/// The provider's answer failed a check (the ID token's signature,
/// issuer, audience, expiry, nonce; the answer's `iss`; user info).
pub const NOT_VERIFIED: Message = Message {
    outcome: "identity_not_verified",
    status: StatusCode::BAD_GATEWAY,
    title: "We could not verify who you are",
    text: "The identity provider's answer did not pass our checks, so you \
           were not signed in. Start again.",
    next: Next::StartAgain,
};

/// The provider does not fit the settings.
pub const MISCONFIGURED: Message = Message {
    outcome: "misconfigured",
    status: StatusCode::INTERNAL_SERVER_ERROR,
    title: "Sign-in is not set up correctly",
    text: "This site's sign-in settings do not match its identity provider. \
           The site's operator has to fix them (the server's log says what is \
           wrong).",
    next: Next::Home,
};

/// The flow store cannot be reached (Redis down or too slow): nothing was
/// written.
pub const UNAVAILABLE: Message = Message {
    outcome: "store_unavailable",
    status: StatusCode::SERVICE_UNAVAILABLE,
    title: "Sign-in is unavailable for a moment",
    text: "We cannot reach the place where sign-ins in progress are kept, \
           so nothing was saved. Try again in a moment.",
    next: Next::TryAgain,
};

/// The write after the step was sent and not confirmed: it may have
/// landed.
pub const NOT_SAVED: Message = Message {
    outcome: "store_not_confirmed",
    status: StatusCode::SERVICE_UNAVAILABLE,
    title: "We could not save your progress",
    text: "The place where sign-ins in progress are kept did not confirm the \
           last step: it may or may not have been saved. Try again in a moment.",
    next: Next::TryAgain,
};

/// Another request of the same sign-in got there first (a double click).
pub const ANSWERED_ELSEWHERE: Message = Message {
    outcome: "answered_by_another_request",
    status: StatusCode::CONFLICT,
    title: "This step was already answered",
    text: "Another click or tab answered this step of the sign-in first. \
           Go to the start page to see where you are.",
    next: Next::Home,
};

/// The site changed the sign-in's steps while this one was going on.
pub const STEPS_CHANGED: Message = Message {
    outcome: "steps_changed",
    status: StatusCode::CONFLICT,
    title: "The sign-in changed while you were in it",
    text: "This site was updated in the middle of your sign-in. Start again.",
    next: Next::StartAgain,
};

/// Anything else that is the site's fault.
pub const INTERNAL: Message = Message {
    outcome: "internal_error",
    status: StatusCode::INTERNAL_SERVER_ERROR,
    title: "Something went wrong on our side",
    text: "The sign-in could not go on. Start again; if it happens again, the \
           server's log says why.",
    next: Next::StartAgain,
};

/// No page at this address.
pub const NOT_FOUND: Message = Message {
    outcome: "not_found",
    status: StatusCode::NOT_FOUND,
    title: "Page not found",
    text: "There is nothing at this address.",
    next: Next::Home,
};

/// The address exists but not for this method (a GET of a form's target).
pub const METHOD_NOT_ALLOWED: Message = Message {
    outcome: "method_not_allowed",
    status: StatusCode::METHOD_NOT_ALLOWED,
    title: "This page cannot be opened this way",
    text: "This address only answers the form that leads to it. Go to the \
           start page and use its buttons.",
    next: Next::Home,
};

/// Notices on the start page, by the `notice` query parameter; `provider`
/// is the name of the provider the person was signed in with, when the
/// page knows it.
pub fn notice(name: &str, provider: Option<&str>) -> Option<String> {
    Some(match (name, provider) {
        ("cancelled", _) => "You cancelled the sign-in. You are not signed in.".to_owned(),
        ("signed_out", Some(provider)) => format!(
            "You are signed out of this site, but not at {provider}: it offers \
             no way for this site to sign you out there. On a computer others \
             use, sign out there too."
        ),
        ("signed_out", None) => "You are signed out.".to_owned(),
        ("signed_out_everywhere", Some(provider)) => format!(
            "You are signed out of this site, and went through {provider}'s own \
             sign-out too."
        ),
        ("signed_out_everywhere", None) => "You are signed out of this site, and went \
                                            through the identity provider's own sign-out \
                                            too."
            .to_owned(),
        ("already_signed_in", _) => "You are already signed in.".to_owned(),
        ("stale", _) => "That page was out of date, so its answer was not used: \
                         this is where your sign-in is now."
            .to_owned(),
        _ => return None,
    })
}
