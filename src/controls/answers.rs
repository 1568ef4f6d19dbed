//! The security-questionnaire answer library: reusable answers, each citing the controls (and
//! describing the evidence) behind it, exported as CSV to paste into a customer's
//! questionnaire. An answer is stale while any control it cites is failing. Every change is
//! audited.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::catalogue;
use super::model::ControlState;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;

pub const MAX_QUESTION_CHARS: usize = 1_000;
pub const MAX_ANSWER_CHARS: usize = 5_000;
pub const MAX_EVIDENCE_CHARS: usize = 2_000;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: String,
    pub number: i64,
    pub question: String,
    pub answer: String,
    pub control_ids: Vec<String>,
    pub evidence: String,
    pub version: i64,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_by: String,
    pub updated_at: Millis,
}

impl Answer {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let ids: String = row.try_get("control_ids")?;
        Ok(Self {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            question: row.try_get("question")?,
            answer: row.try_get("answer")?,
            control_ids: ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            evidence: row.try_get("evidence")?,
            version: row.try_get("version")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_by: row.try_get("updated_by")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// The cited controls that are failing now, given the latest state of each control.
    pub fn failing_controls(&self, states: &BTreeMap<String, ControlState>) -> Vec<String> {
        self.control_ids
            .iter()
            .filter(|id| states.get(*id) == Some(&ControlState::Failing))
            .cloned()
            .collect()
    }
}

/// What a person typed, before it is checked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AnswerInput {
    #[serde(default)]
    pub question: String,
    #[serde(default)]
    pub answer: String,
    /// Control ids separated by commas or spaces, e.g. `MFA-1, RBAC-1`.
    #[serde(default)]
    pub controls: String,
    #[serde(default)]
    pub evidence: String,
}

/// A checked answer: texts within their limits, every cited control in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAnswer {
    pub question: String,
    pub answer: String,
    pub control_ids: Vec<String>,
    pub evidence: String,
}

impl ValidAnswer {
    pub fn parse(input: &AnswerInput) -> Result<Self, String> {
        let question = input.question.trim();
        let answer = input.answer.trim();
        let evidence = input.evidence.trim();
        if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
            return Err(format!(
                "The question must be 1 to {MAX_QUESTION_CHARS} characters."
            ));
        }
        if answer.is_empty() || answer.chars().count() > MAX_ANSWER_CHARS {
            return Err(format!(
                "The answer must be 1 to {MAX_ANSWER_CHARS} characters."
            ));
        }
        if evidence.chars().count() > MAX_EVIDENCE_CHARS {
            return Err(format!(
                "The evidence description must be at most {MAX_EVIDENCE_CHARS} characters."
            ));
        }
        let mut control_ids: Vec<String> = Vec::new();
        for raw in input
            .controls
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let id = raw.to_ascii_uppercase();
            if catalogue::find(&id).is_none() {
                return Err(format!(
                    "There is no control {}; controls: {}.",
                    raw.chars().take(20).collect::<String>(),
                    catalogue::CATALOGUE.map(|c| c.id).join(", ")
                ));
            }
            if !control_ids.contains(&id) {
                control_ids.push(id);
            }
        }
        if control_ids.is_empty() {
            return Err(
                "Cite at least one control, so the answer goes stale when it fails.".to_owned(),
            );
        }
        Ok(Self {
            question: question.to_owned(),
            answer: answer.to_owned(),
            control_ids,
            evidence: evidence.to_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("{0}")]
    Invalid(String),
    #[error("answer not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<AnswerError> for crate::error::AppError {
    fn from(err: AnswerError) -> Self {
        match err {
            AnswerError::Invalid(m) => Self::BadRequest(m),
            AnswerError::NotFound => Self::NotFound,
            AnswerError::Conflict(m) => Self::Conflict(m),
            AnswerError::Db(e) => e.into(),
        }
    }
}

const COLUMNS: &str = "id, number, question, answer, control_ids, evidence, version, \
                       created_by, created_at, updated_by, updated_at";

/// Adds an answer.
pub async fn create(
    conn: &mut AnyConnection,
    input: &ValidAnswer,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Answer, AnswerError> {
    let number: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM questionnaire_answers")
            .fetch_one(&mut *conn)
            .await?;
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO questionnaire_answers (id, number, question, answer, control_ids, evidence, \
         version, created_by, created_at, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $7, $8)",
    )
    .bind(&id)
    .bind(number)
    .bind(&input.question)
    .bind(&input.answer)
    .bind(input.control_ids.join(","))
    .bind(&input.evidence)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "answer.create", format!("answer:{id}"))
            .detail("number", number)
            .detail("controls", input.control_ids.join(",")),
    )
    .await?;
    find(conn, &id).await?.ok_or(AnswerError::NotFound)
}

/// Changes an answer last seen at `version`.
pub async fn update(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    input: &ValidAnswer,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Answer, AnswerError> {
    let before = find(conn, id).await?.ok_or(AnswerError::NotFound)?;
    let changed = sqlx::query(
        "UPDATE questionnaire_answers SET question = $1, answer = $2, control_ids = $3, \
         evidence = $4, version = version + 1, updated_by = $5, updated_at = $6 \
         WHERE id = $7 AND version = $8 AND deleted_at IS NULL",
    )
    .bind(&input.question)
    .bind(&input.answer)
    .bind(input.control_ids.join(","))
    .bind(&input.evidence)
    .bind(actor)
    .bind(now)
    .bind(id)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(AnswerError::Conflict(format!(
            "Answer Q-{} was changed by someone else meanwhile. Nothing was changed; reload \
             and try again.",
            before.number
        )));
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "answer.update", format!("answer:{id}"))
            .detail("number", before.number)
            .detail("controls_before", before.control_ids.join(","))
            .detail("controls", input.control_ids.join(","))
            .detail("question_changed", before.question != input.question)
            .detail("answer_changed", before.answer != input.answer),
    )
    .await?;
    find(conn, id).await?.ok_or(AnswerError::NotFound)
}

/// Removes an answer from the library (the row is kept, marked deleted).
pub async fn delete(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), AnswerError> {
    let before = find(conn, id).await?.ok_or(AnswerError::NotFound)?;
    let changed = sqlx::query(
        "UPDATE questionnaire_answers SET deleted_at = $1, updated_by = $2, updated_at = $1, \
         version = version + 1 WHERE id = $3 AND version = $4 AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(actor)
    .bind(id)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(AnswerError::Conflict(format!(
            "Answer Q-{} was changed by someone else meanwhile. Nothing was deleted.",
            before.number
        )));
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "answer.delete", format!("answer:{id}"))
            .detail("number", before.number),
    )
    .await?;
    Ok(())
}

/// An answer still in the library.
pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Answer>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM questionnaire_answers WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(Answer::from_row)
    .transpose()
}

/// Answers by number, optionally only those whose question or answer contains `search`
/// (case-insensitive); with the total for paging. `limit` 0 means all.
pub async fn list(
    conn: &mut AnyConnection,
    search: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Answer>, i64), sqlx::Error> {
    let pattern = format!(
        "%{}%",
        search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let filter = "deleted_at IS NULL AND ($1 = '%%' OR LOWER(question) LIKE $1 ESCAPE '\\' \
                  OR LOWER(answer) LIKE $1 ESCAPE '\\')";
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM questionnaire_answers WHERE {filter}"
    ))
    .bind(&pattern)
    .fetch_one(&mut *conn)
    .await?;
    let limit = if limit <= 0 { i64::MAX } else { limit };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM questionnaire_answers WHERE {filter} ORDER BY number \
         LIMIT $2 OFFSET $3"
    ))
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await?;
    let answers = rows
        .iter()
        .map(Answer::from_row)
        .collect::<Result<_, _>>()?;
    Ok((answers, total))
}

/// The latest state of every evaluated control.
pub async fn control_states(
    db: &crate::db::Db,
) -> Result<BTreeMap<String, ControlState>, sqlx::Error> {
    Ok(super::store::latest_all(db)
        .await?
        .into_iter()
        .map(|e| (e.control_id, e.state))
        .collect())
}

/// The library as CSV (RFC 4180, CRLF line ends), every cell quoted as needed and cells a
/// spreadsheet would run as a formula neutralised.
pub fn csv(answers: &[Answer], states: &BTreeMap<String, ControlState>) -> String {
    use crate::reviews::model::csv_cell;
    let mut out = String::from(
        "number,question,answer,controls,control_states,evidence,stale,updated_at\r\n",
    );
    for a in answers {
        let failing = a.failing_controls(states);
        let control_states: Vec<String> = a
            .control_ids
            .iter()
            .map(|id| {
                format!(
                    "{id}: {}",
                    states.get(id).map_or("not evaluated", |s| s.label())
                )
            })
            .collect();
        let stale = if failing.is_empty() {
            "no".to_owned()
        } else {
            format!("STALE: {} failing", failing.join(", "))
        };
        let cells = [
            format!("Q-{}", a.number),
            a.question.clone(),
            a.answer.clone(),
            a.control_ids.join(", "),
            control_states.join("; "),
            a.evidence.clone(),
            stale,
            crate::clock::format_ms(a.updated_at),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(controls: &str) -> AnswerInput {
        AnswerInput {
            question: "Do you enforce MFA?".into(),
            answer: "Yes.".into(),
            controls: controls.into(),
            evidence: String::new(),
        }
    }

    #[test]
    fn cited_controls_must_exist_and_are_normalised() {
        let ok = ValidAnswer::parse(&input("mfa-1, RBAC-1 MFA-1")).unwrap();
        assert_eq!(ok.control_ids, vec!["MFA-1", "RBAC-1"]);
        assert!(ValidAnswer::parse(&input("MFA-9")).is_err());
        assert!(ValidAnswer::parse(&input("")).is_err());
    }

    #[test]
    fn csv_quotes_and_neutralises_formulas_and_marks_stale_answers() {
        let answer = Answer {
            id: "a".into(),
            number: 1,
            question: "=HYPERLINK(\"http://evil\")".into(),
            answer: "Yes, \"always\",\nwith TOTP".into(),
            control_ids: vec!["MFA-1".into(), "AUD-1".into()],
            evidence: "@SUM(1)".into(),
            version: 1,
            created_by: "t".into(),
            created_at: 0,
            updated_by: "t".into(),
            updated_at: 0,
        };
        let states = BTreeMap::from([
            ("MFA-1".to_owned(), ControlState::Failing),
            ("AUD-1".to_owned(), ControlState::Passing),
        ]);
        let text = csv(&[answer], &states);
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""),
            "{text}"
        );
        assert!(text.contains("\"Yes, \"\"always\"\",\nwith TOTP\""));
        assert!(text.contains("'@SUM(1)"));
        assert!(text.contains("STALE: MFA-1 failing"));
        assert!(text.contains("MFA-1: failing; AUD-1: passing"));
    }
}
