//! The SLA-clock engine: every deadline in trustplane (incident triage and authority notice,
//! finding remediation, disclosure acknowledgement and triage, access-review and vendor due
//! dates) is computed here, never by the capability that owns it.

pub mod calendar;

pub use calendar::BusinessCalendar;
