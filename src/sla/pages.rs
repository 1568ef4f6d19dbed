//! The countdown component (`templates/sla/countdown_partial.html`, kept ticking by
//! `static/countdown.js`) and the `/sla` page listing every clock of every kind.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::format::span;
use super::model::{ClockFilter, ClockState, Page, SlaClock, SubjectKind};
use crate::app::AppState;
use crate::clock::{Millis, format_ms};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

pub fn routes() -> Vec<PortalRoute> {
    vec![PortalRoute::get(
        "/sla",
        Access::Rbac("sla", "read"),
        sla_list_get,
    )]
}

/// Below this share of its duration left, a running clock turns amber.
const AMBER_BELOW: f64 = 0.25;

/// What the countdown partial shows, computed on the server so the page is right without
/// JavaScript; the script only keeps running clocks ticking.
///
/// To use it in a capability's template, put a `countdown` in scope and include the partial:
/// `{% let countdown = row.countdown.clone() %}{% include "sla/countdown_partial.html" %}`,
/// and load `/static/countdown.js` once on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countdown {
    /// `running`, `paused`, `met` or `breached` (at the time of rendering).
    pub state: &'static str,
    /// `normal`, `amber` (under a quarter of the time left), `red` (breached), `met`,
    /// `paused`: the CSS class.
    pub class: &'static str,
    /// "42m 10s left", "breached 1h 3m ago", "met".
    pub label: String,
    pub due_ms: Millis,
    /// The clock's running time, for the script to redo the amber rule.
    pub duration_ms: Millis,
    /// The deadline for the tooltip.
    pub due_text: String,
}

impl Countdown {
    pub fn of(clock: &SlaClock, now: Millis) -> Self {
        let state = clock.state_at(now);
        let remaining = clock.remaining_ms(now);
        let (class, label) = match state {
            ClockState::Met => ("met", "met".to_owned()),
            ClockState::Paused => ("paused", format!("paused, {} left", span(remaining))),
            ClockState::Breached => match clock.stopped_at {
                Some(stopped_at) => (
                    "red",
                    format!("breached, done {} late", span(stopped_at - clock.due_at)),
                ),
                None => ("red", format!("breached {} ago", span(now - clock.due_at))),
            },
            ClockState::Running => {
                let share_left = remaining as f64 / clock.duration_ms.max(1) as f64;
                let class = if share_left < AMBER_BELOW {
                    "amber"
                } else {
                    "normal"
                };
                (class, format!("{} left", span(remaining)))
            }
        };
        Self {
            state: state.as_str(),
            class,
            label,
            due_ms: clock.due_at,
            duration_ms: clock.duration_ms,
            due_text: format_ms(clock.due_at),
        }
    }
}

/// One row of the SLA page.
struct ClockRow {
    subject: String,
    link_path: String,
    name: String,
    target: String,
    started: String,
    due: String,
    escalations: i64,
    countdown: Countdown,
}

const PAGE_SIZE: i64 = 50;

#[derive(Template)]
#[template(path = "sla/list.html")]
struct SlaListPage {
    shell: Shell,
    rows: Vec<ClockRow>,
    /// Filter choices: (value, selected).
    states: Vec<(&'static str, bool)>,
    kinds: Vec<(&'static str, bool)>,
    zone: &'static str,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    page: Option<i64>,
}

async fn sla_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let filter = ClockFilter {
        state: (!query.state.is_empty())
            .then(|| ClockState::parse(&query.state))
            .transpose()
            .map_err(AppError::BadRequest)?,
        kind: (!query.kind.is_empty())
            .then(|| SubjectKind::parse(&query.kind))
            .transpose()
            .map_err(AppError::BadRequest)?,
    };
    let now = state.now();
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let (clocks, total) = super::list(
        &mut *state.db.pool.acquire().await?,
        now,
        &filter,
        Page::number(page, PAGE_SIZE),
    )
    .await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("state", &query.state)
            .append_pair("kind", &query.kind)
            .append_pair("page", &p.to_string());
        format!("/sla?{}", s.finish())
    };
    let rows = clocks
        .iter()
        .map(|clock| ClockRow {
            subject: clock.subject.label(),
            link_path: clock.link_path.clone(),
            name: clock.name.clone(),
            target: clock.target.clone(),
            started: format_ms(clock.started_at),
            due: format_ms(clock.due_at),
            escalations: clock.escalations_sent,
            countdown: Countdown::of(clock, now),
        })
        .collect();
    html(&SlaListPage {
        shell: Shell::new(&state, &visitor, "/sla")?,
        rows,
        states: ClockState::ALL
            .map(|s| (s.as_str(), filter.state == Some(s)))
            .to_vec(),
        kinds: SubjectKind::ALL
            .map(|k| (k.as_str(), filter.kind == Some(k)))
            .to_vec(),
        zone: state.sla_calendar.zone_name(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{HOUR, MINUTE, SECOND};
    use crate::sla::model::Subject;

    fn clock(state: ClockState, started_at: Millis, due_at: Millis) -> SlaClock {
        SlaClock {
            id: "c".into(),
            subject: Subject::new(SubjectKind::Incident, "i"),
            name: "triage".into(),
            target: "Triage within 1 hour".into(),
            state,
            started_at,
            due_at,
            duration_ms: due_at - started_at,
            reminder_fraction: None,
            remind_at: None,
            last_reminded_at: None,
            reminders_sent: 0,
            breached_at: None,
            stopped_at: None,
            paused_at: None,
            pause_reason: None,
            paused_total_ms: 0,
            escalation_interval_ms: None,
            last_escalated_at: None,
            escalations_sent: 0,
            notify_to: Vec::new(),
            escalate_to: Vec::new(),
            link_path: "/incidents/i".into(),
            created_at: started_at,
        }
    }

    #[test]
    fn a_running_clock_turns_amber_under_a_quarter_left_and_red_at_the_deadline() {
        let c = clock(ClockState::Running, 0, HOUR);
        let early = Countdown::of(&c, 17 * MINUTE + 50 * SECOND);
        assert_eq!(
            (early.class, early.label.as_str()),
            ("normal", "42m 10s left")
        );
        let late = Countdown::of(&c, 46 * MINUTE);
        assert_eq!((late.class, late.label.as_str()), ("amber", "14m 0s left"));
        let breached = Countdown::of(&c, 2 * HOUR + 3 * MINUTE);
        assert_eq!(
            (breached.class, breached.state, breached.label.as_str()),
            ("red", "breached", "breached 1h 3m ago")
        );
        assert_eq!(breached.due_ms, HOUR);
    }

    #[test]
    fn stopped_and_paused_clocks_say_so() {
        let mut met = clock(ClockState::Met, 0, HOUR);
        met.stopped_at = Some(MINUTE);
        assert_eq!(Countdown::of(&met, 5 * HOUR).label, "met");
        let mut late = clock(ClockState::Breached, 0, HOUR);
        late.stopped_at = Some(HOUR + 5 * MINUTE);
        assert_eq!(
            Countdown::of(&late, 5 * HOUR).label,
            "breached, done 5m 0s late"
        );
        let mut paused = clock(ClockState::Paused, 0, HOUR);
        paused.paused_at = Some(20 * MINUTE);
        let shown = Countdown::of(&paused, 3 * HOUR);
        assert_eq!(
            (shown.class, shown.label.as_str()),
            ("paused", "paused, 40m 0s left")
        );
    }
}
