//! The runs migration on a database filled by the previous schema: every deployment keeps its
//! record, gets the runs it had (a deploy run, and a destroy run when one was queued), its log
//! lines are split between them, and the daemon carries on with that data (pending work runs,
//! a dead node's run is reclaimed, a completed deployment is destroyed, logs read as before).

mod common;

use std::time::Duration;

use common::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

const A: &str = "deploy-00000000000000a1"; // completed
const B: &str = "deploy-00000000000000b2"; // destroyed
const C: &str = "deploy-00000000000000c3"; // pending
const D: &str = "deploy-00000000000000d4"; // running on a node that died
const E: &str = "deploy-00000000000000e5"; // failed
const F: &str = "deploy-00000000000000f6"; // destroy cancelled before it started

fn exec(conn: &mut PgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).expect(sql);
}

/// Rows exactly as the previous schema's daemon wrote them.
fn fill_previous_schema(conn: &mut PgConnection) {
    let insert = |conn: &mut PgConnection, id: &str, status: &str, op: &str, rest: &str| {
        exec(
            conn,
            &format!(
                "INSERT INTO deployments (deployment_id, provider_type, cloud_provider, template_name, status, operation, parameters, progress, attempts, started_at, completed_at{}) \
             VALUES ('{id}', 'terraform-aws', 'aws', 'echo', '{status}', '{op}', '{{\"message\": \"{id}\"}}', {}, {}, now() - interval '1 hour', {}{})",
                if rest.is_empty() {
                    ""
                } else {
                    ", outputs, error_message, lease_owner, lease_expires_at"
                },
                if status == "pending" { 0 } else { 100 },
                if status == "pending" { 0 } else { 1 },
                if ["pending", "running"].contains(&status) {
                    "NULL"
                } else {
                    "now() - interval '50 minutes'"
                },
                rest,
            ),
        );
    };
    insert(
        conn,
        A,
        "completed",
        "deploy",
        ", '{\"message\": \"a\"}', NULL, NULL, NULL",
    );
    insert(
        conn,
        B,
        "destroyed",
        "destroy",
        ", '{\"message\": \"b\"}', NULL, NULL, NULL",
    );
    insert(conn, C, "pending", "deploy", "");
    insert(
        conn,
        D,
        "running",
        "deploy",
        ", NULL, NULL, 'dead-node', now() - interval '1 minute'",
    );
    insert(
        conn,
        E,
        "failed",
        "deploy",
        ", NULL, 'terraform apply failed', NULL, NULL",
    );
    insert(
        conn,
        F,
        "cancelled",
        "destroy",
        ", '{\"message\": \"f\"}', 'cancelled by request before it started', NULL, NULL",
    );
    let log = |conn: &mut PgConnection, id: &str, lines: &[&str]| {
        for (i, l) in lines.iter().enumerate() {
            exec(
                conn,
                &format!(
                    "INSERT INTO deployment_logs (deployment_id, seq, stream, line) VALUES ('{id}', {}, 'system', '{l}')",
                    i + 1
                ),
            );
        }
    };
    log(
        conn,
        A,
        &[
            "run started on n1 (attempt 1, operation deploy)",
            "$ terraform apply",
            "run ended completed",
        ],
    );
    log(
        conn,
        B,
        &[
            "run started on n1 (attempt 1, operation deploy)",
            "$ terraform apply",
            "run ended completed",
            "run started on n2 (attempt 1, operation destroy)",
            "run ended destroyed",
        ],
    );
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct RunFacts {
    #[diesel(sql_type = diesel::sql_types::Text)]
    deployment_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
}

#[tokio::test]
async fn the_previous_schemas_rows_become_deployments_with_runs_and_keep_working() {
    let db = TestDb::new();
    let mut conn = PgConnection::establish(&db.url).expect("connect");
    // The schema as the previous release left it: every migration before the runs.
    let before_runs = 3;
    for _ in 0..before_runs {
        conn.run_next_migration(multicloud::db::MIGRATIONS)
            .expect("old migration");
    }
    fill_previous_schema(&mut conn);

    // The runs, then the teams migration (audit, webhooks) and the management group column on
    // top.
    let applied = multicloud::db::run_migrations(&db.url).expect("migrate");
    assert_eq!(applied.len(), 3, "{applied:?}");

    let runs: Vec<RunFacts> = diesel::sql_query(
        "SELECT deployment_id, kind, status FROM runs ORDER BY deployment_id, queue_seq",
    )
    .load(&mut conn)
    .expect("runs");
    let facts: Vec<(&str, &str, &str)> = runs
        .iter()
        .map(|r| (r.deployment_id.as_str(), r.kind.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        facts,
        vec![
            (A, "deploy", "completed"),
            (B, "deploy", "completed"),
            (B, "destroy", "completed"),
            (C, "deploy", "pending"),
            (D, "deploy", "running"),
            (E, "deploy", "failed"),
            (F, "deploy", "completed"),
            (F, "destroy", "cancelled"),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM deployments"),
        6,
        "no deployment lost"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) AS n FROM runs WHERE deployment_id = '{D}' AND lease_owner = 'dead-node' AND attempts = 1")),
        1,
        "the lease moved with the run"
    );
    // Log lines: B's destroy lines belong to its destroy run; nothing is lost.
    assert_eq!(db.count("SELECT count(*) AS n FROM deployment_logs"), 8);
    assert_eq!(
        db.count(&format!("SELECT count(*) AS n FROM deployment_logs l JOIN runs r USING (run_id) WHERE l.deployment_id = '{B}' AND r.kind = 'destroy'")),
        2
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) AS n FROM deployments WHERE applied_run_id IS NOT NULL AND deployment_id IN ('{A}', '{B}', '{F}')")),
        3
    );

    // The daemon on the migrated database: records and logs read as before.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__LEASE_SECS", 3)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let (_, st) = d.get(&format!("/deployments/{A}/status")).await;
    assert_eq!(st["data"]["status"], "completed");
    assert_eq!(st["data"]["outputs"], json!({"message": "a"}));
    let (_, st) = d.get(&format!("/deployments/{B}/status")).await;
    assert_eq!(
        (
            st["data"]["status"].as_str(),
            st["data"]["operation"].as_str()
        ),
        (Some("destroyed"), Some("destroy"))
    );
    let (_, logs) = d.get(&format!("/deployments/{B}/logs")).await;
    assert_eq!(
        logs["data"]["count"], 2,
        "the newest run's lines: the destroy's"
    );
    let (_, logs) = d.get(&format!("/deployments/{B}/logs?run=all")).await;
    assert_eq!(logs["data"]["count"], 5);
    let (_, history) = d.get(&format!("/deployments/{B}/runs")).await;
    assert_eq!(history["data"]["count"], 2);

    // Pending work runs; the dead node's run is reclaimed and finishes.
    let st = d.wait_terminal(C, T).await;
    assert_eq!(
        (st["status"].as_str(), st["outputs"]["message"].as_str()),
        (Some("completed"), Some(C)),
        "{st}\n{}",
        d.log_text()
    );
    let st = d.wait_terminal(D, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{D}")).await;
    assert_eq!(rec["data"]["attempts"], 2);

    // A migrated completed deployment is destroyed like any other; a cancelled destroy of an
    // applied one can be asked again.
    for id in [A, F] {
        let (s, b) = d.delete(&format!("/deployments/{id}")).await;
        assert_eq!(s, 202, "{b}");
        let st = d.wait_terminal(id, T).await;
        assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    }
    // What the previous schema refused, the new one still refuses.
    let (s, b) = d.delete(&format!("/deployments/{B}")).await;
    assert_eq!(assert_error(s, &b, 409), "conflict");
    drop(d);

    // The migrations can be reverted (the management group column, audit and webhooks go, then
    // the runs; the deployments stay), and applied again.
    for _ in 0..3 {
        conn.revert_last_migration(multicloud::db::MIGRATIONS)
            .expect("revert");
    }
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 6);
    assert_eq!(
        multicloud::db::run_migrations(&db.url)
            .expect("again")
            .len(),
        3
    );
}
