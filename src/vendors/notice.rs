//! Customer change notices: the change feed behind `/trust/subprocessors.atom`, the one
//! email per subscriber and change, and customer objections recorded against a change.
//! Subscribers themselves are in [`super::subscribers`].

use askama::Template;
use sqlx::{AnyConnection, Row};

use super::store::Vendor;
pub use super::subscribers::{
    Subscriber, follow_link, link_token, subscribe, subscribe_customer, subscribers,
};
use super::subscribers::{confirmed_subscribers, link_for};
use super::{VendorError, VendorSettings};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{Millis, format_ms};
use crate::crypto::Keyring;

/// What happened to a published sub-processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A notice started: the vendor is planned from the end of the period.
    Planned,
    Activated,
    Retired,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Planned => "planned",
            ChangeKind::Activated => "activated",
            ChangeKind::Retired => "retired",
        }
    }
}

/// One entry of the change feed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub id: String,
    pub vendor_id: String,
    pub kind: String,
    pub at: Millis,
    pub summary: String,
}

pub async fn record_change(
    conn: &mut AnyConnection,
    vendor: &Vendor,
    kind: ChangeKind,
    summary: &str,
    now: Millis,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO vendor_changes (id, vendor_id, kind, at, summary) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&vendor.id)
    .bind(kind.as_str())
    .bind(now)
    .bind(summary)
    .execute(conn)
    .await?;
    Ok(id)
}

/// The newest changes first, at most `limit`.
pub async fn changes(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT id, vendor_id, kind, at, summary FROM vendor_changes \
         ORDER BY at DESC, id LIMIT {}",
        limit.clamp(1, 500)
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Change {
            id: r.try_get("id")?,
            vendor_id: r.try_get("vendor_id")?,
            kind: r.try_get("kind")?,
            at: r.try_get("at")?,
            summary: r.try_get("summary")?,
        })
    })
    .collect()
}

/// Changes of one vendor, newest first.
pub async fn changes_of(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query(
        "SELECT id, vendor_id, kind, at, summary FROM vendor_changes WHERE vendor_id = $1 \
         ORDER BY at DESC, id",
    )
    .bind(vendor_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Change {
            id: r.try_get("id")?,
            vendor_id: r.try_get("vendor_id")?,
            kind: r.try_get("kind")?,
            at: r.try_get("at")?,
            summary: r.try_get("summary")?,
        })
    })
    .collect()
}

#[derive(Template)]
#[template(path = "email/vendor_message.txt")]
struct MessageText<'a> {
    headline: &'a str,
    lines: &'a [String],
    link: &'a str,
    footer: &'a str,
}

#[derive(Template)]
#[template(path = "email/vendor_message.html")]
struct MessageHtml<'a> {
    headline: &'a str,
    lines: &'a [String],
    link: &'a str,
    footer: &'a str,
}

/// Queues one email rendered from the shared vendor templates.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    conn: &mut AnyConnection,
    to: &str,
    headline: &str,
    lines: &[String],
    link: &str,
    footer: &str,
    related: &str,
    now: Millis,
) -> Result<(), VendorError> {
    let text = MessageText {
        headline,
        lines,
        link,
        footer,
    }
    .render()
    .map_err(|e| VendorError::Mail(e.into()))?;
    let html = MessageHtml {
        headline,
        lines,
        link,
        footer,
    }
    .render()
    .map_err(|e| VendorError::Mail(e.into()))?;
    crate::notify::enqueue(
        conn,
        to,
        &format!("[trustplane] {headline}"),
        &text,
        &html,
        related,
        now,
    )
    .await?;
    Ok(())
}

/// Starts the notice period on `vendor` (not yet saved): planned from now + notice days.
pub fn begin(vendor: &mut Vendor, settings: &VendorSettings<'_>, now: Millis) {
    vendor.notice_started_at = Some(now);
    vendor.notice_ends_at = Some(now + super::days(settings.notice_days));
}

/// Records the "planned" change of a vendor whose notice has begun and emails every
/// confirmed subscriber once.
pub async fn announce(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    vendor: &Vendor,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<usize, VendorError> {
    let planned_from = vendor.notice_ends_at.unwrap_or(now);
    let summary = format!(
        "{} is planned as a sub-processor from {}: {}",
        vendor.name,
        day(planned_from),
        vendor.purpose
    );
    let change_id = record_change(conn, vendor, ChangeKind::Planned, &summary, now).await?;
    let lines = vec![
        format!(
            "We plan to add {} ({}) as a sub-processor.",
            vendor.name, vendor.legal_entity
        ),
        format!("Purpose: {}", vendor.purpose),
        format!("Processing location: {}", vendor.locations.join(", ")),
        format!(
            "Transfer mechanism: {}",
            if vendor.transfer.label().is_empty() {
                "none needed (EU/EEA)".to_owned()
            } else {
                vendor.transfer.label()
            }
        ),
        format!(
            "Planned from {} (after a {}-day notice period). To object, reply to this email or \
             contact your account manager before then.",
            day(planned_from),
            settings.notice_days
        ),
    ];
    let link = format!("{}/trust/subprocessors", settings.public_url);
    let subscribers = confirmed_subscribers(conn).await?;
    let mut sent = 0;
    for (subscriber_id, email) in subscribers {
        let first = sqlx::query(
            "INSERT INTO vendor_notices_sent (change_id, subscriber_id, sent_at) \
             VALUES ($1, $2, $3) ON CONFLICT (change_id, subscriber_id) DO NOTHING",
        )
        .bind(&change_id)
        .bind(&subscriber_id)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !first {
            continue;
        }
        let footer = format!(
            "Unsubscribe: {}",
            link_for(
                settings,
                settings_keyring(settings),
                "unsubscribe",
                &subscriber_id
            )
        );
        send(
            conn,
            &email,
            &format!("New sub-processor planned: {}", vendor.name),
            &lines,
            &link,
            &footer,
            &format!("vendor:{}", vendor.id),
            now,
        )
        .await?;
        sent += 1;
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.notice", format!("vendor:{}", vendor.id))
            .detail("planned_from", format_ms(planned_from))
            .detail("subscribers_emailed", sent),
    )
    .await?;
    Ok(sent)
}

fn settings_keyring<'a>(settings: &VendorSettings<'a>) -> &'a Keyring {
    settings.keyring
}

/// `2027-02-14`, the way the public list shows dates.
pub fn day(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A customer's objection to a change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Objection {
    pub id: String,
    pub change_id: String,
    pub customer_id: Option<String>,
    pub contact: String,
    pub reason: String,
    pub recorded_by: String,
    pub created_at: Millis,
}

/// Records a customer's objection against a change of `vendor_id`.
#[allow(clippy::too_many_arguments)]
pub async fn object(
    conn: &mut AnyConnection,
    vendor_id: &str,
    change_id: &str,
    customer_id: Option<&str>,
    contact: &str,
    reason: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Objection, VendorError> {
    let belongs = changes_of(conn, vendor_id)
        .await?
        .iter()
        .any(|c| c.id == change_id);
    if !belongs {
        return Err(VendorError::Invalid(
            "Choose the change the customer objects to.".into(),
        ));
    }
    let contact = contact.trim();
    let reason = reason.trim();
    if contact.is_empty() || contact.chars().count() > 300 {
        return Err(VendorError::Invalid(
            "Name who objects (customer contact, 1 to 300 characters).".into(),
        ));
    }
    if reason.chars().count() < 3 || reason.chars().count() > 5000 {
        return Err(VendorError::Invalid(
            "Give the customer's reason (3 to 5000 characters).".into(),
        ));
    }
    if let Some(customer_id) = customer_id
        && crate::customers::store::find(&mut *conn, customer_id)
            .await?
            .is_none()
    {
        return Err(VendorError::Invalid("There is no such customer.".into()));
    }
    let objection = Objection {
        id: uuid::Uuid::new_v4().to_string(),
        change_id: change_id.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        contact: contact.to_owned(),
        reason: reason.to_owned(),
        recorded_by: actor.to_owned(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO vendor_objections (id, change_id, vendor_id, customer_id, contact, reason, \
           recorded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&objection.id)
    .bind(change_id)
    .bind(vendor_id)
    .bind(&objection.customer_id)
    .bind(contact)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.objection", format!("vendor:{vendor_id}"))
            .detail("change", change_id),
    )
    .await?;
    Ok(objection)
}

pub async fn objections(
    conn: &mut AnyConnection,
    vendor_id: &str,
) -> Result<Vec<Objection>, sqlx::Error> {
    sqlx::query(
        "SELECT id, change_id, customer_id, contact, reason, recorded_by, created_at \
         FROM vendor_objections WHERE vendor_id = $1 ORDER BY created_at",
    )
    .bind(vendor_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Objection {
            id: r.try_get("id")?,
            change_id: r.try_get("change_id")?,
            customer_id: r.try_get("customer_id")?,
            contact: r.try_get("contact")?,
            reason: r.try_get("reason")?,
            recorded_by: r.try_get("recorded_by")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect()
}
