//! `trustplane oncall …`: the same operations as the On-call page, audited with the
//! operating-system user as actor.

use clap::Subcommand;

use crate::audit::RequestMeta;
use crate::clock::{Clock, SystemClock, format_ms};
use crate::db::Db;

#[derive(Subcommand, Debug)]
pub enum OnCallCommand {
    /// Replace the rotation: members in order, weekly handoff, time zone, second level.
    Set {
        /// Comma-separated emails of staff with the security role, in rotation order.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Weekday and 24-hour local time, e.g. "Mon 09:00".
        #[arg(long)]
        handoff: String,
        /// IANA time zone of the handoff, e.g. Europe/Berlin.
        #[arg(long)]
        timezone: String,
        /// Email of the second-level escalation person.
        #[arg(long)]
        escalation: Option<String>,
    },
    /// Put someone on call for a while instead of the rotation.
    Override {
        #[arg(long)]
        person: String,
        /// RFC 3339 start, e.g. 2026-12-24T09:00:00+01:00.
        #[arg(long)]
        from: String,
        /// RFC 3339 end.
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Who is on call now.
    Now {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(db: &Db, command: OnCallCommand) -> anyhow::Result<()> {
    let now = SystemClock.now_ms();
    let actor = crate::cli::cli_actor();
    let meta = RequestMeta::default();
    match command {
        OnCallCommand::Set {
            members,
            handoff,
            timezone,
            escalation,
        } => {
            let mut tx = db.begin().await?;
            let rotation = super::set_rotation(
                &mut tx,
                &super::RotationInput {
                    member_emails: &members,
                    handoff: &handoff,
                    timezone: &timezone,
                    escalation_email: escalation.as_deref(),
                },
                &actor,
                &meta,
                now,
            )
            .await?;
            tx.commit().await?;
            println!(
                "rotation of {} set; handoff {} ({})",
                rotation.members.len(),
                rotation.handoff.label(),
                rotation.zone.name()
            );
        }
        OnCallCommand::Override {
            person,
            from,
            to,
            reason,
        } => {
            let (from, to) = (
                crate::cli::rfc3339_arg(&from, "from")?,
                crate::cli::rfc3339_arg(&to, "to")?,
            );
            let mut tx = db.begin().await?;
            let id = super::add_override(&mut tx, &person, from, to, &reason, &actor, &meta, now)
                .await?;
            tx.commit().await?;
            println!("{id}");
        }
        OnCallCommand::Now { json } => {
            let mut conn = db.pool.acquire().await?;
            let current = super::on_call(&mut conn, now).await?;
            if json {
                println!("{}", serde_json::to_string(&current)?);
            } else {
                match current {
                    Some(c) => println!(
                        "{} <{}> until {}{}; escalation: {}",
                        c.person.name,
                        c.person.email,
                        format_ms(c.until),
                        if c.via_override { " (override)" } else { "" },
                        c.escalation
                            .map(|p| format!("{} <{}>", p.name, p.email))
                            .unwrap_or_else(|| "none".into())
                    ),
                    None => println!("nobody: no rotation is set"),
                }
            }
        }
    }
    Ok(())
}
