//! What a campaign covers, read once at opening: every staff role grant and every active or
//! expiring API key, with the facts a reviewer needs, the flags computed on those facts, and
//! a reviewer for each item (round-robin, skipping anyone who may not decide it).

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::items::Item;
use super::model::{Flag, ItemKind};
use crate::clock::{DAY, Millis};
use crate::keys::model::Scope;

/// An admin who has not logged in for this long is flagged.
pub const ADMIN_RECENT_LOGIN: Millis = 30 * DAY;

/// Someone who may decide items.
#[derive(Debug, Clone)]
pub struct Reviewer {
    pub id: String,
    pub email: String,
}

impl Reviewer {
    /// The audit actor this reviewer acts as (also how grants record who granted them).
    pub fn actor(&self) -> String {
        format!("staff:{}", self.email)
    }

    /// Separation of duties: nobody decides an item about their own account, a role they
    /// granted, or a key they issued. `None` when this reviewer may decide the item.
    pub fn conflict_with(&self, item: &Item) -> Option<&'static str> {
        let actor = self.actor();
        if item.kind == ItemKind::StaffRole.as_str() && item.subject_id == self.id {
            Some("this item is about your own account")
        } else if item.granted_by.as_deref() == Some(actor.as_str()) {
            Some("you granted this role")
        } else if item.key_created_by.as_deref() == Some(actor.as_str()) {
            Some("you issued this key")
        } else {
            None
        }
    }
}

/// Enabled staff holding the reviewer role, by email.
pub async fn reviewers(conn: &mut AnyConnection) -> Result<Vec<Reviewer>, sqlx::Error> {
    staff_with_role(conn, "reviewer").await
}

/// Emails of enabled admins.
pub async fn admin_emails(conn: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    Ok(staff_with_role(conn, "admin")
        .await?
        .into_iter()
        .map(|r| r.email)
        .collect())
}

async fn staff_with_role(
    conn: &mut AnyConnection,
    role: &str,
) -> Result<Vec<Reviewer>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.id, s.email FROM staff s JOIN staff_roles r ON r.staff_id = s.id \
         WHERE r.role = $1 AND s.disabled = 0 ORDER BY s.email",
    )
    .bind(role)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Reviewer {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
            })
        })
        .collect()
}

/// What shapes the flags.
#[derive(Debug, Clone, Copy)]
pub struct FlagRules {
    pub dormant_after: Millis,
}

/// Flags of a staff role grant.
pub fn staff_flags(
    rules: FlagRules,
    role: &str,
    mfa: bool,
    created_at: Millis,
    last_login_at: Option<Millis>,
    now: Millis,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let last_active = last_login_at.unwrap_or(created_at);
    if now - last_active >= rules.dormant_after {
        flags.push(Flag::Dormant);
    }
    if last_login_at.is_none() {
        flags.push(Flag::NeverUsed);
    }
    if role == "admin" && last_login_at.is_none_or(|at| now - at >= ADMIN_RECENT_LOGIN) {
        flags.push(Flag::AdminWithoutRecentLogin);
    }
    if !mfa {
        flags.push(Flag::NoMfa);
    }
    flags
}

/// Flags of an API key; `unused` are the scopes it holds but did not use in the period.
pub fn key_flags(
    rules: FlagRules,
    created_at: Millis,
    last_used_at: Option<Millis>,
    unused: &[Scope],
    now: Millis,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    if now - last_used_at.unwrap_or(created_at) >= rules.dormant_after {
        flags.push(Flag::Dormant);
    }
    if last_used_at.is_none() {
        flags.push(Flag::NeverUsed);
    }
    if !unused.is_empty() {
        flags.push(Flag::BroaderScopesThanUsed);
    }
    flags
}

/// Reads every grant and key into items of `campaign_id` (numbered from 1, staff first),
/// with flags and reviewers.
pub async fn take(
    conn: &mut AnyConnection,
    campaign_id: &str,
    rules: FlagRules,
    period: (Millis, Millis),
    now: Millis,
) -> Result<Vec<Item>, sqlx::Error> {
    let mut items = Vec::new();
    let grants = sqlx::query(
        "SELECT s.id, s.email, s.totp_enabled, s.created_at, s.last_login_at, r.role, \
         r.granted_by, r.granted_at FROM staff_roles r JOIN staff s ON s.id = r.staff_id \
         ORDER BY s.email, r.role",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &grants {
        let role: String = row.try_get("role")?;
        let mfa = crate::db::flag(row.try_get("totp_enabled")?);
        let created_at: Millis = row.try_get("created_at")?;
        let last_login_at: Option<Millis> = row.try_get("last_login_at")?;
        let flags = staff_flags(rules, &role, mfa, created_at, last_login_at, now);
        items.push(Item {
            kind: ItemKind::StaffRole.as_str().into(),
            subject_id: row.try_get("id")?,
            subject_label: row.try_get("email")?,
            granted_by: Some(row.try_get("granted_by")?),
            granted_at: Some(row.try_get("granted_at")?),
            mfa: Some(if mfa { "totp" } else { "none" }.into()),
            account_created_at: Some(created_at),
            last_login_at,
            role: Some(role),
            flags: Flag::join(&flags),
            ..Item::default()
        });
    }
    // Evidence of use per scope: the per-scope request counts of the usage rows, and for
    // deletes also the audit log (a delete is audited with the key's prefix as actor), which
    // covers hours counted before per-scope counts existed.
    let deleters: HashSet<String> = sqlx::query(
        "SELECT DISTINCT actor FROM audit_log WHERE action = 'image.delete' \
         AND at >= $1 AND at < $2",
    )
    .bind(period.0)
    .bind(period.1)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>("actor"))
    .collect::<Result<_, _>>()?;
    let keys = sqlx::query(
        // Per key through the usage primary key (key_id, hour_start): joining a grouped
        // subquery instead made SQLite compare every key with every group.
        "SELECT k.id, k.prefix, k.customer_id, c.name AS customer_name, k.scopes, k.created_at, \
         k.created_by, k.last_used_at, k.expires_at, \
         CAST(COALESCE((SELECT SUM(u.requests) FROM api_usage u WHERE u.key_id = k.id \
                        AND u.hour_start >= $2 AND u.hour_start < $3), 0) AS BIGINT) AS requests, \
         CAST(COALESCE((SELECT SUM(u.detect_requests) FROM api_usage u WHERE u.key_id = k.id \
                        AND u.hour_start >= $2 AND u.hour_start < $3), 0) AS BIGINT) AS detect_uses, \
         CAST(COALESCE((SELECT SUM(u.read_requests) FROM api_usage u WHERE u.key_id = k.id \
                        AND u.hour_start >= $2 AND u.hour_start < $3), 0) AS BIGINT) AS read_uses, \
         CAST(COALESCE((SELECT SUM(u.delete_requests) FROM api_usage u WHERE u.key_id = k.id \
                        AND u.hour_start >= $2 AND u.hour_start < $3), 0) AS BIGINT) AS delete_uses \
         FROM api_keys k JOIN customers c ON c.id = k.customer_id \
         WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1) \
         ORDER BY c.name, k.created_at, k.id",
    )
    .bind(now)
    .bind(period.0)
    .bind(period.1)
    .fetch_all(&mut *conn)
    .await?;
    for row in &keys {
        let prefix: String = row.try_get("prefix")?;
        let scopes: String = row.try_get("scopes")?;
        let created_at: Millis = row.try_get("created_at")?;
        let last_used_at: Option<Millis> = row.try_get("last_used_at")?;
        let held = Scope::parse_list(&scopes).unwrap_or_default();
        let deleted = deleters.contains(&format!("key:{prefix}"));
        let mut unused = Vec::new();
        for scope in held.iter().copied() {
            let uses: i64 = row.try_get(match scope {
                Scope::FacesDetect => "detect_uses",
                Scope::ImagesRead => "read_uses",
                Scope::ImagesDelete => "delete_uses",
            })?;
            if uses == 0 && !(scope == Scope::ImagesDelete && deleted) {
                unused.push(scope);
            }
        }
        let flags = key_flags(rules, created_at, last_used_at, &unused, now);
        items.push(Item {
            kind: ItemKind::ApiKey.as_str().into(),
            subject_id: row.try_get("id")?,
            subject_label: prefix,
            customer_id: Some(row.try_get("customer_id")?),
            customer_name: Some(row.try_get("customer_name")?),
            scopes: Some(scopes),
            unused_scopes: Some(Scope::join(&unused)),
            key_created_at: Some(created_at),
            key_created_by: Some(row.try_get("created_by")?),
            last_used_at,
            requests_in_period: Some(row.try_get("requests")?),
            expires_at: row.try_get("expires_at")?,
            flags: Flag::join(&flags),
            ..Item::default()
        });
    }
    let reviewers = reviewers(conn).await?;
    assign_round_robin(&mut items, &reviewers);
    for (index, item) in items.iter_mut().enumerate() {
        item.id = uuid::Uuid::new_v4().to_string();
        item.campaign_id = campaign_id.to_owned();
        item.number = index as i64 + 1;
        item.execution = "none".into();
    }
    Ok(items)
}

/// Gives each item the next reviewer in turn who may decide it; an item nobody may decide
/// stays unassigned for an admin to assign.
pub fn assign_round_robin(items: &mut [Item], reviewers: &[Reviewer]) {
    if reviewers.is_empty() {
        return;
    }
    let mut next = 0;
    for item in items.iter_mut() {
        for offset in 0..reviewers.len() {
            let candidate = &reviewers[(next + offset) % reviewers.len()];
            if candidate.conflict_with(item).is_none() {
                item.reviewer_id = Some(candidate.id.clone());
                item.reviewer_email = Some(candidate.email.clone());
                next = (next + offset + 1) % reviewers.len();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewer(id: &str) -> Reviewer {
        Reviewer {
            id: id.into(),
            email: format!("{id}@example.com"),
        }
    }

    #[test]
    fn round_robin_skips_reviewers_who_may_not_decide_an_item() {
        let mut items = vec![
            Item {
                kind: "staff_role".into(),
                subject_id: "a".into(),
                granted_by: Some("staff:c@example.com".into()),
                ..Item::default()
            },
            Item {
                kind: "staff_role".into(),
                subject_id: "a".into(),
                ..Item::default()
            },
            Item {
                kind: "api_key".into(),
                subject_id: "k".into(),
                ..Item::default()
            },
        ];
        assign_round_robin(&mut items, &[reviewer("a"), reviewer("b"), reviewer("c")]);
        let assigned: Vec<_> = items.iter().map(|i| i.reviewer_id.clone()).collect();
        assert_eq!(
            assigned,
            vec![Some("b".into()), Some("c".into()), Some("a".into())]
        );
    }

    #[test]
    fn dormancy_is_flagged_at_exactly_the_configured_age() {
        let rules = FlagRules {
            dormant_after: 90 * DAY,
        };
        let now = 1_000 * DAY;
        assert!(
            !staff_flags(rules, "security", true, 0, Some(now - 90 * DAY + 1), now)
                .contains(&Flag::Dormant)
        );
        assert!(
            staff_flags(rules, "security", true, 0, Some(now - 90 * DAY), now)
                .contains(&Flag::Dormant)
        );
        assert_eq!(
            staff_flags(rules, "admin", false, now, None, now),
            vec![Flag::NeverUsed, Flag::AdminWithoutRecentLogin, Flag::NoMfa]
        );
        assert_eq!(
            key_flags(rules, 0, Some(now - DAY), &[Scope::ImagesDelete], now),
            vec![Flag::BroaderScopesThanUsed]
        );
    }
}
