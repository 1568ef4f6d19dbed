//! What goes into an evidence pack: one [`Source`] per record set, each with the text of the
//! query or rule that produced it (the "information produced by the entity" an auditor asks
//! for). Adding a record set is one more entry in [`SOURCES`].
//!
//! Every query names its columns explicitly, so nothing secret can arrive by accident: no
//! key hashes, password hashes, TOTP secrets, recovery codes, session or status tokens, blob
//! locations, reporter contact details or full client addresses.

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::clock::Millis;
use crate::config::Config;
use crate::db::Db;

/// What a source's query is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binds {
    /// Nothing: the state as it is now.
    None,
    /// `$1` is the end of the period (state as of then).
    AsOf,
    /// `$1` and `$2` are the start and end of the period, `[from, to)`.
    Period,
}

/// Rows of a source that is not a single query: column names and rows of values.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// What a producer is given.
pub struct SourceCtx<'a> {
    pub db: &'a Db,
    pub config: &'a Config,
    pub from: Millis,
    pub to: Millis,
    pub now: Millis,
}

/// How a source's rows are produced.
#[derive(Clone, Copy)]
pub enum Producer {
    /// One SQL query, streamed row by row.
    Query { sql: &'static str, binds: Binds },
    /// A function of the period (small record sets: snapshots, another module's store call).
    Rows(for<'a> fn(&'a SourceCtx<'a>) -> BoxFuture<'a, anyhow::Result<Table>>),
}

/// One record set of the pack, written as `<name>.csv` and `<name>.json`.
#[derive(Clone, Copy)]
pub struct Source {
    /// Path inside the pack without extension, `<control area>/<records>`.
    pub name: &'static str,
    /// One sentence for the auditor's README.
    pub description: &'static str,
    /// The query or rule that produced it, as recorded in the manifest.
    pub rule: &'static str,
    pub producer: Producer,
}

impl Source {
    /// The rule as recorded: the SQL itself for queries.
    pub fn rule_text(&self) -> &'static str {
        match self.producer {
            Producer::Query { sql, .. } => sql,
            Producer::Rows(_) => self.rule,
        }
    }
}

const fn query(
    name: &'static str,
    description: &'static str,
    binds: Binds,
    sql: &'static str,
) -> Source {
    Source {
        name,
        description,
        rule: "",
        producer: Producer::Query { sql, binds },
    }
}

/// Every record set of a pack, in the order they are written. The audit log extract is
/// written after these by the pack itself, because it carries the chain hashes.
pub const SOURCES: &[Source] = &[
    query(
        "keys/api_keys",
        "Customer API key inventory as of the end of the period (KEY-1): display prefix, customer, scopes, dates and state. Never the key or its hash.",
        Binds::AsOf,
        "SELECT k.prefix, c.name AS customer, k.name AS key_name, k.scopes, k.created_at, k.created_by, k.expires_at, k.revoked_at, k.revoked_by, k.last_used_at, k.request_count, CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' WHEN k.expires_at IS NOT NULL AND k.expires_at <= $1 THEN 'expired' ELSE 'active' END AS state FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE k.created_at < $1 ORDER BY k.created_at, k.prefix",
    ),
    query(
        "staff/staff",
        "Staff accounts with their second-factor state (MFA-1). No password, TOTP or recovery data.",
        Binds::None,
        "SELECT s.id, s.email, s.display_name, CASE WHEN s.totp_enabled = 1 THEN 'totp' ELSE 'none' END AS mfa, CASE WHEN s.disabled = 1 THEN 'disabled' ELSE 'enabled' END AS account_state, s.created_at, s.last_login_at FROM staff s ORDER BY s.email",
    ),
    query(
        "staff/role_grants",
        "Role grants in force now (RBAC-1).",
        Binds::None,
        "SELECT r.staff_id, s.email, r.role, r.granted_by, r.granted_at FROM staff_roles r JOIN staff s ON s.id = r.staff_id ORDER BY s.email, r.role",
    ),
    query(
        "staff/role_changes",
        "Account and role changes during the period, from the audit log (RBAC-1, MFA-1).",
        Binds::Period,
        "SELECT a.seq, a.at, a.actor, a.action, a.target, a.outcome, a.details FROM audit_log a WHERE a.action LIKE 'staff.%' AND a.at >= $1 AND a.at < $2 ORDER BY a.seq",
    ),
    query(
        "reviews/campaigns",
        "Access-review campaigns open at any time during the period (REV-1).",
        Binds::Period,
        "SELECT c.id, c.quarter, c.state, c.opened_at, c.opened_by, c.period_start, c.period_end, c.item_count, c.signed_off_at, c.signed_off_by FROM review_campaigns c WHERE c.opened_at < $2 AND (c.signed_off_at IS NULL OR c.signed_off_at >= $1) ORDER BY c.opened_at",
    ),
    query(
        "reviews/decisions",
        "Every item of those campaigns: what was reviewed, by whom, the decision, its justification and its execution (REV-1).",
        Binds::Period,
        "SELECT c.quarter, i.number, i.kind, i.subject_label, i.role, i.mfa, i.customer_name, i.scopes, i.unused_scopes, i.flags, i.reviewer_email, i.decision, i.drop_list, i.justification, i.decided_at, i.decided_by, i.execution, i.execution_error, i.executed_at, i.verified_at FROM review_items i JOIN review_campaigns c ON c.id = i.campaign_id WHERE c.opened_at < $2 AND (c.signed_off_at IS NULL OR c.signed_off_at >= $1) ORDER BY c.opened_at, i.number",
    ),
    query(
        "incidents/incidents",
        "Incidents open at any time during the period, with detection, triage and resolution times (INC-1).",
        Binds::Period,
        "SELECT i.number, i.title, i.severity, i.status, i.source, i.personal_data, i.detected_at, i.reported_at, i.aware_at, i.triaged_at, i.resolved_at, i.closed_at FROM incidents i WHERE i.detected_at < $2 AND (i.closed_at IS NULL OR i.closed_at >= $1) ORDER BY i.number",
    ),
    query(
        "incidents/clocks",
        "Incident deadlines (triage, GDPR notice, controller notice) running during the period and how each ended (INC-1).",
        Binds::Period,
        "SELECT i.number AS incident, c.name AS clock, c.target, c.state, c.started_at, c.due_at, c.stopped_at, c.breached_at, c.paused_total_ms, CASE WHEN c.breached_at IS NOT NULL THEN 'breached' WHEN c.stopped_at IS NOT NULL THEN 'met' ELSE 'running' END AS outcome FROM sla_clocks c JOIN incidents i ON i.id = c.subject_id WHERE c.subject_kind = 'incident' AND c.started_at < $2 AND (c.stopped_at IS NULL OR c.stopped_at >= $1) ORDER BY i.number, c.started_at",
    ),
    query(
        "incidents/breach_notices",
        "Personal-data breach notifications to the supervisory authority (GDPR art. 33).",
        Binds::Period,
        "SELECT i.number AS incident, n.authority, n.reference, n.approx_subjects, n.approx_records, n.notified_at, n.late_reason, n.updated_at FROM incident_breach_notices n JOIN incidents i ON i.id = n.incident_id WHERE i.detected_at < $2 AND (i.closed_at IS NULL OR i.closed_at >= $1) ORDER BY i.number",
    ),
    query(
        "findings/findings",
        "Pentest and disclosure findings open at any time during the period, with confirmation and fix times (PEN-1).",
        Binds::Period,
        "SELECT f.number, f.title, f.severity, f.cvss_score, f.asset, f.source, f.engagement_id, f.status, f.created_at, f.confirmed_at, f.fixed_at, f.verified_at, f.risk_approver, f.risk_expires_at FROM findings f WHERE f.created_at < $2 AND (f.verified_at IS NULL OR f.verified_at >= $1) ORDER BY f.number",
    ),
    query(
        "findings/clocks",
        "Remediation deadlines of findings and the pentest-recency clock during the period, and how each ended (PEN-1, PEN-2).",
        Binds::Period,
        "SELECT c.subject_kind, c.subject_id, c.name AS clock, c.target, c.state, c.started_at, c.due_at, c.stopped_at, c.breached_at, CASE WHEN c.breached_at IS NOT NULL THEN 'breached' WHEN c.stopped_at IS NOT NULL THEN 'met' ELSE 'running' END AS outcome FROM sla_clocks c WHERE c.subject_kind IN ('finding', 'pentest') AND c.started_at < $2 AND (c.stopped_at IS NULL OR c.stopped_at >= $1) ORDER BY c.started_at, c.id",
    ),
    query(
        "findings/pentest_engagements",
        "Penetration-test engagements recorded by the end of the period, with the SHA-256 of each report (PEN-2).",
        Binds::AsOf,
        "SELECT e.id, e.firm, e.scope, e.started_on, e.ended_on, e.report_name, e.report_bytes, e.report_sha256, e.created_at, e.created_by FROM pentest_engagements e WHERE e.created_at < $1 ORDER BY e.started_on, e.id",
    ),
    query(
        "disclosures/reports",
        "Vulnerability reports received or worked during the period (DSC-1, DSC-2). No reporter contact details or report text.",
        Binds::Period,
        "SELECT d.number, d.status, d.severity, d.asset, d.credit_public, d.received_at, d.confirmed_at, d.finding_id, d.incident_id, d.updated_at FROM disclosures d WHERE d.received_at < $2 AND d.updated_at >= $1 ORDER BY d.number",
    ),
    query(
        "disclosures/clocks",
        "Disclosure clocks (acknowledge 24 h, triage 5 business days, critical fix 72 h) running during the period and how each ended (DSC-1).",
        Binds::Period,
        "SELECT d.number AS disclosure, c.name AS clock, c.target, c.state, c.started_at, c.due_at, c.stopped_at, c.breached_at, c.paused_total_ms, CASE WHEN c.breached_at IS NOT NULL THEN 'breached' WHEN c.stopped_at IS NOT NULL THEN 'met' ELSE 'running' END AS outcome FROM sla_clocks c JOIN disclosures d ON d.id = c.subject_id WHERE c.subject_kind = 'disclosure' AND c.started_at < $2 AND (c.stopped_at IS NULL OR c.stopped_at >= $1) ORDER BY d.number, c.started_at",
    ),
    query(
        "vendors/register",
        "The sub-processor register as of the end of the period (VND-1, VND-2, RES-1).",
        Binds::AsOf,
        "SELECT v.number, v.name, v.legal_entity, v.purpose, v.data_categories, v.data_subjects, v.locations, v.transfer_mechanism, v.scc_module, v.access_level, v.state, v.owner_email, v.contract_start, v.contract_end, v.activated_at, v.created_at FROM vendors v WHERE v.created_at < $1 ORDER BY v.number",
    ),
    query(
        "vendors/assessments",
        "Vendor security assessments: reviewer, date, result, score, risk tier and next due date (VND-1).",
        Binds::AsOf,
        "SELECT v.number AS vendor_number, v.name AS vendor, a.sequence, a.reviewer, a.assessed_at, a.result, a.score, a.risk_tier, a.next_due_at FROM vendor_assessments a JOIN vendors v ON v.id = a.vendor_id WHERE a.created_at < $1 ORDER BY v.number, a.sequence",
    ),
    query(
        "vendors/dpas",
        "Data-processing agreements on file: signed and expiry dates and the SHA-256 of each file (VND-2).",
        Binds::AsOf,
        "SELECT v.number AS vendor_number, v.name AS vendor, p.sequence, p.version, p.signed_at, p.expires_at, p.file_name, p.size_bytes, p.sha256, p.uploaded_by, p.created_at FROM vendor_dpas p JOIN vendors v ON v.id = p.vendor_id WHERE p.created_at < $1 ORDER BY v.number, p.sequence",
    ),
    query(
        "vendors/changes",
        "Register changes during the period (onboarding, notices, offboarding).",
        Binds::Period,
        "SELECT v.number AS vendor_number, v.name AS vendor, c.kind, c.at, c.summary FROM vendor_changes c JOIN vendors v ON v.id = c.vendor_id WHERE c.at >= $1 AND c.at < $2 ORDER BY c.at, c.id",
    ),
    query(
        "vendors/clocks",
        "Vendor reassessment and DPA-expiry clocks running during the period and how each ended (VND-1, VND-2).",
        Binds::Period,
        "SELECT v.number AS vendor_number, c.name AS clock, c.target, c.state, c.started_at, c.due_at, c.stopped_at, c.breached_at, CASE WHEN c.breached_at IS NOT NULL THEN 'breached' WHEN c.stopped_at IS NOT NULL THEN 'met' ELSE 'running' END AS outcome FROM sla_clocks c JOIN vendors v ON v.id = c.subject_id WHERE c.subject_kind = 'vendor' AND c.started_at < $2 AND (c.stopped_at IS NULL OR c.stopped_at >= $1) ORDER BY v.number, c.started_at",
    ),
    query(
        "retention/purge_ledger",
        "Every retention purge run during the period: what it deleted and the age of the oldest image left (RET-1, RET-2).",
        Binds::Period,
        "SELECT p.run_id, p.at, p.production_deleted, p.demo_deleted, p.bytes_deleted, p.orphans_removed, p.duration_ms, p.oldest_production_age_ms, p.oldest_demo_age_ms, p.client_ips_erased FROM purge_ledger p WHERE p.at >= $1 AND p.at < $2 ORDER BY p.at",
    ),
    query(
        "retention/images",
        "Images stored during the period with their expiry (RET-1, RET-2). Metadata only: no pixels, detection results or storage locations.",
        Binds::Period,
        "SELECT m.id, c.name AS customer, m.kind, m.format, m.width, m.height, m.byte_size, m.created_at, m.expires_at FROM images m LEFT JOIN customers c ON c.id = m.customer_id WHERE m.created_at >= $1 AND m.created_at < $2 ORDER BY m.created_at, m.id",
    ),
    query(
        "retention/retained_now",
        "Images held at export time per kind, the oldest one's creation time and the longest retention granted (RET-1, RET-2).",
        Binds::None,
        "SELECT m.kind, COUNT(*) AS images, MIN(m.created_at) AS oldest_created_at, MAX(m.expires_at - m.created_at) AS longest_retention_ms FROM images m GROUP BY m.kind ORDER BY m.kind",
    ),
    query(
        "backup/backups",
        "Backups made or restore-tested during the period: size, SHA-256, key id and the restore test (BAK-1).",
        Binds::Period,
        "SELECT b.id, b.at, b.file, b.byte_size, b.sha256, b.key_id, b.source, b.run_trigger, b.pruned_at, b.restore_tested_at, b.restore_ok, b.restore_detail FROM backups b WHERE (b.at >= $1 AND b.at < $2) OR (b.restore_tested_at >= $1 AND b.restore_tested_at < $2) ORDER BY b.at",
    ),
    query(
        "jobs/runs",
        "Scheduled job runs during the period (purges, reviews, clocks, backups) and their outcome.",
        Binds::Period,
        "SELECT j.job, j.run_trigger, j.started_at, j.finished_at, j.outcome, j.attempts, j.counts, j.error FROM job_runs j WHERE j.started_at >= $1 AND j.started_at < $2 ORDER BY j.started_at, j.id",
    ),
    query(
        "monitoring/alerts",
        "Alerts raised by the detectors during the period and what became of them (MON-1).",
        Binds::Period,
        "SELECT a.id, a.detector, a.source, a.state, a.opened_at, a.last_seen_at, a.occurrences, a.incident_id, a.state_changed_at, a.state_changed_by FROM alerts a WHERE a.opened_at < $2 AND a.last_seen_at >= $1 ORDER BY a.opened_at, a.id",
    ),
    Source {
        name: "config/config_snapshot",
        description: "The running configuration at export time (TLS-1, RES-1, DMN-1), with every secret, password, token and URL credential removed.",
        rule: "every configuration setting; values of settings named like password, secret, token or username are replaced by [redacted], and user, password and query are removed from URLs",
        producer: Producer::Rows(|ctx| Box::pin(async move { Ok(config_snapshot(ctx.config)) })),
    },
    Source {
        name: "config/tls_snapshot",
        description: "How connections are protected at export time (TLS-1): where TLS terminates, protocol versions, the certificate's SHA-256.",
        rule: "rustls server configuration: TLS 1.2 and 1.3 only; certificate file SHA-256; proxy settings",
        producer: Producer::Rows(|ctx| Box::pin(async move { Ok(tls_snapshot(ctx.config)) })),
    },
    query(
        "controls/evaluations",
        "Every evaluation of every control during the period: its state, since when, the summary and the facts it looked at (all controls; the history behind /trust).",
        Binds::Period,
        "SELECT e.evaluated_at, e.control_id, e.state, e.state_since, e.summary, e.facts, e.evaluated_by FROM control_evaluations e WHERE e.evaluated_at >= $1 AND e.evaluated_at < $2 ORDER BY e.evaluated_at, e.control_id, e.id",
    ),
];

/// The columns of a query, read from its SELECT list (`alias` after `AS`, else the column
/// after the last dot), so an empty result still gets a header.
pub fn select_columns(sql: &str) -> Vec<String> {
    let body = sql.strip_prefix("SELECT ").unwrap_or(sql);
    let mut depth = 0_i32;
    let mut quoted = false;
    let mut end = body.len();
    let bytes = body.as_bytes();
    let mut items = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            _ if quoted => {}
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            b' ' if depth == 0 && body[i..].starts_with(" FROM ") => {
                end = i;
                break;
            }
            _ => {}
        }
        i += 1;
    }
    items.push(&body[start..end]);
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            match item.rsplit_once(" AS ") {
                Some((_, alias)) => alias.trim().to_owned(),
                None => item.rsplit('.').next().unwrap_or(item).trim().to_owned(),
            }
        })
        .collect()
}

const SECRET_SETTING_MARKERS: [&str; 4] = ["password", "secret", "token", "username"];

/// Every setting with secrets removed.
pub fn config_snapshot(config: &Config) -> Table {
    let mut rows = Vec::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(config) {
        for (key, value) in map {
            rows.push(vec![
                Value::String(key.clone()),
                redact_setting(&key, value),
            ]);
        }
    }
    Table {
        columns: vec!["setting".into(), "value".into()],
        rows,
    }
}

fn redact_setting(key: &str, value: Value) -> Value {
    let lower = key.to_ascii_lowercase();
    if SECRET_SETTING_MARKERS.iter().any(|m| lower.contains(m)) {
        return match value {
            Value::String(s) if s.is_empty() => Value::String(String::new()),
            _ => Value::String("[redacted]".into()),
        };
    }
    match value {
        Value::String(s) => Value::String(strip_url_credentials(&s)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| redact_setting(key, item))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = redact_setting(&k, v);
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// A URL without user, password and query (which may carry credentials); other text as is.
fn strip_url_credentials(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    match url::Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => "[unparsable URL redacted]".to_owned(),
    }
}

/// Where TLS terminates and what it allows.
pub fn tls_snapshot(config: &Config) -> Table {
    let mut rows = vec![
        ("tls_terminated_here", Value::Bool(config.tls_enabled())),
        (
            "protocol_versions",
            Value::String(if config.tls_enabled() {
                "TLS 1.2, TLS 1.3".into()
            } else {
                "plain HTTP on loopback or behind a declared proxy".into()
            }),
        ),
        ("behind_proxy", Value::Bool(config.behind_proxy)),
        (
            "trusted_proxy_hops",
            Value::from(config.trusted_proxy_hops as u64),
        ),
        ("listen", Value::String(config.listen.clone())),
        ("public_url", Value::String(config.public_url.clone())),
    ];
    if config.tls_enabled() {
        let fingerprint = std::fs::read(&config.tls_cert)
            .map(|pem| crate::crypto::sha256_hex(&pem))
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        rows.push(("certificate_file_sha256", Value::String(fingerprint)));
    }
    Table {
        columns: vec!["setting".into(), "value".into()],
        rows: rows
            .into_iter()
            .map(|(k, v)| vec![Value::String(k.into()), v])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_lists_give_the_column_names() {
        assert_eq!(
            select_columns(
                "SELECT k.prefix, c.name AS customer, COUNT(*) AS n, CASE WHEN a.x = 1 THEN 'a, b' ELSE 'c' END AS state FROM t"
            ),
            ["prefix", "customer", "n", "state"]
        );
        for source in SOURCES {
            if let Producer::Query { sql, binds } = source.producer {
                let columns = select_columns(sql);
                assert!(
                    columns.iter().all(|c| !c.is_empty() && !c.contains(' ')),
                    "{}: {columns:?}",
                    source.name
                );
                let uses = |p: &str| sql.contains(p);
                match binds {
                    Binds::None => assert!(!uses("$1"), "{}", source.name),
                    Binds::AsOf => assert!(uses("$1") && !uses("$2"), "{}", source.name),
                    Binds::Period => assert!(uses("$1") && uses("$2"), "{}", source.name),
                }
            }
        }
    }

    #[test]
    fn no_query_reads_a_secret_column() {
        for source in SOURCES {
            let rule = source.rule_text().to_ascii_lowercase();
            let identifiers: Vec<&str> = rule
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            assert!(
                !rule.contains("m.result"),
                "{} reads image results",
                source.name
            );
            for column in [
                "key_hash",
                "password_hash",
                "totp_secret",
                "token_hash",
                "network_hash",
                "blob_key",
                "report_blob",
                "client_ip",
                "ip_salt",
                "reporter_email",
                "reporter_name",
                "recovery_codes",
                "sessions",
                "pending_totp_enc",
            ] {
                assert!(
                    !identifiers.contains(&column),
                    "{} reads {column}",
                    source.name
                );
            }
        }
    }

    #[test]
    fn config_snapshot_drops_secrets_and_url_credentials() {
        let config = Config {
            smtp_password: "hunter2-smtp".into(),
            smtp_url: "smtps://mailer:pw-in-url@mail.example:465?token=abc".into(),
            database_url: "postgres://app:dbsecret@db.example/trust".into(),
            metrics_token: "metrics-secret".into(),
            ..Config::default()
        };
        let text = serde_json::to_string(&config_snapshot(&config).rows).unwrap();
        for secret in [
            "hunter2-smtp",
            "pw-in-url",
            "dbsecret",
            "metrics-secret",
            "token=abc",
            "mailer",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("db.example"), "{text}");
    }
}
