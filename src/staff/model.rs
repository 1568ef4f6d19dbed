//! Staff domain types, parsed once from input so the rest of the code cannot hold bad values.

use std::fmt;

/// A normalised (trimmed, lower-cased) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("Enter an email address.".into());
        }
        if email.len() > 254 {
            return Err("An email address has at most 254 characters.".into());
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && email
                        .chars()
                        .all(|c| c.is_ascii_graphic() && c != '<' && c != '>' && c != '"')
            }
            None => false,
        };
        if valid {
            Ok(Self(email))
        } else {
            Err(format!("“{}” is not an email address.", raw.trim()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's name as shown in the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("Enter a name.".into());
        }
        if name.chars().count() > 100 {
            return Err("A name has at most 100 characters.".into());
        }
        if name.chars().any(char::is_control) {
            return Err("A name cannot contain control characters.".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The roles a staff account can hold; the policy file says what each may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Security,
    Reviewer,
    Compliance,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Security,
        Role::Reviewer,
        Role::Compliance,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Security => "security",
            Role::Reviewer => "reviewer",
            Role::Compliance => "compliance",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown role “{}”. Roles: admin, security, reviewer, compliance, auditor.",
                    raw.trim()
                )
            })
    }

    /// One line on what the role is for, shown next to the grant form.
    pub fn description(self) -> &'static str {
        match self {
            Role::Admin => "Manages staff, roles and all settings.",
            Role::Security => "Triages incidents, findings and disclosures; manages API keys.",
            Role::Reviewer => "Decides quarterly access-review items.",
            Role::Compliance => "Manages vendors and exports evidence.",
            Role::Auditor => "Reads everything, changes nothing.",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "a@@b.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn display_names_refuse_control_characters_and_length() {
        assert!(DisplayName::parse("Ana Lima").is_ok());
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }
}
