//! SQL for the rotation and its overrides.

use chrono::NaiveDate;
use sqlx::{AnyConnection, Row};

use super::model::{Handoff, Override, Rotation, parse_zone};
use crate::clock::Millis;

/// The one rotation's row id.
const ROTATION_ID: &str = "default";

/// The stored rotation, if one was configured.
pub async fn rotation(conn: &mut AnyConnection) -> Result<Option<Rotation>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT members, handoff_weekday, handoff_minutes, timezone, escalation_staff_id, \
         anchor_date FROM oncall_rotation WHERE id = $1",
    )
    .bind(ROTATION_ID)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let corrupt = |what: &str| sqlx::Error::Decode(format!("on-call rotation: bad {what}").into());
    let members: String = row.try_get("members")?;
    let members: Vec<String> =
        serde_json::from_str(&members).map_err(|_| corrupt("member list"))?;
    let weekday: i32 = row.try_get("handoff_weekday")?;
    let minutes: i32 = row.try_get("handoff_minutes")?;
    let handoff = Handoff::from_stored(i64::from(weekday), i64::from(minutes))
        .ok_or_else(|| corrupt("handoff"))?;
    let zone: String = row.try_get("timezone")?;
    let zone = parse_zone(&zone).map_err(|_| corrupt("time zone"))?;
    let anchor: String = row.try_get("anchor_date")?;
    let anchor = NaiveDate::parse_from_str(&anchor, "%Y-%m-%d").map_err(|_| corrupt("anchor"))?;
    Ok(Some(Rotation {
        members,
        handoff,
        zone,
        escalation: row.try_get("escalation_staff_id")?,
        anchor,
    }))
}

/// Replaces the rotation.
pub async fn save_rotation(
    conn: &mut AnyConnection,
    rotation: &Rotation,
    actor: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    let members =
        serde_json::to_string(&rotation.members).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO oncall_rotation (id, members, handoff_weekday, handoff_minutes, timezone, \
           escalation_staff_id, anchor_date, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (id) DO UPDATE SET members = $2, handoff_weekday = $3, \
           handoff_minutes = $4, timezone = $5, escalation_staff_id = $6, anchor_date = $7, \
           updated_at = $8, updated_by = $9",
    )
    .bind(ROTATION_ID)
    .bind(members)
    .bind(i32::try_from(rotation.handoff.weekday_number()).unwrap_or(0))
    .bind(i32::try_from(rotation.handoff.minutes()).unwrap_or(0))
    .bind(rotation.zone.name())
    .bind(&rotation.escalation)
    .bind(rotation.anchor.format("%Y-%m-%d").to_string())
    .bind(now)
    .bind(actor)
    .execute(conn)
    .await
    .map(|_| ())
}

/// An override with the reason and who made it, for listing.
#[derive(Debug, Clone)]
pub struct OverrideRecord {
    pub over: Override,
    pub reason: String,
    pub created_by: String,
}

/// Overrides that have not ended at `now`, soonest first.
pub async fn current_overrides(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<Vec<OverrideRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, staff_id, from_at, to_at, reason, created_at, created_by \
         FROM oncall_overrides WHERE to_at > $1 ORDER BY from_at, created_at LIMIT 500",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OverrideRecord {
                over: Override {
                    id: row.try_get("id")?,
                    staff_id: row.try_get("staff_id")?,
                    from_at: row.try_get("from_at")?,
                    to_at: row.try_get("to_at")?,
                    created_at: row.try_get("created_at")?,
                },
                reason: row.try_get("reason")?,
                created_by: row.try_get("created_by")?,
            })
        })
        .collect()
}

/// Stores an override and returns its id.
pub async fn insert_override(
    conn: &mut AnyConnection,
    staff_id: &str,
    from_at: Millis,
    to_at: Millis,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO oncall_overrides (id, staff_id, from_at, to_at, reason, created_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(staff_id)
    .bind(from_at)
    .bind(to_at)
    .bind(reason)
    .bind(now)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Removes an override; returns the staff id it covered, if it existed.
pub async fn delete_override(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM oncall_overrides WHERE id = $1 RETURNING staff_id")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get("staff_id")).transpose()
}
