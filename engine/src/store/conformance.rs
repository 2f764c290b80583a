//! The storage conformance suite: every backend runs the same tests, so
//! the engine can rely on the traits alone. A backend's crate enables the
//! `testing` feature and invokes [`conformance!`](crate::conformance) with
//! a way to make a fresh store and a way to open two handles on one
//! database (as two processes sharing it would):
//!
//! ```ignore
//! crate::conformance!(sqlite, (fresh_store(), guard), (first, second, guard));
//! ```
//!
//! Each test's name says what it checks; each takes the store(s) and
//! panics on a breach of the contract.
#![allow(missing_docs, clippy::missing_panics_doc)]

use std::sync::Arc;

use crate::audit::feed::Auditor;
use crate::audit::{
    self, AuditActor, AuditEntry, AuditJob, AuditOutcome, Checkpoint, StoredEntry, Verification, verify,
};
use crate::field_path::FieldPath;
use crate::jobs::{
    Attempt, AttemptLog, Backoff, Job, JobQuery, JobSort, JobStatus, Priority, lifecycle::check_path,
};
use crate::permissions::Filter;
use crate::principal::Principal;
use crate::sandbox::{Level, LogLine, Source, Usage};
use crate::sandbox::{OnConflict, SortKey, SortOrder};
use crate::schedule::{OverlapPolicy, Schedule, ScheduleEventType, ScheduleSpec};
use crate::store::{
    AccessEvent, AccessEventType, Actor, Position, Record, RecordDelete, RecordFind, RecordImport,
    RecordUpdate,
};
use crate::store::{ArtifactRecord, AuditAppend, AuditHead, AuditQuery, AuditRow, Cursors};
use crate::store::{
    Cancelled, ClaimRequest, Finish, FinishKind, Fire, FireAction, FireOutcome, JobInsert, Lease, Renewal,
    RescueRequest, Rescued, ScheduleChange, Store, StoreError,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn job(id: &str, name: &str, priority: Priority, run_at: DateTime<Utc>) -> Job {
    Job {
        id: id.into(),
        name: name.into(),
        handler_sha256: "abc".into(),
        data: json!({"id": id}),
        priority,
        status: if run_at > t0() { JobStatus::Scheduled } else { JobStatus::Pending },
        attempts: 0,
        max_retries: 2,
        backoff: Backoff::default(),
        timeout: 1000,
        fuel: 1000,
        memory: 1 << 20,
        run_as: Principal::new("ada", &["admin"]),
        enqueued_by: "ada".into(),
        run_at,
        unique_key: None,
        created_at: t0(),
        started_at: None,
        completed_at: None,
        failed_at: None,
        cancelled_at: None,
        error: None,
        result: None,
        progress: None,
        attempt_log: vec![],
        schedule_id: None,
    }
}

fn claim_request(now: DateTime<Utc>, limit: usize) -> ClaimRequest {
    ClaimRequest {
        now,
        limit,
        exclude: vec![],
        owner: "test".into(),
        lease_until: now + Duration::seconds(30),
    }
}

fn finish(job_id: &str, token: u64, kind: FinishKind) -> Finish {
    Finish {
        job_id: job_id.into(),
        job_name: "h".into(),
        lease_token: token,
        kind,
        attempt: Attempt {
            number: 1,
            started_at: t0(),
            finished_at: t0(),
            outcome: "completed".into(),
            error: None,
            usage: Usage::default(),
        },
        log: None,
        progress: None,
        timed_out: false,
    }
}

async fn put(store: &dyn Store, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
    store.enqueue(jobs.into_iter().map(|job| JobInsert { job }).collect(), t0()).await
}

pub async fn claims_in_priority_then_run_at_then_creation_order(store: Arc<dyn Store>) {
    put(
        &*store,
        vec![
            job("low", "h", Priority::Low, t0()),
            job("normal-1", "h", Priority::Normal, t0()),
            job("crit", "h", Priority::Critical, t0()),
            job("normal-2", "h", Priority::Normal, t0()),
            job("high", "h", Priority::High, t0()),
        ],
    )
    .await
    .unwrap();
    let claimed = store.claim(claim_request(t0(), 10)).await.unwrap();
    let order: Vec<_> = claimed.iter().map(|c| c.job.id.as_str()).collect();
    assert_eq!(order, ["crit", "high", "normal-1", "normal-2", "low"]);
    assert!(claimed.iter().all(|c| c.job.status == JobStatus::Running && c.job.attempts == 1));
    assert!(
        store.claim(claim_request(t0(), 10)).await.unwrap().is_empty(),
        "claimed jobs are not claimed twice"
    );
}

pub async fn delayed_jobs_wait_for_their_time(store: Arc<dyn Store>) {
    let later = t0() + Duration::seconds(60);
    put(&*store, vec![job("later", "h", Priority::Critical, later), job("now", "h", Priority::Low, t0())])
        .await
        .unwrap();
    assert_eq!(store.get("later").await.unwrap().unwrap().status, JobStatus::Scheduled);
    let claimed = store.claim(claim_request(t0(), 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, "now");
    assert_eq!(store.next_run_at().await.unwrap(), Some(later));
    let claimed = store.claim(claim_request(later, 10)).await.unwrap();
    assert_eq!(claimed[0].job.id, "later");
    assert_eq!(store.next_run_at().await.unwrap(), None);
}

pub async fn excluded_handlers_are_skipped(store: Arc<dyn Store>) {
    put(&*store, vec![job("a", "busy", Priority::High, t0()), job("b", "free", Priority::Low, t0())])
        .await
        .unwrap();
    let mut request = claim_request(t0(), 10);
    request.exclude = vec!["busy".into()];
    let claimed = store.claim(request).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.job.id.as_str()).collect::<Vec<_>>(), ["b"]);
}

pub async fn unique_keys_allow_one_active_job(store: Arc<dyn Store>) {
    let mut first = job("u1", "h", Priority::Normal, t0());
    first.unique_key = Some("nightly".into());
    put(&*store, vec![first.clone()]).await.unwrap();
    let mut second = job("u2", "h", Priority::Normal, t0());
    second.unique_key = Some("nightly".into());
    let conflict =
        put(&*store, vec![job("other", "h", Priority::Normal, t0()), second.clone()]).await.unwrap_err();
    assert_eq!(conflict, StoreError::UniqueConflict { key: "nightly".into(), job_id: "u1".into() });
    assert!(store.get("other").await.unwrap().is_none(), "a refused batch stores nothing");

    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap();
    store
        .finish(
            vec![finish("u1", claimed[0].lease_token, FinishKind::Complete { result: json!(1) })].into(),
            t0(),
        )
        .await
        .unwrap();
    put(&*store, vec![second]).await.expect("a finished job frees its key");
}

/// `job(...)` running as `run_as`, enqueued by `enqueued_by`.
fn owned_job(id: &str, run_as: &str, enqueued_by: &str) -> Job {
    Job {
        run_as: Principal::new(run_as, &[]),
        enqueued_by: enqueued_by.into(),
        ..job(id, "h", Priority::Normal, t0())
    }
}

pub async fn unique_keys_are_per_user_jobs_run_as(store: Arc<dyn Store>) {
    let keyed = |id, run_as, enqueued_by| Job {
        unique_key: Some("nightly".into()),
        ..owned_job(id, run_as, enqueued_by)
    };
    put(&*store, vec![keyed("ada-1", "ada", "ada")]).await.unwrap();
    // Another user's key neither blocks nor reveals ada's.
    put(&*store, vec![keyed("bob-1", "bob", "bob")]).await.expect("keys are unique per user");
    // Enqueued by someone else, a job running as ada still holds ada's key.
    let conflict = put(&*store, vec![keyed("ada-2", "ada", "ops")]).await.unwrap_err();
    assert_eq!(conflict, StoreError::UniqueConflict { key: "nightly".into(), job_id: "ada-1".into() });
}

pub async fn listings_hold_only_what_their_owner_owns(store: Arc<dyn Store>) {
    put(
        &*store,
        vec![
            owned_job("mine", "ada", "ada"),
            owned_job("as-bob", "bob", "ada"),
            owned_job("bobs", "bob", "bob"),
            owned_job("eves", "eve", "eve"),
        ],
    )
    .await
    .unwrap();
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let listed = |owner: Option<&str>, skip, limit| {
        let query = JobQuery {
            owner: owner.map(str::to_string),
            sort: JobSort::CreatedAtAsc,
            skip,
            limit: Some(limit),
            ..JobQuery::default()
        };
        let store = store.clone();
        async move { ids(store.list(&query).await.unwrap()) }
    };
    assert_eq!(listed(Some("ada"), 0, 10).await, ["mine", "as-bob"], "run as or enqueued by");
    assert_eq!(listed(Some("bob"), 0, 10).await, ["as-bob", "bobs"]);
    assert_eq!(listed(Some("bob"), 1, 1).await, ["bobs"], "pages count only the owner's");
    assert!(listed(Some("mallory"), 0, 10).await.is_empty());
    assert_eq!(listed(None, 0, 10).await.len(), 4);
    let running =
        JobQuery { owner: Some("eve".into()), status: vec![JobStatus::Pending], ..JobQuery::default() };
    assert_eq!(ids(store.list(&running).await.unwrap()), ["eves"], "with the other filters");

    for (id, owner) in [("s-ada", "ada"), ("s-bob", "bob")] {
        let created = Schedule { owner: owner.into(), ..schedule(id, OverlapPolicy::Skip) };
        store.change_schedule(change(ScheduleEventType::Created, &created)).await.unwrap();
    }
    let schedule_ids = |list: Vec<Schedule>| list.into_iter().map(|s| (s.id, s.owner)).collect::<Vec<_>>();
    assert_eq!(
        schedule_ids(store.schedules(Some("bob"), "", 10).await.unwrap()),
        [("s-bob".into(), "bob".into())]
    );
    assert!(store.schedules(Some("bob"), "s-bob", 10).await.unwrap().is_empty());
    assert_eq!(store.schedules(None, "", 10).await.unwrap().len(), 2);
    assert_eq!(store.schedule("s-ada").await.unwrap().unwrap().owner, "ada", "the owner is stored");

    for (id, owners) in [("art_1", ["bob", "ada"]), ("art_2", ["eve", "eve"])] {
        store
            .create_artifact(ArtifactRecord::new(id.into(), "f", "text/plain", "j", owners, t0()))
            .await
            .unwrap();
        store.seal_artifact(id, 0, "e3b0", t0()).await.unwrap();
    }
    let artifact_ids = |owner| {
        let store = store.clone();
        async move { store.artifacts(owner, "", 10).await.unwrap().into_iter().map(|a| a.id).collect::<Vec<_>>() }
    };
    assert_eq!(artifact_ids(Some("ada")).await, ["art_1"], "the enqueuer owns its job's artifacts");
    assert_eq!(artifact_ids(Some("bob")).await, ["art_1"]);
    assert_eq!(artifact_ids(Some("eve")).await, ["art_2"]);
    assert_eq!(artifact_ids(None).await, ["art_1", "art_2"]);
    assert_eq!(store.artifact("art_1").await.unwrap().unwrap().owners(), ["bob", "ada"]);
}

pub async fn a_stale_lease_cannot_finish(store: Arc<dyn Store>) {
    put(&*store, vec![job("j", "h", Priority::Normal, t0())]).await.unwrap();
    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap();
    let token = claimed[0].lease_token;
    let stale = store.finish(vec![finish("j", token + 1000, FinishKind::Fail)].into(), t0()).await.unwrap();
    assert_eq!(stale[0], Err(StoreError::LeaseLost("j".into())));
    let ok = store
        .finish(vec![finish("j", token, FinishKind::Complete { result: json!({"ok": true}) })].into(), t0())
        .await
        .unwrap();
    assert_eq!(ok[0], Ok(JobStatus::Completed));
    let done = store.get("j").await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result, Some(json!({"ok": true})));
    let twice = store.finish(vec![finish("j", token, FinishKind::Fail)].into(), t0()).await.unwrap();
    assert_eq!(twice[0], Err(StoreError::LeaseLost("j".into())), "a finished job cannot be finished again");
    assert_eq!(store.get("j").await.unwrap().unwrap().status, JobStatus::Completed);
}

pub async fn retry_waits_then_runs_again(store: Arc<dyn Store>) {
    put(&*store, vec![job("r", "h", Priority::Normal, t0())]).await.unwrap();
    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap();
    let retry_at = t0() + Duration::seconds(5);
    let mut retry = finish("r", claimed[0].lease_token, FinishKind::Retry { run_at: retry_at });
    retry.attempt.outcome = "trap".into();
    retry.attempt.error = Some("boom".into());
    retry.timed_out = true;
    retry.log = Some(AttemptLog {
        attempt: 1,
        lines: vec![LogLine { at_ms: 1, level: Level::Info, source: Source::Log, message: "hi".into() }],
        dropped_bytes: 0,
    });
    assert_eq!(store.finish(vec![retry].into(), t0()).await.unwrap()[0], Ok(JobStatus::Retrying));
    let retried = store.get("r").await.unwrap().unwrap();
    assert_eq!(
        (retried.status, retried.run_at, retried.error.as_deref()),
        (JobStatus::Retrying, retry_at, Some("boom"))
    );
    assert_eq!(retried.attempt_log.len(), 1);
    assert!(store.claim(claim_request(t0(), 1)).await.unwrap().is_empty());
    let again = store.claim(claim_request(retry_at, 1)).await.unwrap();
    assert_eq!(again[0].job.attempts, 2);
    assert!(again[0].lease_token > claimed[0].lease_token, "fencing tokens increase");
    let logs = store.logs("r").await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].lines[0].message, "hi");
    let mut second = finish("r", again[0].lease_token, FinishKind::Complete { result: json!(2) });
    second.attempt.number = 2;
    assert_eq!(store.finish(vec![second].into(), retry_at).await.unwrap()[0], Ok(JobStatus::Completed));
    let attempts = store.get("r").await.unwrap().unwrap().attempt_log;
    let outcomes: Vec<_> =
        attempts.iter().map(|a| (a.number, a.outcome.as_str(), a.error.as_deref())).collect();
    assert_eq!(outcomes, [(1, "trap", Some("boom")), (2, "completed", None)], "each attempt kept, in order");
}

pub async fn cancel_by_status(store: Arc<dyn Store>) {
    put(&*store, vec![job("wait", "h", Priority::Normal, t0()), job("run", "h", Priority::High, t0())])
        .await
        .unwrap();
    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap();
    assert_eq!(claimed[0].job.id, "run");
    assert!(matches!(store.cancel("run", t0()).await.unwrap(), Cancelled::Requested(_)));
    let Cancelled::Now(job) = store.cancel("wait", t0()).await.unwrap() else {
        panic!("waiting job cancels at once")
    };
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(matches!(store.cancel("wait", t0()).await.unwrap(), Cancelled::AlreadyFinal(_)));
    assert_eq!(store.cancel("nope", t0()).await.unwrap_err(), StoreError::NotFound("nope".into()));
    let cancelled = store
        .finish(vec![finish("run", claimed[0].lease_token, FinishKind::Cancel)].into(), t0())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(cancelled, Ok(JobStatus::Cancelled));
    assert!(store.claim(claim_request(t0(), 5)).await.unwrap().is_empty());
}

pub async fn events_are_gapless_and_form_valid_paths(store: Arc<dyn Store>) {
    put(&*store, vec![job("a", "h", Priority::Normal, t0()), job("b", "h", Priority::Normal, t0())])
        .await
        .unwrap();
    let claimed = store.claim(claim_request(t0(), 2)).await.unwrap();
    let mut timeout = finish("a", claimed[0].lease_token, FinishKind::Retry { run_at: t0() });
    timeout.timed_out = true;
    store
        .finish(vec![timeout, finish("b", claimed[1].lease_token, FinishKind::Fail)].into(), t0())
        .await
        .unwrap();
    let again = store.claim(claim_request(t0(), 1)).await.unwrap();
    store
        .finish(
            vec![finish("a", again[0].lease_token, FinishKind::Complete { result: json!(null) })].into(),
            t0(),
        )
        .await
        .unwrap();

    let events = store.events(0, 100).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let names =
        |id: &str| events.iter().filter(|e| e.job_id == id).map(|e| e.event.as_str()).collect::<Vec<_>>();
    assert_eq!(
        names("a"),
        ["job.enqueued", "job.started", "job.timed_out", "job.retried", "job.started", "job.completed"]
    );
    assert_eq!(names("b"), ["job.enqueued", "job.started", "job.failed"]);
    for id in ["a", "b"] {
        let path: Vec<_> = events.iter().filter(|e| e.job_id == id).cloned().collect();
        check_path(&path).unwrap();
    }
    assert_eq!(store.events(3, 2).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
}

pub async fn list_filters_sorts_and_pages(store: Arc<dyn Store>) {
    let mut jobs = Vec::new();
    for i in 0..10 {
        let priority = if i % 2 == 0 { Priority::High } else { Priority::Low };
        jobs.push(job(&format!("j{i}"), if i < 5 { "alpha" } else { "beta" }, priority, t0()));
    }
    put(&*store, jobs).await.unwrap();
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let alpha = JobQuery { name: Some("alpha".into()), sort: JobSort::CreatedAtAsc, ..Default::default() };
    assert_eq!(ids(store.list(&alpha).await.unwrap()), ["j0", "j1", "j2", "j3", "j4"]);
    let page = JobQuery { sort: JobSort::CreatedAtDesc, skip: 2, limit: Some(3), ..Default::default() };
    assert_eq!(ids(store.list(&page).await.unwrap()), ["j7", "j6", "j5"]);
    let high = JobQuery { priority: Some(Priority::High), name: Some("beta".into()), ..Default::default() };
    assert_eq!(ids(store.list(&high).await.unwrap()), ["j8", "j6"]);
    let by_priority = JobQuery { sort: JobSort::PriorityDesc, limit: Some(2), ..Default::default() };
    assert_eq!(ids(store.list(&by_priority).await.unwrap()), ["j0", "j2"]);

    store.claim(claim_request(t0(), 3)).await.unwrap();
    let running = JobQuery { status: vec![JobStatus::Running], ..Default::default() };
    assert_eq!(store.list(&running).await.unwrap().len(), 3);
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.total, 10);
    assert_eq!(counts.by_status["running"], 3);
    assert_eq!(counts.by_status["pending"], 7);
}

pub async fn handlers_keep_every_version(store: Arc<dyn Store>) {
    let first = store.put_handler("report", "v1", b"one", &ops(), t0()).await.unwrap();
    assert_eq!((first.sha256.as_str(), first.versions.len()), ("v1", 1));
    let second =
        store.put_handler("report", "v2", b"two", &ops(), t0() + Duration::seconds(1)).await.unwrap();
    assert_eq!(second.sha256, "v2");
    assert_eq!(second.versions, ["v1", "v2"]);
    assert_eq!(second.created_at, t0());
    assert_eq!(store.handler("report").await.unwrap().unwrap().sha256, "v2");
    assert_eq!(store.handler_bytes("v1").await.unwrap().unwrap(), b"one");
    store.put_handler("other", "v1", b"one", &ops(), t0()).await.unwrap();
    assert_eq!(
        store.handlers().await.unwrap().iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["other", "report"]
    );
    assert!(store.delete_handler("report", &ops(), t0()).await.unwrap());
    assert!(!store.delete_handler("report", &ops(), t0()).await.unwrap());
    assert!(store.handler("report").await.unwrap().is_none());
    assert_eq!(store.handler_bytes("v2").await.unwrap().unwrap(), b"two", "versions outlive their name");
    // Each change of a name is an access event; re-registering the same version is not.
    store.put_handler("other", "v1", b"one", &ops(), t0()).await.unwrap();
    let events: Vec<(String, String)> = store
        .access_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event.as_str().to_string(), e.resource))
        .collect();
    let expected = [
        ("handler.registered", "handlers/report"),
        ("handler.uploaded", "handlers/report"),
        ("handler.registered", "handlers/other"),
        ("handler.deleted", "handlers/report"),
    ];
    assert_eq!(events, expected.map(|(e, r)| (e.to_string(), r.to_string())));
}

pub async fn progress_needs_the_lease(store: Arc<dyn Store>) {
    put(&*store, vec![job("p", "h", Priority::Normal, t0())]).await.unwrap();
    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap();
    let progress = crate::sandbox::Progress { percent: 40, message: "going".into() };
    store.set_progress("p", claimed[0].lease_token, progress.clone()).await.unwrap();
    assert_eq!(store.get("p").await.unwrap().unwrap().progress, Some(progress.clone()));
    assert_eq!(store.set_progress("p", 0, progress).await.unwrap_err(), StoreError::LeaseLost("p".into()));
}

fn rescue_at(now: DateTime<Utc>, owner: Option<&str>) -> RescueRequest {
    RescueRequest { now, owner: owner.map(str::to_string), limit: 100 }
}

async fn events_of(store: &dyn Store, id: &str) -> Vec<crate::jobs::JobEvent> {
    store.events(0, 1000).await.unwrap().into_iter().filter(|e| e.job_id == id).collect()
}

pub async fn heartbeats_keep_a_lease_and_report_lost_ones(store: Arc<dyn Store>) {
    put(&*store, vec![job("a", "h", Priority::Normal, t0()), job("b", "h", Priority::Normal, t0())])
        .await
        .unwrap();
    let claimed = store.claim(claim_request(t0(), 2)).await.unwrap();
    let lease = |i: usize| Lease { job_id: claimed[i].job.id.clone(), token: claimed[i].lease_token };
    let stale = Lease { job_id: claimed[1].job.id.clone(), token: claimed[1].lease_token + 1000 };
    let renewal = store.heartbeat(vec![lease(0), stale], t0() + Duration::seconds(90)).await.unwrap();
    assert_eq!(renewal.lost, [claimed[1].job.id.clone()], "a wrong token is a lost lease");
    assert!(renewal.cancel_requested.is_empty());
    // At t0+60s the unrenewed lease (30 s) has lapsed; the renewed one holds.
    let rescued = store.rescue(rescue_at(t0() + Duration::seconds(60), None)).await.unwrap();
    assert_eq!(rescued, [Rescued { job_id: claimed[1].job.id.clone(), status: JobStatus::Retrying }]);
    let renewal = store.heartbeat(vec![lease(0), lease(1)], t0() + Duration::seconds(120)).await.unwrap();
    assert_eq!(renewal.lost, [claimed[1].job.id.clone()], "a rescued job's old lease is lost");
}

// The tests below take two handles on one database, as two processes
// sharing it have: what one writes, the other must act on.

pub async fn a_cancel_through_another_handle_reaches_the_lease_holders_heartbeat(
    worker: Arc<dyn Store>,
    other: Arc<dyn Store>,
) {
    put(&*worker, vec![job("run", "h", Priority::Normal, t0()), job("also", "h", Priority::Normal, t0())])
        .await
        .unwrap();
    let claimed = worker.claim(claim_request(t0(), 2)).await.unwrap();
    let leases: Vec<Lease> =
        claimed.iter().map(|c| Lease { job_id: c.job.id.clone(), token: c.lease_token }).collect();
    assert!(matches!(other.cancel("run", t0()).await.unwrap(), Cancelled::Requested(_)));
    let renewal = worker.heartbeat(leases.clone(), t0() + Duration::seconds(60)).await.unwrap();
    assert_eq!(renewal, Renewal { lost: vec![], cancel_requested: vec!["run".into()] });
    // The request stands until the attempt ends, and ends with it.
    let renewal = worker.heartbeat(leases, t0() + Duration::seconds(60)).await.unwrap();
    assert_eq!(renewal.cancel_requested, ["run"]);
    worker
        .finish(vec![finish("run", claimed[0].lease_token, FinishKind::Cancel)].into(), t0())
        .await
        .unwrap();
    assert_eq!(other.get("run").await.unwrap().unwrap().status, JobStatus::Cancelled);
}

pub async fn racing_claimers_never_claim_one_job_twice(first: Arc<dyn Store>, second: Arc<dyn Store>) {
    const JOBS: usize = 300;
    let jobs = (0..JOBS).map(|i| job(&format!("j{i:03}"), "h", Priority::Normal, t0())).collect();
    put(&*first, jobs).await.unwrap();
    let claimer = |store: Arc<dyn Store>, owner: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            // Bounded: each round claims at least one job until none is left.
            for _ in 0..JOBS {
                let mut request = claim_request(t0(), 7);
                request.owner = owner.into();
                let claimed = store.claim(request).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                mine.extend(claimed.into_iter().map(|c| c.job.id));
                tokio::task::yield_now().await;
            }
            mine
        })
    };
    let (a, b) = tokio::join!(claimer(first, "node-a"), claimer(second, "node-b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!((claimed, all.len()), (JOBS, JOBS), "every job claimed exactly once");
}

pub async fn outbox_reads_miss_nothing_while_two_writers_interleave(
    first: Arc<dyn Store>,
    second: Arc<dyn Store>,
) {
    const ROUNDS: usize = 40;
    let writer = |store: Arc<dyn Store>, prefix: &'static str| {
        tokio::spawn(async move {
            for i in 0..ROUNDS {
                let jobs =
                    (0..3).map(|j| job(&format!("{prefix}-{i}-{j}"), "h", Priority::Normal, t0())).collect();
                put(&*store, jobs).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let writers = [writer(first.clone(), "a"), writer(second, "b")];
    // A reader following the outbox by cursor while both write: an event
    // committed after the cursor passed its number would be missed for good.
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        for event in first.events(cursor, 50).await.unwrap() {
            cursor = event.seq;
            seen.push(event.job_id);
        }
        if done && first.events(cursor, 1).await.unwrap().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    seen.sort();
    let all = seen.len();
    seen.dedup();
    assert_eq!((all, seen.len()), (2 * ROUNDS * 3, 2 * ROUNDS * 3), "each enqueue's event read once");
}

pub async fn lapsed_leases_are_rescued_and_the_stale_worker_is_fenced_off(store: Arc<dyn Store>) {
    put(&*store, vec![job("r", "h", Priority::Normal, t0())]).await.unwrap();
    let first = store.claim(claim_request(t0(), 1)).await.unwrap().remove(0);
    assert!(store.rescue(rescue_at(t0() + Duration::seconds(29), None)).await.unwrap().is_empty());
    let later = t0() + Duration::seconds(31);
    let rescued = store.rescue(rescue_at(later, None)).await.unwrap();
    assert_eq!(rescued, [Rescued { job_id: "r".into(), status: JobStatus::Retrying }]);
    let job = store.get("r").await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Retrying, 1));
    assert_eq!(job.run_at, t0(), "it keeps its place in the queue");
    assert_eq!(job.attempt_log[0].outcome, "lease-expired");
    assert!(job.error.unwrap().contains("lease expired"));
    let second = store.claim(claim_request(later, 1)).await.unwrap().remove(0);
    assert_eq!(second.job.attempts, 2);
    let stale = store
        .finish(vec![finish("r", first.lease_token, FinishKind::Complete { result: json!(1) })].into(), later)
        .await
        .unwrap();
    assert_eq!(stale, [Err(StoreError::LeaseLost("r".into()))], "the first worker is fenced off");
    let fresh = store
        .finish(
            vec![finish("r", second.lease_token, FinishKind::Complete { result: json!(2) })].into(),
            later,
        )
        .await
        .unwrap();
    assert_eq!(fresh, [Ok(JobStatus::Completed)]);
    let kinds: Vec<_> = events_of(&*store, "r").await.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["job.enqueued", "job.started", "job.rescued", "job.started", "job.completed"]);
    check_path(&events_of(&*store, "r").await).unwrap();
}

pub async fn a_rescue_without_attempts_left_fails_the_job(store: Arc<dyn Store>) {
    let mut once = job("once", "h", Priority::Normal, t0());
    once.max_retries = 0;
    once.unique_key = Some("k".into());
    put(&*store, vec![once]).await.unwrap();
    store.claim(claim_request(t0(), 1)).await.unwrap();
    let rescued = store.rescue(rescue_at(t0() + Duration::minutes(5), None)).await.unwrap();
    assert_eq!(rescued, [Rescued { job_id: "once".into(), status: JobStatus::Failed }]);
    let job = store.get("once").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.failed_at.is_some());
    check_path(&events_of(&*store, "once").await).unwrap();
    let mut again = self::job("again", "h", Priority::Normal, t0());
    again.unique_key = Some("k".into());
    put(&*store, vec![again]).await.expect("a failed job frees its unique key");
}

pub async fn a_starting_node_takes_back_its_own_leases_at_once(store: Arc<dyn Store>) {
    put(&*store, vec![job("mine", "h", Priority::High, t0()), job("theirs", "h", Priority::Normal, t0())])
        .await
        .unwrap();
    let mut mine = claim_request(t0(), 1);
    mine.owner = "node-a".into();
    store.claim(mine).await.unwrap();
    let mut theirs = claim_request(t0(), 1);
    theirs.owner = "node-b".into();
    store.claim(theirs).await.unwrap();
    let rescued = store.rescue(rescue_at(t0(), Some("node-a"))).await.unwrap();
    assert_eq!(rescued, [Rescued { job_id: "mine".into(), status: JobStatus::Retrying }]);
    assert_eq!(store.get("theirs").await.unwrap().unwrap().status, JobStatus::Running);
}

pub async fn a_release_gives_the_job_back_uncharged(store: Arc<dyn Store>) {
    put(&*store, vec![job("x", "h", Priority::Normal, t0())]).await.unwrap();
    let claimed = store.claim(claim_request(t0(), 1)).await.unwrap().remove(0);
    let later = t0() + Duration::seconds(5);
    let released = store
        .finish(vec![finish("x", claimed.lease_token, FinishKind::Release)].into(), later)
        .await
        .unwrap();
    assert_eq!(released, [Ok(JobStatus::Pending)]);
    let job = store.get("x").await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts, job.attempt_log.len()), (JobStatus::Pending, 0, 0));
    let again = store.claim(claim_request(later, 1)).await.unwrap().remove(0);
    assert_eq!(again.job.attempts, 1, "the released attempt was not counted");
    let kinds: Vec<_> = events_of(&*store, "x").await.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["job.enqueued", "job.started", "job.released", "job.started"]);
    check_path(&events_of(&*store, "x").await).unwrap();
}

pub async fn prune_deletes_only_finished_jobs_past_their_cutoff(store: Arc<dyn Store>) {
    let ids = ["done-old", "done-new", "failed-old", "waiting"];
    put(&*store, ids.iter().map(|id| job(id, "h", Priority::Normal, t0())).collect()).await.unwrap();
    let claimed = store.claim(claim_request(t0(), 3)).await.unwrap();
    let end = |i: usize, kind: FinishKind, at: DateTime<Utc>| {
        let store = store.clone();
        let (id, token) = (claimed[i].job.id.clone(), claimed[i].lease_token);
        async move { store.finish(vec![finish(&id, token, kind)].into(), at).await.unwrap() }
    };
    let complete = || FinishKind::Complete { result: json!(null) };
    end(0, complete(), t0()).await;
    end(1, complete(), t0() + Duration::hours(2)).await;
    end(2, FinishKind::Fail, t0()).await;
    let events_before = store.events(0, 1000).await.unwrap().len();
    let cutoff = t0() + Duration::hours(1);
    let cutoffs = [(JobStatus::Completed, cutoff)];
    assert_eq!(store.prune(&cutoffs, 100).await.unwrap(), 1);
    assert!(store.get("done-old").await.unwrap().is_none());
    for kept in ["done-new", "failed-old", "waiting"] {
        assert!(store.get(kept).await.unwrap().is_some(), "{kept} is kept");
    }
    assert_eq!(store.events(0, 1000).await.unwrap().len(), events_before, "events stay for the audit log");
    let all = [(JobStatus::Completed, cutoff + Duration::hours(5)), (JobStatus::Failed, cutoff)];
    assert_eq!(store.prune(&all, 1).await.unwrap(), 1, "at most the limit");
    assert_eq!(store.prune(&all, 100).await.unwrap(), 1);
    assert_eq!(store.counts().await.unwrap().total, 1, "only the waiting job is left");
}

fn schedule(id: &str, overlap: OverlapPolicy) -> Schedule {
    Schedule {
        id: id.into(),
        owner: "ada".into(),
        spec: ScheduleSpec {
            run_as: Some(Principal::new("ada", &["admin"])),
            overlap,
            ..ScheduleSpec::new("* * * * *", "h", json!({"from": id}))
        },
        paused: false,
        next_run: Some(t0()),
        last_run: None,
        last_job_id: None,
        revision: 0,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn change(event: ScheduleEventType, schedule: &Schedule) -> ScheduleChange {
    ScheduleChange { event, schedule: schedule.clone(), actor: Principal::new("ada", &["admin"]), at: t0() }
}

fn run(schedule: &Schedule, job_id: &str, due: DateTime<Utc>) -> Fire {
    let mut fired = job(job_id, "h", Priority::Normal, due);
    fired.schedule_id = Some(schedule.id.clone());
    fired.status = JobStatus::Pending;
    Fire {
        schedule_id: schedule.id.clone(),
        revision: schedule.revision,
        due,
        next_run: Some(due + Duration::minutes(1)),
        action: FireAction::Run(Box::new(fired)),
        now: due,
    }
}

async fn fire_one(store: &dyn Store, fire: Fire) -> FireOutcome {
    store.fire(vec![fire]).await.unwrap().remove(0).unwrap()
}

pub async fn schedule_changes_are_stored_with_their_events(store: Arc<dyn Store>) {
    let created = store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s1", OverlapPolicy::Skip)))
        .await
        .unwrap();
    assert_eq!(created.revision, 1);
    assert_eq!(store.schedule("s1").await.unwrap(), Some(created.clone()));
    let again = store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s1", OverlapPolicy::Allow)))
        .await;
    assert_eq!(again.unwrap_err(), StoreError::ScheduleExists("s1".into()));

    let mut stale = created.clone();
    stale.revision = 0;
    stale.spec.cron = "0 0 * * *".into();
    let refused = store.change_schedule(change(ScheduleEventType::Updated, &stale)).await;
    assert_eq!(refused.unwrap_err(), StoreError::ScheduleChanged("s1".into()));
    assert_eq!(
        store.schedule("s1").await.unwrap().unwrap().spec.cron,
        "* * * * *",
        "a refused change stores nothing"
    );

    let mut updated = created.clone();
    updated.spec.cron = "0 0 * * *".into();
    updated.spec.max_retries = Some(0);
    let updated = store.change_schedule(change(ScheduleEventType::Updated, &updated)).await.unwrap();
    assert_eq!((updated.revision, updated.spec.max_retries), (2, Some(0)), "a zero stays a zero");
    let paused = Schedule { paused: true, next_run: None, ..updated };
    store.change_schedule(change(ScheduleEventType::Paused, &paused)).await.unwrap();
    store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s2", OverlapPolicy::Skip)))
        .await
        .unwrap();
    let all = store.schedules(None, "", 10).await.unwrap();
    assert_eq!(
        all.iter().map(|s| (s.id.as_str(), s.paused)).collect::<Vec<_>>(),
        [("s1", true), ("s2", false)]
    );
    let pages = (store.schedules(None, "", 1).await.unwrap(), store.schedules(None, "s1", 1).await.unwrap());
    assert_eq!((pages.0[0].id.as_str(), pages.1[0].id.as_str()), ("s1", "s2"));
    assert!(store.schedules(None, "s2", 10).await.unwrap().is_empty());
    assert_eq!(store.last_schedule_event().await.unwrap(), 4);

    let current = store.schedule("s1").await.unwrap().unwrap();
    store.change_schedule(change(ScheduleEventType::Deleted, &current)).await.unwrap();
    assert_eq!(store.schedule("s1").await.unwrap(), None);
    let missing = store.change_schedule(change(ScheduleEventType::Paused, &current)).await;
    assert_eq!(missing.unwrap_err(), StoreError::ScheduleNotFound("s1".into()));

    let events = store.schedule_events(0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.seq, e.event.as_str(), e.schedule_id.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (1, "schedule.created", "s1"),
            (2, "schedule.updated", "s1"),
            (3, "schedule.paused", "s1"),
            (4, "schedule.created", "s2"),
            (5, "schedule.deleted", "s1")
        ]
    );
    assert_eq!(events[1].data["cron"], "0 0 * * *");
    assert_eq!(events[0].actor.user_id, "ada");
    assert_eq!(store.schedule_events(3, 1).await.unwrap()[0].seq, 4);
}

pub async fn a_fire_enqueues_its_job_once(store: Arc<dyn Store>) {
    let s = store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s", OverlapPolicy::Allow)))
        .await
        .unwrap();
    let FireOutcome::Fired(job) = fire_one(&*store, run(&s, "j1", t0())).await else { panic!("not fired") };
    assert_eq!(job.schedule_id.as_deref(), Some("s"));
    let stored = store.get("j1").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.schedule_id.as_deref()), (JobStatus::Pending, Some("s")));
    let after = store.schedule("s").await.unwrap().unwrap();
    assert_eq!(after.revision, s.revision + 1);
    assert_eq!(after.next_run, Some(t0() + Duration::minutes(1)));
    assert_eq!((after.last_run, after.last_job_id.as_deref()), (Some(t0()), Some("j1")));
    let events = events_of(&*store, "j1").await;
    assert_eq!(events[0].event.as_str(), "job.scheduled");
    assert_eq!(events[0].data["scheduleId"], "s");
    check_path(&events).unwrap();

    // The same fire again (a second node, or a retry) finds it stale.
    assert_eq!(fire_one(&*store, run(&s, "j2", t0())).await, FireOutcome::Stale);
    assert!(store.get("j2").await.unwrap().is_none());

    // Even with the bookkeeping undone, the fire key refuses a second job.
    let rewound = Schedule { next_run: Some(t0()), ..after };
    let rewound = store.change_schedule(change(ScheduleEventType::Updated, &rewound)).await.unwrap();
    let outcome = fire_one(&*store, run(&rewound, "j3", t0())).await;
    assert_eq!(outcome, FireOutcome::Skipped("already fired (job j1)".into()));
    assert!(store.get("j3").await.unwrap().is_none());
    assert_eq!(store.schedule("s").await.unwrap().unwrap().next_run, Some(t0() + Duration::minutes(1)));
}

pub async fn overlap_skip_waits_for_the_previous_run(store: Arc<dyn Store>) {
    let s = store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s", OverlapPolicy::Skip)))
        .await
        .unwrap();
    assert!(matches!(fire_one(&*store, run(&s, "j1", t0())).await, FireOutcome::Fired(_)));
    let s = store.schedule("s").await.unwrap().unwrap();
    let t1 = t0() + Duration::minutes(1);
    let outcome = fire_one(&*store, run(&s, "j2", t1)).await;
    assert!(matches!(&outcome, FireOutcome::Skipped(reason) if reason.contains("j1")), "{outcome:?}");
    assert!(store.get("j2").await.unwrap().is_none());
    let skipped = store.schedule_events(0, 10).await.unwrap().pop().unwrap();
    assert_eq!(skipped.event, ScheduleEventType::Skipped);
    assert!(skipped.data["reason"].as_str().unwrap().contains("still active"));

    // Once the previous run finished, the next fire runs.
    let claimed = store.claim(claim_request(t1, 1)).await.unwrap().remove(0);
    store
        .finish(vec![finish("j1", claimed.lease_token, FinishKind::Complete { result: json!(1) })].into(), t1)
        .await
        .unwrap();
    let s = store.schedule("s").await.unwrap().unwrap();
    let t2 = t1 + Duration::minutes(1);
    assert!(matches!(fire_one(&*store, run(&s, "j3", t2)).await, FireOutcome::Fired(_)));
}

pub async fn skips_and_paused_schedules(store: Arc<dyn Store>) {
    let s = store
        .change_schedule(change(ScheduleEventType::Created, &schedule("s", OverlapPolicy::Skip)))
        .await
        .unwrap();
    let skip = Fire { action: FireAction::Skip("misfire".into()), ..run(&s, "j1", t0()) };
    assert_eq!(fire_one(&*store, skip).await, FireOutcome::Skipped("misfire".into()));
    let s = store.schedule("s").await.unwrap().unwrap();
    assert_eq!((s.last_run, s.next_run), (None, Some(t0() + Duration::minutes(1))));
    let paused = store
        .change_schedule(change(ScheduleEventType::Paused, &Schedule { paused: true, ..s.clone() }))
        .await
        .unwrap();
    let at = t0() + Duration::minutes(1);
    assert_eq!(fire_one(&*store, run(&paused, "j2", at)).await, FireOutcome::Stale);
    assert!(store.get("j2").await.unwrap().is_none());
}

fn contact(id: &str, owner: &str, fields: serde_json::Value) -> Record {
    let mut record = Record::new();
    record.insert("id".into(), json!(id));
    record.insert("owner".into(), json!(owner));
    record.insert("created_at".into(), json!("2026-01-01T00:00:00.000Z"));
    record.insert("updated_at".into(), json!("2026-01-01T00:00:00.000Z"));
    record.extend(fields.as_object().unwrap().clone());
    record
}

fn ops() -> Principal {
    Principal::new("ops", &["admin"])
}

fn actor() -> Actor {
    Actor { principal: Principal::new("ada", &["admin"]), job_id: Some("job-9".into()) }
}

fn everything(limit: usize) -> RecordFind {
    RecordFind { filter: Filter::everything(), sort: vec![], after: None, limit }
}

pub async fn records_are_found_in_order_and_paged(store: Arc<dyn Store>) {
    let rows = vec![
        contact("b", "u1", json!({"n": 2, "tags": ["x"]})),
        contact("a", "u2", json!({"n": 10})),
        contact("c", "u1", json!({"n": "2"})),
        contact("d", "u1", json!({})),
    ];
    store.insert_records("contacts", rows.clone(), &actor(), t0()).await.unwrap();
    let all = store.find_records("contacts", everything(10)).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"], "by id without a sort");
    assert_eq!(all[1], rows[0], "stored as given");
    // Missing sorts first, then numbers by value, then strings.
    let sort = vec![SortKey { field: FieldPath::parse("n").unwrap(), order: SortOrder::Asc }];
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let find =
            RecordFind { filter: Filter::everything(), sort: sort.clone(), after: after.clone(), limit: 3 };
        let page = store.find_records("contacts", find).await.unwrap();
        seen.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        if page.len() < 3 {
            break;
        }
        after = Some(Position::of(&serde_json::Value::Object(page[2].clone()), &sort));
    }
    assert_eq!(seen, ["d", "b", "a", "c"]);
    let mine = Filter::parse(&json!({"owner": "u1", "tags": {"$contains": "x"}})).unwrap();
    assert_eq!(store.count_records("contacts", &mine).await.unwrap(), 1);
    assert_eq!(store.count_records("invoices", &Filter::everything()).await.unwrap(), 0);
    let fields = store.record_fields().await.unwrap();
    assert!(fields["contacts"].contains("tags") && fields["contacts"].contains("owner"));
    let taken = vec![contact("e", "u1", json!({})), rows[0].clone()];
    let refused = store.insert_records("contacts", taken, &actor(), t0()).await;
    assert!(matches!(refused, Err(StoreError::RecordExists { .. })));
    assert_eq!(store.count_records("contacts", &Filter::everything()).await.unwrap(), 4, "all or nothing");
}

pub async fn record_writes_are_whole_and_evented(store: Arc<dyn Store>) {
    let rows = vec![contact("a", "u1", json!({"n": 1})), contact("b", "u2", json!({"n": 2}))];
    store.insert_records("contacts", rows, &actor(), t0()).await.unwrap();
    let own = Filter::parse(&json!({"owner": "u1"})).unwrap();
    let patch = json!({"n": 5, "note": "x"}).as_object().unwrap().clone();
    // The check fails for one record: nothing is written.
    let strict = RecordUpdate {
        matching: Filter::everything(),
        allowed: Filter::everything(),
        check: Filter::parse(&json!({"owner": "u1"})).unwrap(),
        patch: patch.clone(),
    };
    let refused = store.update_records("contacts", strict, &actor(), t0()).await;
    assert_eq!(refused, Err(StoreError::RecordCheck("b".into())));
    let later = t0() + Duration::seconds(1);
    let update =
        RecordUpdate { matching: Filter::everything(), allowed: own.clone(), check: own.clone(), patch };
    let report = store.update_records("contacts", update, &actor(), later).await.unwrap();
    assert_eq!((report.matched, report.changed, report.skipped), (2, 1, 1));
    let all = store.find_records("contacts", everything(10)).await.unwrap();
    assert_eq!((all[0]["n"].clone(), all[1]["n"].clone()), (json!(5), json!(2)));
    assert_eq!(all[0]["updated_at"], "2026-01-01T00:00:01.000Z");
    let delete = RecordDelete { matching: Filter::everything(), allowed: own };
    let report = store.delete_records("contacts", delete, &actor(), later).await.unwrap();
    assert_eq!((report.matched, report.changed, report.skipped), (2, 1, 1));

    let denial = AccessEvent::new(
        AccessEventType::PermissionDenied,
        &actor(),
        "objects/contacts".into(),
        json!({}),
        later,
    );
    store.record_access(denial).await.unwrap();
    let events = store.access_events(0, 10).await.unwrap();
    let kinds: Vec<AccessEventType> = events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            AccessEventType::RecordsInserted,
            AccessEventType::RecordsUpdated,
            AccessEventType::RecordsDeleted,
            AccessEventType::PermissionDenied
        ]
    );
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(events[1].data, json!({"matched": 2, "changed": 1, "skipped": 1}));
    assert_eq!(events[1].job_id.as_deref(), Some("job-9"));
    assert_eq!(store.access_events(3, 10).await.unwrap().len(), 1);
}

pub async fn record_imports_resolve_conflicts(store: Arc<dyn Store>) {
    store
        .insert_records("contacts", vec![contact("a", "u1", json!({"v": 1}))], &actor(), t0())
        .await
        .unwrap();
    let import = |records: Vec<Record>, on_conflict, replaceable: Filter| RecordImport {
        records,
        on_conflict,
        replaceable,
    };
    let new = contact("a", "u1", json!({"v": 2}));
    let fresh = contact("b", "u2", json!({}));
    let fail = import(vec![fresh.clone(), new.clone()], OnConflict::Fail, Filter::everything());
    assert!(matches!(
        store.import_records("contacts", fail, &actor(), t0()).await,
        Err(StoreError::RecordExists { .. })
    ));
    let guarded = import(vec![fresh.clone(), new.clone()], OnConflict::Replace, Filter::nothing());
    assert_eq!(
        store.import_records("contacts", guarded, &actor(), t0()).await,
        Err(StoreError::RecordNotReplaceable("a".into()))
    );
    assert_eq!(store.count_records("contacts", &Filter::everything()).await.unwrap(), 1, "nothing partial");
    let skip = import(vec![fresh.clone(), new.clone()], OnConflict::Skip, Filter::nothing());
    let report = store.import_records("contacts", skip, &actor(), t0()).await.unwrap();
    assert_eq!((report.inserted, report.replaced, report.skipped), (1, 0, 1));
    let replace = import(vec![new.clone()], OnConflict::Replace, Filter::everything());
    let report = store.import_records("contacts", replace, &actor(), t0()).await.unwrap();
    assert_eq!(report.replaced, 1);
    let stored = store.find_records("contacts", everything(10)).await.unwrap();
    assert_eq!(stored[0], new);
}

fn audit_entry(n: u32, event: &str, user: &str, job: Option<&str>) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at: t0() + Duration::seconds(n as i64),
        event: event.into(),
        actor: AuditActor { user_id: user.into(), profiles: vec!["admin".into()] },
        resource: job.map_or_else(|| "objects/contacts".to_string(), |j| format!("jobs/{j}")),
        action: "act".into(),
        outcome: AuditOutcome::Success,
        job: job.map(|j| AuditJob {
            job_id: j.into(),
            job_name: "h".into(),
            attempt: 1,
            error: None,
            result_summary: None,
        }),
        metadata: json!({"n": n}),
        node_id: "node-1".into(),
    }
}

/// Chains `entries` onto `head` as an append reaching `cursors`.
fn append_of(head: &AuditHead, entries: Vec<AuditEntry>, cursors: Cursors) -> AuditAppend {
    let head = head.end();
    AuditAppend { rows: AuditRow::chain(&head, entries), head, cursors }
}

pub async fn audit_appends_only_onto_its_head(store: Arc<dyn Store>) {
    let empty = store.audit_head().await.unwrap();
    assert_eq!(empty, AuditHead::default());
    let cursors = Cursors { jobs: 2, schedules: 0, access: 1 };
    let append = append_of(
        &empty,
        (1..=3).map(|n| audit_entry(n, "job.started", "ada", Some("j1"))).collect(),
        cursors,
    );
    let stored: Vec<StoredEntry> = append.rows.iter().map(|r| r.stored.clone()).collect();
    store.append_audit(append).await.unwrap();
    let head = store.audit_head().await.unwrap();
    assert_eq!((head.seq, &head.hash, head.cursors), (3, &stored[2].hash, cursors));
    assert_eq!(
        store.audit_entries(AuditQuery::page(0, 10)).await.unwrap(),
        stored,
        "the exact bytes and hashes"
    );
    // A writer still chaining onto the empty log is refused and stores nothing.
    let stale = append_of(&empty, vec![audit_entry(9, "job.failed", "eve", None)], Cursors::default());
    assert_eq!(store.append_audit(stale).await.unwrap_err(), StoreError::AuditMoved);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.audit_entries(AuditQuery::page(0, 10)).await.unwrap().len(), 3);
    assert!(matches!(verify(stored, None, &[]), Verification::Valid { count: 3, .. }));
}

pub async fn audit_queries_filter_by_their_columns(store: Arc<dyn Store>) {
    let entries = vec![
        audit_entry(1, "job.enqueued", "ada", Some("j1")),
        audit_entry(2, "job.started", "ada", Some("j1")),
        audit_entry(3, "permission.denied", "eve", None),
        audit_entry(4, "job.enqueued", "bob", Some("j2")),
        audit_entry(5, "job.completed", "ada", Some("j1")),
    ];
    store.append_audit(append_of(&AuditHead::default(), entries, Cursors::default())).await.unwrap();
    let seqs = |query: AuditQuery| {
        let store = store.clone();
        async move { store.audit_entries(query).await.unwrap().into_iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    let all = AuditQuery::page(0, 100);
    assert_eq!(seqs(AuditQuery { event: Some("job.enqueued".into()), ..all.clone() }).await, [1, 4]);
    assert_eq!(seqs(AuditQuery { job_id: Some("j1".into()), ..all.clone() }).await, [1, 2, 5]);
    assert_eq!(seqs(AuditQuery { user_id: Some("eve".into()), ..all.clone() }).await, [3]);
    assert_eq!(seqs(AuditQuery { resource: Some("objects/contacts".into()), ..all.clone() }).await, [3]);
    let window = AuditQuery {
        since: Some(t0() + Duration::seconds(2)),
        until: Some(t0() + Duration::seconds(4)),
        ..all.clone()
    };
    assert_eq!(seqs(window).await, [2, 3], "since is inclusive, until exclusive");
    assert_eq!(seqs(AuditQuery { after: 1, limit: 2, ..all.clone() }).await, [2, 3], "paging");
    let none =
        AuditQuery { user_id: Some("ada".into()), event: Some("job.enqueued".into()), after: 1, ..all };
    assert_eq!(seqs(none).await, Vec::<u64>::new());
}

pub async fn audit_retention_removes_a_prefix_and_keeps_its_checkpoint(store: Arc<dyn Store>) {
    let entries = (1..=5).map(|n| audit_entry(n, "job.started", "ada", Some("j1"))).collect();
    let append = append_of(&AuditHead::default(), entries, Cursors::default());
    let third = append.rows[2].stored.clone();
    store.append_audit(append).await.unwrap();
    assert_eq!(store.prune_audit(t0() + Duration::seconds(4), 2).await.unwrap(), 2, "at most the limit");
    assert_eq!(store.prune_audit(t0() + Duration::seconds(4), 100).await.unwrap(), 1);
    assert_eq!(store.prune_audit(t0() + Duration::seconds(4), 100).await.unwrap(), 0);
    let head = store.audit_head().await.unwrap();
    assert_eq!(head.pruned, Some(Checkpoint { seq: 3, hash: third.hash }));
    assert_eq!(head.seq, 5, "the head stays");
    let left: Vec<u64> =
        store.audit_entries(AuditQuery::page(0, 10)).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [4, 5]);
    let verify = |expect: Vec<Checkpoint>, retention_on| {
        let store = store.clone();
        async move { audit::log::verify(&*store, &expect, retention_on).await.unwrap() }
    };
    assert!(matches!(verify(vec![], true).await, Verification::Valid { count: 2, .. }));
    // The same store read as if retention were off: the removed start is a cut.
    assert!(matches!(verify(vec![], false).await, Verification::Broken { seq: 1, .. }));
    // A checkpoint kept from inside the removed start proves nothing by
    // itself; with the retained start's own checkpoint it is accounted for.
    let first = Checkpoint { seq: 1, hash: "whatever an operator kept".into() };
    assert!(matches!(verify(vec![first.clone()], true).await, Verification::Broken { seq: 1, .. }));
    let retained = head.pruned.clone().unwrap();
    assert!(matches!(verify(vec![first, retained], true).await, Verification::Valid { count: 2, .. }));
}

pub async fn audit_sources_read_each_outbox_after_its_cursor(store: Arc<dyn Store>) {
    put(&*store, vec![job("a", "h", Priority::Normal, t0())]).await.unwrap();
    let schedule = schedule("nightly", OverlapPolicy::Allow);
    store.change_schedule(change(ScheduleEventType::Created, &schedule)).await.unwrap();
    let denial = AccessEvent::new(
        AccessEventType::PermissionDenied,
        &Actor { principal: Principal::new("eve", &[]), job_id: Some("a".into()) },
        "objects/contacts".into(),
        json!({"action": "read", "reason": "no"}),
        t0(),
    );
    store.record_access(denial).await.unwrap();
    let sources = store.audit_sources(Cursors::default(), 10).await.unwrap();
    assert_eq!(sources.jobs.len(), 1);
    let (event, facts) = &sources.jobs[0];
    assert_eq!((event.job_id.as_str(), facts.as_ref().unwrap().run_as.user_id.as_str()), ("a", "ada"));
    assert_eq!(sources.schedules.len(), 1);
    assert_eq!(sources.access[0].1.as_ref().unwrap().name, "h", "the acting job's facts");
    let cursors = Cursors { jobs: 1, schedules: 1, access: 1 };
    assert!(store.audit_sources(cursors, 10).await.unwrap().is_empty());
}

/// Two feeders racing over the same outboxes build one chain holding each
/// event once.
pub async fn concurrent_feeders_keep_one_chain(store: Arc<dyn Store>) {
    let jobs = (0..300).map(|i| job(&format!("j{i}"), "h", Priority::Normal, t0())).collect();
    put(&*store, jobs).await.unwrap();
    let feeders = [Auditor::new(store.clone(), "node-a"), Auditor::new(store.clone(), "node-b")];
    let runs = feeders.iter().map(|f| {
        let f = f.clone();
        tokio::spawn(async move { f.catch_up().await.unwrap() })
    });
    let mut appended = 0;
    for run in runs {
        appended += run.await.unwrap();
    }
    assert_eq!(appended, 300, "each event once");
    match audit::log::verify(&*store, &[], false).await.unwrap() {
        Verification::Valid { count, head } => assert_eq!((count, head.unwrap().seq), (300, 300)),
        broken => panic!("{broken:?}"),
    }
    let enqueued = AuditQuery { event: Some("job.enqueued".into()), ..AuditQuery::page(0, 1000) };
    assert_eq!(store.audit_entries(enqueued).await.unwrap().len(), 300);
    assert_eq!(feeders[0].catch_up().await.unwrap(), 0, "nothing left");
}

pub async fn artifacts_are_chunked_sealed_and_listed(store: Arc<dyn Store>) {
    let report = ArtifactRecord::new("art_1".into(), "report.csv", "text/csv", "job-1", ["ada", "ada"], t0());
    store.create_artifact(report).await.unwrap();
    store.put_artifact_chunk("art_1", 0, b"hello ".to_vec()).await.unwrap();
    store.put_artifact_chunk("art_1", 1, b"world".to_vec()).await.unwrap();
    assert!(
        store.artifacts(None, "", 10).await.unwrap().is_empty(),
        "an artifact being written is not listed"
    );
    assert_eq!(
        store.seal_artifact("art_1", 99, "abc", t0()).await.unwrap_err(),
        StoreError::ArtifactIncomplete { id: "art_1".into(), stored: 11, expected: 99 }
    );
    let sealed = store.seal_artifact("art_1", 11, "abc", t0()).await.unwrap();
    assert_eq!((sealed.size, sealed.sha256.as_str(), sealed.sealed_at), (11, "abc", Some(t0())));
    assert_eq!((sealed.job_id.as_str(), sealed.owner.as_str()), ("job-1", "ada"));
    assert_eq!(store.artifact("art_1").await.unwrap(), Some(sealed.clone()));
    let sealed_error = StoreError::ArtifactSealed("art_1".into());
    assert_eq!(store.put_artifact_chunk("art_1", 2, b"!".to_vec()).await.unwrap_err(), sealed_error);
    assert_eq!(store.seal_artifact("art_1", 11, "abc", t0()).await.unwrap_err(), sealed_error);
    assert_eq!(store.artifact_chunk("art_1", 1).await.unwrap().unwrap(), b"world");
    assert_eq!(store.artifact_chunk("art_1", 2).await.unwrap(), None);
    assert_eq!(
        store.put_artifact_chunk("art_9", 0, vec![1]).await.unwrap_err(),
        StoreError::ArtifactNotFound("art_9".into())
    );

    let empty = ArtifactRecord::new("art_2".into(), "empty.txt", "text/plain", "job-2", ["bob", "bob"], t0());
    store.create_artifact(empty).await.unwrap();
    store.seal_artifact("art_2", 0, "e3b0", t0()).await.unwrap();
    let ids = |list: Vec<ArtifactRecord>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(store.artifacts(None, "", 10).await.unwrap()), ["art_1", "art_2"]);
    assert_eq!(ids(store.artifacts(None, "art_1", 10).await.unwrap()), ["art_2"]);
    assert_eq!(ids(store.artifacts(None, "", 1).await.unwrap()), ["art_1"]);
}

/// Runs every conformance test against a fresh store from `$make`, and the
/// shared-database tests against two handles on one from `$pair`.
#[macro_export]
macro_rules! conformance {
    ($backend:ident, $make:expr, $pair:expr) => {
        mod $backend {
            use super::*;
            $crate::conformance!(@tests $make;
                claims_in_priority_then_run_at_then_creation_order,
                delayed_jobs_wait_for_their_time,
                excluded_handlers_are_skipped,
                unique_keys_allow_one_active_job,
                unique_keys_are_per_user_jobs_run_as,
                listings_hold_only_what_their_owner_owns,
                a_stale_lease_cannot_finish,
                retry_waits_then_runs_again,
                cancel_by_status,
                events_are_gapless_and_form_valid_paths,
                list_filters_sorts_and_pages,
                handlers_keep_every_version,
                progress_needs_the_lease,
                heartbeats_keep_a_lease_and_report_lost_ones,
                lapsed_leases_are_rescued_and_the_stale_worker_is_fenced_off,
                a_rescue_without_attempts_left_fails_the_job,
                a_starting_node_takes_back_its_own_leases_at_once,
                a_release_gives_the_job_back_uncharged,
                prune_deletes_only_finished_jobs_past_their_cutoff,
                schedule_changes_are_stored_with_their_events,
                a_fire_enqueues_its_job_once,
                overlap_skip_waits_for_the_previous_run,
                skips_and_paused_schedules,
                records_are_found_in_order_and_paged,
                record_writes_are_whole_and_evented,
                record_imports_resolve_conflicts,
                audit_appends_only_onto_its_head,
                audit_queries_filter_by_their_columns,
                audit_retention_removes_a_prefix_and_keeps_its_checkpoint,
                audit_sources_read_each_outbox_after_its_cursor,
                concurrent_feeders_keep_one_chain,
                artifacts_are_chunked_sealed_and_listed);
            $crate::conformance!(@shared $pair;
                a_cancel_through_another_handle_reaches_the_lease_holders_heartbeat,
                racing_claimers_never_claim_one_job_twice,
                outbox_reads_miss_nothing_while_two_writers_interleave);
        }
    };
    (@tests $make:expr; $($test:ident),*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let (store, _guard) = $make;
                $crate::store::conformance::$test(store).await;
            }
        )*
    };
    (@shared $pair:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let (first, second, _guard) = $pair;
                $crate::store::conformance::$test(first, second).await;
            }
        )*
    };
}
