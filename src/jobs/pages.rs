//! The Jobs page: each job's schedule, next run and last runs, and a "run now" button.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::{JOBS, Scheduler, next_after, store};
use crate::app::AppState;
use crate::audit::{self, AuditEvent, Outcome};
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/jobs", Access::Rbac("jobs", "read"), jobs_get),
        PortalRoute::post(
            "/jobs/{name}/run",
            Access::Rbac("jobs", "write"),
            job_run_post,
        ),
    ]
}

struct JobView {
    name: &'static str,
    description: &'static str,
    schedule: String,
    next_run: String,
}

struct RunView {
    job: String,
    trigger: String,
    started_at: String,
    finished_at: String,
    outcome: String,
    counts: crate::portal::labelled::Record,
    error: String,
    owner: String,
    attempts: i64,
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
struct JobsPage {
    shell: Shell,
    jobs: Vec<JobView>,
    runs: Vec<RunView>,
    can_run: bool,
}

async fn jobs_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Html<String>> {
    let now = state.now();
    let scheduler = Scheduler::new(state.clone()).map_err(AppError::Internal)?;
    let jobs = scheduler
        .schedules()
        .map(|(spec, schedule)| JobView {
            name: spec.name,
            description: spec.description,
            schedule: state
                .config
                .job_schedules
                .get(spec.name)
                .cloned()
                .unwrap_or_else(|| spec.schedule.to_owned()),
            next_run: next_after(schedule, now)
                .map(format_ms)
                .unwrap_or_else(|| "—".into()),
        })
        .collect();
    let runs = store::recent_runs(&state.db, "", 50)
        .await?
        .into_iter()
        .map(|r| RunView {
            job: r.job,
            trigger: r.trigger,
            started_at: format_ms(r.started_at),
            finished_at: r
                .finished_at
                .map(format_ms)
                .unwrap_or_else(|| "running".into()),
            outcome: r.outcome,
            counts: crate::portal::labelled::Record::of(&r.counts),
            error: r.error.unwrap_or_default(),
            owner: r.owner,
            attempts: r.attempts,
        })
        .collect();
    let session = visitor.session()?;
    html(&JobsPage {
        shell: Shell::new(&state, &visitor, "/jobs")?,
        jobs,
        runs,
        can_run: state.authz.allows(&session.roles, "jobs", "write"),
    })
}

async fn job_run_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> AppResult<Response> {
    let Some(spec) = JOBS.iter().find(|j| j.name == name) else {
        return Err(AppError::NotFound);
    };
    let scheduler = Scheduler::new(state.clone()).map_err(AppError::Internal)?;
    let summary = scheduler
        .run_now(spec.name)
        .await
        .map_err(AppError::Internal)?;
    let event = AuditEvent::new(visitor.actor(), "job.run_now", format!("job:{}", spec.name))
        .outcome(if summary.ok {
            Outcome::Success
        } else {
            Outcome::Failure
        })
        .detail("counts", summary.counts.clone());
    audit::append_alone(&state.db, state.now(), &visitor.ctx.meta(), event).await?;
    Ok(Redirect::to("/jobs").into_response())
}
