//! Ownership at the engine's Rust API: who owns a job (the user it runs as
//! and the one who enqueued it, a schedule's creator for its fires), what a
//! scope reaches through the queue and the scheduler, and what an upgraded
//! database gives the rows it already held.

use std::sync::Arc;

use objectos_engine::jobs::{JobQuery, NewJob};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, QueueConfig, QueueError};
use objectos_engine::schedule::{ScheduleError, ScheduleSpec, Scheduler, SchedulerConfig};
use objectos_engine::store::{
    ArtifactRecord, ArtifactStore, JobStore, ScheduleStore, SqliteStore, Store, sqlite::Durability,
};
use rusqlite::Connection;
use serde_json::json;

use crate::harness;

fn owner(user: &str) -> Scope {
    Scope::Owner(user.into())
}

#[tokio::test]
async fn a_job_belongs_to_whom_it_runs_as_and_to_whom_enqueued_it() {
    let store: Arc<dyn Store> = Arc::new(objectos_engine::store::MemoryStore::new());
    let (queue, _) = harness::queue(store, QueueConfig::default(), Arc::new(AllowAll)).await;
    let (ops, bob, eve) =
        (Principal::new("ops", &[]), Principal::new("bob", &[]), Principal::new("eve", &[]));
    let impersonated = NewJob { run_as: Some(bob.clone()), ..NewJob::new("noop", json!(1)) };
    let job = queue.enqueue(&ops, impersonated).await.unwrap();
    assert_eq!((job.run_as.user_id.as_str(), job.enqueued_by.as_str()), ("bob", "ops"));
    for scope in [owner("ops"), owner("bob"), Scope::Any] {
        assert_eq!(queue.get(&scope, &job.id).await.unwrap().id, job.id, "{scope:?}");
        assert_eq!(queue.list(&scope, &JobQuery::default()).await.unwrap().len(), 1);
    }
    // Eve is told exactly what she would be told of a job that never was.
    let hidden = queue.get(&owner("eve"), &job.id).await.unwrap_err();
    assert!(matches!(hidden, QueueError::Hidden(_)), "{hidden:?}");
    let missing = queue.get(&owner("eve"), "job_none").await.unwrap_err();
    assert_eq!(hidden.to_string().replace(&job.id, "ID"), missing.to_string().replace("job_none", "ID"));
    assert!(queue.list(&owner("eve"), &JobQuery::default()).await.unwrap().is_empty());
    assert!(matches!(queue.logs(&owner("eve"), &job.id).await, Err(QueueError::Hidden(_))));
    assert!(matches!(queue.cancel(&owner("eve"), &job.id).await, Err(QueueError::Hidden(_))));
    assert!(!queue.get(&Scope::Any, &job.id).await.unwrap().status.is_final(), "eve's cancel did nothing");

    // A unique key is bob's: eve's own key of that name is free, and a
    // conflict names the holder only to its owners.
    let keyed = |who: &Principal| NewJob {
        unique_key: Some("daily".into()),
        run_as: Some(who.clone()),
        ..NewJob::new("noop", json!(1))
    };
    queue.enqueue(&ops, keyed(&bob)).await.unwrap();
    queue.enqueue(&eve, keyed(&eve)).await.expect("keys are per user");
    let named = queue.enqueue(&bob, keyed(&bob)).await.unwrap_err().to_string();
    let other_ops = Principal::new("ops-2", &[]);
    let unnamed = queue.enqueue(&other_ops, keyed(&bob)).await.unwrap_err().to_string();
    assert!(named.contains("(job job_"), "{named}");
    assert_eq!(unnamed, "an active job already holds unique key `daily`");
}

#[tokio::test]
async fn a_schedule_belongs_to_its_creator_who_also_owns_its_fires() {
    let store: Arc<dyn Store> = Arc::new(objectos_engine::store::MemoryStore::new());
    let (queue, clock) = harness::queue(store.clone(), QueueConfig::default(), Arc::new(AllowAll)).await;
    let scheduler = Scheduler::new(queue.clone(), store, SchedulerConfig::default());
    let (ops, bob) = (Principal::new("ops", &[]), Principal::new("bob", &[]));
    let spec = ScheduleSpec { run_as: Some(bob.clone()), ..ScheduleSpec::new("* * * * *", "noop", json!(1)) };
    let schedule = scheduler.add(&ops, None, spec).await.unwrap();
    assert_eq!(schedule.owner, "ops");
    assert_eq!(scheduler.list(&owner("ops")).await.unwrap().len(), 1);
    assert!(scheduler.list(&owner("bob")).await.unwrap().is_empty(), "its jobs run as bob; it is ops'");
    for attempt in [
        scheduler.get(&owner("bob"), &schedule.id).await.map(drop),
        scheduler.pause(&bob, &owner("bob"), &schedule.id).await.map(drop),
        scheduler.update(&bob, &owner("bob"), &schedule.id, &json!({"data": 2})).await.map(drop),
        scheduler.remove(&bob, &owner("bob"), &schedule.id).await.map(drop),
    ] {
        assert!(matches!(attempt, Err(ScheduleError::Hidden(_))), "{attempt:?}");
    }
    assert!(!scheduler.get(&Scope::Any, &schedule.id).await.unwrap().paused, "bob's pause did nothing");

    clock.advance(chrono::Duration::minutes(1));
    let fired = scheduler.run_due().await.unwrap().fired;
    let job = &fired[0].job;
    assert_eq!((job.run_as.user_id.as_str(), job.enqueued_by.as_str()), ("bob", "ops"));
}

#[tokio::test]
async fn an_upgraded_database_gives_its_rows_the_owner_they_run_as() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("objectos.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db, Durability::Normal).unwrap());
        let (queue, _) = harness::queue(store.clone(), QueueConfig::default(), Arc::new(AllowAll)).await;
        let as_bob = NewJob { run_as: Some(Principal::new("bob", &[])), ..NewJob::new("noop", json!(1)) };
        queue.enqueue(&Principal::new("ops", &[]), as_bob).await.unwrap();
        let scheduler = Scheduler::new(queue.clone(), store.clone(), SchedulerConfig::default());
        scheduler
            .add(
                &Principal::new("ada", &[]),
                Some("nightly".into()),
                ScheduleSpec::new("0 0 * * *", "noop", json!(1)),
            )
            .await
            .unwrap();
        let artifact =
            ArtifactRecord::new("art_1".into(), "f", "text/plain", "j", ["bob", "ops"], chrono::Utc::now());
        store.create_artifact(artifact).await.unwrap();
    }
    // The database as the release before owners left it: migration 8 undone.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP INDEX jobs_unique_active; DROP INDEX jobs_owner; DROP INDEX jobs_enqueued_by;
             DROP INDEX schedules_owner; DROP INDEX artifacts_owner; DROP INDEX artifacts_enqueued_by;
             ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN enqueued_by;
             ALTER TABLE schedules DROP COLUMN owner; ALTER TABLE artifacts DROP COLUMN enqueued_by;
             CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key) WHERE unique_key IS NOT NULL
                 AND (status = 'pending' OR status = 'scheduled' OR status = 'running' OR status = 'retrying');
             DELETE FROM schema_migrations WHERE version = 8;",
        )
        .unwrap();
    let store = SqliteStore::open(&db, Durability::Normal).unwrap();
    let query = JobQuery { owner: Some("bob".into()), ..JobQuery::default() };
    let jobs = store.list(&query).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].enqueued_by, "bob",
        "an older row was enqueued, as far as it tells, by whom it runs as"
    );
    assert!(store.list(&JobQuery { owner: Some("ops".into()), ..query }).await.unwrap().is_empty());
    assert_eq!(store.schedule("nightly").await.unwrap().unwrap().owner, "ada", "the user its jobs run as");
    assert_eq!(store.artifact("art_1").await.unwrap().unwrap().owners(), ["bob", "bob"]);
}
