//! Webhooks, their outbox (`webhook_events`, written by triggers in the transaction of the
//! change they announce) and deliveries, claimed like runs: any node, `FOR UPDATE SKIP LOCKED`,
//! with a lease so a node that dies mid-delivery only delays it.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, SmallInt, Text, Timestamptz};

use crate::db::models::{DeliveryRow, DueDeliveryRow, NewWebhookRow, WebhookRow};
use crate::db::schema::webhooks;
use crate::domain::AttemptResult;

pub fn insert(conn: &mut PgConnection, row: &NewWebhookRow) -> QueryResult<WebhookRow> {
    diesel::insert_into(webhooks::table)
        .values(row)
        .returning(WebhookRow::as_returning())
        .get_result(conn)
}

pub fn list(conn: &mut PgConnection) -> QueryResult<Vec<WebhookRow>> {
    webhooks::table
        .select(WebhookRow::as_select())
        .order((webhooks::created_at, webhooks::webhook_id))
        .load(conn)
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<WebhookRow>> {
    webhooks::table
        .find(id)
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()
}

/// Deletes a webhook and its deliveries; false when there was none.
pub fn delete(conn: &mut PgConnection, id: &str) -> QueryResult<bool> {
    diesel::delete(webhooks::table.find(id))
        .execute(conn)
        .map(|n| n > 0)
}

const DELIVERY_COLUMNS: &str = "w.delivery_id, w.webhook_id, w.event_id, e.event_type, w.status, \
    w.attempts, w.next_attempt_at, w.last_attempt_at, w.last_status_code, w.last_error, \
    w.response_excerpt, w.delivered_at, w.created_at";

/// A webhook's deliveries, newest first; `before` pages (exclusive delivery id).
pub fn deliveries(
    conn: &mut PgConnection,
    webhook_id: &str,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    diesel::sql_query(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries w \
         JOIN webhook_events e ON e.event_id = w.event_id \
         WHERE w.webhook_id = $1 AND ($2 IS NULL OR w.delivery_id < $2) \
         ORDER BY w.delivery_id DESC LIMIT $3"
    ))
    .bind::<Text, _>(webhook_id)
    .bind::<Nullable<BigInt>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

/// Sends a delivery again (delivered or dead ones too): pending now, attempts from zero, the
/// same event id. None when the webhook has no such delivery.
pub fn redeliver(
    conn: &mut PgConnection,
    webhook_id: &str,
    delivery_id: i64,
) -> QueryResult<Option<DeliveryRow>> {
    diesel::sql_query(format!(
        "UPDATE webhook_deliveries w SET status = 'pending', attempts = 0, \
            next_attempt_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL, \
            delivered_at = NULL \
         FROM webhook_events e \
         WHERE e.event_id = w.event_id AND w.webhook_id = $1 AND w.delivery_id = $2 \
         RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind::<Text, _>(webhook_id)
    .bind::<BigInt, _>(delivery_id)
    .get_result(conn)
    .optional()
}

/// Claims up to `limit` due deliveries for `node` (pending, due, and not leased by a live
/// node), counting the attempt now: a node that dies mid-delivery has used it.
pub fn claim(
    conn: &mut PgConnection,
    node: &str,
    lease_secs: i64,
    limit: i64,
) -> QueryResult<Vec<DueDeliveryRow>> {
    diesel::sql_query(
        "WITH due AS ( \
            SELECT delivery_id FROM webhook_deliveries \
            WHERE status = 'pending' AND next_attempt_at <= clock_timestamp() \
              AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()) \
            ORDER BY next_attempt_at, delivery_id \
            LIMIT $3 FOR UPDATE SKIP LOCKED \
         ) \
         UPDATE webhook_deliveries w SET attempts = w.attempts + 1, lease_owner = $1, \
            lease_expires_at = clock_timestamp() + make_interval(secs => $2), \
            last_attempt_at = clock_timestamp() \
         FROM due, webhooks h, webhook_events e \
         WHERE w.delivery_id = due.delivery_id AND h.webhook_id = w.webhook_id \
           AND e.event_id = w.event_id \
         RETURNING w.delivery_id, w.webhook_id, h.url, h.secret_sealed, e.event_id, e.event_type, \
                   e.payload, w.attempts",
    )
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(lease_secs)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

/// Records an attempt's result, if `node` still holds the delivery's lease.
pub fn finish(
    conn: &mut PgConnection,
    delivery_id: i64,
    node: &str,
    result: &AttemptResult,
) -> QueryResult<bool> {
    struct Row {
        status: &'static str,
        code: Option<i16>,
        error: Option<String>,
        excerpt: Option<String>,
        retry_at: Option<DateTime<Utc>>,
    }
    let clip = |s: &str| s.chars().take(1000).collect::<String>();
    let Row {
        status,
        code,
        error,
        excerpt,
        retry_at,
    } = match result {
        AttemptResult::Delivered { status, excerpt } => Row {
            status: "delivered",
            code: i16::try_from(*status).ok(),
            error: None,
            excerpt: Some(clip(excerpt)),
            retry_at: None,
        },
        AttemptResult::Failed {
            status,
            error,
            excerpt,
            retry_at,
        } => Row {
            status: if retry_at.is_some() {
                "pending"
            } else {
                "dead"
            },
            code: status.and_then(|s| i16::try_from(s).ok()),
            error: Some(clip(error)),
            excerpt: excerpt.as_deref().map(clip),
            retry_at: *retry_at,
        },
    };
    diesel::sql_query(
        "UPDATE webhook_deliveries SET status = $3, last_status_code = $4, last_error = $5, \
            response_excerpt = $6, next_attempt_at = COALESCE($7, next_attempt_at), \
            delivered_at = CASE WHEN $3 = 'delivered' THEN clock_timestamp() END, \
            lease_owner = NULL, lease_expires_at = NULL \
         WHERE delivery_id = $1 AND lease_owner = $2 AND status = 'pending'",
    )
    .bind::<BigInt, _>(delivery_id)
    .bind::<Text, _>(node)
    .bind::<Text, _>(status)
    .bind::<Nullable<SmallInt>, _>(code)
    .bind::<Nullable<Text>, _>(error)
    .bind::<Nullable<Text>, _>(excerpt)
    .bind::<Nullable<Timestamptz>, _>(retry_at)
    .execute(conn)
    .map(|n| n > 0)
}

/// Deletes finished deliveries older than `cutoff`, then events no delivery refers to.
pub fn prune(conn: &mut PgConnection, cutoff: DateTime<Utc>, limit: i64) -> QueryResult<usize> {
    let deliveries = diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE delivery_id IN ( \
            SELECT delivery_id FROM webhook_deliveries \
            WHERE status IN ('delivered', 'dead') AND created_at < $1 LIMIT $2)",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)?;
    let events = diesel::sql_query(
        "DELETE FROM webhook_events e WHERE e.created_at < $1 AND e.event_id IN ( \
            SELECT event_id FROM webhook_events x WHERE x.created_at < $1 \
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.event_id = x.event_id) \
            LIMIT $2)",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)?;
    Ok(deliveries + events)
}

/// How many deliveries are in each status (for /metrics).
pub fn count_by_status(conn: &mut PgConnection) -> QueryResult<Vec<(String, i64)>> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<Count> =
        diesel::sql_query("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
            .load(conn)?;
    Ok(rows.into_iter().map(|c| (c.status, c.n)).collect())
}
