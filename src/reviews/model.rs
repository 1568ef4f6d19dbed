//! Access-review types: the quarter a campaign covers, what an item is about, its flags, the
//! decision on it and where its execution stands. Parsed once from input.

use std::fmt;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::clock::Millis;

/// A calendar quarter, e.g. `2027Q2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quarter {
    pub year: i32,
    /// 1 to 4.
    pub number: u32,
}

impl Quarter {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("“{}” is not a quarter like 2026Q4.", raw.trim());
        let upper = raw.trim().to_ascii_uppercase();
        let (year, number) = upper.split_once('Q').ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let number: u32 = number.parse().map_err(|_| bad())?;
        if !(2000..=2999).contains(&year) || !(1..=4).contains(&number) {
            return Err(bad());
        }
        Ok(Self { year, number })
    }

    /// The quarter that contains `at` in `zone`.
    pub fn containing(at: Millis, zone: Tz) -> Option<Self> {
        let local = zone.timestamp_millis_opt(at).single()?;
        Some(Self {
            year: local.year(),
            number: (local.month() - 1) / 3 + 1,
        })
    }

    pub fn first_day(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, (self.number - 1) * 3 + 1, 1)
    }

    pub fn previous(self) -> Self {
        if self.number == 1 {
            Self {
                year: self.year - 1,
                number: 4,
            }
        } else {
            Self {
                year: self.year,
                number: self.number - 1,
            }
        }
    }

    /// Local midnight of the first day, as Unix milliseconds.
    pub fn starts_at(self, zone: Tz) -> Option<Millis> {
        let midnight = self.first_day()?.and_hms_opt(0, 0, 0)?;
        // A zone that skips midnight (a DST jump) starts the day at its first valid instant.
        zone.from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.timestamp_millis())
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Q{}", self.year, self.number)
    }
}

/// What an item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// One role grant of one staff account.
    StaffRole,
    /// One customer API key.
    ApiKey,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::StaffRole => "staff_role",
            ItemKind::ApiKey => "api_key",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "staff_role" => Ok(ItemKind::StaffRole),
            "api_key" => Ok(ItemKind::ApiKey),
            other => Err(format!(
                "Unknown kind “{other}”: use staff_role or api_key."
            )),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ItemKind::StaffRole => "staff role",
            ItemKind::ApiKey => "API key",
        }
    }
}

/// Something on the snapshot a reviewer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// No login / no key use for the dormancy period.
    Dormant,
    /// Never logged in / never used.
    NeverUsed,
    /// An admin who has not logged in recently.
    AdminWithoutRecentLogin,
    /// A key holding scopes it did not use in the period.
    BroaderScopesThanUsed,
    /// An account without a second factor (should be impossible).
    NoMfa,
}

impl Flag {
    pub const ALL: [Flag; 5] = [
        Flag::Dormant,
        Flag::NeverUsed,
        Flag::AdminWithoutRecentLogin,
        Flag::BroaderScopesThanUsed,
        Flag::NoMfa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Dormant => "dormant",
            Flag::NeverUsed => "never_used",
            Flag::AdminWithoutRecentLogin => "admin_no_recent_login",
            Flag::BroaderScopesThanUsed => "unused_scopes",
            Flag::NoMfa => "no_mfa",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Flag::ALL
            .into_iter()
            .find(|f| f.as_str() == raw.trim())
            .ok_or_else(|| format!("Unknown flag “{}”.", raw.trim()))
    }

    pub fn label(self) -> &'static str {
        match self {
            Flag::Dormant => "dormant",
            Flag::NeverUsed => "never used",
            Flag::AdminWithoutRecentLogin => "admin without recent login",
            Flag::BroaderScopesThanUsed => "scopes broader than used",
            Flag::NoMfa => "no MFA",
        }
    }

    pub fn join(flags: &[Flag]) -> String {
        flags
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads a stored list, skipping names this version does not know.
    pub fn split(stored: &str) -> Vec<Flag> {
        stored
            .split(',')
            .filter_map(|f| Flag::parse(f).ok())
            .collect()
    }
}

/// A reviewer's decision on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Revoke,
    /// Drop some scopes of a key.
    Modify,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Keep, Decision::Revoke, Decision::Modify];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Revoke => "revoke",
            Decision::Modify => "modify",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Decision::ALL
            .into_iter()
            .find(|d| d.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown decision “{}”: use keep, revoke or modify.",
                    raw.trim()
                )
            })
    }
}

/// Where carrying out a decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Nothing to carry out (undecided, or kept).
    None,
    /// Decided; waiting for sign-off (when execution happens at sign-off).
    Pending,
    /// Carried out and confirmed by re-reading the live state.
    Verified,
    /// The change failed or could not be verified; the item stays open.
    Failed,
}

impl Execution {
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::None => "none",
            Execution::Pending => "pending",
            Execution::Verified => "verified",
            Execution::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "pending" => Execution::Pending,
            "verified" => Execution::Verified,
            "failed" => Execution::Failed,
            _ => Execution::None,
        }
    }
}

/// A justification: required for a keep on a flagged item and for every revoke.
pub fn justification(
    decision: Decision,
    flagged: bool,
    raw: &str,
) -> Result<Option<String>, String> {
    let text = raw.trim();
    if text.chars().count() > 1000 {
        return Err("A justification has at most 1000 characters.".into());
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        return Err("A justification cannot contain control characters.".into());
    }
    let required = decision == Decision::Revoke || (decision == Decision::Keep && flagged);
    if text.is_empty() {
        if required {
            return Err(match decision {
                Decision::Revoke => "Say why access is revoked: a revoke needs a justification.",
                _ => "This item is flagged: keeping it needs a justification.",
            }
            .into());
        }
        return Ok(None);
    }
    Ok(Some(text.to_owned()))
}

/// A CSV cell that a spreadsheet will not run as a formula: a cell starting with `=`, `+`,
/// `-`, `@` (or a tab or carriage return) gets a leading apostrophe; quotes are doubled.
pub fn csv_cell(raw: &str) -> String {
    let guarded = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_parse_and_start_at_local_midnight() {
        let q = Quarter::parse("2026q4").unwrap();
        assert_eq!(q.to_string(), "2026Q4");
        assert!(Quarter::parse("2026Q5").is_err());
        assert!(Quarter::parse("Q1").is_err());
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2027-04-01 00:00 in Berlin is 2027-03-31 22:00 UTC.
        let start = Quarter::parse("2027Q2").unwrap().starts_at(berlin).unwrap();
        assert_eq!(start, 1_806_530_400_000);
        assert_eq!(
            Quarter::containing(start, berlin),
            Quarter::parse("2027Q2").ok()
        );
        assert_eq!(
            Quarter::containing(start - 1, berlin),
            Quarter::parse("2027Q1").ok()
        );
        assert_eq!(
            Quarter::parse("2027Q1").unwrap().previous().to_string(),
            "2026Q4"
        );
    }

    #[test]
    fn justification_is_required_for_revokes_and_flagged_keeps() {
        assert!(justification(Decision::Revoke, false, " ").is_err());
        assert!(justification(Decision::Keep, true, "").is_err());
        assert_eq!(justification(Decision::Keep, false, ""), Ok(None));
        assert_eq!(
            justification(Decision::Keep, true, " still on call "),
            Ok(Some("still on call".into()))
        );
    }

    #[test]
    fn csv_cells_starting_a_formula_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
