//! OpenID Connect single sign-on against a real OpenID provider: Node's `oidc-provider`
//! (tests/oidc/provider.mjs, installed with `npm ci --prefix tests/oidc`), started per test on
//! a free loopback port. The provider's own login page is driven with a cookie-keeping client,
//! as a browser would.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use trustplane::authn::sso::config::{PasswordLogin, SsoConfig};
use trustplane::config::Config;
use trustplane::staff::model::Role;

use crate::helpers::*;

/// Like `both_backends!`, ignored for plain `cargo test`: these need Node and the provider
/// package (`.ci/run` installs both and runs ignored tests).
macro_rules! both_backends_with_idp {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs node (npm ci --prefix tests/oidc)"]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs node (npm ci --prefix tests/oidc)"]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";
const IDP_PASSWORD: &str = "provider-password";

/// A running test identity provider.
struct Idp {
    base: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl Idp {
    async fn start() -> Idp {
        Self::start_on("127.0.0.1").await
    }

    /// The provider, naming itself by `host` (`localhost` makes it another site than the
    /// portal on 127.0.0.1, as an identity provider is in production).
    async fn start_on(host: &str) -> Idp {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .env("ISSUER_HOST", host)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed (and `npm ci --prefix tests/oidc` run)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
                .await
                .expect("provider starts")
                .unwrap()
                .expect("provider prints its port");
            if let Some(port) = line.strip_prefix("listening ") {
                break port.trim().to_owned();
            }
        };
        // Keep reading what the provider prints: a closed pipe would end it on its next line.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp {
            base: format!("http://{host}:{port}"),
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// Registers trustplane's callback and builds the provider with a fresh signing key (a
    /// second call rotates the keys).
    async fn setup(&self, app_base: &str) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/__test/setup", self.base))
            .json(&json!({
                "redirect_uris": [format!("{app_base}/login/sso/callback")],
                "post_logout_redirect_uris": [format!("{app_base}/login?notice=logged_out")],
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["kid"].as_str().unwrap().to_owned()
    }

    /// The next ID token the provider issues gets these claims (re-signed with its key).
    async fn tamper(&self, changes: Value) {
        let response = self
            .http
            .post(format!("{}/__test/tamper", self.base))
            .json(&changes)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/__test/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn sso_config(idp: &Idp) -> SsoConfig {
    SsoConfig {
        issuer_url: idp.base.clone(),
        client_id: "trustplane".into(),
        client_secret: CLIENT_SECRET.into(),
        display_name: "Sign in with Test IdP".into(),
        ..SsoConfig::default()
    }
}

/// A server using `idp`, its clock set to real time (the provider's tokens carry real times).
async fn sso_app(backend: Backend, idp: &Idp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let sso = sso_config(idp);
    let app = spawn_app_with(backend, |c| {
        c.sso = sso;
        adjust(c);
    })
    .await;
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    app.clock.set(real_now);
    idp.setup(&app.base).await;
    app
}

/// Clicks the SSO button and signs in at the provider's login page as `user`; returns the
/// URL the provider sends the browser back to (the callback, with code and state).
async fn through_idp(app: &TestApp, client: &reqwest::Client, user: &str) -> String {
    let login = app.get(client, "/login").await.text().await.unwrap();
    assert!(login.contains("Sign in with Test IdP"), "SSO button shown");
    let response = app
        .post(client, "/login/sso", &[("csrf", &csrf_of(&login))])
        .await;
    assert_eq!(
        response.status(),
        200,
        "SSO start: a page moving on to the provider"
    );
    let mut url = refresh_target(&response.text().await.unwrap());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("nonce=") && url.contains("state="), "{url}");
    // Follow the provider's redirects to its login page.
    let page = loop {
        let response = client.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            url = absolute(&url, &location(&response));
            continue;
        }
        assert_eq!(response.status(), 200, "provider page {url}");
        break response.text().await.unwrap();
    };
    let marker = "action=\"";
    let start = page.find(marker).expect("provider login form") + marker.len();
    let action = &page[start..start + page[start..].find('"').unwrap()];
    let mut response = client
        .post(absolute(&url, action))
        .form(&[("login", user), ("password", IDP_PASSWORD)])
        .send()
        .await
        .unwrap();
    let mut url = absolute(&url, action);
    loop {
        assert!(
            response.status().is_redirection(),
            "provider answered {} at {url}",
            response.status()
        );
        url = absolute(&url, &location(&response));
        if url.starts_with(&app.base) {
            return url;
        }
        response = client.get(&url).send().await.unwrap();
    }
}

/// The URL a page's `<meta http-equiv="refresh">` moves on to.
fn refresh_target(page: &str) -> String {
    let marker = "http-equiv=\"refresh\" content=\"0;url=";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no refresh in {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end]
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3d;", "=")
        .replace("&#61;", "=")
}

fn absolute(current: &str, target: &str) -> String {
    url::Url::parse(current)
        .unwrap()
        .join(target)
        .unwrap()
        .to_string()
}

/// Opens the callback; on success it is a same-site page that moves on to the finishing step.
async fn callback(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Callback, then the finishing step; returns where the finishing step sends the browser.
async fn complete(app: &TestApp, client: &reqwest::Client, callback_url: &str) -> String {
    let (status, page) = callback(client, callback_url).await;
    assert_eq!(status, 200, "callback accepted: {page}");
    assert!(
        page.contains("http-equiv=\"refresh\" content=\"0;url=/login/sso/finish\""),
        "{page}"
    );
    let response = app.get(client, "/login/sso/finish").await;
    assert_eq!(response.status(), 303);
    let set_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(set_cookie.contains("tp_session="), "session cookie set");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    location(&response)
}

async fn audit_details(app: &TestApp, action: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::query("SELECT outcome, details FROM audit_log WHERE action = $1 ORDER BY seq")
        .bind(action)
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("outcome"), r.get("details")))
        .collect()
}

async fn session_methods(app: &TestApp) -> Vec<(Option<String>, Option<String>, String)> {
    use sqlx::Row;
    sqlx::query("SELECT auth_method, mfa_method, stage FROM sessions ORDER BY created_at")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("auth_method"), r.get("mfa_method"), r.get("stage")))
        .collect()
}

async fn idp_mfa_login_lands_on_the_dashboard(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    // No local TOTP: the provider's `amr: ["pwd","otp"]` is the second factor.
    let staff = app
        .create_staff("mfa@example.com", &[Role::Admin], false)
        .await;
    let client = app.client();

    let callback_url = through_idp(&app, &client, "mfa").await;
    assert!(
        callback_url.contains("/login/sso/callback?code="),
        "{callback_url}"
    );
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    let dashboard = app.get(&client, "/").await;
    assert_eq!(dashboard.status(), 200);

    assert_eq!(
        session_methods(&app).await,
        vec![(Some("sso".into()), Some("idp_amr".into()), "full".into())]
    );
    let link = audit_details(&app, "sso.link").await;
    assert_eq!(link.len(), 1);
    assert!(link[0].1.contains("verified_email"), "{link:?}");
    let logins = audit_details(&app, "sso.login").await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].0, "success");
    assert!(logins[0].1.contains("\"mfa\":\"idp_amr\""), "{logins:?}");
    assert!(logins[0].1.contains("pwd otp"), "{logins:?}");
    let linked = app
        .count("SELECT COUNT(*) FROM oidc_links WHERE subject = 'mfa'")
        .await;
    assert_eq!(linked, 1);

    // The staff list shows how MFA was satisfied.
    let list = app.get(&client, "/staff").await.text().await.unwrap();
    assert!(list.contains("via identity provider"), "{list}");

    // Nothing secret reached the audit log.
    let audit = app.audit_text().await;
    assert!(!audit.contains(CLIENT_SECRET));
    assert!(!audit.contains("code="));

    // Logout ends the session here and sends the browser to the provider's end-session page.
    let account = app.get(&client, "/account").await.text().await.unwrap();
    let response = app
        .post(&client, "/logout", &[("csrf", &csrf_of(&account))])
        .await;
    assert_eq!(response.status(), 200);
    let to = refresh_target(&response.text().await.unwrap());
    assert!(
        to.starts_with(&format!("{}/session/end?", idp.base)),
        "{to}"
    );
    assert!(to.contains("client_id=trustplane"), "{to}");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(location(&app.get(&client, "/").await), "/login");
    let _ = staff;
}
both_backends_with_idp!(idp_mfa_login_lands_on_the_dashboard);

async fn login_without_idp_mfa_steps_up_to_local_totp(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    let staff = app
        .create_staff("pwd@example.com", &[Role::Security], true)
        .await;
    let client = app.client();

    let callback_url = through_idp(&app, &client, "pwd").await;
    assert_eq!(complete(&app, &client, &callback_url).await, "/login/totp");
    // Not a full session yet: the dashboard sends the person back to the TOTP step.
    assert_eq!(location(&app.get(&client, "/").await), "/login/totp");
    let wrong = app
        .submit(&client, "/login/totp", "/login/totp", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status(), 401);
    let code = app.current_code(&staff);
    let response = app
        .submit(&client, "/login/totp", "/login/totp", &[("code", &code)])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/");
    assert_eq!(app.get(&client, "/").await.status(), 200);
    assert_eq!(
        session_methods(&app).await,
        vec![(Some("sso".into()), Some("local_totp".into()), "full".into())]
    );
    let logins = audit_details(&app, "sso.login").await;
    assert!(logins[0].1.contains("\"mfa\":\"step_up\""), "{logins:?}");

    // `require_local_totp` steps up even an MFA assertion; without TOTP, enrolment comes first.
    let idp2 = Idp::start().await;
    let strict = sso_app(backend, &idp2, |c| c.sso.require_local_totp = true).await;
    strict
        .create_staff("mfa@example.com", &[Role::Auditor], false)
        .await;
    let client = strict.client();
    let callback_url = through_idp(&strict, &client, "mfa").await;
    assert_eq!(
        complete(&strict, &client, &callback_url).await,
        "/mfa/enrol"
    );
    assert_eq!(location(&strict.get(&client, "/").await), "/mfa/enrol");
    let enrol = strict
        .get(&client, "/mfa/enrol")
        .await
        .text()
        .await
        .unwrap();
    assert!(enrol.contains("otpauth://"), "enrolment page");
}
both_backends_with_idp!(login_without_idp_mfa_steps_up_to_local_totp);

async fn refused_identities_get_no_session(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |c| {
        c.sso.allowed_email_domains = vec!["example.com".into()]
    })
    .await;
    // An account exists for the unverified address, and for the outsider: both still fail.
    app.create_staff("unverified@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("outsider@elsewhere.test", &[Role::Admin], true)
        .await;
    let disabled = app
        .create_staff("mfa@example.com", &[Role::Admin], true)
        .await;
    {
        let mut tx = app.state.db.begin().await.unwrap();
        trustplane::staff::store::set_disabled(&mut tx, &disabled.id, true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    for (user, reason) in [
        ("unknown", "unknown_email"),
        ("unverified", "unverified_email"),
        ("outsider", "domain_not_allowed"),
        ("mfa", "disabled_account"),
    ] {
        let client = app.client();
        let callback_url = through_idp(&app, &client, user).await;
        let (status, page) = callback(&client, &callback_url).await;
        assert_eq!(status, 403, "{user}");
        assert_eq!(
            error_code(&page).as_deref(),
            Some(&*format!("sso_{reason}"))
        );
        let finish = app.get(&client, "/login/sso/finish").await;
        assert_eq!(finish.status(), 400, "{user}: nothing to finish");
        assert_eq!(location(&app.get(&client, "/").await), "/login");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM oidc_links").await, 0);
    // Each refused callback is audited with its reason; each finish attempt afterwards is
    // refused for want of a pending login (bad_state).
    let refusals = audit_details(&app, "sso.login").await;
    let reasons: Vec<&str> = refusals
        .iter()
        .filter(|(_, details)| !details.contains("bad_state"))
        .map(|(outcome, details)| {
            assert_eq!(outcome, "denied");
            [
                "unknown_email",
                "unverified_email",
                "domain_not_allowed",
                "disabled_account",
            ]
            .into_iter()
            .find(|r| details.contains(r))
            .unwrap_or("other")
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "unknown_email",
            "unverified_email",
            "domain_not_allowed",
            "disabled_account"
        ]
    );
    // No account appears just because someone can log in at the provider.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM staff WHERE email = 'nobody@example.com'")
            .await,
        0
    );
}
both_backends_with_idp!(refused_identities_get_no_session);

async fn jit_provisioning_creates_an_account_without_roles(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |c| c.sso.jit_provisioning = true).await;
    let client = app.client();
    let callback_url = through_idp(&app, &client, "unknown").await;
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM staff s WHERE email = 'nobody@example.com' \
             AND NOT EXISTS (SELECT 1 FROM staff_roles r WHERE r.staff_id = s.id)"
        )
        .await,
        1
    );
    // With no role, every page is refused.
    let dashboard = app.get(&client, "/").await;
    assert_eq!(dashboard.status(), 403);
    assert_eq!(audit_details(&app, "sso.provision").await.len(), 1);
}
both_backends_with_idp!(jit_provisioning_creates_an_account_without_roles);

async fn tampered_state_and_foreign_browsers_are_refused(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    app.create_staff("mfa@example.com", &[Role::Admin], false)
        .await;
    let client = app.client();
    let callback_url = through_idp(&app, &client, "mfa").await;

    let mut url = url::Url::parse(&callback_url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, page) = callback(&client, url.as_str()).await;
    assert_eq!(
        (status, error_code(&page).as_deref()),
        (400, Some("sso_bad_state"))
    );

    // The genuine callback opened in another browser (no pre-session cookie) is refused.
    let other = app.client();
    let (status, page) = callback(&other, &callback_url).await;
    assert_eq!(
        (status, error_code(&page).as_deref()),
        (400, Some("sso_bad_state"))
    );

    // In the browser that started it, it still works.
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    let refusals = audit_details(&app, "sso.login").await;
    assert_eq!(
        refusals
            .iter()
            .filter(|(o, d)| o == "denied" && d.contains("bad_state"))
            .count(),
        2
    );
}
both_backends_with_idp!(tampered_state_and_foreign_browsers_are_refused);

async fn a_replayed_code_is_refused(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    app.create_staff("mfa@example.com", &[Role::Admin], false)
        .await;
    let client = app.client();
    let first = through_idp(&app, &client, "mfa").await;
    assert_eq!(complete(&app, &client, &first).await, "/");

    // The same callback again: its state has been used.
    let (status, page) = callback(&client, &first).await;
    assert_eq!(
        (status, error_code(&page).as_deref()),
        (400, Some("sso_bad_state"))
    );

    // The old code under a fresh, valid state (another browser, since this one is signed in
    // now): the provider refuses the used code.
    let client = app.client();
    let second = through_idp(&app, &client, "mfa").await;
    let old_code = url::Url::parse(&first)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut url = url::Url::parse(&second).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                old_code.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, page) = callback(&client, url.as_str()).await;
    assert_eq!(
        (status, error_code(&page).as_deref()),
        (403, Some("sso_code_rejected"))
    );
    assert_eq!(
        session_methods(&app).await.len(),
        1,
        "only the first login made a session"
    );
}
both_backends_with_idp!(a_replayed_code_is_refused);

/// Signs in with the provider altering the next ID token; returns the refusal page's code
/// and the audited check.
async fn refused_token(app: &TestApp, idp: &Idp, changes: Value) -> (u16, Option<String>, String) {
    let client = app.client();
    let callback_url = through_idp(app, &client, "mfa").await;
    idp.tamper(changes).await;
    let (status, page) = callback(&client, &callback_url).await;
    let last = audit_details(app, "sso.login").await.pop().unwrap();
    assert_eq!(last.0, "denied");
    // Nothing is left to finish; that attempt is refused (and audited) on its own.
    assert_eq!(app.get(&client, "/login/sso/finish").await.status(), 400);
    (status, error_code(&page), last.1)
}

async fn wrong_nonce_expired_and_foreign_audience_tokens_are_refused(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    app.create_staff("mfa@example.com", &[Role::Admin], false)
        .await;

    let (status, code, details) = refused_token(&app, &idp, json!({"nonce": "not-ours"})).await;
    assert_eq!((status, code.as_deref()), (403, Some("sso_bad_nonce")));
    assert!(details.contains("\"check\":\"nonce\""), "{details}");

    let (status, code, details) = refused_token(&app, &idp, json!({"exp_offset": -600})).await;
    assert_eq!((status, code.as_deref()), (403, Some("sso_token_invalid")));
    assert!(details.contains("\"check\":\"exp\""), "{details}");

    let (status, code, details) = refused_token(&app, &idp, json!({"aud": "other-client"})).await;
    assert_eq!((status, code.as_deref()), (403, Some("sso_token_invalid")));
    assert!(details.contains("\"check\":\"aud\""), "{details}");

    // Our client among others is not enough: the other audience is not trusted.
    let (status, code, details) =
        refused_token(&app, &idp, json!({"aud": ["trustplane", "other-client"]})).await;
    assert_eq!((status, code.as_deref()), (403, Some("sso_token_invalid")));
    assert!(details.contains("\"check\":\"aud\""), "{details}");

    // Within the allowed skew an expiring token is still fine: exp 30 s ago, skew 60 s.
    let client = app.client();
    let callback_url = through_idp(&app, &client, "mfa").await;
    idp.tamper(json!({"exp_offset": -30})).await;
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}
both_backends_with_idp!(wrong_nonce_expired_and_foreign_audience_tokens_are_refused);

async fn jwks_rotation_at_the_provider_is_picked_up(backend: Backend) {
    let idp = Idp::start().await;
    let app = sso_app(backend, &idp, |_| {}).await;
    app.create_staff("mfa@example.com", &[Role::Admin], false)
        .await;
    let client = app.client();
    let callback_url = through_idp(&app, &client, "mfa").await;
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    let before = idp.stats().await;
    assert_eq!(
        (before["discovery"].as_i64(), before["jwks"].as_i64()),
        (Some(1), Some(1))
    );

    // The provider now signs with a new key (and no longer publishes the old one).
    let old_kid = before["kid"].as_str().unwrap().to_owned();
    let new_kid = idp.setup(&app.base).await;
    assert_ne!(old_kid, new_kid);
    let client = app.client();
    let callback_url = through_idp(&app, &client, "mfa").await;
    assert_eq!(complete(&app, &client, &callback_url).await, "/");
    let after = idp.stats().await;
    assert_eq!(
        after["discovery"].as_i64(),
        Some(1),
        "discovery stayed cached"
    );
    assert_eq!(
        after["jwks"].as_i64(),
        Some(2),
        "keys fetched again for the new kid"
    );
    assert_eq!(app.get(&client, "/").await.status(), 200);
}
both_backends_with_idp!(jwks_rotation_at_the_provider_is_picked_up);

async fn password_login_can_be_kept_for_break_glass_accounts_only(backend: Backend) {
    // The provider is never contacted here: discovery happens on the first SSO sign-in.
    let app = spawn_app_with(backend, |c| {
        c.sso = SsoConfig {
            issuer_url: "https://idp.invalid".into(),
            client_id: "trustplane".into(),
            client_secret: CLIENT_SECRET.into(),
            display_name: "Sign in with Example SSO".into(),
            password_login: PasswordLogin::BreakGlassOnly,
            break_glass_emails: vec!["Root@example.com".into()],
            ..SsoConfig::default()
        }
    })
    .await;
    let root = app
        .create_staff("root@example.com", &[Role::Admin], true)
        .await;
    app.create_staff("ana@example.com", &[Role::Admin], true)
        .await;
    let client = app.client();
    let login = app.get(&client, "/login").await.text().await.unwrap();
    assert!(login.contains("action=\"/login/sso\""), "{login}");
    assert!(login.contains("Sign in with Example SSO"));

    let refused = app
        .login_password(&client, "ana@example.com", PASSWORD)
        .await;
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Password login is turned off")
    );
    let denied = audit_details(&app, "auth.login").await;
    assert!(
        denied
            .iter()
            .any(|(o, d)| o == "denied" && d.contains("password_login_disabled")),
        "{denied:?}"
    );
    // The break-glass admin still logs in with password and TOTP.
    app.login(&client, &root).await;
    assert_eq!(app.get(&client, "/").await.status(), 200);
    let methods = session_methods(&app).await;
    assert_eq!(
        methods,
        vec![(
            Some("password".into()),
            Some("local_totp".into()),
            "full".into()
        )]
    );
}
crate::both_backends!(password_login_can_be_kept_for_break_glass_accounts_only);

async fn sso_steps_do_not_exist_while_sso_is_off(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.client();
    let login = app.get(&client, "/login").await.text().await.unwrap();
    assert!(!login.contains("/login/sso"));
    assert_eq!(
        app.get(&client, "/login/sso/callback?code=x&state=y")
            .await
            .status(),
        404
    );
    assert_eq!(app.get(&client, "/login/sso/finish").await.status(), 404);
    let response = app
        .post(&client, "/login/sso", &[("csrf", &csrf_of(&login))])
        .await;
    assert_eq!(response.status(), 404);
}
crate::both_backends!(sso_steps_do_not_exist_while_sso_is_off);

/// Polls `ready` on the browser for up to 20 s (pages that move on by themselves).
async fn wait_for(browser: &crate::webdriver::Browser, what: &str, script: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while browser.execute(script, json!([])).await != Value::Bool(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The whole SSO login in real Chromium, the provider on another site (localhost) than the
/// portal (127.0.0.1): the portal's start page moves on to the provider's own sign-in page,
/// the provider sends the browser back cross-site, the login finishes on a same-site step
/// (so the Strict session cookie is set where the browser keeps it), and a password-only
/// assertion steps up to the portal's TOTP before the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node and chromium (npm ci --prefix tests/oidc; apt chromium chromium-driver)"]
async fn sso_login_through_the_providers_pages_in_chromium_steps_up_to_totp() {
    use crate::webdriver::{Browser, Chromedriver, Javascript};
    let idp = Idp::start_on("localhost").await;
    let app = sso_app(Backend::Sqlite, &idp, |_| {}).await;
    let staff = app
        .create_staff("pwd@example.com", &[Role::Security], true)
        .await;
    let driver = Chromedriver::start().await;
    let mut browser = Browser::new(&driver, "sso", Javascript::On).await;

    browser.goto(&app.url("/login")).await;
    browser.check_page("sso-login").await;
    browser.click_to_navigate("form.sso button").await;
    wait_for(
        &browser,
        "the provider's sign-in page",
        "return location.host.startsWith('localhost:') && !!document.getElementById('password');",
    )
    .await;
    browser
        .execute(
            "document.getElementById('login').value = 'pwd'; return true;",
            json!([]),
        )
        .await;
    browser.fill("#password", IDP_PASSWORD).await;
    // The provider's pages are not the portal's: their console output is not judged.
    browser.logs().await;
    browser.click_to_navigate("button[type=submit]").await;
    wait_for(
        &browser,
        "the portal's TOTP step",
        "return location.pathname === '/login/totp' && document.readyState === 'complete';",
    )
    .await;
    browser.logs().await;
    assert!(
        browser.current_url().await.starts_with(&app.base),
        "back on the portal"
    );
    browser.check_page("sso-step-up").await;
    browser
        .fill("input[name=code]", &app.current_code(&staff))
        .await;
    browser
        .click_to_navigate("button[type=submit]:not(.link)")
        .await;
    assert_eq!(browser.path().await, "/", "the dashboard after the step-up");
    browser.check_page("sso-dashboard").await;
    assert_eq!(
        session_methods(&app).await,
        vec![(Some("sso".into()), Some("local_totp".into()), "full".into())]
    );
    let logins = audit_details(&app, "sso.login").await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert!(logins[0].1.contains("\"mfa\":\"step_up\""), "{logins:?}");
    browser.assert_clean();
    browser.quit().await;
}
