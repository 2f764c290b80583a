//! `objectos demo`: the whole engine at work in one command. Starts an
//! engine and its HTTP API in-process on a temporary embedded database,
//! uploads two example handlers over HTTP as the CLI would, enqueues jobs
//! over HTTP that show priorities, a retry, a timeout and a cancel,
//! runs a handler over sample records as principals who see different
//! records, runs the built-in cleanup, report, backup and restore jobs on
//! sample tickets (a backup, some tickets lost, restored and compared),
//! fires a seconds-field schedule, prints what happened, and verifies the
//! audit log over HTTP. Each step names the CLI command that does the same.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use objectos_engine::api;
use objectos_engine::audit::{AuditEntry, AuditOutcome, log};
use objectos_engine::config::{EngineConfig, TokenConfig};
use objectos_engine::examples;
use objectos_engine::jobs::{Backoff, Job, JobQuery, JobSort, JobStatus, NewJob, Priority};
use objectos_engine::node::Node;
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::Queue;
use objectos_engine::sandbox::{OnConflict, Query, RecordsService};
use objectos_engine::schedule::ScheduleSpec;
use objectos_engine::store::{AccessEventType, Actor, AuditQuery};
use serde_json::{Value, json};

use super::client::{Client, Connection};

/// Show the whole product at work: an in-process server, handler uploads, priorities, a retry,
/// a timeout, a cancel, permissions, the built-in jobs, a schedule, artifacts and the audit log.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  objectos demo")]
pub struct DemoArgs {
    /// Keep the demo's data directory here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir()?;
    let data_dir = args.data_dir.unwrap_or_else(|| temp.path().join("objectos-data"));
    let permissions = temp.path().join("permissions");
    write_demo_permissions(&permissions)?;
    let config = EngineConfig {
        data_dir,
        permissions: Some(permissions),
        workers: objectos_engine::config::WorkersConfig { concurrency: 2, ..Default::default() },
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(tour(config))?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's HTTP API, served in-process on a free port, with a client
/// for the operator `ops` (profile admin) and one for `vic` (viewer).
struct DemoServer {
    url: String,
    token: String,
    ops: Client,
    vic: Client,
    serving: api::Serving,
}

impl DemoServer {
    async fn start(node: Arc<Node>) -> anyhow::Result<Self> {
        let token = |who: &str| format!("demo-{who}-{:016x}", fastrand::u64(..));
        let (ops, vic) = (token("ops"), token("vic"));
        let config = |name: &str, token: &str, principal| TokenConfig {
            name: name.into(),
            sha256: objectos_engine::digest::sha256_hex(token.as_bytes()),
            principal,
        };
        let tokens = api::Tokens::new(vec![
            config("ops", &ops, Principal::new("ops", &["admin"])),
            config("vic", &vic, Principal::new("vic", &["viewer"])),
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let serving = api::Serving::spawn(listener, node, tokens);
        let client =
            |token: &str| Client::new(&Connection { server: Some(url.clone()), token: Some(token.into()) });
        Ok(Self { ops: client(&ops)?, vic: client(&vic)?, url, token: ops, serving })
    }

    async fn stop(self) -> anyhow::Result<()> {
        Ok(self.serving.stop().await??)
    }
}

/// Runs a blocking client call from the demo's async code.
fn http<T>(call: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    tokio::task::block_in_place(call)
}

/// Prints the CLI command a step's call amounts to.
fn command(line: &str) {
    println!("   $ objectos {line}");
}

async fn tour(config: EngineConfig) -> anyhow::Result<()> {
    println!("ObjectOS Jobs demo — an engine on a fresh embedded database in {}", config.data_dir.display());
    let node = Arc::new(Node::open(config)?);
    let audit = node.start_audit();
    let server = DemoServer::start(node.clone()).await?;
    println!("The HTTP API serves at {} while the demo runs; the CLI reaches it with", server.url);
    println!("   OBJECTOS_SERVER={} OBJECTOS_TOKEN={} objectos jobs ls\n", server.url, server.token);
    let queue = &node.queue;
    let ops = Principal::new("ops", &["admin"]);

    println!(
        "1. Upload two handlers built from guest-sdk/examples (validated, compiled once, cached on disk):"
    );
    command("handler upload template template.wasm");
    for (name, wasm) in [("template", examples::TEMPLATE), ("tasks", examples::TASKS)] {
        let path = format!("/v1/handlers/{name}");
        let uploaded = http(|| server.ops.put_bytes(&path, "application/wasm", std::io::Cursor::new(wasm)))?;
        let imports: Vec<&str> =
            uploaded["capabilities"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "   {name:<9} {} KiB, version {}…, ready in {:.0} ms, imports: {}",
            wasm.len() / 1024,
            &uploaded["sha256"].as_str().unwrap_or_default()[..12],
            uploaded["readyMs"].as_f64().unwrap_or(0.0),
            if imports.is_empty() { "no capabilities".to_string() } else { imports.join(", ") }
        );
    }

    println!("\n2. Enqueue jobs over HTTP before starting the workers (2 slots), so their order shows:");
    command("enqueue template --data '{\"name\":\"Ada\",\"times\":2}' --priority low");
    let quick_retry = Backoff { initial_ms: 200, factor: 2.0, max_ms: 1000, jitter: 0.0 };
    let plan = [
        ("greet Ada, low priority", NewJob { priority: Priority::Low, ..greet("Ada") }),
        ("greet Grace, normal", greet("Grace")),
        ("greet Linus, critical", NewJob { priority: Priority::Critical, ..greet("Linus") }),
        (
            "sum some numbers, high",
            NewJob {
                priority: Priority::High,
                ..NewJob::new("tasks", json!({"task": "sum", "numbers": [3, 4, 5.5]}))
            },
        ),
        (
            "flaky: fails once, then succeeds",
            NewJob {
                backoff: Some(quick_retry),
                ..NewJob::new("tasks", json!({"task": "flaky", "succeedOnAttempt": 2}))
            },
        ),
        (
            "3 s of work with a 300 ms timeout",
            NewJob {
                timeout: Some(300),
                max_retries: Some(0),
                ..NewJob::new("tasks", json!({"task": "work", "ms": 3000}))
            },
        ),
        (
            "60 s of work, cancelled while running",
            NewJob {
                priority: Priority::Critical,
                ..NewJob::new("tasks", json!({"task": "work", "ms": 60_000}))
            },
        ),
    ];
    let mut jobs = Vec::new();
    for (label, new) in plan {
        let job: Job = serde_json::from_value(http(|| server.ops.send("POST", "/v1/jobs", &json!(new)))?)?;
        println!("   {} {label}", short(&job.id));
        jobs.push((label, job.id));
    }

    println!("\n3. Start the workers; cancel the long job once it runs.");
    let started = Instant::now();
    let workers = queue.start();
    let long = &jobs.last().expect("planned").1;
    queue.wait_until(long, |j| j.status == JobStatus::Running).await?;
    command(&format!("jobs cancel {long}"));
    let cancelled: Job =
        serde_json::from_value(http(|| server.ops.post(&format!("/v1/jobs/{long}/cancel")))?)?;
    println!("   cancel requested for {} while {}", short(&cancelled.id), cancelled.status);
    for (_, id) in &jobs {
        tokio::time::timeout(Duration::from_secs(60), queue.wait_final(id)).await??;
    }
    let elapsed = started.elapsed();

    println!("\n4. What happened, in the order the jobs first started:\n");
    let mut finished = Vec::new();
    for (label, id) in &jobs {
        finished.push((*label, queue.get(&Scope::Any, id).await?));
    }
    finished.sort_by_key(|(_, job)| job.attempt_log.first().map(|a| a.started_at));
    println!("   {:<10} {:<38} {:<9} {:<9} {:>8}  outcome", "job", "what", "priority", "status", "attempts");
    for (label, job) in &finished {
        println!(
            "   {:<10} {:<38} {:<9} {:<9} {:>8}  {}",
            short(&job.id),
            label,
            job.priority.as_str(),
            job.status.as_str(),
            job.attempts,
            outcome(job)
        );
    }

    records_under_permission(&node, &server).await?;
    built_in_jobs(&node, &server).await?;

    println!("\n7. A schedule with a seconds field: `*/2 * * * * *` runs `template` every two seconds.");
    let scheduler = node.scheduler.start().await?;
    let spec = ScheduleSpec::new("*/2 * * * * *", "template", json!({"name": "Cron", "times": 1}));
    let schedule = node.scheduler.add(&ops, Some("every-two-seconds".into()), spec).await?;
    println!("   added `{}`, first fire due {}", schedule.id, clock_time(schedule.next_run));
    let fired = watch_fires(queue, &schedule.id, 3).await?;
    node.scheduler.pause(&ops, &Scope::Any, &schedule.id).await?;
    scheduler.stop().await;
    let events = node.store.events(0, 100_000).await?;
    for job in &fired {
        // The job's `job.scheduled` event records the fire time it was for;
        // the scheduler stores a job a moment ahead and it waits for its time.
        let due: Option<chrono::DateTime<chrono::Utc>> = events
            .iter()
            .find(|e| e.job_id == job.id)
            .and_then(|e| e.data["due"].as_str().and_then(|due| due.parse().ok()));
        let started = job.attempt_log.first().map(|a| a.started_at);
        let after = match (due, started) {
            (Some(due), Some(started)) => format!("{} ms after", (started - due).num_milliseconds()),
            _ => "?".into(),
        };
        println!(
            "   fire for {}: stored at {}, started {after} its time  {}  {}",
            clock_time(due),
            clock_time(Some(job.created_at)),
            job.status.as_str(),
            outcome(job)
        );
    }
    println!("   paused the schedule after {} fires.", fired.len());

    let (counts, stats) = queue.stats().await?;
    let by_status: Vec<String> = counts.by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "\n8. Stats: {} in {:.1} s; {} attempts, run time p50 {:.1} ms, p95 {:.1} ms.",
        by_status.join(", "),
        elapsed.as_secs_f64(),
        stats.attempts,
        stats.p50_ms,
        stats.p95_ms
    );
    let report = workers.shutdown(Some(Duration::from_secs(5))).await;
    println!("   Workers stopped ({} jobs in flight, {} released).", report.in_flight, report.released);
    audit_step(&node, &server).await?;
    server.stop().await?;
    audit.stop().await;
    println!(
        "\nNext: `objectos run guest-sdk/examples/template --data '{{\"name\":\"Ada\"}}'` to run a handler alone,"
    );
    println!("or `objectos serve` to run the engine for real (the README's tour goes on from there).");
    Ok(())
}

/// Step 9: what the audit log holds, one denial as recorded, and the
/// chain verified from its stored bytes, over HTTP.
async fn audit_step(node: &Node, server: &DemoServer) -> anyhow::Result<()> {
    node.auditor.catch_up().await?;
    let store = &node.store;
    let mut by_event = std::collections::BTreeMap::<String, u64>::new();
    let mut denial = None;
    log::scan(&**store, AuditQuery::default(), |stored| {
        let entry: AuditEntry = serde_json::from_slice(&stored.bytes)?;
        *by_event.entry(entry.event.clone()).or_default() += 1;
        if entry.outcome == AuditOutcome::Denied && denial.is_none() {
            denial = Some(entry);
        }
        anyhow::Ok(())
    })
    .await?;
    let counts: Vec<String> = by_event.iter().map(|(event, n)| format!("{n} {event}")).collect();
    println!("\n9. The audit log: {} entries — {}.", by_event.values().sum::<u64>(), counts.join(", "));
    if let Some(entry) = denial {
        println!(
            "   #{} {} {} by {} on {}: {}",
            entry.seq,
            clock_time(Some(entry.at)),
            entry.event,
            entry.actor.user_id,
            entry.resource,
            entry.metadata["reason"].as_str().unwrap_or("")
        );
    }
    command("audit verify");
    let verdict = http(|| server.ops.get("/v1/audit/verify", &[]))?;
    anyhow::ensure!(verdict["valid"] == true, "the audit log does not verify: {verdict}");
    println!(
        "   the chain holds — {} entries recomputed from their stored bytes, head #{} {}…",
        verdict["count"],
        verdict["head"]["seq"],
        &verdict["head"]["hash"].as_str().unwrap_or_default()[..16]
    );
    Ok(())
}

/// The demo's permission sets: sales see their own contacts, managers
/// their team's, and only admins see `amount`.
const DEMO_PERMISSIONS: &str = r#"name: contact-permissions
objectName: contacts
profiles:
  sales:   { allowRead: true, allowEdit: true, viewFilters: { owner: "{{ userId }}" } }
  viewer:  { allowRead: true }
  admin:   { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }
fieldPermissions:
  amount: { visibleTo: [admin] }
"#;

const DEMO_TICKETS: &str = r#"name: ticket-permissions
objectName: tickets
profiles:
  admin: { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }
"#;

/// Admins may do everything; viewers may read and enqueue jobs.
fn demo_system() -> String {
    let all = objectos_engine::permissions::sets::SYSTEM_PERMISSIONS.join(", ");
    format!(
        "name: operators\nsystem:\n  profiles:\n    admin: [{all}]\n    viewer: [jobs.read, jobs.enqueue]\n"
    )
}

fn write_demo_permissions(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("contacts.yaml"), DEMO_PERMISSIONS)?;
    std::fs::write(dir.join("tickets.yaml"), DEMO_TICKETS)?;
    std::fs::write(dir.join("operators.yaml"), demo_system())
}

/// Step 5: the same handler run as three principals sees three different
/// sets of records, and one it may not run is refused at enqueue (403).
async fn records_under_permission(node: &Node, server: &DemoServer) -> anyhow::Result<()> {
    println!("\n5. Records under permission: four contacts (two owned by ada, two by grace), one handler.");
    let ops = Actor::user(Principal::new("ops", &["admin"]));
    let sample: serde_json::Value = serde_json::from_str(SAMPLE_CONTACTS)?;
    let contacts = sample["contacts"].as_array().cloned().unwrap_or_default();
    let report = node.records.import(&ops, "contacts", contacts, OnConflict::Fail).await?;
    println!(
        "   imported {} contacts as ops (records.import); sets: sales see their own, only admin sees `amount`",
        report.inserted
    );
    node.queue.registry().register("contacts-summary", examples::CONTACTS_SUMMARY.to_vec()).await?;
    for (who, profile) in [("ops", "admin"), ("grace", "sales")] {
        let principal = Principal::new(who, &[profile]);
        let summary = NewJob::new("contacts-summary", json!({"object": "contacts"}));
        let job = run_to_end(&node.queue, &principal, summary).await?;
        println!(
            "   as {who:<6} ({profile:<5}) → {}",
            job.result.map_or_else(|| job.error.unwrap_or_default(), |r| r.to_string())
        );
    }
    let sales = Actor::user(Principal::new("grace", &["sales"]));
    let query = Query { filter: Some(json!({"amount": {"$gt": 100}})), ..Query::default() };
    if let Err(denied) = node.records.find(&sales, "contacts", query).await {
        println!("   grace filtering on `amount` → {denied}");
    }
    let summary = json!({"name": "contacts-summary", "data": {"object": "contacts"}});
    if let Err(refused) = http(|| server.vic.send("POST", "/v1/jobs", &summary)) {
        let reason = refused.to_string();
        println!(
            "   vic (viewer, read-only) enqueueing it over HTTP → 403: {}",
            reason.lines().next().unwrap_or("")
        );
    }
    let denials = node
        .store
        .access_events(0, 100)
        .await?
        .iter()
        .filter(|e| e.event == AccessEventType::PermissionDenied)
        .count();
    println!("   {denials} denials recorded as access events for the audit log");
    Ok(())
}

/// Step 6: the built-in jobs on a year of sample support tickets — a
/// cleanup dry run and a real one, a grouped report and a workbook, then a
/// backup and a restore.
async fn built_in_jobs(node: &Node, server: &DemoServer) -> anyhow::Result<()> {
    const TICKETS: i64 = 1200;
    println!("\n6. Built-in jobs on {TICKETS} sample tickets created over the past year:");
    node.install_handlers().await?;
    let now = chrono::Utc::now();
    let tickets: Vec<serde_json::Value> = (0..TICKETS)
        .map(|i| {
            // Whole hours plus half of one, so no ticket sits at the cutoff.
            let created = now - chrono::Duration::minutes((i * 7919) % (365 * 24) * 60 + 30);
            let status = ["open", "pending", "closed"][(i % 3) as usize];
            let team = ["billing", "support", "sales"][(i % 7 % 3) as usize];
            json!({
                "id": format!("t{i:05}"),
                "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "status": status,
                "team": team,
                "minutes": 5 + (i * 37) % 180,
            })
        })
        .collect();
    let ops = Actor::user(Principal::new("ops", &["admin"]));
    for batch in tickets.chunks(1000) {
        node.records.import(&ops, "tickets", batch.to_vec(), OnConflict::Fail).await?;
    }
    let run = |data: serde_json::Value, handler: &'static str| run_built_in(node, handler, data);

    let dry =
        run(json!({"objects": ["tickets"], "retentionDays": 180, "dryRun": true}), "data-cleanup").await?;
    println!(
        "   data-cleanup, dry run, retentionDays 180 → {} older than {}, would delete {}",
        dry["objects"]["tickets"]["matched"], dry["cutoff"], dry["objects"]["tickets"]["wouldDelete"]
    );
    let done = run(json!({"objects": ["tickets"], "retentionDays": 180}), "data-cleanup").await?;
    let left = node.records.count(&ops, "tickets", json!({})).await?;
    println!(
        "   data-cleanup → deleted {} (skipped {}); {left} tickets left; the deletions are audited with the job id",
        done["objects"]["tickets"]["deleted"], done["objects"]["tickets"]["skipped"]
    );

    let grouped = json!({
        "object": "tickets", "groupBy": "team", "format": "markdown", "title": "Open work by team",
        "filter": {"status": {"$ne": "closed"}},
        "aggregates": [{"op": "count"}, {"field": "minutes", "op": "sum"}, {"field": "minutes", "op": "avg"}],
    });
    let report = run(grouped, "report-generation").await?;
    println!(
        "   report-generation, markdown grouped by team → artifact {} ({} rows, {} bytes), first lines:",
        report["name"].as_str().unwrap_or(""),
        report["rows"],
        report["bytes"]
    );
    let bytes = node.artifacts.read_to_end(report["artifactId"].as_str().unwrap_or("")).await?;
    for line in String::from_utf8_lossy(&bytes).lines().filter(|l| !l.is_empty()).take(5) {
        println!("     {line}");
    }
    let sheet = json!({"object": "tickets", "fields": ["id", "status", "team", "minutes"],
                       "sort": [{"field": "minutes", "order": "desc"}], "format": "xlsx"});
    let report = run(sheet, "report-generation").await?;
    println!(
        "   report-generation, xlsx → {} ({} rows, {} bytes, sha256 {}…)",
        report["name"].as_str().unwrap_or(""),
        report["rows"],
        report["bytes"],
        &report["sha256"].as_str().unwrap_or("")[..12]
    );
    backup_and_restore(node, &ops).await?;
    let listed = http(|| server.ops.get("/v1/artifacts", &[]))?;
    let artifacts = listed["artifacts"].as_array().cloned().unwrap_or_default();
    command("artifacts ls");
    let mut table = super::output::Table::new(&["ID", "NAME", "BYTES", "JOB"]);
    for artifact in &artifacts {
        let field =
            |key: &str| artifact[key].as_str().map_or_else(|| artifact[key].to_string(), str::to_string);
        table.row([field("id"), field("name"), field("size"), field("jobId")]);
    }
    for line in table.render(false).lines() {
        println!("   {line}");
    }
    Ok(())
}

/// Runs the built-in `handler` as the demo's admin and returns its result.
async fn run_built_in(
    node: &Node,
    handler: &str,
    data: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let admin = Principal::new("ops", &["admin"]);
    let job = run_to_end(&node.queue, &admin, NewJob::new(handler, data)).await?;
    anyhow::ensure!(job.status == JobStatus::Completed, "{handler}: {}", job.error.unwrap_or_default());
    Ok(job.result.unwrap_or_default())
}

/// The end of step 6: back up every object, lose some tickets, check the
/// archive with a dry run, restore, and compare with what was backed up.
async fn backup_and_restore(node: &Node, ops: &Actor) -> anyhow::Result<()> {
    let backup = run_built_in(node, "backup", json!({})).await?;
    println!(
        "   backup → {}: {} records ({}), {} bytes, {:.0} % of their JSON Lines, sha256 {}…",
        backup["name"].as_str().unwrap_or(""),
        backup["records"],
        backup["objects"].as_object().map_or(String::new(), |objects| objects
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")),
        backup["bytes"],
        backup["sizeRatio"].as_f64().unwrap_or(0.0) * 100.0,
        &backup["sha256"].as_str().unwrap_or("")[..12]
    );
    let all = |object: &'static str| async move {
        let query = Query { limit: Some(1000), ..Query::default() };
        anyhow::Ok(node.records.find(ops, object, query).await?.records)
    };
    let before = all("tickets").await?;
    let lost = node.records.delete(ops, "tickets", json!({"status": "pending"})).await?;
    let left = node.records.count(ops, "tickets", json!({})).await?;
    println!("   deleted the {} pending tickets → {left} left", lost.changed);
    let artifact = backup["artifactId"].clone();
    let dry = run_built_in(node, "restore", json!({"artifact": artifact, "dryRun": true})).await?;
    println!(
        "   restore, dry run → archive verified ({} records, sha256 as stored); would insert {}, skip {}",
        dry["verified"]["records"], dry["inserted"], dry["skipped"]
    );
    let restored = run_built_in(node, "restore", json!({"artifact": artifact})).await?;
    let after = all("tickets").await?;
    println!(
        "   restore → inserted {}, skipped {}; {} tickets again, {} to the backup, system fields included",
        restored["inserted"],
        restored["skipped"],
        after.len(),
        if after == before { "identical" } else { "NOT identical" }
    );
    anyhow::ensure!(after == before, "the restored tickets differ from the backed-up ones");
    Ok(())
}

const SAMPLE_CONTACTS: &str = include_str!("../../../guest-sdk/examples/contacts.json");

/// Enqueues `job` as `who` and waits (at most 30 s) for it to finish.
async fn run_to_end(queue: &Queue, who: &Principal, job: NewJob) -> anyhow::Result<Job> {
    let job = queue.enqueue(who, job).await?;
    Ok(tokio::time::timeout(Duration::from_secs(30), queue.wait_final(&job.id)).await??)
}

/// Waits until `count` jobs of `schedule` have finished and returns them, oldest first.
async fn watch_fires(queue: &Queue, schedule: &str, count: usize) -> anyhow::Result<Vec<Job>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let query = JobQuery { sort: JobSort::CreatedAtAsc, limit: Some(1000), ..Default::default() };
        let fired: Vec<Job> = queue
            .list(&Scope::Any, &query)
            .await?
            .into_iter()
            .filter(|j| j.schedule_id.as_deref() == Some(schedule))
            .collect();
        if fired.iter().filter(|j| j.status.is_final()).count() >= count {
            return Ok(fired.into_iter().filter(|j| j.status.is_final()).take(count).collect());
        }
        anyhow::ensure!(Instant::now() < deadline, "the schedule did not fire {count} times in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn clock_time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "never".into(), |at| at.format("%H:%M:%S%.3f").to_string())
}

fn greet(name: &str) -> NewJob {
    NewJob::new("template", json!({"name": name, "times": 2}))
}

/// The id's distinguishing tail.
fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}

/// A one-line account of how the job ended.
fn outcome(job: &Job) -> String {
    let runs: Vec<String> = job
        .attempt_log
        .iter()
        .map(|a| format!("{} after {:.1} ms", a.outcome, a.usage.wall.as_secs_f64() * 1000.0))
        .collect();
    let result = match (&job.result, &job.error) {
        (Some(result), _) => {
            let text = result.to_string();
            if text.len() > 60 { format!("{}…", &text[..60]) } else { text }
        }
        (None, Some(error)) => error.clone(),
        (None, None) => String::new(),
    };
    format!("{} → {result}", runs.join(", then "))
}
