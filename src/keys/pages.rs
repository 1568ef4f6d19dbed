//! The key inventory (every key, its customer, scopes, use and state), rotation with a grace
//! period, and revocation.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::model::GRACE_CHOICES;
use super::store::{self, KeyFilter};
use crate::app::AppState;
use crate::customers::pages::{KeyRowView, key_row};
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::web::{Form, read_cookie};

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/keys", Access::Rbac("keys", "read"), key_list_get),
        PortalRoute::get("/keys/{id}", Access::Rbac("keys", "read"), key_detail_get),
        PortalRoute::get(
            "/keys/{id}/issued",
            Access::Rbac("keys", "write"),
            key_issued_get,
        ),
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
    show_once(
        &state,
        &visitor,
        &issued.id,
        issued.secret,
        Some(old.prefix),
        label,
    )
}

/// Carries a just-issued secret, sealed to the session, from the POST that made the key to
/// the one page that shows it. The POST answers with a redirect, so reloading that page
/// neither shows the secret again nor submits the form a second time (which issued another
/// key).
const ISSUED_COOKIE: &str = "tp_key_issued";

/// How long the sealed secret waits for its page, in seconds.
const ISSUED_COOKIE_SECONDS: i64 = 120;

#[derive(Serialize, Deserialize)]
struct IssuedSecret {
    key_id: String,
    secret: String,
    previous: Option<String>,
    grace: String,
}

fn issued_aad(session_id: &str) -> Vec<u8> {
    format!("key-issued:{session_id}").into_bytes()
}

fn cookie_header(value: &str) -> Result<HeaderValue, AppError> {
    HeaderValue::from_str(value).map_err(|e| AppError::Internal(e.into()))
}

/// Answers a POST that issued or rotated to key `key_id`: a redirect to the page that shows
/// `secret` once.
pub(crate) fn show_once(
    state: &AppState,
    visitor: &Visitor,
    key_id: &str,
    secret: String,
    previous: Option<String>,
    grace: &str,
) -> AppResult<Response> {
    let session = visitor.session()?;
    let payload = Zeroizing::new(
        serde_json::to_vec(&IssuedSecret {
            key_id: key_id.to_owned(),
            secret,
            previous,
            grace: grace.to_owned(),
        })
        .map_err(|e| AppError::Internal(e.into()))?,
    );
    let sealed = state.keyring.seal(&payload, &issued_aad(&session.id));
    let mut response = Redirect::to(&format!("/keys/{key_id}/issued")).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&visitor.ctx.set_cookie(
            ISSUED_COOKIE,
            &sealed,
            "Strict",
            Some(ISSUED_COOKIE_SECONDS),
        ))?,
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "keys/issued.html")]
struct KeyIssuedPage {
    shell: Shell,
    key_id: String,
    customer_id: String,
    customer_name: String,
    key_name: String,
    /// `None` once the secret has been shown.
    secret: Option<String>,
    prefix: String,
    previous: Option<String>,
    grace: String,
}

/// The page after issuing or rotating: the secret the first time, a notice afterwards.
async fn key_issued_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let key = store::find(&state.db.pool, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let session = visitor.session()?;
    let cookie = read_cookie(&headers, &visitor.ctx.cookie_name(ISSUED_COOKIE));
    let issued = cookie
        .as_deref()
        .and_then(|sealed| state.keyring.open(sealed, &issued_aad(&session.id)).ok())
        .and_then(|plain| serde_json::from_slice::<IssuedSecret>(&plain).ok())
        .filter(|issued| issued.key_id == key.id);
    let (secret, previous, grace) = match issued {
        Some(i) => (Some(i.secret), i.previous, i.grace),
        None => (None, None, String::new()),
    };
    let mut response = html(&KeyIssuedPage {
        shell: Shell::new(&state, &visitor, "/customers")?,
        key_id: key.id,
        customer_id: key.customer_id,
        customer_name: key.customer_name,
        key_name: key.name,
        secret,
        prefix: key.prefix,
        previous,
        grace,
    })?
    .into_response();
    if cookie.is_some() {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie_header(&visitor.ctx.clear_cookie(ISSUED_COOKIE))?,
        );
    }
    Ok(response)
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
