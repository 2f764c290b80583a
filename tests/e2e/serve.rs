//! `objectos serve` as an operator runs it: a kill -9 in the middle of a
//! run loses no job, and SIGTERM shuts down cleanly.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_engine::audit::{AuditEntry, log};
use objectos_engine::jobs::{EventType, JobQuery, JobStatus, NewJob};
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, Queue};
use objectos_engine::sandbox::{Sandbox, SandboxConfig};
use objectos_engine::store::{AuditQuery, SqliteStore, Store, StoreError, sqlite::Durability};
use serde_json::json;

use crate::support::{objectos, write_admin_permissions, write_file};

const JOBS: usize = 2000;
const CONCURRENCY: usize = 8;

fn spawn_serve(data_dir: &Path, log: &Path) -> Child {
    objectos()
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .env("OBJECTOS_CONCURRENCY", CONCURRENCY.to_string())
        .env("OBJECTOS_SHUTDOWN_GRACE", "10s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("objectos serve starts")
}

/// Waits until `done` holds for the job counts, or panics after `limit`.
async fn wait_for(
    store: &dyn Store,
    limit: Duration,
    what: &str,
    done: impl Fn(&HashMap<String, u64>) -> bool,
) {
    let started = Instant::now();
    loop {
        let counts = store.counts().await.unwrap().by_status.into_iter().collect();
        if done(&counts) {
            return;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn completed(counts: &HashMap<String, u64>) -> u64 {
    counts.get("completed").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_no_job_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // The default permission directory, beside the data directory.
    write_admin_permissions(&dir.path().join("permissions"));
    // Enqueue through the library into the database `serve` will use.
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(data_dir.join("objectos.db"), Durability::Full).unwrap());
    let sandbox = Arc::new(Sandbox::new(&SandboxConfig::new()).unwrap());
    let queue = Queue::builder(store.clone(), sandbox, Arc::new(AllowAll)).build();
    queue.registry().register("hostile", objectos_test_guests::HOSTILE.to_vec()).await.unwrap();
    let jobs = (0..JOBS).map(|_| NewJob::new("hostile", json!("sleep:5"))).collect();
    queue.enqueue_batch(&Principal::new("ops", &["admin"]), jobs).await.unwrap();

    let mut first = spawn_serve(&data_dir, &dir.path().join("first.log"));
    wait_for(&*store, Duration::from_secs(120), "a fifth of the jobs", |c| completed(c) >= JOBS as u64 / 5)
        .await;
    first.kill().unwrap(); // SIGKILL: no shutdown, leases left behind
    first.wait().unwrap();
    let at_kill = store.counts().await.unwrap();
    let running_at_kill = at_kill.by_status.get("running").copied().unwrap_or(0);
    assert!(completed(&at_kill.by_status.clone().into_iter().collect()) < JOBS as u64, "killed mid-run");

    let restarted_at = chrono::Utc::now();
    let mut second = spawn_serve(&data_dir, &dir.path().join("second.log"));
    wait_for(&*store, Duration::from_secs(180), "every job", |c| completed(c) == JOBS as u64).await;

    // Every job completed exactly once; only jobs in flight at the kill ran twice.
    let mut all = Vec::new();
    loop {
        let query = JobQuery { skip: all.len() as u64, limit: Some(1000), ..Default::default() };
        let page = store.list(&query).await.unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    assert_eq!(all.len(), JOBS);
    let events = store.events(0, 100_000).await.unwrap();
    let rescued: Vec<&str> =
        events.iter().filter(|e| e.event == EventType::Rescued).map(|e| e.job_id.as_str()).collect();
    for job in &all {
        assert_eq!(job.status, JobStatus::Completed, "{}", job.id);
        let completions =
            events.iter().filter(|e| e.job_id == job.id && e.event == EventType::Completed).count();
        assert_eq!(completions, 1, "{} completed once", job.id);
        if job.attempts > 1 {
            assert!(rescued.contains(&job.id.as_str()), "{} ran twice without being in flight", job.id);
        }
    }
    assert_eq!(rescued.len() as u64, running_at_kill, "exactly the jobs running at the kill were rescued");
    // No bound by CONCURRENCY here: a slot frees when its guest ends, before
    // the finish is committed, so a kill can leave a few more rows `running`.
    let recovered = events
        .iter()
        .filter(|e| e.event == EventType::Started && e.attempt == 2 && rescued.contains(&e.job_id.as_str()))
        .map(|e| e.at)
        .min();
    if let Some(recovered) = recovered {
        eprintln!(
            "recovery: {} jobs rescued; first rescued job started {} ms after the restart",
            rescued.len(),
            (recovered - restarted_at).num_milliseconds()
        );
    }

    // SIGTERM: a clean exit.
    let status =
        std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = second.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}\n{log}");
    assert!(log.contains("shutting down") && log.contains("took back jobs left running"), "{log}");

    // The audit log survived the kill: it verifies, and holds each job
    // event exactly once (serve caught up before exiting).
    let verify =
        objectos().args(["audit", "verify", "--json", "--data-dir"]).arg(&data_dir).output().unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");
    let events = store.events(0, 100_000).await.unwrap();
    let mut audited = Vec::new();
    log::scan(&*store, AuditQuery::default(), |stored| {
        audited.push(serde_json::from_slice::<AuditEntry>(&stored.bytes).unwrap());
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    let mut from_log: Vec<(String, String, u32)> = audited
        .iter()
        .filter(|e| e.event.starts_with("job."))
        .map(|e| {
            let job = e.job.as_ref().unwrap();
            (job.job_id.clone(), e.event.clone(), job.attempt)
        })
        .collect();
    let mut from_outbox: Vec<(String, String, u32)> =
        events.iter().map(|e| (e.job_id.clone(), e.event.as_str().to_string(), e.attempt)).collect();
    from_log.sort();
    from_outbox.sort();
    assert_eq!(from_log, from_outbox, "one entry per job event, no more");
}

#[test]
fn a_second_serve_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn_serve(dir.path(), &dir.path().join("first.log"));
    // Wait until the first holds the lock (its database exists once it does).
    let started = Instant::now();
    while !dir.path().join("objectos.db").exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = objectos().args(["serve", "--data-dir"]).arg(dir.path()).output().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another objectos process"));
}

#[test]
fn a_bad_config_file_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("objectos.yaml");
    std::fs::write(&config, "workers:\n  concurrency: 4\n  lease: forever\n").unwrap();
    let out = objectos().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("objectos.yaml") && stderr.contains("`forever`") && stderr.contains("line "),
        "{stderr}"
    );
}

/// Waits until the log at `path` contains `needle` `times` times, or panics.
fn wait_for_log(path: &Path, needle: &str, times: usize) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.matches(needle).count() >= times {
            return log;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no {needle:?} ×{times} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn permission_sets_are_checked_at_start_and_reloaded_on_change_or_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let sets = dir.path().join("sets");
    write_admin_permissions(&sets);
    let broken = sets.join("zz-broken.yaml");
    std::fs::write(&broken, "name: broken\nobjectName: x\nprofiles:\n  a: { allowRaed: true }\n").unwrap();
    let serve = |log: &str| {
        objectos()
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--permissions")
            .arg(&sets)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let refused = serve("refused.log").wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("refused.log")).unwrap();
    assert_eq!(refused.code(), Some(1), "{log}");
    assert!(log.contains("zz-broken.yaml:4"), "names the file and line: {log}");

    std::fs::remove_file(&broken).unwrap();
    let log_path = dir.path().join("serve.log");
    let mut child = serve("serve.log");
    wait_for_log(&log_path, "objectos is serving", 1);
    // A new valid file is picked up; a broken one keeps the sets in force.
    write_file(
        &sets,
        "more.yaml",
        b"name: more\nobjectName: notes\nprofiles:\n  admin: { allowRead: true }\n",
    );
    let log = wait_for_log(&log_path, "permission sets reloaded", 1);
    assert!(log.contains("sets=3"), "{log}");
    std::fs::write(&broken, "name: broken\nobjectName: x\nprofiles:\n  a: { allowRaed: true }\n").unwrap();
    let log = wait_for_log(&log_path, "the previous ones stay in force", 1);
    assert!(log.contains("zz-broken.yaml:4"), "{log}");
    std::fs::remove_file(&broken).unwrap();
    wait_for_log(&log_path, "permission sets reloaded", 2);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let log = wait_for_log(&log_path, "why=\"SIGHUP\"", 1);
    assert!(log.contains("permission sets reloaded"), "{log}");
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
}
