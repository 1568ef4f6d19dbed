//! SQL for staff accounts and their role grants.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::{DisplayName, Email, Role};
use crate::clock::Millis;
use crate::db::{Db, flag};

/// A stored staff account.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub totp_secret_enc: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: i64,
    pub disabled: bool,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_login_at: Option<Millis>,
    /// How the last full login's second factor was satisfied (`local_totp`, `idp_amr`, …).
    pub last_mfa_method: Option<String>,
}

const COLUMNS: &str = "id, email, display_name, password_hash, totp_secret_enc, totp_enabled, \
     totp_last_step, disabled, version, created_at, updated_at, last_login_at, last_mfa_method";

impl Staff {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            password_hash: row.try_get("password_hash")?,
            totp_secret_enc: row.try_get("totp_secret_enc")?,
            totp_enabled: flag(row.try_get("totp_enabled")?),
            totp_last_step: row.try_get("totp_last_step")?,
            disabled: flag(row.try_get("disabled")?),
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            last_login_at: row.try_get("last_login_at")?,
            last_mfa_method: row.try_get("last_mfa_method")?,
        })
    }
}

pub async fn find_by_email<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    email: &str,
) -> Result<Option<Staff>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM staff WHERE email = $1");
    let row = sqlx::query(&sql)
        .bind(email)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(Staff::from_row).transpose()
}

pub async fn find<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<Staff>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM staff WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(executor).await?;
    row.as_ref().map(Staff::from_row).transpose()
}

/// Role names granted to an account, sorted.
pub async fn roles_of<'c, E: Executor<'c, Database = Any>>(
    executor: E,
    staff_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT role FROM staff_roles WHERE staff_id = $1 ORDER BY role")
        .bind(staff_id)
        .fetch_all(executor)
        .await?;
    rows.iter().map(|r| r.try_get("role")).collect()
}

/// True once any staff account exists (first-run setup is then closed).
pub async fn any_exists(db: &Db) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM staff")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Inserts an account; `password_hash` is `None` for an invitation not yet accepted.
pub async fn insert(
    conn: &mut AnyConnection,
    email: &Email,
    display_name: &DisplayName,
    password_hash: Option<&str>,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO staff (id, email, display_name, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(email.as_str())
    .bind(display_name.as_str())
    .bind(password_hash)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Grants a role; returns false when the account already had it.
pub async fn grant_role(
    conn: &mut AnyConnection,
    staff_id: &str,
    role: Role,
    granted_by: &str,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO staff_roles (staff_id, role, granted_by, granted_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (staff_id, role) DO NOTHING",
    )
    .bind(staff_id)
    .bind(role.as_str())
    .bind(granted_by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes a role; returns false when the account did not have it.
pub async fn revoke_role(
    conn: &mut AnyConnection,
    staff_id: &str,
    role: Role,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM staff_roles WHERE staff_id = $1 AND role = $2")
        .bind(staff_id)
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Enabled accounts holding the admin role, counted under a lock that every change to the
/// admin set takes, held until the transaction ends. On PostgreSQL (READ COMMITTED) two
/// admins removing each other at once would otherwise both still see the other; with the lock
/// the second count waits for the first change to commit and sees it. SQLite transactions are
/// already serialised (`BEGIN IMMEDIATE`).
pub async fn count_active_admins(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    crate::db::lock_until_commit(conn, "admins").await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM staff_roles r JOIN staff s ON s.id = r.staff_id \
         WHERE r.role = 'admin' AND s.disabled = 0",
    )
    .fetch_one(conn)
    .await?;
    row.try_get("n")
}

/// Bumps the version if it still equals `expected`: the optimistic lock that turns a
/// concurrent edit into a clear "changed by someone else" instead of a lost update.
pub async fn claim_version(
    conn: &mut AnyConnection,
    staff_id: &str,
    expected: i64,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE staff SET version = version + 1, updated_at = $1 WHERE id = $2 AND version = $3",
    )
    .bind(now)
    .bind(staff_id)
    .bind(expected)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_disabled(
    conn: &mut AnyConnection,
    staff_id: &str,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE staff SET disabled = $1 WHERE id = $2")
        .bind(i32::from(disabled))
        .bind(staff_id)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn set_password(
    conn: &mut AnyConnection,
    staff_id: &str,
    password_hash: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE staff SET password_hash = $1, updated_at = $2, version = version + 1 WHERE id = $3",
    )
    .bind(password_hash)
    .bind(now)
    .bind(staff_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Turns TOTP on with a confirmed (sealed) secret; `first_step` is the step just used.
pub async fn enable_totp(
    conn: &mut AnyConnection,
    staff_id: &str,
    sealed_secret: &str,
    first_step: i64,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE staff SET totp_secret_enc = $1, totp_enabled = 1, totp_last_step = $2, \
         updated_at = $3, version = version + 1 WHERE id = $4",
    )
    .bind(sealed_secret)
    .bind(first_step)
    .bind(now)
    .bind(staff_id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Removes the second factor and the recovery codes; the next login must enrol again.
pub async fn clear_totp(
    conn: &mut AnyConnection,
    staff_id: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE staff SET totp_secret_enc = NULL, totp_enabled = 0, updated_at = $1, \
         version = version + 1 WHERE id = $2",
    )
    .bind(now)
    .bind(staff_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Records `step` as used if it is later than the last used one. False means replay.
pub async fn consume_totp_step(
    conn: &mut AnyConnection,
    staff_id: &str,
    step: i64,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(staff_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn record_login(
    conn: &mut AnyConnection,
    staff_id: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE staff SET last_login_at = $1 WHERE id = $2")
        .bind(now)
        .bind(staff_id)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Filters for the staff list; empty means any.
#[derive(Debug, Clone, Default)]
pub struct StaffFilter {
    pub query: String,
    pub role: String,
    /// `active`, `disabled`, `invited` or empty.
    pub state: String,
    pub offset: i64,
    pub limit: i64,
}

/// One row of the staff list.
#[derive(Debug, Clone)]
pub struct StaffSummary {
    pub staff: Staff,
    pub roles: Vec<String>,
}

/// A page of accounts matching `filter`, and how many match in all.
pub async fn list(db: &Db, filter: &StaffFilter) -> Result<(Vec<StaffSummary>, i64), sqlx::Error> {
    let pattern = crate::db::like_contains(&filter.query);
    let conditions = "($1 = '' OR LOWER(email) LIKE $1 ESCAPE '\\' \
                          OR LOWER(display_name) LIKE $1 ESCAPE '\\') \
         AND ($2 = '' OR id IN (SELECT staff_id FROM staff_roles WHERE role = $2)) \
         AND ($3 = '' OR ($3 = 'disabled' AND disabled = 1) \
              OR ($3 = 'invited' AND disabled = 0 AND password_hash IS NULL) \
              OR ($3 = 'active' AND disabled = 0 AND password_hash IS NOT NULL))";
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM staff WHERE {conditions}"
    ))
    .bind(&pattern)
    .bind(&filter.role)
    .bind(&filter.state)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM staff WHERE {conditions} ORDER BY email LIMIT $4 OFFSET $5"
    ))
    .bind(&pattern)
    .bind(&filter.role)
    .bind(&filter.state)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(&db.pool)
    .await?;
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        let staff = Staff::from_row(row)?;
        let roles = roles_of(&db.pool, &staff.id).await?;
        page.push(StaffSummary { staff, roles });
    }
    Ok((page, total))
}

/// Counts for the dashboard: enabled accounts, and those with a second factor (TOTP, or
/// MFA asserted by the identity provider at their last login).
pub async fn mfa_counts(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN totp_enabled = 1 \
         OR last_mfa_method = 'idp_amr' THEN 1 ELSE 0 END), 0) AS with_mfa \
         FROM staff WHERE disabled = 0",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((row.try_get("total")?, row.try_get("with_mfa")?))
}

/// Email addresses of enabled staff holding `role`, e.g. who hears about vendor escalations.
pub async fn emails_with_role(
    conn: &mut sqlx::AnyConnection,
    role: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.email FROM staff s JOIN staff_roles r ON r.staff_id = s.id \
         WHERE r.role = $1 AND s.disabled = 0 ORDER BY s.email",
    )
    .bind(role)
    .fetch_all(conn)
    .await
}
