//! SQL for the items of a campaign: the snapshot written once at opening, the page of items
//! a filter selects, and the decision and execution columns, which change only while the
//! campaign is open.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Decision, Execution, Flag, ItemKind};
use crate::clock::Millis;

/// One item: the snapshot taken at opening, then the decision and its execution.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Item {
    pub id: String,
    pub campaign_id: String,
    pub number: i64,
    pub kind: String,
    /// Staff id or key id.
    pub subject_id: String,
    /// Email or key prefix.
    pub subject_label: String,
    pub role: Option<String>,
    pub granted_by: Option<String>,
    pub granted_at: Option<Millis>,
    /// `totp` or `none`.
    pub mfa: Option<String>,
    pub account_created_at: Option<Millis>,
    pub last_login_at: Option<Millis>,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub scopes: Option<String>,
    pub unused_scopes: Option<String>,
    pub key_created_at: Option<Millis>,
    pub key_created_by: Option<String>,
    pub last_used_at: Option<Millis>,
    pub requests_in_period: Option<i64>,
    pub expires_at: Option<Millis>,
    pub flags: String,
    pub reviewer_id: Option<String>,
    pub reviewer_email: Option<String>,
    pub decision: Option<String>,
    pub drop_list: Option<String>,
    pub justification: Option<String>,
    pub decided_at: Option<Millis>,
    pub decided_by: Option<String>,
    pub execution: String,
    pub execution_error: Option<String>,
    pub executed_at: Option<Millis>,
    pub verified_at: Option<Millis>,
}

const ITEM_COLUMNS: &str = "id, campaign_id, number, kind, subject_id, subject_label, role, \
     granted_by, granted_at, mfa, account_created_at, last_login_at, customer_id, customer_name, \
     scopes, unused_scopes, key_created_at, key_created_by, last_used_at, requests_in_period, \
     expires_at, flags, reviewer_id, reviewer_email, decision, drop_list, justification, \
     decided_at, decided_by, execution, execution_error, executed_at, verified_at";

/// Columns written at opening, in the order of [`insert_items`]' binds.
const SNAPSHOT_COLUMNS: [&str; 24] = [
    "id",
    "campaign_id",
    "number",
    "kind",
    "subject_id",
    "subject_label",
    "role",
    "granted_by",
    "granted_at",
    "mfa",
    "account_created_at",
    "last_login_at",
    "customer_id",
    "customer_name",
    "scopes",
    "unused_scopes",
    "key_created_at",
    "key_created_by",
    "last_used_at",
    "requests_in_period",
    "expires_at",
    "flags",
    "reviewer_id",
    "reviewer_email",
];

impl Item {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            campaign_id: row.try_get("campaign_id")?,
            number: row.try_get("number")?,
            kind: row.try_get("kind")?,
            subject_id: row.try_get("subject_id")?,
            subject_label: row.try_get("subject_label")?,
            role: row.try_get("role")?,
            granted_by: row.try_get("granted_by")?,
            granted_at: row.try_get("granted_at")?,
            mfa: row.try_get("mfa")?,
            account_created_at: row.try_get("account_created_at")?,
            last_login_at: row.try_get("last_login_at")?,
            customer_id: row.try_get("customer_id")?,
            customer_name: row.try_get("customer_name")?,
            scopes: row.try_get("scopes")?,
            unused_scopes: row.try_get("unused_scopes")?,
            key_created_at: row.try_get("key_created_at")?,
            key_created_by: row.try_get("key_created_by")?,
            last_used_at: row.try_get("last_used_at")?,
            requests_in_period: row.try_get("requests_in_period")?,
            expires_at: row.try_get("expires_at")?,
            flags: row.try_get("flags")?,
            reviewer_id: row.try_get("reviewer_id")?,
            reviewer_email: row.try_get("reviewer_email")?,
            decision: row.try_get("decision")?,
            drop_list: row.try_get("drop_list")?,
            justification: row.try_get("justification")?,
            decided_at: row.try_get("decided_at")?,
            decided_by: row.try_get("decided_by")?,
            execution: row.try_get("execution")?,
            execution_error: row.try_get("execution_error")?,
            executed_at: row.try_get("executed_at")?,
            verified_at: row.try_get("verified_at")?,
        })
    }

    pub fn kind(&self) -> Option<ItemKind> {
        ItemKind::parse(&self.kind).ok()
    }

    pub fn flags(&self) -> Vec<Flag> {
        Flag::split(&self.flags)
    }

    pub fn decision(&self) -> Option<Decision> {
        self.decision
            .as_deref()
            .and_then(|d| Decision::parse(d).ok())
    }

    pub fn execution(&self) -> Execution {
        Execution::parse(&self.execution)
    }

    /// Still needs a person: undecided, or its change failed.
    pub fn is_open(&self) -> bool {
        self.decision.is_none() || self.execution() == Execution::Failed
    }
}

/// Rows per multi-row INSERT. Small on purpose: SQLite's cost per statement grows faster
/// than its number of parameters, so 400 rows (9 600 parameters) took 12× longer per row
/// than 16 (benches/reviews.rs); PostgreSQL is as fast either way.
const INSERT_BATCH: usize = 16;

/// Writes the snapshot items, many rows per statement.
pub async fn insert_items(conn: &mut AnyConnection, items: &[Item]) -> Result<(), sqlx::Error> {
    let width = SNAPSHOT_COLUMNS.len();
    for chunk in items.chunks(INSERT_BATCH) {
        let mut sql = format!(
            "INSERT INTO review_items ({}) VALUES ",
            SNAPSHOT_COLUMNS.join(", ")
        );
        for (row, _) in chunk.iter().enumerate() {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for column in 0..width {
                if column > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", row * width + column + 1));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for item in chunk {
            query = query
                .bind(item.id.clone())
                .bind(item.campaign_id.clone())
                .bind(item.number)
                .bind(item.kind.clone())
                .bind(item.subject_id.clone())
                .bind(item.subject_label.clone())
                .bind(item.role.clone())
                .bind(item.granted_by.clone())
                .bind(item.granted_at)
                .bind(item.mfa.clone())
                .bind(item.account_created_at)
                .bind(item.last_login_at)
                .bind(item.customer_id.clone())
                .bind(item.customer_name.clone())
                .bind(item.scopes.clone())
                .bind(item.unused_scopes.clone())
                .bind(item.key_created_at)
                .bind(item.key_created_by.clone())
                .bind(item.last_used_at)
                .bind(item.requests_in_period)
                .bind(item.expires_at)
                .bind(item.flags.clone())
                .bind(item.reviewer_id.clone())
                .bind(item.reviewer_email.clone());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Filters for a campaign's items; empty means any.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    /// `staff_role`, `api_key` or empty.
    pub kind: String,
    /// `open` (undecided or failed), `decided`, `failed` or empty.
    pub status: String,
    /// A flag name, `any` (any flag) or empty.
    pub flag: String,
    /// Only items assigned to this staff id.
    pub reviewer_id: String,
    /// Part of the subject or customer name.
    pub query: String,
}

const ITEM_CONDITIONS: &str = "campaign_id = $1 \
     AND ($2 = '' OR kind = $2) \
     AND ($3 = '' OR ($3 = 'open' AND (decision IS NULL OR execution = 'failed')) \
          OR ($3 = 'decided' AND decision IS NOT NULL AND execution <> 'failed') \
          OR ($3 = 'failed' AND execution = 'failed')) \
     AND ($4 = '' OR ($4 = 'any' AND flags <> '') OR (',' || flags || ',') LIKE $5) \
     AND ($6 = '' OR reviewer_id = $6) \
     AND ($7 = '' OR LOWER(subject_label) LIKE $7 ESCAPE '\\' \
          OR LOWER(COALESCE(customer_name, '')) LIKE $7 ESCAPE '\\')";

/// A page of items matching `filter`, by number, and how many match in all.
pub async fn page(
    conn: &mut AnyConnection,
    campaign_id: &str,
    filter: &ItemFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Item>, i64), sqlx::Error> {
    let flag_pattern = format!("%,{},%", filter.flag);
    let query = crate::db::like_contains(&filter.query.to_lowercase());
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM review_items WHERE {ITEM_CONDITIONS}"
    ))
    .bind(campaign_id)
    .bind(&filter.kind)
    .bind(&filter.status)
    .bind(&filter.flag)
    .bind(&flag_pattern)
    .bind(&filter.reviewer_id)
    .bind(&query)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT {ITEM_COLUMNS} FROM review_items WHERE {ITEM_CONDITIONS} \
         ORDER BY number LIMIT $8 OFFSET $9"
    ))
    .bind(campaign_id)
    .bind(&filter.kind)
    .bind(&filter.status)
    .bind(&filter.flag)
    .bind(&flag_pattern)
    .bind(&filter.reviewer_id)
    .bind(&query)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?;
    let items = rows
        .iter()
        .map(Item::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, total))
}

pub async fn find_item(
    conn: &mut AnyConnection,
    campaign_id: &str,
    item_id: &str,
) -> Result<Option<Item>, sqlx::Error> {
    let sql = format!("SELECT {ITEM_COLUMNS} FROM review_items WHERE campaign_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(campaign_id)
        .bind(item_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(Item::from_row).transpose()
}

/// Items whose execution is `execution`, by number.
pub async fn items_in_execution(
    conn: &mut AnyConnection,
    campaign_id: &str,
    execution: Execution,
) -> Result<Vec<Item>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM review_items WHERE campaign_id = $1 AND execution = $2 \
         ORDER BY number"
    );
    let rows = sqlx::query(&sql)
        .bind(campaign_id)
        .bind(execution.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter().map(Item::from_row).collect()
}

/// A decision being recorded.
pub struct NewDecision<'a> {
    pub decision: Decision,
    pub drop_list: Option<&'a str>,
    pub justification: Option<&'a str>,
    pub decided_by: &'a str,
    pub execution: Execution,
}

/// Records a decision on an item that is still open (undecided, or its change failed) in a
/// campaign that is still open; false otherwise.
pub async fn record_decision(
    conn: &mut AnyConnection,
    item_id: &str,
    decision: &NewDecision<'_>,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE review_items SET decision = $1, drop_list = $2, justification = $3, \
         decided_at = $4, decided_by = $5, execution = $6, execution_error = NULL, \
         executed_at = NULL, verified_at = NULL \
         WHERE id = $7 AND (decision IS NULL OR execution = 'failed') \
         AND campaign_id IN (SELECT id FROM review_campaigns WHERE state = 'open')",
    )
    .bind(decision.decision.as_str())
    .bind(decision.drop_list)
    .bind(decision.justification)
    .bind(now)
    .bind(decision.decided_by)
    .bind(decision.execution.as_str())
    .bind(item_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records how carrying out an item's decision went.
pub async fn record_execution(
    conn: &mut AnyConnection,
    item_id: &str,
    execution: Execution,
    error: Option<&str>,
    executed_at: Option<Millis>,
    verified_at: Option<Millis>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE review_items SET execution = $1, execution_error = $2, executed_at = $3, \
         verified_at = $4 WHERE id = $5",
    )
    .bind(execution.as_str())
    .bind(error)
    .bind(executed_at)
    .bind(verified_at)
    .bind(item_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Assigns an undecided item to a reviewer.
pub async fn assign(
    conn: &mut AnyConnection,
    item_id: &str,
    reviewer_id: &str,
    reviewer_email: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE review_items SET reviewer_id = $1, reviewer_email = $2 \
         WHERE id = $3 AND decision IS NULL",
    )
    .bind(reviewer_id)
    .bind(reviewer_email)
    .bind(item_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Emails of reviewers who still have open items, sorted.
pub async fn reviewers_with_open_items(
    conn: &mut AnyConnection,
    campaign_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT reviewer_email FROM review_items WHERE campaign_id = $1 \
         AND reviewer_email IS NOT NULL AND (decision IS NULL OR execution = 'failed') \
         ORDER BY reviewer_email",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("reviewer_email")).collect()
}

/// Everyone who decided at least one item.
pub async fn deciders(
    conn: &mut AnyConnection,
    campaign_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT decided_by FROM review_items WHERE campaign_id = $1 \
         AND decided_by IS NOT NULL ORDER BY decided_by",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("decided_by")).collect()
}

/// Every item of a campaign, by number (the CSV export).
pub async fn all_items(
    conn: &mut AnyConnection,
    campaign_id: &str,
) -> Result<Vec<Item>, sqlx::Error> {
    let sql =
        format!("SELECT {ITEM_COLUMNS} FROM review_items WHERE campaign_id = $1 ORDER BY number");
    let rows = sqlx::query(&sql).bind(campaign_id).fetch_all(conn).await?;
    rows.iter().map(Item::from_row).collect()
}
