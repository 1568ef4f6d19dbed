//! The public sub-processor list (`/trust/subprocessors`, `.json`, `.atom` of changes),
//! generated from the register and never hand-edited: active vendors handling customer
//! personal data and planned ones in their notice period, with name, purpose, location and
//! transfer mechanism only — never owner, score, notes or anything else internal. Plus the
//! double opt-in subscribe form. Every route is rate-limited per client network.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::model::State as VendorState;
use super::store::{self, Vendor};
use super::{notice, pages::settings};
use crate::app::AppState;
use crate::client_net::ClientNetwork;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    vec![
        PortalRoute::get("/trust/subprocessors", Access::PublicForm, list_get),
        PortalRoute::get("/trust/subprocessors.json", Access::Public, json_get),
        PortalRoute::get("/trust/subprocessors.atom", Access::Public, atom_get),
        PortalRoute::post(
            "/trust/subprocessors/subscribe",
            Access::PublicForm,
            subscribe_post,
        ),
        PortalRoute::get(
            "/trust/subprocessors/confirm",
            Access::PublicForm,
            confirm_get,
        ),
        PortalRoute::post(
            "/trust/subprocessors/confirm",
            Access::PublicForm,
            confirm_post,
        ),
        PortalRoute::get(
            "/trust/subprocessors/unsubscribe",
            Access::PublicForm,
            unsubscribe_get,
        ),
        PortalRoute::post(
            "/trust/subprocessors/unsubscribe",
            Access::PublicForm,
            unsubscribe_post,
        ),
    ]
}

/// The 429 response when this client network has used up its requests.
fn limited(state: &AppState, visitor: &Visitor) -> Option<Response> {
    let network = visitor
        .ctx
        .client_ip
        .as_deref()
        .and_then(ClientNetwork::parse);
    state.trust_limiter.check(network).err().map(|wait| {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(format!(
                "<!doctype html><title>Too many requests</title><h1>Too many requests</h1>\
                 <p>Please try again in {wait} seconds.</p>"
            )),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    })
}

/// One entry of the public list: exactly what customers are told, nothing internal.
#[derive(Debug, Clone, Serialize)]
pub struct PublicEntry {
    pub name: String,
    pub purpose: String,
    pub locations: Vec<String>,
    pub transfer_mechanism: String,
    /// `active` or `planned`.
    pub status: &'static str,
    /// `YYYY-MM-DD` for planned vendors: the end of the notice period.
    pub planned_from: Option<String>,
}

impl PublicEntry {
    fn of(v: &Vendor) -> Self {
        let planned = v.state != VendorState::Active;
        Self {
            name: v.name.clone(),
            purpose: v.purpose.clone(),
            locations: v.locations.clone(),
            transfer_mechanism: if v.transfer.label().is_empty() {
                "none needed (EU/EEA)".into()
            } else {
                v.transfer.label()
            },
            status: if planned { "planned" } else { "active" },
            planned_from: if planned {
                v.notice_ends_at.map(notice::day)
            } else {
                None
            },
        }
    }
}

/// The public list, from the register.
pub async fn entries(conn: &mut sqlx::AnyConnection) -> Result<Vec<PublicEntry>, sqlx::Error> {
    Ok(store::public(conn)
        .await?
        .iter()
        .map(PublicEntry::of)
        .collect())
}

#[derive(Template)]
#[template(path = "trust/subprocessors.html")]
struct ListPage {
    entries: Vec<PublicEntry>,
    csrf: String,
    notice_days: i64,
}

async fn list_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    let mut conn = state.db.pool.acquire().await?;
    let page = ListPage {
        entries: entries(&mut conn).await?,
        csrf: visitor.csrf.clone(),
        notice_days: state.config.vendor_notice_days,
    };
    Ok(Html(page.render()?).into_response())
}

async fn json_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    let mut conn = state.db.pool.acquire().await?;
    let body = serde_json::json!({ "subprocessors": entries(&mut conn).await? });
    Ok(axum::Json(body).into_response())
}

struct FeedEntry {
    id: String,
    title: String,
    updated: String,
    content: String,
}

#[derive(Template)]
#[template(path = "trust/subprocessors_feed.xml", escape = "html")]
struct Feed {
    base: String,
    updated: String,
    entries: Vec<FeedEntry>,
}

fn rfc3339(at: crate::clock::Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

async fn atom_get(State(state): State<AppState>, visitor: Visitor) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    let mut conn = state.db.pool.acquire().await?;
    let changes = notice::changes(&mut conn, 100).await?;
    let mut entries = Vec::new();
    for change in &changes {
        let Some(v) = store::find(&mut conn, &change.vendor_id).await? else {
            continue;
        };
        if !v.handles_customer_data() {
            continue;
        }
        let e = PublicEntry::of(&v);
        entries.push(FeedEntry {
            id: format!("urn:uuid:{}", change.id),
            title: change.summary.clone(),
            updated: rfc3339(change.at),
            content: format!(
                "{} — purpose: {}; location: {}; transfer mechanism: {}.",
                e.name,
                e.purpose,
                e.locations.join(", "),
                e.transfer_mechanism
            ),
        });
        if entries.len() >= 50 {
            break;
        }
    }
    let feed = Feed {
        base: state.config.public_url.trim_end_matches('/').to_owned(),
        updated: rfc3339(changes.first().map_or(0, |c| c.at)),
        entries,
    };
    let mut response = feed.render()?.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/atom+xml; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "trust/message.html")]
struct MessagePage {
    title: String,
    message: String,
    /// A confirmation form: (action, subscriber id, token, button label).
    form: Option<(String, String, String, String)>,
    csrf: String,
}

fn message(title: &str, text: &str) -> AppResult<Response> {
    let page = MessagePage {
        title: title.to_owned(),
        message: text.to_owned(),
        form: None,
        csrf: String::new(),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
struct SubscribeForm {
    email: String,
}

async fn subscribe_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<SubscribeForm>,
) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    let mut tx = state.db.begin().await?;
    super::notice::subscribe(
        &mut tx,
        &settings(&state),
        &form.email,
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    message(
        "Check your inbox",
        "If the address can receive notices, an email with a confirmation link is on its way. \
         Notices start once you confirm.",
    )
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    s: String,
    #[serde(default)]
    t: String,
}

fn link_page(visitor: &Visitor, purpose: &str, q: &LinkQuery) -> AppResult<Response> {
    let (title, button) = if purpose == "confirm" {
        ("Confirm your subscription", "Confirm")
    } else {
        ("Unsubscribe", "Unsubscribe")
    };
    let page = MessagePage {
        title: title.to_owned(),
        message: format!("{button} sub-processor change notices for this address?"),
        form: Some((
            format!("/trust/subprocessors/{purpose}"),
            q.s.chars().take(64).collect(),
            q.t.chars().take(128).collect(),
            button.to_owned(),
        )),
        csrf: visitor.csrf.clone(),
    };
    Ok(Html(page.render()?).into_response())
}

async fn confirm_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<LinkQuery>,
) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    link_page(&visitor, "confirm", &q)
}

async fn unsubscribe_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(q): Query<LinkQuery>,
) -> AppResult<Response> {
    if let Some(limited) = limited(&state, &visitor) {
        return Ok(limited);
    }
    link_page(&visitor, "unsubscribe", &q)
}

async fn follow(
    state: &AppState,
    visitor: &Visitor,
    purpose: &str,
    q: &LinkQuery,
) -> AppResult<Response> {
    if let Some(limited) = limited(state, visitor) {
        return Ok(limited);
    }
    let mut tx = state.db.begin().await?;
    let ok = notice::follow_link(
        &mut tx,
        &state.keyring,
        purpose,
        &q.s,
        &q.t,
        &visitor.ctx.meta(),
        state.now(),
    )
    .await?;
    tx.commit().await?;
    if !ok {
        return Err(AppError::BadRequest(
            "This link is not valid (it may have been cut short by your mail program). \
             Subscribe again from the sub-processor page."
                .into(),
        ));
    }
    if purpose == "confirm" {
        message(
            "Subscribed",
            "You will be emailed when a sub-processor handling customer data is planned.",
        )
    } else {
        message("Unsubscribed", "You will not receive further notices.")
    }
}

async fn confirm_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(q): Form<LinkQuery>,
) -> AppResult<Response> {
    follow(&state, &visitor, "confirm", &q).await
}

async fn unsubscribe_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(q): Form<LinkQuery>,
) -> AppResult<Response> {
    follow(&state, &visitor, "unsubscribe", &q).await
}
