//! The business-day calendar every SLA deadline is computed with: one time zone, the working
//! weekdays and the holidays, all from configuration (`sla_timezone`, `sla_working_days`,
//! `sla_holidays`).
//!
//! Rules, chosen so that a deadline reads the way a person would count it:
//! - **Hours** are wall-clock hours: `start + n × 1 h`, whatever the calendar says.
//! - **Business days** keep the local time of day. `n` business days after a working-day
//!   start is the same local time on the `n`-th following working day; weekends and holidays
//!   are skipped. A start on a weekend or holiday counts from the next working day at the
//!   same local time, so Saturday 10:00 + 1 is Tuesday 10:00 and Saturday 10:00 + 0 is
//!   Monday 10:00. `n = 0` on a working day is the start itself.
//! - **Months** are calendar months in the zone at the same local time of day; a day the
//!   target month lacks becomes its last day (31 January + 1 month = 28 or 29 February).
//! - **Daylight saving**: the local time of day is kept across a change, so the result may
//!   be 23 or 25 wall-clock hours per day away. A local time that does not exist (clocks
//!   jump forward) moves forward by the length of the jump (02:30 → 03:30); a local time
//!   that exists twice (clocks go back) is the first of the two (still on summer time).

use std::collections::BTreeSet;

use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Weekday};
use chrono_tz::Tz;

use crate::clock::{HOUR, Millis};

/// Most business days one deadline may span (ten years); keeps the day walk bounded.
pub const MAX_BUSINESS_DAYS: i64 = 3_650;
/// Most calendar months one deadline may span (ten years).
pub const MAX_MONTHS: i64 = 120;

/// Why a calendar setting was refused; `key` is the configuration key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct CalendarError {
    pub key: &'static str,
    pub problem: String,
}

fn refuse(key: &'static str, problem: impl Into<String>) -> CalendarError {
    CalendarError {
        key,
        problem: problem.into(),
    }
}

/// Time zone, working weekdays and holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    zone: Tz,
    /// Indexed by `Weekday::num_days_from_monday`.
    working: [bool; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl Default for BusinessCalendar {
    /// UTC, Monday to Friday, no holidays (the configuration defaults).
    fn default() -> Self {
        Self {
            zone: Tz::UTC,
            working: [true, true, true, true, true, false, false],
            holidays: BTreeSet::new(),
        }
    }
}

impl BusinessCalendar {
    /// Parses the three configuration values: an IANA zone name (`Europe/Berlin`), weekday
    /// names (`mon` … `sun`, or in full), and `YYYY-MM-DD` dates in that zone.
    pub fn parse(
        zone: &str,
        working_days: &[String],
        holidays: &[String],
    ) -> Result<Self, CalendarError> {
        let zone: Tz = zone.trim().parse().map_err(|_| {
            refuse(
                "sla_timezone",
                format!("`{zone}` is not an IANA time zone name like Europe/Berlin or UTC"),
            )
        })?;
        let mut working = [false; 7];
        for day in working_days {
            let weekday: Weekday = day.trim().parse().map_err(|_| {
                refuse(
                    "sla_working_days",
                    format!("`{day}` is not a weekday; use mon, tue, wed, thu, fri, sat, sun"),
                )
            })?;
            working[weekday.num_days_from_monday() as usize] = true;
        }
        if !working.contains(&true) {
            return Err(refuse(
                "sla_working_days",
                "name at least one working day, e.g. [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
            ));
        }
        let holidays = holidays
            .iter()
            .map(|raw| {
                NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| {
                    refuse(
                        "sla_holidays",
                        format!("`{raw}` is not a date like 2026-12-24"),
                    )
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self {
            zone,
            working,
            holidays,
        })
    }

    /// The IANA name of the calendar's zone.
    pub fn zone_name(&self) -> &'static str {
        self.zone.name()
    }

    /// A working weekday that is not a holiday.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.working[date.weekday().num_days_from_monday() as usize]
            && !self.holidays.contains(&date)
    }

    /// `start` plus `hours` wall-clock hours (saturating).
    pub fn add_hours(&self, start: Millis, hours: i64) -> Millis {
        start.saturating_add(hours.saturating_mul(HOUR))
    }

    /// `start` plus `days` business days at the same local time of day (see the module
    /// documentation for weekends, holidays and daylight saving). `days` is clamped to
    /// `0..=MAX_BUSINESS_DAYS`.
    pub fn add_business_days(&self, start: Millis, days: i64) -> Millis {
        let Some(local) = self.zone.timestamp_millis_opt(start).single() else {
            return start;
        };
        let local = local.naive_local();
        let mut date = local.date();
        let started_on_working_day = self.is_working_day(date);
        if started_on_working_day && days == 0 {
            return start;
        }
        if !started_on_working_day {
            date = self.next_working_day(date);
        }
        for _ in 0..days.clamp(0, MAX_BUSINESS_DAYS) {
            date = self.next_working_day(date);
        }
        self.resolve(date.and_time(local.time())).unwrap_or(start)
    }

    /// `start` plus `months` calendar months at the same local time of day; a day the target
    /// month lacks becomes its last day (31 January + 1 = end of February). `months` is
    /// clamped to `0..=MAX_MONTHS`.
    pub fn add_months(&self, start: Millis, months: i64) -> Millis {
        let Some(local) = self.zone.timestamp_millis_opt(start).single() else {
            return start;
        };
        let local = local.naive_local();
        let months = u32::try_from(months.clamp(0, MAX_MONTHS)).unwrap_or(0);
        local
            .checked_add_months(chrono::Months::new(months))
            .and_then(|later| self.resolve(later))
            .unwrap_or(start)
    }

    /// Midnight starting `date` in the calendar's zone (the first instant of that day).
    pub fn start_of_day(&self, date: NaiveDate) -> Millis {
        self.resolve(date.and_time(chrono::NaiveTime::MIN))
            .unwrap_or_else(|| {
                date.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis()
            })
    }

    /// The date of an instant in the calendar's zone.
    pub fn local_date(&self, at: Millis) -> Option<NaiveDate> {
        self.zone
            .timestamp_millis_opt(at)
            .single()
            .map(|t| t.date_naive())
    }

    /// The first working day after `date`.
    fn next_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut next = date;
        // At least one weekday works and holidays are finite, so this ends; the bound only
        // guards against a calendar of nothing but holidays for years.
        for _ in 0..(MAX_BUSINESS_DAYS * 2) {
            match next.succ_opt() {
                Some(day) => next = day,
                None => return next,
            }
            if self.is_working_day(next) {
                return next;
            }
        }
        next
    }

    /// The instant of a local time: the first of two when it is ambiguous, moved forward by
    /// the jump when it falls in a daylight-saving gap.
    fn resolve(&self, local: NaiveDateTime) -> Option<Millis> {
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(at.timestamp_millis()),
            LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
            LocalResult::None => {
                // Read the wall time with the offset in force a day earlier (before the jump):
                // that instant lies after the jump, shown as the local time plus the gap.
                let before = local.checked_sub_signed(chrono::TimeDelta::days(1))?;
                let offset = match self.zone.offset_from_local_datetime(&before) {
                    LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o,
                    LocalResult::None => return None,
                };
                let fixed = chrono::Offset::fix(&offset);
                Some(local.and_utc().timestamp_millis() - i64::from(fixed.local_minus_utc()) * 1000)
            }
        }
    }

    /// Formats an instant in the calendar's zone, e.g. `2026-12-28 10:00 CET`.
    pub fn format_local(&self, at: Millis) -> String {
        self.zone
            .timestamp_millis_opt(at)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| "—".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(zone: &str, holidays: &[&str]) -> BusinessCalendar {
        let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let holidays: Vec<String> = holidays.iter().map(|d| d.to_string()).collect();
        BusinessCalendar::parse(zone, &days, &holidays).unwrap()
    }

    /// The instant of a local wall time in `zone` (unambiguous times only).
    fn at(zone: &str, local: &str) -> Millis {
        let tz: Tz = zone.parse().unwrap();
        let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    fn utc(text: &str) -> Millis {
        at("UTC", text)
    }

    #[test]
    fn hours_are_wall_clock_hours() {
        let cal = calendar("Europe/Berlin", &[]);
        // 72 hours over the March change is still 72 real hours.
        let start = at("Europe/Berlin", "2026-03-27 10:00");
        assert_eq!(cal.add_hours(start, 72), start + 72 * HOUR);
        assert_eq!(cal.add_hours(start, 0), start);
    }

    #[test]
    fn zero_business_days_is_the_start_on_a_working_day() {
        let cal = calendar("UTC", &[]);
        let start = utc("2026-06-03 09:15") + 123;
        assert_eq!(cal.add_business_days(start, 0), start);
    }

    #[test]
    fn weekends_are_skipped_and_the_time_of_day_kept() {
        let cal = calendar("UTC", &[]);
        assert_eq!(
            cal.add_business_days(utc("2026-06-05 16:30"), 1),
            utc("2026-06-08 16:30"),
            "Friday + 1 is Monday"
        );
        assert_eq!(
            cal.add_business_days(utc("2026-06-03 09:00"), 5),
            utc("2026-06-10 09:00"),
            "Wednesday + 5 is next Wednesday"
        );
    }

    #[test]
    fn a_weekend_start_counts_from_the_next_working_day() {
        let cal = calendar("UTC", &[]);
        assert_eq!(
            cal.add_business_days(utc("2026-06-06 10:00"), 0),
            utc("2026-06-08 10:00"),
            "Saturday + 0 is Monday, same time"
        );
        assert_eq!(
            cal.add_business_days(utc("2026-06-06 10:00"), 1),
            utc("2026-06-09 10:00"),
            "Saturday + 1 is Tuesday"
        );
    }

    #[test]
    fn the_year_end_rolls_into_january() {
        let cal = calendar("UTC", &["2027-01-01"]);
        // Thursday 31 Dec 2026 + 1: Friday 1 Jan is a holiday, then the weekend.
        assert_eq!(
            cal.add_business_days(utc("2026-12-31 11:00"), 1),
            utc("2027-01-04 11:00")
        );
        let no_holiday = calendar("UTC", &[]);
        assert_eq!(
            no_holiday.add_business_days(utc("2026-12-31 11:00"), 1),
            utc("2027-01-01 11:00")
        );
    }

    #[test]
    fn christmas_holidays_are_skipped() {
        let cal = calendar("Europe/Berlin", &["2026-12-24", "2026-12-25", "2026-12-26"]);
        // Wednesday 23 Dec + 1: Thu 24 and Fri 25 are holidays, Sat 26 a holiday and weekend.
        assert_eq!(
            cal.add_business_days(at("Europe/Berlin", "2026-12-23 14:00"), 1),
            at("Europe/Berlin", "2026-12-28 14:00")
        );
        // Monday 21 Dec + 5 business days: 22, 23, 28, 29, 30.
        assert_eq!(
            cal.add_business_days(at("Europe/Berlin", "2026-12-21 09:00"), 5),
            at("Europe/Berlin", "2026-12-30 09:00")
        );
        // Starting on the holiday itself counts from Monday 28th.
        assert_eq!(
            cal.add_business_days(at("Europe/Berlin", "2026-12-24 09:00"), 0),
            at("Europe/Berlin", "2026-12-28 09:00")
        );
    }

    #[test]
    fn a_friday_holiday_moves_the_deadline_past_the_weekend() {
        // Good Friday 2026 is 3 April.
        let cal = calendar("UTC", &["2026-04-03"]);
        assert_eq!(
            cal.add_business_days(utc("2026-04-02 12:00"), 1),
            utc("2026-04-06 12:00")
        );
    }

    #[test]
    fn berlin_keeps_the_local_time_across_the_march_change() {
        let cal = calendar("Europe/Berlin", &[]);
        // Friday 27 March 2026 10:00 CET (09:00 UTC); clocks go forward on Sunday 29th.
        let start = at("Europe/Berlin", "2026-03-27 10:00");
        assert_eq!(start, utc("2026-03-27 09:00"));
        let due = cal.add_business_days(start, 1);
        // Monday 10:00 CEST is 08:00 UTC: a different offset, the same wall time.
        assert_eq!(due, utc("2026-03-30 08:00"));
        assert_eq!(cal.format_local(due), "2026-03-30 10:00 CEST");
    }

    #[test]
    fn berlin_keeps_the_local_time_across_the_october_change() {
        let cal = calendar("Europe/Berlin", &[]);
        // Friday 23 October 2026 10:00 CEST; clocks go back on Sunday 25th.
        let due = cal.add_business_days(at("Europe/Berlin", "2026-10-23 10:00"), 1);
        assert_eq!(due, utc("2026-10-26 09:00"));
    }

    #[test]
    fn new_york_keeps_the_local_time_across_its_changes() {
        let cal = calendar("America/New_York", &[]);
        // DST starts Sunday 8 March 2026: Friday 09:00 EST (14:00 UTC) → Monday 09:00 EDT.
        let due = cal.add_business_days(at("America/New_York", "2026-03-06 09:00"), 1);
        assert_eq!(due, utc("2026-03-09 13:00"));
        // DST ends Sunday 1 November 2026: Friday 09:00 EDT → Monday 09:00 EST (14:00 UTC).
        let due = cal.add_business_days(at("America/New_York", "2026-10-30 09:00"), 1);
        assert_eq!(due, utc("2026-11-02 14:00"));
    }

    #[test]
    fn missing_local_times_move_forward_and_repeated_ones_take_the_first() {
        let every_day: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let cal = BusinessCalendar::parse("Europe/Berlin", &every_day, &[]).unwrap();
        // Saturday 28 March 02:30 CET + 1 day: 02:30 does not exist on the 29th → 03:30 CEST.
        let due = cal.add_business_days(at("Europe/Berlin", "2026-03-28 02:30"), 1);
        assert_eq!(due, utc("2026-03-29 01:30"));
        assert_eq!(cal.format_local(due), "2026-03-29 03:30 CEST");
        // Saturday 24 October 02:30 CEST + 1 day: 02:30 happens twice on the 25th → the first.
        let due = cal.add_business_days(at("Europe/Berlin", "2026-10-24 02:30"), 1);
        assert_eq!(due, utc("2026-10-25 00:30"));
        assert_eq!(cal.format_local(due), "2026-10-25 02:30 CEST");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let days = vec!["mon".to_owned()];
        let err = BusinessCalendar::parse("Mars/Olympus", &days, &[]).unwrap_err();
        assert_eq!(err.key, "sla_timezone");
        let err = BusinessCalendar::parse("UTC", &["funday".to_owned()], &[]).unwrap_err();
        assert_eq!(err.key, "sla_working_days");
        let err = BusinessCalendar::parse("UTC", &[], &[]).unwrap_err();
        assert_eq!(err.key, "sla_working_days");
        let err = BusinessCalendar::parse("UTC", &days, &["24.12.2026".to_owned()]).unwrap_err();
        assert_eq!(err.key, "sla_holidays");
        assert!(err.to_string().contains("24.12.2026"));
    }

    #[test]
    fn weekday_names_may_be_short_or_long() {
        let days: Vec<String> = ["Monday", "tue", "SUN"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let cal = BusinessCalendar::parse("UTC", &days, &[]).unwrap();
        assert!(cal.is_working_day(NaiveDate::from_ymd_opt(2026, 6, 7).unwrap()));
        assert!(!cal.is_working_day(NaiveDate::from_ymd_opt(2026, 6, 5).unwrap()));
    }

    #[test]
    fn months_keep_the_date_and_local_time_across_leap_years_and_daylight_saving() {
        let utc = calendar("UTC", &[]);
        // A year from 2027-03-20 crosses 29 February 2028: still 20 March, 366 days later.
        let start = at("UTC", "2027-03-20 00:00");
        assert_eq!(utc.add_months(start, 12), at("UTC", "2028-03-20 00:00"));
        assert_eq!(
            utc.add_months(start, 12) - start,
            366 * 24 * crate::clock::HOUR
        );
        // The last day of a month stays inside the shorter month.
        assert_eq!(
            utc.add_months(at("UTC", "2026-01-31 09:00"), 1),
            at("UTC", "2026-02-28 09:00")
        );
        assert_eq!(
            utc.add_months(at("UTC", "2028-02-29 09:00"), 12),
            at("UTC", "2029-02-28 09:00")
        );
        // Berlin: winter time to summer time keeps midnight local.
        let berlin = calendar("Europe/Berlin", &[]);
        assert_eq!(
            berlin.add_months(at("Europe/Berlin", "2026-01-24 00:00"), 3),
            at("Europe/Berlin", "2026-04-24 00:00")
        );
        let day = NaiveDate::from_ymd_opt(2026, 1, 24).unwrap();
        assert_eq!(
            berlin.start_of_day(day),
            at("Europe/Berlin", "2026-01-24 00:00")
        );
        assert_eq!(berlin.local_date(berlin.start_of_day(day)), Some(day));
    }
}
