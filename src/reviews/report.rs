//! The campaign report outside the portal page: the CSV export of every item, and the REV-1
//! dashboard card.

use sqlx::AnyConnection;

use super::items::Item;
use super::model::{self, Quarter};
use super::{CLOCK, Settings, store, subject};
use crate::clock::Millis;
use crate::sla;

/// Every item of a campaign as CSV: subject, snapshot facts, flags, reviewer, decision,
/// justification and the times of decision, execution and verification. Cells that a
/// spreadsheet would run as a formula are neutralised.
pub fn csv(items: &[Item]) -> String {
    let ms = |at: Option<Millis>| at.map(crate::clock::format_ms).unwrap_or_default();
    let mut out = String::from(
        "number,kind,subject,customer,role,scopes,granted_by,granted_at,mfa,account_created_at,\
         last_login_at,key_created_at,last_used_at,requests_in_period,expires_at,flags,\
         unused_scopes,reviewer,decision,dropped,justification,decided_by,decided_at,\
         execution,execution_error,executed_at,verified_at\n",
    );
    for item in items {
        let cells = [
            item.number.to_string(),
            item.kind.clone(),
            item.subject_label.clone(),
            item.customer_name.clone().unwrap_or_default(),
            item.role.clone().unwrap_or_default(),
            item.scopes.clone().unwrap_or_default(),
            item.granted_by.clone().unwrap_or_default(),
            ms(item.granted_at),
            item.mfa.clone().unwrap_or_default(),
            ms(item.account_created_at),
            ms(item.last_login_at),
            ms(item.key_created_at),
            ms(item.last_used_at),
            item.requests_in_period
                .map(|n| n.to_string())
                .unwrap_or_default(),
            ms(item.expires_at),
            item.flags.clone(),
            item.unused_scopes.clone().unwrap_or_default(),
            item.reviewer_email.clone().unwrap_or_default(),
            item.decision.clone().unwrap_or_default(),
            item.drop_list.clone().unwrap_or_default(),
            item.justification.clone().unwrap_or_default(),
            item.decided_by.clone().unwrap_or_default(),
            ms(item.decided_at),
            item.execution.clone(),
            item.execution_error.clone().unwrap_or_default(),
            ms(item.executed_at),
            ms(item.verified_at),
        ];
        let line = cells
            .iter()
            .map(|c| model::csv_cell(c))
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The REV-1 dashboard card: the newest campaign and how far it is.
#[derive(Debug, Clone)]
pub struct CardStatus {
    pub ok: bool,
    pub campaign_id: String,
    pub quarter: String,
    pub signed_off: bool,
    pub percent: i64,
    pub failed: i64,
    pub due: String,
}

/// Green when the current (or, before it opens, the previous) quarter has a campaign that is
/// not overdue and has no failed change.
pub async fn card_status(
    conn: &mut AnyConnection,
    settings: &Settings,
    now: Millis,
) -> Result<Option<CardStatus>, sqlx::Error> {
    let Some(campaign) = store::latest(conn).await? else {
        return Ok(None);
    };
    let summary = store::summary(conn, &campaign.id).await?;
    let clock = sla::for_subject(conn, &subject(&campaign.id))
        .await?
        .into_iter()
        .find(|c| c.name == CLOCK);
    let breached = clock
        .as_ref()
        .is_some_and(|c| c.state_at(now) == sla::ClockState::Breached);
    let current = Quarter::containing(now, settings.zone);
    let recent = current.is_some_and(|q| {
        campaign.quarter == q.to_string() || campaign.quarter == q.previous().to_string()
    });
    Ok(Some(CardStatus {
        ok: recent && !breached && summary.failed == 0,
        signed_off: !campaign.is_open(),
        percent: summary.completion_percent(),
        failed: summary.failed,
        due: match (&clock, campaign.is_open()) {
            (Some(c), true) => sla::format::until(c.due_at, now),
            _ => String::new(),
        },
        campaign_id: campaign.id,
        quarter: campaign.quarter,
    }))
}
