//! The actors of design.md §2: persistence (the only code that reaches the database),
//! the supervisor (one per process: capacity, claims, leases), one deployment actor per run,
//! and the notifier (webhook deliveries from the outbox, retention).

pub mod deployment;
pub mod notifier;
pub mod persistence;
pub mod supervisor;
