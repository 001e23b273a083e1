//! The queue's SQL straight on `db::queries` against a real PostgreSQL: claims, leases,
//! compare-and-set finishes, what happens to runs whose node died, the per-deployment FIFO
//! of runs and what the deployment row shows of them.

mod common;

use common::TestDb;
use diesel::{Connection, PgConnection, RunQueryDsl};
use multicloud::db::models::{NewDeploymentRow, NewRunRow};
use multicloud::db::queries::{deployments, runs as q};
use multicloud::domain::{
    CancelResult, DeploymentId, NewDeployment, NewRun, PlanSummary, ProviderType, RunKind,
    RunOutcome,
};

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

/// A new deployment with its deploy run; answers the run id.
fn insert(conn: &mut PgConnection) -> String {
    insert_with(conn).1
}

/// A new deployment with its deploy run; answers (deployment id, run id).
fn insert_with(conn: &mut PgConnection) -> (String, String) {
    let new = NewDeployment {
        id: DeploymentId::generate(),
        provider_type: ProviderType::TerraformAws,
        template_name: "echo".into(),
        resource_group: None,
        subscription_id: None,
        location: None,
        management_group: None,
        parameters: Default::default(),
        idempotency_key: None,
        requested_by: None,
    };
    let d = deployments::insert_accepted(conn, &[NewDeploymentRow::from(&new)], &[], &[])
        .expect("insert")
        .remove(0)
        .deployment_id;
    let run = NewRun::new(RunKind::Deploy, Default::default());
    let r = q::insert(conn, &NewRunRow::new(&d, &run)).expect("run");
    (d, r.run_id)
}

/// Queues a run of `kind` on a deployment; answers its id.
fn queue(conn: &mut PgConnection, deployment: &str, kind: RunKind, auto_apply: bool) -> String {
    let mut run = NewRun::new(kind, Default::default());
    run.auto_apply = auto_apply;
    q::enqueue(conn, &NewRunRow::new(deployment, &run))
        .expect("enqueue")
        .run_id
}

fn deployment_status(conn: &mut PgConnection, id: &str) -> String {
    deployments::find(conn, id)
        .expect("find")
        .expect("row")
        .status
}

fn expire(conn: &mut PgConnection, id: &str) {
    diesel::sql_query(format!(
        "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = '{id}'"
    ))
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
    assert_eq!(first[0].run_id, a, "oldest first");
    assert_eq!(first[0].status, "running");
    assert_eq!(first[0].attempts, 1);
    let second = q::claim(&mut conn, "node-2", 30, 5, 3, &[]).expect("claim");
    assert_eq!(
        second.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
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
    assert!(
        q::finish(&mut conn, &a, "node-2", &done)
            .expect("finish")
            .is_none()
    );
    assert!(
        q::finish(&mut conn, &a, "node-1", &done)
            .expect("finish")
            .is_some()
    );
    assert!(
        q::finish(
            &mut conn,
            &a,
            "node-1",
            &RunOutcome::Failed {
                error: "late".into()
            }
        )
        .expect("finish")
        .is_none()
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
    assert!(
        q::finish(&mut conn, &id, "dead-1", &RunOutcome::Destroyed)
            .expect("finish")
            .is_none()
    );

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
        CancelResult::Cancelled
    );
    assert_eq!(
        q::cancel(&mut conn, &pending).expect("cancel"),
        CancelResult::AlreadyFinished
    );

    let running = insert(&mut conn);
    q::claim(&mut conn, "dead", 30, 1, 3, &[]).expect("claim");
    assert_eq!(
        q::cancel(&mut conn, &running).expect("cancel"),
        CancelResult::Requested
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
        q::cancel(&mut conn, "run-0123456789abcdef").expect("cancel"),
        CancelResult::NotFound
    );
}

#[test]
fn runs_of_one_deployment_run_in_order_and_plans_skip_the_queue() {
    let (_db, mut conn) = setup();
    let (d, deploy) = insert_with(&mut conn);
    let other = insert(&mut conn);
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    let ids: Vec<String> = claimed.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids, vec![deploy.clone(), other.clone()]);
    assert_eq!(deployment_status(&mut conn, &d), "running");

    // Behind the running deploy: an update and a destroy wait; a plan and a drift check don't.
    let update = queue(&mut conn, &d, RunKind::Update, true);
    let destroy = queue(&mut conn, &d, RunKind::Destroy, true);
    let plan = queue(&mut conn, &d, RunKind::Plan, false);
    let drift = queue(&mut conn, &d, RunKind::DriftCheck, false);
    assert_eq!(
        deployment_status(&mut conn, &d),
        "running",
        "a queued run does not change what the deployment shows"
    );
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    let ids: Vec<String> = claimed.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids, vec![plan.clone(), drift.clone()]);
    let summary = PlanSummary::default();
    assert!(
        q::finish(
            &mut conn,
            &drift,
            "n",
            &RunOutcome::DriftChecked {
                summary: summary.clone()
            }
        )
        .expect("finish")
        .is_some()
    );
    let row = deployments::find(&mut conn, &d)
        .expect("find")
        .expect("row");
    assert_eq!(
        row.drift.as_ref().map(|v| v["status"].clone()),
        Some(serde_json::json!("in_sync"))
    );
    assert_eq!(
        row.status, "running",
        "a drift check does not change the status"
    );

    // The deploy completes: its outputs are the deployment's, the update is next.
    let done = RunOutcome::Completed {
        outputs: serde_json::json!({"v": 1}),
    };
    assert!(
        q::finish(&mut conn, &deploy, "n", &done)
            .expect("finish")
            .is_some()
    );
    let row = deployments::find(&mut conn, &d)
        .expect("find")
        .expect("row");
    assert_eq!(row.applied_run_id.as_deref(), Some(deploy.as_str()));
    assert_eq!(row.status, "pending", "the queued update shows");
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].run_id, update,
        "the destroy waits for the update"
    );
    assert_eq!(deployment_status(&mut conn, &d), "running");
    let failed = RunOutcome::Failed {
        error: "boom".into(),
    };
    assert!(
        q::finish(&mut conn, &update, "n", &failed)
            .expect("finish")
            .is_some()
    );
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    assert_eq!(claimed[0].run_id, destroy);
    let row = deployments::find(&mut conn, &d)
        .expect("find")
        .expect("row");
    assert_eq!(
        (row.status.as_str(), row.operation.as_str()),
        ("running", "destroy")
    );
    assert_eq!(
        row.outputs,
        Some(serde_json::json!({"v": 1})),
        "a failed update changes no output"
    );
    assert!(
        q::finish(&mut conn, &destroy, "n", &RunOutcome::Destroyed)
            .expect("finish")
            .is_some()
    );
    assert_eq!(deployment_status(&mut conn, &d), "destroyed");
}

#[test]
fn a_planned_run_holds_the_queue_until_one_decision() {
    let (_db, mut conn) = setup();
    let (d, deploy) = insert_with(&mut conn);
    q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    assert!(
        q::finish(
            &mut conn,
            &deploy,
            "n",
            &RunOutcome::Completed {
                outputs: serde_json::json!({})
            }
        )
        .expect("finish")
        .is_some()
    );

    // A gated update plans, then waits; it shows on the deployment only once applied.
    let update = queue(&mut conn, &d, RunKind::Update, false);
    assert_eq!(deployment_status(&mut conn, &d), "completed");
    q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    let planned = RunOutcome::Planned {
        summary: PlanSummary::default(),
        plan: vec![0, 1, 2],
    };
    let row = q::finish(&mut conn, &update, "n", &planned)
        .expect("finish")
        .expect("owned");
    assert_eq!((row.status.as_str(), row.has_saved_plan), ("planned", true));
    assert_eq!(
        q::saved_plan(&mut conn, &update).expect("plan"),
        Some(vec![0, 1, 2])
    );
    let behind = queue(&mut conn, &d, RunKind::Update, true);
    assert!(
        q::claim(&mut conn, "n", 30, 10, 3, &[])
            .expect("claim")
            .is_empty(),
        "held by the planned run"
    );

    // Approve once: the second decision finds nothing planned.
    let approved = q::approve(&mut conn, &update, Some("ops"))
        .expect("approve")
        .expect("planned");
    assert_eq!(
        (approved.status.as_str(), approved.attempts),
        ("pending", 0)
    );
    assert!(
        q::approve(&mut conn, &update, None)
            .expect("approve")
            .is_none()
    );
    assert!(q::discard(&mut conn, &update).expect("discard").is_none());
    assert_eq!(deployment_status(&mut conn, &d), "pending");
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    assert_eq!(
        claimed.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        vec![update.clone()]
    );
    assert!(
        q::finish(
            &mut conn,
            &update,
            "n",
            &RunOutcome::Completed {
                outputs: serde_json::json!({"x": 2})
            }
        )
        .expect("finish")
        .is_some()
    );
    let claimed = q::claim(&mut conn, "n", 30, 10, 3, &[]).expect("claim");
    assert_eq!(claimed[0].run_id, behind);

    // A gated first deploy that is discarded leaves a cancelled deployment.
    let (d2, deploy2) = insert_with(&mut conn);
    diesel::sql_query(format!(
        "UPDATE runs SET auto_apply = false WHERE run_id = '{deploy2}'"
    ))
    .execute(&mut conn)
    .expect("gate");
    q::claim(&mut conn, "m", 30, 10, 3, &[]).expect("claim");
    q::finish(&mut conn, &deploy2, "m", &planned)
        .expect("finish")
        .expect("owned");
    assert_eq!(deployment_status(&mut conn, &d2), "planned");
    let row = q::discard(&mut conn, &deploy2)
        .expect("discard")
        .expect("planned");
    assert_eq!(
        (row.status.as_str(), row.has_saved_plan),
        ("discarded", false)
    );
    let row = deployments::find(&mut conn, &d2)
        .expect("find")
        .expect("row");
    assert_eq!(row.status, "cancelled");
    assert_eq!(
        row.error_message.as_deref(),
        Some("plan discarded by request")
    );
}

#[test]
fn a_deployment_accepted_alone_gets_its_deploy_run_once_when_claimed() {
    let (_db, mut conn) = setup();
    let new = NewDeployment {
        id: DeploymentId::generate(),
        provider_type: ProviderType::TerraformAws,
        template_name: "echo".into(),
        resource_group: None,
        subscription_id: None,
        location: None,
        management_group: None,
        parameters: serde_json::json!({"message": "m"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        idempotency_key: None,
        requested_by: None,
    };
    let d = deployments::insert_accepted(&mut conn, &[NewDeploymentRow::from(&new)], &[], &[])
        .expect("insert")
        .remove(0)
        .deployment_id;
    assert!(q::latest_for(&mut conn, &d).expect("runs").is_none());
    // Two nodes making runs at once make one.
    assert_eq!(q::materialize_deploy_runs(&mut conn, 5).expect("make"), 1);
    assert_eq!(q::materialize_deploy_runs(&mut conn, 5).expect("again"), 0);
    q::ensure_deploy_run(&mut conn, &d).expect("ensure");
    assert_eq!(q::list_for(&mut conn, &d, None, 10).expect("runs").len(), 1);
    let claimed = q::claim(&mut conn, "n", 30, 5, 3, &[]).expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].kind.as_str(), claimed[0].deployment_id.as_str()),
        ("deploy", d.as_str())
    );
    assert_eq!(claimed[0].parameters, serde_json::json!({"message": "m"}));
    assert_eq!(deployment_status(&mut conn, &d), "running");
}
