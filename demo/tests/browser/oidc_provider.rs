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

#[tokio::test]
async fn signing_out_signs_out_at_oidc_provider_too() {
    run("signing_out_signs_out_at_oidc_provider_too", |browser| async move {
        let (demo, op) = Demo::with_oidc_provider(Options::default()).await;
        sign_in(&browser, &demo, &op, "carol").await;
        assert!(
            browser
                .text()
                .await
                .contains("Signing out signs you out at oidc-provider too.")
        );
        // RP-initiated logout: the provider's own page asks.
        browser.click("Sign out").await;
        browser.click("Yes, sign me out").await;
        browser.expect_heading("Welcome").await;
        assert_eq!(browser.url().await.split('?').next(), Some(demo.url("/").as_str()));
        assert!(
            browser
                .text()
                .await
                .contains("You are signed out of this site, and went through oidc-provider's own sign-out too.")
        );
        // Signed out there too: the provider asks who is signing in.
        sign_in(&browser, &demo, &op, "dave").await;
    })
    .await;
}

#[tokio::test]
async fn use_another_account_after_keeping_the_session_at_oidc_provider() {
    run(
        "use_another_account_after_keeping_the_session_at_oidc_provider",
        |browser| async move {
            let (demo, op) = Demo::with_oidc_provider(Options::default()).await;
            sign_in(&browser, &demo, &op, "carol").await;
            browser.click("Sign out").await;
            // The person keeps their session at the provider.
            browser.click("No, stay signed in").await;
            browser.expect_heading("Welcome").await;
            // oidc-provider still knows carol; "Use another account" asks
            // it for the login all the same.
            browser.click("Use another account").await;
            browser.find("input[name=login]").await;
            assert!(
                browser.url().await.starts_with(&op.issuer),
                "at oidc-provider's login"
            );
            browser.fill("input[name=login]", "erin").await;
            browser.fill("input[name=password]", "any password").await;
            browser.click("Sign-in").await;
            browser.find("input[name=prompt][value=consent]").await;
            browser.click("Continue").await;
            browser.expect_heading("Continue?").await;
            browser.click("Continue as erin at oidc-provider").await;
            browser.expect_heading("Stay signed in?").await;
            browser.click("No").await;
            browser
                .expect_heading("Signed in as erin at oidc-provider")
                .await;
        },
    )
    .await;
}
