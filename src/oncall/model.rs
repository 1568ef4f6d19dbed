//! The rotation and who it puts on call at an instant. Pure functions over the stored rotation
//! and overrides, so the answer is tested across handoffs, overrides and daylight-saving
//! changes without a database.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::clock::Millis;

/// When the pager passes to the next person: a weekday and a local time in the rotation's
/// zone, e.g. `Mon 09:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    pub weekday: Weekday,
    pub time: NaiveTime,
}

impl Handoff {
    /// Parses `Mon 09:00` (English weekday, three letters or full; 24-hour time).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let problem = || format!("`{raw}` is not a handoff like `Mon 09:00`");
        let (day, time) = raw
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(problem)?;
        let weekday: Weekday = day.trim().parse().map_err(|_| problem())?;
        let time = NaiveTime::parse_from_str(time.trim(), "%H:%M").map_err(|_| problem())?;
        Ok(Self { weekday, time })
    }

    /// Minutes after midnight, as stored.
    pub fn minutes(&self) -> i64 {
        i64::from(chrono::Timelike::hour(&self.time)) * 60
            + i64::from(chrono::Timelike::minute(&self.time))
    }

    pub fn from_stored(weekday: i64, minutes: i64) -> Option<Self> {
        let weekday = Weekday::try_from(u8::try_from(weekday).ok()?).ok()?;
        let time = NaiveTime::from_hms_opt(
            u32::try_from(minutes / 60).ok()?,
            u32::try_from(minutes % 60).ok()?,
            0,
        )?;
        Some(Self { weekday, time })
    }

    /// Stored weekday number: 0 = Monday … 6 = Sunday.
    pub fn weekday_number(&self) -> i64 {
        i64::from(self.weekday.num_days_from_monday())
    }

    pub fn label(&self) -> String {
        format!("{} {}", self.weekday, self.time.format("%H:%M"))
    }
}

/// A parsed IANA time zone name.
pub fn parse_zone(raw: &str) -> Result<Tz, String> {
    raw.trim()
        .parse::<Tz>()
        .map_err(|_| format!("`{raw}` is not an IANA time zone such as Europe/Berlin"))
}

/// The rotation as stored: members in order (staff ids), the handoff, its zone, the second
/// level, and the local date of the first handoff (member 0 starts then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub members: Vec<String>,
    pub handoff: Handoff,
    pub zone: Tz,
    pub escalation: Option<String>,
    pub anchor: NaiveDate,
}

/// Someone put on call instead of the rotation for a while (holiday cover, swaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: String,
    pub staff_id: String,
    pub from_at: Millis,
    pub to_at: Millis,
    pub created_at: Millis,
}

/// Who is on call at an instant, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallAt {
    pub staff_id: String,
    pub escalation: Option<String>,
    /// The override that put this person on call, if any.
    pub override_id: Option<String>,
    /// When the current shift ends (next handoff, or the override's end).
    pub until: Millis,
}

/// The local instant of the handoff on `date`. A handoff time that does not exist that day
/// (clocks jump forward over it) is taken at the first valid minute after; an ambiguous one
/// (clocks fall back) at its first occurrence.
fn handoff_instant(zone: Tz, date: NaiveDate, time: NaiveTime) -> Millis {
    let mut local = date.and_time(time);
    for _ in 0..180 {
        if let Some(at) = zone.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc).timestamp_millis();
        }
        local += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&date.and_time(time))
        .timestamp_millis()
}

/// The date of the most recent handoff at or before `at` (in the rotation's zone).
fn last_handoff_date(zone: Tz, handoff: Handoff, at: Millis) -> NaiveDate {
    let local = Utc
        .timestamp_millis_opt(at)
        .single()
        .unwrap_or_default()
        .with_timezone(&zone)
        .date_naive();
    let back =
        (7 + local.weekday().num_days_from_monday() - handoff.weekday.num_days_from_monday()) % 7;
    let candidate = local - Duration::days(i64::from(back));
    if handoff_instant(zone, candidate, handoff.time) <= at {
        candidate
    } else {
        candidate - Duration::days(7)
    }
}

/// The anchor for a rotation configured at `now`: the current shift is member 0's.
pub fn anchor_for(zone: Tz, handoff: Handoff, now: Millis) -> NaiveDate {
    last_handoff_date(zone, handoff, now)
}

/// Who the rotation (and any override) puts on call at `at`. Overrides win over the rotation;
/// of overlapping overrides, the one created last wins.
pub fn on_call_at(rotation: &Rotation, overrides: &[Override], at: Millis) -> Option<OnCallAt> {
    let active = overrides
        .iter()
        .filter(|o| o.from_at <= at && at < o.to_at)
        .max_by_key(|o| o.created_at);
    if let Some(cover) = active {
        return Some(OnCallAt {
            staff_id: cover.staff_id.clone(),
            escalation: rotation.escalation.clone(),
            override_id: Some(cover.id.clone()),
            until: cover.to_at,
        });
    }
    if rotation.members.is_empty() {
        return None;
    }
    let shift_start = last_handoff_date(rotation.zone, rotation.handoff, at);
    let weeks = (shift_start - rotation.anchor).num_days().div_euclid(7);
    let count = i64::try_from(rotation.members.len()).ok()?;
    let index = usize::try_from(weeks.rem_euclid(count)).ok()?;
    let next = handoff_instant(
        rotation.zone,
        shift_start + Duration::days(7),
        rotation.handoff.time,
    );
    Some(OnCallAt {
        staff_id: rotation.members[index].clone(),
        escalation: rotation.escalation.clone(),
        override_id: None,
        until: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
        zone.with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_millis()
    }

    fn berlin_rotation() -> Rotation {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let handoff = Handoff::parse("Mon 09:00").unwrap();
        // Configured on Wednesday 2026-03-18: the shift that began Monday the 16th is Ana's.
        let anchor = anchor_for(zone, handoff, at(zone, 2026, 3, 18, 12, 0));
        Rotation {
            members: vec!["ana".into(), "ben".into(), "cem".into()],
            handoff,
            zone,
            escalation: Some("lead".into()),
            anchor,
        }
    }

    #[test]
    fn handoffs_parse_and_print() {
        let h = Handoff::parse("Mon 09:00").unwrap();
        assert_eq!(h.label(), "Mon 09:00");
        assert_eq!(h.minutes(), 540);
        assert_eq!(
            Handoff::parse("friday 17:30").unwrap().weekday,
            Weekday::Fri
        );
        assert_eq!(
            Handoff::from_stored(h.weekday_number(), h.minutes()),
            Some(h)
        );
        assert!(Handoff::parse("Mon").is_err());
        assert!(Handoff::parse("Someday 09:00").is_err());
        assert!(Handoff::parse("Mon 25:00").is_err());
        assert!(parse_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn the_pager_passes_at_the_handoff_minute_and_not_before() {
        let r = berlin_rotation();
        let zone = r.zone;
        let who = |t| on_call_at(&r, &[], t).unwrap().staff_id;
        assert_eq!(who(at(zone, 2026, 3, 18, 12, 0)), "ana");
        let handoff = at(zone, 2026, 3, 23, 9, 0);
        assert_eq!(who(handoff - 1), "ana");
        assert_eq!(who(handoff), "ben");
        assert_eq!(on_call_at(&r, &[], handoff - 1).unwrap().until, handoff);
        assert_eq!(who(at(zone, 2026, 3, 30, 9, 0)), "cem");
        assert_eq!(who(at(zone, 2026, 4, 6, 9, 0)), "ana", "wraps around");
        // Before the anchor the rotation runs backwards consistently.
        assert_eq!(who(at(zone, 2026, 3, 10, 9, 0)), "cem");
    }

    #[test]
    fn handoff_keeps_local_time_across_daylight_saving() {
        // Berlin moves to summer time on Sunday 2026-03-29: the Monday handoff is still 09:00
        // local, which is 07:00 UTC instead of 08:00.
        let r = berlin_rotation();
        let zone = r.zone;
        let monday_after = at(zone, 2026, 3, 30, 9, 0);
        assert_eq!(
            monday_after,
            Utc.with_ymd_and_hms(2026, 3, 30, 7, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(
            on_call_at(&r, &[], monday_after - 1).unwrap().staff_id,
            "ben"
        );
        assert_eq!(on_call_at(&r, &[], monday_after).unwrap().staff_id, "cem");
        // The shift over the change is one hour shorter in UTC terms, and ends exactly then.
        let shift = on_call_at(&r, &[], at(zone, 2026, 3, 28, 12, 0)).unwrap();
        assert_eq!(shift.until, monday_after);
    }

    #[test]
    fn a_handoff_inside_the_skipped_hour_moves_to_the_first_valid_minute() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let handoff = Handoff::parse("Sun 02:30").unwrap();
        let r = Rotation {
            members: vec!["ana".into(), "ben".into()],
            handoff,
            zone,
            escalation: None,
            anchor: NaiveDate::from_ymd_opt(2026, 3, 22).unwrap(),
        };
        // 2026-03-29 02:30 does not exist in Berlin; the handoff happens at 03:00 local.
        let three = at(zone, 2026, 3, 29, 3, 0);
        assert_eq!(on_call_at(&r, &[], three - 1).unwrap().staff_id, "ana");
        assert_eq!(on_call_at(&r, &[], three).unwrap().staff_id, "ben");
    }

    #[test]
    fn an_override_wins_for_its_window_and_the_latest_of_overlapping_ones() {
        let r = berlin_rotation();
        let zone = r.zone;
        let from = at(zone, 2026, 3, 24, 0, 0);
        let to = at(zone, 2026, 3, 26, 0, 0);
        let cover = Override {
            id: "o1".into(),
            staff_id: "dee".into(),
            from_at: from,
            to_at: to,
            created_at: 1,
        };
        let later = Override {
            id: "o2".into(),
            staff_id: "eve".into(),
            from_at: from + 3_600_000,
            to_at: from + 7_200_000,
            created_at: 2,
        };
        let overrides = [cover.clone(), later];
        assert_eq!(
            on_call_at(&r, &overrides, from - 1).unwrap().staff_id,
            "ben"
        );
        let covered = on_call_at(&r, &overrides, from).unwrap();
        assert_eq!(covered.staff_id, "dee");
        assert_eq!(covered.override_id.as_deref(), Some("o1"));
        assert_eq!(covered.until, to);
        assert_eq!(covered.escalation.as_deref(), Some("lead"));
        assert_eq!(
            on_call_at(&r, &overrides, from + 3_600_000)
                .unwrap()
                .staff_id,
            "eve"
        );
        assert_eq!(on_call_at(&r, &overrides, to).unwrap().staff_id, "ben");
    }

    #[test]
    fn new_york_rotation_across_the_november_change() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let handoff = Handoff::parse("Sun 01:30").unwrap();
        let r = Rotation {
            members: vec!["ana".into(), "ben".into()],
            handoff,
            zone,
            escalation: None,
            anchor: NaiveDate::from_ymd_opt(2026, 10, 25).unwrap(),
        };
        // 2026-11-01 01:30 happens twice in New York; the handoff is the first (EDT, 05:30 UTC).
        let first = Utc
            .with_ymd_and_hms(2026, 11, 1, 5, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(on_call_at(&r, &[], first - 1).unwrap().staff_id, "ana");
        assert_eq!(on_call_at(&r, &[], first).unwrap().staff_id, "ben");
        assert_eq!(
            on_call_at(&r, &[], first + 3_600_000).unwrap().staff_id,
            "ben",
            "the repeated hour does not hand off again"
        );
    }

    #[test]
    fn an_empty_rotation_has_nobody() {
        let mut r = berlin_rotation();
        r.members.clear();
        assert_eq!(on_call_at(&r, &[], 0), None);
    }
}
