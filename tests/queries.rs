//! The queue's SQL straight on `db::queries` against a real PostgreSQL: claims, leases,
//! compare-and-set finishes, and what happens to runs whose node died.

mod common;

use common::TestDb;
use diesel::{Connection, PgConnection, RunQueryDsl};
use multicloud::db::models::NewDeploymentRow;
use multicloud::db::queries::deployments as q;
use multicloud::domain::{DeploymentId, NewDeployment, ProviderType, RunOutcome};

fn setup() -> (TestDb, PgConnection) {
    let db = TestDb::new();
    multicloud::db::run_migrations(&db.url).expect("migrate");
    // Migrations are idempotent.
    assert!(
        multicloud::db::run_migrations(&db.url)
            .expect("again")
            .is_empty()
    );
    let conn = PgConnection::establish(&db.url).expect("connect");
    (db, conn)
}

fn insert(conn: &mut PgConnection) -> String {
    let new = NewDeployment {
        id: DeploymentId::generate(),
        provider_type: ProviderType::TerraformAws,
        template_name: "echo".into(),
        resource_group: None,
        subscription_id: None,
        location: None,
        parameters: Default::default(),
        idempotency_key: None,
    };
    q::insert(conn, &NewDeploymentRow::from(&new))
        .expect("insert")
        .deployment_id
}

fn expire(conn: &mut PgConnection, id: &str) {
    diesel::sql_query(format!("UPDATE deployments SET lease_expires_at = now() - interval '1 second' WHERE deployment_id = '{id}'"))
        .execute(conn)
        .expect("expire");
}

#[test]
fn claims_are_exclusive_and_finishes_are_compare_and_set() {
    let (_db, mut conn) = setup();
    let a = insert(&mut conn);
    let b = insert(&mut conn);
    let first = q::claim(&mut conn, "node-1", 30, 1, 3, &[]).expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].deployment_id, a, "oldest first");
    assert_eq!(first[0].status, "running");
    assert_eq!(first[0].attempts, 1);
    let second = q::claim(&mut conn, "node-2", 30, 5, 3, &[]).expect("claim");
    assert_eq!(
        second
            .iter()
            .map(|r| r.deployment_id.clone())
            .collect::<Vec<_>>(),
        vec![b.clone()]
    );
    assert!(
        q::claim(&mut conn, "node-3", 30, 5, 3, &[])
            .expect("claim")
            .is_empty(),
        "nothing left"
    );

    // Only the owner finishes, and only once.
    let done = RunOutcome::Completed {
        outputs: serde_json::json!({"x": 1}),
    };
    assert!(!q::finish(&mut conn, &a, "node-2", &done).expect("finish"));
    assert!(q::finish(&mut conn, &a, "node-1", &done).expect("finish"));
    assert!(
        !q::finish(
            &mut conn,
            &a,
            "node-1",
            &RunOutcome::Failed {
                error: "late".into()
            }
        )
        .expect("finish")
    );
    let row = q::find(&mut conn, &a).expect("find").expect("row");
    assert_eq!((row.status.as_str(), row.progress), ("completed", 100));
    assert_eq!(row.outputs, Some(serde_json::json!({"x": 1})));

    // Leases: renewal answers what is still owned.
    let owned = q::renew_leases(&mut conn, "node-2", &[a.clone(), b.clone()], 30).expect("renew");
    assert_eq!(owned, vec![(b.clone(), false)]);
}

#[test]
fn a_dead_nodes_runs_are_reclaimed_then_given_up() {
    let (_db, mut conn) = setup();
    let id = insert(&mut conn);
    q::claim(&mut conn, "dead-1", 30, 1, 2, &[]).expect("claim");
    assert!(
        q::claim(&mut conn, "live", 30, 1, 2, &[])
            .expect("claim")
            .is_empty(),
        "lease still valid"
    );
    expire(&mut conn, &id);
    let again = q::claim(&mut conn, "live", 30, 1, 2, &[]).expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].attempts, again[0].lease_owner.as_deref()),
        (2, Some("live"))
    );
    // A node never reclaims a run it still runs itself (its lease lapsed during an outage).
    expire(&mut conn, &id);
    assert!(
        q::claim(&mut conn, "live", 30, 1, 2, std::slice::from_ref(&id))
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        q::renew_leases(&mut conn, "live", std::slice::from_ref(&id), 30).expect("renew"),
        vec![(id.clone(), false)]
    );
    // The old owner lost it: its result is not written.
    assert!(!q::finish(&mut conn, &id, "dead-1", &RunOutcome::Destroyed).expect("finish"));

    expire(&mut conn, &id);
    assert_eq!(q::fail_exhausted(&mut conn, 2).expect("exhaust"), 1);
    let row = q::find(&mut conn, &id).expect("find").expect("row");
    assert_eq!(row.status, "failed");
    assert!(
        row.error_message
            .as_deref()
            .is_some_and(|m| m.contains("interrupted 2 times")),
        "{row:?}"
    );
}

#[test]
fn cancel_of_a_run_whose_node_died_ends_cancelled() {
    let (_db, mut conn) = setup();
    let pending = insert(&mut conn);
    assert_eq!(
        q::cancel(&mut conn, &pending).expect("cancel"),
        q::CancelResult::Cancelled
    );
    assert_eq!(
        q::cancel(&mut conn, &pending).expect("cancel"),
        q::CancelResult::AlreadyFinished
    );

    let running = insert(&mut conn);
    q::claim(&mut conn, "dead", 30, 1, 3, &[]).expect("claim");
    assert_eq!(
        q::cancel(&mut conn, &running).expect("cancel"),
        q::CancelResult::Requested
    );
    assert_eq!(
        q::renew_leases(&mut conn, "dead", std::slice::from_ref(&running), 30).expect("renew"),
        vec![(running.clone(), true)]
    );
    assert_eq!(
        q::cancel_orphaned(&mut conn).expect("sweep"),
        0,
        "the lease is still valid"
    );
    expire(&mut conn, &running);
    assert_eq!(q::cancel_orphaned(&mut conn).expect("sweep"), 1);
    assert_eq!(
        q::find(&mut conn, &running)
            .expect("find")
            .expect("row")
            .status,
        "cancelled"
    );
    assert!(
        q::claim(&mut conn, "live", 30, 5, 3, &[])
            .expect("claim")
            .is_empty(),
        "not run again"
    );
    assert_eq!(
        q::cancel(&mut conn, "deploy-0123456789abcdef").expect("cancel"),
        q::CancelResult::NotFound
    );
}
