//! The `alerts_detect` job: every minute, evaluates each completed minute not evaluated yet.
//! Only the minute's own rows are read; each subject's baseline (EWMA mean and variance) is
//! kept in `signal_baselines` and updated from that minute alone, so a tick costs the same
//! whatever the length of the kept history. Quiet minutes of a subject are folded in lazily
//! the next time it is seen.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::detect::{self, Ewma};
use super::model::{Detector, Evidence, Thresholds};
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
/// Minutes of series an alert shows as evidence.
pub const EVIDENCE_MINUTES: i64 = 60;
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

/// A baseline row: request (or 401) counts, and the error share.
#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    count: Ewma,
    share: Ewma,
    last_minute: Millis,
}

/// One firing, before evidence is attached.
struct Firing {
    detector: Detector,
    kind: Kind,
    /// The stored subject of the series (for prefix firings, the prefix).
    series_subject: String,
    alert_subject: String,
    label: String,
    summary: String,
    metric: &'static str,
    value: f64,
    verdict: Option<detect::Verdict>,
    rule: String,
    severity: Severity,
    facts: Vec<(String, String)>,
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
    let mut baselines = load_baselines(&mut conn).await?;
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

    save_baselines(&mut conn, &updated).await?;
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

    sqlx::query(
        "INSERT INTO alert_progress (name, minute) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET minute = $2",
    )
    .bind(PROGRESS)
    .bind(minute)
    .execute(pool)
    .await?;
    Ok(())
}

fn rate_firing(key_id: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
    Firing {
        detector: Detector::RateSpike,
        kind: Kind::Key,
        series_subject: key_id.to_owned(),
        alert_subject: key_id.to_owned(),
        label: String::new(),
        summary: format!(
            "{{key}} made {} requests in one minute against a baseline of {:.1}",
            v.value, v.mean
        ),
        metric: "requests per minute",
        value: v.value,
        rule: format!(
            "at least {} requests and {} standard deviations above the key's EWMA baseline",
            t.rate_min_requests, t.z_score
        ),
        verdict: Some(v),
        severity: Severity::Sev3,
        facts: Vec::new(),
    }
}

fn error_firing(key_id: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
    Firing {
        detector: Detector::ErrorSpike,
        kind: Kind::Key,
        series_subject: key_id.to_owned(),
        alert_subject: key_id.to_owned(),
        label: String::new(),
        summary: format!(
            "{{key}} answered {:.0} % errors in one minute against a baseline of {:.0} %",
            v.value * 100.0,
            v.mean * 100.0
        ),
        metric: "share of 4xx/5xx answers per minute",
        value: v.value,
        rule: format!(
            "error share at least {:.0} points and {} standard deviations above the baseline, with at least {} requests",
            t.error_min_share_rise * 100.0,
            t.z_score,
            t.error_min_requests
        ),
        verdict: Some(v),
        severity: Severity::Sev4,
        facts: Vec::new(),
    }
}

fn guess_firing(network: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
    Firing {
        detector: Detector::KeyGuessNetwork,
        kind: Kind::Net401,
        series_subject: network.to_owned(),
        alert_subject: network.to_owned(),
        label: network.to_owned(),
        summary: format!(
            "{} refused API keys (401) from {network} in one minute",
            v.value
        ),
        metric: "401 answers per minute on /v1",
        value: v.value,
        rule: format!(
            "at least {} answers 401 and {} standard deviations above the network's baseline",
            t.guess_min_401, t.z_score
        ),
        verdict: Some(v),
        severity: Severity::Sev3,
        facts: Vec::new(),
    }
}

async fn load_baselines(
    conn: &mut AnyConnection,
) -> Result<HashMap<(String, String), Baseline>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, subject, mean, variance, share_mean, share_variance, samples, last_minute \
         FROM signal_baselines",
    )
    .fetch_all(conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        let samples: i64 = r.try_get("samples")?;
        out.insert(
            (r.try_get("kind")?, r.try_get("subject")?),
            Baseline {
                count: Ewma {
                    mean: r.try_get("mean")?,
                    variance: r.try_get("variance")?,
                    samples,
                },
                share: Ewma {
                    mean: r.try_get("share_mean")?,
                    variance: r.try_get("share_variance")?,
                    samples,
                },
                last_minute: r.try_get("last_minute")?,
            },
        );
    }
    Ok(out)
}

/// Rows per multi-row upsert (8 parameters each).
const BASELINES_PER_STATEMENT: usize = 100;

async fn save_baselines(
    conn: &mut AnyConnection,
    rows: &[(&'static str, String, Baseline)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(BASELINES_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO signal_baselines (kind, subject, mean, variance, share_mean, \
             share_variance, samples, last_minute) VALUES ",
        );
        for i in 0..chunk.len() {
            let p: Vec<String> = (1..=8).map(|n| format!("${}", i * 8 + n)).collect();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&p.join(", "));
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (kind, subject) DO UPDATE SET mean = excluded.mean, \
             variance = excluded.variance, share_mean = excluded.share_mean, \
             share_variance = excluded.share_variance, samples = excluded.samples, \
             last_minute = excluded.last_minute",
        );
        let mut query = sqlx::query(&sql);
        for (kind, subject, b) in chunk {
            query = query
                .bind(*kind)
                .bind(subject.as_str())
                .bind(b.count.mean)
                .bind(b.count.variance)
                .bind(b.share.mean)
                .bind(b.share.variance)
                .bind(b.count.samples)
                .bind(b.last_minute);
        }
        query.execute(&mut *conn).await?;
    }
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

/// A key as staff know it: its display prefix and customer; never the key itself.
async fn key_label(conn: &mut AnyConnection, key_id: &str) -> Result<String, sqlx::Error> {
    Ok(match crate::keys::store::find(&mut *conn, key_id).await? {
        Some(key) => format!("key {}… of {}", key.prefix, key.customer_name),
        None => format!("key {}", crate::web::clip(key_id, 8)),
    })
}

/// A login-failure subject as staff read it: the account's email when the name matched a
/// staff account, otherwise that the name is unknown (typed names are not kept).
async fn login_label(
    conn: &mut AnyConnection,
    kind: Kind,
    subject: &str,
) -> Result<String, sqlx::Error> {
    if kind == Kind::LoginNet {
        return Ok(subject.to_owned());
    }
    if let Some(staff_id) = subject.strip_prefix("staff:")
        && let Some(staff) = crate::staff::store::find(&mut *conn, staff_id).await?
    {
        return Ok(format!("account {}", staff.email));
    }
    Ok(format!(
        "an unknown account name ({})",
        crate::web::clip(subject, 13)
    ))
}

/// The last [`EVIDENCE_MINUTES`] of the firing's series (zeros for quiet minutes).
async fn evidence_of(state: &AppState, f: &Firing, minute: Millis) -> anyhow::Result<Evidence> {
    let since = minute - (EVIDENCE_MINUTES - 1) * MINUTE;
    let rows = if f.detector == Detector::KeyGuessPrefix {
        sqlx::query(&format!(
            "SELECT minute_start, {COUNT_COLUMNS} FROM signal_minutes WHERE kind = $1 \
             AND substr(subject, 1, $2) = $3 AND minute_start >= $4 AND minute_start <= $5"
        ))
        .bind(f.kind.as_str())
        .bind(i64::try_from(f.series_subject.len() + 1).unwrap_or(i64::MAX))
        .bind(format!("{} ", f.series_subject))
        .bind(since)
        .bind(minute)
        .fetch_all(&state.db.pool)
        .await?
    } else {
        sqlx::query(&format!(
            "SELECT minute_start, {COUNT_COLUMNS} FROM signal_minutes WHERE kind = $1 \
             AND subject = $2 AND minute_start >= $3 AND minute_start <= $4"
        ))
        .bind(f.kind.as_str())
        .bind(&f.series_subject)
        .bind(since)
        .bind(minute)
        .fetch_all(&state.db.pool)
        .await?
    };
    let mut per_minute: HashMap<Millis, Counts> = HashMap::new();
    for r in &rows {
        per_minute
            .entry(r.try_get("minute_start")?)
            .or_default()
            .merge(Counts::from_row(r)?);
    }
    let metric = |c: &Counts| -> f64 {
        match f.detector {
            Detector::ErrorSpike if c.requests > 0 => c.errors() as f64 / c.requests as f64,
            Detector::ErrorSpike => 0.0,
            Detector::KeyGuessNetwork | Detector::KeyGuessPrefix => c.s401 as f64,
            Detector::DemoAbuse => c.s429 as f64,
            _ => c.requests as f64,
        }
    };
    let series = (0..EVIDENCE_MINUTES)
        .map(|i| {
            let at = since + i * MINUTE;
            (at, per_minute.get(&at).map(metric).unwrap_or(0.0))
        })
        .collect();
    let mut facts = f.facts.clone();
    facts.truncate(50);
    Ok(Evidence {
        metric: f.metric.to_owned(),
        series,
        at: minute,
        value: f.value,
        baseline_mean: f.verdict.as_ref().map(|v| v.mean),
        baseline_sd: f.verdict.as_ref().map(|v| v.sd),
        z_score: f.verdict.as_ref().map(|v| v.z),
        rule: f.rule.clone(),
        facts,
    })
}
