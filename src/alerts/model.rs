//! Alert types: the detectors with what each watches, the states an alert moves through, the
//! evidence it carries, and the thresholds (from config) the detectors use.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// A key's requests per minute far above its own baseline.
    RateSpike,
    /// A key's share of 4xx/5xx answers far above its own baseline.
    ErrorSpike,
    /// A burst of 401s on `/v1` from one client network.
    KeyGuessNetwork,
    /// 401s for one key prefix from several client networks.
    KeyGuessPrefix,
    /// Failed staff logins for one account.
    LoginAccount,
    /// Failed staff logins from one client network.
    LoginNetwork,
    /// One network held at the demo endpoint's rate limit for many minutes.
    DemoAbuse,
    /// A key used again after long silence, from a network never seen for it.
    DormantKey,
    /// Prometheus Alertmanager posted a firing alert.
    Alertmanager,
}

impl Detector {
    pub const ALL: [Detector; 9] = [
        Detector::RateSpike,
        Detector::ErrorSpike,
        Detector::KeyGuessNetwork,
        Detector::KeyGuessPrefix,
        Detector::LoginAccount,
        Detector::LoginNetwork,
        Detector::DemoAbuse,
        Detector::DormantKey,
        Detector::Alertmanager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::RateSpike => "rate_spike",
            Detector::ErrorSpike => "error_spike",
            Detector::KeyGuessNetwork => "key_guess_network",
            Detector::KeyGuessPrefix => "key_guess_prefix",
            Detector::LoginAccount => "login_account",
            Detector::LoginNetwork => "login_network",
            Detector::DemoAbuse => "demo_abuse",
            Detector::DormantKey => "dormant_key",
            Detector::Alertmanager => "alertmanager",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Detector::ALL.into_iter().find(|d| d.as_str() == raw.trim())
    }

    /// A short human name.
    pub fn label(self) -> &'static str {
        match self {
            Detector::RateSpike => "Request-rate spike per key",
            Detector::ErrorSpike => "Error-rate spike per key",
            Detector::KeyGuessNetwork => "Key guessing from one network",
            Detector::KeyGuessPrefix => "Key guessing against one key prefix",
            Detector::LoginAccount => "Staff login failures per account",
            Detector::LoginNetwork => "Staff login failures per network",
            Detector::DemoAbuse => "Demo endpoint held at its limit",
            Detector::DormantKey => "Dormant key used from a new network",
            Detector::Alertmanager => "Prometheus Alertmanager",
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
    FalsePositive,
}

impl AlertState {
    pub const ALL: [AlertState; 4] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Resolved,
        AlertState::FalsePositive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
            AlertState::FalsePositive => "false_positive",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
            AlertState::FalsePositive => "false positive",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        AlertState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "State “{}” is not one of open, acknowledged, resolved, false_positive.",
                    crate::web::clip(raw.trim(), 40)
                )
            })
    }

    /// Still needs someone's attention.
    pub fn is_active(self) -> bool {
        matches!(self, AlertState::Open | AlertState::Acknowledged)
    }

    /// The states an alert in this state may move to.
    pub fn may_become(self, to: AlertState) -> bool {
        match self {
            AlertState::Open => to != AlertState::Open,
            AlertState::Acknowledged => {
                matches!(to, AlertState::Resolved | AlertState::FalsePositive)
            }
            AlertState::Resolved | AlertState::FalsePositive => false,
        }
    }
}

/// What an alert shows as proof: the series around the firing minute, the baseline it was
/// compared with and the rule that fired. Subjects are key prefixes, key ids, networks (IPv4
/// /24, IPv6 /48) or hashed account names; never a full key or a full address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    /// What the series counts, e.g. "401 answers per minute".
    pub metric: String,
    /// (minute start, value), oldest first.
    pub series: Vec<(Millis, f64)>,
    /// The minute that fired.
    pub at: Millis,
    pub value: f64,
    pub baseline_mean: Option<f64>,
    pub baseline_sd: Option<f64>,
    pub z_score: Option<f64>,
    /// The rule in words, with the thresholds used.
    pub rule: String,
    /// Extra labelled facts (Alertmanager labels, networks seen …).
    #[serde(default)]
    pub facts: Vec<(String, String)>,
}

/// Detector thresholds. Every detector needs both a statistical signal (z-score against the
/// subject's own EWMA baseline) and a minimum absolute count, so quiet subjects do not alert
/// on small numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Weight of the newest minute in the EWMA mean and variance (0 < alpha < 1).
    pub ewma_alpha: f64,
    /// Standard deviations above the baseline mean that count as a spike.
    pub z_score: f64,
    /// Minutes of history a key needs before its rate and error baselines are trusted.
    pub warmup_minutes: i64,
    /// Requests in one minute a key needs before a rate spike can fire.
    pub rate_min_requests: i64,
    /// Requests in one minute a key needs before an error spike can fire.
    pub error_min_requests: i64,
    /// How far (0–1) the minute's error share must exceed the baseline share.
    pub error_min_share_rise: f64,
    /// 401 answers in one minute from one network before key guessing can fire.
    pub guess_min_401: i64,
    /// Distinct networks refused for one key prefix in one minute.
    pub prefix_min_networks: i64,
    /// 401 answers for one key prefix in one minute (all networks together).
    pub prefix_min_401: i64,
    /// Failed logins for one account within `login_window_minutes` (below the lock-out).
    pub login_account_failures: i64,
    /// Failed logins from one network within `login_window_minutes` (below the lock-out).
    pub login_network_failures: i64,
    pub login_window_minutes: i64,
    /// Minutes within `demo_window_minutes` in which one network hit the demo limit.
    pub demo_limited_minutes: i64,
    pub demo_window_minutes: i64,
    /// Days without use after which a key's use from a new network alerts.
    pub dormant_days: i64,
    /// A second firing of the same detector for the same subject within this many minutes
    /// adds to the first alert instead of raising another.
    pub dedupe_minutes: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            ewma_alpha: 0.05,
            z_score: 6.0,
            warmup_minutes: 60,
            rate_min_requests: 60,
            error_min_requests: 20,
            error_min_share_rise: 0.4,
            guess_min_401: 30,
            prefix_min_networks: 3,
            prefix_min_401: 10,
            login_account_failures: 5,
            login_network_failures: 20,
            login_window_minutes: 15,
            demo_limited_minutes: 10,
            demo_window_minutes: 15,
            dormant_days: 30,
            dedupe_minutes: 60,
        }
    }
}

impl Thresholds {
    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha < 1.0) {
            return Err(("ewma_alpha", "must be between 0 and 1 (exclusive)".into()));
        }
        if !(self.z_score >= 1.0 && self.z_score <= 100.0) {
            return Err(("z_score", "must be between 1 and 100".into()));
        }
        if !(self.error_min_share_rise > 0.0 && self.error_min_share_rise <= 1.0) {
            return Err(("error_min_share_rise", "must be in (0, 1]".into()));
        }
        let positive = [
            ("warmup_minutes", self.warmup_minutes),
            ("rate_min_requests", self.rate_min_requests),
            ("error_min_requests", self.error_min_requests),
            ("guess_min_401", self.guess_min_401),
            ("prefix_min_networks", self.prefix_min_networks),
            ("prefix_min_401", self.prefix_min_401),
            ("login_account_failures", self.login_account_failures),
            ("login_network_failures", self.login_network_failures),
            ("login_window_minutes", self.login_window_minutes),
            ("demo_limited_minutes", self.demo_limited_minutes),
            ("demo_window_minutes", self.demo_window_minutes),
            ("dormant_days", self.dormant_days),
            ("dedupe_minutes", self.dedupe_minutes),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err((key, "must be positive".into()));
            }
        }
        if self.demo_limited_minutes > self.demo_window_minutes {
            return Err((
                "demo_limited_minutes",
                "must not exceed demo_window_minutes".into(),
            ));
        }
        if self.login_window_minutes > 24 * 60 || self.demo_window_minutes > 24 * 60 {
            return Err((
                "login_window_minutes",
                "windows are at most 1440 minutes".into(),
            ));
        }
        Ok(())
    }

    /// Each threshold as (name, value, meaning), for the settings page.
    pub fn rows(&self) -> Vec<(&'static str, String, &'static str)> {
        vec![
            (
                "ewma_alpha",
                self.ewma_alpha.to_string(),
                "weight of the newest minute in the baselines",
            ),
            (
                "z_score",
                self.z_score.to_string(),
                "standard deviations above the baseline that count as a spike",
            ),
            (
                "warmup_minutes",
                self.warmup_minutes.to_string(),
                "history a key needs before its baselines are trusted",
            ),
            (
                "rate_min_requests",
                self.rate_min_requests.to_string(),
                "requests per minute before a rate spike can fire",
            ),
            (
                "error_min_requests",
                self.error_min_requests.to_string(),
                "requests per minute before an error spike can fire",
            ),
            (
                "error_min_share_rise",
                self.error_min_share_rise.to_string(),
                "rise of the error share over its baseline",
            ),
            (
                "guess_min_401",
                self.guess_min_401.to_string(),
                "401s per minute from one network",
            ),
            (
                "prefix_min_networks",
                self.prefix_min_networks.to_string(),
                "networks refused for one key prefix in a minute",
            ),
            (
                "prefix_min_401",
                self.prefix_min_401.to_string(),
                "401s per minute for one key prefix",
            ),
            (
                "login_account_failures",
                self.login_account_failures.to_string(),
                "failed logins per account in the login window",
            ),
            (
                "login_network_failures",
                self.login_network_failures.to_string(),
                "failed logins per network in the login window",
            ),
            (
                "login_window_minutes",
                self.login_window_minutes.to_string(),
                "login window",
            ),
            (
                "demo_limited_minutes",
                self.demo_limited_minutes.to_string(),
                "minutes at the demo limit in the demo window",
            ),
            (
                "demo_window_minutes",
                self.demo_window_minutes.to_string(),
                "demo window",
            ),
            (
                "dormant_days",
                self.dormant_days.to_string(),
                "silence after which use from a new network alerts",
            ),
            (
                "dedupe_minutes",
                self.dedupe_minutes.to_string(),
                "repeat firings within this time add to the first alert",
            ),
        ]
    }
}
