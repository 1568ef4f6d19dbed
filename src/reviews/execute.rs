//! Carrying out a revoke or modify, then verifying it against the live state. The change goes
//! through the operations a person uses by hand (`staff::revoke_role` ends the person's
//! sessions; `keys::revoke` and `keys::narrow_scopes` change the key), in one transaction with
//! a `review.execute` audit row naming the campaign. A change that fails is rolled back and
//! its item marked failed, which keeps it open (shown red) until someone decides it again.

use sqlx::{AnyConnection, Row};

use super::items::{self, Item};
use super::model::{Decision, Execution, ItemKind};
use super::store::Campaign;
use super::{Ctx, ReviewError};
use crate::audit::{self, AuditEvent, Outcome};
use crate::clock::Millis;
use crate::error::AppError;
use crate::keys::model::Scope;
use crate::staff::model::Role;

/// What applying a change found.
enum Applied {
    /// The change was made (or the live state already had it).
    Done,
    /// It could not be made; the message says why.
    Failed(String),
}

/// Carries out `item`'s decision as `actor` and verifies it; returns where it ended.
pub async fn carry_out(
    ctx: &Ctx<'_>,
    campaign: &Campaign,
    item: &Item,
    actor: &str,
) -> Result<Execution, ReviewError> {
    let Some(decision) = item.decision() else {
        return Ok(Execution::None);
    };
    if decision == Decision::Keep {
        return Ok(Execution::None);
    }
    let now = ctx.now;
    let mut tx = ctx.db.begin().await?;
    let applied = apply(&mut tx, item, decision, actor, ctx, now).await?;
    match applied {
        Applied::Done => {
            items::record_execution(&mut tx, &item.id, Execution::Pending, None, Some(now), None)
                .await?;
            audit::append(
                &mut tx,
                now,
                &ctx.meta,
                event(campaign, item, decision, actor, "review.execute"),
            )
            .await?;
            tx.commit().await?;
        }
        Applied::Failed(message) => {
            drop(tx); // rolls back whatever part of the change was made
            return fail(ctx, campaign, item, decision, actor, &message, None).await;
        }
    }
    if item.kind() == Some(ItemKind::ApiKey) {
        ctx.key_cache.forget(&item.subject_id);
    }
    let mut conn = ctx.db.pool.acquire().await?;
    let problem = verify(&mut conn, item, decision, now).await?;
    drop(conn);
    match problem {
        None => {
            let mut tx = ctx.db.begin().await?;
            items::record_execution(
                &mut tx,
                &item.id,
                Execution::Verified,
                None,
                Some(now),
                Some(now),
            )
            .await?;
            audit::append(
                &mut tx,
                now,
                &ctx.meta,
                event(campaign, item, decision, "system", "review.verify"),
            )
            .await?;
            tx.commit().await?;
            Ok(Execution::Verified)
        }
        Some(problem) => {
            fail(
                ctx,
                campaign,
                item,
                decision,
                "system",
                &format!("carried out, but the live state does not show it: {problem}"),
                Some(now),
            )
            .await
        }
    }
}

fn event(
    campaign: &Campaign,
    item: &Item,
    decision: Decision,
    actor: &str,
    action: &'static str,
) -> AuditEvent {
    AuditEvent::new(actor, action, format!("review_item:{}", item.id))
        .detail("campaign", campaign.id.as_str())
        .detail("quarter", campaign.quarter.as_str())
        .detail("item", item.number)
        .detail("subject", item.subject_label.as_str())
        .detail("decision", decision.as_str())
}

async fn fail(
    ctx: &Ctx<'_>,
    campaign: &Campaign,
    item: &Item,
    decision: Decision,
    actor: &str,
    message: &str,
    executed_at: Option<Millis>,
) -> Result<Execution, ReviewError> {
    let mut tx = ctx.db.begin().await?;
    items::record_execution(
        &mut tx,
        &item.id,
        Execution::Failed,
        Some(message),
        executed_at,
        None,
    )
    .await?;
    audit::append(
        &mut tx,
        ctx.now,
        &ctx.meta,
        event(campaign, item, decision, actor, "review.execute")
            .outcome(Outcome::Failure)
            .detail("error", message),
    )
    .await?;
    super::decide::refresh_reminders(&mut tx, &campaign.id).await?;
    tx.commit().await?;
    Ok(Execution::Failed)
}

/// Makes the change through the owning capability's operation.
async fn apply(
    conn: &mut AnyConnection,
    item: &Item,
    decision: Decision,
    actor: &str,
    ctx: &Ctx<'_>,
    now: Millis,
) -> Result<Applied, ReviewError> {
    match item.kind() {
        Some(ItemKind::StaffRole) => {
            let Some(staff) = crate::staff::store::find(&mut *conn, &item.subject_id).await? else {
                return Ok(Applied::Failed("the account no longer exists".into()));
            };
            let Ok(role) = Role::parse(item.role.as_deref().unwrap_or_default()) else {
                return Ok(Applied::Failed("the role is not known".into()));
            };
            let held = crate::staff::store::roles_of(&mut *conn, &staff.id).await?;
            if !held.iter().any(|r| r == role.as_str()) {
                return Ok(Applied::Done); // removed by hand meanwhile; verification confirms
            }
            match crate::staff::revoke_role(conn, &staff, role, actor, &ctx.meta, now).await {
                Ok(_) => Ok(Applied::Done),
                Err(AppError::Conflict(message) | AppError::BadRequest(message)) => {
                    Ok(Applied::Failed(message))
                }
                Err(err) => Err(err.into()),
            }
        }
        Some(ItemKind::ApiKey) => {
            let Some(key) = crate::keys::store::find(&mut *conn, &item.subject_id).await? else {
                return Ok(Applied::Failed("the key no longer exists".into()));
            };
            if key.revoked_at.is_some() {
                return Ok(Applied::Done); // revoked by hand meanwhile
            }
            if decision == Decision::Revoke {
                crate::keys::revoke(conn, &key, actor, &ctx.meta, now).await?;
                return Ok(Applied::Done);
            }
            let drop = Scope::parse_list(item.drop_list.as_deref().unwrap_or_default())
                .unwrap_or_default();
            let held = Scope::parse_list(&key.scopes).unwrap_or_default();
            let keep: Vec<Scope> = held.into_iter().filter(|s| !drop.contains(s)).collect();
            if keep.is_empty() {
                return Ok(Applied::Failed(
                    "the key now holds only the scopes to drop; revoke it instead".into(),
                ));
            }
            if crate::keys::narrow_scopes(conn, &key, &keep, actor, &ctx.meta, now).await? {
                Ok(Applied::Done)
            } else {
                Ok(Applied::Failed(
                    "the key's scopes changed meanwhile; decide again".into(),
                ))
            }
        }
        None => Ok(Applied::Failed(format!("unknown item kind {}", item.kind))),
    }
}

/// Re-reads the live state; `None` when it shows the change, otherwise what it shows.
async fn verify(
    conn: &mut AnyConnection,
    item: &Item,
    decision: Decision,
    executed_at: Millis,
) -> Result<Option<String>, ReviewError> {
    match item.kind() {
        Some(ItemKind::StaffRole) => {
            let role = item.role.clone().unwrap_or_default();
            let held = crate::staff::store::roles_of(&mut *conn, &item.subject_id).await?;
            if held.contains(&role) {
                return Ok(Some(format!("{} still holds {role}", item.subject_label)));
            }
            let sessions: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM sessions WHERE staff_id = $1 AND created_at <= $2",
            )
            .bind(&item.subject_id)
            .bind(executed_at)
            .fetch_one(conn)
            .await?
            .try_get("n")?;
            Ok((sessions > 0).then(|| format!("{sessions} sessions from before are still live")))
        }
        Some(ItemKind::ApiKey) => {
            let Some(key) = crate::keys::store::find(&mut *conn, &item.subject_id).await? else {
                return Ok(Some("the key no longer exists".into()));
            };
            if key.revoked_at.is_some() {
                return Ok(None);
            }
            if decision == Decision::Revoke {
                return Ok(Some("the key is still active".into()));
            }
            let drop = Scope::parse_list(item.drop_list.as_deref().unwrap_or_default())
                .unwrap_or_default();
            let held = Scope::parse_list(&key.scopes).unwrap_or_default();
            Ok(held
                .iter()
                .find(|s| drop.contains(s))
                .map(|s| format!("the key still holds {}", s.as_str())))
        }
        None => Ok(Some("unknown item kind".into())),
    }
}
