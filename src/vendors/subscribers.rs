//! Subscribers to sub-processor change notices: double opt-in from the public form, or a
//! customer's contact email from its record.
//!
//! Confirmation and unsubscribe links carry the subscriber id and an HMAC of it under the
//! server key, so no token is stored and a link cannot be forged for another subscriber.

use sqlx::{AnyConnection, Row};

use super::notice::send;
use super::{VendorError, VendorSettings};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::Millis;
use crate::crypto::Keyring;

pub(crate) async fn confirmed_subscribers(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT id, email FROM vendor_subscribers WHERE confirmed_at IS NOT NULL \
           AND unsubscribed_at IS NULL ORDER BY created_at, id",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("email")?)))
    .collect()
}

/// The MAC a confirmation or unsubscribe link carries.
pub fn link_token(keyring: &Keyring, purpose: &str, subscriber_id: &str) -> String {
    keyring.session_mac(&format!("vendor-{purpose}"), subscriber_id.as_bytes())
}

pub(crate) fn link_for(
    settings: &VendorSettings<'_>,
    keyring: &Keyring,
    purpose: &str,
    subscriber_id: &str,
) -> String {
    format!(
        "{}/trust/subprocessors/{purpose}?s={subscriber_id}&t={}",
        settings.public_url,
        link_token(keyring, purpose, subscriber_id)
    )
}

/// A subscriber as staff see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Subscriber {
    pub id: String,
    pub email: String,
    pub customer_id: Option<String>,
    pub confirmed_at: Option<Millis>,
    pub unsubscribed_at: Option<Millis>,
    pub created_at: Millis,
}

pub async fn subscribers(conn: &mut AnyConnection) -> Result<Vec<Subscriber>, sqlx::Error> {
    sqlx::query(
        "SELECT id, email, customer_id, confirmed_at, unsubscribed_at, created_at \
         FROM vendor_subscribers ORDER BY email LIMIT 5000",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Subscriber {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            customer_id: r.try_get("customer_id")?,
            confirmed_at: r.try_get("confirmed_at")?,
            unsubscribed_at: r.try_get("unsubscribed_at")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect()
}

async fn find_by_email(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Option<Subscriber>, sqlx::Error> {
    Ok(subscribers_where(conn, "email = $1", email)
        .await?
        .into_iter()
        .next())
}

async fn subscribers_where(
    conn: &mut AnyConnection,
    condition: &str,
    value: &str,
) -> Result<Vec<Subscriber>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT id, email, customer_id, confirmed_at, unsubscribed_at, created_at \
         FROM vendor_subscribers WHERE {condition}"
    ))
    .bind(value)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Subscriber {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            customer_id: r.try_get("customer_id")?,
            confirmed_at: r.try_get("confirmed_at")?,
            unsubscribed_at: r.try_get("unsubscribed_at")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect()
}

/// The public form: records the address unconfirmed and emails a confirmation link. An
/// address that is already confirmed gets nothing; the page says the same either way, so
/// the form does not reveal who subscribes.
pub async fn subscribe(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    raw_email: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), VendorError> {
    let email = crate::sla::format::email(raw_email.trim())
        .map_err(|_| VendorError::Invalid("Enter an email address.".into()))?
        .to_ascii_lowercase();
    let id = match find_by_email(conn, &email).await? {
        Some(s) if s.confirmed_at.is_some() && s.unsubscribed_at.is_none() => return Ok(()),
        Some(s) => {
            sqlx::query(
                "UPDATE vendor_subscribers SET confirmed_at = NULL, unsubscribed_at = NULL \
                 WHERE id = $1",
            )
            .bind(&s.id)
            .execute(&mut *conn)
            .await?;
            s.id
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO vendor_subscribers (id, email, customer_id, confirmed_at, \
                   unsubscribed_at, created_at) VALUES ($1, $2, NULL, NULL, NULL, $3)",
            )
            .bind(&id)
            .bind(&email)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            id
        }
    };
    let link = link_for(settings, settings.keyring, "confirm", &id);
    send(
        conn,
        &email,
        "Confirm your sub-processor change notices",
        &[
            "Someone (hopefully you) asked to be emailed when our list of sub-processors \
           changes. Open the link to confirm; if it was not you, ignore this email."
                .to_owned(),
        ],
        &link,
        "",
        &format!("vendor-subscriber:{id}"),
        now,
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            "public",
            "vendor.subscribe",
            format!("vendor-subscriber:{id}"),
        ),
    )
    .await?;
    Ok(())
}

/// Confirms (double opt-in) or ends a subscription from an emailed link. `false` when the
/// link is not valid.
pub async fn follow_link(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    purpose: &str,
    subscriber_id: &str,
    token: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<bool, VendorError> {
    let expected = link_token(keyring, purpose, subscriber_id);
    if !crate::crypto::constant_time_eq(&expected, token) {
        return Ok(false);
    }
    let (sql, action) = match purpose {
        "confirm" => (
            "UPDATE vendor_subscribers SET confirmed_at = COALESCE(confirmed_at, $1) \
             WHERE id = $2 AND unsubscribed_at IS NULL",
            "vendor.subscribe_confirm",
        ),
        "unsubscribe" => (
            "UPDATE vendor_subscribers SET unsubscribed_at = COALESCE(unsubscribed_at, $1) \
             WHERE id = $2",
            "vendor.unsubscribe",
        ),
        _ => return Ok(false),
    };
    let changed = sqlx::query(sql)
        .bind(now)
        .bind(subscriber_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            "public",
            action,
            format!("vendor-subscriber:{subscriber_id}"),
        ),
    )
    .await?;
    Ok(true)
}

/// Subscribes a customer by the contact email on its record (no opt-in round trip: the
/// contract names this address for such notices).
pub async fn subscribe_customer(
    conn: &mut AnyConnection,
    customer_id: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<String, VendorError> {
    let customer = crate::customers::store::find(&mut *conn, customer_id)
        .await?
        .ok_or_else(|| VendorError::Invalid("There is no such customer.".into()))?;
    let email = customer.contact_email.to_ascii_lowercase();
    let id = match find_by_email(conn, &email).await? {
        Some(s) => {
            sqlx::query(
                "UPDATE vendor_subscribers SET customer_id = $1, \
                   confirmed_at = COALESCE(confirmed_at, $2), unsubscribed_at = NULL WHERE id = $3",
            )
            .bind(customer_id)
            .bind(now)
            .bind(&s.id)
            .execute(&mut *conn)
            .await?;
            s.id
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO vendor_subscribers (id, email, customer_id, confirmed_at, \
                   unsubscribed_at, created_at) VALUES ($1, $2, $3, $4, NULL, $4)",
            )
            .bind(&id)
            .bind(&email)
            .bind(customer_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            id
        }
    };
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "vendor.subscribe_customer",
            format!("vendor-subscriber:{id}"),
        )
        .detail("customer", customer_id),
    )
    .await?;
    Ok(email)
}
