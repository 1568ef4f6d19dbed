//! Follow-ups of an incident that run on their own clocks:
//! - as a processor, notifying each affected customer (the controller) of a personal-data
//!   breach within `controller_notice_hours` of becoming aware (GDPR Art. 33(2));
//! - the actions of a post-incident review, each with an owner and a due date.

use sqlx::{AnyConnection, Row};

use super::{IncidentError, IncidentSettings, link, subject};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::sla::{self, ClockSpec};

/// One affected customer's notice and its clock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControllerNotice {
    pub customer_id: String,
    pub customer_name: String,
    pub clock_name: String,
    pub notified_at: Option<Millis>,
    pub notified_by: Option<String>,
}

/// Customers named in `affected` (comma-separated names), each of which must exist.
async fn named_customers(
    conn: &mut AnyConnection,
    affected: &str,
) -> Result<Vec<crate::customers::store::Customer>, IncidentError> {
    let mut customers = Vec::new();
    for name in affected.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let customer = crate::customers::store::find_by_name(&mut *conn, name)
            .await?
            .ok_or_else(|| {
                IncidentError::Invalid(format!(
                    "No customer is called “{name}”; affected customers are named as on the \
                     Customers page, separated by commas."
                ))
            })?;
        if !customers
            .iter()
            .any(|c: &crate::customers::store::Customer| c.id == customer.id)
        {
            customers.push(customer);
        }
    }
    Ok(customers)
}

/// Starts a "controller notice" clock for each affected customer of a personal-data breach,
/// from the moment of awareness.
#[allow(clippy::too_many_arguments)]
pub async fn start_controller_notices(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    incident_id: &str,
    affected: &str,
    aware_at: Millis,
    notify_to: &[String],
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<usize, IncidentError> {
    let customers = named_customers(conn, affected).await?;
    let link_path = link(incident_id);
    for (index, customer) in customers.iter().enumerate() {
        let clock_name = format!("controller_notice_{}", index + 1);
        let target = format!(
            "Notify {} (controller) within {} hours",
            customer.name, settings.controller_notice_hours
        );
        sla::start_at(
            conn,
            aware_at,
            now,
            &ClockSpec {
                subject: subject(incident_id),
                name: &clock_name,
                target: &target,
                duration: sla::Duration::Hours(settings.controller_notice_hours),
                calendar: settings.calendar,
                notify_to: notify_to.to_vec(),
                escalate_to: Vec::new(),
                link_path: &link_path,
                reminder_fraction: Some(0.5),
                escalation_interval: Some(settings.escalation_interval),
            },
            actor,
            meta,
        )
        .await?;
        sqlx::query(
            "INSERT INTO incident_controller_notices (incident_id, customer_id, clock_name) \
             VALUES ($1, $2, $3)",
        )
        .bind(incident_id)
        .bind(&customer.id)
        .bind(&clock_name)
        .execute(&mut *conn)
        .await?;
    }
    Ok(customers.len())
}

/// The controller notices of an incident.
pub async fn controller_notices(
    conn: &mut AnyConnection,
    incident_id: &str,
) -> Result<Vec<ControllerNotice>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT n.customer_id, c.name AS customer_name, n.clock_name, n.notified_at, \
         n.notified_by FROM incident_controller_notices n \
         JOIN customers c ON c.id = n.customer_id WHERE n.incident_id = $1 ORDER BY n.clock_name",
    )
    .bind(incident_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ControllerNotice {
                customer_id: r.try_get("customer_id")?,
                customer_name: r.try_get("customer_name")?,
                clock_name: r.try_get("clock_name")?,
                notified_at: r.try_get("notified_at")?,
                notified_by: r.try_get("notified_by")?,
            })
        })
        .collect()
}

/// Records that a customer was notified, and stops its clock.
pub async fn record_controller_notified(
    conn: &mut AnyConnection,
    incident_id: &str,
    customer_id: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let notice = controller_notices(conn, incident_id)
        .await?
        .into_iter()
        .find(|n| n.customer_id == customer_id)
        .ok_or(IncidentError::NotFound)?;
    if notice.notified_at.is_some() {
        return Err(IncidentError::Invalid(format!(
            "{} was already notified.",
            notice.customer_name
        )));
    }
    sqlx::query(
        "UPDATE incident_controller_notices SET notified_at = $1, notified_by = $2 \
         WHERE incident_id = $3 AND customer_id = $4 AND notified_at IS NULL",
    )
    .bind(now)
    .bind(actor)
    .bind(incident_id)
    .bind(customer_id)
    .execute(&mut *conn)
    .await?;
    let clock = sla::stop(
        conn,
        now,
        &subject(incident_id),
        &notice.clock_name,
        actor,
        meta,
    )
    .await?;
    super::store::append_timeline(
        conn,
        incident_id,
        now,
        actor,
        "controller_notice",
        &format!(
            "{} (controller) notified, {}.",
            notice.customer_name,
            if clock.state == sla::ClockState::Met {
                "within its clock"
            } else {
                "after its clock was breached"
            }
        ),
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "incident.controller_notified",
            format!("incident:{incident_id}"),
        )
        .detail("customer", notice.customer_name.as_str()),
    )
    .await?;
    Ok(())
}

/// One action of a post-incident review.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReviewAction {
    pub id: String,
    pub seq: i64,
    pub title: String,
    pub owner_id: String,
    pub due_at: Millis,
    pub done_at: Option<Millis>,
}

/// Parses review actions, one per line: `what | owner@email | YYYY-MM-DD`. The due time is the
/// end of that day (UTC).
pub fn parse_actions(raw: &str) -> Result<Vec<(String, String, Millis)>, String> {
    let mut actions = Vec::new();
    for (index, line) in raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [title, owner, due] = parts.as_slice() else {
            return Err(format!(
                "Action line {} should read “what | owner@email | YYYY-MM-DD”.",
                index + 1
            ));
        };
        if title.chars().count() < 3 || title.chars().count() > 300 {
            return Err(format!(
                "Action line {}: the title must be 3 to 300 characters.",
                index + 1
            ));
        }
        let date = chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").map_err(|_| {
            format!(
                "Action line {}: “{due}” is not a date like 2027-02-01.",
                index + 1
            )
        })?;
        let due_at = date
            .and_hms_opt(0, 0, 0)
            .map_or(0, |d| d.and_utc().timestamp_millis())
            + DAY;
        actions.push(((*title).to_owned(), owner.to_lowercase(), due_at));
    }
    if actions.len() > 50 {
        return Err("At most 50 actions per review.".into());
    }
    Ok(actions)
}

/// Records review actions, each with its owner and a clock to its due date.
pub async fn add_actions(
    conn: &mut AnyConnection,
    settings: &IncidentSettings<'_>,
    incident_id: &str,
    actions: &[(String, String, Millis)],
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) AS last FROM incident_actions WHERE incident_id = $1",
    )
    .bind(incident_id)
    .fetch_one(&mut *conn)
    .await?;
    let mut seq: i64 = row.try_get("last")?;
    let link_path = link(incident_id);
    for (title, owner_email, due_at) in actions {
        let owner = crate::staff::store::find_by_email(&mut *conn, owner_email)
            .await?
            .filter(|s| !s.disabled)
            .ok_or_else(|| {
                IncidentError::Invalid(format!("No enabled staff account is {owner_email}."))
            })?;
        if *due_at <= now {
            return Err(IncidentError::Invalid(format!(
                "The action “{title}” is due in the past."
            )));
        }
        seq += 1;
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO incident_actions (id, incident_id, seq, title, owner_id, due_at, \
             done_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&id)
        .bind(incident_id)
        .bind(seq)
        .bind(title)
        .bind(&owner.id)
        .bind(due_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let clock_name = format!("action_{seq}");
        let target = format!("Action: {}", crate::web::clip(title, 150));
        sla::start(
            conn,
            now,
            &ClockSpec {
                subject: subject(incident_id),
                name: &clock_name,
                target: &target,
                duration: sla::Duration::Millis(due_at - now),
                calendar: settings.calendar,
                notify_to: vec![owner.email.clone()],
                escalate_to: Vec::new(),
                link_path: &link_path,
                reminder_fraction: Some(0.75),
                escalation_interval: Some(DAY),
            },
            actor,
            meta,
        )
        .await?;
    }
    Ok(())
}

/// The review actions of an incident.
pub async fn actions(
    conn: &mut AnyConnection,
    incident_id: &str,
) -> Result<Vec<ReviewAction>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, seq, title, owner_id, due_at, done_at FROM incident_actions \
         WHERE incident_id = $1 ORDER BY seq",
    )
    .bind(incident_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReviewAction {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
                title: r.try_get("title")?,
                owner_id: r.try_get("owner_id")?,
                due_at: r.try_get("due_at")?,
                done_at: r.try_get("done_at")?,
            })
        })
        .collect()
}

/// Marks an action done and stops its clock.
pub async fn complete_action(
    conn: &mut AnyConnection,
    incident_id: &str,
    action_id: &str,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<(), IncidentError> {
    let action = actions(conn, incident_id)
        .await?
        .into_iter()
        .find(|a| a.id == action_id)
        .ok_or(IncidentError::NotFound)?;
    if action.done_at.is_some() {
        return Err(IncidentError::Invalid(
            "That action is already done.".into(),
        ));
    }
    sqlx::query("UPDATE incident_actions SET done_at = $1 WHERE id = $2 AND done_at IS NULL")
        .bind(now)
        .bind(action_id)
        .execute(&mut *conn)
        .await?;
    sla::stop(
        conn,
        now,
        &subject(incident_id),
        &format!("action_{}", action.seq),
        actor,
        meta,
    )
    .await?;
    super::store::append_timeline(
        conn,
        incident_id,
        now,
        actor,
        "action_done",
        &format!("Review action done: {}", action.title),
    )
    .await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(
            actor,
            "incident.action_done",
            format!("incident:{incident_id}"),
        )
        .detail("action", action.title.as_str()),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_one_per_line() {
        let parsed = parse_actions("Add detector | Ana@Example.com | 2027-02-01\n\n").unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].1, "ana@example.com");
        assert_eq!(
            parsed[0].2,
            chrono::NaiveDate::from_ymd_opt(2027, 2, 2)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        );
        assert!(parse_actions("only a title").is_err());
        assert!(parse_actions("Fix | a@b.c | next week").is_err());
        assert_eq!(parse_actions("").unwrap().len(), 0);
    }
}
