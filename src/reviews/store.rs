//! SQL for campaigns: one per quarter, their report figures and sign-off.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::clock::Millis;

/// A campaign as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Campaign {
    pub id: String,
    pub quarter: String,
    pub state: String,
    pub opened_at: Millis,
    pub opened_by: String,
    pub period_start: Millis,
    pub period_end: Millis,
    pub item_count: i64,
    pub signed_off_at: Option<Millis>,
    pub signed_off_by: Option<String>,
}

impl Campaign {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            quarter: row.try_get("quarter")?,
            state: row.try_get("state")?,
            opened_at: row.try_get("opened_at")?,
            opened_by: row.try_get("opened_by")?,
            period_start: row.try_get("period_start")?,
            period_end: row.try_get("period_end")?,
            item_count: row.try_get("item_count")?,
            signed_off_at: row.try_get("signed_off_at")?,
            signed_off_by: row.try_get("signed_off_by")?,
        })
    }
}

const CAMPAIGN_COLUMNS: &str = "id, quarter, state, opened_at, opened_by, period_start, \
     period_end, item_count, signed_off_at, signed_off_by";

/// Inserts a campaign; false when its quarter already has one.
pub async fn insert_campaign(
    conn: &mut AnyConnection,
    campaign: &Campaign,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO review_campaigns (id, quarter, state, opened_at, opened_by, period_start, \
         period_end, item_count) VALUES ($1, $2, 'open', $3, $4, $5, $6, $7) \
         ON CONFLICT (quarter) DO NOTHING",
    )
    .bind(&campaign.id)
    .bind(&campaign.quarter)
    .bind(campaign.opened_at)
    .bind(&campaign.opened_by)
    .bind(campaign.period_start)
    .bind(campaign.period_end)
    .bind(campaign.item_count)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find_campaign(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(Campaign::from_row).transpose()
}

pub async fn find_campaign_by_quarter(
    conn: &mut AnyConnection,
    quarter: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns WHERE quarter = $1");
    let row = sqlx::query(&sql).bind(quarter).fetch_optional(conn).await?;
    row.as_ref().map(Campaign::from_row).transpose()
}

/// Campaigns newest first.
pub async fn list_campaigns(
    conn: &mut AnyConnection,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Campaign>, i64), sqlx::Error> {
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM review_campaigns")
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns ORDER BY opened_at DESC, quarter DESC \
         LIMIT $1 OFFSET $2"
    );
    let rows = sqlx::query(&sql)
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?;
    let campaigns = rows
        .iter()
        .map(Campaign::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((campaigns, total))
}

/// Figures for a campaign's report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub items: i64,
    pub decided: i64,
    pub open: i64,
    pub flagged: i64,
    pub keep: i64,
    pub revoke: i64,
    pub modify: i64,
    pub executed: i64,
    pub verified: i64,
    pub failed: i64,
    pub pending: i64,
    pub unassigned: i64,
}

impl Summary {
    /// Whole percent of items decided and, where a change was due, verified.
    pub fn completion_percent(&self) -> i64 {
        if self.items == 0 {
            100
        } else {
            (self.items - self.open - self.pending) * 100 / self.items
        }
    }
}

pub async fn summary(conn: &mut AnyConnection, campaign_id: &str) -> Result<Summary, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS items, \
         COALESCE(SUM(CASE WHEN decision IS NOT NULL AND execution <> 'failed' THEN 1 ELSE 0 END), 0) AS decided, \
         COALESCE(SUM(CASE WHEN decision IS NULL OR execution = 'failed' THEN 1 ELSE 0 END), 0) AS open, \
         COALESCE(SUM(CASE WHEN flags <> '' THEN 1 ELSE 0 END), 0) AS flagged, \
         COALESCE(SUM(CASE WHEN decision = 'keep' THEN 1 ELSE 0 END), 0) AS keep, \
         COALESCE(SUM(CASE WHEN decision = 'revoke' THEN 1 ELSE 0 END), 0) AS revoke, \
         COALESCE(SUM(CASE WHEN decision = 'modify' THEN 1 ELSE 0 END), 0) AS modify, \
         COALESCE(SUM(CASE WHEN executed_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS executed, \
         COALESCE(SUM(CASE WHEN execution = 'verified' THEN 1 ELSE 0 END), 0) AS verified, \
         COALESCE(SUM(CASE WHEN execution = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
         COALESCE(SUM(CASE WHEN execution = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
         COALESCE(SUM(CASE WHEN reviewer_id IS NULL AND decision IS NULL THEN 1 ELSE 0 END), 0) AS unassigned \
         FROM review_items WHERE campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_one(conn)
    .await?;
    Ok(Summary {
        items: row.try_get("items")?,
        decided: row.try_get("decided")?,
        open: row.try_get("open")?,
        flagged: row.try_get("flagged")?,
        keep: row.try_get("keep")?,
        revoke: row.try_get("revoke")?,
        modify: row.try_get("modify")?,
        executed: row.try_get("executed")?,
        verified: row.try_get("verified")?,
        failed: row.try_get("failed")?,
        pending: row.try_get("pending")?,
        unassigned: row.try_get("unassigned")?,
    })
}

/// Closes an open campaign; false if it was already signed off.
pub async fn sign_off(
    conn: &mut AnyConnection,
    campaign_id: &str,
    by: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE review_campaigns SET state = 'signed_off', signed_off_at = $1, signed_off_by = $2 \
         WHERE id = $3 AND state = 'open'",
    )
    .bind(now)
    .bind(by)
    .bind(campaign_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The newest open campaign, if any (the dashboard card).
pub async fn latest(conn: &mut AnyConnection) -> Result<Option<Campaign>, sqlx::Error> {
    let sql =
        format!("SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns ORDER BY opened_at DESC LIMIT 1");
    let row = sqlx::query(&sql).fetch_optional(conn).await?;
    row.as_ref().map(Campaign::from_row).transpose()
}
