//! The scheduler: jobs declared in code with a cron expression. Each occurrence is claimed by
//! inserting a row keyed by (job, occurrence), so with several nodes on one database each
//! occurrence runs once; the row carries a lease, so a node that died mid-run is taken over
//! once the lease expires. Missed occurrences after downtime run once (the latest), not once
//! per missed tick. Time comes from the injected clock.

pub mod pages;
pub mod store;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use crate::app::AppState;
use crate::clock::{DAY, MINUTE, Millis, SECOND};

/// A job the scheduler knows.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    pub name: &'static str,
    /// Six-field cron expression (seconds first), UTC.
    pub schedule: &'static str,
    pub description: &'static str,
}

/// Every scheduled job.
pub const JOBS: [JobSpec; 12] = [
    JobSpec {
        name: "retention_purge",
        schedule: "0 */10 * * * *",
        description: "Deletes images past their expiry (blob, then record), sweeps orphan blobs, \
                      removes expired sessions and links, and records the purge ledger.",
    },
    JobSpec {
        name: "sla_watch",
        schedule: "0 * * * * *",
        description: "Records SLA breaches at their deadline, sends the one reminder and the \
                      repeated escalations (email and signed webhooks), and writes SLA events.",
    },
    JobSpec {
        name: "webhook_deliver",
        schedule: "0 * * * * *",
        description: "Delivers queued SLA webhooks (HMAC-SHA256 signed), retrying with backoff.",
    },
    JobSpec {
        name: "outbox_deliver",
        schedule: "0 * * * * *",
        description: "Delivers queued email (SMTP or .eml files), retrying with backoff.",
    },
    JobSpec {
        name: "backup_daily",
        schedule: "0 30 2 * * *",
        description: "Writes an AES-256-GCM encrypted snapshot of the database under data/backups \
                      and deletes all but the newest backup_keep files.",
    },
    JobSpec {
        name: "backup_restore_test",
        schedule: "0 30 3 * * *",
        description: "Restores the newest backup into a temporary place and checks it \
                      (integrity, audit chain); records the result in the ledger.",
    },
    JobSpec {
        name: "risk_acceptance_expiry",
        schedule: "0 */15 * * * *",
        description: "Reopens findings whose accepted risk has expired and resumes their \
                      remediation clocks.",
    },
    JobSpec {
        name: "access_review_open",
        schedule: "0 0 * * * *",
        description: "Opens the quarter's access-review campaign (staff roles and API keys) on \
                      the first day of each calendar quarter in review_timezone; after downtime, \
                      within the quarter's first 7 days.",
    },
    JobSpec {
        name: "vendor_reminders",
        schedule: "0 5 * * * *",
        description: "Emails vendor owners 60, 30 and 7 days before a reassessment or DPA \
                      expiry is due (escalation at the deadline is sla_watch's).",
    },
    JobSpec {
        name: "alerts_detect",
        // Five seconds past the minute, so every node has flushed the minute's counters.
        schedule: "5 * * * * *",
        description: "Runs the anomaly detectors over each completed minute of API traffic and \
                      login failures; alerts open or join incidents and page on-call.",
    },
    JobSpec {
        name: "controls_evaluate",
        schedule: "0 0 * * * *",
        description: "Evaluates every control of the catalogue from the live records, keeps the \
                      history, audits state changes and emails the owner of a control that \
                      starts failing.",
    },
    JobSpec {
        name: "failed_jobs_digest",
        schedule: "0 0 7 * * *",
        description: "Emails admins a digest of job runs that failed in the last 24 hours.",
    },
];

/// How long a claimed run may go without finishing before another node may take it over.
pub const LEASE: Millis = 10 * MINUTE;
/// How far back a job that never ran looks for a missed occurrence.
const FIRST_LOOKBACK: Millis = DAY;

/// How a run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub job: &'static str,
    pub occurrence: Millis,
    pub ok: bool,
    pub counts: Value,
    pub error: Option<String>,
}

/// Parses a job's schedule, honouring a config override.
pub fn schedule_of(
    spec: &JobSpec,
    overrides: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<cron::Schedule> {
    let expression = overrides
        .get(spec.name)
        .map(String::as_str)
        .unwrap_or(spec.schedule);
    cron::Schedule::from_str(expression)
        .map_err(|e| anyhow::anyhow!("invalid configuration: `job_schedules.{}`: {e}", spec.name))
}

/// The latest scheduled time in (after, now], if any.
pub fn latest_due(schedule: &cron::Schedule, after: Millis, now: Millis) -> Option<Millis> {
    let now_dt = Utc.timestamp_millis_opt(now).single()?;
    let latest = schedule.after(&now_dt).next_back()?.timestamp_millis();
    (latest > after && latest <= now).then_some(latest)
}

/// The next scheduled time after `now`.
pub fn next_after(schedule: &cron::Schedule, now: Millis) -> Option<Millis> {
    let now_dt = Utc.timestamp_millis_opt(now).single()?;
    schedule.after(&now_dt).next().map(|t| t.timestamp_millis())
}

/// Runs the job's work.
async fn execute(state: &AppState, job: &str, run_id: &str) -> anyhow::Result<Value> {
    match job {
        "retention_purge" => {
            let report = crate::retention::purge(state, run_id).await?;
            Ok(serde_json::to_value(report)?)
        }
        "outbox_deliver" => Ok(serde_json::to_value(crate::notify::deliver(state).await?)?),
        "sla_watch" => Ok(serde_json::to_value(crate::sla::watch::run(state).await?)?),
        "webhook_deliver" => Ok(serde_json::to_value(
            crate::sla::webhook::deliver(state).await?,
        )?),
        "failed_jobs_digest" => crate::notify::failed_jobs_digest(state).await,
        "risk_acceptance_expiry" => {
            let mut tx = state.db.begin().await?;
            let reopened = crate::findings::reopen_expired_risks(&mut tx, state.now()).await?;
            tx.commit().await?;
            Ok(serde_json::json!({ "reopened": reopened }))
        }
        "access_review_open" => {
            let settings = crate::reviews::Settings::from_config(&state.config);
            let opened =
                crate::reviews::open_due(&state.db, &settings, &state.sla_calendar, state.now())
                    .await?;
            Ok(serde_json::json!({ "opened": opened }))
        }
        "vendor_reminders" => {
            let mut tx = state.db.begin().await?;
            let report = crate::vendors::reminders::run(
                &mut tx,
                state.config.public_url.trim_end_matches('/'),
                state.now(),
            )
            .await?;
            tx.commit().await?;
            Ok(serde_json::to_value(report)?)
        }
        "backup_daily" => crate::backup::scheduled(state).await,
        "alerts_detect" => Ok(serde_json::to_value(
            crate::alerts::tick::run(state).await?,
        )?),
        "backup_restore_test" => crate::backup::restore_test(state).await,
        "controls_evaluate" => crate::controls::scheduled(state).await,
        other => anyhow::bail!("unknown job {other}"),
    }
}

/// One node's scheduler.
#[derive(Clone)]
pub struct Scheduler {
    state: AppState,
    /// This node's identity in leases.
    pub owner: String,
    schedules: Arc<Vec<(JobSpec, cron::Schedule)>>,
}

impl Scheduler {
    pub fn new(state: AppState) -> anyhow::Result<Self> {
        let schedules = JOBS
            .iter()
            .map(|spec| Ok((*spec, schedule_of(spec, &state.config.job_schedules)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            state,
            owner: format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            schedules: Arc::new(schedules),
        })
    }

    /// The schedule of each job.
    pub fn schedules(&self) -> impl Iterator<Item = &(JobSpec, cron::Schedule)> {
        self.schedules.iter()
    }

    /// Runs every job that is due (at most one occurrence each), and takes over runs whose
    /// owner's lease has expired.
    pub async fn tick(&self) -> anyhow::Result<Vec<RunSummary>> {
        let now = self.state.now();
        let mut summaries = Vec::new();
        for (spec, schedule) in self.schedules.iter() {
            let last = store::last_scheduled_occurrence(&self.state.db, spec.name).await?;
            let after = last.unwrap_or(now - FIRST_LOOKBACK);
            if let Some(occurrence) = latest_due(schedule, after, now)
                && let Some(run_id) = store::claim(
                    &self.state.db,
                    spec.name,
                    occurrence,
                    Trigger::Schedule,
                    &self.owner,
                    now,
                    now + LEASE,
                )
                .await?
            {
                summaries.push(self.run(spec.name, occurrence, &run_id).await);
            }
            if let Some((run_id, occurrence)) =
                store::take_over_expired(&self.state.db, spec.name, &self.owner, now, now + LEASE)
                    .await?
            {
                tracing::warn!(
                    job = spec.name,
                    occurrence,
                    "taking over a run whose owner stopped"
                );
                summaries.push(self.run(spec.name, occurrence, &run_id).await);
            }
        }
        Ok(summaries)
    }

    /// Runs a job now, outside its schedule ("run now" button, CLI).
    pub async fn run_now(&self, job: &str) -> anyhow::Result<RunSummary> {
        let spec = JOBS.iter().find(|j| j.name == job).ok_or_else(|| {
            anyhow::anyhow!(
                "no job named {job}; jobs: {}",
                JOBS.map(|j| j.name).join(", ")
            )
        })?;
        let now = self.state.now();
        let run_id = store::claim(
            &self.state.db,
            spec.name,
            now,
            Trigger::Manual,
            &self.owner,
            now,
            now + LEASE,
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("{job} was started this very millisecond already"))?;
        Ok(self.run(spec.name, now, &run_id).await)
    }

    async fn run(&self, job: &'static str, occurrence: Millis, run_id: &str) -> RunSummary {
        let result = execute(&self.state, job, run_id).await;
        let now = self.state.now();
        let (ok, counts, error) = match result {
            Ok(counts) => (true, counts, None),
            Err(err) => {
                tracing::error!(job, error = format!("{err:#}"), "job failed");
                (
                    false,
                    Value::Object(Default::default()),
                    Some(format!("{err:#}")),
                )
            }
        };
        if let Err(err) = store::finish(
            &self.state.db,
            run_id,
            &self.owner,
            now,
            ok,
            &counts,
            error.as_deref(),
        )
        .await
        {
            tracing::error!(job, error = %err, "could not record the end of a job run");
        }
        RunSummary {
            job,
            occurrence,
            ok,
            counts,
            error,
        }
    }

    /// Ticks in the background every few seconds until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(err) = self.tick().await {
                    tracing::warn!(error = format!("{err:#}"), "scheduler tick failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(
                    u64::try_from(5 * SECOND).unwrap_or(5000),
                ))
                .await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_due_picks_only_the_newest_missed_occurrence() {
        let schedule = cron::Schedule::from_str("0 */10 * * * *").unwrap();
        let base = Utc
            .with_ymd_and_hms(2027, 1, 1, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        // Down from 12:00 to 13:05: six occurrences missed, one run (13:00).
        assert_eq!(
            latest_due(&schedule, base, base + 65 * MINUTE),
            Some(base + 60 * MINUTE)
        );
        // Nothing new since the last run.
        assert_eq!(
            latest_due(&schedule, base + 60 * MINUTE, base + 65 * MINUTE),
            None
        );
        assert_eq!(
            next_after(&schedule, base + 65 * MINUTE),
            Some(base + 70 * MINUTE)
        );
    }

    #[test]
    fn overrides_are_validated_with_the_key_named() {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("retention_purge".to_owned(), "every tuesday".to_owned());
        let err = schedule_of(&JOBS[0], &overrides).unwrap_err();
        assert!(err.to_string().contains("job_schedules.retention_purge"));
    }
}
