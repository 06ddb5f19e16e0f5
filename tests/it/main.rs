//! shopsim's integration tests: one binary (each `tests/*.rs` would link its own).
//!
//! Tests that need PostgreSQL read `SHOPSIM_TEST_DATABASE_URL` (the URL the code under test
//! uses, possibly through a pooler) and `SHOPSIM_TEST_ADMIN_DATABASE_URL` (a direct connection
//! for creating databases and migrating; defaults to the former). Each test gets a fresh
//! database. Without `SHOPSIM_TEST_DATABASE_URL` the PostgreSQL variants are skipped with a
//! note; with it, an unreachable database fails the test.

mod support;

mod actions;
mod api;
mod app;
mod behavior;
mod crash;
mod domain;
mod kubernetes;
mod loadtest;
mod logs;
mod metrics_endpoint;
mod migrate;
mod pooler;
mod records;
mod report;
mod run;
mod run_faults;
mod run_paced;
mod seed;
mod shards;
mod store;
