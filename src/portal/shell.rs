//! The frame around every signed-in page: who is logged in, the CSRF token for forms, and
//! the navigation, which lists only what the person's roles allow.

use crate::app::AppState;
use crate::error::AppError;
use crate::portal::routes::Visitor;

/// One navigation link.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// What `layout.html` needs.
#[derive(Debug, Clone)]
pub struct Shell {
    pub name: String,
    pub email: String,
    pub roles: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub request_id: String,
}

/// (href, label, resource, action) of each navigation entry.
const NAV: &[(&str, &str, &str, &str)] = &[
    ("/", "Dashboard", "dashboard", "read"),
    ("/controls", "Controls", "controls", "read"),
    ("/incidents", "Incidents", "incidents", "read"),
    ("/alerts", "Alerts", "alerts", "read"),
    ("/findings", "Findings", "findings", "read"),
    ("/disclosures", "Disclosures", "disclosures", "read"),
    ("/vendors", "Vendors", "vendors", "read"),
    ("/sla", "SLA clocks", "sla", "read"),
    ("/reviews", "Access reviews", "reviews", "read"),
    ("/answers", "Questionnaires", "answers", "read"),
    ("/customers", "Customers", "customers", "read"),
    ("/keys", "API keys", "keys", "read"),
    ("/staff", "Staff", "staff", "read"),
    ("/audit", "Audit log", "audit", "read"),
    ("/evidence", "Evidence", "evidence", "read"),
    ("/jobs", "Jobs", "jobs", "read"),
    ("/outbox", "Outbox", "outbox", "read"),
    ("/oncall", "On call", "oncall", "read"),
    ("/account", "My account", "account", "read"),
];

impl Shell {
    pub fn new(state: &AppState, visitor: &Visitor, active: &str) -> Result<Self, AppError> {
        let session = visitor.session()?;
        let nav = NAV
            .iter()
            .filter(|(_, _, resource, action)| state.authz.allows(&session.roles, resource, action))
            .map(|(href, label, _, _)| NavItem {
                href,
                label,
                active: *href == active,
            })
            .collect();
        Ok(Self {
            name: session.display_name.clone(),
            email: session.email.clone(),
            roles: if session.roles.is_empty() {
                "no roles".to_owned()
            } else {
                session.roles.join(", ")
            },
            csrf: visitor.csrf.clone(),
            nav,
            request_id: visitor.ctx.request_id.clone(),
        })
    }
}

/// Renders a template into an HTML response.
pub fn html<T: askama::Template>(page: &T) -> Result<axum::response::Html<String>, AppError> {
    Ok(axum::response::Html(page.render()?))
}
