//! The assessment questionnaire: questions with weights that operators add, reword,
//! reweigh and retire. Assessments copy the question text and weight into their answers,
//! so editing the questionnaire never changes a past assessment.

use sqlx::{AnyConnection, Row};

use super::VendorError;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Question {
    pub id: String,
    pub position: i64,
    pub text: String,
    pub weight: i64,
    pub active: bool,
}

/// Every question, active ones first, by position.
pub async fn list(
    conn: &mut AnyConnection,
    active_only: bool,
) -> Result<Vec<Question>, sqlx::Error> {
    let filter = if active_only { "WHERE active = 1" } else { "" };
    sqlx::query(&format!(
        "SELECT id, position, text, weight, active FROM vendor_questions {filter} \
         ORDER BY active DESC, position, id"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Question {
            id: r.try_get("id")?,
            position: i64::from(r.try_get::<i32, _>("position")?),
            text: r.try_get("text")?,
            weight: i64::from(r.try_get::<i32, _>("weight")?),
            active: r.try_get::<i32, _>("active")? == 1,
        })
    })
    .collect()
}

fn check(text: &str, weight: i64) -> Result<(), VendorError> {
    let n = text.trim().chars().count();
    if !(5..=500).contains(&n) {
        return Err(VendorError::Invalid(
            "A question must be 5 to 500 characters.".into(),
        ));
    }
    if !(1..=10).contains(&weight) {
        return Err(VendorError::Invalid("A weight must be 1 to 10.".into()));
    }
    Ok(())
}

/// Adds a question at the end of the questionnaire.
pub async fn add(
    conn: &mut AnyConnection,
    text: &str,
    weight: i64,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<String, VendorError> {
    check(text, weight)?;
    let position: i32 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(position), 0) + 1 AS INTEGER) FROM vendor_questions",
    )
    .fetch_one(&mut *conn)
    .await?;
    let id = format!("q-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(
        "INSERT INTO vendor_questions (id, position, text, weight, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $5)",
    )
    .bind(&id)
    .bind(position)
    .bind(text.trim())
    .bind(i32::try_from(weight).unwrap_or(1))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "vendor.question_add",
            format!("vendor-question:{id}"),
        )
        .detail("weight", weight),
    )
    .await?;
    Ok(id)
}

/// Rewords, reweighs, retires or restores a question.
#[allow(clippy::too_many_arguments)]
pub async fn edit(
    conn: &mut AnyConnection,
    id: &str,
    text: &str,
    weight: i64,
    active: bool,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), VendorError> {
    check(text, weight)?;
    let done = sqlx::query(
        "UPDATE vendor_questions SET text = $1, weight = $2, active = $3, updated_at = $4 \
         WHERE id = $5",
    )
    .bind(text.trim())
    .bind(i32::try_from(weight).unwrap_or(1))
    .bind(i32::from(active))
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(VendorError::NotFound);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "vendor.question_edit",
            format!("vendor-question:{id}"),
        )
        .detail("weight", weight)
        .detail("active", active),
    )
    .await?;
    Ok(())
}
