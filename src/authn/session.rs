//! Server-side portal sessions. The cookie holds a random 256-bit token; the database holds
//! only its SHA-256. A session passes through stages — `enrol` (must set up TOTP), `mfa` (must
//! enter a code) — before it becomes `full`, and gets a new token when it does.

use sqlx::{AnyConnection, Row};

use crate::clock::{MINUTE, Millis};
use crate::crypto::{random_token, sha256_hex};
use crate::db::{Db, flag};

/// How far a session has come through login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password accepted; the account has no second factor yet and must enrol one.
    Enrol,
    /// Password accepted; waiting for a TOTP or recovery code.
    Mfa,
    /// Both factors verified.
    Full,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Enrol => "enrol",
            Stage::Mfa => "mfa",
            Stage::Full => "full",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "enrol" => Some(Stage::Enrol),
            "mfa" => Some(Stage::Mfa),
            "full" => Some(Stage::Full),
            _ => None,
        }
    }
}

/// A session that lasts only long enough to finish login.
pub const PENDING_LIFETIME: Millis = 15 * MINUTE;
/// `last_seen_at` is written at most this often, to keep reads cheap.
const TOUCH_EVERY: Millis = MINUTE;

/// A freshly created session: the cookie value (never stored) and the public id.
pub struct Issued {
    pub token: String,
    pub id: String,
}

/// Where a session was started from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Creates a session and returns its token.
pub async fn create(
    conn: &mut AnyConnection,
    staff_id: &str,
    stage: Stage,
    now: Millis,
    expires_at: Millis,
    origin: &Origin,
) -> Result<Issued, sqlx::Error> {
    let token = random_token(32);
    let id = uuid::Uuid::new_v4().to_string();
    let user_agent = origin
        .user_agent
        .as_deref()
        .map(|ua| ua.chars().take(200).collect::<String>());
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, staff_id, stage, created_at, last_seen_at, \
         expires_at, client_ip, user_agent) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(sha256_hex(token.as_bytes()))
    .bind(staff_id)
    .bind(stage.as_str())
    .bind(now)
    .bind(expires_at)
    .bind(&origin.client_ip)
    .bind(user_agent)
    .execute(conn)
    .await?;
    Ok(Issued { token, id })
}

/// Moves a session to `stage` under a new token (the old cookie stops working).
pub async fn advance(
    conn: &mut AnyConnection,
    session_id: &str,
    stage: Stage,
    now: Millis,
    expires_at: Millis,
) -> Result<String, sqlx::Error> {
    let token = random_token(32);
    sqlx::query(
        "UPDATE sessions SET token_hash = $1, stage = $2, last_seen_at = $3, expires_at = $4, \
         pending_totp_enc = NULL WHERE id = $5",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(stage.as_str())
    .bind(now)
    .bind(expires_at)
    .bind(session_id)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Stores the TOTP secret being enrolled (sealed) on the session until it is confirmed.
pub async fn set_pending_totp(
    conn: &mut AnyConnection,
    session_id: &str,
    sealed: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET pending_totp_enc = $1 WHERE id = $2")
        .bind(sealed)
        .bind(session_id)
        .execute(conn)
        .await
        .map(|_| ())
}

/// A valid session and the account behind it.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub id: String,
    pub stage: Stage,
    pub staff_id: String,
    pub email: String,
    pub display_name: String,
    pub totp_enabled: bool,
    pub pending_totp_enc: Option<String>,
    pub roles: Vec<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// `password` or `sso` (`None` for sessions from before single sign-on).
    pub auth_method: Option<String>,
    /// How the second factor was satisfied: `local_totp`, `recovery_code` or `idp_amr`.
    pub mfa_method: Option<String>,
}

/// Records how a session began (`password` or `sso`).
pub async fn set_auth_method(
    conn: &mut AnyConnection,
    session_id: &str,
    method: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET auth_method = $1 WHERE id = $2")
        .bind(method)
        .bind(session_id)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Records how the session's second factor was satisfied, on the session and as the
/// account's latest method (the staff list shows it).
pub async fn record_mfa(
    conn: &mut AnyConnection,
    session_id: &str,
    staff_id: &str,
    method: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET mfa_method = $1 WHERE id = $2")
        .bind(method)
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE staff SET last_mfa_method = $1 WHERE id = $2")
        .bind(method)
        .bind(staff_id)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Finds the session for a cookie token. Expired, idle, or disabled-account sessions are
/// deleted and reported as absent.
pub async fn lookup(
    db: &Db,
    token: &str,
    now: Millis,
    idle_timeout: Millis,
) -> Result<Option<ActiveSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.id, s.stage, s.staff_id, s.last_seen_at, s.expires_at, s.created_at, \
         s.pending_totp_enc, s.auth_method, s.mfa_method, st.email, st.display_name, st.totp_enabled, st.disabled \
         FROM sessions s JOIN staff st ON st.id = s.staff_id WHERE s.token_hash = $1",
    )
    .bind(sha256_hex(token.as_bytes()))
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get("id")?;
    let last_seen_at: Millis = row.try_get("last_seen_at")?;
    let expires_at: Millis = row.try_get("expires_at")?;
    let disabled = flag(row.try_get("disabled")?);
    let stage = Stage::parse(&row.try_get::<String, _>("stage")?);
    let idle = stage == Some(Stage::Full) && now - last_seen_at >= idle_timeout;
    let Some(stage) = stage.filter(|_| !disabled && !idle && now < expires_at) else {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(&id)
            .execute(&db.pool)
            .await?;
        return Ok(None);
    };
    if now - last_seen_at >= TOUCH_EVERY {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&db.pool)
            .await?;
    }
    let staff_id: String = row.try_get("staff_id")?;
    let roles = crate::staff::store::roles_of(&db.pool, &staff_id).await?;
    Ok(Some(ActiveSession {
        id,
        stage,
        staff_id,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        totp_enabled: flag(row.try_get("totp_enabled")?),
        pending_totp_enc: row.try_get("pending_totp_enc")?,
        roles,
        created_at: row.try_get("created_at")?,
        expires_at,
        auth_method: row.try_get("auth_method")?,
        mfa_method: row.try_get("mfa_method")?,
    }))
}

/// Ends one session of one account; returns whether it existed.
pub async fn end(
    conn: &mut AnyConnection,
    staff_id: &str,
    session_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE id = $1 AND staff_id = $2")
        .bind(session_id)
        .bind(staff_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every session of an account (disabled, lost a role, MFA reset, password changed).
pub async fn end_all(conn: &mut AnyConnection, staff_id: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE staff_id = $1")
        .bind(staff_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Ends every session of an account except `keep`.
pub async fn end_others(
    conn: &mut AnyConnection,
    staff_id: &str,
    keep: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE staff_id = $1 AND id <> $2")
        .bind(staff_id)
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// One row of the "my sessions" page.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: String,
    pub stage: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub expires_at: Millis,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The live sessions of one account, newest first.
pub async fn list_for(
    db: &Db,
    staff_id: &str,
    now: Millis,
) -> Result<Vec<SessionSummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, stage, created_at, last_seen_at, expires_at, client_ip, user_agent \
         FROM sessions WHERE staff_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
    )
    .bind(staff_id)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionSummary {
                id: r.try_get("id")?,
                stage: r.try_get("stage")?,
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
                expires_at: r.try_get("expires_at")?,
                client_ip: r.try_get("client_ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect()
}
