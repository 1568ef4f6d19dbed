//! What a capability passes to start a clock: the subject, the name, the promise in words,
//! how long it runs, and who hears about it.

use super::calendar::BusinessCalendar;
use super::model::Subject;
use crate::clock::Millis;

/// How long a clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duration {
    /// Wall-clock hours (GDPR's 72 hours are 72 real hours, weekends included).
    Hours(i64),
    /// Working days of the configured calendar, keeping the local time of day.
    BusinessDays(i64),
    /// Exact milliseconds (short timers and tests).
    Millis(i64),
    /// Calendar months in the calendar's zone, keeping the local time of day: a yearly duty
    /// such as the annual pentest is due on the same date a year later, whatever leap days
    /// lie between (365 × 24 hours would drift a day in a leap year). A day the target month
    /// lacks becomes its last day (31 January + 1 month = 28 or 29 February).
    Months(i64),
}

impl Duration {
    /// The deadline for a clock started at `start`.
    pub fn due_from(self, start: Millis, calendar: &BusinessCalendar) -> Millis {
        match self {
            Duration::Hours(hours) => calendar.add_hours(start, hours),
            Duration::BusinessDays(days) => calendar.add_business_days(start, days),
            Duration::Millis(ms) => start.saturating_add(ms),
            Duration::Months(months) => calendar.add_months(start, months),
        }
    }

    fn is_negative(self) -> bool {
        match self {
            Duration::Hours(n)
            | Duration::BusinessDays(n)
            | Duration::Millis(n)
            | Duration::Months(n) => n < 0,
        }
    }

    /// For audit details: `72h`, `5 business days`, `90000ms`, `12 months`.
    pub fn describe(self) -> String {
        match self {
            Duration::Hours(n) => format!("{n}h"),
            Duration::BusinessDays(n) => format!("{n} business days"),
            Duration::Millis(n) => format!("{n}ms"),
            Duration::Months(n) => format!("{n} months"),
        }
    }
}

/// Everything needed to start a clock. `name` is unique per subject (`triage`,
/// `authority_notice`, `remediation`, `acknowledge` …).
#[derive(Debug, Clone)]
pub struct ClockSpec<'a> {
    pub subject: Subject,
    pub name: &'a str,
    /// What the clock promises, for people: "Triage within 1 hour".
    pub target: &'a str,
    pub duration: Duration,
    pub calendar: &'a BusinessCalendar,
    /// Reminded at `reminder_fraction` and escalated to after a breach.
    pub notify_to: Vec<String>,
    /// Also escalated to after a breach.
    pub escalate_to: Vec<String>,
    /// Portal path of the subject, e.g. `/incidents/7f3c…`, linked from emails and pages.
    pub link_path: &'a str,
    /// Share of the duration after which one reminder goes out (e.g. 0.75); `None` = none.
    pub reminder_fraction: Option<f64>,
    /// Escalations repeat this often while a breached clock is not stopped; `None` = one
    /// escalation, at the breach.
    pub escalation_interval: Option<Millis>,
}

/// Shortest escalation interval: the watch job runs once a minute.
pub const MIN_ESCALATION_INTERVAL: Millis = crate::clock::MINUTE;
/// Longest human-readable target.
pub const MAX_TARGET_CHARS: usize = 200;

impl ClockSpec<'_> {
    /// Checks what the types cannot; the message says what to change.
    pub fn check(&self) -> Result<(), String> {
        super::format::clock_name(self.name)?;
        if self.subject.id.trim().is_empty() || self.subject.id.len() > 100 {
            return Err("The subject id must be 1 to 100 characters.".into());
        }
        if self.target.trim().is_empty() || self.target.chars().count() > MAX_TARGET_CHARS {
            return Err(format!(
                "The target must be 1 to {MAX_TARGET_CHARS} characters, e.g. “Triage within 1 hour”."
            ));
        }
        if self.duration.is_negative() {
            return Err("A clock cannot run for a negative time.".into());
        }
        if let Some(fraction) = self.reminder_fraction
            && !(fraction > 0.0 && fraction < 1.0)
        {
            return Err(format!(
                "The reminder fraction must be between 0 and 1 (exclusive), got {fraction}."
            ));
        }
        if let Some(interval) = self.escalation_interval
            && interval < MIN_ESCALATION_INTERVAL
        {
            return Err("Escalations can repeat at most once a minute.".into());
        }
        super::format::link_path(self.link_path)?;
        for address in self.notify_to.iter().chain(&self.escalate_to) {
            super::format::email(address)?;
        }
        Ok(())
    }
}
