//! The actors of design.md §2: persistence (the only code that reaches the database),
//! the supervisor (one per process: capacity, claims, leases) and one deployment actor per run.

pub mod deployment;
pub mod persistence;
pub mod supervisor;
