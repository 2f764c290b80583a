//! Schedules through the scheduler's Rust API: validation, fires on a
//! manual clock, misfire and overlap policies, pause and resume, updates,
//! restarts and several schedulers sharing one store. None sleeps.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use objectos_engine::clock::{Clock, ManualClock};
use objectos_engine::jobs::{JobQuery, JobStatus};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue, QueueConfig};
use objectos_engine::schedule::{
    MisfirePolicy, OverlapPolicy, ScheduleError, ScheduleEventType, ScheduleSpec, Scheduler, SchedulerConfig,
};
use objectos_engine::store::{MemoryStore, SqliteStore, Store, sqlite::Durability};
use serde_json::json;

use crate::harness;

fn ada() -> Principal {
    Principal::new("ada", &["admin"])
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

struct Fixture {
    scheduler: Scheduler,
    queue: Queue,
    store: Arc<dyn Store>,
    clock: ManualClock,
}

async fn fixture_on(store: Arc<dyn Store>) -> Fixture {
    let (queue, clock) = harness::queue(store.clone(), QueueConfig::default(), Arc::new(AllowAll)).await;
    let scheduler = Scheduler::new(queue.clone(), store.clone(), SchedulerConfig::default());
    Fixture { scheduler, queue, store, clock }
}

async fn fixture() -> Fixture {
    fixture_on(Arc::new(MemoryStore::new())).await
}

fn every(cron: &str) -> ScheduleSpec {
    ScheduleSpec { overlap: OverlapPolicy::Allow, ..ScheduleSpec::new(cron, "noop", json!({"n": 1})) }
}

impl Fixture {
    async fn add(&self, id: &str, spec: ScheduleSpec) {
        self.scheduler.add(&ada(), Some(id.into()), spec).await.unwrap();
    }

    async fn jobs_of(&self, schedule: &str) -> Vec<objectos_engine::jobs::Job> {
        let jobs = self
            .queue
            .list(&Scope::Any, &JobQuery { limit: Some(1000), ..Default::default() })
            .await
            .unwrap();
        jobs.into_iter().filter(|j| j.schedule_id.as_deref() == Some(schedule)).collect()
    }

    async fn tick(&self, by: Duration) -> objectos_engine::schedule::TickReport {
        self.clock.advance(by);
        self.scheduler.run_due().await.unwrap()
    }
}

#[tokio::test]
async fn invalid_schedules_are_refused_naming_the_problem() {
    let f = fixture().await;
    let add = |spec: ScheduleSpec| {
        let scheduler = f.scheduler.clone();
        async move { scheduler.add(&ada(), None, spec).await.unwrap_err().to_string() }
    };
    assert_eq!(
        add(every("0 0 * * 8")).await,
        "invalid cron expression `0 0 * * 8`: day-of-week field: 8 is out of range 0-7"
    );
    assert!(add(every("61 * * * *")).await.contains("minute field: 61"));
    assert!(
        add(ScheduleSpec { timezone: "Europe/Atlantis".into(), ..every("* * * * *") })
            .await
            .contains("unknown time zone `Europe/Atlantis`")
    );
    assert_eq!(add(ScheduleSpec::new("* * * * *", "nope", json!(null))).await, "unknown handler `nope`");
    assert!(
        add(ScheduleSpec { timeout: Some(0), ..every("* * * * *") }).await.starts_with("`timeout` must be")
    );
    let bad_id = f.scheduler.add(&ada(), Some("no spaces".into()), every("* * * * *")).await.unwrap_err();
    assert!(matches!(bad_id, ScheduleError::Invalid { field: "id", .. }));
    assert!(f.scheduler.list(&Scope::Any).await.unwrap().is_empty(), "nothing was stored");

    f.add("once", every("* * * * *")).await;
    let taken = f.scheduler.add(&ada(), Some("once".into()), every("* * * * *")).await.unwrap_err();
    assert_eq!(taken.to_string(), "schedule `once` already exists");
}

#[tokio::test]
async fn a_seconds_schedule_fires_on_time_and_links_its_jobs() {
    let f = fixture().await;
    let spec = ScheduleSpec { max_retries: Some(0), ..every("*/10 * * * * *") };
    f.add("tick", spec).await;
    let stored = f.scheduler.get(&Scope::Any, "tick").await.unwrap();
    assert_eq!(stored.next_run, Some(t0() + Duration::seconds(10)));
    assert_eq!(stored.spec.run_as, Some(ada()), "jobs run as the schedule's owner");

    assert!(f.tick(Duration::seconds(9)).await.fired.is_empty(), "not yet due");
    let report = f.tick(Duration::seconds(1)).await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].due, t0() + Duration::seconds(10));
    let job = &f.jobs_of("tick").await[0];
    assert_eq!((job.status, job.max_retries, job.name.as_str()), (JobStatus::Pending, 0, "noop"));
    let events = f.store.events(0, 100).await.unwrap();
    let fired = events.iter().find(|e| e.job_id == job.id).unwrap();
    assert_eq!(fired.event.as_str(), "job.scheduled");
    assert_eq!(fired.data["scheduleId"], "tick");

    let after = f.scheduler.get(&Scope::Any, "tick").await.unwrap();
    assert_eq!(after.next_run, Some(t0() + Duration::seconds(20)));
    assert_eq!(
        (after.last_run, after.last_job_id.as_deref()),
        (Some(t0() + Duration::seconds(10)), Some(job.id.as_str()))
    );
    assert_eq!(f.scheduler.next_due(), Some(t0() + Duration::seconds(20)));
}

#[tokio::test]
async fn after_an_outage_run_once_fires_once_and_skip_fires_none() {
    let f = fixture().await;
    f.add("catch-up", ScheduleSpec { misfire: MisfirePolicy::RunOnce, ..every("* * * * *") }).await;
    f.add("drop", ScheduleSpec { misfire: MisfirePolicy::Skip, ..every("* * * * *") }).await;
    // Nothing runs for an hour and a half: 90 fire times pass.
    let report = f.tick(Duration::minutes(90) + Duration::seconds(30)).await;
    assert_eq!(f.jobs_of("catch-up").await.len(), 1, "run-once: one job for all the missed fires");
    assert!(f.jobs_of("drop").await.is_empty(), "skip: none");
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].1.starts_with("misfire"), "{:?}", report.skipped);
    let resume_at = t0() + Duration::minutes(91);
    for id in ["catch-up", "drop"] {
        assert_eq!(
            f.scheduler.get(&Scope::Any, id).await.unwrap().next_run,
            Some(resume_at),
            "both continue on time"
        );
    }
    let skipped = f.store.schedule_events(0, 100).await.unwrap().pop().unwrap();
    assert_eq!((skipped.event, skipped.schedule_id.as_str()), (ScheduleEventType::Skipped, "drop"));
    // A fire a little late (under the threshold) is not a misfire.
    let report = f.tick(Duration::seconds(30) + Duration::seconds(5)).await;
    assert_eq!(report.fired.len(), 2);
}

#[tokio::test]
async fn overlap_skip_waits_for_the_previous_run_to_end() {
    let f = fixture().await;
    f.add("single", ScheduleSpec { overlap: OverlapPolicy::Skip, ..every("* * * * * *") }).await;
    f.add("many", every("* * * * * *")).await;
    f.tick(Duration::seconds(1)).await;
    let report = f.tick(Duration::seconds(1)).await;
    assert_eq!(report.fired.iter().map(|r| r.schedule_id.as_str()).collect::<Vec<_>>(), ["many"]);
    assert!(report.skipped[0].1.contains("still active"));
    assert_eq!((f.jobs_of("single").await.len(), f.jobs_of("many").await.len()), (1, 2));

    // Once the first run completes, the next fire runs.
    let first = f.jobs_of("single").await.remove(0);
    let workers = f.queue.start();
    f.queue.wait_final(&first.id).await.unwrap();
    workers.stop().await;
    f.tick(Duration::seconds(1)).await;
    assert_eq!(f.jobs_of("single").await.len(), 2);
}

#[tokio::test]
async fn pause_and_resume() {
    let f = fixture().await;
    f.add("p", every("0 * * * *")).await;
    let paused = f.scheduler.pause(&ada(), &Scope::Any, "p").await.unwrap();
    assert_eq!((paused.paused, paused.next_run), (true, None));
    assert!(f.tick(Duration::hours(3)).await.fired.is_empty(), "a paused schedule does not fire");
    assert_eq!(
        f.scheduler.pause(&ada(), &Scope::Any, "p").await.unwrap().revision,
        paused.revision,
        "pausing twice is a no-op"
    );

    let resumed = f.scheduler.resume(&ada(), &Scope::Any, "p").await.unwrap();
    assert_eq!(
        resumed.next_run,
        Some(t0() + Duration::hours(4)),
        "from now on; paused fires are not made up"
    );
    assert_eq!(f.tick(Duration::hours(1)).await.fired.len(), 1);
    let kinds: Vec<_> =
        f.store.schedule_events(0, 10).await.unwrap().iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["schedule.created", "schedule.paused", "schedule.resumed"]);

    f.scheduler.remove(&ada(), &Scope::Any, "p").await.unwrap();
    assert!(matches!(f.scheduler.get(&Scope::Any, "p").await, Err(ScheduleError::NotFound(_))));
    assert!(f.tick(Duration::hours(1)).await.fired.is_empty());
    assert_eq!(f.jobs_of("p").await.len(), 1, "its earlier job stays");
}

#[tokio::test]
async fn updates_merge_and_revalidate() {
    let f = fixture().await;
    f.add("u", every("0 0 * * *")).await;
    let moved = f
        .scheduler
        .update(&ada(), &Scope::Any, "u", &json!({"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}))
        .await
        .unwrap();
    assert_eq!(
        moved.next_run,
        Some(t0() + Duration::days(1)),
        "09:00 in Tokyo is 00:00 UTC, next the day after"
    );
    let options = f
        .scheduler
        .update(&ada(), &Scope::Any, "u", &json!({"maxRetries": 0, "data": {"n": 2}}))
        .await
        .unwrap();
    assert_eq!((options.spec.max_retries, options.spec.data.clone()), (Some(0), json!({"n": 2})));
    assert_eq!(options.next_run, moved.next_run, "the timing did not change");
    let reset = f.scheduler.update(&ada(), &Scope::Any, "u", &json!({"maxRetries": null})).await.unwrap();
    assert_eq!(reset.spec.max_retries, None);

    let unknown =
        f.scheduler.update(&ada(), &Scope::Any, "u", &json!({"cronn": "* * * * *"})).await.unwrap_err();
    assert!(unknown.to_string().contains("unknown field `cronn`"), "{unknown}");
    let bad = f.scheduler.update(&ada(), &Scope::Any, "u", &json!({"cron": "* * *"})).await.unwrap_err();
    assert!(bad.to_string().contains("has 3 fields"));
    assert_eq!(f.scheduler.get(&Scope::Any, "u").await.unwrap(), reset, "a refused update stores nothing");
}

#[tokio::test]
async fn a_fired_job_knows_its_schedule() {
    let f = fixture().await;
    f.add(
        "ctx",
        ScheduleSpec {
            overlap: OverlapPolicy::Allow,
            ..ScheduleSpec::new("* * * * *", "hostile", json!("context"))
        },
    )
    .await;
    let report = f.tick(Duration::minutes(1)).await;
    let workers = f.queue.start();
    let job = f.queue.wait_final(&report.fired[0].job.id).await.unwrap();
    workers.shutdown(None).await;
    assert_eq!(job.result.unwrap()["schedule"], json!("ctx"), "the guest's context names its schedule");
}

#[tokio::test]
async fn a_fire_whose_handler_is_gone_is_recorded_as_skipped() {
    let f = fixture().await;
    f.add("orphan", every("* * * * *")).await;
    f.queue.registry().remove(&Principal::new("ops", &["admin"]), "noop").await.unwrap();
    let report = f.tick(Duration::minutes(1)).await;
    assert!(report.fired.is_empty());
    assert_eq!(report.skipped[0].1, "cannot enqueue: unknown handler `noop`");
    assert_eq!(
        f.scheduler.get(&Scope::Any, "orphan").await.unwrap().next_run,
        Some(t0() + Duration::minutes(2))
    );
}

#[tokio::test]
async fn schedules_survive_a_restart_and_missed_fires_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap());
    {
        let f = fixture_on(open()).await;
        f.add("nightly", ScheduleSpec { timezone: "Europe/Berlin".into(), ..every("0 2 * * *") }).await;
        f.add("hourly-skip", ScheduleSpec { misfire: MisfirePolicy::Skip, ..every("0 * * * *") }).await;
    }
    // The engine was down for two days; it restarts at 2026-01-03 12:00 UTC.
    let f = fixture_on(open()).await;
    f.clock.advance(Duration::hours(60));
    assert_eq!(f.scheduler.load().await.unwrap(), 2);
    let report = f.scheduler.run_due().await.unwrap();
    assert_eq!(report.fired.iter().map(|r| r.schedule_id.as_str()).collect::<Vec<_>>(), ["nightly"]);
    assert_eq!(
        report.fired[0].due,
        Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap(),
        "the first missed fire"
    );
    assert_eq!(report.skipped.len(), 1);
    let nightly = f.scheduler.get(&Scope::Any, "nightly").await.unwrap();
    assert_eq!(
        nightly.next_run,
        Some(Utc.with_ymd_and_hms(2026, 1, 4, 1, 0, 0).unwrap()),
        "02:00 Berlin time"
    );
}

#[tokio::test]
async fn several_schedulers_on_one_store_fire_once_and_see_each_others_changes() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = fixture_on(store.clone()).await;
    let b = fixture_on(store.clone()).await;
    a.scheduler.load().await.unwrap();
    b.scheduler.load().await.unwrap();
    a.add("shared", every("* * * * * *")).await;
    assert_eq!(b.scheduler.next_due(), None);
    b.scheduler.sync().await.unwrap();
    assert_eq!(b.scheduler.next_due(), Some(t0() + Duration::seconds(1)), "b follows a's change");

    a.clock.advance(Duration::seconds(1));
    b.clock.advance(Duration::seconds(1));
    let (ra, rb) = tokio::join!(a.scheduler.run_due(), b.scheduler.run_due());
    let fired = ra.unwrap().fired.len() + rb.unwrap().fired.len();
    assert_eq!(fired, 1, "the fire happened once");
    assert_eq!(a.jobs_of("shared").await.len(), 1);
    // The loser re-read the schedule and is due at the same next time.
    assert_eq!(a.scheduler.next_due(), b.scheduler.next_due());

    b.scheduler.pause(&ada(), &Scope::Any, "shared").await.unwrap();
    a.scheduler.sync().await.unwrap();
    assert_eq!(a.scheduler.next_due(), None, "a follows b's pause");
}

#[tokio::test]
async fn the_loop_wakes_at_the_fire_time() {
    let f = fixture().await;
    let handle = f.scheduler.start().await.unwrap();
    f.add("loop", every("*/5 * * * * *")).await;
    f.clock.advance(Duration::seconds(5));
    let mut waited = 0;
    while f.jobs_of("loop").await.is_empty() {
        assert!(waited < 5000, "the scheduler did not fire");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        waited += 1;
    }
    handle.stop().await;
    assert_eq!(f.jobs_of("loop").await[0].created_at, f.clock.now());
}

#[tokio::test]
async fn a_fire_handled_within_the_lead_waits_for_its_time() {
    let f = fixture().await;
    f.add("ahead", every("*/10 * * * * *")).await;
    let report = f.tick(Duration::milliseconds(9_900)).await;
    assert_eq!(report.fired.len(), 1, "200 ms lead: the fire at 10 s is handled at 9.9 s");
    assert_eq!(report.fired[0].late, Duration::milliseconds(-100));
    let job = &f.jobs_of("ahead").await[0];
    assert_eq!((job.status, job.run_at), (JobStatus::Scheduled, t0() + Duration::seconds(10)));
    let events: Vec<_> =
        f.store.events(0, 100).await.unwrap().into_iter().filter(|e| e.job_id == job.id).collect();
    assert_eq!((events[0].event.as_str(), events[0].to), ("job.scheduled", JobStatus::Scheduled));
    objectos_engine::jobs::lifecycle::check_path(&events).unwrap();
    assert_eq!(f.store.next_run_at().await.unwrap(), Some(t0() + Duration::seconds(10)), "runs at its time");
}
