//! One item as the campaign page shows it: the snapshot facts in words, flags, the decision
//! and its execution, and whether the visitor may decide it (and if not, why).

use super::ReviewError;
use super::items::Item;
use super::model::{Execution, Flag, ItemKind};
use super::snapshot::Reviewer;
use super::store::Campaign;
use crate::clock::{Millis, format_ms};

pub(super) struct ItemView {
    pub(super) id: String,
    pub(super) number: i64,
    pub(super) kind: &'static str,
    pub(super) is_key: bool,
    pub(super) subject: String,
    /// Role, or the key's customer and scopes.
    pub(super) what: String,
    pub(super) facts: Vec<(&'static str, String)>,
    pub(super) flags: Vec<&'static str>,
    pub(super) reviewer: String,
    pub(super) decision: String,
    pub(super) dropped: String,
    pub(super) justification: String,
    pub(super) decided: String,
    pub(super) execution: &'static str,
    pub(super) execution_error: String,
    pub(super) failed: bool,
    /// The visitor may decide it now.
    pub(super) can_decide: bool,
    /// Why the visitor may not, when they are a reviewer.
    pub(super) why_not: String,
    pub(super) scopes: Vec<String>,
    pub(super) can_assign: bool,
}

fn ms_or(at: Option<Millis>, none: &str) -> String {
    at.map(format_ms).unwrap_or_else(|| none.to_owned())
}

pub(super) fn item_view(
    item: Item,
    campaign: &Campaign,
    me: &Reviewer,
    can_decide_role: bool,
    can_assign: bool,
) -> ItemView {
    let kind = item.kind();
    let is_key = kind == Some(ItemKind::ApiKey);
    let facts = if is_key {
        vec![
            ("created", ms_or(item.key_created_at, "")),
            ("issued by", item.key_created_by.clone().unwrap_or_default()),
            ("last used", ms_or(item.last_used_at, "never")),
            (
                "requests last quarter",
                item.requests_in_period.unwrap_or_default().to_string(),
            ),
            ("expires", ms_or(item.expires_at, "never")),
        ]
    } else {
        vec![
            ("granted by", item.granted_by.clone().unwrap_or_default()),
            ("granted", ms_or(item.granted_at, "")),
            ("MFA", item.mfa.clone().unwrap_or_default()),
            ("last login", ms_or(item.last_login_at, "never")),
            ("account since", ms_or(item.account_created_at, "")),
        ]
    };
    let why_not = if !can_decide_role {
        String::new()
    } else if let Err(err) = super::check_may_decide(campaign, &item, me) {
        match err {
            ReviewError::Refused(_) => me
                .conflict_with(&item)
                .map(|w| format!("You may not decide this: {w}."))
                .unwrap_or_else(|| "Assigned to another reviewer.".into()),
            _ => String::new(),
        }
    } else {
        String::new()
    };
    let can_decide = can_decide_role && super::check_may_decide(campaign, &item, me).is_ok();
    let what = if is_key {
        format!(
            "{} · {}",
            item.customer_name.clone().unwrap_or_default(),
            item.scopes.clone().unwrap_or_default()
        )
    } else {
        item.role.clone().unwrap_or_default()
    };
    let execution = item.execution();
    ItemView {
        scopes: item
            .scopes
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        can_assign: can_assign && campaign.is_open() && item.decision.is_none(),
        id: item.id.clone(),
        number: item.number,
        kind: kind.map(ItemKind::label).unwrap_or("unknown"),
        is_key,
        subject: item.subject_label.clone(),
        what,
        facts,
        flags: item.flags().into_iter().map(Flag::label).collect(),
        reviewer: item
            .reviewer_email
            .clone()
            .unwrap_or_else(|| "unassigned".into()),
        decision: item.decision.clone().unwrap_or_default(),
        dropped: item.drop_list.clone().unwrap_or_default(),
        justification: item.justification.clone().unwrap_or_default(),
        decided: match (&item.decided_by, item.decided_at) {
            (Some(by), Some(at)) => format!("{by}, {}", format_ms(at)),
            _ => String::new(),
        },
        execution: match execution {
            Execution::None => "",
            Execution::Pending => "waiting for sign-off",
            Execution::Verified => "done and verified",
            Execution::Failed => "FAILED: still open",
        },
        execution_error: item.execution_error.clone().unwrap_or_default(),
        failed: execution == Execution::Failed,
        can_decide,
        why_not,
    }
}
