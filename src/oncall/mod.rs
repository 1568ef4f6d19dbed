//! On-call: a weekly rotation over staff with the `security` role, overrides, and a
//! second-level escalation person. Incidents record who was on call at detection and page
//! them; the dashboard shows who is on call now. The portal page and the CLI share these
//! operations.

pub mod cli;
pub mod model;
pub mod pages;
pub mod store;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::staff::model::Role;
use model::{Handoff, Rotation, anchor_for, on_call_at};

/// Why an on-call change was refused, in words for the person making it.
#[derive(Debug, thiserror::Error)]
pub enum OnCallError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The longest override: cover for a holiday, not a second rotation.
pub const MAX_OVERRIDE_DAYS: i64 = 31;

/// A staff member as shown next to an on-call role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub name: String,
}

/// Who is on call now, for the dashboard, incidents and `oncall now`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OnCallNow {
    pub person: Person,
    pub escalation: Option<Person>,
    pub until: Millis,
    pub via_override: bool,
}

/// A staff member by id, for labels (members, overrides, escalation).
pub async fn person(conn: &mut AnyConnection, id: &str) -> Result<Option<Person>, sqlx::Error> {
    Ok(crate::staff::store::find(&mut *conn, id)
        .await?
        .map(|s| Person {
            id: s.id,
            email: s.email,
            name: s.display_name,
        }))
}

/// An enabled account with `role` (or admin, for the escalation level), by email.
async fn staff_with_role(
    conn: &mut AnyConnection,
    email: &str,
    roles: &[Role],
) -> Result<Person, OnCallError> {
    let email = email.trim().to_lowercase();
    let staff = crate::staff::store::find_by_email(&mut *conn, &email)
        .await?
        .filter(|s| !s.disabled)
        .ok_or_else(|| OnCallError::Invalid(format!("No enabled staff account is {email}.")))?;
    let held = crate::staff::store::roles_of(&mut *conn, &staff.id).await?;
    if !roles.iter().any(|r| held.iter().any(|h| h == r.as_str())) {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return Err(OnCallError::Invalid(format!(
            "{email} does not have the {} role, so cannot be on call.",
            names.join(" or ")
        )));
    }
    Ok(Person {
        id: staff.id,
        email: staff.email,
        name: staff.display_name,
    })
}

/// What a new rotation is made of, as people type it.
pub struct RotationInput<'a> {
    pub member_emails: &'a [String],
    pub handoff: &'a str,
    pub timezone: &'a str,
    pub escalation_email: Option<&'a str>,
}

/// Replaces the rotation; the first member is on call from the most recent handoff.
pub async fn set_rotation(
    conn: &mut AnyConnection,
    input: &RotationInput<'_>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Rotation, OnCallError> {
    let handoff = Handoff::parse(input.handoff).map_err(OnCallError::Invalid)?;
    let zone = model::parse_zone(input.timezone).map_err(OnCallError::Invalid)?;
    if input.member_emails.is_empty() {
        return Err(OnCallError::Invalid(
            "Name at least one member of the rotation.".into(),
        ));
    }
    if input.member_emails.len() > 52 {
        return Err(OnCallError::Invalid(
            "A rotation has at most 52 members.".into(),
        ));
    }
    let mut members = Vec::with_capacity(input.member_emails.len());
    for email in input.member_emails {
        let member = staff_with_role(conn, email, &[Role::Security]).await?;
        if members.contains(&member.id) {
            return Err(OnCallError::Invalid(format!(
                "{} is named twice in the rotation.",
                member.email
            )));
        }
        members.push(member.id);
    }
    let escalation = match input.escalation_email.filter(|e| !e.trim().is_empty()) {
        Some(email) => Some(staff_with_role(conn, email, &[Role::Security, Role::Admin]).await?),
        None => None,
    };
    let rotation = Rotation {
        members,
        handoff,
        zone,
        escalation: escalation.as_ref().map(|p| p.id.clone()),
        anchor: anchor_for(zone, handoff, now),
    };
    store::save_rotation(conn, &rotation, actor, now).await?;
    let emails: Vec<String> = input
        .member_emails
        .iter()
        .map(|e| e.trim().to_lowercase())
        .collect();
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "oncall.rotation.set", "oncall:rotation")
            .detail("members", emails.join(", "))
            .detail("handoff", handoff.label())
            .detail("timezone", zone.name())
            .detail(
                "escalation",
                escalation.map(|p| p.email).unwrap_or_else(|| "none".into()),
            ),
    )
    .await?;
    Ok(rotation)
}

/// Puts `email` on call from `from_at` to `to_at`, instead of the rotation.
#[allow(clippy::too_many_arguments)]
pub async fn add_override(
    conn: &mut AnyConnection,
    email: &str,
    from_at: Millis,
    to_at: Millis,
    reason: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<String, OnCallError> {
    if to_at <= from_at {
        return Err(OnCallError::Invalid(
            "The override must end after it starts.".into(),
        ));
    }
    if to_at <= now {
        return Err(OnCallError::Invalid(
            "The override would end in the past.".into(),
        ));
    }
    if to_at - from_at > MAX_OVERRIDE_DAYS * DAY {
        return Err(OnCallError::Invalid(format!(
            "An override lasts at most {MAX_OVERRIDE_DAYS} days; change the rotation instead."
        )));
    }
    let reason = reason.trim();
    if reason.chars().count() > 500 {
        return Err(OnCallError::Invalid(
            "Keep the reason under 500 characters.".into(),
        ));
    }
    let person = staff_with_role(conn, email, &[Role::Security]).await?;
    let id = store::insert_override(conn, &person.id, from_at, to_at, reason, actor, now).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "oncall.override.add",
            format!("oncall_override:{id}"),
        )
        .detail("person", person.email.as_str())
        .detail("from", crate::clock::format_ms(from_at))
        .detail("to", crate::clock::format_ms(to_at))
        .detail("reason", reason),
    )
    .await?;
    Ok(id)
}

/// Removes an override.
pub async fn remove_override(
    conn: &mut AnyConnection,
    id: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), OnCallError> {
    let Some(staff_id) = store::delete_override(conn, id).await? else {
        return Err(OnCallError::Invalid(
            "That override no longer exists.".into(),
        ));
    };
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "oncall.override.remove",
            format!("oncall_override:{id}"),
        )
        .detail("staff_id", staff_id),
    )
    .await?;
    Ok(())
}

/// Who is on call at `at` (override or rotation), with names; `None` when no rotation is set.
pub async fn on_call(
    conn: &mut AnyConnection,
    at: Millis,
) -> Result<Option<OnCallNow>, sqlx::Error> {
    let Some(rotation) = store::rotation(conn).await? else {
        return Ok(None);
    };
    let overrides: Vec<model::Override> = store::current_overrides(conn, at)
        .await?
        .into_iter()
        .map(|r| r.over)
        .collect();
    let Some(at_now) = on_call_at(&rotation, &overrides, at) else {
        return Ok(None);
    };
    let Some(on_call_person) = person(conn, &at_now.staff_id).await? else {
        return Ok(None);
    };
    let escalation = match &at_now.escalation {
        Some(id) => person(conn, id).await?,
        None => None,
    };
    Ok(Some(OnCallNow {
        person: on_call_person,
        escalation,
        until: at_now.until,
        via_override: at_now.override_id.is_some(),
    }))
}

/// The rotation's members as people, in order (for the page and the CLI).
pub async fn members(
    conn: &mut AnyConnection,
    rotation: &Rotation,
) -> Result<Vec<Person>, sqlx::Error> {
    let mut people = Vec::with_capacity(rotation.members.len());
    for id in &rotation.members {
        if let Some(p) = person(conn, id).await? {
            people.push(p);
        }
    }
    Ok(people)
}
