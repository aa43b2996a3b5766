//! Lifecycle tests on the fake runtime under tokio's paused clock: every
//! transition, every error path, races, the herd, capacity, reconcile. No
//! Docker daemon needed; the whole suite runs in seconds.
//!
//! Build everything through `harness.rs`. A test marked
//! `//! today's code (the lifecycle refactor of issue 10 fixes it).

mod harness;
mod store_fault;
mod user_files;

mod access;
mod archive;
mod backoff;
mod capacity;
mod create;
mod delete;
mod event_stream;
mod events;
mod herd;
mod nap;
mod races;
mod reconcile;
mod restore;
mod sleep;
mod store_failures;
mod tenants;
mod wake;
mod wake_filter;
