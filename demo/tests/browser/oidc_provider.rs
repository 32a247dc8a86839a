//! The demo against `oidc-provider`, a provider nobody here wrote: its own
//! discovery, login and consent pages, RS256 ID tokens, claims from its
//! user info endpoint.

use test_kit::{
    OidcProvider,
    chromium::{Browser, run},
};

use crate::deploy::{Demo, Options};

/// Through oidc-provider's development login and consent pages, back to
/// the demo signed in as `login`.
async fn sign_in(browser: &Browser, demo: &Demo, op: &OidcProvider, login: &str) {
    browser.open(&demo.url("/")).await;
    browser.click("Sign in with oidc-provider").await;
    browser.find("input[name=login]").await;
    let at = browser.url().await;
    assert!(at.starts_with(&op.issuer), "at oidc-provider: {at}");
    browser.fill("input[name=login]", login).await;
    browser.fill("input[name=password]", "any password").await;
    browser.click("Sign-in").await;
    // Consent.
    browser.find("input[name=prompt][value=consent]").await;
    browser.click("Continue").await;
    let name = format!("{login} at oidc-provider");
    browser.expect_heading("Continue?").await;
    assert!(
        browser
            .text()
            .await
            .contains(&format!("{login}@example.org"))
    );
    browser.click(&format!("Continue as {name}")).await;
    browser.expect_heading("Stay signed in?").await;
    browser.click("No").await;
    browser
        .expect_heading(&format!("Signed in as {name}"))
        .await;
    assert_eq!(browser.url().await, demo.url("/"));
}

#[tokio::test]
async fn signs_in_with_oidc_provider() {
    run("signs_in_with_oidc_provider", |browser| async move {
        let (demo, op) = Demo::with_oidc_provider(Options::default()).await;
        sign_in(&browser, &demo, &op, "carol").await;
        assert!(demo.live_flows().is_empty());
    })
    .await;
}

#[tokio::test]
async fn signs_in_with_oidc_provider_by_form_post() {
    run(
        "signs_in_with_oidc_provider_by_form_post",
        |browser| async move {
            let (demo, op) = Demo::with_oidc_provider(Options::form_post()).await;
            sign_in(&browser, &demo, &op, "dave").await;
        },
    )
    .await;
}
