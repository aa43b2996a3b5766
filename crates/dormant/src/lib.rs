//! dormant: users' Docker containers at their own hostnames, asleep when
//! idle, awake on the next request, never losing what their users wrote.
//!
//! # Layout
//!
//! The whole map (layers, who owns what, the state machine, where a new
//! feature goes) is `docs/ARCHITECTURE.md`; in short:
//!
//! - [`serve`]: wires the parts together and runs them until shutdown.
//! - [`proxy`]: routes `<name>.<base-domain>` to the container; the hot path.
//! - [`api`]: the REST API under `/v1`.
//! - [`access`]: private container URLs: tokens, login links, session cookies.
//! - [`lifecycle`]: the only place a container's state changes; it owns the
//!   container table the proxy reads, one owner per container.
//! - [`offload`]: beside nginx: the map of running containers it serves
//!   itself, its access log as activity, the wake endpoint's probe.
//! - [`events`]: every container transition, numbered, for the event
//!   stream and [`webhooks`].
//! - [`error_kind`]: one mapping from what went wrong to an HTTP status.
//! - [`listen`]: the open-file limit and the API's connection cap.
//! - [`runtime`]: the container engine as a small trait; Docker via bollard.
//! - [`snapshot`], [`snapshot_store`]: a container's files as one compressed
//!   file; where those are kept (the data dir, or an S3-compatible bucket).
//! - [`store`]: SQLite, the durable truth about what should exist.
//! - [`data_dir`]: the data dir on disk, private to dormant.
//! - [`domain`]: the vocabulary: states, labels, the container record.
//! - [`tenant`], [`auth`]: tenants and their quotas; who a bearer token is.
//! - [`config`], [`cli`]: the command line and `dormant serve`'s settings.
//! - [`demo_image`]: builds the demo workload into a local image.

#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod demo_image;
pub mod domain;
pub mod error_kind;
pub mod events;
pub mod fault;
pub mod lifecycle;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod offload;
pub mod proxy;
pub mod runtime;
pub mod serve;
pub mod snapshot;
pub mod snapshot_store;
pub mod store;
pub mod tenant;
pub mod token;
pub mod units;
pub mod wake_history;
pub mod webhooks;
