//! The portal's main journeys in real headless Chromium (through chromedriver): first run,
//! login with TOTP, an API key shown once and revoked, and the whole portal with JavaScript
//! switched off. Every visited page is screenshotted (target/browser-screenshots/) and must
//! show no console error, no CSP violation and no serious or critical axe-core finding.

use trustplane::clock::SECOND;
use trustplane::staff::model::Role;

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app};
use crate::webdriver::{Browser, Chromedriver, Javascript};

/// The TOTP code an authenticator app would show for `secret` (base32, as on the page) at the
/// server's clock, computed with totp-rs rather than trustplane's own TOTP module.
fn authenticator_code(app: &TestApp, secret: &str) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("the page shows a base32 key");
    let totp = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        raw,
        None,
        "browser".to_owned(),
    );
    totp.generate(u64::try_from(app.state.now() / 1000).expect("time after 1970"))
}

/// Logs in with password and the authenticator code; moves the clock one TOTP step first
/// so a code is never refused as a replay of the previous login's.
async fn log_in(browser: &mut Browser, app: &TestApp, email: &str, secret: &str) {
    app.clock.advance(30 * SECOND);
    browser.goto(&app.url("/login")).await;
    assert_eq!(browser.path().await, "/login");
    browser.check_page("login").await;
    browser.fill("input[name=email]", email).await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser
        .click_to_navigate("form[action='/login'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/login/totp", "password accepted");
    browser.check_page("login-totp").await;
    browser
        .fill("input[name=code]", &authenticator_code(app, secret))
        .await;
    browser
        .click_to_navigate("form[action='/login/totp'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/", "TOTP accepted: the dashboard");
    assert_eq!(browser.text("h1").await, "Dashboard");
}

async fn log_out(browser: &mut Browser) {
    browser
        .click_to_navigate("form[action='/logout'] button")
        .await;
    assert_eq!(
        browser.path().await,
        "/login?notice=logged_out",
        "logged out"
    );
    assert!(
        browser.source().await.contains("Log in to trustplane"),
        "the login page after logout"
    );
}

/// The first-run journey with JavaScript on: setup link → password → TOTP enrolment →
/// recovery codes → dashboard. Returns the new admin's TOTP secret.
async fn first_run(browser: &mut Browser, app: &TestApp) -> String {
    let link = trustplane::server::first_run_link(&app.state, &app.base)
        .await
        .expect("first-run link")
        .expect("no staff yet, so a link is issued");
    browser.goto(&link).await;
    assert_eq!(
        browser.path().await,
        "/setup",
        "the token leaves the address bar"
    );
    assert_eq!(browser.text("h1").await, "Create the first administrator");
    browser.check_page("setup").await;

    browser.fill("input[name=email]", "root@example.com").await;
    browser.fill("input[name=display_name]", "Root Admin").await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser.fill("input[name=confirm]", PASSWORD).await;
    browser
        .click_to_navigate("form[action='/setup'] button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/mfa/enrol");
    assert!(
        browser.try_find(".qr svg").await.is_some(),
        "a QR code to scan"
    );
    browser.check_page("mfa-enrol").await;

    // The key sits in a closed <details>: open it as a person who cannot scan would.
    browser.click("details summary").await;
    let secret = browser.text("code.secret").await.replace(' ', "");
    assert!(secret.len() >= 26, "a 160-bit base32 key: {secret}");
    browser
        .fill("input[name=code]", &authenticator_code(app, &secret))
        .await;
    browser
        .click_to_navigate("form[action='/mfa/enrol'] button[type=submit]")
        .await;
    assert_eq!(browser.text("h1").await, "Your recovery codes");
    let codes = browser.find_all("ol.codes li code").await;
    assert_eq!(codes.len(), 10, "ten recovery codes");
    browser.check_page("recovery-codes").await;

    browser.click_to_navigate("a.button[href='/']").await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("h1").await, "Dashboard");
    browser.check_page("dashboard").await;
    secret
}

/// Creates a customer through the portal; returns its page's path.
async fn create_customer(browser: &mut Browser, app: &TestApp, name: &str) -> String {
    browser.goto(&app.url("/customers/new")).await;
    browser.check_page("customer-new").await;
    browser.fill("input[name=name]", name).await;
    browser
        .fill("input[name=contact_email]", "ops@customer.example")
        .await;
    browser.fill("input[name=retention_days]", "7").await;
    browser
        .click_to_navigate("form[action='/customers'] button[type=submit]")
        .await;
    let path = browser.path().await;
    assert!(
        path.starts_with("/customers/") && path != "/customers/new",
        "the new customer's page, not {path}"
    );
    assert_eq!(browser.text("h1").await, name);
    path.split('?').next().unwrap_or_default().to_owned()
}

/// Issues a key on the customer's page; returns the secret shown.
async fn issue_key(browser: &mut Browser, name: &str) -> String {
    let form = "form[action$='/keys']";
    browser
        .fill(&format!("{form} input[name=name]"), name)
        .await;
    browser
        .click_to_navigate(&format!("{form} button[type=submit]"))
        .await;
    assert!(
        browser.text("h1").await.starts_with("API key for"),
        "the key-issued page"
    );
    let secret = browser.text("#new-key").await;
    assert!(secret.starts_with("tp_live_"), "a live key: {secret}");
    secret
}

/// Revokes the only active key on the customer page: refused without the confirmation tick,
/// done with it.
async fn revoke_key(browser: &mut Browser, customer_path: &str) {
    let form = "form[action$='/revoke']";
    let unconfirmed = browser
        .execute(
            "var f = document.querySelector(arguments[0]); window.__tpStay = true; \
             return f.checkValidity();",
            serde_json::json!([form]),
        )
        .await;
    assert_eq!(
        unconfirmed.as_bool(),
        Some(false),
        "the form needs the confirmation tick"
    );
    browser.click(&format!("{form} button[type=submit]")).await;
    let stayed = browser
        .execute("return window.__tpStay === true;", serde_json::json!([]))
        .await;
    assert_eq!(
        stayed.as_bool(),
        Some(true),
        "without the confirmation tick nothing is sent"
    );
    assert_eq!(browser.path().await, customer_path);
    assert!(browser.source().await.contains(">active</span>"));
    browser.click(&format!("{form} input[name=confirm]")).await;
    browser
        .click_to_navigate(&format!("{form} button[type=submit]"))
        .await;
    assert_eq!(
        browser.path().await,
        format!("{customer_path}?notice=revoked")
    );
    let page = browser.source().await;
    assert!(page.contains(">revoked</span>"), "the key shows as revoked");
    assert!(
        browser.try_find(form).await.is_none(),
        "no revoke button left"
    );
}

/// The API's status for `key` on an image that does not exist: 401 only if the key is refused.
async fn api_status(app: &TestApp, key: &str) -> u16 {
    reqwest::Client::new()
        .get(app.url("/v1/images/img_0000000000000000"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("API")
        .status()
        .as_u16()
}

/// The pages every journey checks for console errors, CSP violations and accessibility.
const TOUR: &[(&str, &str)] = &[
    ("/", "dashboard"),
    ("/incidents", "incidents"),
    ("/incidents/new", "incident-new"),
    ("/alerts", "alerts"),
    ("/findings", "findings"),
    ("/findings/engagements", "engagements"),
    ("/disclosures", "disclosures"),
    ("/vendors", "vendors"),
    ("/vendors/new", "vendor-new"),
    ("/sla", "sla"),
    ("/reviews", "reviews"),
    ("/customers", "customers"),
    ("/keys", "keys"),
    ("/staff", "staff"),
    ("/staff/new", "staff-new"),
    ("/audit", "audit"),
    ("/jobs", "jobs"),
    ("/outbox", "outbox"),
    ("/oncall", "oncall"),
    ("/account", "account"),
    ("/account/sessions", "account-sessions"),
    ("/security", "public-security-policy"),
    ("/security/report", "public-security-report"),
    ("/trust/subprocessors", "public-subprocessors"),
];

async fn tour(browser: &mut Browser, app: &TestApp) {
    for (path, name) in TOUR {
        browser.goto(&app.url(path)).await;
        assert_eq!(
            &browser.path().await,
            path,
            "{name} opened without a redirect"
        );
        browser.check_page(name).await;
    }
}

/// The `href` of the first element matching `css`.
async fn first_href(browser: &Browser, css: &str) -> String {
    browser
        .property(css, "href")
        .await
        .as_str()
        .unwrap_or_else(|| panic!("`{css}` has no href"))
        .to_owned()
}

/// One record of each kind through the portal's own forms, so the detail pages and filled
/// lists are checked too (not only empty states).
async fn record_one_of_each(browser: &mut Browser, app: &TestApp) {
    // A finding.
    browser.goto(&app.url("/findings")).await;
    let form = "form[method=post][action='/findings']";
    browser
        .fill(
            &format!("{form} input[name=title]"),
            "Stored XSS in the report viewer",
        )
        .await;
    browser
        .fill(&format!("{form} input[name=asset]"), "portal /reports")
        .await;
    browser
        .click_to_navigate(&format!("{form} button[type=submit]"))
        .await;
    let finding = browser.path().await;
    assert!(
        finding.starts_with("/findings/"),
        "the finding page, not {finding}: {}",
        browser.text("main").await
    );
    browser.check_page("finding").await;

    // A sub-processor.
    browser.goto(&app.url("/vendors/new")).await;
    browser.fill("input[name=name]", "Cloud Mail").await;
    browser
        .fill("input[name=legal_entity]", "Cloud Mail GmbH")
        .await;
    browser
        .fill("textarea[name=purpose]", "Sends transactional email")
        .await;
    browser.fill("input[name=locations]", "DE").await;
    browser
        .fill("input[name=owner_email]", "root@example.com")
        .await;
    browser
        .click_to_navigate("form[action='/vendors'] button[type=submit]")
        .await;
    let vendor = browser.path().await;
    assert!(
        vendor.starts_with("/vendors/"),
        "the vendor page, not {vendor}"
    );
    browser.check_page("vendor").await;

    // A researcher's report through the public form, then its page in the inbox.
    browser.goto(&app.url("/security/report")).await;
    browser
        .fill("input[name=title]", "Open redirect on login")
        .await;
    browser
        .fill("input[name=asset]", "https://portal.example/login")
        .await;
    browser
        .fill(
            "textarea[name=description]",
            "The next parameter accepts any host.",
        )
        .await;
    browser
        .click_to_navigate("form[action='/security/report'] button[type=submit]")
        .await;
    browser.check_page("public-report-received").await;
    browser.goto(&app.url("/disclosures")).await;
    let disclosure = first_href(browser, "table a[href^='/disclosures/']").await;
    browser.goto(&disclosure).await;
    browser.check_page("disclosure").await;

    // An access-review campaign for the current quarter.
    browser.goto(&app.url("/reviews")).await;
    browser
        .click_to_navigate("form[action='/reviews/open'] button[type=submit]")
        .await;
    assert!(
        browser.path().await.starts_with("/reviews/"),
        "the campaign page"
    );
    browser.check_page("review").await;

    // A staff member's page and a key's traffic page (SVG charts with data tables).
    browser.goto(&app.url("/staff")).await;
    let staff = first_href(browser, "table a[href^='/staff/']").await;
    browser.goto(&staff).await;
    browser.check_page("staff-member").await;
    browser.goto(&app.url("/keys")).await;
    let key = first_href(browser, "table a[href^='/keys/']").await;
    browser.goto(&key).await;
    browser.check_page("key-traffic").await;
}

/// Opens an incident through the form; its page shows the triage countdown.
async fn open_incident(browser: &mut Browser, app: &TestApp) -> String {
    browser.goto(&app.url("/incidents/new")).await;
    browser
        .fill(
            "input[name=title]",
            "Unexpected API traffic from one network",
        )
        .await;
    browser
        .fill("textarea[name=description]", "Seen in the alert feed.")
        .await;
    browser.click("input[name=severity][value=SEV3]").await;
    browser
        .click_to_navigate("form[action='/incidents'] button[type=submit]")
        .await;
    let path = browser.path().await;
    assert!(
        path.starts_with("/incidents/"),
        "the incident page, not {path}"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium"]
async fn first_run_login_and_api_key_in_chromium() {
    let app = spawn_app(Backend::Sqlite).await;
    let driver = Chromedriver::start().await;
    let mut browser = Browser::new(&driver, "first-run", Javascript::On).await;
    assert!(
        browser.page_scripts_run().await,
        "this session runs scripts"
    );

    // First run → dashboard.
    let secret = first_run(&mut browser, &app).await;

    // Log out, log in again with password and TOTP.
    log_out(&mut browser).await;
    log_in(&mut browser, &app, "root@example.com", &secret).await;

    // An API key for a customer: shown once, works, then revoked after confirmation.
    let customer = create_customer(&mut browser, &app, "Acme Biometrics").await;
    browser.check_page("customer").await;
    let key = issue_key(&mut browser, "production backend").await;
    browser.check_page("key-issued").await;
    assert_ne!(api_status(&app, &key).await, 401, "the new key is accepted");
    browser.refresh().await;
    assert!(
        !browser.source().await.contains(&key),
        "a reload does not show the key again"
    );
    browser.goto(&app.url(&customer)).await;
    assert!(!browser.source().await.contains(&key));
    browser.goto(&app.url("/keys")).await;
    let listed = browser.source().await;
    assert!(!listed.contains(&key), "the list shows the prefix only");
    assert!(listed.contains(&key[..12]), "the list shows the prefix");
    browser.goto(&app.url(&customer)).await;
    revoke_key(&mut browser, &customer).await;
    browser.check_page("customer-key-revoked").await;
    assert_eq!(
        api_status(&app, &key).await,
        401,
        "the revoked key stops working"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys").await,
        1,
        "exactly one key was issued"
    );

    // Something in each list, then every page once.
    let incident = open_incident(&mut browser, &app).await;
    browser.check_page("incident").await;
    assert!(
        browser.try_find(".countdown").await.is_some(),
        "{incident}: a countdown"
    );
    record_one_of_each(&mut browser, &app).await;
    tour(&mut browser, &app).await;

    browser.assert_clean();
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium"]
async fn the_portal_works_without_javascript() {
    let app = spawn_app(Backend::Sqlite).await;
    let staff = app
        .create_staff("nojs@example.com", &[Role::Admin], true)
        .await;
    let secret = staff.totp_secret.clone().expect("enrolled");
    let driver = Chromedriver::start().await;
    let mut browser = Browser::new(&driver, "no-javascript", Javascript::Off).await;
    assert!(
        !browser.page_scripts_run().await,
        "this session must not run page scripts"
    );

    log_in(&mut browser, &app, &staff.email, &secret).await;
    browser.check_page("dashboard").await;

    // Forms submit: an incident, whose triage countdown is rendered by the server.
    let incident = open_incident(&mut browser, &app).await;
    browser.check_page("incident").await;
    let countdown = browser.text(".countdown").await;
    assert_eq!(
        countdown, "1h 0m left",
        "{incident}: the server-rendered countdown"
    );
    app.clock.advance(20 * 60 * SECOND);
    browser.refresh().await;
    assert_eq!(
        browser.text(".countdown").await,
        "40m 0s left",
        "the server renders the countdown from its clock at each load"
    );
    browser.goto(&app.url("/sla")).await;
    assert!(
        browser.text(".countdown").await.ends_with("left"),
        "the SLA list renders countdowns too"
    );
    browser.check_page("sla-running").await;

    // A key issued and revoked, a filter applied (GET form), all without scripts.
    let customer = create_customer(&mut browser, &app, "No Script Ltd").await;
    let key = issue_key(&mut browser, "batch job").await;
    browser.check_page("key-issued").await;
    browser.goto(&app.url(&customer)).await;
    revoke_key(&mut browser, &customer).await;
    assert_eq!(api_status(&app, &key).await, 401);
    browser.goto(&app.url("/keys")).await;
    browser
        .click("select[name=state] option[value=revoked]")
        .await;
    browser
        .click_to_navigate("form.filters button[type=submit]")
        .await;
    assert_eq!(browser.path().await, "/keys?state=revoked");
    assert!(browser.source().await.contains(">revoked</span>"));
    browser.check_page("keys-filtered").await;

    tour(&mut browser, &app).await;
    browser.goto(&app.url("/account")).await;
    log_out(&mut browser).await;

    browser.assert_clean();
    browser.quit().await;
}
