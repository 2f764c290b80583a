//! `objectos schedule` on a local data directory, alone and beside a
//! running `objectos serve`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::objectos;

fn schedule(data_dir: &Path, args: &[&str]) -> Output {
    objectos().args(["schedule", "--data-dir"]).arg(data_dir).args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn schedules_are_added_listed_paused_resumed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let bad = schedule(&data, &["add", "bad", "--cron", "0 0 * * 8", "--handler", "template"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("day-of-week field: 8 is out of range 0-7"), "{stderr}");
    let zone =
        schedule(&data, &["add", "--cron", "* * * * *", "--handler", "template", "--timezone", "Moon/Base"]);
    assert!(String::from_utf8_lossy(&zone.stderr).contains("unknown time zone `Moon/Base`"));
    let handler = schedule(&data, &["add", "--cron", "* * * * *", "--handler", "nope"]);
    assert!(String::from_utf8_lossy(&handler.stderr).contains("unknown handler `nope`"));
    assert_eq!(
        json_of(&schedule(&data, &["ls", "--json"])),
        serde_json::json!({"schedules": []}),
        "nothing stored"
    );

    let added = json_of(&schedule(
        &data,
        &[
            "add",
            "nightly",
            "--cron",
            "0 2 * * MON-FRI",
            "--timezone",
            "Europe/Berlin",
            "--handler",
            "tasks",
            "--data",
            r#"{"task":"sum","numbers":[1,2]}"#,
            "--max-retries",
            "0",
            "--json",
        ],
    ));
    assert_eq!(added["id"], "nightly");
    assert_eq!(added["maxRetries"], 0, "a zero stays a zero");
    assert!(added["nextRun"].is_string());
    let text = String::from_utf8_lossy(&schedule(&data, &["ls"]).stdout).to_string();
    assert!(text.contains("nightly") && text.contains("Europe/Berlin") && text.contains("active"), "{text}");

    let paused = json_of(&schedule(&data, &["pause", "nightly", "--json"]));
    assert_eq!((paused["paused"].clone(), paused["nextRun"].clone()), (Value::Bool(true), Value::Null));
    let resumed = json_of(&schedule(&data, &["resume", "nightly", "--json"]));
    assert!(resumed["nextRun"].is_string());
    let updated = json_of(&schedule(&data, &["update", "nightly", r#"{"cron":"30 3 * * *"}"#, "--json"]));
    assert_eq!(updated["cron"], "30 3 * * *");
    assert!(schedule(&data, &["rm", "nightly"]).status.success());
    let missing = schedule(&data, &["show", "nightly"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("schedule `nightly` not found"));
}

#[test]
fn a_running_server_fires_a_schedule_added_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut serve = objectos()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let add = schedule(&data, &["add", "every-second", "--cron", "* * * * * *", "--handler", "template"]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let started = Instant::now();
    loop {
        let shown = json_of(&schedule(&data, &["show", "every-second", "--json"]));
        if shown["lastJobId"].is_string() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the server never fired the schedule: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
}
