//! Finding types: severity with its remediation deadline, status with allowed transitions,
//! source, and CVSS vectors validated and scored (3.0, 3.1, 4.0).

use serde::Serialize;

/// How bad a finding is; decides its remediation deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "Severity “{}” is not one of critical, high, medium, low.",
                    raw.trim()
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// Position in the remediation table (`finding_remediation_hours`).
    pub fn index(self) -> usize {
        match self {
            Severity::Critical => 0,
            Severity::High => 1,
            Severity::Medium => 2,
            Severity::Low => 3,
        }
    }
}

/// Where a finding is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Fixing,
    Fixed,
    Verified,
    RiskAccepted,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::Fixing,
        Status::Fixed,
        Status::Verified,
        Status::RiskAccepted,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Status “{}” is not one of open, fixing, fixed, verified, risk_accepted.",
                    raw.trim()
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Fixing => "fixing",
            Status::Fixed => "fixed",
            Status::Verified => "verified",
            Status::RiskAccepted => "risk_accepted",
        }
    }

    /// Statuses reachable by the plain status action. Accepting a risk is its own action (it
    /// needs an approver, a reason and an expiry); a fix that does not verify goes back to
    /// fixing.
    pub fn next(self) -> &'static [Status] {
        match self {
            Status::Open => &[Status::Fixing, Status::Fixed],
            Status::Fixing => &[Status::Fixed],
            Status::Fixed => &[Status::Verified, Status::Fixing],
            Status::Verified => &[],
            Status::RiskAccepted => &[Status::Fixing],
        }
    }

    pub fn may_become(self, to: Status) -> bool {
        self.next().contains(&to)
    }
}

/// Where a finding came from.
pub const SOURCES: [&str; 4] = ["pentest", "disclosure", "internal", "audit"];

pub fn source(raw: &str) -> Result<String, String> {
    let raw = raw.trim().to_ascii_lowercase();
    if raw.is_empty() {
        return Ok("pentest".into());
    }
    SOURCES
        .iter()
        .find(|s| **s == raw)
        .map(|s| (*s).to_owned())
        .ok_or_else(|| format!("Source “{raw}” is not one of {}.", SOURCES.join(", ")))
}

/// A validated CVSS vector and its base score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvssScore {
    pub vector: String,
    pub score: f64,
    pub severity: String,
}

/// Parses and scores a CVSS 3.0, 3.1 or 4.0 vector.
pub fn cvss(raw: &str) -> Result<Option<CvssScore>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let parsed: cvss::Cvss = raw
        .parse()
        .map_err(|e| format!("“{raw}” is not a valid CVSS 3.x or 4.0 vector: {e}"))?;
    Ok(Some(CvssScore {
        vector: raw.to_owned(),
        score: parsed.score(),
        severity: parsed.severity().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_vectors_are_validated_and_scored() {
        let critical = cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
            .unwrap()
            .unwrap();
        assert_eq!(critical.score, 9.8);
        assert_eq!(critical.severity, "critical");
        let medium = cvss("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N")
            .unwrap()
            .unwrap();
        assert_eq!(medium.score, 6.1);
        let v4 = cvss("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H")
            .unwrap()
            .unwrap();
        assert_eq!(v4.score, 10.0);
        assert_eq!(cvss("  ").unwrap(), None);
        assert!(cvss("CVSS:3.1/AV:X").is_err());
        assert!(cvss("not a vector").is_err());
    }

    #[test]
    fn finding_transitions() {
        assert!(Status::Open.may_become(Status::Fixing));
        assert!(Status::Fixed.may_become(Status::Verified));
        assert!(!Status::Open.may_become(Status::Verified));
        assert!(!Status::Open.may_become(Status::RiskAccepted));
        assert!(Status::Verified.next().is_empty());
        assert_eq!(Severity::parse("CRITICAL"), Ok(Severity::Critical));
        assert!(source("vendor").is_err());
    }
}
