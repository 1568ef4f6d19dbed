//! The audit-log page: newest first, filterable by actor, action and outcome, paged by
//! sequence number so it stays fast at any size.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::{AuditFilter, list};
use crate::app::AppState;
use crate::clock::format_ms_precise;
use crate::error::{AppError, AppResult};
use crate::portal::routes::{Access, PortalRoute, Visitor};
use crate::portal::shell::{Shell, html};

pub fn routes() -> Vec<PortalRoute> {
    vec![PortalRoute::get(
        "/audit",
        Access::Rbac("audit", "read"),
        audit_list_get,
    )]
}

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    before: Option<i64>,
}

struct AuditRowView {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    client_ip: String,
    request_id: String,
    target_href: Option<String>,
    details: crate::portal::labelled::Record,
    hash_prefix: String,
}

#[derive(Template)]
#[template(path = "audit/list.html")]
struct AuditListPage {
    shell: Shell,
    rows: Vec<AuditRowView>,
    actor: String,
    action: String,
    outcome: String,
    older_link: Option<String>,
    newest_link: Option<String>,
    head_seq: i64,
    head_hash: String,
}

async fn audit_list_get(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<AuditQuery>,
) -> AppResult<Html<String>> {
    let outcome = match query.outcome.as_str() {
        "" | "success" | "failure" | "denied" => query.outcome.clone(),
        other => {
            return Err(AppError::BadRequest(format!(
                "Unknown outcome “{}”: use success, failure or denied.",
                crate::web::clip(other, 20)
            )));
        }
    };
    if query.actor.len() > 254 || query.action.len() > 100 {
        return Err(AppError::BadRequest("A filter is too long.".into()));
    }
    let filter = AuditFilter {
        actor: query.actor.trim().to_owned(),
        action: query.action.trim().to_owned(),
        outcome,
        before_seq: query.before.filter(|b| *b > 0),
        limit: PAGE_SIZE,
    };
    let rows = list(&state.db, &filter).await?;
    let (head_seq, head_hash) = super::head(&state.db).await?;
    let filter_query = |before: Option<i64>| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("actor", &filter.actor)
            .append_pair("action", &filter.action)
            .append_pair("outcome", &filter.outcome);
        if let Some(b) = before {
            query.append_pair("before", &b.to_string());
        }
        format!("/audit?{}", query.finish())
    };
    let older_link = if rows.len() as i64 == PAGE_SIZE {
        rows.last().map(|r| filter_query(Some(r.seq)))
    } else {
        None
    };
    let newest_link = filter.before_seq.map(|_| filter_query(None));
    let rows = rows
        .into_iter()
        .map(|r| AuditRowView {
            client_ip: r.shown_ip(),
            seq: r.seq,
            at: format_ms_precise(r.at),
            actor: r.actor,
            action: r.action,
            target_href: crate::portal::labelled::target_href(&r.target),
            target: r.target,
            outcome: r.outcome,
            request_id: r.request_id.unwrap_or_default(),
            details: crate::portal::labelled::Record::of(&r.details),
            hash_prefix: r.hash.chars().take(12).collect(),
        })
        .collect();
    html(&AuditListPage {
        shell: Shell::new(&state, &visitor, "/audit")?,
        rows,
        actor: filter.actor.clone(),
        action: filter.action.clone(),
        outcome: filter.outcome.clone(),
        older_link,
        newest_link,
        head_seq,
        head_hash,
    })
}
