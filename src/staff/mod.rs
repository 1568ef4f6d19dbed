//! Staff accounts and role grants: the model, its SQL, and the admin pages.

pub mod model;
pub mod pages;
pub mod store;
