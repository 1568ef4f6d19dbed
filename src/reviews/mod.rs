//! Quarterly access reviews (REV-1): a campaign opens each quarter (by the `access_review_open`
//! job, the CLI or an admin), snapshots every staff role grant and every active API key, and
//! gives each item to a reviewer who may decide it. Revokes and scope changes go through the
//! same operations as manual changes (`staff::revoke_role`, `keys::revoke`,
//! `keys::narrow_scopes`), audited with the campaign id, then verified by re-reading the live
//! state; a change that failed leaves its item open. The due date is an SLA clock
//! (`SubjectKind::AccessReview`), so reminders and escalations go through the outbox.

pub mod actions;
pub mod cli;
pub mod decide;
pub mod execute;
pub mod items;
pub mod model;
pub mod pages;
pub mod report;
pub mod snapshot;
pub mod store;
pub mod view;

use chrono_tz::Tz;
use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
pub use decide::{Ctx, DecisionInput, assign, check_may_decide, decide};
use model::{Execution, ItemKind, Quarter};
pub use report::{CardStatus, card_status, csv};
use snapshot::FlagRules;
use store::Campaign;

/// The SLA clock of a campaign.
pub const CLOCK: &str = "review_due";
/// The job opens a missed campaign only this many days into a quarter (after downtime);
/// later, an admin opens it by hand.
pub const CATCH_UP_DAYS: i64 = 7;

/// Why a review operation did not happen. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not found")]
    NotFound,
    /// The person may not do this to this item (separation of duties, not assigned).
    #[error("{0}")]
    Refused(String),
    /// The campaign or item is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    /// The input cannot be used; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<sqlx::Error> for ReviewError {
    fn from(err: sqlx::Error) -> Self {
        ReviewError::App(err.into())
    }
}

impl From<sla::SlaError> for ReviewError {
    fn from(err: sla::SlaError) -> Self {
        ReviewError::App(err.into())
    }
}

/// How campaigns run, from the `review_*` configuration keys.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The zone quarters begin in.
    pub zone: Tz,
    pub due_days: i64,
    pub dormant_days: i64,
    /// Carry out revokes at sign-off instead of at each decision.
    pub execute_at_sign_off: bool,
}

impl Settings {
    /// Reads the settings; `Config::validate` has checked them, so bad values fall back to
    /// the defaults rather than fail here.
    pub fn from_config(config: &Config) -> Self {
        Self {
            zone: config.review_timezone.trim().parse().unwrap_or(Tz::UTC),
            due_days: config.review_due_days,
            dormant_days: config.review_dormant_days,
            execute_at_sign_off: config.review_execute == "sign_off",
        }
    }

    fn rules(&self) -> FlagRules {
        FlagRules {
            dormant_after: self.dormant_days * DAY,
        }
    }
}

/// Checks the `review_*` keys; the error names the key.
pub fn validate_config(config: &Config) -> Result<(), (&'static str, String)> {
    if config.review_timezone.trim().parse::<Tz>().is_err() {
        return Err((
            "review_timezone",
            format!(
                "“{}” is not an IANA time zone like Europe/Berlin",
                config.review_timezone
            ),
        ));
    }
    if !(1..=90).contains(&config.review_due_days) {
        return Err(("review_due_days", "must be between 1 and 90".into()));
    }
    if !(1..=365).contains(&config.review_dormant_days) {
        return Err(("review_dormant_days", "must be between 1 and 365".into()));
    }
    if !["decision", "sign_off"].contains(&config.review_execute.as_str()) {
        return Err(("review_execute", "must be `decision` or `sign_off`".into()));
    }
    Ok(())
}

/// Opens the campaign of `quarter`: snapshot, flags, reviewers, the due clock. Refused when
/// the quarter already has one (a unique constraint, so it holds across nodes) or has not
/// begun.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    conn: &mut AnyConnection,
    settings: &Settings,
    calendar: &BusinessCalendar,
    quarter: Quarter,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Campaign, ReviewError> {
    let starts_at = quarter
        .starts_at(settings.zone)
        .ok_or_else(|| ReviewError::Invalid(format!("{quarter} has no start date.")))?;
    if starts_at > now {
        return Err(ReviewError::Conflict(format!(
            "{quarter} has not begun yet; a campaign opens on or after its first day."
        )));
    }
    let period_start = quarter
        .previous()
        .starts_at(settings.zone)
        .unwrap_or(starts_at - 90 * DAY);
    let mut campaign = Campaign {
        id: uuid::Uuid::new_v4().to_string(),
        quarter: quarter.to_string(),
        state: "open".into(),
        opened_at: now,
        opened_by: actor.to_owned(),
        period_start,
        period_end: starts_at,
        item_count: 0,
        signed_off_at: None,
        signed_off_by: None,
    };
    if !store::insert_campaign(conn, &campaign).await? {
        return Err(ReviewError::Conflict(format!(
            "The {quarter} access review is already open; a quarter has one campaign."
        )));
    }
    let items = snapshot::take(
        conn,
        &campaign.id,
        settings.rules(),
        (period_start, starts_at.min(now)),
        now,
    )
    .await?;
    items::insert_items(conn, &items).await?;
    campaign.item_count = items.len() as i64;
    sqlx::query("UPDATE review_campaigns SET item_count = $1 WHERE id = $2")
        .bind(campaign.item_count)
        .bind(&campaign.id)
        .execute(&mut *conn)
        .await?;
    let mut reviewers: Vec<String> = items
        .iter()
        .filter_map(|i| i.reviewer_email.clone())
        .collect();
    reviewers.sort();
    reviewers.dedup();
    let target = format!(
        "Access review {quarter} signed off within {} days",
        settings.due_days
    );
    let link = format!("/reviews/{}", campaign.id);
    let admins = snapshot::admin_emails(conn).await?;
    sla::start(
        conn,
        now,
        &ClockSpec {
            subject: subject(&campaign.id),
            name: CLOCK,
            target: &target,
            duration: sla::Duration::Hours(settings.due_days * 24),
            calendar,
            notify_to: reviewers,
            escalate_to: admins,
            link_path: &link,
            reminder_fraction: Some(0.5),
            escalation_interval: Some(DAY),
        },
        actor,
        meta,
    )
    .await?;
    let flagged = items.iter().filter(|i| !i.flags.is_empty()).count();
    let unassigned = items.iter().filter(|i| i.reviewer_id.is_none()).count();
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "review.open", format!("review:{}", campaign.id))
            .detail("quarter", campaign.quarter.as_str())
            .detail("items", campaign.item_count)
            .detail(
                "staff_roles",
                items
                    .iter()
                    .filter(|i| i.kind == ItemKind::StaffRole.as_str())
                    .count() as i64,
            )
            .detail("flagged", flagged as i64)
            .detail("unassigned", unassigned as i64),
    )
    .await?;
    Ok(campaign)
}

pub fn subject(campaign_id: &str) -> Subject {
    Subject::new(SubjectKind::AccessReview, campaign_id)
}

/// The scheduled job: opens the campaign of the current quarter if it has none and the
/// quarter began at most [`CATCH_UP_DAYS`] ago. Returns the quarter opened, if any.
pub async fn open_due(
    db: &Db,
    settings: &Settings,
    calendar: &BusinessCalendar,
    now: Millis,
) -> Result<Option<String>, ReviewError> {
    let Some(quarter) = Quarter::containing(now, settings.zone) else {
        return Ok(None);
    };
    let Some(starts_at) = quarter.starts_at(settings.zone) else {
        return Ok(None);
    };
    if now - starts_at >= CATCH_UP_DAYS * DAY {
        return Ok(None);
    }
    let mut conn = db.pool.acquire().await?;
    if store::find_campaign_by_quarter(&mut conn, &quarter.to_string())
        .await?
        .is_some()
    {
        return Ok(None);
    }
    drop(conn);
    let mut tx = db.begin().await?;
    match open(
        &mut tx,
        settings,
        calendar,
        quarter,
        "system",
        &RequestMeta::default(),
        now,
    )
    .await
    {
        Ok(campaign) => {
            tx.commit().await?;
            Ok(Some(campaign.quarter))
        }
        // Another node opened it between the look and the insert.
        Err(ReviewError::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Signs a campaign off: carries out decisions still pending (when execution waits for
/// sign-off), then closes it if every item is decided and carried out, and stops its clock.
/// Refused when the signing admin decided every item alone.
pub async fn sign_off(
    ctx: &Ctx<'_>,
    campaign_id: &str,
    admin_email: &str,
) -> Result<Campaign, ReviewError> {
    let actor = format!("staff:{admin_email}");
    let mut conn = ctx.db.pool.acquire().await?;
    let campaign = store::find_campaign(&mut conn, campaign_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    if !campaign.is_open() {
        return Err(ReviewError::Conflict(format!(
            "The {} access review is already signed off.",
            campaign.quarter
        )));
    }
    let deciders = items::deciders(&mut conn, campaign_id).await?;
    if deciders.len() == 1 && deciders[0] == actor {
        return Err(ReviewError::Refused(
            "You decided every item of this campaign yourself; another admin signs it off.".into(),
        ));
    }
    let pending = items::items_in_execution(&mut conn, campaign_id, Execution::Pending).await?;
    drop(conn);
    for item in &pending {
        let decider = item.decided_by.clone().unwrap_or_else(|| actor.clone());
        execute::carry_out(ctx, &campaign, item, &decider).await?;
    }
    let mut tx = ctx.db.begin().await?;
    let summary = store::summary(&mut tx, campaign_id).await?;
    if summary.open > 0 || summary.pending > 0 {
        return Err(ReviewError::Conflict(format!(
            "{} items are still open (undecided, or their change failed and is shown red). \
             Sign-off needs every item decided and carried out.",
            summary.open + summary.pending
        )));
    }
    if !store::sign_off(&mut tx, campaign_id, &actor, ctx.now).await? {
        return Err(ReviewError::Conflict(
            "The campaign was signed off meanwhile.".into(),
        ));
    }
    match sla::stop(
        &mut tx,
        ctx.now,
        &subject(campaign_id),
        CLOCK,
        &actor,
        &ctx.meta,
    )
    .await
    {
        Ok(_) | Err(sla::SlaError::NotFound { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    audit::append(
        &mut tx,
        ctx.now,
        &ctx.meta,
        AuditEvent::new(
            actor.as_str(),
            "review.sign_off",
            format!("review:{campaign_id}"),
        )
        .detail("quarter", campaign.quarter.as_str())
        .detail("items", summary.items)
        .detail("revoked", summary.revoke)
        .detail("modified", summary.modify)
        .detail("verified", summary.verified),
    )
    .await?;
    let signed = store::find_campaign(&mut tx, campaign_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    tx.commit().await?;
    Ok(signed)
}
