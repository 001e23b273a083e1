//! The append-only `deployment_logs` table: lines numbered per deployment (so one cursor pages
//! through every run's lines in order), each belonging to a run.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::db::models::{LogRow, NewLogRow};
use crate::db::schema::deployment_logs;
use crate::domain::NewLogLine;

/// Appends a run's lines after the deployment's last stored one. Runs of one deployment may
/// write at once (a plan next to an apply): a transaction-scoped advisory lock on the
/// deployment makes reading the current maximum race-free.
pub fn append(
    conn: &mut PgConnection,
    deployment_id: &str,
    run_id: &str,
    lines: &[NewLogLine],
) -> QueryResult<i64> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7)) IS NULL")
        .bind::<Text, _>(deployment_id)
        .execute(conn)?;
    let last: Option<i64> = deployment_logs::table
        .filter(deployment_logs::deployment_id.eq(deployment_id))
        .select(diesel::dsl::max(deployment_logs::seq))
        .first(conn)?;
    let start = last.unwrap_or(0);
    let rows: Vec<NewLogRow<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| NewLogRow {
            deployment_id,
            run_id,
            seq: start + 1 + i as i64,
            at: l.at,
            stream: &l.stream,
            line: &l.line,
        })
        .collect();
    // PostgreSQL takes at most 65535 bind parameters per statement: 6 per row.
    for chunk in rows.chunks(10_000) {
        diesel::insert_into(deployment_logs::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(start + lines.len() as i64)
}

/// Lines with `seq > after`, oldest first: of one run, or of every run of the deployment.
pub fn page(
    conn: &mut PgConnection,
    deployment_id: &str,
    run_id: Option<&str>,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<LogRow>> {
    let mut q = deployment_logs::table
        .filter(deployment_logs::deployment_id.eq(deployment_id))
        .filter(deployment_logs::seq.gt(after))
        .into_boxed();
    if let Some(run) = run_id {
        q = q.filter(deployment_logs::run_id.eq(run.to_string()));
    }
    q.order(deployment_logs::seq.asc())
        .limit(limit)
        .select(LogRow::as_select())
        .load(conn)
}
