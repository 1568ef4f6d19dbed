//! SQL for customers.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{CustomerName, RetentionDays};
use crate::clock::Millis;
use crate::db::Db;
use crate::keys::format::KeyEnv;
use crate::staff::model::Email;

/// A stored customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub contact_email: String,
    pub environment: String,
    pub retention_days: i64,
    pub state: String,
    pub version: i64,
    pub created_at: Millis,
    pub created_by: String,
}

impl Customer {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            contact_email: row.try_get("contact_email")?,
            environment: row.try_get("environment")?,
            retention_days: i64::from(row.try_get::<i32, _>("retention_days")?),
            state: row.try_get("state")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        })
    }

    pub fn env(&self) -> KeyEnv {
        if self.environment == "test" {
            KeyEnv::Test
        } else {
            KeyEnv::Live
        }
    }

    pub fn is_active(&self) -> bool {
        self.state == "active"
    }
}

const COLUMNS: &str =
    "id, name, contact_email, environment, retention_days, state, version, created_at, created_by";

pub async fn insert(
    conn: &mut AnyConnection,
    name: &CustomerName,
    contact: &Email,
    env: KeyEnv,
    retention: RetentionDays,
    created_by: &str,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO customers (id, name, contact_email, environment, retention_days, state, \
         created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $6)",
    )
    .bind(&id)
    .bind(name.as_str())
    .bind(contact.as_str())
    .bind(env.as_str())
    .bind(i32::try_from(retention.days()).unwrap_or(0))
    .bind(now)
    .bind(created_by)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn find<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<Customer>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(executor).await?;
    row.as_ref().map(Customer::from_row).transpose()
}

pub async fn find_by_name<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    name: &str,
) -> Result<Option<Customer>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE name = $1");
    let row = sqlx::query(&sql)
        .bind(name.trim())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(Customer::from_row).transpose()
}

/// Changes retention and state if the version still matches; false means someone else
/// changed the customer first.
pub async fn update_settings(
    conn: &mut AnyConnection,
    id: &str,
    expected_version: i64,
    retention: RetentionDays,
    active: bool,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE customers SET retention_days = $1, state = $2, version = version + 1, \
         updated_at = $3 WHERE id = $4 AND version = $5",
    )
    .bind(i32::try_from(retention.days()).unwrap_or(0))
    .bind(if active { "active" } else { "suspended" })
    .bind(now)
    .bind(id)
    .bind(expected_version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One row of the customer list.
#[derive(Debug, Clone)]
pub struct CustomerSummary {
    pub customer: Customer,
    pub active_keys: i64,
    pub images: i64,
}

/// A page of customers whose name or contact matches `query`, and the total.
pub async fn list(
    db: &Db,
    query: &str,
    offset: i64,
    limit: i64,
    now: Millis,
) -> Result<(Vec<CustomerSummary>, i64), sqlx::Error> {
    let pattern = crate::db::like_contains(query);
    let condition =
        "($1 = '' OR LOWER(name) LIKE $1 ESCAPE '\\' OR LOWER(contact_email) LIKE $1 ESCAPE '\\')";
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM customers WHERE {condition}"
    ))
    .bind(&pattern)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}, \
           (SELECT COUNT(*) FROM api_keys k WHERE k.customer_id = customers.id \
              AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $4)) AS active_keys, \
           (SELECT COUNT(*) FROM images i WHERE i.customer_id = customers.id) AS images \
         FROM customers WHERE {condition} ORDER BY name LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let page = rows
        .iter()
        .map(|row| {
            Ok(CustomerSummary {
                customer: Customer::from_row(row)?,
                active_keys: row.try_get("active_keys")?,
                images: row.try_get("images")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((page, total))
}
