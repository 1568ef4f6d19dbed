//! The dashboard: live controls that exist today (MFA coverage, audit chain) and labelled
//! placeholders for the areas still to come.

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use crate::app::AppState;
use crate::audit;
use crate::error::AppResult;
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::staff::store;

pub fn routes() -> Vec<PortalRoute> {
    vec![PortalRoute::get(
        "/",
        Access::Rbac("dashboard", "read"),
        dashboard_get,
    )]
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    shell: Shell,
    staff_total: i64,
    staff_with_mfa: i64,
    mfa_ok: bool,
    audit_rows: i64,
    audit_head: String,
    upcoming: Vec<(&'static str, &'static str, &'static str)>,
}

async fn dashboard_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Html<String>> {
    let (staff_total, staff_with_mfa) = store::mfa_counts(&state.db).await?;
    let (audit_rows, head_hash) = audit::head(&state.db).await?;
    html(&DashboardPage {
        shell: Shell::new(&state, &visitor, "/")?,
        staff_total,
        staff_with_mfa,
        mfa_ok: staff_total == staff_with_mfa,
        audit_rows,
        audit_head: head_hash.chars().take(16).collect(),
        upcoming: vec![
            (
                "KEY-1",
                "Customer API keys",
                "HMAC-SHA256 key inventory, rotation and revocation.",
            ),
            (
                "RET-1 / RET-2",
                "Image retention",
                "Encrypted image store and the 30-day / 7-day purge.",
            ),
            (
                "INC-1",
                "Incidents",
                "Triage timers with a 1-hour deadline and escalation.",
            ),
            (
                "REV-1",
                "Access reviews",
                "Quarterly campaigns over staff roles and API keys.",
            ),
            (
                "VND-1 / VND-2",
                "Sub-processors",
                "Assessment and DPA gate before onboarding.",
            ),
            (
                "PEN-1 / DSC-1",
                "Findings and disclosures",
                "Remediation and disclosure SLA clocks.",
            ),
            (
                "BAK-1",
                "Backups",
                "AES-256-GCM encrypted backups with restore tests.",
            ),
        ],
    })
}
