//! Integration tests: real servers on port 0, real SQLite files and PostgreSQL databases.

mod helpers;

mod alerts;
mod api;
mod audit_log;
mod authn;
mod backup;
mod browser;
mod cli;
mod contract;
mod controls;
mod crash;
mod demo_storage;
mod disclosures;
mod evidence;
mod findings;
mod incidents;
mod isolation;
mod keys;
mod mail;
mod oncall;
mod operations;
mod pentest;
mod rbac;
mod retention;
mod reviews;
mod security_review;
mod sla;
mod sso;
mod staff;
mod vendors;
mod webdriver;
