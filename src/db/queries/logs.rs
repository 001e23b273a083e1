//! The append-only `deployment_logs` table.

use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::db::models::{LogRow, NewLogRow};
use crate::db::schema::deployment_logs;
use crate::domain::NewLogLine;

/// Appends lines after the last stored one. Only the run's owner writes a deployment's logs, so
/// reading the current maximum inside the caller's transaction is race-free.
pub fn append(conn: &mut PgConnection, id: &str, lines: &[NewLogLine]) -> QueryResult<i64> {
    let last: Option<i64> = deployment_logs::table
        .filter(deployment_logs::deployment_id.eq(id))
        .select(diesel::dsl::max(deployment_logs::seq))
        .first(conn)?;
    let start = last.unwrap_or(0);
    let rows: Vec<NewLogRow<'_>> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| NewLogRow {
            deployment_id: id,
            seq: start + 1 + i as i64,
            at: l.at,
            stream: &l.stream,
            line: &l.line,
        })
        .collect();
    // PostgreSQL takes at most 65535 bind parameters per statement: 5 per row.
    for chunk in rows.chunks(10_000) {
        diesel::insert_into(deployment_logs::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(start + lines.len() as i64)
}

/// Lines with `seq > after`, oldest first.
pub fn page(conn: &mut PgConnection, id: &str, after: i64, limit: i64) -> QueryResult<Vec<LogRow>> {
    deployment_logs::table
        .filter(deployment_logs::deployment_id.eq(id))
        .filter(deployment_logs::seq.gt(after))
        .order(deployment_logs::seq.asc())
        .limit(limit)
        .select(LogRow::as_select())
        .load(conn)
}
