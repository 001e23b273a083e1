//! multicloud: a self-hosted daemon that deploys infrastructure templates to Azure, AWS and GCP
//! through one REST API, with PostgreSQL as its queue and source of truth.
//!
//! Layout (design.md §2):
//! - [`config`]: the `Settings` tree and its layers;
//! - [`domain`]: deployments, statuses, provider types (no I/O);
//! - [`db`]: PostgreSQL (pool, migrations, embedded cluster, queries);
//! - [`actors`]: persistence, supervisor and one deployment actor per run;
//! - [`engines`]: terraform (and later ARM) as plain async code;
//! - [`catalog`]: the templates and their parameters;
//! - [`http`]: the REST API;
//! - [`daemon`]: start-up and shutdown order.

pub mod actors;
pub mod bicep;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod domain;
pub mod engines;
pub mod http;
pub mod metrics;
pub mod secrets;
pub mod telemetry;
pub mod webhooks;
