//! Quarterly access reviews (REV-1): a campaign opens each quarter (by the `access_review_open`
//! job, the CLI or an admin), snapshots every staff role grant and every active API key, and
//! gives each item to a reviewer who may decide it. Revokes and scope changes go through the
//! same operations as manual changes (`staff::revoke_role`, `keys::revoke`,
//! `keys::narrow_scopes`), audited with the campaign id, then verified by re-reading the live
//! state; a change that failed leaves its item open. The due date is an SLA clock
//! (`SubjectKind::AccessReview`), so reminders and escalations go through the outbox.

pub mod cli;
pub mod execute;
pub mod model;
pub mod pages;
pub mod snapshot;
pub mod store;

use chrono_tz::Tz;
use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::keys::model::Scope;
use crate::keys::verify::KeyCache;
use crate::sla::{self, BusinessCalendar, ClockSpec, Subject, SubjectKind};
use model::{Decision, Execution, ItemKind, Quarter};
use snapshot::{FlagRules, Reviewer};
use store::{Campaign, Item};

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
    store::insert_items(conn, &items).await?;
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
    let item = store::find_item(&mut tx, campaign_id, item_id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    check_may_decide(&campaign, &item, reviewer)?;
    let (drop_list, execution) = validate(&item, input)?;
    let justification =
        model::justification(input.decision, !item.flags.is_empty(), &input.justification)
            .map_err(ReviewError::Invalid)?;
    let actor = reviewer.actor();
    let recorded = store::record_decision(
        &mut tx,
        &item.id,
        &store::NewDecision {
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
        let decided = store::find_item(&mut conn, campaign_id, item_id)
            .await?
            .ok_or(ReviewError::NotFound)?;
        drop(conn);
        execute::carry_out(ctx, &campaign, &decided, &actor).await?;
    }
    let mut conn = ctx.db.pool.acquire().await?;
    store::find_item(&mut conn, campaign_id, item_id)
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
async fn refresh_reminders(conn: &mut AnyConnection, campaign_id: &str) -> Result<(), ReviewError> {
    let open = store::reviewers_with_open_items(conn, campaign_id).await?;
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
    let item = store::find_item(&mut tx, campaign_id, item_id)
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
    if !store::assign(&mut tx, &item.id, &reviewer.id, &reviewer.email).await? {
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
    let deciders = store::deciders(&mut conn, campaign_id).await?;
    if deciders.len() == 1 && deciders[0] == actor {
        return Err(ReviewError::Refused(
            "You decided every item of this campaign yourself; another admin signs it off.".into(),
        ));
    }
    let pending = store::items_in_execution(&mut conn, campaign_id, Execution::Pending).await?;
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

/// Every item of a campaign as CSV: subject, snapshot facts, flags, reviewer, decision,
/// justification and the times of decision, execution and verification. Cells that a
/// spreadsheet would run as a formula are neutralised.
pub fn csv(items: &[Item]) -> String {
    let ms = |at: Option<Millis>| at.map(crate::clock::format_ms).unwrap_or_default();
    let mut out = String::from(
        "number,kind,subject,customer,role,scopes,granted_by,granted_at,mfa,account_created_at,\
         last_login_at,key_created_at,last_used_at,requests_in_period,expires_at,flags,\
         unused_scopes,reviewer,decision,dropped,justification,decided_by,decided_at,\
         execution,execution_error,executed_at,verified_at\n",
    );
    for item in items {
        let cells = [
            item.number.to_string(),
            item.kind.clone(),
            item.subject_label.clone(),
            item.customer_name.clone().unwrap_or_default(),
            item.role.clone().unwrap_or_default(),
            item.scopes.clone().unwrap_or_default(),
            item.granted_by.clone().unwrap_or_default(),
            ms(item.granted_at),
            item.mfa.clone().unwrap_or_default(),
            ms(item.account_created_at),
            ms(item.last_login_at),
            ms(item.key_created_at),
            ms(item.last_used_at),
            item.requests_in_period
                .map(|n| n.to_string())
                .unwrap_or_default(),
            ms(item.expires_at),
            item.flags.clone(),
            item.unused_scopes.clone().unwrap_or_default(),
            item.reviewer_email.clone().unwrap_or_default(),
            item.decision.clone().unwrap_or_default(),
            item.drop_list.clone().unwrap_or_default(),
            item.justification.clone().unwrap_or_default(),
            item.decided_by.clone().unwrap_or_default(),
            ms(item.decided_at),
            item.execution.clone(),
            item.execution_error.clone().unwrap_or_default(),
            ms(item.executed_at),
            ms(item.verified_at),
        ];
        let line = cells
            .iter()
            .map(|c| model::csv_cell(c))
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The REV-1 dashboard card: the newest campaign and how far it is.
#[derive(Debug, Clone)]
pub struct CardStatus {
    pub ok: bool,
    pub campaign_id: String,
    pub quarter: String,
    pub signed_off: bool,
    pub percent: i64,
    pub failed: i64,
    pub due: String,
}

/// Green when the current (or, before it opens, the previous) quarter has a campaign that is
/// not overdue and has no failed change.
pub async fn card_status(
    conn: &mut AnyConnection,
    settings: &Settings,
    now: Millis,
) -> Result<Option<CardStatus>, sqlx::Error> {
    let Some(campaign) = store::latest(conn).await? else {
        return Ok(None);
    };
    let summary = store::summary(conn, &campaign.id).await?;
    let clock = sla::for_subject(conn, &subject(&campaign.id))
        .await?
        .into_iter()
        .find(|c| c.name == CLOCK);
    let breached = clock
        .as_ref()
        .is_some_and(|c| c.state_at(now) == sla::ClockState::Breached);
    let current = Quarter::containing(now, settings.zone);
    let recent = current.is_some_and(|q| {
        campaign.quarter == q.to_string() || campaign.quarter == q.previous().to_string()
    });
    Ok(Some(CardStatus {
        ok: recent && !breached && summary.failed == 0,
        signed_off: !campaign.is_open(),
        percent: summary.completion_percent(),
        failed: summary.failed,
        due: match (&clock, campaign.is_open()) {
            (Some(c), true) => sla::format::until(c.due_at, now),
            _ => String::new(),
        },
        campaign_id: campaign.id,
        quarter: campaign.quarter,
    }))
}
