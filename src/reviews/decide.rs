//! Deciding items: who may decide what (separation of duties, assignment, campaign open),
//! what a decision needs (a justification on revokes and flagged keeps, the scopes to drop on
//! a modify), and assigning items to reviewers. Keeps the campaign's reminders pointed at the
//! reviewers who still have open items.

use sqlx::AnyConnection;

use super::items::{self, Item};
use super::model::{self, Decision, Execution, ItemKind};
use super::snapshot::{self, Reviewer};
use super::store::{self, Campaign};
use super::{CLOCK, ReviewError, Settings, execute, subject};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;
use crate::db::Db;
use crate::keys::model::Scope;
use crate::keys::verify::KeyCache;
use crate::sla;

/// What a reviewer submitted for one item.
#[derive(Debug, Clone)]
pub struct DecisionInput {
    pub decision: Decision,
    pub justification: String,
    /// For modify: the scopes to drop.
    pub drop: Vec<String>,
}

/// Who decides, and the pieces execution needs.
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub key_cache: &'a KeyCache,
    pub settings: &'a Settings,
    pub meta: RequestMeta,
    pub now: Millis,
}

/// Records `reviewer`'s decision on one item and, unless execution waits for sign-off,
/// carries it out and verifies it. The server enforces: campaign open, item assigned to the
/// reviewer, no separation-of-duties conflict, item still open, justification where needed.
pub async fn decide(
    ctx: &Ctx<'_>,
    campaign_id: &str,
    item_id: &str,
    reviewer: &Reviewer,
    input: &DecisionInput,
) -> Result<Item, ReviewError> {
    let mut tx = ctx.db.begin().await?;
    let campaign = store::find_campaign(&mut tx, campaign_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    let item = items::find_item(&mut tx, campaign_id, item_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    check_may_decide(&campaign, &item, reviewer)?;
    let (drop_list, execution) = validate(&item, input)?;
    let justification =
        model::justification(input.decision, !item.flags.is_empty(), &input.justification)
            .map_err(ReviewError::Invalid)?;
    let actor = reviewer.actor();
    let recorded = items::record_decision(
        &mut tx,
        &item.id,
        &items::NewDecision {
            decision: input.decision,
            drop_list: drop_list.as_deref(),
            justification: justification.as_deref(),
            decided_by: &actor,
            execution,
        },
        ctx.now,
    )
    .await?;
    if !recorded {
        return Err(ReviewError::Conflict(
            "This item was decided meanwhile. Nothing was changed.".into(),
        ));
    }
    audit::append(
        &mut tx,
        ctx.now,
        &ctx.meta,
        AuditEvent::new(actor.as_str(), "review.decide", item_target(&item))
            .detail("campaign", campaign.id.as_str())
            .detail("quarter", campaign.quarter.as_str())
            .detail("subject", item.subject_label.as_str())
            .detail("decision", input.decision.as_str())
            .detail("drop", drop_list.clone().unwrap_or_default())
            .detail("justification", justification.clone().unwrap_or_default()),
    )
    .await?;
    refresh_reminders(&mut tx, campaign_id).await?;
    tx.commit().await?;
    if execution == Execution::Pending && !ctx.settings.execute_at_sign_off {
        let mut conn = ctx.db.pool.acquire().await?;
        let decided = items::find_item(&mut conn, campaign_id, item_id)
            .await?
            .ok_or(ReviewError::NotFound)?;
        drop(conn);
        execute::carry_out(ctx, &campaign, &decided, &actor).await?;
    }
    let mut conn = ctx.db.pool.acquire().await?;
    items::find_item(&mut conn, campaign_id, item_id)
        .await?
        .ok_or(ReviewError::NotFound)
}

fn item_target(item: &Item) -> String {
    format!("review_item:{}", item.id)
}

/// The refusals, in the order a person can act on them.
pub fn check_may_decide(
    campaign: &Campaign,
    item: &Item,
    reviewer: &Reviewer,
) -> Result<(), ReviewError> {
    if !campaign.is_open() {
        return Err(ReviewError::Conflict(format!(
            "The {} access review is signed off and read-only. Nothing was changed.",
            campaign.quarter
        )));
    }
    if let Some(why) = reviewer.conflict_with(item) {
        return Err(ReviewError::Refused(format!(
            "You cannot decide item {}: {why}. Separation of duties: another reviewer decides \
             it. Nothing was changed.",
            item.number
        )));
    }
    if item.reviewer_id.as_deref() != Some(reviewer.id.as_str()) {
        return Err(ReviewError::Refused(format!(
            "Item {} is not assigned to you. Nothing was changed.",
            item.number
        )));
    }
    if !item.is_open() {
        return Err(ReviewError::Conflict(format!(
            "Item {} is already decided. Nothing was changed.",
            item.number
        )));
    }
    Ok(())
}

/// Checks the decision against the item; returns the stored drop list and the execution
/// state the decision starts in.
fn validate(
    item: &Item,
    input: &DecisionInput,
) -> Result<(Option<String>, Execution), ReviewError> {
    let pending = Execution::Pending;
    match (input.decision, item.kind()) {
        (Decision::Keep, _) => Ok((None, Execution::None)),
        (Decision::Revoke, _) => Ok((None, pending)),
        (Decision::Modify, Some(ItemKind::StaffRole)) => Err(ReviewError::Invalid(
            "An item is one role grant: keep it or revoke it. Modify drops scopes of an API key."
                .into(),
        )),
        (Decision::Modify, _) => {
            let held =
                Scope::parse_list(item.scopes.as_deref().unwrap_or_default()).unwrap_or_default();
            let mut drop = Vec::new();
            for raw in input.drop.iter().filter(|s| !s.trim().is_empty()) {
                let scope = Scope::parse(raw).map_err(ReviewError::Invalid)?;
                if !held.contains(&scope) {
                    return Err(ReviewError::Invalid(format!(
                        "The key does not hold {}.",
                        scope.as_str()
                    )));
                }
                drop.push(scope);
            }
            drop.sort();
            drop.dedup();
            if drop.is_empty() {
                return Err(ReviewError::Invalid(
                    "Choose the scopes to drop, or keep the key.".into(),
                ));
            }
            if drop.len() == held.len() {
                return Err(ReviewError::Invalid(
                    "Dropping every scope is a revoke: choose revoke instead.".into(),
                ));
            }
            Ok((Some(Scope::join(&drop)), pending))
        }
    }
}

/// Points the campaign's reminders at the reviewers who still have open items.
pub(crate) async fn refresh_reminders(
    conn: &mut AnyConnection,
    campaign_id: &str,
) -> Result<(), ReviewError> {
    let open = items::reviewers_with_open_items(conn, campaign_id).await?;
    match sla::set_notify_to(conn, &subject(campaign_id), CLOCK, &open).await {
        Ok(()) | Err(sla::SlaError::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Assigns an undecided item to a reviewer (admin), refusing anyone who may not decide it.
pub async fn assign(
    ctx: &Ctx<'_>,
    campaign_id: &str,
    item_id: &str,
    reviewer_email: &str,
    actor: &str,
) -> Result<(), ReviewError> {
    let mut tx = ctx.db.begin().await?;
    let campaign = store::find_campaign(&mut tx, campaign_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    if !campaign.is_open() {
        return Err(ReviewError::Conflict(
            "The campaign is signed off and read-only. Nothing was changed.".into(),
        ));
    }
    let item = items::find_item(&mut tx, campaign_id, item_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    let reviewers = snapshot::reviewers(&mut tx).await?;
    let reviewer = reviewers
        .iter()
        .find(|r| r.email == reviewer_email.trim().to_lowercase())
        .ok_or_else(|| {
            ReviewError::Invalid(format!(
                "{} is not an enabled reviewer.",
                reviewer_email.trim()
            ))
        })?;
    if let Some(why) = reviewer.conflict_with(&item) {
        return Err(ReviewError::Refused(format!(
            "{} cannot review item {}: {why}.",
            reviewer.email, item.number
        )));
    }
    if !items::assign(&mut tx, &item.id, &reviewer.id, &reviewer.email).await? {
        return Err(ReviewError::Conflict(
            "Only undecided items can be reassigned.".into(),
        ));
    }
    audit::append(
        &mut tx,
        ctx.now,
        &ctx.meta,
        AuditEvent::new(actor, "review.assign", item_target(&item))
            .detail("campaign", campaign.id.as_str())
            .detail("reviewer", reviewer.email.as_str()),
    )
    .await?;
    refresh_reminders(&mut tx, campaign_id).await?;
    tx.commit().await?;
    Ok(())
}
