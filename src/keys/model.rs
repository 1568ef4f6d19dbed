//! Key scopes and states.

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    FacesDetect,
    ImagesRead,
    ImagesDelete,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::FacesDetect, Scope::ImagesRead, Scope::ImagesDelete];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::FacesDetect => "faces:detect",
            Scope::ImagesRead => "images:read",
            Scope::ImagesDelete => "images:delete",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == raw.trim())
            .ok_or_else(|| {
                format!(
                    "Unknown scope “{}”: use faces:detect, images:read or images:delete.",
                    raw.trim()
                )
            })
    }

    /// Parses a comma-separated list; at least one scope, no unknown ones.
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = raw
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err("Choose at least one scope.".into());
        }
        Ok(scopes)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A key's state as shown to people. Expiry is derived from `expires_at` and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
}

impl KeyState {
    pub fn of(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> Self {
        if revoked_at.is_some() {
            KeyState::Revoked
        } else if expires_at.is_some_and(|e| e <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

/// Grace periods offered when rotating a key.
pub const GRACE_CHOICES: [(&str, i64); 4] = [
    ("none", 0),
    ("1h", crate::clock::HOUR),
    ("24h", crate::clock::DAY),
    ("7d", 7 * crate::clock::DAY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_sorted_and_deduplicated() {
        assert_eq!(
            Scope::parse_list("images:read, faces:detect,faces:detect").unwrap(),
            vec![Scope::FacesDetect, Scope::ImagesRead]
        );
        assert!(Scope::parse_list("").is_err());
        assert!(Scope::parse_list("faces:detect,admin").is_err());
    }

    #[test]
    fn state_is_derived_from_revocation_and_expiry() {
        assert_eq!(KeyState::of(None, None, 5), KeyState::Active);
        assert_eq!(KeyState::of(None, Some(5), 5), KeyState::Expired);
        assert_eq!(KeyState::of(Some(1), Some(10), 5), KeyState::Revoked);
    }
}
