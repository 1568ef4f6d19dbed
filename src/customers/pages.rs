//! Customer pages: list with search, create, detail with settings and keys, issue a key.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::store::{self, Customer};
use super::{CustomerName, RetentionDays};
use crate::app::AppState;
use crate::audit::{self, AuditEvent};
use crate::clock::{DAY, format_ms};
use crate::db::is_unique_violation;
use crate::error::{AppError, AppResult};
use crate::keys::format::KeyEnv;
use crate::keys::model::{KeyState, Scope};
use crate::keys::store::{KeyFilter, KeyRecord};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::staff::model::Email;
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("customers", "read");
    let write = Access::Rbac("customers", "write");
    vec![
        PortalRoute::get("/customers", read, customer_list_get),
        PortalRoute::get("/customers/new", write, customer_new_get),
        PortalRoute::post("/customers", write, customer_create_post),
        PortalRoute::get("/customers/{id}", read, customer_detail_get),
        PortalRoute::post("/customers/{id}/settings", write, customer_settings_post),
        PortalRoute::post(
            "/customers/{id}/keys",
            Access::Rbac("keys", "write"),
            customer_key_create_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 25;

struct CustomerRow {
    id: String,
    name: String,
    contact_email: String,
    environment: String,
    retention: String,
    state: String,
    active_keys: i64,
    images: i64,
}

fn retention_label(days: i64) -> String {
    match days {
        0 => "not kept".to_owned(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

#[derive(Template)]
#[template(path = "customers/list.html")]
struct CustomerListPage {
    shell: Shell,
    rows: Vec<CustomerRow>,
    q: String,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    can_write: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<i64>,
}

async fn customer_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    if query.q.len() > 254 {
        return Err(AppError::BadRequest("The search text is too long.".into()));
    }
    let page = query.page.unwrap_or(1).max(1);
    let q = query.q.trim().to_owned();
    let (rows, total) = store::list(
        &state.db,
        &q,
        (page - 1) * PAGE_SIZE,
        PAGE_SIZE,
        state.now(),
    )
    .await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("q", &q).append_pair("page", &p.to_string());
        format!("/customers?{}", s.finish())
    };
    let session = visitor.session()?;
    html(&CustomerListPage {
        shell: Shell::new(&state, &visitor, "/customers")?,
        rows: rows
            .into_iter()
            .map(|r| CustomerRow {
                retention: retention_label(r.customer.retention_days),
                id: r.customer.id,
                name: r.customer.name,
                contact_email: r.customer.contact_email,
                environment: r.customer.environment,
                state: r.customer.state,
                active_keys: r.active_keys,
                images: r.images,
            })
            .collect(),
        q: q.clone(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        can_write: state.authz.allows(&session.roles, "customers", "write"),
    })
}

#[derive(Template)]
#[template(path = "customers/new.html")]
struct CustomerNewPage {
    shell: Shell,
    name: String,
    contact_email: String,
    environment: String,
    retention_days: String,
    error: Option<String>,
}

async fn customer_new_get(
    State(state): State<AppState>,
    visitor: Visitor,
) -> AppResult<Html<String>> {
    html(&CustomerNewPage {
        shell: Shell::new(&state, &visitor, "/customers")?,
        name: String::new(),
        contact_email: String::new(),
        environment: "live".into(),
        retention_days: "30".into(),
        error: None,
    })
}

#[derive(Deserialize)]
struct CustomerForm {
    name: String,
    contact_email: String,
    environment: String,
    retention_days: String,
}

async fn customer_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CustomerForm>,
) -> AppResult<Response> {
    let rerender = |error: String| -> AppResult<Response> {
        let page = CustomerNewPage {
            shell: Shell::new(&state, &visitor, "/customers")?,
            name: crate::web::clip(form.name.trim(), 100),
            contact_email: crate::web::clip(form.contact_email.trim(), 254),
            environment: crate::web::clip(&form.environment, 10),
            retention_days: crate::web::clip(&form.retention_days, 10),
            error: Some(error),
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response())
    };
    let name = match CustomerName::parse(&form.name) {
        Ok(n) => n,
        Err(msg) => return rerender(msg),
    };
    let contact = match Email::parse(&form.contact_email) {
        Ok(e) => e,
        Err(msg) => return rerender(msg),
    };
    let env = match KeyEnv::parse(&form.environment) {
        Ok(e) => e,
        Err(msg) => return rerender(msg),
    };
    let retention = match RetentionDays::parse(&form.retention_days) {
        Ok(r) => r,
        Err(msg) => return rerender(msg),
    };
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let id = match store::insert(
        &mut tx,
        &name,
        &contact,
        env,
        retention,
        &visitor.actor(),
        now,
    )
    .await
    {
        Ok(id) => id,
        Err(err) if is_unique_violation(&err) => {
            return rerender(format!(
                "A customer named {} already exists.",
                name.as_str()
            ));
        }
        Err(err) => return Err(err.into()),
    };
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "customer.create", format!("customer:{id}"))
            .detail("name", name.as_str())
            .detail("environment", env.as_str())
            .detail("retention_days", retention.days()),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/customers/{id}")).into_response())
}

pub(crate) fn key_row(k: KeyRecord, now: i64) -> KeyRowView {
    KeyRowView {
        state: KeyState::of(k.revoked_at, k.expires_at, now).as_str(),
        id: k.id,
        customer_id: k.customer_id,
        customer_name: k.customer_name,
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes.replace(',', ", "),
        created_at: format_ms(k.created_at),
        created_by: k.created_by,
        expires_at: k
            .expires_at
            .map(format_ms)
            .unwrap_or_else(|| "never".into()),
        last_used_at: k
            .last_used_at
            .map(format_ms)
            .unwrap_or_else(|| "never".into()),
        request_count: k.request_count,
    }
}

/// A key as the pages show it.
pub(crate) struct KeyRowView {
    pub id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: String,
    pub last_used_at: String,
    pub request_count: i64,
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "customers/detail.html")]
struct CustomerDetailPage {
    shell: Shell,
    customer: CustomerView,
    keys: Vec<KeyRowView>,
    can_write: bool,
    can_write_keys: bool,
    notice: Option<String>,
    error: Option<String>,
}

struct CustomerView {
    id: String,
    name: String,
    contact_email: String,
    environment: String,
    retention_days: i64,
    retention: String,
    active: bool,
    version: i64,
    created_at: String,
}

#[derive(Deserialize)]
struct DetailQuery {
    notice: Option<String>,
}

async fn detail_page(
    state: &AppState,
    visitor: &Visitor,
    customer: Customer,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<CustomerDetailPage> {
    let now = state.now();
    let (keys, _) = crate::keys::store::list(
        &state.db,
        &KeyFilter {
            customer_id: customer.id.clone(),
            state: String::new(),
            offset: 0,
            limit: 200,
        },
        now,
    )
    .await?;
    let session = visitor.session()?;
    Ok(CustomerDetailPage {
        shell: Shell::new(state, visitor, "/customers")?,
        keys: keys.into_iter().map(|k| key_row(k, now)).collect(),
        can_write: state.authz.allows(&session.roles, "customers", "write"),
        can_write_keys: state.authz.allows(&session.roles, "keys", "write"),
        customer: CustomerView {
            active: customer.is_active(),
            retention: retention_label(customer.retention_days),
            id: customer.id,
            name: customer.name,
            contact_email: customer.contact_email,
            environment: customer.environment,
            retention_days: customer.retention_days,
            version: customer.version,
            created_at: format_ms(customer.created_at),
        },
        notice,
        error,
    })
}

async fn customer_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> AppResult<Html<String>> {
    let customer = store::find(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let notice = match query.notice.as_deref() {
        Some("saved") => Some("Settings saved.".to_owned()),
        Some("revoked") => {
            Some("Key revoked. It stops working everywhere within a second.".to_owned())
        }
        _ => None,
    };
    html(&detail_page(&state, &visitor, customer, notice, None).await?)
}

#[derive(Deserialize)]
struct SettingsForm {
    version: i64,
    retention_days: String,
    #[serde(default)]
    active: String,
}

async fn customer_settings_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<SettingsForm>,
) -> AppResult<Response> {
    let customer = store::find(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let retention = match RetentionDays::parse(&form.retention_days) {
        Ok(r) => r,
        Err(msg) => {
            let page = detail_page(&state, &visitor, customer, None, Some(msg)).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response());
        }
    };
    let active = form.active == "yes";
    let now = state.now();
    let mut tx = state.db.begin().await?;
    if !store::update_settings(&mut tx, &id, form.version, retention, active, now).await? {
        return Err(AppError::Conflict(format!(
            "{} was changed by someone else while you were looking. Nothing was changed; reload and try again.",
            customer.name
        )));
    }
    audit::append(
        &mut tx,
        now,
        &visitor.ctx.meta(),
        AuditEvent::new(visitor.actor(), "customer.update", format!("customer:{id}"))
            .detail("retention_days", retention.days())
            .detail("previous_retention_days", customer.retention_days)
            .detail("state", if active { "active" } else { "suspended" }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/customers/{id}?notice=saved")).into_response())
}

#[derive(Deserialize)]
struct KeyForm {
    name: String,
    #[serde(default)]
    scope_detect: String,
    #[serde(default)]
    scope_read: String,
    #[serde(default)]
    scope_delete: String,
    #[serde(default)]
    expires_in_days: String,
}

async fn customer_key_create_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<KeyForm>,
) -> AppResult<Response> {
    let customer = store::find(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut problems = Vec::new();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        problems.push(
            "Give the key a name of 1 to 100 characters (e.g. the system that uses it).".to_owned(),
        );
    }
    let scopes: Vec<Scope> = [
        (form.scope_detect == "yes", Scope::FacesDetect),
        (form.scope_read == "yes", Scope::ImagesRead),
        (form.scope_delete == "yes", Scope::ImagesDelete),
    ]
    .into_iter()
    .filter_map(|(on, scope)| on.then_some(scope))
    .collect();
    if scopes.is_empty() {
        problems.push("Choose at least one scope.".to_owned());
    }
    let now = state.now();
    let expires_at = match form.expires_in_days.trim() {
        "" => None,
        days => match days.parse::<i64>() {
            Ok(d) if (1..=3650).contains(&d) => Some(now + d * DAY),
            _ => {
                problems.push("Expiry must be empty (never) or 1 to 3650 days.".to_owned());
                None
            }
        },
    };
    if !customer.is_active() {
        problems.push("This customer is suspended; activate it before issuing keys.".to_owned());
    }
    if !problems.is_empty() {
        let page = detail_page(&state, &visitor, customer, None, Some(problems.join(" "))).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)?).into_response());
    }
    let mut tx = state.db.begin().await?;
    let issued = crate::keys::issue(
        &mut tx,
        &state.keyring,
        &customer,
        name,
        &scopes,
        expires_at,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    crate::keys::pages::show_once(&state, &visitor, &issued.id, issued.secret, None, "")
}
