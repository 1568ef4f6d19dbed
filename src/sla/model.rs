//! SLA clock types: what a clock is about, its state, and the events it records for the
//! timelines of the capabilities that own it.

use serde::Serialize;

use crate::clock::Millis;

/// The kinds of record that carry deadlines. A new capability adds its kind here, so the
/// SLA page, the CLI filter and the record figures know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Incident,
    Finding,
    Disclosure,
    AccessReview,
    Vendor,
    /// A pentest engagement; its `next_pentest` clock says when the next test is due.
    PentestEngagement,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 6] = [
        SubjectKind::Incident,
        SubjectKind::Finding,
        SubjectKind::Disclosure,
        SubjectKind::AccessReview,
        SubjectKind::Vendor,
        SubjectKind::PentestEngagement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Incident => "incident",
            SubjectKind::Finding => "finding",
            SubjectKind::Disclosure => "disclosure",
            SubjectKind::AccessReview => "access_review",
            SubjectKind::Vendor => "vendor",
            SubjectKind::PentestEngagement => "pentest",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        SubjectKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown kind “{}”: use incident, finding, disclosure, access_review, vendor or pentest.",
                    raw.trim()
                )
            })
    }
}

/// The record a clock belongs to, e.g. incident `7f3c…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: String,
}

impl Subject {
    pub fn new(kind: SubjectKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// `incident:7f3c…`, as used in audit targets.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }
}

/// Where a clock is in its life.
///
/// - `Running`: counting towards `due_at`.
/// - `Paused`: not counting (e.g. waiting for the reporter); on resume `due_at` moves later
///   by the time spent paused.
/// - `Met`: stopped before `due_at`.
/// - `Breached`: `due_at` passed before the clock was stopped. A clock is breached from the
///   very millisecond `now >= due_at`, and stays breached when it is stopped afterwards
///   ("met late" counts as a breach in every figure). `stopped_at` says whether the work has
///   since been done; escalations continue only while it is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockState {
    Running,
    Paused,
    Met,
    Breached,
}

impl ClockState {
    pub const ALL: [ClockState; 4] = [
        ClockState::Running,
        ClockState::Paused,
        ClockState::Met,
        ClockState::Breached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClockState::Running => "running",
            ClockState::Paused => "paused",
            ClockState::Met => "met",
            ClockState::Breached => "breached",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        ClockState::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown state “{}”: use running, paused, met or breached.",
                    raw.trim()
                )
            })
    }
}

/// A stored clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaClock {
    pub id: String,
    pub subject: Subject,
    pub name: String,
    pub target: String,
    /// The stored state; see [`SlaClock::state_at`] for the state at a given time.
    pub state: ClockState,
    pub started_at: Millis,
    /// The deadline, moved later by every pause once it ends.
    pub due_at: Millis,
    /// The running time the clock allows (`due_at - started_at` before any pause).
    pub duration_ms: Millis,
    pub reminder_fraction: Option<f64>,
    /// When the reminder is due (moves with `due_at`).
    pub remind_at: Option<Millis>,
    pub last_reminded_at: Option<Millis>,
    pub reminders_sent: i64,
    /// Equals `due_at` once the breach is recorded.
    pub breached_at: Option<Millis>,
    pub stopped_at: Option<Millis>,
    pub paused_at: Option<Millis>,
    pub pause_reason: Option<String>,
    pub paused_total_ms: Millis,
    pub escalation_interval_ms: Option<Millis>,
    pub last_escalated_at: Option<Millis>,
    pub escalations_sent: i64,
    pub notify_to: Vec<String>,
    pub escalate_to: Vec<String>,
    pub link_path: String,
    pub created_at: Millis,
}

impl SlaClock {
    /// The state at `now`: a running clock whose deadline has come is breached even before
    /// the watch job has recorded it, so pages and figures never lag the job.
    pub fn state_at(&self, now: Millis) -> ClockState {
        if self.state == ClockState::Running && now >= self.due_at {
            ClockState::Breached
        } else {
            self.state
        }
    }

    /// Milliseconds left until the deadline at `now` (negative once past); a paused clock
    /// keeps what it had left when it was paused.
    pub fn remaining_ms(&self, now: Millis) -> Millis {
        match (self.state, self.paused_at) {
            (ClockState::Paused, Some(paused_at)) => self.due_at - paused_at,
            _ => self.due_at - now,
        }
    }

    /// Still expected to be acted on (running, paused, or breached and not yet stopped).
    pub fn is_open(&self) -> bool {
        self.stopped_at.is_none()
    }

    /// The clock as JSON for machines (the CLI's `--json`, webhook payloads), with its state
    /// and time left as of `now`.
    pub fn summary(&self, now: Millis) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "subject_kind": self.subject.kind.as_str(),
            "subject_id": self.subject.id,
            "name": self.name,
            "target": self.target,
            "state": self.state_at(now).as_str(),
            "started_at": self.started_at,
            "due_at": self.due_at,
            "remaining_ms": self.remaining_ms(now),
            "breached_at": self.breached_at,
            "stopped_at": self.stopped_at,
            "paused_at": self.paused_at,
            "escalations_sent": self.escalations_sent,
            "link_path": self.link_path,
        })
    }

    /// Everyone an escalation goes to: `notify_to` then `escalate_to`, without repeats.
    pub fn escalation_recipients(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for address in self.notify_to.iter().chain(&self.escalate_to) {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                all.push(address.clone());
            }
        }
        all
    }
}

/// What happened to a clock, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Started,
    Reminded,
    Breached,
    Escalated,
    Paused,
    Resumed,
    Stopped,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Started,
        EventKind::Reminded,
        EventKind::Breached,
        EventKind::Escalated,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Reminded => "reminded",
            EventKind::Breached => "breached",
            EventKind::Escalated => "escalated",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Stopped => "stopped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// One row of `sla_events`: capabilities read these for their timelines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaEvent {
    /// Increases with every event, so a reader can ask for events after the last it saw.
    pub id: i64,
    pub clock_id: String,
    pub clock_name: String,
    pub subject: Subject,
    pub at: Millis,
    pub kind: EventKind,
    pub actor: String,
    /// Human-readable: "met 12m before the deadline", "escalated to 2 people".
    pub detail: String,
}

/// Filters for [`super::list`]; `None` means any.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClockFilter {
    /// Matched against the state at `now` (see [`SlaClock::state_at`]).
    pub state: Option<ClockState>,
    pub kind: Option<SubjectKind>,
}

/// A page of a list.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

impl Page {
    /// Page `number` (1-based) of `size` rows.
    pub fn number(number: i64, size: i64) -> Self {
        Self {
            offset: (number.max(1) - 1).saturating_mul(size),
            limit: size,
        }
    }

    /// Every row.
    pub fn all() -> Self {
        Self {
            offset: 0,
            limit: i64::MAX,
        }
    }
}

/// SLA figures for one kind since a date, per clock name and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaRecord {
    pub met: i64,
    /// Breached clocks, stopped (met late) or not.
    pub breached: i64,
    pub by_name: Vec<NameRecord>,
}

/// Met and breached clocks of one name (`triage`, `authority_notice` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NameRecord {
    pub name: String,
    pub met: i64,
    pub breached: i64,
}

impl SlaRecord {
    /// Share of decided clocks that were met, in percent; `None` before any was decided.
    pub fn met_percent(&self) -> Option<f64> {
        let decided = self.met + self.breached;
        (decided > 0).then(|| self.met as f64 * 100.0 / decided as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::HOUR;

    fn clock(state: ClockState, due_at: Millis) -> SlaClock {
        SlaClock {
            id: "c".into(),
            subject: Subject::new(SubjectKind::Incident, "i"),
            name: "triage".into(),
            target: "Triage within 1 hour".into(),
            state,
            started_at: 0,
            due_at,
            duration_ms: due_at,
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
            notify_to: vec!["a@example.com".into(), "B@example.com".into()],
            escalate_to: vec!["b@example.com".into(), "c@example.com".into()],
            link_path: "/incidents/i".into(),
            created_at: 0,
        }
    }

    #[test]
    fn a_running_clock_is_breached_from_the_exact_deadline() {
        let c = clock(ClockState::Running, HOUR);
        assert_eq!(c.state_at(HOUR - 1), ClockState::Running);
        assert_eq!(c.state_at(HOUR), ClockState::Breached);
        assert_eq!(
            clock(ClockState::Met, HOUR).state_at(2 * HOUR),
            ClockState::Met
        );
    }

    #[test]
    fn escalations_go_to_everyone_once() {
        assert_eq!(
            clock(ClockState::Breached, 0).escalation_recipients(),
            vec!["a@example.com", "B@example.com", "c@example.com"]
        );
    }

    #[test]
    fn names_round_trip() {
        for kind in SubjectKind::ALL {
            assert_eq!(SubjectKind::parse(kind.as_str()), Ok(kind));
        }
        for state in ClockState::ALL {
            assert_eq!(ClockState::parse(state.as_str()), Ok(state));
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert!(SubjectKind::parse("ticket").is_err());
    }

    #[test]
    fn pages_count_from_one() {
        let page = Page::number(3, 50);
        assert_eq!((page.offset, page.limit), (100, 50));
        assert_eq!(Page::number(0, 50).offset, 0);
    }
}
