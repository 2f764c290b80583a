//! The built-in jobs on a node's SQLite database (`synchronous=FULL`, as
//! `objectos serve` runs by default) with RECORDS records (default
//! 1,000,000) of an `items` object.
//!
//! 1. `report-generation` in each format listing every record (four
//!    columns, in id order): rows/s over the guest's run time, bytes, and
//!    the guest's peak memory.
//! 2. `backup` of every record, gzip-compressed: records/s and MB/s of
//!    JSON Lines over the guest's run time, the archive's size against the
//!    JSON Lines, and peak memory; then `restore` of that archive into the
//!    emptied object, the same figures.
//! 3. `data-cleanup` deleting every record (all past retention), in the
//!    default batches of 500: deletions/s and peak memory. The records are
//!    seeded again before each round.
//!
//! Prints medians of ROUNDS runs (default 3). Run with
//! `cargo bench -p objectos-engine --bench builtins` (`RECORDS=…`,
//! `ROUNDS=…`, `FORMATS=csv,xlsx` to narrow the reports, `FORMATS=` for
//! none, `PARTS=backup` for some of `report,backup,cleanup`).

use std::time::{Duration, Instant};

use chrono::Utc;
use objectos_engine::config::{EngineConfig, WorkersConfig};
use objectos_engine::jobs::{Job, JobStatus, NewJob};
use objectos_engine::node::Node;
use objectos_engine::principal::Principal;
use objectos_engine::sandbox::RecordsService;
use objectos_engine::store::{Actor, Record};
use serde_json::{Value, json};

const SETS: &str = "name: items\nobjectName: items\nprofiles:\n  admin: { allowRead: true, allowCreate: true, \
                    allowEdit: true, allowDelete: true }\n";
const SYSTEM: &str =
    "name: operators\nsystem:\n  profiles:\n    admin: [artifacts.write, artifacts.read, records.import]\n";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

async fn seed(node: &Node, count: usize) {
    let actor = Actor::user(Principal::new("seed", &[]));
    let old = "2020-01-01T00:00:00.000Z";
    let regions = ["north", "south", "east", "west"];
    for start in (0..count).step_by(10_000) {
        let batch: Vec<Record> = (start..(start + 10_000).min(count))
            .map(|i| {
                let Value::Object(record) = json!({
                    "id": format!("i{i:07}"), "owner": "ops", "created_at": old, "updated_at": old,
                    "name": format!("item {i}"), "region": regions[i % 4], "amount": (i * 7919) % 10_000,
                }) else {
                    unreachable!()
                };
                record
            })
            .collect();
        node.store.insert_records("items", batch, &actor, Utc::now()).await.expect("seed");
    }
}

/// Runs one job as the admin and returns it, finished.
async fn run(node: &Node, handler: &str, data: Value) -> Job {
    let ops = Principal::new("ops", &["admin"]);
    let job = node.queue.enqueue(&ops, NewJob::new(handler, data)).await.expect("enqueue");
    let job = node.queue.wait_final(&job.id).await.expect("wait");
    assert_eq!(job.status, JobStatus::Completed, "{handler}: {:?}", job.error);
    job
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let records = env("RECORDS", 1_000_000);
    let rounds = env("ROUNDS", 3);
    let formats = std::env::var("FORMATS").unwrap_or_else(|_| "csv,json,markdown,html,xlsx".into());
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "report,backup,cleanup".into());
    let part = |name: &str| parts.split(',').any(|p| p == name);
    let dir = tempfile::tempdir().expect("tempdir");
    let permissions = dir.path().join("permissions");
    std::fs::create_dir_all(&permissions).expect("permissions dir");
    std::fs::write(permissions.join("items.yaml"), SETS).expect("write set");
    std::fs::write(permissions.join("operators.yaml"), SYSTEM).expect("write set");
    let config = EngineConfig {
        data_dir: dir.path().join("data"),
        permissions: Some(permissions),
        workers: WorkersConfig { concurrency: 2, ..Default::default() },
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let node = Node::open(config).expect("node");
        node.install_handlers().await.expect("built-ins");
        let workers = node.queue.start();
        let started = Instant::now();
        seed(&node, records).await;
        println!("{records} items seeded in {:.1} s; medians of {rounds} rounds\n", started.elapsed().as_secs_f64());

        if part("report") {
            println!("report-generation, every record, 4 columns:");
        }
        for format in formats.split(',').filter(|f| !f.is_empty() && part("report")) {
            let (mut rates, mut bytes, mut peak) = (Vec::new(), 0, 0);
            for _ in 0..rounds {
                let input = json!({"object": "items", "fields": ["id", "name", "region", "amount"], "format": format});
                let job = run(&node, "report-generation", input).await;
                let usage = job.attempt_log.last().expect("an attempt").usage;
                let result = job.result.expect("result");
                assert_eq!(result["rows"], json!(records));
                rates.push(records as f64 / usage.wall.as_secs_f64());
                bytes = result["bytes"].as_u64().unwrap_or(0);
                peak = peak.max(usage.peak_memory);
            }
            println!(
                "  {format:<9} {:>9.0} rows/s  {:>7.1} MiB written  guest peak memory {:.1} MiB",
                median(rates),
                mib(bytes),
                mib(peak)
            );
        }

        if part("backup") {
            backup_and_restore(&node, records, rounds).await;
        }
        if part("cleanup") {
            cleanup(&node, records, rounds).await;
        }
        workers.shutdown(Some(Duration::from_secs(5))).await;
    });
}

/// One line of figures for a backup or a restore.
fn archive_line(what: &str, records: usize, runs: &[(Duration, u64)], raw: u64, archive: u64) {
    let rate = median(runs.iter().map(|(wall, _)| records as f64 / wall.as_secs_f64()).collect());
    let mbs = median(runs.iter().map(|(wall, _)| raw as f64 / 1e6 / wall.as_secs_f64()).collect());
    let peak = runs.iter().map(|(_, peak)| *peak).max().unwrap_or(0);
    println!(
        "  {what:<8} {rate:>9.0} records/s  {mbs:>6.1} MB/s of JSON Lines  archive {:.1} MiB = {:.3} of {:.1} MiB  \
         guest peak memory {:.1} MiB",
        mib(archive),
        archive as f64 / raw as f64,
        mib(raw),
        mib(peak)
    );
}

async fn backup_and_restore(node: &Node, records: usize, rounds: usize) {
    println!("\nbackup of every record (gzip), then restore into the emptied object:");
    let admin = Actor::user(Principal::new("ops", &["admin"]));
    let (mut backups, mut restores, mut raw, mut archive) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..rounds {
        let job = run(node, "backup", json!({"objects": ["items"]})).await;
        let usage = job.attempt_log.last().expect("an attempt").usage;
        let result = job.result.expect("result");
        assert_eq!(result["records"], json!(records));
        backups.push((usage.wall, usage.peak_memory));
        raw = result["rawBytes"].as_u64().unwrap_or(0);
        archive = result["bytes"].as_u64().unwrap_or(0);

        node.records.delete(&admin, "items", json!({})).await.expect("empty the object");
        let job = run(node, "restore", json!({"artifact": result["artifactId"]})).await;
        let usage = job.attempt_log.last().expect("an attempt").usage;
        assert_eq!(job.result.expect("result")["inserted"], json!(records));
        restores.push((usage.wall, usage.peak_memory));
    }
    archive_line("backup", records, &backups, raw, archive);
    archive_line("restore", records, &restores, raw, archive);
}

async fn cleanup(node: &Node, records: usize, rounds: usize) {
    println!("\ndata-cleanup, every record past retention, batches of 500:");
    let (mut rates, mut peak) = (Vec::new(), 0);
    for round in 0..rounds {
        if round > 0 {
            seed(node, records).await;
        }
        let job = run(node, "data-cleanup", json!({"objects": ["items"], "retentionDays": 30})).await;
        let usage = job.attempt_log.last().expect("an attempt").usage;
        assert_eq!(job.result.expect("result")["deleted"], json!(records));
        rates.push(records as f64 / usage.wall.as_secs_f64());
        peak = peak.max(usage.peak_memory);
    }
    println!("  {:>9.0} deletions/s  guest peak memory {:.1} MiB", median(rates), mib(peak));
}
