//! `[sso]` in `trustplane.toml`: the OpenID provider, what a login through it must show, and
//! who may still use a password. Empty `issuer_url` turns single sign-on off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::staff::model::Role;

/// The callback path the provider redirects to (register `<public_url>/login/sso/callback`).
pub const CALLBACK_PATH: &str = "/login/sso/callback";

/// Environment variable that overrides `client_secret`, so the secret need not be in a file.
pub const CLIENT_SECRET_ENV: &str = "TRUSTPLANE_SSO_CLIENT_SECRET";

/// `amr` values (RFC 8176) that show the provider itself checked more than one factor.
pub const DEFAULT_MFA_AMR_VALUES: [&str; 9] = [
    "mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina",
];

/// Who may log in with a password while SSO is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordLogin {
    /// Everyone with a password (the default).
    All,
    /// Only the accounts named in `break_glass_emails`.
    BreakGlassOnly,
}

/// Single sign-on settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// The provider's issuer, e.g. `https://login.example.com/realms/staff`; empty = off.
    pub issuer_url: String,
    pub client_id: String,
    /// Secret; prefer `TRUSTPLANE_SSO_CLIENT_SECRET` over the file. Never logged or shown.
    pub client_secret: String,
    /// Scopes asked for; `openid` is always sent.
    pub scopes: Vec<String>,
    /// The full callback URL registered at the provider; empty = `public_url` (or the
    /// address the browser used) followed by `/login/sso/callback`.
    pub redirect_url: String,
    /// Text of the login page's button, e.g. `Sign in with Okta`.
    pub display_name: String,
    /// If not empty, only emails in these domains may sign in through SSO.
    pub allowed_email_domains: Vec<String>,
    /// Values of the ID token's `groups` claim granting a trustplane role, e.g.
    /// `{ "sec-oncall" = "security" }`. Empty (the default) grants nothing. Roles are only
    /// added; removing one stays a decision made in trustplane.
    pub role_mapping: BTreeMap<String, String>,
    /// Create an account (with no roles) for a verified email that has none. Off by default.
    pub jit_provisioning: bool,
    /// Ask for trustplane's own TOTP after every SSO login, whatever the provider asserts.
    pub require_local_totp: bool,
    /// `acr` values that count as multi-factor on their own.
    pub accepted_acr_values: Vec<String>,
    /// `amr` values that count as a second factor.
    pub mfa_amr_values: Vec<String>,
    /// `all` or `break_glass_only`.
    pub password_login: PasswordLogin,
    /// Accounts that keep password login under `break_glass_only`.
    pub break_glass_emails: Vec<String>,
    /// Tolerated difference between our clock and the provider's (at most 300 s).
    pub clock_skew_seconds: i64,
    /// Timeout of each request to the provider.
    pub http_timeout_seconds: u64,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            issuer_url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            redirect_url: String::new(),
            display_name: "Sign in with single sign-on".into(),
            allowed_email_domains: Vec::new(),
            role_mapping: BTreeMap::new(),
            jit_provisioning: false,
            require_local_totp: false,
            accepted_acr_values: Vec::new(),
            mfa_amr_values: DEFAULT_MFA_AMR_VALUES.map(str::to_owned).to_vec(),
            password_login: PasswordLogin::All,
            break_glass_emails: Vec::new(),
            clock_skew_seconds: 60,
            http_timeout_seconds: 10,
        }
    }
}

impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("redirect_url", &self.redirect_url)
            .field("allowed_email_domains", &self.allowed_email_domains)
            .field("role_mapping", &self.role_mapping)
            .field("jit_provisioning", &self.jit_provisioning)
            .field("require_local_totp", &self.require_local_totp)
            .field("accepted_acr_values", &self.accepted_acr_values)
            .field("password_login", &self.password_login)
            .finish_non_exhaustive()
    }
}

impl SsoConfig {
    pub fn enabled(&self) -> bool {
        !self.issuer_url.trim().is_empty()
    }

    /// Takes the client secret from the environment when it is set there.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(secret) = lookup(CLIENT_SECRET_ENV).filter(|s| !s.is_empty()) {
            self.client_secret = secret;
        }
    }

    /// Whether `email` may log in with a password.
    pub fn password_login_allowed(&self, email: &str) -> bool {
        !self.enabled()
            || self.password_login == PasswordLogin::All
            || self
                .break_glass_emails
                .iter()
                .any(|e| e.trim().eq_ignore_ascii_case(email))
    }

    /// Whether the email's domain is allowed (always, when no domains are listed).
    pub fn domain_allowed(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        self.allowed_email_domains.iter().any(|d| {
            d.trim()
                .trim_start_matches('@')
                .eq_ignore_ascii_case(domain)
        })
    }

    /// Whether the provider's `amr`/`acr` show a multi-factor login.
    pub fn idp_asserted_mfa(&self, amr: &[String], acr: Option<&str>) -> bool {
        let by_amr = amr.iter().any(|m| {
            self.mfa_amr_values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(m))
        });
        let by_acr = acr.is_some_and(|a| self.accepted_acr_values.iter().any(|v| v == a));
        by_amr || by_acr
    }

    /// The roles the mapping grants for these group values.
    pub fn mapped_roles(&self, groups: &[String]) -> Vec<Role> {
        let mut roles: Vec<Role> = groups
            .iter()
            .filter_map(|g| self.role_mapping.get(g))
            .filter_map(|r| Role::parse(r).ok())
            .collect();
        roles.sort_by_key(|r| r.as_str());
        roles.dedup();
        roles
    }

    /// Checks the section; the error names the key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: &str| Err((format!("sso.{key}"), problem.to_owned()));
        if !self.enabled() {
            return Ok(());
        }
        match url::Url::parse(self.issuer_url.trim()) {
            Ok(url) if url.scheme() == "https" || is_loopback_http(&url) => {}
            _ => {
                return bad(
                    "issuer_url",
                    "must be an https:// URL (http:// only on loopback)",
                );
            }
        }
        if self.client_id.trim().is_empty() {
            return bad("client_id", "must be set when issuer_url is set");
        }
        if self.client_secret.is_empty() {
            return bad(
                "client_secret",
                "must be set (prefer the TRUSTPLANE_SSO_CLIENT_SECRET environment variable)",
            );
        }
        if !self.redirect_url.is_empty() {
            match url::Url::parse(&self.redirect_url) {
                Ok(url)
                    if (url.scheme() == "https" || is_loopback_http(&url))
                        && url.path() == CALLBACK_PATH
                        && url.query().is_none() => {}
                _ => {
                    return bad(
                        "redirect_url",
                        "must be an https:// URL ending in /login/sso/callback",
                    );
                }
            }
        }
        if let Some(role) = self.role_mapping.values().find(|r| Role::parse(r).is_err()) {
            return bad(
                "role_mapping",
                &format!("`{role}` is not a trustplane role"),
            );
        }
        if self.password_login == PasswordLogin::BreakGlassOnly
            && self.break_glass_emails.is_empty()
        {
            return bad(
                "break_glass_emails",
                "name at least one account when password_login = \"break_glass_only\"",
            );
        }
        if !(0..=300).contains(&self.clock_skew_seconds) {
            return bad("clock_skew_seconds", "must be between 0 and 300");
        }
        if !(1..=60).contains(&self.http_timeout_seconds) {
            return bad("http_timeout_seconds", "must be between 1 and 60");
        }
        if self.mfa_amr_values.is_empty() && self.accepted_acr_values.is_empty() {
            // Not an error: every SSO login then steps up to local TOTP.
        }
        Ok(())
    }
}

fn is_loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http"
        && matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> SsoConfig {
        SsoConfig {
            issuer_url: "https://idp.example.com".into(),
            client_id: "trustplane".into(),
            client_secret: "s3cret".into(),
            ..SsoConfig::default()
        }
    }

    #[test]
    fn mfa_is_asserted_by_a_multi_factor_amr_or_an_accepted_acr() {
        let mut config = on();
        assert!(config.idp_asserted_mfa(&["pwd".into(), "otp".into()], None));
        assert!(!config.idp_asserted_mfa(&["pwd".into()], None));
        assert!(!config.idp_asserted_mfa(&[], Some("urn:loa:2")));
        config.accepted_acr_values = vec!["urn:loa:2".into()];
        assert!(config.idp_asserted_mfa(&["pwd".into()], Some("urn:loa:2")));
        assert!(!config.idp_asserted_mfa(&["pwd".into()], Some("urn:loa:1")));
    }

    #[test]
    fn domains_and_break_glass_are_matched_without_case() {
        let mut config = on();
        assert!(config.domain_allowed("a@anything.test"));
        config.allowed_email_domains = vec!["Example.com".into()];
        assert!(config.domain_allowed("a@example.COM"));
        assert!(!config.domain_allowed("a@evil-example.com"));
        assert!(config.password_login_allowed("a@example.com"));
        config.password_login = PasswordLogin::BreakGlassOnly;
        config.break_glass_emails = vec!["Root@example.com".into()];
        assert!(config.password_login_allowed("root@example.com"));
        assert!(!config.password_login_allowed("a@example.com"));
    }

    #[test]
    fn validation_names_the_key_and_the_secret_is_not_printed() {
        assert!(SsoConfig::default().validate().is_ok());
        assert!(on().validate().is_ok());
        let plain_http = SsoConfig {
            issuer_url: "http://idp.example.com".into(),
            ..on()
        };
        assert_eq!(plain_http.validate().unwrap_err().0, "sso.issuer_url");
        let no_secret = SsoConfig {
            client_secret: String::new(),
            ..on()
        };
        assert_eq!(no_secret.validate().unwrap_err().0, "sso.client_secret");
        let bad_role = SsoConfig {
            role_mapping: [("g".to_owned(), "root".to_owned())].into(),
            ..on()
        };
        assert_eq!(bad_role.validate().unwrap_err().0, "sso.role_mapping");
        let glass = SsoConfig {
            password_login: PasswordLogin::BreakGlassOnly,
            ..on()
        };
        assert_eq!(glass.validate().unwrap_err().0, "sso.break_glass_emails");
        assert!(!format!("{:?}", on()).contains("s3cret"));
        let mut from_env = on();
        from_env.apply_env(|k| (k == CLIENT_SECRET_ENV).then(|| "env-secret".to_owned()));
        assert_eq!(from_env.client_secret, "env-secret");
    }
}
