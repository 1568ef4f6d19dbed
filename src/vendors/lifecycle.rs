//! The lifecycle of a vendor: the onboarding gate (what still stands between a vendor and
//! `active`), activation through it, the other state changes, and how the active vendors
//! stand for the dashboard.

use sqlx::AnyConnection;

use super::model::{self, State, Transfer};
use super::store::{self, Vendor};
use super::{VendorError, load, notice, save, subject};
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{Millis, format_ms};
use crate::sla;

/// What still stands between a vendor and `active`, in words; empty when the gate is open.
pub async fn gate(
    conn: &mut AnyConnection,
    vendor: &Vendor,
    now: Millis,
) -> Result<Vec<String>, VendorError> {
    let mut missing = Vec::new();
    if vendor.state != State::Approved {
        missing.push(format!(
            "approval: the vendor is {}, and only an approved vendor can become active",
            vendor.state.as_str()
        ));
    }
    let latest = store::assessments(conn, &vendor.id)
        .await?
        .into_iter()
        .next();
    match latest {
        None => missing.push("a passed assessment: none is recorded".into()),
        Some(a) if !a.result.passed() => missing.push(format!(
            "a passed assessment: the latest ({}) failed",
            format_ms(a.assessed_at)
        )),
        Some(a) => {
            if let Some(due) = a.next_due_at.filter(|due| *due <= now) {
                missing.push(format!(
                    "a valid assessment: the latest passed but expired {}; reassess",
                    format_ms(due)
                ));
            }
        }
    }
    if vendor.handles_personal_data() {
        match store::dpas(conn, &vendor.id).await?.into_iter().next() {
            None => missing
                .push("a signed DPA: the vendor handles personal data and none is on file".into()),
            Some(d) if d.expires_at <= now => missing.push(format!(
                "an unexpired DPA: version {} expired {}",
                d.version,
                format_ms(d.expires_at)
            )),
            Some(_) => {}
        }
        let outside = model::outside_eea(&vendor.locations);
        if !outside.is_empty() && vendor.transfer == Transfer::None {
            missing.push(format!(
                "a transfer mechanism for {} (outside the EU/EEA): SCCs with their module, an \
                 adequacy decision or BCRs",
                outside.join(", ")
            ));
        }
    }
    if vendor.handles_customer_data() {
        match vendor.notice_ends_at {
            None => missing.push("the customer notice: it has not started".into()),
            Some(ends) if now < ends => missing.push(format!(
                "the end of the customer notice period: it ends {} ({} left)",
                format_ms(ends),
                sla::format::span(ends - now)
            )),
            Some(_) => {}
        }
    }
    Ok(missing)
}

/// How an activation attempt ended.
#[derive(Debug, Clone)]
pub enum Activation {
    Activated(Box<Vendor>),
    /// Refused by the gate; each item names one missing thing. The refusal is audited in the
    /// caller's transaction, so the caller commits it.
    Refused(Vec<String>),
}

/// Moves an approved vendor to active through the onboarding gate.
pub async fn activate(
    conn: &mut AnyConnection,
    id: &str,
    version: Option<i64>,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Activation, VendorError> {
    let mut vendor = store::find(conn, id).await?.ok_or(VendorError::NotFound)?;
    let version = version.unwrap_or(vendor.version);
    if vendor.version != version {
        return Err(VendorError::Conflict(format!(
            "VND-{} was changed by someone else while you were looking. Nothing was changed; \
             reload and try again.",
            vendor.number
        )));
    }
    let missing = gate(conn, &vendor, now).await?;
    if !missing.is_empty() {
        audit::append(
            conn,
            now,
            meta,
            AuditEvent::new(actor, "vendor.activate", format!("vendor:{id}"))
                .outcome(audit::Outcome::Denied)
                .detail("missing", missing.join("; ")),
        )
        .await?;
        return Ok(Activation::Refused(missing));
    }
    vendor.state = State::Active;
    vendor.activated_at = Some(now);
    save(conn, &vendor, version, now).await?;
    vendor.version += 1;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.activate", format!("vendor:{id}"))
            .detail("number", vendor.number),
    )
    .await?;
    if vendor.handles_customer_data() {
        notice::record_change(
            conn,
            &vendor,
            notice::ChangeKind::Activated,
            &format!("{} is now a sub-processor: {}", vendor.name, vendor.purpose),
            now,
        )
        .await?;
    }
    Ok(Activation::Activated(Box::new(vendor)))
}

/// Moves a vendor along its lifecycle; `active` goes through [`activate`] instead.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    to: State,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vendor, VendorError> {
    if to == State::Active {
        return Err(VendorError::Invalid(
            "Use activation, which checks the onboarding gate.".into(),
        ));
    }
    let mut vendor = load(conn, id, version).await?;
    let from = vendor.state;
    if !from.may_become(to) {
        return Err(VendorError::Invalid(format!(
            "VND-{} cannot go from {} to {}.",
            vendor.number,
            from.as_str(),
            to.as_str()
        )));
    }
    let was_public = vendor.handles_customer_data()
        && (from == State::Active || vendor.notice_started_at.is_some());
    vendor.state = to;
    save(conn, &vendor, version, now).await?;
    vendor.version += 1;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.state", format!("vendor:{id}"))
            .detail("from", from.as_str())
            .detail("to", to.as_str()),
    )
    .await?;
    if to == State::Retired {
        // Deadlines of a retired vendor no longer matter.
        for clock in sla::for_subject(conn, &subject(id)).await? {
            if clock.stopped_at.is_none() && clock.state != sla::ClockState::Met {
                sla::stop(conn, now, &subject(id), &clock.name, actor, meta).await?;
            }
        }
        if was_public {
            let summary = if from == State::Active || from == State::Offboarding {
                format!("{} is no longer a sub-processor", vendor.name)
            } else {
                format!("{} will not become a sub-processor after all", vendor.name)
            };
            notice::record_change(conn, &vendor, notice::ChangeKind::Retired, &summary, now)
                .await?;
        }
    }
    Ok(vendor)
}

/// The VND-1 / VND-2 control as the dashboard shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RegisterStatus {
    pub active: i64,
    /// Not yet active nor retired.
    pub onboarding: i64,
    /// Active vendors whose assessment or DPA has since expired (or that lack a transfer
    /// mechanism), each named with what is wrong.
    pub lapsed: Vec<String>,
}

/// How the active vendors stand at `now`.
pub async fn register_status(
    conn: &mut AnyConnection,
    now: Millis,
) -> Result<RegisterStatus, VendorError> {
    let mut status = RegisterStatus::default();
    for (state, n) in store::counts_by_state(conn).await? {
        match state.as_str() {
            "active" => status.active = n,
            "proposed" | "assessing" | "approved" => status.onboarding += n,
            _ => {}
        }
    }
    let (active, _) = store::list(
        conn,
        &store::VendorFilter {
            state: Some(State::Active),
            limit: 5000,
            ..Default::default()
        },
    )
    .await?;
    for vendor in active {
        // The same checks as the gate, minus approval and notice, which lie in the past.
        let problems: Vec<String> = gate(conn, &vendor, now)
            .await?
            .into_iter()
            .filter(|m| !m.starts_with("approval") && !m.contains("customer notice"))
            .collect();
        if !problems.is_empty() {
            status.lapsed.push(format!(
                "VND-{} {}: {}",
                vendor.number,
                vendor.name,
                problems.join("; ")
            ));
        }
    }
    Ok(status)
}
