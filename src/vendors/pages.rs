//! Register pages: the list with filters, search and paging; adding, editing and importing
//! vendors; the detail page with the onboarding gate, state changes (confirmation before
//! offboarding or retiring) and activation. Assessments, DPAs, objections, the
//! questionnaire and subscribers are in [`super::records`].

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::{self, ACCESS_LEVELS, DATA_CATEGORIES, DATA_SUBJECTS, RiskTier};
use super::store::{self, Vendor, VendorFilter};
use super::{Activation, VendorInput, VendorSettings};
use crate::app::AppState;
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("vendors", "read");
    let write = Access::Rbac("vendors", "write");
    let mut routes = vec![
        PortalRoute::get("/vendors", read, vendor_list_get),
        PortalRoute::post("/vendors", write, vendor_create_post),
        PortalRoute::get("/vendors/new", write, vendor_new_get),
        PortalRoute::post("/vendors/import", write, vendor_import_post),
        PortalRoute::get("/vendors/{id}", read, vendor_detail_get),
        PortalRoute::get("/vendors/{id}/edit", write, vendor_edit_get),
        PortalRoute::post("/vendors/{id}/edit", write, vendor_edit_post),
        PortalRoute::post("/vendors/{id}/state", write, vendor_state_post),
        PortalRoute::post("/vendors/{id}/activate", write, vendor_activate_post),
    ];
    routes.extend(super::records::routes());
    routes
}

const PAGE_SIZE: i64 = 25;

/// The register settings from the running configuration.
pub fn settings(state: &AppState) -> VendorSettings<'_> {
    VendorSettings::new(&state.config, &state.sla_calendar, &state.keyring)
}

pub(crate) fn can_write(state: &AppState, visitor: &Visitor) -> AppResult<bool> {
    Ok(state
        .authz
        .allows(&visitor.session()?.roles, "vendors", "write"))
}

struct RowView {
    id: String,
    number: i64,
    name: String,
    purpose: String,
    state: &'static str,
    risk: &'static str,
    locations: String,
    personal: bool,
    planned_from: String,
}

#[derive(Template)]
#[template(path = "vendors/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<RowView>,
    state: String,
    q: String,
    special: bool,
    states: Vec<&'static str>,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    can_write: bool,
    imported: Option<i64>,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    special: String,
    page: Option<i64>,
    imported: Option<i64>,
}

fn encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

async fn vendor_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let special = !query.special.is_empty();
    let filter = VendorFilter {
        state: if query.state.trim().is_empty() {
            None
        } else {
            Some(model::State::parse(&query.state).map_err(AppError::BadRequest)?)
        },
        search: Some(query.q.chars().take(100).collect()),
        special_only: special,
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let mut conn = state.db.pool.acquire().await?;
    let (rows, total) = store::list(&mut conn, &filter).await?;
    let rows = rows
        .into_iter()
        .map(|v| RowView {
            planned_from: planned_from(&v),
            id: v.id.clone(),
            number: v.number,
            purpose: v.purpose.clone(),
            state: v.state.as_str(),
            risk: v.risk_tier().as_str(),
            locations: v.locations.join(", "),
            personal: v.handles_personal_data(),
            name: v.name,
        })
        .collect();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        format!(
            "/vendors?state={}&q={}&special={}&page={p}",
            encode(&query.state),
            encode(&query.q),
            if special { "1" } else { "" }
        )
    };
    html(&ListPage {
        shell: Shell::new(&state, &visitor, "/vendors")?,
        rows,
        state: query.state.clone(),
        q: query.q.clone(),
        special,
        states: model::State::ALL.iter().map(|s| s.as_str()).collect(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        can_write: can_write(&state, &visitor)?,
        imported: query.imported,
    })
}

/// "planned from 2027-02-14" for a vendor in its notice period that is not active yet.
pub(crate) fn planned_from(v: &Vendor) -> String {
    match (v.state, v.notice_ends_at) {
        (model::State::Proposed | model::State::Assessing | model::State::Approved, Some(ends)) => {
            super::notice::day(ends)
        }
        _ => String::new(),
    }
}

/// The vendor form, for adding and editing.
#[derive(Template)]
#[template(path = "vendors/form.html")]
struct FormPage {
    shell: Shell,
    action: String,
    title: String,
    version: i64,
    input: VendorInput,
    categories: Vec<(&'static str, &'static str, bool)>,
    subjects: Vec<(&'static str, &'static str, bool)>,
    access_levels: Vec<(&'static str, &'static str)>,
    tiers: Vec<&'static str>,
    /// (id, label) of every other vendor, for the sub-processor-of choice.
    parents: Vec<(String, String)>,
}

async fn form_page(
    state: &AppState,
    visitor: &Visitor,
    action: String,
    title: String,
    version: i64,
    input: VendorInput,
    own_id: Option<&str>,
) -> AppResult<Html<String>> {
    let mut conn = state.db.pool.acquire().await?;
    let (all, _) = store::list(
        &mut conn,
        &VendorFilter {
            limit: 5000,
            ..Default::default()
        },
    )
    .await?;
    let chosen = |list: &str, code: &str| list.split(',').any(|c| c.trim() == code);
    html(&FormPage {
        shell: Shell::new(state, visitor, "/vendors")?,
        action,
        title,
        version,
        categories: DATA_CATEGORIES
            .iter()
            .map(|c| (c.code, c.label, chosen(&input.data_categories, c.code)))
            .collect(),
        subjects: DATA_SUBJECTS
            .iter()
            .map(|s| (s.0, s.1, chosen(&input.data_subjects, s.0)))
            .collect(),
        access_levels: ACCESS_LEVELS.to_vec(),
        tiers: RiskTier::ALL.iter().map(|t| t.as_str()).collect(),
        parents: all
            .into_iter()
            .filter(|v| Some(v.id.as_str()) != own_id)
            .map(|v| (v.id.clone(), v.label()))
            .collect(),
        input,
    })
}

async fn vendor_new_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    let input = VendorInput {
        owner_email: visitor.session()?.email.clone(),
        locations: "DE".into(),
        ..Default::default()
    };
    form_page(
        &state,
        &visitor,
        "/vendors".into(),
        "Add a vendor".into(),
        0,
        input,
        None,
    )
    .await
}

/// The vendor form's fields; repeated checkboxes (categories, subjects) are joined.
fn input_from(pairs: &[(String, String)]) -> (VendorInput, i64) {
    let mut input = VendorInput::default();
    let mut version = 0;
    let mut categories = Vec::new();
    let mut subjects = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "name" => input.name = value.clone(),
            "legal_entity" => input.legal_entity = value.clone(),
            "website" => input.website = value.clone(),
            "purpose" => input.purpose = value.clone(),
            "data_categories" => categories.push(value.clone()),
            "data_subjects" => subjects.push(value.clone()),
            "locations" => input.locations = value.clone(),
            "transfer_mechanism" => input.transfer_mechanism = value.clone(),
            "scc_module" => input.scc_module = value.clone(),
            "access_level" => input.access_level = value.clone(),
            "parent_id" => input.parent_id = value.clone(),
            "risk_override" => input.risk_override = value.clone(),
            "risk_override_reason" => input.risk_override_reason = value.clone(),
            "owner_email" => input.owner_email = value.clone(),
            "contract_start" => input.contract_start = value.clone(),
            "contract_end" => input.contract_end = value.clone(),
            "notes" => input.notes = value.clone(),
            "version" => version = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    input.data_categories = categories.join(",");
    input.data_subjects = subjects.join(",");
    (input, version)
}

async fn vendor_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let (input, _) = input_from(&pairs);
    let mut tx = state.db.begin().await?;
    let vendor = super::create(
        &mut tx,
        &settings(&state),
        &input,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{}", vendor.id)).into_response())
}

#[derive(Deserialize)]
struct ImportForm {
    csv: String,
}

async fn vendor_import_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<ImportForm>,
) -> AppResult<Response> {
    let owner = visitor.session()?.email.clone();
    let mut tx = state.db.begin().await?;
    let saved = super::import::import_csv(
        &mut tx,
        &settings(&state),
        &form.csv,
        Some(&owner),
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors?imported={}", saved.len())).into_response())
}

fn input_of(v: &Vendor) -> VendorInput {
    VendorInput {
        name: v.name.clone(),
        legal_entity: v.legal_entity.clone(),
        website: v.website.clone(),
        purpose: v.purpose.clone(),
        data_categories: v.data_categories.join(","),
        data_subjects: v.data_subjects.join(","),
        locations: v.locations.join(", "),
        transfer_mechanism: v.transfer.mechanism().to_owned(),
        scc_module: v.transfer.module(),
        access_level: v.access_level.clone(),
        parent_id: v.parent_id.clone().unwrap_or_default(),
        risk_override: v
            .risk_override
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        risk_override_reason: v.risk_override_reason.clone().unwrap_or_default(),
        owner_email: v.owner_email.clone(),
        contract_start: v.contract_start.clone().unwrap_or_default(),
        contract_end: v.contract_end.clone().unwrap_or_default(),
        notes: v.notes.clone(),
    }
}

async fn vendor_edit_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let vendor = {
        let mut conn = state.db.pool.acquire().await?;
        store::find(&mut conn, &id)
            .await?
            .ok_or(AppError::NotFound)?
    };
    form_page(
        &state,
        &visitor,
        format!("/vendors/{id}/edit"),
        format!("Edit VND-{} {}", vendor.number, vendor.name),
        vendor.version,
        input_of(&vendor),
        Some(&id),
    )
    .await
}

async fn vendor_edit_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let (input, version) = input_from(&pairs);
    let mut tx = state.db.begin().await?;
    super::update(
        &mut tx,
        &settings(&state),
        &id,
        version,
        &input,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

#[derive(Deserialize)]
struct StateForm {
    version: i64,
    state: String,
    #[serde(default)]
    confirm: String,
}

async fn vendor_state_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<StateForm>,
) -> AppResult<Response> {
    let to = model::State::parse(&form.state).map_err(AppError::BadRequest)?;
    if to.is_destructive() && form.confirm != "yes" {
        return Err(AppError::BadRequest(format!(
            "Moving a vendor to {} ends the relationship and cannot be undone; tick the \
             confirmation box to go ahead. Nothing was changed.",
            to.as_str()
        )));
    }
    let mut tx = state.db.begin().await?;
    super::transition(
        &mut tx,
        &id,
        form.version,
        to,
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/vendors/{id}")).into_response())
}

#[derive(Deserialize)]
struct ActivateForm {
    version: i64,
}

async fn vendor_activate_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<ActivateForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    let outcome = super::activate(
        &mut tx,
        &id,
        Some(form.version),
        &visitor.actor(),
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    // The refusal is audited in this transaction, so it commits either way.
    tx.commit().await?;
    match outcome {
        Activation::Activated(_) => Ok(Redirect::to(&format!("/vendors/{id}")).into_response()),
        Activation::Refused(missing) => Err(AppError::Conflict(format!(
            "This vendor cannot become active yet. Missing: {}.",
            missing.join("; ")
        ))),
    }
}

use super::detail::vendor_detail_get;

/// Dates as the pages show them.
pub(crate) fn when(at: Option<crate::clock::Millis>) -> String {
    at.map(format_ms).unwrap_or_default()
}
