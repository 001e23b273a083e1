//! Query functions: plain functions over a connection, one concern per file. The persistence
//! actor opens the transaction and calls these; tests can call them directly.

pub mod audit;
pub mod deployments;
pub mod logs;
pub mod runs;
pub mod states;
pub mod webhooks;
pub mod with;
