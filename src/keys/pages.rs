//! The key inventory (every key, its customer, scopes, use and state), rotation with a grace
//! period, and revocation.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::GRACE_CHOICES;
use super::store::{self, KeyFilter};
use crate::app::AppState;
use crate::customers::pages::{KeyIssuedPage, KeyRowView, key_row};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/keys", Access::Rbac("keys", "read"), key_list_get),
        PortalRoute::get("/keys/{id}", Access::Rbac("keys", "read"), key_detail_get),
        PortalRoute::post(
            "/keys/{id}/rotate",
            Access::Rbac("keys", "write"),
            key_rotate_post,
        ),
        PortalRoute::post(
            "/keys/{id}/revoke",
            Access::Rbac("keys", "write"),
            key_revoke_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 50;

#[derive(Template)]
#[template(path = "keys/list.html")]
struct KeyListPage {
    shell: Shell,
    keys: Vec<KeyRowView>,
    state: String,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    plaintext_scan: String,
    can_write_keys: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    customer: String,
    page: Option<i64>,
}

async fn key_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    if !["", "active", "expired", "revoked"].contains(&query.state.as_str()) {
        return Err(AppError::BadRequest(
            "Unknown state: use active, expired or revoked.".into(),
        ));
    }
    if query.customer.len() > 64 {
        return Err(AppError::BadRequest(
            "The customer filter is too long.".into(),
        ));
    }
    let now = state.now();
    let page = query.page.unwrap_or(1).max(1);
    let filter = KeyFilter {
        customer_id: query.customer.clone(),
        state: query.state.clone(),
        offset: (page - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    };
    let (keys, total) = store::list(&state.db, &filter, now).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("state", &filter.state)
            .append_pair("customer", &filter.customer_id)
            .append_pair("page", &p.to_string());
        format!("/keys?{}", s.finish())
    };
    let session = visitor.session()?;
    html(&KeyListPage {
        can_write_keys: state.authz.allows(&session.roles, "keys", "write"),
        shell: Shell::new(&state, &visitor, "/keys")?,
        keys: keys.into_iter().map(|k| key_row(k, now)).collect(),
        state: filter.state.clone(),
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| link(page - 1)),
        next_link: (page < pages).then(|| link(page + 1)),
        plaintext_scan: "Keys are stored only as HMAC-SHA256 with the pepper's key id; the \
                         inventory shows the 16-character display prefix."
            .into(),
    })
}

/// A chart with its SVG rendered, for the template.
struct ChartView {
    chart: crate::chart::Chart,
    svg: String,
}

#[derive(Template)]
#[template(path = "keys/detail.html")]
struct KeyDetailPage {
    shell: Shell,
    key: KeyRowView,
    charts: Vec<ChartView>,
}

/// One key: its facts and its traffic over the last 24 hours and 7 days by status class.
async fn key_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let key = store::find(&mut *conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut charts = Vec::new();
    for (hours, chart_id, title) in [
        (24, "traffic-24h", "Traffic in the last 24 hours"),
        (7 * 24, "traffic-7d", "Traffic in the last 7 days"),
    ] {
        let chart =
            crate::alerts::traffic::key_chart(&mut conn, &id, now, hours, chart_id, title).await?;
        charts.push(ChartView {
            svg: chart.svg(),
            chart,
        });
    }
    drop(conn);
    html(&KeyDetailPage {
        shell: Shell::new(&state, &visitor, "/keys")?,
        key: key_row(key, now),
        charts,
    })
}

#[derive(Deserialize)]
struct RotateForm {
    grace: String,
}

async fn key_rotate_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RotateForm>,
) -> AppResult<Response> {
    let (label, grace) = GRACE_CHOICES
        .iter()
        .find(|(label, _)| *label == form.grace)
        .copied()
        .ok_or_else(|| {
            AppError::BadRequest("Choose a grace period: none, 1h, 24h or 7d.".into())
        })?;
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let old = store::find(&mut *tx, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    if old.revoked_at.is_some() || old.expires_at.is_some_and(|e| e <= now) {
        return Err(AppError::Conflict(format!(
            "{} is no longer active and cannot be rotated. Issue a new key instead.",
            old.prefix
        )));
    }
    if old.replaced_by.is_some() {
        return Err(AppError::Conflict(format!(
            "{} has already been rotated.",
            old.prefix
        )));
    }
    let customer = crate::customers::store::find(&mut *tx, &old.customer_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let issued = super::rotate(
        &mut tx,
        &state.keyring,
        &customer,
        &old,
        grace,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await?;
    tx.commit().await?;
    state.key_cache.forget(&old.id);
    Ok(html(&KeyIssuedPage {
        shell: Shell::new(&state, &visitor, "/keys")?,
        customer_id: customer.id,
        customer_name: customer.name,
        key_name: old.name,
        secret: issued.secret,
        prefix: issued.prefix,
        previous: Some(old.prefix),
        grace: label.to_owned(),
    })?
    .into_response())
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    confirm: String,
}

async fn key_revoke_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    if form.confirm != "yes" {
        return Err(AppError::BadRequest(
            "Tick the confirmation box to revoke the key. Nothing was changed.".into(),
        ));
    }
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let key = store::find(&mut *tx, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !super::revoke(&mut tx, &key, &visitor.actor(), &visitor.ctx.meta(), now).await? {
        return Err(AppError::Conflict(format!(
            "{} is already revoked.",
            key.prefix
        )));
    }
    tx.commit().await?;
    state.key_cache.forget(&key.id);
    Ok(Redirect::to(&format!("/customers/{}?notice=revoked", key.customer_id)).into_response())
}
