//! Incident types: severity with its meaning, status with the transitions allowed between
//! them, and where an incident came from. Parse, don't validate: handlers turn form input
//! into these once.

use serde::Serialize;

/// How bad an incident is. The meanings are shown wherever a severity is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Sev1,
        Severity::Sev2,
        Severity::Sev3,
        Severity::Sev4,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_uppercase().as_str() {
            "SEV1" => Ok(Severity::Sev1),
            "SEV2" => Ok(Severity::Sev2),
            "SEV3" => Ok(Severity::Sev3),
            "SEV4" => Ok(Severity::Sev4),
            _ => Err(format!(
                "Severity “{}” is not one of SEV1, SEV2, SEV3, SEV4.",
                raw.trim()
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }

    /// What the severity means, for the people choosing it.
    pub fn meaning(self) -> &'static str {
        match self {
            Severity::Sev1 => {
                "Critical: biometric or personal data exposed, or the API down for all customers"
            }
            Severity::Sev2 => {
                "Major: a security control failing or the API degraded for many customers"
            }
            Severity::Sev3 => "Minor: limited impact, a workaround exists, no data exposed",
            Severity::Sev4 => "Low: a suspicious signal to look into, no impact seen",
        }
    }

    /// SEV1 and SEV2 need a post-incident review before they can be closed.
    pub fn needs_review(self) -> bool {
        matches!(self, Severity::Sev1 | Severity::Sev2)
    }
}

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Triaged,
    Mitigating,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Triaged,
        Status::Mitigating,
        Status::Resolved,
        Status::Closed,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Status “{}” is not one of new, triaged, mitigating, resolved, closed.",
                    raw.trim()
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Triaged => "triaged",
            Status::Mitigating => "mitigating",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// The statuses reachable from this one. Triage happens only through the triage action
    /// (it needs a severity and an assignee and stops the clock); a resolved incident may be
    /// reopened into mitigation; closed is final.
    pub fn next(self) -> &'static [Status] {
        match self {
            Status::New => &[],
            Status::Triaged => &[Status::Mitigating, Status::Resolved],
            Status::Mitigating => &[Status::Resolved],
            Status::Resolved => &[Status::Mitigating, Status::Closed],
            Status::Closed => &[],
        }
    }

    pub fn may_become(self, to: Status) -> bool {
        self.next().contains(&to)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::Closed)
    }
}

/// Where an incident came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Manual,
    Alert,
    Disclosure,
    Finding,
    Api,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Manual,
        Source::Alert,
        Source::Disclosure,
        Source::Finding,
        Source::Api,
    ];

    pub fn parse(raw: &str) -> Result<Self, String> {
        Source::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Source “{}” is not one of manual, alert, disclosure, finding, api.",
                    raw.trim()
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Alert => "alert",
            Source::Disclosure => "disclosure",
            Source::Finding => "finding",
            Source::Api => "api",
        }
    }
}

/// A title: 3 to 200 characters after trimming.
pub fn title(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if !(3..=200).contains(&chars) {
        return Err("The title must be 3 to 200 characters.".into());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("The title cannot contain control characters.".into());
    }
    Ok(trimmed.to_owned())
}

/// Free text (description, note): at most `max` characters, kept as typed.
pub fn text(raw: &str, max: usize, what: &str) -> Result<String, String> {
    if raw.chars().count() > max {
        return Err(format!("The {what} is longer than {max} characters."));
    }
    Ok(raw.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_transitions_are_allowed() {
        assert!(
            !Status::New.may_become(Status::Triaged),
            "triage is its own action"
        );
        assert!(!Status::New.may_become(Status::Resolved));
        assert!(Status::Triaged.may_become(Status::Mitigating));
        assert!(Status::Mitigating.may_become(Status::Resolved));
        assert!(!Status::Mitigating.may_become(Status::Closed));
        assert!(Status::Resolved.may_become(Status::Closed));
        assert!(Status::Resolved.may_become(Status::Mitigating));
        assert!(Status::Closed.next().is_empty());
    }

    #[test]
    fn severities_parse_in_any_case_and_explain_themselves() {
        assert_eq!(Severity::parse("sev1"), Ok(Severity::Sev1));
        assert!(Severity::parse("SEV5").is_err());
        assert!(Severity::Sev1.needs_review() && !Severity::Sev3.needs_review());
        assert!(Severity::ALL.iter().all(|s| !s.meaning().is_empty()));
    }

    #[test]
    fn titles_are_bounded() {
        assert!(title("  ab ").is_err());
        assert_eq!(title("  Key leak  ").unwrap(), "Key leak");
        assert!(title(&"x".repeat(201)).is_err());
        assert!(title("bad\u{7}title").is_err());
    }
}
