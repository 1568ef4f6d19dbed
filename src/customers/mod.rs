//! Customers (organisations that call the API): their environment, default image retention
//! and state, with the portal pages that manage them and their keys.

pub mod pages;
pub mod store;

use crate::clock::{DAY, Millis};

/// Production images are never kept longer than this (Trust & Safety page, RET-1).
pub const MAX_PRODUCTION_RETENTION_DAYS: i64 = 30;
/// Demo images are never kept longer than this (RET-2).
pub const MAX_DEMO_RETENTION_DAYS: i64 = 7;

/// How long a customer's images are kept; 0 means never written to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDays(i64);

impl RetentionDays {
    pub fn new(days: i64) -> Result<Self, String> {
        if (0..=MAX_PRODUCTION_RETENTION_DAYS).contains(&days) {
            Ok(Self(days))
        } else {
            Err(format!(
                "Retention must be between 0 (do not keep images) and {MAX_PRODUCTION_RETENTION_DAYS} days."
            ))
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<i64>()
            .map_err(|_| "Retention must be a whole number of days.".to_owned())
            .and_then(Self::new)
    }

    pub fn days(self) -> i64 {
        self.0
    }

    pub fn as_millis(self) -> Millis {
        self.0 * DAY
    }
}

/// A customer's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerName(String);

impl CustomerName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("Enter the customer's name.".into());
        }
        if name.chars().count() > 100 {
            return Err("A customer name has at most 100 characters.".into());
        }
        if name.chars().any(char::is_control) {
            return Err("A customer name cannot contain control characters.".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_capped_at_thirty_days() {
        assert_eq!(RetentionDays::parse("0").unwrap().days(), 0);
        assert_eq!(RetentionDays::parse("30").unwrap().as_millis(), 30 * DAY);
        assert!(RetentionDays::parse("31").is_err());
        assert!(RetentionDays::parse("-1").is_err());
        assert!(RetentionDays::parse("ten").is_err());
    }
}
