//! PostgreSQL access: the connection pool, embedded migrations, the embedded cluster, row models
//! and query functions. Only the persistence actor (and start-up) calls into this module; nothing
//! here may run on an actix-web worker thread, because every call blocks.

pub mod embedded;
pub mod models;
pub mod notify;
pub mod queries;
pub mod schema;

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Serializes migrations across daemons starting at once on one database (diesel#4862).
const MIGRATION_LOCK_KEY: i64 = 0x6d75_6c74_6963_6c64; // "multicld"

pub type DbPool = Pool<ConnectionManager<PgConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Builds the pool once. `connection_timeout` is short so that an outage answers 503 quickly
/// instead of parking requests for r2d2's default 30 s.
pub fn build_pool(url: &str, size: u32) -> Result<DbPool, DbError> {
    let manager = ConnectionManager::<PgConnection>::new(url);
    Pool::builder()
        .max_size(size)
        // Every connection is opened at start (r2d2's default): no request waits for one to be
        // established when load arrives.
        .connection_timeout(Duration::from_millis(1500))
        // No `SELECT 1` before every query (it doubled the round trips of every request): a
        // connection lost with the server fails its query once (mapped to 503) and r2d2 then
        // drops it as broken.
        .test_on_check_out(false)
        .build(manager)
        .map_err(|e| DbError::Connect(e.to_string()))
}

/// Runs the pending embedded migrations under a session advisory lock. Returns the versions
/// applied by this call.
pub fn run_migrations(url: &str) -> Result<Vec<String>, DbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| DbError::Connect(e.to_string()))?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(|v| v.to_string()).collect())
        .map_err(|e| DbError::Migrate(e.to_string()));
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .execute(&mut conn)?;
    result
}
