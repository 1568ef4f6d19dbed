//! The `alerts_detect` job: every minute, evaluates each completed minute not evaluated yet.
//! Only the minute's own rows are read; each subject's baseline (EWMA mean and variance) is
//! kept in `signal_baselines` and updated from that minute alone, so a tick costs the same
//! whatever the length of the kept history. Quiet minutes of a subject are folded in lazily
//! the next time it is seen.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::baselines::{self, Baseline};
use super::detect;
use super::firing::{
    Firing, error_firing, evidence_of, guess_firing, key_label, login_label, rate_firing,
};
use super::model::Detector;
use super::signals::{COUNT_COLUMNS, Counts, Kind};
use super::{Candidate, Raised};
use crate::app::AppState;
use crate::audit::RequestMeta;
use crate::clock::{DAY, MINUTE, Millis, SECOND, format_ms};
use crate::incidents::model::Severity;

/// Counts written by other nodes within this time after a minute ends are still seen.
pub const GRACE: Millis = 5 * SECOND;
/// After downtime, at most this many minutes are evaluated (the newest ones).
const MAX_BACKLOG_MINUTES: i64 = 60;
const PROGRESS: &str = "detectors";

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    pub minutes_evaluated: i64,
    pub subjects_seen: i64,
    pub alerts_raised: i64,
    pub alerts_repeated: i64,
    pub incidents_opened: i64,
}

fn minute_of(at: Millis) -> Millis {
    at - at.rem_euclid(MINUTE)
}

/// Runs the detectors over every completed minute since the last run.
pub async fn run(state: &AppState) -> anyhow::Result<TickReport> {
    state.signals.flush(&state.db).await?;
    let now = state.now();
    let last_complete = minute_of(now - GRACE) - MINUTE;
    let done: Option<Millis> = sqlx::query("SELECT minute FROM alert_progress WHERE name = $1")
        .bind(PROGRESS)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| r.try_get("minute"))
        .transpose()?;
    let first = done
        .map(|d| d + MINUTE)
        .unwrap_or(last_complete - 9 * MINUTE)
        .max(last_complete - (MAX_BACKLOG_MINUTES - 1) * MINUTE);
    let mut report = TickReport::default();
    let mut minute = first;
    while minute <= last_complete {
        evaluate_minute(state, minute, &mut report).await?;
        report.minutes_evaluated += 1;
        minute += MINUTE;
    }
    Ok(report)
}

async fn evaluate_minute(
    state: &AppState,
    minute: Millis,
    report: &mut TickReport,
) -> anyhow::Result<()> {
    let t = &state.config.alert_thresholds;
    let pool = &state.db.pool;
    let rows = sqlx::query(&format!(
        "SELECT kind, subject, {COUNT_COLUMNS} FROM signal_minutes WHERE minute_start = $1"
    ))
    .bind(minute)
    .fetch_all(pool)
    .await?;
    let mut by_kind: HashMap<String, Vec<(String, Counts)>> = HashMap::new();
    for row in &rows {
        by_kind
            .entry(row.try_get("kind")?)
            .or_default()
            .push((row.try_get("subject")?, Counts::from_row(row)?));
    }
    report.subjects_seen += i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let mut firings = Vec::new();
    let mut conn = pool.acquire().await?;

    // Keys and 401 networks: EWMA baselines.
    let mut baselines = baselines::load(&mut conn).await?;
    let mut updated: Vec<(&'static str, String, Baseline)> = Vec::new();
    for (kind, is_key) in [(Kind::Key, true), (Kind::Net401, false)] {
        for (subject, counts) in by_kind.get(kind.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
            let mut b = baselines
                .remove(&(kind.as_str().to_owned(), subject.clone()))
                .unwrap_or_default();
            if b.count.samples > 0 && b.last_minute >= minute {
                continue; // evaluated already
            }
            if b.count.samples > 0 {
                b.count
                    .quiet((minute - b.last_minute) / MINUTE - 1, t.ewma_alpha);
            }
            let value = if is_key { counts.requests } else { counts.s401 };
            let verdict = if is_key {
                detect::rate_spike(&b.count, value, t)
            } else {
                detect::key_guess_network(&b.count, value, t)
            };
            // A spike is folded in only up to the firing line, so it does not teach the
            // baseline that the attack is normal.
            let folded = match &verdict {
                Some(v) => v.mean + t.z_score * v.sd,
                None => value as f64,
            };
            if let Some(v) = verdict {
                firings.push(if is_key {
                    rate_firing(subject, v, t)
                } else {
                    guess_firing(subject, v, t)
                });
            }
            if is_key && counts.requests > 0 {
                if let Some(v) = detect::error_spike(&b.share, counts.requests, counts.errors(), t)
                {
                    firings.push(error_firing(subject, v, t));
                }
                let share = counts.errors() as f64 / counts.requests as f64;
                b.share.update(
                    share.min(b.share.mean + t.error_min_share_rise),
                    t.ewma_alpha,
                );
            }
            b.count.update(folded, t.ewma_alpha);
            b.last_minute = minute;
            updated.push((kind.as_str(), subject.clone(), b));
        }
    }

    // Prefixes refused from several networks.
    let mut per_prefix: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (subject, counts) in by_kind
        .get(Kind::Prefix401.as_str())
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if let Some((prefix, network)) = subject.split_once(' ') {
            per_prefix
                .entry(prefix)
                .or_default()
                .push((network.to_owned(), counts.s401));
        }
    }
    for (prefix, networks) in per_prefix {
        let counts: Vec<i64> = networks.iter().map(|n| n.1).collect();
        if let Some(total) = detect::key_guess_prefix(&counts, t) {
            firings.push(Firing {
                detector: Detector::KeyGuessPrefix,
                kind: Kind::Prefix401,
                series_subject: prefix.to_owned(),
                alert_subject: format!("prefix:{prefix}"),
                label: format!("{prefix}…"),
                summary: format!(
                    "{total} refused keys starting {prefix}… from {} networks in one minute",
                    networks.len()
                ),
                metric: "401 answers per minute for the prefix, all networks",
                value: total as f64,
                verdict: None,
                rule: format!(
                    "at least {} networks and {} refusals for one key prefix in a minute",
                    t.prefix_min_networks, t.prefix_min_401
                ),
                severity: Severity::Sev2,
                facts: networks
                    .iter()
                    .map(|(n, c)| (n.clone(), c.to_string()))
                    .collect(),
            });
        }
    }

    // Staff login failures.
    for (kind, threshold, detector) in [
        (
            Kind::LoginAccount,
            t.login_account_failures,
            Detector::LoginAccount,
        ),
        (
            Kind::LoginNet,
            t.login_network_failures,
            Detector::LoginNetwork,
        ),
    ] {
        let Some(seen) = by_kind.get(kind.as_str()) else {
            continue;
        };
        let totals =
            window_sums(&mut conn, kind, minute, t.login_window_minutes, "requests").await?;
        for (subject, counts) in seen {
            let total = totals.get(subject).copied().unwrap_or(0);
            if detect::login_failures(total, counts.requests, threshold) {
                let label = login_label(&mut conn, kind, subject).await?;
                firings.push(Firing {
                    detector,
                    kind,
                    series_subject: subject.clone(),
                    alert_subject: if kind == Kind::LoginNet {
                        subject.clone()
                    } else {
                        format!("login:{subject}")
                    },
                    label: label.clone(),
                    summary: format!(
                        "{total} failed staff logins for {label} within {} minutes",
                        t.login_window_minutes
                    ),
                    metric: "failed staff logins per minute",
                    value: total as f64,
                    verdict: None,
                    rule: format!(
                        "at least {threshold} failures within {} minutes (before the lock-out)",
                        t.login_window_minutes
                    ),
                    severity: Severity::Sev3,
                    facts: Vec::new(),
                });
            }
        }
    }

    // The demo endpoint held at its limit.
    if let Some(seen) = by_kind.get(Kind::Demo.as_str()) {
        let limited = window_sums(
            &mut conn,
            Kind::Demo,
            minute,
            t.demo_window_minutes,
            "CASE WHEN s429 > 0 THEN 1 ELSE 0 END",
        )
        .await?;
        for (subject, counts) in seen {
            let minutes = limited.get(subject).copied().unwrap_or(0);
            if detect::demo_abuse(minutes, counts.s429 > 0, t) {
                firings.push(Firing {
                    detector: Detector::DemoAbuse,
                    kind: Kind::Demo,
                    series_subject: subject.clone(),
                    alert_subject: subject.clone(),
                    label: subject.clone(),
                    summary: format!(
                        "{subject} hit the demo rate limit in {minutes} of the last {} minutes",
                        t.demo_window_minutes
                    ),
                    metric: "demo answers 429 per minute",
                    value: minutes as f64,
                    verdict: None,
                    rule: format!(
                        "rate-limited in at least {} of {} minutes",
                        t.demo_limited_minutes, t.demo_window_minutes
                    ),
                    severity: Severity::Sev4,
                    facts: Vec::new(),
                });
            }
        }
    }

    // Dormant keys used from a new network.
    let fresh = sqlx::query(
        "SELECT key_id, network FROM key_networks WHERE first_seen_at >= $1 AND first_seen_at < $2",
    )
    .bind(minute)
    .bind(minute + MINUTE)
    .fetch_all(&mut *conn)
    .await?;
    for row in &fresh {
        let key_id: String = row.try_get("key_id")?;
        let network: String = row.try_get("network")?;
        let previous: Option<Millis> = sqlx::query(
            "SELECT MAX(last_seen_at) AS last FROM key_networks \
             WHERE key_id = $1 AND network <> $2 AND last_seen_at < $3",
        )
        .bind(&key_id)
        .bind(&network)
        .bind(minute)
        .fetch_one(&mut *conn)
        .await?
        .try_get("last")?;
        if detect::dormant_key(previous, minute, t) {
            let days = previous.map_or(0, |p| (minute - p) / DAY);
            let label = key_label(&mut conn, &key_id).await?;
            firings.push(Firing {
                detector: Detector::DormantKey,
                kind: Kind::Key,
                series_subject: key_id.clone(),
                alert_subject: key_id.clone(),
                label: label.clone(),
                summary: format!(
                    "{label} used from {network} after {days} days without use; the key was never used from that network"
                ),
                metric: "requests per minute",
                value: days as f64,
                verdict: None,
                rule: format!(
                    "first use from a new network after at least {} days of silence",
                    t.dormant_days
                ),
                severity: Severity::Sev2,
                facts: vec![
                    ("new network".into(), network.clone()),
                    (
                        "previous use".into(),
                        previous.map(format_ms).unwrap_or_default(),
                    ),
                ],
            });
        }
    }

    drop(conn);

    for mut firing in firings {
        if matches!(firing.detector, Detector::RateSpike | Detector::ErrorSpike) {
            let label = {
                let mut conn = pool.acquire().await?;
                key_label(&mut conn, &firing.series_subject).await?
            };
            firing.summary = firing.summary.replace("{key}", &label);
            firing.label = label;
        }
        let evidence = evidence_of(state, &firing, minute).await?;
        let candidate = Candidate {
            detector: firing.detector,
            subject: firing.alert_subject.clone(),
            subject_label: firing.label.clone(),
            summary: firing.summary.clone(),
            evidence,
            fingerprint: None,
            severity: firing.severity,
            detected_at: minute + MINUTE,
        };
        let mut tx = state.db.begin().await?;
        let raised = super::raise(
            &mut tx,
            &crate::incidents::pages::settings(state),
            &candidate,
            super::dedupe_window(t),
            super::DETECTOR_ACTOR,
            &RequestMeta::default(),
            state.now(),
        )
        .await?;
        tx.commit().await?;
        match raised {
            Raised::New {
                incident_opened, ..
            } => {
                report.alerts_raised += 1;
                report.incidents_opened += i64::from(incident_opened);
            }
            Raised::Repeated { .. } => report.alerts_repeated += 1,
        }
    }

    // Baselines and progress are saved only once every alert of the minute is raised: a run
    // that fails part-way evaluates the minute again (repeats are deduplicated).
    let mut tx = state.db.begin().await?;
    baselines::save(&mut tx, &updated).await?;
    sqlx::query(
        "INSERT INTO alert_progress (name, minute) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET minute = $2",
    )
    .bind(PROGRESS)
    .bind(minute)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Per subject of `kind`: the sum of `expression` over the window ending with `minute`.
async fn window_sums(
    conn: &mut AnyConnection,
    kind: Kind,
    minute: Millis,
    window_minutes: i64,
    expression: &'static str,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT subject, CAST(SUM({expression}) AS BIGINT) AS total FROM signal_minutes \
         WHERE kind = $1 AND minute_start > $2 AND minute_start <= $3 GROUP BY subject"
    ))
    .bind(kind.as_str())
    .bind(minute - window_minutes * MINUTE)
    .bind(minute)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("subject")?, r.try_get::<i64, _>("total")?)))
        .collect()
}
