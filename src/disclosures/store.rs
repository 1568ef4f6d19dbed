//! SQL for the disclosure inbox. Deadlines are read from `sla_clocks`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::State;
use crate::clock::Millis;
use crate::findings::model::Severity;

/// A stored report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disclosure {
    pub id: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub asset: String,
    pub steps: String,
    pub impact: String,
    pub cvss_vector: String,
    pub reporter_name: String,
    #[serde(skip)]
    pub reporter_email: String,
    pub credit_public: bool,
    pub state: State,
    /// `None` until staff rate it.
    pub severity: Option<Severity>,
    pub assignee_id: Option<String>,
    pub duplicate_of: Option<String>,
    pub finding_id: Option<String>,
    pub incident_id: Option<String>,
    pub received_at: Millis,
    /// When it was accepted as a valid vulnerability (the critical-fix clock counts from here).
    pub confirmed_at: Option<Millis>,
    pub version: i64,
    pub updated_at: Millis,
}

impl Disclosure {
    /// `DSC-7`.
    pub fn label(&self) -> String {
        format!("DSC-{}", self.number)
    }

    pub fn severity_str(&self) -> &'static str {
        self.severity.map_or("unrated", Severity::as_str)
    }
}

const COLUMNS: &str = "d.id, d.number, d.title, d.description, d.asset, d.steps, d.impact, \
     d.cvss_vector, d.reporter_name, d.reporter_email, d.credit_public, d.status, d.severity, \
     d.assignee_id, d.duplicate_of, d.finding_id, d.incident_id, d.received_at, d.confirmed_at, \
     d.version, d.updated_at";

fn from_row(row: &AnyRow) -> Result<Disclosure, sqlx::Error> {
    let bad = |what: &str, e: String| sqlx::Error::Decode(format!("disclosure {what}: {e}").into());
    let state: String = row.try_get("status")?;
    let severity: String = row.try_get("severity")?;
    Ok(Disclosure {
        id: row.try_get("id")?,
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        asset: row.try_get("asset")?,
        steps: row.try_get("steps")?,
        impact: row.try_get("impact")?,
        cvss_vector: row.try_get("cvss_vector")?,
        reporter_name: row.try_get("reporter_name")?,
        reporter_email: row.try_get("reporter_email")?,
        credit_public: row.try_get::<i32, _>("credit_public")? != 0,
        state: State::parse(&state).map_err(|e| bad("state", e))?,
        severity: if severity.is_empty() {
            None
        } else {
            Some(Severity::parse(&severity).map_err(|e| bad("severity", e))?)
        },
        assignee_id: row.try_get("assignee_id")?,
        duplicate_of: row.try_get("duplicate_of")?,
        finding_id: row.try_get("finding_id")?,
        incident_id: row.try_get("incident_id")?,
        received_at: row.try_get("received_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a report with the next number; returns the number.
pub async fn insert(
    conn: &mut AnyConnection,
    d: &Disclosure,
    token_hash: &str,
    network_hash: &str,
) -> Result<i64, sqlx::Error> {
    crate::db::lock_until_commit(conn, "disclosure numbers").await?;
    let row = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS next FROM disclosures")
        .fetch_one(&mut *conn)
        .await?;
    let number: i64 = row.try_get("next")?;
    sqlx::query(
        "INSERT INTO disclosures (id, number, title, description, asset, steps, impact, \
           cvss_vector, reporter_name, reporter_email, credit_public, status, severity, \
           assignee_id, duplicate_of, finding_id, incident_id, token_hash, network_hash, \
           received_at, confirmed_at, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, '', NULL, NULL, NULL, NULL, \
           $13, $14, $15, NULL, 1, $15)",
    )
    .bind(&d.id)
    .bind(number)
    .bind(&d.title)
    .bind(&d.description)
    .bind(&d.asset)
    .bind(&d.steps)
    .bind(&d.impact)
    .bind(&d.cvss_vector)
    .bind(&d.reporter_name)
    .bind(&d.reporter_email)
    .bind(i32::from(d.credit_public))
    .bind(d.state.as_str())
    .bind(token_hash)
    .bind(network_hash)
    .bind(d.received_at)
    .execute(conn)
    .await?;
    Ok(number)
}

pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Disclosure>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM disclosures d WHERE d.id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn find_by_number(
    conn: &mut AnyConnection,
    number: i64,
) -> Result<Option<Disclosure>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM disclosures d WHERE d.number = $1");
    sqlx::query(&sql)
        .bind(number)
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// The report that created finding `finding_id`.
pub async fn find_by_finding(
    conn: &mut AnyConnection,
    finding_id: &str,
) -> Result<Option<Disclosure>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM disclosures d WHERE d.finding_id = $1");
    sqlx::query(&sql)
        .bind(finding_id)
        .fetch_optional(conn)
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

/// The report whose status token hashes to `token_hash`, with the stored hash.
pub async fn find_by_token_hash(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> Result<Option<(Disclosure, String)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS}, d.token_hash FROM disclosures d WHERE d.token_hash = $1");
    match sqlx::query(&sql)
        .bind(token_hash)
        .fetch_optional(conn)
        .await?
    {
        Some(row) => Ok(Some((from_row(&row)?, row.try_get("token_hash")?))),
        None => Ok(None),
    }
}

/// Reports received from a client network since `since`.
pub async fn count_from_network(
    conn: &mut AnyConnection,
    network_hash: &str,
    since: Millis,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM disclosures WHERE network_hash = $1 AND received_at > $2",
    )
    .bind(network_hash)
    .bind(since)
    .fetch_one(conn)
    .await?
    .try_get("n")
}

/// Saves the changeable fields if nobody changed the report since `version` was read.
pub async fn update(
    conn: &mut AnyConnection,
    d: &Disclosure,
    version: i64,
    now: Millis,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE disclosures SET status = $1, severity = $2, assignee_id = $3, duplicate_of = $4, \
           finding_id = $5, incident_id = $6, confirmed_at = $7, version = version + 1, \
           updated_at = $8 \
         WHERE id = $9 AND version = $10",
    )
    .bind(d.state.as_str())
    .bind(d.severity.map_or("", Severity::as_str))
    .bind(&d.assignee_id)
    .bind(&d.duplicate_of)
    .bind(&d.finding_id)
    .bind(&d.incident_id)
    .bind(d.confirmed_at)
    .bind(now)
    .bind(&d.id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the inbox can be narrowed to.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub state: Option<State>,
    /// `Some(None)`: unrated.
    pub severity: Option<Option<Severity>>,
    /// Only reports with a running clock past its deadline.
    pub overdue: bool,
    /// A staff id, or `Some("")` for unassigned.
    pub assignee: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// One inbox row: the report and its next open deadline.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub disclosure: Disclosure,
    pub next_due_at: Option<Millis>,
    pub assignee_email: Option<String>,
}

/// Reports matching `filter`, newest first, with the total for paging.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &InboxFilter,
    now: Millis,
) -> Result<(Vec<InboxRow>, i64), sqlx::Error> {
    // Fixed SQL; every filter is a bound parameter that may be NULL.
    let where_sql = "WHERE ($1 = '' OR d.status = $1) \
           AND ($2 = '*' OR d.severity = $2) \
           AND ($3 = 0 OR EXISTS (SELECT 1 FROM sla_clocks c WHERE c.subject_kind = 'disclosure' \
                AND c.subject_id = d.id AND c.stopped_at IS NULL \
                AND (c.state = 'breached' OR (c.state = 'running' AND c.due_at <= $4)))) \
           AND ($5 = '*' OR COALESCE(d.assignee_id, '') = $5)";
    let state = filter.state.map_or("", State::as_str).to_owned();
    let severity = match filter.severity {
        None => "*".to_owned(),
        Some(None) => String::new(),
        Some(Some(s)) => s.as_str().to_owned(),
    };
    let assignee = filter.assignee.clone().unwrap_or_else(|| "*".to_owned());
    let overdue = i32::from(filter.overdue);
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM disclosures d {where_sql}"
    ))
    .bind(&state)
    .bind(&severity)
    .bind(overdue)
    .bind(now)
    .bind(&assignee)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let sql = format!(
        "SELECT {COLUMNS}, \
           (SELECT MIN(c.due_at) FROM sla_clocks c WHERE c.subject_kind = 'disclosure' \
              AND c.subject_id = d.id AND c.stopped_at IS NULL AND c.state <> 'met') AS next_due_at, \
           (SELECT s.email FROM staff s WHERE s.id = d.assignee_id) AS assignee_email \
         FROM disclosures d {where_sql} \
         ORDER BY d.received_at DESC, d.number DESC LIMIT $6 OFFSET $7"
    );
    let rows = sqlx::query(&sql)
        .bind(&state)
        .bind(&severity)
        .bind(overdue)
        .bind(now)
        .bind(&assignee)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(conn)
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(InboxRow {
                disclosure: from_row(r)?,
                next_due_at: r.try_get("next_due_at")?,
                assignee_email: r.try_get("assignee_email")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

/// Open reports (not closed) and, of those, ones with an overdue clock: the dashboard card.
pub async fn open_counts(conn: &mut AnyConnection, now: Millis) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS open, \
           COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM sla_clocks c \
              WHERE c.subject_kind = 'disclosure' AND c.subject_id = d.id \
              AND c.stopped_at IS NULL AND (c.state = 'breached' \
              OR (c.state = 'running' AND c.due_at <= $1))) THEN 1 ELSE 0 END), 0) AS overdue \
         FROM disclosures d \
         WHERE d.status NOT IN ('disclosed', 'duplicate', 'not_applicable', 'informative', 'spam')",
    )
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("open")?, row.try_get("overdue")?))
}

/// Researchers who asked to be credited, for reports accepted as valid.
pub async fn credited(conn: &mut AnyConnection) -> Result<Vec<(String, Millis)>, sqlx::Error> {
    sqlx::query(
        "SELECT reporter_name, confirmed_at FROM disclosures \
         WHERE credit_public = 1 AND reporter_name <> '' AND confirmed_at IS NOT NULL \
           AND status IN ('accepted', 'fixing', 'fixed', 'disclosed') \
         ORDER BY confirmed_at DESC LIMIT 500",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("reporter_name")?, r.try_get("confirmed_at")?)))
    .collect()
}

/// One entry of a report's thread.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    pub id: String,
    pub at: Millis,
    /// `researcher`, `system`, or `staff:<email>`.
    pub author: String,
    /// `researcher`, `reply`, `note`, `event`.
    pub kind: String,
    /// The researcher sees it.
    pub visible: bool,
    pub body: String,
}

pub async fn insert_message(
    conn: &mut AnyConnection,
    disclosure_id: &str,
    message: &Message,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO disclosure_messages (id, disclosure_id, at, author, kind, visible, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&message.id)
    .bind(disclosure_id)
    .bind(message.at)
    .bind(&message.author)
    .bind(&message.kind)
    .bind(i32::from(message.visible))
    .bind(&message.body)
    .execute(conn)
    .await?;
    Ok(())
}

/// The thread, oldest first; `visible_only` for the researcher.
pub async fn messages(
    conn: &mut AnyConnection,
    disclosure_id: &str,
    visible_only: bool,
) -> Result<Vec<Message>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, author, kind, visible, body FROM disclosure_messages \
         WHERE disclosure_id = $1 AND ($2 = 0 OR visible = 1) ORDER BY at, id",
    )
    .bind(disclosure_id)
    .bind(i32::from(visible_only))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Message {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            author: r.try_get("author")?,
            kind: r.try_get("kind")?,
            visible: r.try_get::<i32, _>("visible")? != 0,
            body: r.try_get("body")?,
        })
    })
    .collect()
}

/// Researcher messages on a report since `since` (the reply limit).
pub async fn researcher_messages_since(
    conn: &mut AnyConnection,
    disclosure_id: &str,
    since: Millis,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM disclosure_messages \
         WHERE disclosure_id = $1 AND kind = 'researcher' AND at >= $2",
    )
    .bind(disclosure_id)
    .bind(since)
    .fetch_one(conn)
    .await?
    .try_get("n")
}

/// A stored attachment (its bytes are sealed in the blob store under `blob_key`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attachment {
    pub id: String,
    pub disclosure_id: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    #[serde(skip)]
    pub blob_key: String,
    pub uploaded_by: String,
    pub created_at: Millis,
}

pub async fn insert_attachment(
    conn: &mut AnyConnection,
    a: &Attachment,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO disclosure_attachments (id, disclosure_id, file_name, content_type, bytes, \
           sha256, blob_key, uploaded_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&a.id)
    .bind(&a.disclosure_id)
    .bind(&a.file_name)
    .bind(&a.content_type)
    .bind(a.bytes)
    .bind(&a.sha256)
    .bind(&a.blob_key)
    .bind(&a.uploaded_by)
    .bind(a.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

const ATTACHMENT_COLUMNS: &str =
    "id, disclosure_id, file_name, content_type, bytes, sha256, blob_key, uploaded_by, created_at";

fn attachment_from_row(r: &AnyRow) -> Result<Attachment, sqlx::Error> {
    Ok(Attachment {
        id: r.try_get("id")?,
        disclosure_id: r.try_get("disclosure_id")?,
        file_name: r.try_get("file_name")?,
        content_type: r.try_get("content_type")?,
        bytes: r.try_get("bytes")?,
        sha256: r.try_get("sha256")?,
        blob_key: r.try_get("blob_key")?,
        uploaded_by: r.try_get("uploaded_by")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn attachments(
    conn: &mut AnyConnection,
    disclosure_id: &str,
) -> Result<Vec<Attachment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM disclosure_attachments WHERE disclosure_id = $1 \
         ORDER BY created_at, id"
    ))
    .bind(disclosure_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(attachment_from_row)
    .collect()
}

pub async fn attachment(
    conn: &mut AnyConnection,
    disclosure_id: &str,
    id: &str,
) -> Result<Option<Attachment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM disclosure_attachments \
         WHERE disclosure_id = $1 AND id = $2"
    ))
    .bind(disclosure_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(attachment_from_row)
    .transpose()
}
