//! Casbin RBAC. The model and policy files ship inside the binary (`policies/`) and can be
//! overridden by a folder in config; which roles a person holds lives in the database.
//! A request is allowed when any of the caller's roles is allowed; otherwise it is denied.

use std::path::Path;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

const EMBEDDED_MODEL: &str = include_str!("../policies/model.conf");
const EMBEDDED_POLICY: &str = include_str!("../policies/policy.csv");

/// The policy decision point.
pub struct Authz {
    enforcer: Enforcer,
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authz")
    }
}

impl Authz {
    /// Loads the embedded policies, or `model.conf` and `policy.csv` from `policy_dir`.
    pub async fn load(policy_dir: &str) -> anyhow::Result<Self> {
        let (model, policy) = if policy_dir.is_empty() {
            (EMBEDDED_MODEL.to_owned(), EMBEDDED_POLICY.to_owned())
        } else {
            let dir = Path::new(policy_dir);
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.join(name).display()))
            };
            (read("model.conf")?, read("policy.csv")?)
        };
        Self::from_text(&model, &policy).await
    }

    /// Builds an enforcer from the text of a model and a policy.
    pub async fn from_text(model: &str, policy: &str) -> anyhow::Result<Self> {
        let model = DefaultModel::from_str(model)
            .await
            .map_err(|e| anyhow::anyhow!("policy model is invalid: {e}"))?;
        // Comment lines are not part of the CSV Casbin reads.
        let policy: String = policy
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let enforcer = Enforcer::new(model, StringAdapter::new(policy))
            .await
            .map_err(|e| anyhow::anyhow!("policy file is invalid: {e}"))?;
        Ok(Self { enforcer })
    }

    /// True when one of `roles` may do `action` on `resource`. Errors deny.
    pub fn allows<S: AsRef<str>>(&self, roles: &[S], resource: &str, action: &str) -> bool {
        roles.iter().any(|role| {
            self.enforcer
                .enforce((role.as_ref(), resource, action))
                .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_policy_denies_by_default() {
        let authz = Authz::load("").await.unwrap();
        assert!(authz.allows(&["admin"], "staff", "write"));
        assert!(authz.allows(&["auditor"], "staff", "read"));
        assert!(authz.allows(&["auditor"], "anything-later", "read"));
        assert!(!authz.allows(&["auditor"], "staff", "write"));
        assert!(!authz.allows(&["security"], "staff", "read"));
        assert!(!authz.allows(&["unknown-role"], "dashboard", "read"));
        assert!(!authz.allows::<&str>(&[], "dashboard", "read"));
    }
}
