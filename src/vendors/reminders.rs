//! The `vendor_reminders` job: emails a vendor's owner 60, 30 and 7 days before each of its
//! clocks on the shared engine (reassessment, DPA expiry) is due. The deadline is the
//! engine's; escalation to compliance staff at the deadline is the engine's `sla_watch`.
//! Each reminder is claimed by a row in `vendor_reminders`, so it goes out once even when
//! runs overlap; a clock that starts with less time left gets only the nearest reminder.

use sqlx::AnyConnection;

use super::VendorError;
use crate::audit::{self, AuditEvent, RequestMeta};
use crate::clock::{DAY, Millis, format_ms};
use crate::sla::{self, ClockFilter, ClockState, Page, SubjectKind};

/// Days before the deadline a reminder goes out.
pub const REMIND_DAYS: [i64; 3] = [60, 30, 7];

/// What one run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReminderReport {
    pub reminded: i64,
}

/// Sends the reminders due at `now`, in the caller's transaction.
pub async fn run(
    conn: &mut AnyConnection,
    public_url: &str,
    now: Millis,
) -> Result<ReminderReport, VendorError> {
    let mut report = ReminderReport::default();
    let filter = ClockFilter {
        state: Some(ClockState::Running),
        kind: Some(SubjectKind::Vendor),
    };
    let mut page_number = 1;
    loop {
        let (clocks, total) = sla::list(conn, now, &filter, Page::number(page_number, 500)).await?;
        for clock in &clocks {
            let left = clock.due_at - now;
            if left <= 0 || clock.stopped_at.is_some() {
                continue;
            }
            // Thresholds already reached, nearest the deadline first.
            let reached: Vec<i64> = REMIND_DAYS
                .iter()
                .rev()
                .copied()
                .filter(|d| left <= d * DAY)
                .collect();
            let Some(nearest) = reached.first().copied() else {
                continue;
            };
            let mut claimed = false;
            for days in &reached {
                let inserted = sqlx::query(
                    "INSERT INTO vendor_reminders (clock_id, days_before, sent_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (clock_id, days_before) DO NOTHING",
                )
                .bind(&clock.id)
                .bind(i32::try_from(*days).unwrap_or(0))
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                if *days == nearest {
                    claimed = inserted;
                }
            }
            if !claimed {
                continue;
            }
            let headline = format!(
                "Reminder: {} — due in {}",
                clock.target,
                sla::format::span(left)
            );
            let lines = vec![
                format!(
                    "Due {} ({} days' notice).",
                    format_ms(clock.due_at),
                    nearest
                ),
                "Compliance staff are told when the deadline passes.".to_owned(),
            ];
            let link = format!("{public_url}{}", clock.link_path);
            for to in &clock.notify_to {
                super::notice::send(
                    conn,
                    to,
                    &headline,
                    &lines,
                    &link,
                    "",
                    &format!("sla:{}", clock.id),
                    now,
                )
                .await?;
            }
            audit::append(
                conn,
                now,
                &RequestMeta::default(),
                AuditEvent::new("system", "vendor.remind", clock.subject.label())
                    .detail("clock", clock.name.as_str())
                    .detail("days_before", nearest)
                    .detail("due_at", format_ms(clock.due_at)),
            )
            .await?;
            report.reminded += 1;
        }
        if page_number * 500 >= total {
            break;
        }
        page_number += 1;
    }
    Ok(report)
}
