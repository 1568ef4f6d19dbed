//! The evaluators: each control's state computed from the live records, with the facts it
//! looked at. They read through the capabilities' own operations (retention control, SLA
//! record, audit verification, vendor gate …) and add a query only to name the offending
//! records. Nothing here changes anything.

use sqlx::{AnyConnection, Row};

use super::model::{ControlState, Outcome, when};
use super::residency::{Declared, is_eu_region};
use crate::app::AppState;
use crate::clock::{DAY, HOUR, MINUTE, Millis, format_ms};
use crate::portal::routes::Access;

/// Days of history the clock-based controls (INC-1, DSC-1) look back over.
pub const PERIOD_DAYS: i64 = 90;
/// The newest backup may be this old.
pub const BACKUP_MAX_AGE: Millis = 2 * DAY;
/// A restore test must have passed this recently.
pub const RESTORE_TEST_MAX_AGE: Millis = 8 * DAY;
/// The purge job must have succeeded this recently.
pub const PURGE_MAX_AGE: Millis = DAY;
/// The anomaly detectors must have run this recently.
pub const DETECTORS_MAX_AGE: Millis = 10 * MINUTE;
/// The longest window full client addresses may be kept (DMN-1).
pub const MAX_IP_RETENTION_DAYS: i64 = 30;
/// Offending records named per control, at most.
const MAX_OFFENDING: i64 = 50;

/// Evaluates the control `id` at the clock's now.
pub async fn evaluate(state: &AppState, id: &str) -> anyhow::Result<Outcome> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let conn = &mut *conn;
    Ok(match id {
        "TLS-1" => tls(state),
        "KEY-1" => keys(conn).await?,
        "BAK-1" => backups(state, now).await?,
        "RET-1" => retention(state, conn, now, "production").await?,
        "RET-2" => retention(state, conn, now, "demo").await?,
        "ISO-1" => isolation(state.analyzer.isolation_report(), &state.blobs.location),
        "MFA-1" => mfa(conn).await?,
        "RBAC-1" => rbac(&crate::portal::routes::table(), &state.authz),
        "REV-1" => review(state, conn, now).await?,
        "VND-1" => vendors(conn, now, VendorCheck::Assessment).await?,
        "VND-2" => vendors(conn, now, VendorCheck::Dpa).await?,
        "MON-1" => monitoring(state, now).await?,
        "INC-1" => incidents(conn, now).await?,
        "PEN-1" => critical_findings(conn, now).await?,
        "PEN-2" => pentest(state, conn, now).await?,
        "RES-1" => residency(state, conn, now).await?,
        "DSC-1" => disclosures(conn, now).await?,
        "DSC-2" => disclosure_channel(state, now),
        "DMN-1" => minimisation(state, conn, now).await?,
        "AUD-1" => audit_chain(state).await?,
        other => anyhow::bail!("no control {other} in the catalogue"),
    })
}

/// TLS-1: TLS here, or a declared TLS proxy in front with an https public URL.
pub fn tls(state: &AppState) -> Outcome {
    let config = &state.config;
    let public_https = config.public_url.starts_with("https://");
    let listen = config.listen_addr().map(|a| a.ip().is_loopback());
    let outcome = if state.tls {
        Outcome::new(
            ControlState::Passing,
            "This listener terminates TLS itself (TLS 1.2 and 1.3 only).",
        )
    } else if config.behind_proxy && public_https {
        Outcome::new(
            ControlState::Passing,
            "TLS is terminated by the declared proxy; the public URL is https.",
        )
    } else if config.behind_proxy {
        Outcome::new(
            ControlState::Failing,
            "A proxy is declared but public_url is not an https:// URL.",
        )
    } else {
        Outcome::new(
            ControlState::Failing,
            "Plain HTTP on a loopback address and no TLS proxy declared: nothing shows that \
             traffic from outside is encrypted.",
        )
    };
    outcome
        .fact("TLS terminated here", yes_no(state.tls))
        .fact("Behind a declared proxy", yes_no(config.behind_proxy))
        .fact(
            "Public URL scheme",
            if public_https {
                "https"
            } else if config.public_url.is_empty() {
                "not set"
            } else {
                "not https"
            },
        )
        .fact("Listens on loopback only", listen.map_or("unknown", yes_no))
        .fact("Protocol versions", "TLS 1.2, TLS 1.3 (rustls)")
}

/// KEY-1: no text column of the key table holds something that parses as a key, and every
/// hash has the shape of an HMAC-SHA256.
pub async fn keys(conn: &mut AnyConnection) -> anyhow::Result<Outcome> {
    let rows = sqlx::query(
        "SELECT id, name, prefix, key_hash, pepper_id, scopes, created_by, \
         COALESCE(revoked_by, '') AS revoked_by, COALESCE(replaced_by, '') AS replaced_by \
         FROM api_keys ORDER BY created_at",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut plaintext = Vec::new();
    let mut bad_hash = Vec::new();
    for row in &rows {
        let id: String = row.try_get("id")?;
        let mut found = false;
        for column in [
            "name",
            "prefix",
            "key_hash",
            "pepper_id",
            "scopes",
            "created_by",
            "revoked_by",
            "replaced_by",
        ] {
            let value: String = row.try_get(column)?;
            if holds_key(&value) {
                found = true;
            }
        }
        if found {
            plaintext.push(id.clone());
        }
        let hash: String = row.try_get("key_hash")?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bad_hash.push(id);
        }
    }
    let ok = plaintext.is_empty() && bad_hash.is_empty();
    Ok(Outcome::pass_if(
        ok,
        format!("{} keys scanned: 0 plaintext keys.", rows.len()),
        format!(
            "{} of {} keys hold a value that parses as a key or a hash of the wrong shape.",
            plaintext.len() + bad_hash.len(),
            rows.len()
        ),
    )
    .fact("Keys scanned", rows.len())
    .fact("Values that parse as a key", plaintext.len())
    .fact("Hashes not HMAC-SHA256 shaped", bad_hash.len())
    .offending(
        plaintext
            .into_iter()
            .chain(bad_hash)
            .map(|id| format!("key:{id}")),
    ))
}

/// Whether `text`, or any word of it, parses as a trustplane key (shape and checksum).
fn holds_key(text: &str) -> bool {
    crate::keys::format::parse(text.trim()).is_ok()
        || text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| crate::keys::format::parse(word).is_ok())
}

/// BAK-1: a recent backup, sealed under a key id, and a recent passed restore test.
pub async fn backups(state: &AppState, now: Millis) -> anyhow::Result<Outcome> {
    let status = crate::backup::status(state).await?;
    let newest = sqlx::query("SELECT id, key_id FROM backups ORDER BY at DESC LIMIT 1")
        .fetch_optional(&state.db.pool)
        .await?;
    let (newest_id, key_id) = match &newest {
        Some(row) => (
            row.try_get::<String, _>("id")?,
            row.try_get::<String, _>("key_id")?,
        ),
        None => (String::new(), String::new()),
    };
    let Some(last_backup) = status.last_backup_at else {
        return Ok(
            Outcome::new(ControlState::NoData, "No backup has been made yet.")
                .fact("Last backup", "never"),
        );
    };
    let fresh = now - last_backup <= BACKUP_MAX_AGE;
    let sealed = !key_id.is_empty();
    let tested = status.last_restore_ok == Some(true)
        && status
            .last_restore_test_at
            .is_some_and(|at| now - at <= RESTORE_TEST_MAX_AGE);
    let mut problems = Vec::new();
    if !fresh {
        problems.push("the newest backup is older than 2 days");
    }
    if !sealed {
        problems.push("the newest backup names no encryption key");
    }
    if !tested {
        problems.push("no restore test passed in the last 8 days");
    }
    let mut outcome = Outcome::pass_if(
        problems.is_empty(),
        "The newest backup is recent and AES-256-GCM sealed; a restore test passed recently.",
        format!("Backups: {}.", problems.join("; ")),
    )
    .fact("Last backup", format_ms(last_backup))
    .fact("Encryption", "AES-256-GCM")
    .fact("Key id", if sealed { key_id.as_str() } else { "none" })
    .fact("Last restore test", when(status.last_restore_test_at))
    .fact(
        "Last restore test result",
        match status.last_restore_ok {
            Some(true) => "passed",
            Some(false) => "failed",
            None => "none",
        },
    );
    if !problems.is_empty() && !newest_id.is_empty() {
        outcome = outcome.offending([format!("backup:{newest_id}")]);
    }
    Ok(outcome)
}

/// RET-1 / RET-2: the oldest stored image of `kind` within its limit and a recent purge.
pub async fn retention(
    state: &AppState,
    conn: &mut AnyConnection,
    now: Millis,
    kind: &str,
) -> anyhow::Result<Outcome> {
    let control = crate::retention::control(state).await?;
    let (limit_days, age, ok) = if kind == "production" {
        (
            crate::customers::MAX_PRODUCTION_RETENTION_DAYS,
            control.oldest_production_age_ms,
            control.production_ok,
        )
    } else {
        (
            crate::customers::MAX_DEMO_RETENTION_DAYS,
            control.oldest_demo_age_ms,
            control.demo_ok,
        )
    };
    let last_run = crate::jobs::store::recent_runs(&state.db, "retention_purge", 5)
        .await?
        .into_iter()
        .find(|r| r.outcome != "running");
    let purge_ok = last_run.as_ref().is_some_and(|r| {
        r.outcome == "ok" && r.finished_at.is_some_and(|at| now - at <= PURGE_MAX_AGE)
    });
    let over: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM images WHERE kind = $1 AND blob_key IS NOT NULL AND created_at < $2 \
         ORDER BY created_at LIMIT $3",
    )
    .bind(kind)
    .bind(now - limit_days * DAY)
    .bind(MAX_OFFENDING)
    .fetch_all(&mut *conn)
    .await?;
    let base = if last_run.is_none() && age.is_none() {
        Outcome::new(
            ControlState::NoData,
            format!("No {kind} image is stored and the purge has not run yet."),
        )
    } else if !ok {
        Outcome::new(
            ControlState::Failing,
            format!("A stored {kind} image is older than {limit_days} days."),
        )
    } else if !purge_ok {
        Outcome::new(
            ControlState::Failing,
            "The purge job has not succeeded within the last day.",
        )
    } else {
        Outcome::new(
            ControlState::Passing,
            format!("Every stored {kind} image is younger than {limit_days} days."),
        )
    };
    Ok(base
        .fact("Retention limit", format!("{limit_days} days"))
        .fact("Oldest stored image age", age_label(age))
        .fact(
            "Last purge run",
            last_run
                .as_ref()
                .map(|r| format!("{} ({})", when(r.finished_at), r.outcome))
                .unwrap_or_else(|| "never".into()),
        )
        .fact(
            "Last purge recorded in the ledger",
            when(control.last_purge_at),
        )
        .offending(over.into_iter().map(|id| format!("image:{id}"))))
}

/// ISO-1: image workers confined by the kernel; stored images sealed per owner.
pub fn isolation(report: crate::biometric::IsolationReport, blob_location: &str) -> Outcome {
    use crate::biometric::IsolationReport;
    let storage = if blob_location.starts_with("local:") {
        "local folder"
    } else {
        "object store"
    };
    let outcome = match report {
        IsolationReport::InProcess => Outcome::new(
            ControlState::Failing,
            "Images are analysed inside the server process (detect_isolation = \"thread\").",
        )
        .fact("Image analysis", "in the server process"),
        IsolationReport::Pending => Outcome::new(
            ControlState::NoData,
            "No image worker has reported its confinement yet (none has started).",
        )
        .fact("Image analysis", "worker processes (none started yet)"),
        IsolationReport::Workers(status) => Outcome::pass_if(
            status.is_confined(),
            "Images are analysed in confined worker processes.",
            "An image worker reported weaker confinement than required.",
        )
        .fact("Image analysis", "separate worker processes")
        .fact("no_new_privs", yes_no(status.no_new_privs))
        .fact("Landlock", format!("{:?}", status.landlock))
        .fact("seccomp", format!("{:?}", status.seccomp))
        .fact("Resource limits", status.rlimits.clone()),
    };
    outcome
        .fact("Stored images", "AES-256-GCM, bound to owner and key")
        .fact("Blob store", storage)
}

/// MFA-1: every enabled staff account has a verified second factor.
pub async fn mfa(conn: &mut AnyConnection) -> anyhow::Result<Outcome> {
    let rows = sqlx::query(
        "SELECT id, totp_enabled, last_mfa_method FROM staff WHERE disabled = 0 \
         ORDER BY created_at, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    // A second factor is a verified TOTP, or multi-factor authentication the identity
    // provider asserted at the person's last single sign-on.
    let mut without = Vec::new();
    let mut idp_asserted = 0;
    for row in &rows {
        let totp = row.try_get::<i32, _>("totp_enabled")? != 0;
        let idp = row
            .try_get::<Option<String>, _>("last_mfa_method")?
            .as_deref()
            == Some("idp_amr");
        if !totp && idp {
            idp_asserted += 1;
        }
        if !totp && !idp {
            without.push(format!("staff:{}", row.try_get::<String, _>("id")?));
        }
    }
    if rows.is_empty() {
        return Ok(
            Outcome::new(ControlState::NoData, "No enabled staff account exists yet.")
                .fact("Enabled staff accounts", 0),
        );
    }
    Ok(Outcome::pass_if(
        without.is_empty(),
        format!(
            "All {} enabled staff accounts have a second factor.",
            rows.len()
        ),
        format!(
            "{} of {} enabled staff accounts have no second factor.",
            without.len(),
            rows.len()
        ),
    )
    .fact("Enabled staff accounts", rows.len())
    .fact("With a verified second factor", rows.len() - without.len())
    .fact(
        "Of those, MFA asserted by the identity provider only",
        idp_asserted,
    )
    .fact("Without", without.len())
    .offending(without))
}

/// Paths that may be served without a session: health, static files, login, the processing
/// API and the public trust surface.
const PUBLIC_PREFIXES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/static/",
    "/login",
    "/setup",
    "/trust",
    "/security",
    "/.well-known/",
];

/// RBAC-1: every route has a guard, each role-guarded route is reachable by at least one role
/// of the loaded policy, and only the public surface is open.
pub fn rbac(
    routes: &[(axum::http::Method, &'static str, Access)],
    authz: &crate::authz::Authz,
) -> Outcome {
    const ROLES: [&str; 5] = ["admin", "security", "reviewer", "compliance", "auditor"];
    let mut guarded = 0;
    let mut open = 0;
    let mut sessions = 0;
    let mut offending = Vec::new();
    for (method, path, access) in routes {
        match access {
            Access::Rbac(resource, action) => {
                guarded += 1;
                if !ROLES.iter().any(|r| authz.allows(&[r], resource, action)) {
                    offending.push(format!(
                        "route:{method} {path} (no role may {action} {resource})"
                    ));
                }
            }
            Access::Public | Access::PublicForm => {
                open += 1;
                if !PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
                    offending.push(format!(
                        "route:{method} {path} (open outside the public surface)"
                    ));
                }
            }
            Access::AnySession | Access::Pending(_) => sessions += 1,
        }
    }
    let policy_loaded = authz.allows(&["admin"], "dashboard", "read");
    if !policy_loaded {
        offending.push("policy:not loaded (admin cannot read the dashboard)".to_owned());
    }
    Outcome::pass_if(
        offending.is_empty(),
        format!(
            "All {} routes are guarded; the policy is loaded.",
            routes.len()
        ),
        format!("{} route or policy problems.", offending.len()),
    )
    .fact("Routes", routes.len())
    .fact("Guarded by role", guarded)
    .fact("Public surface", open)
    .fact("Login steps and logout", sessions)
    .fact("Policy loaded", yes_no(policy_loaded))
    .fact("Default", "deny")
    .offending(offending)
}

/// REV-1: the quarter's (or the previous quarter's) campaign exists, is on time and its
/// changes were carried out.
pub async fn review(
    state: &AppState,
    conn: &mut AnyConnection,
    now: Millis,
) -> anyhow::Result<Outcome> {
    let settings = crate::reviews::Settings::from_config(&state.config);
    let Some(card) = crate::reviews::card_status(conn, &settings, now).await? else {
        return Ok(Outcome::new(
            ControlState::Failing,
            "No access-review campaign has ever been opened.",
        )
        .fact("Latest campaign", "none"));
    };
    let mut outcome = Outcome::pass_if(
        card.ok,
        format!(
            "The {} campaign is on time{}.",
            card.quarter,
            if card.signed_off {
                " and signed off"
            } else {
                ""
            }
        ),
        format!(
            "The latest campaign ({}) is not for this or the previous quarter, is overdue, or \
             has failed changes.",
            card.quarter
        ),
    )
    .fact("Latest campaign", &card.quarter)
    .fact("Signed off", yes_no(card.signed_off))
    .fact("Items decided", format!("{} %", card.percent))
    .fact("Changes that failed", card.failed);
    if !card.due.is_empty() {
        outcome = outcome.fact("Due", &card.due);
    }
    if !card.ok {
        outcome = outcome.offending([format!("review:{}", card.campaign_id)]);
    }
    Ok(outcome)
}

/// Which half of the vendor gate a control checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorCheck {
    Assessment,
    Dpa,
}

/// VND-1 / VND-2: every active vendor passes its half of the onboarding gate today.
pub async fn vendors(
    conn: &mut AnyConnection,
    now: Millis,
    check: VendorCheck,
) -> anyhow::Result<Outcome> {
    use crate::vendors::{model::State, store};
    let (active, _) = store::list(
        conn,
        &store::VendorFilter {
            state: Some(State::Active),
            limit: 5000,
            ..Default::default()
        },
    )
    .await
    .map_err(anyhow::Error::from)?;
    let in_scope: Vec<_> = active
        .into_iter()
        .filter(|v| check == VendorCheck::Assessment || v.handles_personal_data())
        .collect();
    let scope = match check {
        VendorCheck::Assessment => "active vendors",
        VendorCheck::Dpa => "active vendors handling personal data",
    };
    if in_scope.is_empty() {
        return Ok(Outcome::new(
            ControlState::NotApplicable,
            format!("There are no {scope}."),
        )
        .fact(&capitalise(scope), 0));
    }
    let mut offending = Vec::new();
    for vendor in &in_scope {
        let problems = crate::vendors::gate(conn, vendor, now)
            .await
            .map_err(anyhow::Error::from)?;
        let relevant = problems.iter().any(|p| match check {
            VendorCheck::Assessment => p.contains("assessment"),
            VendorCheck::Dpa => p.contains("DPA"),
        });
        if relevant {
            offending.push(format!("vendor:{}", vendor.id));
        }
    }
    let what = match check {
        VendorCheck::Assessment => "a passed, unexpired assessment",
        VendorCheck::Dpa => "an unexpired DPA",
    };
    Ok(Outcome::pass_if(
        offending.is_empty(),
        format!("All {} {scope} have {what}.", in_scope.len()),
        format!(
            "{} of {} {scope} lack {what}.",
            offending.len(),
            in_scope.len()
        ),
    )
    .fact(&capitalise(scope), in_scope.len())
    .fact(&format!("Without {what}"), offending.len())
    .offending(offending))
}

/// MON-1: the detectors are scheduled and ran successfully within the last 10 minutes.
pub async fn monitoring(state: &AppState, now: Millis) -> anyhow::Result<Outcome> {
    let runs = crate::jobs::store::recent_runs(&state.db, "alerts_detect", 20).await?;
    let last_ok = runs
        .iter()
        .filter(|r| r.outcome == "ok")
        .filter_map(|r| r.finished_at)
        .max();
    let last_failed = runs.iter().find(|r| r.outcome == "failed");
    let mut conn = state.db.pool.acquire().await?;
    let active_alerts = crate::alerts::store::active_count(&mut conn).await?;
    let recent = last_ok.is_some_and(|at| now - at <= DETECTORS_MAX_AGE);
    let outcome = if !state.config.scheduler_enabled {
        Outcome::new(
            ControlState::Failing,
            "The scheduler is off on this node, so the detectors do not run here.",
        )
    } else if last_ok.is_none() && runs.is_empty() {
        Outcome::new(ControlState::NoData, "The detectors have not run yet.")
    } else {
        Outcome::pass_if(
            recent,
            "The anomaly detectors ran within the last 10 minutes.",
            "The anomaly detectors have not run successfully within the last 10 minutes.",
        )
    };
    let mut outcome = outcome
        .fact(
            "Scheduler",
            if state.config.scheduler_enabled {
                "on"
            } else {
                "off"
            },
        )
        .fact(
            "Detectors",
            "API rate and error spikes, key guessing, login failures, demo abuse, dormant keys",
        )
        .fact("Last successful run", when(last_ok))
        .fact("Open alerts", active_alerts);
    if let Some(failed) = last_failed.filter(|_| !recent) {
        outcome = outcome.offending([format!("job_run:{}", failed.id)]);
    }
    Ok(outcome)
}

/// Clocks of `kind` (any of `names`) breached, or running past their deadline, decided in
/// the period: their portal links.
async fn breached_clocks(
    conn: &mut AnyConnection,
    kind: &str,
    names: &[&str],
    since: Millis,
    now: Millis,
) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT name, link_path FROM sla_clocks WHERE subject_kind = $1 AND due_at >= $2 \
         AND (state = 'breached' OR (state = 'running' AND due_at <= $3)) \
         ORDER BY due_at LIMIT $4",
    )
    .bind(kind)
    .bind(since)
    .bind(now)
    .bind(MAX_OFFENDING * 4)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        if names.contains(&name.as_str()) {
            let link: String = row.try_get("link_path")?;
            out.push(format!("{name}:{link}"));
        }
    }
    out.truncate(usize::try_from(MAX_OFFENDING).unwrap_or(50));
    Ok(out)
}

/// INC-1: every incident of the period triaged within its clock, none waiting past it.
pub async fn incidents(conn: &mut AnyConnection, now: Millis) -> anyhow::Result<Outcome> {
    let since = now - PERIOD_DAYS * DAY;
    let (met, breached) = crate::incidents::store::triage_record(conn, now, since).await?;
    let (waiting, overdue, _) = crate::incidents::store::open_by_triage_state(conn, now).await?;
    if met + breached + waiting + overdue == 0 {
        return Ok(Outcome::new(
            ControlState::NotApplicable,
            "No incident was detected in the last 90 days.",
        )
        .fact("Incidents decided in the period", 0));
    }
    let offending = breached_clocks(
        conn,
        "incident",
        &[crate::incidents::TRIAGE_CLOCK],
        since,
        now,
    )
    .await?;
    Ok(Outcome::pass_if(
        breached == 0 && overdue == 0,
        format!("{met} incidents of the last 90 days were triaged within their clock."),
        format!("{breached} incidents of the last 90 days missed their triage clock."),
    )
    .fact("Period", "last 90 days")
    .fact("Triaged in time", met)
    .fact("Triage late or overdue", breached)
    .fact("Open, awaiting triage in time", waiting)
    .fact("Open, past the triage deadline", overdue)
    .fact("Within SLA", percent(met, breached))
    .offending(offending))
}

/// PEN-1: no critical finding of the last 12 months missed its 72-hour clock.
pub async fn critical_findings(conn: &mut AnyConnection, now: Millis) -> anyhow::Result<Outcome> {
    let since = now - 365 * DAY;
    let (met, breached) = crate::findings::critical_record(conn, now, since).await?;
    let running: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM findings f JOIN sla_clocks c ON c.subject_kind = 'finding' \
         AND c.subject_id = f.id AND c.name = $1 \
         WHERE f.severity = 'critical' AND f.confirmed_at >= $2 AND c.state IN ('running', 'paused')",
    )
    .bind(crate::findings::REMEDIATION_CLOCK)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    if met + breached + running == 0 {
        return Ok(Outcome::new(
            ControlState::NotApplicable,
            "No critical finding was confirmed in the last 12 months.",
        )
        .fact("Critical findings in the period", 0));
    }
    let offending: Vec<String> = sqlx::query_scalar(
        "SELECT f.id FROM findings f JOIN sla_clocks c ON c.subject_kind = 'finding' \
         AND c.subject_id = f.id AND c.name = $1 \
         WHERE f.severity = 'critical' AND f.confirmed_at >= $2 \
         AND (c.state = 'breached' OR (c.state = 'running' AND c.due_at <= $3)) \
         ORDER BY f.confirmed_at LIMIT $4",
    )
    .bind(crate::findings::REMEDIATION_CLOCK)
    .bind(since)
    .bind(now)
    .bind(MAX_OFFENDING)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Outcome::pass_if(
        breached == 0,
        "No critical finding missed its 72-hour remediation clock.",
        format!("{breached} critical findings missed (or are past) their 72-hour clock."),
    )
    .fact("Period", "last 12 months")
    .fact("Fixed in time", met)
    .fact("Late or overdue", breached)
    .fact("Still within their clock", running)
    .offending(offending.into_iter().map(|id| format!("finding:{id}"))))
}

/// PEN-2: the most recent engagement's next-test clock has not run out.
pub async fn pentest(
    state: &AppState,
    conn: &mut AnyConnection,
    now: Millis,
) -> anyhow::Result<Outcome> {
    let Some(status) = crate::findings::engagements::status(conn, &state.sla_calendar, now).await?
    else {
        return Ok(
            Outcome::new(ControlState::Failing, "No penetration test is recorded.")
                .fact("Most recent test", "none"),
        );
    };
    let mut outcome = Outcome::pass_if(
        !status.overdue,
        format!(
            "The most recent test ({}) is less than 12 months old.",
            status.quarter
        ),
        format!(
            "The most recent test ({}) is more than 12 months old.",
            status.quarter
        ),
    )
    .fact("Most recent test", &status.quarter)
    .fact("Firm", &status.engagement.firm)
    .fact("Ended on", status.engagement.ended_on)
    .fact("Next test due", format_ms(status.next_due_at))
    .fact("Days left", status.days_left);
    outcome.public_note = Some(format!("Most recent test: {}", status.quarter));
    if status.overdue {
        outcome = outcome.offending([format!("engagement:{}", status.engagement.id)]);
    }
    Ok(outcome)
}

/// RES-1: declared regions in the EU, no override, transfer mechanisms for vendors abroad.
pub async fn residency(
    state: &AppState,
    conn: &mut AnyConnection,
    now: Millis,
) -> anyhow::Result<Outcome> {
    let declared = Declared::of(&state.config);
    let status = crate::vendors::register_status(conn, now)
        .await
        .map_err(anyhow::Error::from)?;
    let transfers: Vec<String> = status
        .lapsed
        .iter()
        .filter(|l| l.contains("transfer mechanism"))
        .map(|l| format!("vendor:{}", l.split(':').next().unwrap_or(l)))
        .collect();
    let region_label = |r: &str| {
        if r.is_empty() {
            "not declared".to_owned()
        } else if is_eu_region(r) {
            format!("{r} (EU)")
        } else {
            format!("{r} (outside the EU)")
        }
    };
    let mut problems = Vec::new();
    if declared.override_on {
        problems.push("allow_non_eu_storage is on".to_owned());
    }
    for (what, region) in [
        ("the database", &declared.database),
        ("the blob store", &declared.blob_store),
    ] {
        if !region.is_empty() && !is_eu_region(region) {
            problems.push(format!("{what} is in {region}, outside the EU"));
        }
    }
    if !transfers.is_empty() {
        problems.push(format!(
            "{} active vendors outside the EU/EEA lack a transfer mechanism",
            transfers.len()
        ));
    }
    let outcome = if !problems.is_empty() {
        Outcome::new(
            ControlState::Failing,
            format!("{}.", capitalise(&problems.join("; "))),
        )
    } else if declared.database.is_empty() || declared.blob_store.is_empty() {
        Outcome::new(
            ControlState::NoData,
            "The region of the database or the blob store is not declared (data_region).",
        )
    } else {
        Outcome::new(
            ControlState::Passing,
            "The database and the blob store run in declared EU regions.",
        )
    };
    Ok(outcome
        .fact("Database region", region_label(&declared.database))
        .fact("Blob store", &declared.blob_kind)
        .fact("Blob store region", region_label(&declared.blob_store))
        .fact(
            "Non-EU storage override",
            if declared.override_on { "on" } else { "off" },
        )
        .fact(
            "Vendors abroad without a transfer mechanism",
            transfers.len(),
        )
        .offending(transfers))
}

/// DSC-1: no disclosure clock of the period breached, none past its deadline.
pub async fn disclosures(conn: &mut AnyConnection, now: Millis) -> anyhow::Result<Outcome> {
    let since = now - PERIOD_DAYS * DAY;
    let record = crate::sla::record(conn, now, crate::sla::SubjectKind::Disclosure, since).await?;
    let (open, overdue) = crate::disclosures::store::open_counts(conn, now).await?;
    if record.met + record.breached + open == 0 {
        return Ok(Outcome::new(
            ControlState::NotApplicable,
            "No disclosure report in the last 90 days.",
        )
        .fact("Reports in the period", 0));
    }
    let offending = breached_clocks(
        conn,
        "disclosure",
        &[
            crate::disclosures::ACK_CLOCK,
            crate::disclosures::TRIAGE_CLOCK,
            crate::disclosures::FIX_CLOCK,
        ],
        since,
        now,
    )
    .await?;
    let mut outcome = Outcome::pass_if(
        record.breached == 0 && overdue == 0,
        "Every disclosure clock of the last 90 days was met.",
        format!(
            "{} disclosure clocks of the last 90 days were missed.",
            record.breached
        ),
    )
    .fact("Period", "last 90 days")
    .fact("Clocks met", record.met)
    .fact("Clocks missed", record.breached);
    for line in &record.by_name {
        outcome = outcome.fact(
            &format!("{} met / missed", line.name.replace('_', " ")),
            format!("{} / {}", line.met, line.breached),
        );
    }
    Ok(outcome
        .fact("Open reports", open)
        .fact("Open reports past a deadline", overdue)
        .offending(offending))
}

/// DSC-2: security.txt is served with a contact and a valid Expires; the form is routed.
pub fn disclosure_channel(state: &AppState, now: Millis) -> Outcome {
    let body = crate::disclosures::policy::security_txt(state, now);
    let contacts = body.lines().filter(|l| l.starts_with("Contact:")).count();
    let expires = body
        .lines()
        .find_map(|l| l.strip_prefix("Expires: "))
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.trim()).ok())
        .map(|t| t.timestamp_millis());
    let table = crate::portal::routes::table();
    let served = |path: &str, method: axum::http::Method| {
        table.iter().any(|(m, p, a)| {
            *m == method && *p == path && matches!(a, Access::Public | Access::PublicForm)
        })
    };
    let txt = served("/.well-known/security.txt", axum::http::Method::GET);
    let form = served("/security/report", axum::http::Method::GET)
        && served("/security/report", axum::http::Method::POST);
    let expires_ok = expires.is_some_and(|at| at > now && at - now < 365 * DAY);
    let mut problems = Vec::new();
    if !txt {
        problems.push("security.txt is not served");
    }
    if !form {
        problems.push("the report form is not served");
    }
    if contacts == 0 {
        problems.push("security.txt names no contact");
    }
    if !expires_ok {
        problems.push("security.txt's Expires is not within the next year");
    }
    Outcome::pass_if(
        problems.is_empty(),
        "security.txt and the confidential report form are served.",
        format!("Disclosure channel: {}.", problems.join("; ")),
    )
    .fact("/.well-known/security.txt served", yes_no(txt))
    .fact("Report form served", yes_no(form))
    .fact("Contacts listed", contacts)
    .fact("Expires", when(expires))
}

/// DMN-1: full client addresses kept no longer than the configured (≤ 30 days) window.
pub async fn minimisation(
    state: &AppState,
    conn: &mut AnyConnection,
    now: Millis,
) -> anyhow::Result<Outcome> {
    let days = state.config.audit_ip_retention_days;
    // The minimisation runs with the purge; allow one day for it to catch up.
    let stale: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE client_ip IS NOT NULL AND at < $1",
    )
    .bind(now - days * DAY - DAY)
    .fetch_one(&mut *conn)
    .await?;
    let window_ok = days <= MAX_IP_RETENTION_DAYS;
    let mut problems = Vec::new();
    if !window_ok {
        problems.push(format!(
            "audit_ip_retention_days is {days}, above {MAX_IP_RETENTION_DAYS}"
        ));
    }
    if stale > 0 {
        problems.push(format!(
            "{stale} audit rows keep a full client address past the window"
        ));
    }
    Ok(Outcome::pass_if(
        problems.is_empty(),
        format!(
            "Full client addresses are kept at most {days} days; stored images carry no metadata."
        ),
        format!("{}.", capitalise(&problems.join("; "))),
    )
    .fact("Full client address window", format!("{days} days"))
    .fact("Rows past the window", stale)
    .fact(
        "Image metadata (EXIF/GPS)",
        "removed by re-encoding before storage",
    )
    .fact(
        "Demo images stored at most",
        format!(
            "{} px on the longer side",
            state.config.demo_stored_max_dimension
        ),
    ))
}

/// AUD-1: the audit chain verifies from its first row to its head.
pub async fn audit_chain(state: &AppState) -> anyhow::Result<Outcome> {
    let verification = crate::audit::verify(&state.db).await?;
    let outcome = match &verification.first_bad {
        None => Outcome::new(
            ControlState::Passing,
            format!("The audit chain verifies: {} rows.", verification.checked),
        ),
        Some((seq, problem)) => Outcome::new(
            ControlState::Failing,
            format!("The audit chain breaks at row {seq}: {problem}."),
        )
        .offending([format!("audit:{seq}")]),
    };
    Ok(outcome.fact("Rows verified", verification.checked).fact(
        "Chain head",
        verification.head_hash.chars().take(16).collect::<String>(),
    ))
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn percent(met: i64, breached: i64) -> String {
    let total = met + breached;
    if total == 0 {
        "nothing decided".to_owned()
    } else {
        format!("{} %", met * 100 / total)
    }
}

fn age_label(age: Option<Millis>) -> String {
    match age {
        None => "none stored".to_owned(),
        Some(ms) if ms < 2 * DAY => format!("{} h", ms / HOUR),
        Some(ms) => format!("{} d {} h", ms / DAY, (ms % DAY) / HOUR),
    }
}
