//! The route × role matrix: every registered route, for every role and for anonymous
//! visitors, against a table written out here. A route added without a line in this table
//! fails the test, and so does a policy change that widens or narrows access.

use std::collections::BTreeSet;

use trustplane::portal::routes::{self, Access};
use trustplane::staff::model::Role;

use crate::both_backends;
use crate::helpers::*;

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Anyone may call it; no session is read.
    Open,
    /// Anyone; the page carries forms bound to a pre-session cookie.
    OpenForm,
    /// Only part-way through login.
    LoginStep,
    /// Any session.
    Session,
    /// Fully signed in with one of these roles.
    Roles(&'static [&'static str]),
}

const EVERYONE: &[&str] = &["admin", "security", "reviewer", "compliance", "auditor"];
const ADMIN: &[&str] = &["admin"];
const ADMIN_AUDITOR: &[&str] = &["admin", "auditor"];
const KEY_MANAGERS: &[&str] = &["admin", "security"];
const KEY_READERS: &[&str] = &["admin", "security", "auditor"];
const INCIDENT_WORKERS: &[&str] = &["admin", "security"];
const INCIDENT_READERS: &[&str] = &["admin", "security", "compliance", "auditor"];
const ONCALL_READERS: &[&str] = &["admin", "security", "compliance", "auditor"];
const SLA_READERS: &[&str] = &["admin", "security", "compliance", "auditor"];
const REVIEW_READERS: &[&str] = &["admin", "reviewer", "compliance", "auditor"];
const REVIEWERS: &[&str] = &["reviewer"];
const DISCLOSURE_WORKERS: &[&str] = &["admin", "security"];
const DISCLOSURE_READERS: &[&str] = &["admin", "security", "compliance", "auditor"];
const VENDOR_KEEPERS: &[&str] = &["admin", "compliance"];
const VENDOR_READERS: &[&str] = &["admin", "compliance", "auditor"];
const CONTROL_KEEPERS: &[&str] = &["admin", "compliance"];
const CONTROL_READERS: &[&str] = &["admin", "compliance", "auditor"];
const EVIDENCE_EXPORTERS: &[&str] = &["admin", "compliance"];
const EVIDENCE_READERS: &[&str] = &["admin", "compliance", "auditor"];

const EXPECTED: &[(&str, &str, Expect)] = &[
    ("GET", "/healthz", Expect::Open),
    ("GET", "/readyz", Expect::Open),
    ("GET", "/metrics", Expect::Open),
    ("GET", "/static/{*path}", Expect::Open),
    ("GET", "/login", Expect::OpenForm),
    ("POST", "/login", Expect::OpenForm),
    ("POST", "/login/sso", Expect::OpenForm),
    ("GET", "/login/sso/callback", Expect::OpenForm),
    ("GET", "/login/sso/finish", Expect::OpenForm),
    ("GET", "/setup", Expect::OpenForm),
    ("POST", "/setup", Expect::OpenForm),
    ("GET", "/login/totp", Expect::LoginStep),
    ("POST", "/login/totp", Expect::LoginStep),
    ("GET", "/mfa/enrol", Expect::LoginStep),
    ("POST", "/mfa/enrol", Expect::LoginStep),
    ("POST", "/logout", Expect::Session),
    ("GET", "/", Expect::Roles(EVERYONE)),
    ("GET", "/account", Expect::Roles(EVERYONE)),
    ("POST", "/account/password", Expect::Roles(EVERYONE)),
    ("POST", "/account/mfa-reset", Expect::Roles(EVERYONE)),
    ("GET", "/account/sessions", Expect::Roles(EVERYONE)),
    (
        "POST",
        "/account/sessions/{id}/end",
        Expect::Roles(EVERYONE),
    ),
    (
        "POST",
        "/account/sessions/end-others",
        Expect::Roles(EVERYONE),
    ),
    ("GET", "/staff", Expect::Roles(ADMIN_AUDITOR)),
    ("GET", "/staff/new", Expect::Roles(ADMIN)),
    ("POST", "/staff", Expect::Roles(ADMIN)),
    ("GET", "/staff/{id}", Expect::Roles(ADMIN_AUDITOR)),
    ("POST", "/staff/{id}/roles", Expect::Roles(ADMIN)),
    ("POST", "/staff/{id}/roles/revoke", Expect::Roles(ADMIN)),
    ("POST", "/staff/{id}/disable", Expect::Roles(ADMIN)),
    ("POST", "/staff/{id}/enable", Expect::Roles(ADMIN)),
    ("POST", "/staff/{id}/mfa-reset", Expect::Roles(ADMIN)),
    ("POST", "/staff/{id}/invite", Expect::Roles(ADMIN)),
    ("GET", "/audit", Expect::Roles(ADMIN_AUDITOR)),
    ("GET", "/customers", Expect::Roles(KEY_READERS)),
    ("GET", "/customers/new", Expect::Roles(KEY_MANAGERS)),
    ("POST", "/customers", Expect::Roles(KEY_MANAGERS)),
    ("GET", "/customers/{id}", Expect::Roles(KEY_READERS)),
    (
        "POST",
        "/customers/{id}/settings",
        Expect::Roles(KEY_MANAGERS),
    ),
    ("POST", "/customers/{id}/keys", Expect::Roles(KEY_MANAGERS)),
    ("GET", "/keys", Expect::Roles(KEY_READERS)),
    ("GET", "/keys/{id}", Expect::Roles(KEY_READERS)),
    ("GET", "/keys/{id}/issued", Expect::Roles(KEY_MANAGERS)),
    ("POST", "/keys/{id}/rotate", Expect::Roles(KEY_MANAGERS)),
    ("POST", "/keys/{id}/revoke", Expect::Roles(KEY_MANAGERS)),
    ("GET", "/jobs", Expect::Roles(ADMIN_AUDITOR)),
    ("POST", "/jobs/{name}/run", Expect::Roles(ADMIN)),
    ("GET", "/outbox", Expect::Roles(ADMIN_AUDITOR)),
    ("GET", "/alerts", Expect::Roles(INCIDENT_READERS)),
    ("GET", "/alerts/settings", Expect::Roles(ADMIN_AUDITOR)),
    ("GET", "/alerts/{id}", Expect::Roles(INCIDENT_READERS)),
    (
        "POST",
        "/alerts/{id}/state",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    ("GET", "/incidents", Expect::Roles(INCIDENT_READERS)),
    ("GET", "/incidents/new", Expect::Roles(INCIDENT_WORKERS)),
    ("POST", "/incidents", Expect::Roles(INCIDENT_WORKERS)),
    ("GET", "/incidents/{id}", Expect::Roles(INCIDENT_READERS)),
    (
        "POST",
        "/incidents/{id}/triage",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/status",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/notes",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/review",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/authority-notice",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/controllers/{customer_id}/notified",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/incidents/{id}/actions/{action_id}/done",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    ("GET", "/findings", Expect::Roles(INCIDENT_READERS)),
    ("POST", "/findings", Expect::Roles(INCIDENT_WORKERS)),
    ("POST", "/findings/import", Expect::Roles(INCIDENT_WORKERS)),
    ("GET", "/findings/{id}", Expect::Roles(INCIDENT_READERS)),
    (
        "POST",
        "/findings/{id}/status",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "POST",
        "/findings/{id}/accept-risk",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "GET",
        "/findings/engagements",
        Expect::Roles(INCIDENT_READERS),
    ),
    (
        "POST",
        "/findings/engagements",
        Expect::Roles(INCIDENT_WORKERS),
    ),
    (
        "GET",
        "/findings/engagements/{id}",
        Expect::Roles(INCIDENT_READERS),
    ),
    (
        "GET",
        "/findings/engagements/{id}/report",
        Expect::Roles(INCIDENT_READERS),
    ),
    ("GET", "/oncall", Expect::Roles(ONCALL_READERS)),
    ("POST", "/oncall/rotation", Expect::Roles(ADMIN)),
    ("POST", "/oncall/overrides", Expect::Roles(ADMIN)),
    (
        "POST",
        "/oncall/overrides/{id}/remove",
        Expect::Roles(ADMIN),
    ),
    ("GET", "/sla", Expect::Roles(SLA_READERS)),
    ("GET", "/reviews", Expect::Roles(REVIEW_READERS)),
    ("POST", "/reviews/open", Expect::Roles(ADMIN)),
    ("GET", "/reviews/{id}", Expect::Roles(REVIEW_READERS)),
    (
        "GET",
        "/reviews/{id}/export.csv",
        Expect::Roles(REVIEW_READERS),
    ),
    (
        "POST",
        "/reviews/{id}/items/{item}/decision",
        Expect::Roles(REVIEWERS),
    ),
    ("POST", "/reviews/{id}/bulk", Expect::Roles(REVIEWERS)),
    (
        "POST",
        "/reviews/{id}/items/{item}/assign",
        Expect::Roles(ADMIN),
    ),
    ("POST", "/reviews/{id}/sign-off", Expect::Roles(ADMIN)),
    ("GET", "/.well-known/security.txt", Expect::Open),
    ("GET", "/security.txt", Expect::Open),
    ("GET", "/security", Expect::Open),
    ("GET", "/security/acknowledgements", Expect::Open),
    ("GET", "/security/report", Expect::OpenForm),
    ("POST", "/security/report", Expect::OpenForm),
    ("GET", "/security/reports/{token}", Expect::OpenForm),
    ("POST", "/security/reports/{token}", Expect::OpenForm),
    ("GET", "/disclosures", Expect::Roles(DISCLOSURE_READERS)),
    (
        "GET",
        "/disclosures/{id}",
        Expect::Roles(DISCLOSURE_READERS),
    ),
    (
        "GET",
        "/disclosures/{id}/attachments/{file}",
        Expect::Roles(DISCLOSURE_READERS),
    ),
    (
        "POST",
        "/disclosures/{id}/reply",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    (
        "POST",
        "/disclosures/{id}/note",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    (
        "POST",
        "/disclosures/{id}/attachments",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    (
        "POST",
        "/disclosures/{id}/state",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    (
        "POST",
        "/disclosures/{id}/update",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    (
        "POST",
        "/disclosures/{id}/incident",
        Expect::Roles(DISCLOSURE_WORKERS),
    ),
    ("GET", "/vendors", Expect::Roles(VENDOR_READERS)),
    ("POST", "/vendors", Expect::Roles(VENDOR_KEEPERS)),
    ("GET", "/vendors/new", Expect::Roles(VENDOR_KEEPERS)),
    ("POST", "/vendors/import", Expect::Roles(VENDOR_KEEPERS)),
    ("GET", "/vendors/{id}", Expect::Roles(VENDOR_READERS)),
    ("GET", "/vendors/{id}/edit", Expect::Roles(VENDOR_KEEPERS)),
    ("POST", "/vendors/{id}/edit", Expect::Roles(VENDOR_KEEPERS)),
    ("POST", "/vendors/{id}/state", Expect::Roles(VENDOR_KEEPERS)),
    (
        "POST",
        "/vendors/{id}/activate",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    ("GET", "/vendors/questions", Expect::Roles(VENDOR_READERS)),
    ("POST", "/vendors/questions", Expect::Roles(VENDOR_KEEPERS)),
    (
        "POST",
        "/vendors/questions/{qid}",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    ("GET", "/vendors/subscribers", Expect::Roles(VENDOR_READERS)),
    (
        "POST",
        "/vendors/subscribers",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    ("GET", "/vendors/{id}/assess", Expect::Roles(VENDOR_KEEPERS)),
    (
        "POST",
        "/vendors/{id}/assessments",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    (
        "POST",
        "/vendors/{id}/conditions/{cid}/done",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    ("POST", "/vendors/{id}/dpas", Expect::Roles(VENDOR_KEEPERS)),
    (
        "GET",
        "/vendors/{id}/dpas/{dpa_id}",
        Expect::Roles(VENDOR_READERS),
    ),
    (
        "POST",
        "/vendors/{id}/objections",
        Expect::Roles(VENDOR_KEEPERS),
    ),
    ("GET", "/trust/subprocessors", Expect::OpenForm),
    ("GET", "/trust/subprocessors.json", Expect::Open),
    ("GET", "/trust/subprocessors.atom", Expect::Open),
    ("POST", "/trust/subprocessors/subscribe", Expect::OpenForm),
    ("GET", "/trust/subprocessors/confirm", Expect::OpenForm),
    ("POST", "/trust/subprocessors/confirm", Expect::OpenForm),
    ("GET", "/trust/subprocessors/unsubscribe", Expect::OpenForm),
    ("POST", "/trust/subprocessors/unsubscribe", Expect::OpenForm),
    ("GET", "/controls", Expect::Roles(CONTROL_READERS)),
    ("POST", "/controls/evaluate", Expect::Roles(CONTROL_KEEPERS)),
    ("GET", "/controls/{id}", Expect::Roles(CONTROL_READERS)),
    ("GET", "/answers", Expect::Roles(CONTROL_READERS)),
    ("GET", "/answers.csv", Expect::Roles(CONTROL_READERS)),
    ("GET", "/answers/new", Expect::Roles(CONTROL_KEEPERS)),
    ("POST", "/answers", Expect::Roles(CONTROL_KEEPERS)),
    ("GET", "/answers/{id}/edit", Expect::Roles(CONTROL_KEEPERS)),
    ("POST", "/answers/{id}", Expect::Roles(CONTROL_KEEPERS)),
    (
        "POST",
        "/answers/{id}/delete",
        Expect::Roles(CONTROL_KEEPERS),
    ),
    ("GET", "/trust", Expect::Open),
    ("GET", "/trust.json", Expect::Open),
    ("GET", "/evidence", Expect::Roles(EVIDENCE_READERS)),
    (
        "POST",
        "/evidence/export",
        Expect::Roles(EVIDENCE_EXPORTERS),
    ),
    ("GET", "/trust/evidence-key", Expect::Open),
    ("GET", "/trust/evidence-key.json", Expect::Open),
];

#[test]
fn every_registered_route_has_a_line_in_the_matrix() {
    let registered: BTreeSet<(String, String)> = routes::table()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_owned()))
        .collect();
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let unlisted: Vec<_> = registered.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&registered).collect();
    assert!(
        unlisted.is_empty(),
        "routes without a line in the matrix: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "matrix lines without a route: {missing:?}"
    );

    for (method, path, access) in routes::table() {
        let (_, _, expect) = EXPECTED
            .iter()
            .find(|(m, p, _)| *m == method.as_str() && *p == path)
            .unwrap();
        let consistent = matches!(
            (expect, access),
            (Expect::Open, Access::Public)
                | (Expect::OpenForm, Access::PublicForm)
                | (Expect::LoginStep, Access::Pending(_))
                | (Expect::Session, Access::AnySession)
                | (Expect::Roles(_), Access::Rbac(_, _))
        );
        assert!(
            consistent,
            "{method} {path}: declared {access:?}, matrix says {expect:?}"
        );
    }
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-0000-0000-000000000000")
        .replace("{*path}", "app.css")
        .replace("{name}", "no_such_job")
        .replace("{item}", "00000000-0000-0000-0000-000000000001")
        .replace("{file}", "00000000-0000-0000-0000-000000000000")
        // A status token nobody was given: the page answers 404, like any wrong token.
        .replace("{token}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .replace("{cid}", "00000000-0000-0000-0000-000000000001")
        .replace("{dpa_id}", "00000000-0000-0000-0000-000000000002")
        .replace("{qid}", "q-no-such-question")
}

async fn send(
    app: &TestApp,
    client: &reqwest::Client,
    method: &str,
    path: &str,
) -> (u16, String, Option<String>) {
    let url = app.url(&concrete(path));
    let response = if method == "GET" {
        client.get(url).send().await.unwrap()
    } else {
        // No CSRF token on purpose: an allowed role gets the CSRF page, a denied one the
        // authorisation page, because authorisation is decided first.
        client.post(url).form(&[("x", "1")]).send().await.unwrap()
    };
    let status = response.status().as_u16();
    let location = location(&response);
    let body = response.text().await.unwrap();
    (status, location, error_code(&body))
}

async fn every_route_answers_every_role_as_the_matrix_says(backend: Backend) {
    // The walk makes hundreds of requests from one address; the public pages' per-network
    // limit is tested on its own and must not turn this walk's answers into 429s.
    let app = spawn_app_with(backend, |c| c.trust_requests_per_minute = 100_000).await;
    let mut clients = Vec::new();
    for role in Role::ALL {
        let (client, _) = app.logged_in_as(role).await;
        clients.push((role.as_str(), client));
    }
    let anonymous = app.client();
    let mut denied = 0;

    for (method, path, expect) in EXPECTED {
        let (status, location, code) = send(&app, &anonymous, method, path).await;
        let context = format!("anonymous {method} {path}");
        match expect {
            Expect::Open => assert!(status == 200, "{context}: {status}"),
            Expect::OpenForm => {
                if *method == "POST" {
                    assert_eq!((status, code.as_deref()), (403, Some("csrf")), "{context}");
                } else {
                    let wrong_token = path.contains("{token}") && status == 404;
                    // Single sign-on is not configured here: its steps do not exist.
                    let sso_off = path.starts_with("/login/sso") && status == 404;
                    assert!(
                        status == 200 || status == 410 || wrong_token || sso_off,
                        "{context}: {status}"
                    );
                }
            }
            Expect::LoginStep | Expect::Session | Expect::Roles(_) => {
                assert_eq!((status, location.as_str()), (303, "/login"), "{context}");
            }
        }

        for (role, client) in &clients {
            let (status, location, code) = send(&app, client, method, path).await;
            let context = format!("{role} {method} {path}: {status} {location} {code:?}");
            match expect {
                Expect::Roles(allowed) if allowed.contains(role) => {
                    assert_ne!(code.as_deref(), Some("forbidden"), "{context}");
                    if *method == "POST" {
                        assert_eq!((status, code.as_deref()), (403, Some("csrf")), "{context}");
                    } else {
                        assert!(status == 200 || status == 404, "{context}");
                    }
                }
                Expect::Roles(_) => {
                    denied += 1;
                    assert_eq!(
                        (status, code.as_deref()),
                        (403, Some("forbidden")),
                        "{context}"
                    );
                }
                Expect::LoginStep => {
                    assert_eq!((status, location.as_str()), (303, "/"), "{context}")
                }
                Expect::Open | Expect::OpenForm | Expect::Session => {
                    assert_ne!(code.as_deref(), Some("forbidden"), "{context}");
                }
            }
        }
    }
    let audited = app
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'authz.denied' AND outcome = 'denied'",
        )
        .await;
    assert_eq!(audited, denied, "every denial is audited");
    assert!(denied > 0);
}
both_backends!(every_route_answers_every_role_as_the_matrix_says);
