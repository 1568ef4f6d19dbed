//! Staff accounts and role grants: the model, its SQL, and the admin pages. The operations
//! below are shared by the staff pages and by access reviews, so a role removed by a review
//! goes through exactly the same steps as one removed by hand.

pub mod model;
pub mod pages;
pub mod store;

use sqlx::AnyConnection;

use crate::audit::{self, AuditEvent, RequestMeta};
use crate::authn::session;
use crate::clock::Millis;
use crate::error::AppError;
use model::Role;
use store::Staff;

/// Removes `role` from `staff` and ends every session of the account, so no page keeps
/// powers it no longer has; audited as `staff.role.revoke`. Refused (nothing changed) when
/// the account does not hold the role or when it would leave no enabled admin. Returns how
/// many sessions were ended.
pub async fn revoke_role(
    conn: &mut AnyConnection,
    staff: &Staff,
    role: Role,
    actor: &str,
    meta: &RequestMeta,
    now: Millis,
) -> Result<u64, AppError> {
    if !store::revoke_role(conn, &staff.id, role).await? {
        return Err(AppError::Conflict(format!(
            "{} does not have the {role} role.",
            staff.email
        )));
    }
    if role == Role::Admin && store::count_active_admins(conn).await? == 0 {
        return Err(AppError::Conflict(
            "This would leave no enabled administrator. Grant the admin role to someone else \
             first. Nothing was changed."
                .into(),
        ));
    }
    let ended = session::end_all(conn, &staff.id).await?;
    audit::append(
        conn,
        now,
        meta,
        AuditEvent::new(actor, "staff.role.revoke", format!("staff:{}", staff.id))
            .detail("email", staff.email.as_str())
            .detail("role", role.as_str())
            .detail("sessions_ended", ended),
    )
    .await?;
    Ok(ended)
}
