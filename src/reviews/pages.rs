//! Campaign pages: the list with an "open" button for admins, a campaign with its report,
//! filterable and paginated items and a decision form on each item a reviewer may decide,
//! bulk decisions with a confirmation step, assignment, sign-off and the CSV export.
//! Refusals (self-review, not assigned, signed off) are 403 or 409 pages; nothing changes.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::actions;
use super::items::{self, ItemFilter};
use super::model::{Flag, ItemKind, Quarter};
use super::snapshot::Reviewer;
use super::store::{self, Summary};
use super::view::{ItemView, item_view};
use super::{Ctx, ReviewError, Settings};
use crate::app::AppState;
use crate::clock::format_ms;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};
use crate::sla::Countdown;
use crate::web::Form;

pub fn routes() -> Vec<PortalRoute> {
    let read = Access::Rbac("reviews", "read");
    let decide = Access::Rbac("reviews", "decide");
    let write = Access::Rbac("reviews", "write");
    vec![
        PortalRoute::get("/reviews", read, review_list_get),
        PortalRoute::post("/reviews/open", write, review_open_post),
        PortalRoute::get("/reviews/{id}", read, review_detail_get),
        PortalRoute::get("/reviews/{id}/export.csv", read, actions::review_export_get),
        PortalRoute::post(
            "/reviews/{id}/items/{item}/decision",
            decide,
            actions::review_decision_post,
        ),
        PortalRoute::post("/reviews/{id}/bulk", decide, actions::review_bulk_post),
        PortalRoute::post(
            "/reviews/{id}/items/{item}/assign",
            write,
            actions::review_assign_post,
        ),
        PortalRoute::post(
            "/reviews/{id}/sign-off",
            write,
            actions::review_sign_off_post,
        ),
    ]
}

const PAGE_SIZE: i64 = 50;
const CAMPAIGNS_PER_PAGE: i64 = 20;

/// A refusal as a readable page: 403 for who may not, 409 for what state does not allow.
#[derive(Template)]
#[template(path = "reviews/refused.html")]
struct RefusedPage {
    shell: Shell,
    status: u16,
    code: &'static str,
    title: &'static str,
    message: String,
    back: String,
}

pub(super) fn refusal(
    state: &AppState,
    visitor: &Visitor,
    back: &str,
    err: ReviewError,
) -> AppResult<Response> {
    let (status, code, title, message) = match err {
        ReviewError::Refused(message) => (
            StatusCode::FORBIDDEN,
            "review_refused",
            "Not allowed",
            message,
        ),
        ReviewError::Conflict(message) => (
            StatusCode::CONFLICT,
            "review_conflict",
            "Cannot do that now",
            message,
        ),
        ReviewError::Invalid(message) => return Err(AppError::BadRequest(message)),
        ReviewError::NotFound => return Err(AppError::NotFound),
        ReviewError::App(err) => return Err(err),
    };
    let page = RefusedPage {
        shell: Shell::new(state, visitor, "/reviews")?,
        status: status.as_u16(),
        code,
        title,
        message,
        back: back.to_owned(),
    };
    Ok((status, html(&page)?).into_response())
}

pub(super) fn ctx<'a>(state: &'a AppState, settings: &'a Settings, visitor: &Visitor) -> Ctx<'a> {
    Ctx {
        db: &state.db,
        key_cache: &state.key_cache,
        settings,
        meta: visitor.ctx.meta(),
        now: state.now(),
    }
}

pub(super) fn me(visitor: &Visitor) -> AppResult<Reviewer> {
    let session = visitor.session()?;
    Ok(Reviewer {
        id: session.staff_id.clone(),
        email: session.email.clone(),
    })
}

struct CampaignRow {
    id: String,
    quarter: String,
    state: String,
    opened_at: String,
    opened_by: String,
    items: i64,
    percent: i64,
    failed: i64,
}

#[derive(Template)]
#[template(path = "reviews/list.html")]
struct ReviewListPage {
    shell: Shell,
    rows: Vec<CampaignRow>,
    can_open: bool,
    current_quarter: String,
    page: i64,
    pages: i64,
    total: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    page: Option<i64>,
}

async fn review_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let page = query.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let (campaigns, total) = store::list_campaigns(
        &mut conn,
        CAMPAIGNS_PER_PAGE,
        (page - 1) * CAMPAIGNS_PER_PAGE,
    )
    .await?;
    let mut rows = Vec::with_capacity(campaigns.len());
    for c in campaigns {
        let summary = store::summary(&mut conn, &c.id).await?;
        rows.push(CampaignRow {
            percent: summary.completion_percent(),
            failed: summary.failed,
            id: c.id,
            quarter: c.quarter,
            state: c.state.replace('_', " "),
            opened_at: format_ms(c.opened_at),
            opened_by: c.opened_by,
            items: c.item_count,
        });
    }
    drop(conn);
    let pages = ((total + CAMPAIGNS_PER_PAGE - 1) / CAMPAIGNS_PER_PAGE).max(1);
    let settings = Settings::from_config(&state.config);
    let session = visitor.session()?;
    html(&ReviewListPage {
        shell: Shell::new(&state, &visitor, "/reviews")?,
        rows,
        can_open: state.authz.allows(&session.roles, "reviews", "write"),
        current_quarter: Quarter::containing(state.now(), settings.zone)
            .map(|q| q.to_string())
            .unwrap_or_default(),
        page,
        pages,
        total,
        prev_link: (page > 1).then(|| format!("/reviews?page={}", page - 1)),
        next_link: (page < pages).then(|| format!("/reviews?page={}", page + 1)),
    })
}

#[derive(Deserialize)]
struct OpenForm {
    #[serde(default)]
    quarter: String,
}

async fn review_open_post(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<OpenForm>,
) -> AppResult<Response> {
    let settings = Settings::from_config(&state.config);
    let now = state.now();
    let quarter = if form.quarter.trim().is_empty() {
        Quarter::containing(now, settings.zone)
            .ok_or_else(|| AppError::BadRequest("The clock is out of range.".into()))?
    } else {
        Quarter::parse(&form.quarter).map_err(AppError::BadRequest)?
    };
    let mut tx = state.db.begin().await?;
    let opened = super::open(
        &mut tx,
        &settings,
        &state.sla_calendar,
        quarter,
        &visitor.actor(),
        &visitor.ctx.meta(),
        now,
    )
    .await;
    match opened {
        Ok(campaign) => {
            tx.commit().await?;
            Ok(Redirect::to(&format!("/reviews/{}?notice=opened", campaign.id)).into_response())
        }
        Err(err) => refusal(&state, &visitor, "/reviews", err),
    }
}

#[derive(Template)]
#[template(path = "reviews/detail.html")]
struct ReviewDetailPage {
    shell: Shell,
    campaign: CampaignView,
    summary: Summary,
    percent: i64,
    countdown: Option<Countdown>,
    /// The due clock's timeline: started, reminded, breached, escalated, stopped.
    history: Vec<(String, &'static str, String)>,
    items: Vec<ItemView>,
    filter: FilterView,
    kinds: Vec<(&'static str, &'static str)>,
    flags: Vec<(&'static str, &'static str)>,
    statuses: Vec<&'static str>,
    can_decide: bool,
    can_sign_off: bool,
    total: i64,
    page: i64,
    pages: i64,
    prev_link: Option<String>,
    next_link: Option<String>,
    notice: Option<String>,
}

struct CampaignView {
    id: String,
    quarter: String,
    open: bool,
    opened: String,
    period: String,
    signed_off: String,
}

struct FilterView {
    kind: String,
    status: String,
    flag: String,
    mine: bool,
    q: String,
}

#[derive(Deserialize, Default)]
pub(super) struct DetailQuery {
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) flag: String,
    #[serde(default)]
    pub(super) mine: String,
    #[serde(default)]
    pub(super) q: String,
    pub(super) page: Option<i64>,
    pub(super) notice: Option<String>,
}

pub(super) fn parse_filter(query: &DetailQuery, me: &Reviewer) -> AppResult<ItemFilter> {
    if !query.kind.is_empty() {
        ItemKind::parse(&query.kind).map_err(AppError::BadRequest)?;
    }
    if !["", "open", "decided", "failed"].contains(&query.status.as_str()) {
        return Err(AppError::BadRequest(
            "Unknown status: use open, decided or failed.".into(),
        ));
    }
    if !query.flag.is_empty() && query.flag != "any" {
        Flag::parse(&query.flag).map_err(AppError::BadRequest)?;
    }
    if query.q.len() > 200 {
        return Err(AppError::BadRequest("The search text is too long.".into()));
    }
    Ok(ItemFilter {
        kind: query.kind.clone(),
        status: query.status.clone(),
        flag: query.flag.clone(),
        reviewer_id: if query.mine == "1" {
            me.id.clone()
        } else {
            String::new()
        },
        query: query.q.trim().to_owned(),
    })
}

fn filter_link(id: &str, filter: &ItemFilter, mine: bool, page: i64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("kind", &filter.kind)
        .append_pair("status", &filter.status)
        .append_pair("flag", &filter.flag)
        .append_pair("mine", if mine { "1" } else { "" })
        .append_pair("q", &filter.query)
        .append_pair("page", &page.to_string());
    format!("/reviews/{id}?{}", s.finish())
}

async fn review_detail_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> AppResult<Html<String>> {
    let me = me(&visitor)?;
    let filter = parse_filter(&query, &me)?;
    let page = query.page.unwrap_or(1).max(1);
    let now = state.now();
    let mut conn = state.db.pool.acquire().await?;
    let campaign = store::find_campaign(&mut conn, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    let summary = store::summary(&mut conn, &id).await?;
    let (items, total) =
        items::page(&mut conn, &id, &filter, PAGE_SIZE, (page - 1) * PAGE_SIZE).await?;
    let history = crate::sla::events_for_subject(&mut conn, &super::subject(&id))
        .await?
        .into_iter()
        .map(|e| (format_ms(e.at), e.kind.as_str(), e.detail))
        .collect();
    let clock = crate::sla::for_subject(&mut conn, &super::subject(&id))
        .await?
        .into_iter()
        .find(|c| c.name == super::CLOCK);
    drop(conn);
    let session = visitor.session()?;
    let can_decide = state.authz.allows(&session.roles, "reviews", "decide");
    let can_write = state.authz.allows(&session.roles, "reviews", "write");
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let mine = query.mine == "1";
    let notice = query.notice.as_deref().and_then(|n| match n {
        "opened" => {
            Some("Campaign opened: every staff role grant and active API key is listed below.")
        }
        "decided" => Some("Decision recorded."),
        "failed" => Some(
            "Decision recorded, but the change failed: the item stays open and is shown red \
             with the reason. Decide it again once the cause is fixed.",
        ),
        "assigned" => Some("Item reassigned."),
        "signed_off" => Some("Campaign signed off; it is now read-only."),
        "bulk" => Some("Bulk decision recorded on the matching items you may decide."),
        _ => None,
    });
    html(&ReviewDetailPage {
        shell: Shell::new(&state, &visitor, "/reviews")?,
        percent: summary.completion_percent(),
        countdown: clock.as_ref().map(|c| Countdown::of(c, now)),
        history,
        items: items
            .into_iter()
            .map(|i| item_view(i, &campaign, &me, can_decide, can_write))
            .collect(),
        kinds: vec![("staff_role", "staff roles"), ("api_key", "API keys")],
        flags: Flag::ALL.iter().map(|f| (f.as_str(), f.label())).collect(),
        statuses: vec!["open", "decided", "failed"],
        can_decide: can_decide && campaign.is_open(),
        can_sign_off: can_write && campaign.is_open(),
        summary,
        total,
        page,
        pages,
        prev_link: (page > 1).then(|| filter_link(&id, &filter, mine, page - 1)),
        next_link: (page < pages).then(|| filter_link(&id, &filter, mine, page + 1)),
        filter: FilterView {
            kind: filter.kind.clone(),
            status: filter.status.clone(),
            flag: filter.flag.clone(),
            mine,
            q: filter.query.clone(),
        },
        campaign: CampaignView {
            open: campaign.is_open(),
            opened: format!(
                "{} by {}",
                format_ms(campaign.opened_at),
                campaign.opened_by
            ),
            period: format!(
                "{} to {}",
                format_ms(campaign.period_start),
                format_ms(campaign.period_end)
            ),
            signed_off: match (&campaign.signed_off_by, campaign.signed_off_at) {
                (Some(by), Some(at)) => format!("{} by {by}", format_ms(at)),
                _ => String::new(),
            },
            id: campaign.id,
            quarter: campaign.quarter,
        },
        notice: notice.map(str::to_owned),
    })
}
