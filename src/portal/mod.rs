//! The server-rendered admin portal: route registry and guard, page shell, dashboard, and
//! the operational endpoints (health, readiness, metrics, static files).

pub mod dashboard;
pub mod labelled;
pub mod operations;
pub mod routes;
pub mod shell;
