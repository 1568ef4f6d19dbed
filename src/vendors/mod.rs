//! The sub-processor register (VND-1, VND-2, RES-1). A vendor moves proposed → assessing →
//! approved → active → offboarding → retired; the move to active passes the onboarding gate
//! here, in the operation every caller (portal, CLI) goes through: a passed assessment that
//! is still valid, a signed unexpired DPA when personal data is handled, a transfer
//! mechanism for every location outside the EU/EEA, and — for vendors handling customer
//! personal data — the end of the customer notice period. A refusal names what is missing
//! and is audited.
//!
//! Assessments and conditions are in [`assess`], DPAs in [`dpa`], the public list, change
//! feed, subscribers and notices in [`notice`], clock reminders in [`reminders`].

pub mod assess;
pub mod cli;
pub mod detail;
pub mod dpa;
pub mod import;
pub mod lifecycle;
pub mod model;
pub mod notice;
pub mod pages;
pub mod public;
pub mod questions;
pub mod record_store;
pub mod records;
pub mod reminders;
pub mod store;
pub mod subscribers;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis};
use crate::sla::{self, BusinessCalendar, Subject, SubjectKind};
pub use lifecycle::{Activation, RegisterStatus, activate, gate, register_status, transition};
use model::{RiskTier, State, Transfer};
use store::Vendor;

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{0}")]
    Invalid(String),
    /// A CSV import with bad rows: every problem, by row; nothing was imported.
    #[error("{} row(s) have problems; nothing was imported", .0.len())]
    Rows(Vec<String>),
    #[error("vendor not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Sla(#[from] sla::SlaError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The blob store (a DPA document) failed.
    #[error("DPA storage: {0:#}")]
    Storage(anyhow::Error),
    #[error("email: {0:#}")]
    Mail(anyhow::Error),
}

impl From<VendorError> for crate::error::AppError {
    fn from(err: VendorError) -> Self {
        use crate::error::AppError;
        match err {
            VendorError::Invalid(m) => AppError::BadRequest(format!("{m} Nothing was changed.")),
            VendorError::Rows(rows) => AppError::BadRequest(format!(
                "Nothing was imported. Fix these rows and try again: {}",
                rows.join(" · ")
            )),
            VendorError::NotFound => AppError::NotFound,
            VendorError::Conflict(m) => AppError::Conflict(m),
            VendorError::Sla(e) => e.into(),
            VendorError::Db(e) => e.into(),
            VendorError::Storage(e) | VendorError::Mail(e) => AppError::Internal(e),
        }
    }
}

/// What the register needs from the configuration.
#[derive(Debug, Clone)]
pub struct VendorSettings<'a> {
    pub calendar: &'a BusinessCalendar,
    /// Days customers are told in advance of a new sub-processor.
    pub notice_days: i64,
    /// Months between assessments for high, medium and low risk.
    pub reassessment_months: [i64; 3],
    /// Base of links in emails (may be empty: paths only).
    pub public_url: &'a str,
    /// Signs subscribers' confirmation and unsubscribe links.
    pub keyring: &'a crate::crypto::Keyring,
}

impl<'a> VendorSettings<'a> {
    pub fn new(
        config: &'a crate::config::Config,
        calendar: &'a BusinessCalendar,
        keyring: &'a crate::crypto::Keyring,
    ) -> Self {
        Self {
            keyring,
            calendar,
            notice_days: config.vendor_notice_days,
            reassessment_months: config.vendor_reassessment_months,
            public_url: config.public_url.trim_end_matches('/'),
        }
    }
}

pub fn subject(id: &str) -> Subject {
    Subject::new(SubjectKind::Vendor, id)
}

/// The fields of a vendor as typed (form, CSV, CLI).
#[derive(Debug, Clone, Default)]
pub struct VendorInput {
    pub name: String,
    pub legal_entity: String,
    pub website: String,
    pub purpose: String,
    pub data_categories: String,
    pub data_subjects: String,
    pub locations: String,
    pub transfer_mechanism: String,
    pub scc_module: String,
    pub access_level: String,
    pub parent_id: String,
    pub risk_override: String,
    pub risk_override_reason: String,
    pub owner_email: String,
    pub contract_start: String,
    pub contract_end: String,
    pub notes: String,
}

fn text(raw: &str, what: &str, min: usize, max: usize) -> Result<String, String> {
    let value = raw.trim();
    let n = value.chars().count();
    if n < min || n > max {
        return Err(if min == 0 {
            format!("the {what} must be at most {max} characters")
        } else {
            format!("the {what} must be {min} to {max} characters")
        });
    }
    Ok(value.to_owned())
}

fn date(raw: &str, what: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| Some(d.to_string()))
        .map_err(|_| format!("the {what} “{raw}” is not a date like 2027-01-31"))
}

/// Applies typed input to `vendor` (new or existing); says what is wrong otherwise.
fn apply(vendor: &mut Vendor, input: &VendorInput) -> Result<(), String> {
    vendor.name = text(&input.name, "name", 2, 200)?;
    vendor.legal_entity = text(&input.legal_entity, "legal entity", 2, 300)?;
    vendor.website = text(&input.website, "website", 0, 300)?;
    let web_address =
        vendor.website.starts_with("https://") || vendor.website.starts_with("http://");
    if !vendor.website.is_empty() && !web_address {
        return Err("the website must start with https://".into());
    }
    vendor.purpose = text(&input.purpose, "service purpose", 3, 1000)?;
    vendor.data_categories = model::data_categories(&input.data_categories)?;
    vendor.data_subjects = model::data_subjects(&input.data_subjects)?;
    if !vendor.data_categories.is_empty() && vendor.data_subjects.is_empty() {
        return Err("say whose personal data it is (data subjects)".into());
    }
    vendor.locations = model::locations(&input.locations)?;
    vendor.transfer = Transfer::parse(&input.transfer_mechanism, &input.scc_module)?;
    if vendor.transfer == Transfer::Adequacy {
        let uncovered: Vec<String> = model::outside_eea(&vendor.locations)
            .into_iter()
            .filter(|c| !model::ADEQUATE.contains(&c.as_str()))
            .collect();
        if !uncovered.is_empty() {
            return Err(format!(
                "no EU adequacy decision covers {}; record SCCs or BCRs instead",
                uncovered.join(", ")
            ));
        }
    }
    vendor.access_level = model::access_level(&input.access_level)?;
    let parent = input.parent_id.trim();
    vendor.parent_id = (!parent.is_empty()).then(|| parent.to_owned());
    if vendor.parent_id.as_deref() == Some(vendor.id.as_str()) {
        return Err("a vendor cannot be its own sub-processor".into());
    }
    let override_raw = input.risk_override.trim();
    if override_raw.is_empty() || override_raw == "derived" {
        vendor.risk_override = None;
        vendor.risk_override_reason = None;
    } else {
        let tier = RiskTier::parse(override_raw)?;
        let reason = input.risk_override_reason.trim();
        if reason.chars().count() < 10 || reason.chars().count() > 2000 {
            return Err(
                "give the reason for overriding the derived risk tier (10 to 2000 characters)"
                    .into(),
            );
        }
        vendor.risk_override = Some(tier);
        vendor.risk_override_reason = Some(reason.to_owned());
    }
    vendor.owner_email = crate::sla::format::email(input.owner_email.trim())
        .map_err(|_| "the owner must be an email address".to_owned())?
        .to_ascii_lowercase();
    vendor.contract_start = date(&input.contract_start, "contract start")?;
    vendor.contract_end = date(&input.contract_end, "contract end")?;
    if let (Some(start), Some(end)) = (&vendor.contract_start, &vendor.contract_end)
        && end < start
    {
        return Err("the contract ends before it starts".into());
    }
    vendor.notes = text(&input.notes, "notes", 0, 10_000)?;
    Ok(())
}

fn sentence(message: String) -> String {
    let mut message = message;
    if let Some(first) = message.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!("{message}.")
}

/// A new vendor record (state proposed) from input, not yet stored.
pub fn parse_new(input: &VendorInput, actor: &str, now: Millis) -> Result<Vendor, String> {
    let mut vendor = Vendor {
        id: uuid::Uuid::new_v4().to_string(),
        number: 0,
        name: String::new(),
        legal_entity: String::new(),
        website: String::new(),
        purpose: String::new(),
        data_categories: Vec::new(),
        data_subjects: Vec::new(),
        locations: Vec::new(),
        transfer: Transfer::None,
        access_level: "none".into(),
        parent_id: None,
        risk_override: None,
        risk_override_reason: None,
        owner_email: String::new(),
        contract_start: None,
        contract_end: None,
        notes: String::new(),
        state: State::Proposed,
        notice_started_at: None,
        notice_ends_at: None,
        activated_at: None,
        version: 1,
        created_by: actor.to_owned(),
        created_at: now,
    };
    apply(&mut vendor, input)?;
    Ok(vendor)
}

async fn check_parent(conn: &mut AnyConnection, vendor: &Vendor) -> Result<(), VendorError> {
    let mut next = vendor.parent_id.clone();
    let mut hops = 0;
    while let Some(parent_id) = next {
        if parent_id == vendor.id || hops > 20 {
            return Err(VendorError::Invalid(
                "The sub-processor chain would loop back to this vendor.".into(),
            ));
        }
        let parent = store::find(conn, &parent_id).await?.ok_or_else(|| {
            VendorError::Invalid(format!(
                "There is no vendor “{parent_id}” to be a sub-processor of."
            ))
        })?;
        next = parent.parent_id;
        hops += 1;
    }
    Ok(())
}

/// Stores a parsed vendor, starts the customer notice when it handles customer personal
/// data (subscribers are emailed at once), and audits.
pub async fn insert(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    mut vendor: Vendor,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vendor, VendorError> {
    check_parent(conn, &vendor).await?;
    let announce = vendor.handles_customer_data();
    if announce {
        notice::begin(&mut vendor, settings, now);
    }
    vendor.number = store::insert(conn, &vendor).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "vendor.create", format!("vendor:{}", vendor.id))
            .detail("number", vendor.number)
            .detail("name", vendor.name.as_str())
            .detail("risk_tier", vendor.risk_tier().as_str()),
    )
    .await?;
    if announce {
        notice::announce(conn, settings, &vendor, actor, meta, now).await?;
    }
    Ok(vendor)
}

/// Records a vendor from typed input.
pub async fn create(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    input: &VendorInput,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vendor, VendorError> {
    let vendor = parse_new(input, actor, now).map_err(|e| VendorError::Invalid(sentence(e)))?;
    insert(conn, settings, vendor, actor, meta, now).await
}

async fn load(conn: &mut AnyConnection, id: &str, version: i64) -> Result<Vendor, VendorError> {
    let vendor = store::find(conn, id).await?.ok_or(VendorError::NotFound)?;
    if vendor.version != version {
        return Err(VendorError::Conflict(format!(
            "VND-{} was changed by someone else while you were looking. Nothing was changed; \
             reload and try again.",
            vendor.number
        )));
    }
    Ok(vendor)
}

async fn save(
    conn: &mut AnyConnection,
    v: &Vendor,
    version: i64,
    now: Millis,
) -> Result<(), VendorError> {
    if !store::update(conn, v, version, now).await? {
        return Err(VendorError::Conflict(format!(
            "VND-{} was changed by someone else meanwhile. Nothing was changed.",
            v.number
        )));
    }
    Ok(())
}

/// Changes a vendor's fields. A vendor not yet active that now handles customer personal
/// data starts its customer notice.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    conn: &mut AnyConnection,
    settings: &VendorSettings<'_>,
    id: &str,
    version: i64,
    input: &VendorInput,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<Vendor, VendorError> {
    let mut vendor = load(conn, id, version).await?;
    let before_tier = vendor.risk_tier();
    apply(&mut vendor, input).map_err(|e| VendorError::Invalid(sentence(e)))?;
    check_parent(conn, &vendor).await?;
    let announce = vendor.handles_customer_data()
        && vendor.notice_started_at.is_none()
        && matches!(
            vendor.state,
            State::Proposed | State::Assessing | State::Approved
        );
    if announce {
        notice::begin(&mut vendor, settings, now);
    }
    save(conn, &vendor, version, now).await?;
    vendor.version += 1;
    let mut event = AuditEvent::new(actor, "vendor.update", format!("vendor:{id}"))
        .detail("risk_tier", vendor.risk_tier().as_str())
        .detail("transfer", vendor.transfer.label());
    if before_tier != vendor.risk_tier() {
        event = event.detail("risk_tier_before", before_tier.as_str());
    }
    if let Some(reason) = &vendor.risk_override_reason {
        event = event.detail("risk_override_reason", reason.as_str());
    }
    audit::append(conn, now, meta, event).await?;
    if announce {
        notice::announce(conn, settings, &vendor, actor, meta, now).await?;
    }
    Ok(vendor)
}

/// Days as milliseconds, for the notice period.
pub(crate) fn days(n: i64) -> Millis {
    n * DAY
}
