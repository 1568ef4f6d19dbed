//! OpenID Connect single sign-on with MFA step-up.
//!
//! A sign-in is bound to the visitor's pre-session cookie (SameSite=Lax, so it comes back on
//! the provider's cross-site redirect): `state`, `nonce` and the PKCE verifier stay on the
//! server in `oidc_flows`. The callback checks everything and answers with a same-site page
//! that moves on to `/login/sso/finish`, which creates the session; a SameSite=Strict session
//! cookie set on the cross-site callback itself would not be sent with the next request.
//! Unless the ID token shows multi-factor authentication (`amr`/`acr`) — or the admin asks for
//! local TOTP always — the session starts at the TOTP (or enrolment) stage.

pub mod config;
pub mod pages;
pub mod provider;
pub mod store;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;
use crate::staff::model::{DisplayName, Email};
use config::SsoConfig;
use provider::VerifiedIdentity;

/// Why an SSO login was refused; `code()` is what the audit log and the page carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadState,
    ProviderError,
    ProviderUnreachable,
    CodeRejected,
    TokenInvalid(&'static str),
    NoEmail,
    UnverifiedEmail,
    DomainNotAllowed,
    UnknownEmail,
    DisabledAccount,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadState => "bad_state",
            Refusal::ProviderError => "provider_error",
            Refusal::ProviderUnreachable => "provider_unreachable",
            Refusal::CodeRejected => "code_rejected",
            Refusal::TokenInvalid("nonce") => "bad_nonce",
            Refusal::TokenInvalid(_) => "token_invalid",
            Refusal::NoEmail => "no_email",
            Refusal::UnverifiedEmail => "unverified_email",
            Refusal::DomainNotAllowed => "domain_not_allowed",
            Refusal::UnknownEmail => "unknown_email",
            Refusal::DisabledAccount => "disabled_account",
        }
    }

    /// What the person is told (never which check of the token failed in detail).
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::BadState => {
                "This sign-in could not be matched to one started in this browser, or it has \
                 already been used or has expired. Start again from the login page."
            }
            Refusal::ProviderError => {
                "The identity provider did not complete the sign-in. Start again from the \
                 login page."
            }
            Refusal::ProviderUnreachable => {
                "The identity provider could not be reached. Try again in a moment."
            }
            Refusal::CodeRejected | Refusal::TokenInvalid(_) => {
                "The identity provider's answer could not be verified, so nobody was signed \
                 in. Start again from the login page."
            }
            Refusal::NoEmail | Refusal::UnverifiedEmail => {
                "Your identity provider did not confirm a verified email address, so your \
                 trustplane account cannot be found. Ask your administrator."
            }
            Refusal::DomainNotAllowed => {
                "Accounts of your email domain may not sign in to trustplane."
            }
            Refusal::UnknownEmail | Refusal::DisabledAccount => {
                "There is no active trustplane account for you. Ask an administrator to \
                 invite you."
            }
        }
    }
}

/// The account an identity maps to, and what happened on the way.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub staff_id: String,
    pub email: String,
    pub newly_linked: bool,
}

/// Finds (or, with JIT on, creates) the enabled account for a checked identity, linking the
/// (issuer, subject) pair on first use. Audits links, provisioning and role grants.
pub async fn resolve_account(
    conn: &mut AnyConnection,
    config: &SsoConfig,
    identity: &VerifiedIdentity,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Result<Resolved, Refusal>, sqlx::Error> {
    use crate::staff::store as staff;

    // The domain rule applies to whatever email the token carries, linked or not.
    if let Some(email) = &identity.email
        && !config.domain_allowed(email)
    {
        return Ok(Err(Refusal::DomainNotAllowed));
    }
    if let Some(staff_id) = store::linked_staff(conn, &identity.issuer, &identity.subject).await? {
        let Some(account) = staff::find(&mut *conn, &staff_id).await? else {
            return Ok(Err(Refusal::UnknownEmail));
        };
        if account.disabled {
            return Ok(Err(Refusal::DisabledAccount));
        }
        store::touch_link(conn, &identity.issuer, &identity.subject, now).await?;
        return Ok(Ok(Resolved {
            staff_id,
            email: account.email,
            newly_linked: false,
        }));
    }
    let Some(email) = identity.email.clone() else {
        return Ok(Err(Refusal::NoEmail));
    };
    if !identity.email_verified {
        return Ok(Err(Refusal::UnverifiedEmail));
    }
    let account = staff::find_by_email(&mut *conn, &email).await?;
    let actor = format!("sso:{}", email);
    let staff_id = match account {
        Some(account) if account.disabled => return Ok(Err(Refusal::DisabledAccount)),
        Some(account) => account.id,
        None if config.jit_provisioning => {
            let Ok(parsed) = Email::parse(&email) else {
                return Ok(Err(Refusal::NoEmail));
            };
            let local = email.split('@').next().unwrap_or("staff");
            let name = DisplayName::parse(local)
                .or_else(|_| DisplayName::parse("SSO user"))
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            let id = staff::insert(conn, &parsed, &name, None, now).await?;
            audit::append(
                conn,
                now,
                meta,
                AuditEvent::new(actor.clone(), "sso.provision", format!("staff:{id}"))
                    .detail("email", email.as_str())
                    .detail("issuer", identity.issuer.as_str())
                    .detail("roles", ""),
            )
            .await?;
            id
        }
        None => return Ok(Err(Refusal::UnknownEmail)),
    };
    store::link(conn, &identity.issuer, &identity.subject, &staff_id, now).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "sso.link", format!("staff:{staff_id}"))
            .detail("issuer", identity.issuer.as_str())
            .detail("subject", identity.subject.as_str())
            .detail("matched_by", "verified_email"),
    )
    .await?;
    Ok(Ok(Resolved {
        staff_id,
        email,
        newly_linked: true,
    }))
}

/// Grants the roles `role_mapping` names for the token's groups (never removes any).
pub async fn apply_role_mapping(
    conn: &mut AnyConnection,
    config: &SsoConfig,
    identity: &VerifiedIdentity,
    resolved: &Resolved,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), sqlx::Error> {
    for role in config.mapped_roles(&identity.groups) {
        let granted_by = format!("sso:{}", identity.issuer);
        if crate::staff::store::grant_role(conn, &resolved.staff_id, role, &granted_by, now).await?
        {
            audit::append(
                conn,
                now,
                meta,
                AuditEvent::new(
                    format!("sso:{}", resolved.email),
                    "staff.role.grant",
                    format!("staff:{}", resolved.staff_id),
                )
                .detail("role", role.as_str())
                .detail("source", "sso_role_mapping"),
            )
            .await?;
        }
    }
    Ok(())
}
