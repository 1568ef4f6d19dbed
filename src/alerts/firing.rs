//! What a detector firing becomes: the alert's subject, label, summary and rule, and its
//! evidence (the series around the firing minute). Labels name keys by prefix and customer,
//! networks by their /24 or /48, accounts by email; never a full key or address.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::detect;
use super::model::{Detector, Evidence, Thresholds};
use super::signals::{COUNT_COLUMNS, Counts, Kind};
use crate::app::AppState;
use crate::clock::{MINUTE, Millis};
use crate::incidents::model::Severity;

/// Minutes of series an alert shows as evidence.
pub const EVIDENCE_MINUTES: i64 = 60;

/// One firing, before evidence is attached.
pub struct Firing {
    pub detector: Detector,
    pub kind: Kind,
    /// The stored subject of the series (for prefix firings, the prefix).
    pub series_subject: String,
    pub alert_subject: String,
    pub label: String,
    pub summary: String,
    pub metric: &'static str,
    pub value: f64,
    pub verdict: Option<detect::Verdict>,
    pub rule: String,
    pub severity: Severity,
    pub facts: Vec<(String, String)>,
}

pub fn rate_firing(key_id: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
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

pub fn error_firing(key_id: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
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

pub fn guess_firing(network: &str, v: detect::Verdict, t: &Thresholds) -> Firing {
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

/// A key as staff know it: its display prefix and customer; never the key itself.
pub async fn key_label(conn: &mut AnyConnection, key_id: &str) -> Result<String, sqlx::Error> {
    Ok(match crate::keys::store::find(&mut *conn, key_id).await? {
        Some(key) => format!("key {}… of {}", key.prefix, key.customer_name),
        None => format!("key {}", crate::web::clip(key_id, 8)),
    })
}

/// A login-failure subject as staff read it: the account's email when the name matched a
/// staff account, otherwise that the name is unknown (typed names are not kept).
pub async fn login_label(
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
pub async fn evidence_of(state: &AppState, f: &Firing, minute: Millis) -> anyhow::Result<Evidence> {
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
