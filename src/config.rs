//! Typed configuration: built-in defaults < `trustplane.toml` < `TRUSTPLANE_*` environment.
//! Everything is validated once at start-up; a bad value stops the process with a message that
//! names the key and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole configuration. Field names are the keys of `trustplane.toml` and, upper-cased
/// with a `TRUSTPLANE_` prefix, the environment variables.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the server binds, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Folder for the SQLite database, the keyring and (later) encrypted blobs.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means `<data_dir>/trustplane.db`.
    pub database_url: String,
    /// Keyring file; empty means `<data_dir>/keyring.json`.
    pub keyring_path: String,
    /// Set when a TLS-terminating proxy sits in front: trust `X-Forwarded-For`/`-Proto`.
    pub behind_proxy: bool,
    /// PEM certificate chain; with `tls_key`, the server terminates TLS itself.
    pub tls_cert: String,
    /// PEM private key for `tls_cert`.
    pub tls_key: String,
    /// Base URL printed in links (setup links); empty means derived from `listen`.
    pub public_url: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Bearer token that opens `/metrics` to non-loopback clients; empty = loopback only.
    pub metrics_token: String,
    /// Folder with `model.conf` and `policy.csv` overriding the embedded policies.
    pub policy_dir: String,
    /// Minutes of inactivity after which a portal session ends.
    pub session_idle_minutes: i64,
    /// Hours after login at which a portal session ends regardless of activity.
    pub session_absolute_hours: i64,
    /// Consecutive failures on one account before it is locked.
    pub lockout_account_failures: i64,
    /// Failures from one client IP before that IP is locked out of login.
    pub lockout_ip_failures: i64,
    /// Minutes a lockout lasts.
    pub lockout_minutes: i64,
    /// Password hashes (Argon2id, 64 MiB each) running at once; 0 = one per CPU core.
    pub password_hash_concurrency: usize,
    /// Password checks allowed to wait for a hashing slot; beyond that the portal answers 503.
    pub password_hash_queue: usize,
    /// Proxies in front that append to `X-Forwarded-For` (used only with `behind_proxy`): the
    /// client address is the entry this many places from the right.
    pub trusted_proxy_hops: usize,
    /// Hours a setup or invitation link stays valid.
    pub setup_link_hours: i64,
    /// Largest accepted portal request body, in bytes.
    pub portal_body_limit_bytes: usize,
    /// Where encrypted images are stored: empty = `<data_dir>/blobs`, or e.g. `s3://bucket/prefix`.
    pub blob_store_url: String,
    /// Largest accepted image upload, in bytes.
    pub api_max_image_bytes: usize,
    /// Seconds an image upload may take to arrive once it holds a place in the detection queue;
    /// a slower upload is answered 408 so it cannot keep that place (or its memory) for long.
    pub api_upload_timeout_seconds: u64,
    /// Largest accepted image width or height, in pixels.
    pub api_max_dimension: u32,
    /// Largest accepted image area, in pixels.
    pub api_max_pixels: u64,
    /// Largest stored copy of any image, in bytes; a copy is also never more than twice its
    /// upload. A copy that would be larger is stored as JPEG, then downscaled until it fits.
    pub stored_image_max_bytes: usize,
    /// Demo requests allowed per client network (IPv4 address, IPv6 /64) per minute.
    pub demo_requests_per_minute: u32,
    /// Days demo images are kept (at most 7).
    pub demo_retention_days: i64,
    /// Longest side, in pixels, of the JPEG preview kept of a demo image.
    pub demo_stored_max_dimension: u32,
    /// Bytes all stored demo images may take together; beyond it the demo answers 507.
    pub demo_storage_quota_bytes: u64,
    /// Detections running at once; 0 = one per CPU core.
    pub detect_workers: usize,
    /// Detections allowed to wait for a worker; beyond that the API answers 503.
    pub detect_queue: usize,
    /// `process` (decode and detect in separate worker processes with rlimits) or `thread`.
    pub detect_isolation: String,
    /// Executable started for worker processes; empty = this program.
    pub worker_exe: String,
    /// Seconds one detection may take before its worker is killed.
    pub detect_timeout_seconds: u64,
    /// Cron overrides per job, e.g. `[job_schedules] retention_purge = "0 */5 * * * *"`.
    pub job_schedules: std::collections::BTreeMap<String, String>,
    /// Run the scheduler in this process (turn off on nodes that should only serve).
    pub scheduler_enabled: bool,
    /// Mail delivery: empty = `.eml` files under `<data_dir>/mail`; `smtp+starttls://host:587`,
    /// `smtps://host:465`, or `smtp://host:port` (plain, loopback only).
    pub smtp_url: String,
    pub smtp_username: String,
    /// Secret; prefer `TRUSTPLANE_SMTP_PASSWORD` over the file.
    pub smtp_password: String,
    /// Sender address of every email.
    pub mail_from: String,
    /// Scheduled backup files to keep (older ones are deleted).
    pub backup_keep: usize,
    /// Minutes to triage an incident, per severity SEV1..SEV4 (each at most 60: the page
    /// promises triage within 1 hour).
    pub incident_triage_minutes: [i64; 4],
    /// Hours to remediate a finding, for critical, high, medium, low (critical at most 72: the
    /// page promises critical findings fixed within 72 hours).
    pub finding_remediation_hours: [i64; 4],
    /// Days customers are told in advance before a new sub-processor handling their personal
    /// data may become active.
    pub vendor_notice_days: i64,
    /// Months between vendor assessments for high, medium and low risk.
    pub vendor_reassessment_months: [i64; 3],
    /// Requests per client network per minute to the public sub-processor list, feed and
    /// subscribe form.
    pub trust_requests_per_minute: u32,
    /// Hours to notify each affected customer (as controller) of a personal-data breach.
    pub controller_notice_hours: i64,
    /// Minutes between repeated escalations of a breached incident clock.
    pub incident_escalation_minutes: i64,
    /// Days a full client address stays in the audit log before the retention purge cuts it
    /// down to its network (IPv4 /24, IPv6 /48).
    pub audit_ip_retention_days: i64,
    /// IANA time zone SLA business days are counted in, e.g. `Europe/Berlin`.
    pub sla_timezone: String,
    /// Weekdays that count as business days (`mon` … `sun`).
    pub sla_working_days: Vec<String>,
    /// Dates (`YYYY-MM-DD`, in `sla_timezone`) that are not business days.
    pub sla_holidays: Vec<String>,
    /// Receivers of signed SLA webhooks (reminder, breach, escalation).
    pub sla_webhooks: Vec<SlaWebhook>,
    /// IANA time zone in which a quarter (and so an access-review campaign) begins.
    pub review_timezone: String,
    /// Days from opening an access-review campaign to its due date.
    pub review_due_days: i64,
    /// Days without a login or key use after which an access-review item is flagged dormant.
    pub review_dormant_days: i64,
    /// When a review's revokes are carried out: `decision` (at once) or `sign_off`.
    pub review_execute: String,
    /// Optional email address for vulnerability reports, listed in `security.txt` after
    /// the report form.
    pub disclosure_contact_email: String,
    /// Reports accepted from one client network (IPv4 address, IPv6 /64) per hour.
    pub disclosure_reports_per_hour: i64,
    /// A Markdown file that replaces the built-in disclosure policy at `/security`; empty
    /// = the built-in policy.
    pub disclosure_policy_file: String,
    /// Days ahead of now the `Expires:` of `security.txt` lies (RFC 9116: under a year).
    pub security_txt_expires_days: i64,
    /// `Preferred-Languages:` of `security.txt`, e.g. `en, de`.
    pub security_txt_languages: String,
    /// Optional `Encryption:` URL (an OpenPGP key) of `security.txt`.
    pub security_txt_encryption: String,
    /// Optional `Hiring:` URL of `security.txt`.
    pub security_txt_hiring: String,
    /// An ASCII-armoured OpenPGP secret key file; when set, `security.txt` is served with a
    /// cleartext signature of that key (passphrase, if any, in
    /// `TRUSTPLANE_SECURITY_TXT_KEY_PASSPHRASE`). Empty = unsigned.
    pub security_txt_openpgp_key: String,
    /// Bearer token Prometheus Alertmanager presents at `POST /hooks/alertmanager`; empty
    /// turns the hook off (every call is refused). Prefer `TRUSTPLANE_ALERTMANAGER_TOKEN`.
    pub alertmanager_token: String,
    /// Hours per-minute traffic counters are kept (hourly counters are kept 90 days).
    pub signal_minute_hours: i64,
    /// Thresholds of the anomaly detectors (`[alert_thresholds]` in `trustplane.toml`).
    pub alert_thresholds: crate::alerts::model::Thresholds,
    /// Who answers for a control, by id (`MFA-1 = "it@example.com"`); a control without an
    /// entry notifies the enabled staff holding its owner role.
    pub control_owners: std::collections::BTreeMap<String, String>,
    /// What the public trust page says of a control that is failing (or has no data).
    pub trust_failing_wording: String,
    /// Region of the database and, unless `blob_store_region` says otherwise, of the blob
    /// store, e.g. `eu-central-1` (RES-1). Empty: not declared.
    pub data_region: String,
    /// Region of the blob store when it differs from `data_region`.
    pub blob_store_region: String,
    /// Lets an `s3://` blob store outside the EU start; RES-1 fails while this is on.
    pub allow_non_eu_storage: bool,
    /// OpenID Connect single sign-on (`[sso]` in `trustplane.toml`); off by default.
    pub sso: crate::authn::sso::config::SsoConfig,
}

/// One webhook receiver. The signing secret is never in the file: `secret_env` names the
/// environment variable that holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaWebhook {
    /// `https://…`, or `http://` to a loopback address.
    pub url: String,
    /// Environment variable with the HMAC-SHA256 secret, e.g. `TRUSTPLANE_WEBHOOK_SECRET_OPS`.
    pub secret_env: String,
}

impl std::fmt::Debug for SlaWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlaWebhook")
            .field("url", &redact_url(&self.url))
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

/// Prefix of webhook secret variables that may share the `TRUSTPLANE_` namespace without
/// being read as configuration keys.
pub const WEBHOOK_SECRET_PREFIX: &str = "TRUSTPLANE_WEBHOOK_SECRET_";

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("behind_proxy", &self.behind_proxy)
            .field("tls", &self.tls_enabled())
            .field("metrics_token", &"[redacted]")
            .field("smtp_url", &redact_url(&self.smtp_url))
            .field("smtp_password", &"[redacted]")
            .field("alertmanager_token", &"[redacted]")
            .field("sla_timezone", &self.sla_timezone)
            .field("sla_webhooks", &self.sla_webhooks)
            .field("sso", &self.sso)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            database_url: String::new(),
            keyring_path: String::new(),
            behind_proxy: false,
            tls_cert: String::new(),
            tls_key: String::new(),
            public_url: String::new(),
            log_format: LogFormat::Text,
            metrics_token: String::new(),
            policy_dir: String::new(),
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            lockout_account_failures: 10,
            lockout_ip_failures: 50,
            lockout_minutes: 15,
            password_hash_concurrency: 0,
            password_hash_queue: 32,
            trusted_proxy_hops: 1,
            setup_link_hours: 24,
            portal_body_limit_bytes: 64 * 1024,
            blob_store_url: String::new(),
            api_max_image_bytes: 10 * 1024 * 1024,
            api_upload_timeout_seconds: 30,
            api_max_dimension: 8192,
            api_max_pixels: 40_000_000,
            stored_image_max_bytes: crate::biometric::StoragePolicy::DEFAULT_MAX_BYTES,
            demo_requests_per_minute: 10,
            demo_retention_days: crate::customers::MAX_DEMO_RETENTION_DAYS,
            demo_stored_max_dimension: 1024,
            demo_storage_quota_bytes: 2 * 1024 * 1024 * 1024,
            detect_workers: 0,
            detect_queue: 16,
            detect_isolation: "process".into(),
            worker_exe: String::new(),
            detect_timeout_seconds: 20,
            job_schedules: std::collections::BTreeMap::new(),
            scheduler_enabled: true,
            smtp_url: String::new(),
            smtp_username: String::new(),
            smtp_password: String::new(),
            mail_from: "trustplane <trustplane@localhost>".into(),
            backup_keep: 14,
            audit_ip_retention_days: 30,
            sla_timezone: "UTC".into(),
            sla_working_days: ["mon", "tue", "wed", "thu", "fri"]
                .map(str::to_owned)
                .to_vec(),
            sla_holidays: Vec::new(),
            sla_webhooks: Vec::new(),
            review_timezone: "UTC".into(),
            review_due_days: 14,
            review_dormant_days: 90,
            review_execute: "decision".into(),
            incident_triage_minutes: [60; 4],
            incident_escalation_minutes: 15,
            controller_notice_hours: 24,
            finding_remediation_hours: [72, 14 * 24, 30 * 24, 90 * 24],
            disclosure_contact_email: String::new(),
            disclosure_reports_per_hour: 5,
            disclosure_policy_file: String::new(),
            security_txt_expires_days: 180,
            security_txt_languages: "en".into(),
            security_txt_encryption: String::new(),
            security_txt_hiring: String::new(),
            security_txt_openpgp_key: String::new(),
            vendor_notice_days: 30,
            vendor_reassessment_months: [12, 24, 36],
            trust_requests_per_minute: 60,
            alertmanager_token: String::new(),
            signal_minute_hours: 48,
            alert_thresholds: crate::alerts::model::Thresholds::default(),
            control_owners: std::collections::BTreeMap::new(),
            trust_failing_wording: "under review".into(),
            data_region: String::new(),
            blob_store_region: String::new(),
            allow_non_eu_storage: false,
            sso: crate::authn::sso::config::SsoConfig::default(),
        }
    }
}

/// Smallest `stored_image_max_bytes`: room for a usable JPEG of a face.
const MIN_STORED_IMAGE_BYTES: usize = 64 * 1024;
/// Largest `stored_image_max_bytes`: the server holds the copy in memory while sealing it.
const MAX_STORED_IMAGE_BYTES: usize = 256 * 1024 * 1024;
/// Smallest `demo_storage_quota_bytes`: a handful of demo previews.
const MIN_DEMO_STORAGE_QUOTA_BYTES: u64 = 1024 * 1024;

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

pub(crate) fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// `TRUSTPLANE_*` variables that are not configuration keys: secrets read by the keyring,
/// the config file path, the log filter, and test and build settings.
const NON_CONFIG_VARS: [&str; 8] = [
    "config",
    "sso_client_secret",
    "log",
    "hmac_pepper",
    "aes_key",
    "session_key",
    "test_postgres_url",
    "face_model",
];

/// The environment provider: `TRUSTPLANE_<KEY>`, without the variables above and without
/// webhook secrets (`TRUSTPLANE_WEBHOOK_SECRET_*`).
fn config_env() -> Env {
    let secret_prefix = WEBHOOK_SECRET_PREFIX
        .trim_start_matches("TRUSTPLANE_")
        .to_ascii_lowercase();
    Env::prefixed("TRUSTPLANE_").filter(move |key| {
        !NON_CONFIG_VARS
            .iter()
            .any(|v| key.as_str().eq_ignore_ascii_case(v))
            && !key
                .as_str()
                .to_ascii_lowercase()
                .starts_with(&secret_prefix)
    })
}

impl Config {
    /// Loads defaults, then `trustplane.toml` in the working directory (or the file named by
    /// `TRUSTPLANE_CONFIG`), then the environment, and validates the result.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("TRUSTPLANE_CONFIG").unwrap_or_else(|_| "trustplane.toml".into());
        Self::load_from(Path::new(&file), config_env())
    }

    fn load_from(file: &Path, env: Env) -> Result<Self, ConfigError> {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(env);
        let mut config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let key = if key.is_empty() {
                "trustplane.toml".to_owned()
            } else {
                key
            };
            invalid(&key, e.kind.to_string())
        })?;
        config.sso.apply_env(|key| std::env::var(key).ok());
        config.validate()?;
        Ok(config)
    }

    /// Checks values a type alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !self.database_url.is_empty()
            && !self.database_url.starts_with("sqlite:")
            && !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid(
                "tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        let positive = [
            ("session_idle_minutes", self.session_idle_minutes),
            ("session_absolute_hours", self.session_absolute_hours),
            ("lockout_account_failures", self.lockout_account_failures),
            ("lockout_ip_failures", self.lockout_ip_failures),
            ("lockout_minutes", self.lockout_minutes),
            ("setup_link_hours", self.setup_link_hours),
            ("audit_ip_retention_days", self.audit_ip_retention_days),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(invalid(key, format!("must be greater than 0, got {value}")));
            }
        }
        if self.session_idle_minutes > self.session_absolute_hours * 60 {
            return Err(invalid(
                "session_idle_minutes",
                "must not exceed session_absolute_hours",
            ));
        }
        if let Some(bad) = self
            .incident_triage_minutes
            .iter()
            .find(|m| !(1..=crate::incidents::MAX_TRIAGE_MINUTES).contains(*m))
        {
            return Err(invalid(
                "incident_triage_minutes",
                format!("each must be between 1 and 60 (the published 1-hour triage), got {bad}"),
            ));
        }
        let [critical, high, medium, low] = self.finding_remediation_hours;
        if !(1..=crate::findings::MAX_CRITICAL_HOURS).contains(&critical)
            || [high, medium, low]
                .iter()
                .any(|h| !(1..=366 * 24).contains(h))
        {
            return Err(invalid(
                "finding_remediation_hours",
                "critical must be 1 to 72 hours (the published promise), the others 1 to 8784",
            ));
        }
        if !(1..=72).contains(&self.controller_notice_hours) {
            return Err(invalid(
                "controller_notice_hours",
                "must be between 1 and 72 (within the authority's 72 hours)",
            ));
        }
        if !(0..=365).contains(&self.vendor_notice_days) {
            return Err(invalid("vendor_notice_days", "must be between 0 and 365"));
        }
        if self
            .vendor_reassessment_months
            .iter()
            .any(|m| !(1..=60).contains(m))
        {
            return Err(invalid(
                "vendor_reassessment_months",
                "each (high, medium, low) must be between 1 and 60",
            ));
        }
        if self.trust_requests_per_minute == 0 {
            return Err(invalid("trust_requests_per_minute", "must be at least 1"));
        }
        if !(1..=24 * 30).contains(&self.signal_minute_hours) {
            return Err(invalid(
                "signal_minute_hours",
                "must be between 1 and 720 hours",
            ));
        }
        self.sso
            .validate()
            .map_err(|(key, problem)| invalid(&key, problem))?;
        self.alert_thresholds
            .validate()
            .map_err(|(key, problem)| invalid(&format!("alert_thresholds.{key}"), problem))?;
        if !self.alertmanager_token.is_empty() && self.alertmanager_token.len() < 24 {
            return Err(invalid(
                "alertmanager_token",
                "must be at least 24 characters (or empty to turn the hook off)",
            ));
        }
        if !(1..=24 * 60).contains(&self.incident_escalation_minutes) {
            return Err(invalid(
                "incident_escalation_minutes",
                "must be between 1 and 1440",
            ));
        }
        if !(1..=1000).contains(&self.disclosure_reports_per_hour) {
            return Err(invalid(
                "disclosure_reports_per_hour",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=364).contains(&self.security_txt_expires_days) {
            return Err(invalid(
                "security_txt_expires_days",
                "must be between 1 and 364 (RFC 9116: less than a year ahead)",
            ));
        }
        if !self.disclosure_contact_email.trim().is_empty()
            && crate::staff::model::Email::parse(&self.disclosure_contact_email).is_err()
        {
            return Err(invalid(
                "disclosure_contact_email",
                "must be an email address, or empty",
            ));
        }
        for (key, value) in [
            ("security_txt_encryption", &self.security_txt_encryption),
            ("security_txt_hiring", &self.security_txt_hiring),
        ] {
            if !value.trim().is_empty() && !value.trim().starts_with("https://") {
                return Err(invalid(key, "must be an https:// URL, or empty"));
            }
        }
        if self
            .security_txt_languages
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, ',' | ' ' | '-')))
        {
            return Err(invalid(
                "security_txt_languages",
                "must be language tags separated by commas, e.g. `en, de`",
            ));
        }
        if !(1..=10).contains(&self.trusted_proxy_hops) {
            return Err(invalid("trusted_proxy_hops", "must be between 1 and 10"));
        }
        if self.password_hash_concurrency > 64 {
            return Err(invalid(
                "password_hash_concurrency",
                "must be at most 64 (each hash holds 64 MiB)",
            ));
        }
        if self.password_hash_queue > 10_000 {
            return Err(invalid("password_hash_queue", "must be at most 10000"));
        }
        if self.portal_body_limit_bytes < 1024 {
            return Err(invalid("portal_body_limit_bytes", "must be at least 1024"));
        }
        let demo_cap = crate::customers::MAX_DEMO_RETENTION_DAYS;
        if !(0..=demo_cap).contains(&self.demo_retention_days) {
            return Err(invalid(
                "demo_retention_days",
                format!("must be between 0 and {demo_cap} (the published demo retention)"),
            ));
        }
        if self.demo_requests_per_minute == 0 {
            return Err(invalid(
                "demo_requests_per_minute",
                "must be greater than 0",
            ));
        }
        if self.api_max_image_bytes < 1024 || self.api_max_image_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "api_max_image_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if self.api_max_dimension < 64 || self.api_max_pixels < 4096 {
            return Err(invalid(
                "api_max_pixels",
                "limits are too small to hold a face",
            ));
        }
        if !(MIN_STORED_IMAGE_BYTES..=MAX_STORED_IMAGE_BYTES).contains(&self.stored_image_max_bytes)
        {
            return Err(invalid(
                "stored_image_max_bytes",
                format!(
                    "must be between {MIN_STORED_IMAGE_BYTES} (64 KiB) and {MAX_STORED_IMAGE_BYTES} (256 MiB), got {}",
                    self.stored_image_max_bytes
                ),
            ));
        }
        if !(64..=8192).contains(&self.demo_stored_max_dimension) {
            return Err(invalid(
                "demo_stored_max_dimension",
                format!(
                    "must be between 64 and 8192 pixels, got {}",
                    self.demo_stored_max_dimension
                ),
            ));
        }
        if self.demo_storage_quota_bytes < MIN_DEMO_STORAGE_QUOTA_BYTES {
            return Err(invalid(
                "demo_storage_quota_bytes",
                format!(
                    "must be at least {MIN_DEMO_STORAGE_QUOTA_BYTES} (1 MiB), got {}; set demo_retention_days = 0 to keep no demo images at all",
                    self.demo_storage_quota_bytes
                ),
            ));
        }
        if !["process", "thread"].contains(&self.detect_isolation.as_str()) {
            return Err(invalid("detect_isolation", "must be `process` or `thread`"));
        }
        if self.detect_timeout_seconds == 0 {
            return Err(invalid("detect_timeout_seconds", "must be greater than 0"));
        }
        if self.api_upload_timeout_seconds == 0 || self.api_upload_timeout_seconds > 600 {
            return Err(invalid(
                "api_upload_timeout_seconds",
                "must be between 1 and 600",
            ));
        }
        for spec in crate::jobs::JOBS {
            crate::jobs::schedule_of(&spec, &self.job_schedules)
                .map_err(|e| invalid(&format!("job_schedules.{}", spec.name), e.to_string()))?;
        }
        if let Some(unknown) = self
            .job_schedules
            .keys()
            .find(|k| !crate::jobs::JOBS.iter().any(|j| j.name == k.as_str()))
        {
            return Err(invalid(&format!("job_schedules.{unknown}"), "no such job"));
        }
        if !self.smtp_url.is_empty() {
            let url = url::Url::parse(&self.smtp_url).map_err(|_| {
                invalid(
                    "smtp_url",
                    "is not a URL like smtp+starttls://mail.example:587",
                )
            })?;
            if !["smtp", "smtp+starttls", "smtps"].contains(&url.scheme()) {
                return Err(invalid(
                    "smtp_url",
                    "scheme must be smtp+starttls, smtps or smtp",
                ));
            }
            let loopback = matches!(
                url.host_str(),
                Some("127.0.0.1" | "localhost" | "::1" | "[::1]")
            );
            if url.scheme() == "smtp" && !loopback {
                return Err(invalid(
                    "smtp_url",
                    "plain smtp:// is allowed only to a loopback relay; use smtp+starttls or smtps",
                ));
            }
        }
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid("mail_from", "is not an email address"));
        }
        if !self.public_url.is_empty() && url::Url::parse(&self.public_url).is_err() {
            return Err(invalid("public_url", "is not a valid URL"));
        }
        self.sla_calendar()?;
        crate::controls::residency::check(self)?;
        crate::controls::validate_config(self).map_err(|(key, problem)| invalid(&key, problem))?;
        crate::reviews::validate_config(self).map_err(|(key, problem)| invalid(key, problem))?;
        for (index, hook) in self.sla_webhooks.iter().enumerate() {
            validate_webhook(index, hook, |name| std::env::var(name).ok())?;
        }
        Ok(())
    }

    /// The business-day calendar of SLA deadlines.
    pub fn sla_calendar(&self) -> Result<crate::sla::BusinessCalendar, ConfigError> {
        crate::sla::BusinessCalendar::parse(
            &self.sla_timezone,
            &self.sla_working_days,
            &self.sla_holidays,
        )
        .map_err(|e| invalid(e.key, e.problem))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            )
        })
    }

    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.is_empty() && !self.tls_key.is_empty()
    }

    /// The database URL, defaulting to a SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("trustplane.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    pub fn effective_keyring_path(&self) -> PathBuf {
        if self.keyring_path.is_empty() {
            self.data_dir.join("keyring.json")
        } else {
            PathBuf::from(&self.keyring_path)
        }
    }

    /// Where people reach the portal, for links printed on the console.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        format!("{scheme}://{bound}")
    }
}

/// A webhook needs a URL that keeps its payload private in transit and a secret that is set.
fn validate_webhook(
    index: usize,
    hook: &SlaWebhook,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let url_key = format!("sla_webhooks[{index}].url");
    let url = url::Url::parse(&hook.url).map_err(|_| {
        invalid(
            &url_key,
            "is not a URL like https://hooks.example/trustplane",
        )
    })?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "::1" | "[::1]")
    );
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                &url_key,
                "plain http:// is allowed only to a loopback receiver; use https://",
            ));
        }
        _ => return Err(invalid(&url_key, "scheme must be https")),
    }
    let env_key = format!("sla_webhooks[{index}].secret_env");
    let name = hook.secret_env.trim();
    if name.is_empty() {
        return Err(invalid(
            &env_key,
            "name the environment variable holding the signing secret",
        ));
    }
    if name.starts_with("TRUSTPLANE_") && !name.starts_with(WEBHOOK_SECRET_PREFIX) {
        return Err(invalid(
            &env_key,
            format!(
                "variables starting with TRUSTPLANE_ are configuration keys; use {WEBHOOK_SECRET_PREFIX}…"
            ),
        ));
    }
    match lookup(name) {
        Some(secret) if secret.len() >= 16 => Ok(()),
        Some(_) => Err(invalid(
            &env_key,
            format!("the secret in {name} is shorter than 16 characters"),
        )),
        None => Err(invalid(
            &env_key,
            format!("environment variable {name} is not set"),
        )),
    }
}

/// Hides the password part of a database URL.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_8080() {
        let config = Config::default();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "trustplane.toml",
                "listen = \"127.0.0.1:9000\"\nlockout_minutes = 20",
            )?;
            jail.set_env("TRUSTPLANE_LISTEN", "127.0.0.1:9100");
            let config = Config::load_from(Path::new("trustplane.toml"), config_env())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:9100");
            assert_eq!(config.lockout_minutes, 20);
            assert_eq!(config.session_idle_minutes, 30);
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TRUSTPLANE_SESSION_IDLE_MINUTES", "soon");
            let err = Config::load_from(Path::new("none.toml"), config_env())
                .err()
                .ok_or("expected an error")?;
            assert!(err.to_string().contains("session_idle_minutes"), "{err}");
            jail.set_env("TRUSTPLANE_SESSION_IDLE_MINUTES", "30");
            jail.set_env("TRUSTPLANE_LISTEN", "everywhere");
            let err = Config::load_from(Path::new("none.toml"), config_env())
                .err()
                .ok_or("expected an error")?;
            assert_eq!(err.key, "listen");
            Ok(())
        });
    }

    #[test]
    fn demo_retention_above_the_published_seven_days_is_refused() {
        let config = Config {
            demo_retention_days: 8,
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "demo_retention_days");
    }

    #[test]
    fn storage_bounds_are_checked_and_named() {
        for (config, key) in [
            (
                Config {
                    stored_image_max_bytes: 1000,
                    ..Config::default()
                },
                "stored_image_max_bytes",
            ),
            (
                Config {
                    stored_image_max_bytes: 1 << 30,
                    ..Config::default()
                },
                "stored_image_max_bytes",
            ),
            (
                Config {
                    demo_stored_max_dimension: 10,
                    ..Config::default()
                },
                "demo_stored_max_dimension",
            ),
            (
                Config {
                    demo_storage_quota_bytes: 0,
                    ..Config::default()
                },
                "demo_storage_quota_bytes",
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn storage_keys_load_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TRUSTPLANE_DEMO_STORAGE_QUOTA_BYTES", "5000000");
            jail.set_env("TRUSTPLANE_DEMO_STORED_MAX_DIMENSION", "640");
            jail.set_env("TRUSTPLANE_STORED_IMAGE_MAX_BYTES", "1048576");
            let config = Config::load_from(Path::new("none.toml"), config_env())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.demo_storage_quota_bytes, 5_000_000);
            assert_eq!(config.demo_stored_max_dimension, 640);
            assert_eq!(config.stored_image_max_bytes, 1_048_576);
            Ok(())
        });
    }

    #[test]
    fn secret_and_tool_variables_are_not_config_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TRUSTPLANE_HMAC_PEPPER", "x");
            jail.set_env("TRUSTPLANE_TEST_POSTGRES_URL", "postgres://x");
            jail.set_env("TRUSTPLANE_LOG", "debug");
            let config = Config::load_from(Path::new("none.toml"), config_env())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:8080");
            jail.set_env("TRUSTPLANE_LISTN", "127.0.0.1:1");
            let err = Config::load_from(Path::new("none.toml"), config_env())
                .err()
                .ok_or("typo accepted")?;
            assert!(err.to_string().contains("listn"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("trustplane.toml", "lisen = \"127.0.0.1:1\"")?;
            let err = Config::load_from(Path::new("trustplane.toml"), config_env())
                .err()
                .ok_or("expected an error")?;
            assert!(err.to_string().contains("lisen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn sla_calendar_settings_are_validated_with_the_key_named() {
        assert!(Config::default().sla_calendar().is_ok());
        let config = Config {
            sla_timezone: "Europe/Atlantis".into(),
            ..Config::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "sla_timezone");
        let config = Config {
            sla_holidays: vec!["2026-12-24".into(), "Christmas".into()],
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "sla_holidays");
        assert!(err.to_string().contains("Christmas"), "{err}");
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "trustplane.toml",
                "sla_timezone = \"Europe/Berlin\"\nsla_working_days = [\"mon\", \"tue\"]\n\
                 sla_holidays = [\"2026-12-24\"]",
            )?;
            let config = Config::load_from(Path::new("trustplane.toml"), config_env())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.sla_working_days, vec!["mon", "tue"]);
            Ok(())
        });
    }

    #[test]
    fn webhooks_need_a_private_url_and_a_secret_from_the_environment() {
        let hook = |url: &str, env: &str| SlaWebhook {
            url: url.into(),
            secret_env: env.into(),
        };
        let secret = |name: &str| (name == "HOOK_SECRET").then(|| "s".repeat(32));
        assert!(validate_webhook(0, &hook("https://h.example/x", "HOOK_SECRET"), secret).is_ok());
        assert!(validate_webhook(0, &hook("http://127.0.0.1:9/x", "HOOK_SECRET"), secret).is_ok());
        let err =
            validate_webhook(1, &hook("http://h.example/x", "HOOK_SECRET"), secret).unwrap_err();
        assert_eq!(err.key, "sla_webhooks[1].url");
        let err = validate_webhook(0, &hook("https://h.example/x", "UNSET"), secret).unwrap_err();
        assert_eq!(err.key, "sla_webhooks[0].secret_env");
        assert!(err.to_string().contains("UNSET is not set"), "{err}");
        let err = validate_webhook(0, &hook("https://h.example/x", "TRUSTPLANE_LISTEN"), secret)
            .unwrap_err();
        assert!(err.to_string().contains(WEBHOOK_SECRET_PREFIX), "{err}");
        let short = |_: &str| Some("short".to_owned());
        assert!(validate_webhook(0, &hook("https://h.example/x", "ANY"), short).is_err());
    }

    #[test]
    fn webhook_secret_variables_are_not_config_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "TRUSTPLANE_WEBHOOK_SECRET_OPS",
                "a-long-enough-secret-value",
            );
            let config = Config::load_from(Path::new("none.toml"), config_env())
                .map_err(|e| e.to_string())?;
            assert!(config.sla_webhooks.is_empty());
            Ok(())
        });
    }

    #[test]
    fn database_url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@db/x"),
            "postgres://u:redacted@db/x"
        );
    }
}
