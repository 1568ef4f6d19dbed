//! trustplane: a security-operations and compliance control plane. One binary serves the
//! staff portal, (later) the customer processing API, and the scheduler; every claim of the
//! Trust & Safety page becomes a control the code enforces and proves.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

/// Monitoring (MON-1): traffic and login-failure counters, anomaly detectors, alerts that
/// open incidents, Alertmanager intake.
pub mod alerts;
/// The customer processing API: /v1 (X-API-Key), /demo (per-network limit, storage quota), OpenAPI.
pub mod api;
/// Application state and router assembly.
pub mod app;
/// Append-only, hash-chained audit log, its verification and its portal page.
pub mod audit;
/// Staff authentication: passwords, TOTP, recovery codes, sessions, throttling, login pages.
pub mod authn;
/// Casbin RBAC over roles held in the database.
pub mod authz;
/// AES-256-GCM encrypted backups, restore, ledger and restore tests (BAK-1).
pub mod backup;
/// Image sanitising and face detection under hard limits, in confined worker processes.
pub mod biometric;
/// Encrypted image storage (AES-256-GCM) behind object_store.
pub mod blobs;
/// Server-rendered, accessible SVG charts (title, axis labels, data-table fallback).
pub mod chart;
/// Command-line interface: serve, migrate, admin, audit.
pub mod cli;
/// A client address's network (IPv4 /32, IPv6 /64), the key of per-client limits.
pub mod client_net;
/// Injected time (system or manual) and timestamp formatting.
pub mod clock;
/// Typed configuration: defaults < trustplane.toml < TRUSTPLANE_* env.
pub mod config;
/// The control catalogue: one control per Trust & Safety promise, evaluated from live
/// records with history; the public trust page; RES-1; the questionnaire answer library.
pub mod controls;
/// Keyring (pepper, AES-256-GCM key, session key), tokens, hashing, sealing.
pub mod crypto;
/// Customers: environment, image retention, state, and their portal pages.
pub mod customers;
/// The data folder: private umask, folder and file permissions tightened at start.
pub mod data_dir;
/// Database pool over SQLite or PostgreSQL, migrations, error classification.
pub mod db;
/// The disclosure inbox (DSC-1, DSC-2): security.txt, the public report form, the
/// researcher's status link, the staff inbox and its three SLA clocks.
pub mod disclosures;
/// Portal error type rendered as readable pages.
pub mod error;
/// Signed evidence packs for auditors (record sets of a period, audit extract, manifest,
/// Ed25519 signature) and their offline verification.
pub mod evidence;
/// Findings from pentests and disclosures with remediation clocks by severity, and the
/// pentest engagements (PEN-2) with their reports and the annual next-test clock.
pub mod findings;
/// Records of processed images (owner, result, expiry).
pub mod images;
/// Incidents with triage and GDPR clocks, timeline, post-incident review.
pub mod incidents;
/// The scheduler: cron jobs with database leases, run once per occurrence across nodes.
pub mod jobs;
/// Customer API keys: format, HMAC storage, verification cache, rotation, revocation.
pub mod keys;
/// Prometheus metrics.
pub mod metrics;
/// Email outbox delivered through lettre (SMTP, or .eml files by default).
pub mod notify;
/// On-call rotation over security staff, overrides, escalation level, "who is on call now".
pub mod oncall;
/// Portal route registry and guard, page shell, dashboard, health and static files.
pub mod portal;
/// Per-client-network rate limits kept in a node's memory (public pages).
pub mod rate_limit;
/// Retention purge, purge ledger and the retention control (RET-1, RET-2).
pub mod retention;
/// Quarterly access-review campaigns over staff roles and API keys (REV-1): snapshot,
/// separation of duties, decisions executed and verified, sign-off, CSV report.
pub mod reviews;
/// Start-up, TLS, first-run setup link, graceful shutdown.
pub mod server;
/// SLA clocks for every deadline: business-day calendar, start/pause/resume/stop, the watch
/// job (breach, reminder, escalation), signed webhooks, the countdown and the SLA page.
pub mod sla;
/// Staff accounts, roles and their admin pages.
pub mod staff;
/// Sub-processor register: assessments and DPAs gate onboarding; public list and notices.
pub mod vendors;
/// Request context, cookies, security headers, form extraction.
pub mod web;
