//! The dashboard: live controls that exist today (MFA coverage, audit chain, retention,
//! demo storage, backups, worker isolation, SLA clocks, the most recent pentest) and labelled
//! placeholders for the areas still to come.

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use crate::app::AppState;
use crate::audit;
use crate::biometric::{IsolationReport, LandlockState, SeccompState};
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

/// The RET-1 / RET-2 control as the dashboard shows it.
struct RetentionCard {
    production_ok: bool,
    demo_ok: bool,
    oldest_production: String,
    oldest_demo: String,
    last_purge: String,
}

/// The ISO-1 control as the dashboard shows it: how image workers are kept from the rest of
/// the machine, as the most recently started worker reported it.
struct IsolationCard {
    ok: bool,
    summary: &'static str,
    /// Mechanism and its state, in words.
    rows: Vec<(&'static str, String)>,
    /// What the worker said is weaker than intended.
    notes: Vec<String>,
}

impl IsolationCard {
    fn new(report: IsolationReport) -> Self {
        let status = match report {
            IsolationReport::InProcess => {
                return Self {
                    ok: false,
                    summary: "Images are analysed inside the server process \
                              (detect_isolation = \"thread\"): not isolated.",
                    rows: Vec::new(),
                    notes: Vec::new(),
                };
            }
            IsolationReport::Pending => {
                return Self {
                    ok: false,
                    summary: "No image worker has reported its confinement yet; \
                              check the server log if this persists.",
                    rows: Vec::new(),
                    notes: Vec::new(),
                };
            }
            IsolationReport::Workers(status) => status,
        };
        // Every Landlock ABI handles opening, creating, removing and running files; later ABIs
        // add finer rights (truncation, device ioctls, named Unix sockets).
        let landlock = match (status.landlock, status.landlock_abi) {
            (LandlockState::Enforced, _) => "enforced: no file access".to_owned(),
            (LandlockState::Partial, Some(abi)) => format!(
                "partially enforced (kernel ABI {abi}): no file can be opened, created or run"
            ),
            (LandlockState::Partial, None) => {
                "partially enforced: no file can be opened, created or run".to_owned()
            }
            (LandlockState::Unavailable, _) => "unavailable".to_owned(),
        };
        let seccomp = match status.seccomp {
            SeccompState::Enforced => {
                "enforced: no sockets, programs, new processes or ptrace".to_owned()
            }
            SeccompState::Unavailable => "unavailable".to_owned(),
        };
        let no_new_privs = if status.no_new_privs {
            "set"
        } else {
            "not set"
        };
        Self {
            ok: status.is_confined(),
            summary: "Separate processes of the server's user, confined by the kernel before \
                      they read an image. Not a container or VM.",
            rows: vec![
                ("rlimits", status.rlimits.clone()),
                ("Landlock", landlock),
                ("seccomp", seccomp),
                ("no_new_privs", no_new_privs.to_owned()),
            ],
            notes: status.notes,
        }
    }
}

/// The PEN-2 control: the most recent pentest and when the next is due. Red when none is
/// recorded or the next one is overdue.
struct PentestCard {
    ok: bool,
    /// `Q1 2026`, or empty when none is recorded.
    quarter: String,
    firm: String,
    ended_on: String,
    next_due: String,
    /// "in 64 days", "today", "overdue by 3 days".
    due_in: String,
}

impl PentestCard {
    fn new(status: Option<crate::findings::engagements::PentestStatus>) -> Self {
        let Some(status) = status else {
            return Self {
                ok: false,
                quarter: String::new(),
                firm: String::new(),
                ended_on: String::new(),
                next_due: String::new(),
                due_in: String::new(),
            };
        };
        let due_in = match status.days_left {
            _ if status.overdue => {
                let late = -status.days_left - 1;
                match late {
                    0 => "overdue since less than a day".to_owned(),
                    1 => "overdue by 1 day".to_owned(),
                    n => format!("overdue by {n} days"),
                }
            }
            0 => "due within a day".to_owned(),
            1 => "in 1 day".to_owned(),
            n => format!("in {n} days"),
        };
        Self {
            ok: !status.overdue,
            quarter: status.quarter,
            firm: status.engagement.firm,
            ended_on: status.engagement.ended_on.to_string(),
            next_due: crate::clock::format_ms(status.next_due_at),
            due_in,
        }
    }
}

/// Storage held by demo images against the demo quota, from the image records.
struct DemoStorageCard {
    used: String,
    quota: String,
    used_bytes: i64,
    images: i64,
    /// Whole percent of the quota in use.
    percent: u64,
    /// The demo answers 507 until the purge frees space.
    full: bool,
}

impl DemoStorageCard {
    fn new(usage: crate::images::StoredUsage, quota: u64) -> Self {
        let used = u64::try_from(usage.bytes).unwrap_or(0);
        Self {
            used: bytes_label(used),
            quota: bytes_label(quota),
            used_bytes: usage.bytes,
            images: usage.images,
            percent: used.saturating_mul(100) / quota.max(1),
            full: used >= quota,
        }
    }
}

/// Bytes in binary units with one decimal, e.g. `1.5 GiB`.
fn bytes_label(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, in integers, so no float rounding surprises.
    let mut unit = 0;
    let mut scaled = bytes;
    while scaled >= 1024 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    let tenths = (scaled * 10 + 512) / 1024;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

fn age_label(age: Option<i64>) -> String {
    match age {
        None => "none kept".to_owned(),
        Some(ms) => {
            let hours = ms / crate::clock::HOUR;
            if hours < 48 {
                format!("{hours} h")
            } else {
                format!("{} d {} h", hours / 24, hours % 24)
            }
        }
    }
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
    retention: RetentionCard,
    isolation: IsolationCard,
    demo_storage: DemoStorageCard,
    demo_max_dimension: u32,
    active_keys: i64,
    customers: i64,
    backup_ok: bool,
    last_backup: String,
    last_restore_test: String,
    sla_open: i64,
    sla_breached: i64,
    on_call: String,
    on_call_until: String,
    incidents: IncidentCard,
    /// Alerts still open or acknowledged (MON-1).
    alerts_active: i64,
    record: Vec<RecordBar>,
    pentest: PentestCard,
    /// REV-1: the newest access-review campaign, if any.
    review: Option<crate::reviews::CardStatus>,
    disclosures: DisclosureCard,
    vendors: crate::vendors::RegisterStatus,
    upcoming: Vec<(&'static str, &'static str, &'static str)>,
    /// The control catalogue at its latest evaluation.
    controls_total: usize,
    controls_passing: usize,
    controls_failing: usize,
}

/// Open disclosure reports, how many have a clock past its deadline, and the period's
/// record of the three disclosure clocks.
struct DisclosureCard {
    open: i64,
    overdue: i64,
    met: i64,
    breached: i64,
}

/// Open incidents by triage clock, and whether any triage clock of the period was breached.
struct IncidentCard {
    waiting: i64,
    overdue: i64,
    triaged: i64,
    ok: bool,
}

/// One bar of the 90-day SLA record chart: a promise, how often it was kept, and the counts.
struct RecordBar {
    control: &'static str,
    label: &'static str,
    met: i64,
    breached: i64,
    /// Whole percent met, or `None` when nothing fell in the period.
    percent: Option<i64>,
    /// Bar width in the SVG (0–200), computed here so the template does no arithmetic.
    width: i64,
    /// Vertical position of the bar in the SVG.
    y: i64,
    ok: bool,
}

impl RecordBar {
    fn new(
        control: &'static str,
        label: &'static str,
        (met, breached): (i64, i64),
        row: i64,
    ) -> Self {
        let total = met + breached;
        let percent = (total > 0).then(|| met * 100 / total);
        Self {
            control,
            label,
            met,
            breached,
            percent,
            width: percent.map_or(0, |p| p * 2),
            y: row * 34,
            ok: breached == 0,
        }
    }
}

/// The SLA record covers this many days.
const RECORD_DAYS: i64 = 90;

async fn dashboard_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Html<String>> {
    let (staff_total, staff_with_mfa) = store::mfa_counts(&state.db).await?;
    let (audit_rows, head_hash) = audit::head(&state.db).await?;
    let control = crate::retention::control(&state).await?;
    let backups = crate::backup::status(&state).await?;
    let mut conn = state.db.pool.acquire().await?;
    let (sla_open, sla_breached) = crate::sla::open_counts(&mut conn, state.now()).await?;
    let pentest =
        crate::findings::engagements::status(&mut conn, &state.sla_calendar, state.now()).await?;
    drop(conn);
    let demo_usage = crate::images::stored_usage(&state.db, crate::images::ImageKind::Demo).await?;
    let now = state.now();
    let since = now - RECORD_DAYS * crate::clock::DAY;
    let mut conn = state.db.pool.acquire().await?;
    let on_call = crate::oncall::on_call(&mut conn, now).await?;
    let (waiting, overdue, triaged) =
        crate::incidents::store::open_by_triage_state(&mut conn, now).await?;
    let triage = crate::incidents::store::triage_record(&mut conn, now, since).await?;
    let critical = crate::findings::critical_record(&mut conn, now, since).await?;
    let review_settings = crate::reviews::Settings::from_config(&state.config);
    let review = crate::reviews::card_status(&mut conn, &review_settings, now).await?;
    let (disclosures_open, disclosures_overdue) =
        crate::disclosures::store::open_counts(&mut conn, now).await?;
    let disclosure_record =
        crate::sla::record(&mut conn, now, crate::sla::SubjectKind::Disclosure, since).await?;
    let vendors = crate::vendors::register_status(&mut conn, now).await?;
    let alerts_active = crate::alerts::store::active_count(&mut conn).await?;
    drop(conn);
    let counts = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM customers) AS customers, \
         (SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)) AS keys",
    )
    .bind(state.now())
    .fetch_one(&state.db.pool)
    .await?;
    use sqlx::Row;
    let evaluations = crate::controls::store::latest_all(&state.db).await?;
    let controls_with = |s: crate::controls::model::ControlState| {
        evaluations.iter().filter(|e| e.state == s).count()
    };
    html(&DashboardPage {
        controls_total: crate::controls::catalogue::CATALOGUE.len(),
        controls_passing: controls_with(crate::controls::model::ControlState::Passing),
        controls_failing: controls_with(crate::controls::model::ControlState::Failing),
        shell: Shell::new(&state, &visitor, "/")?,
        staff_total,
        staff_with_mfa,
        mfa_ok: staff_total == staff_with_mfa,
        audit_rows,
        audit_head: head_hash.chars().take(16).collect(),
        retention: RetentionCard {
            production_ok: control.production_ok,
            demo_ok: control.demo_ok,
            oldest_production: age_label(control.oldest_production_age_ms),
            oldest_demo: age_label(control.oldest_demo_age_ms),
            last_purge: control
                .last_purge_at
                .map(crate::clock::format_ms)
                .unwrap_or_else(|| "never".into()),
        },
        demo_storage: DemoStorageCard::new(demo_usage, state.config.demo_storage_quota_bytes),
        demo_max_dimension: state.config.demo_stored_max_dimension,
        backup_ok: backups
            .last_backup_at
            .is_some_and(|at| state.now() - at <= 2 * crate::clock::DAY)
            && backups.last_restore_ok == Some(true),
        last_backup: backups
            .last_backup_at
            .map(crate::clock::format_ms)
            .unwrap_or_else(|| "never".into()),
        last_restore_test: match (backups.last_restore_test_at, backups.last_restore_ok) {
            (Some(at), Some(true)) => format!("passed {}", crate::clock::format_ms(at)),
            (Some(at), _) => format!("FAILED {}", crate::clock::format_ms(at)),
            (None, _) => "never".into(),
        },
        isolation: IsolationCard::new(state.analyzer.isolation_report()),
        sla_open,
        sla_breached,
        on_call: on_call
            .as_ref()
            .map(|c| format!("{} <{}>", c.person.name, c.person.email))
            .unwrap_or_else(|| "nobody: no rotation is set".into()),
        on_call_until: on_call
            .as_ref()
            .map(|c| crate::clock::format_ms(c.until))
            .unwrap_or_default(),
        incidents: IncidentCard {
            waiting,
            overdue,
            triaged,
            ok: overdue == 0 && triage.1 == 0,
        },
        alerts_active,
        record: vec![
            RecordBar::new("INC-1", "incidents triaged within their clock", triage, 0),
            RecordBar::new("PEN-1", "critical findings fixed within 72 h", critical, 1),
        ],
        pentest: PentestCard::new(pentest),
        review,
        disclosures: DisclosureCard {
            open: disclosures_open,
            overdue: disclosures_overdue,
            met: disclosure_record.met,
            breached: disclosure_record.breached,
        },
        vendors,
        active_keys: counts.try_get("keys")?,
        customers: counts.try_get("customers")?,
        upcoming: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::bytes_label;

    #[test]
    fn byte_labels_use_binary_units_with_one_decimal() {
        assert_eq!(bytes_label(0), "0 B");
        assert_eq!(bytes_label(1023), "1023 B");
        assert_eq!(bytes_label(1024), "1.0 KiB");
        assert_eq!(bytes_label(1536), "1.5 KiB");
        assert_eq!(bytes_label(1024 * 1024), "1.0 MiB");
        assert_eq!(bytes_label(2 * 1024 * 1024 * 1024), "2.0 GiB");
        assert_eq!(bytes_label(1_610_612_736), "1.5 GiB");
    }
}
