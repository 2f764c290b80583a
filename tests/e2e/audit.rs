//! `objectos audit` on a data directory: list, export, checkpoint and
//! verify, and the exit code and message when the log was tampered with.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::objectos;

fn audit(data_dir: &Path, args: &[&str]) -> Output {
    objectos().arg("audit").args(args).arg("--data-dir").arg(data_dir).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn audit_commands_list_export_checkpoint_and_catch_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let schedule = |args: &[&str]| {
        let status = objectos().arg("schedule").args(args).arg("--data-dir").arg(&data_dir).output().unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    };
    schedule(&["add", "nightly", "--cron", "0 2 * * *", "--handler", "template"]);
    schedule(&["pause", "nightly"]);

    let listed = audit(&data_dir, &["ls", "--resource", "schedules/nightly", "--json"]);
    assert!(listed.status.success());
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let entries: Vec<&Value> = listed["entries"].as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let events: Vec<&str> = entries.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["schedule.created", "schedule.paused"]);
    assert!(entries.iter().all(|e| e["actor"]["userId"].is_string() && e["outcome"] == "success"));
    let table = stdout(&audit(&data_dir, &["ls", "--event", "schedule.paused"]));
    assert!(table.starts_with("SEQ  AT") && table.contains("schedule.paused"), "{table}");

    let export = audit(&data_dir, &["export"]);
    let lines: Vec<Value> = stdout(&export).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, lines.last().unwrap()["seq"].as_u64().unwrap(), "every entry, in order");
    assert!(lines.iter().all(|l| l["hash"].as_str().unwrap().len() == 64 && l["entry"]["seq"] == l["seq"]));

    let checkpoint_file = dir.path().join("audit.checkpoint");
    let checkpoint = audit(&data_dir, &["checkpoint", "--out", checkpoint_file.to_str().unwrap()]);
    let checkpoint: Value = serde_json::from_str(&stdout(&checkpoint)).unwrap();
    assert_eq!(checkpoint["seq"], lines.last().unwrap()["seq"]);
    let verified = audit(&data_dir, &["verify", "--checkpoint", checkpoint_file.to_str().unwrap()]);
    assert!(verified.status.success());
    assert!(
        stdout(&verified).starts_with(&format!("valid: {} entries", lines.len())),
        "{}",
        stdout(&verified)
    );

    // Someone edits an entry in the audit log's database file.
    let conn = rusqlite::Connection::open(data_dir.join("objectos.audit.db")).unwrap();
    let edited = conn
        .execute("UPDATE audit_log SET bytes = replace(bytes, '\"pause\"', '\"resume\"') WHERE bytes LIKE '%\"pause\"%'", [])
        .unwrap();
    assert_eq!(edited, 1);
    let broken = audit(&data_dir, &["verify", "--json"]);
    assert_eq!(broken.status.code(), Some(3), "verify fails with exit code 3");
    let verdict: Value = serde_json::from_str(&stdout(&broken)).unwrap();
    assert_eq!((verdict["valid"].as_bool(), &verdict["seq"]), (Some(false), &entries[1]["seq"]));
    assert!(verdict["reason"].as_str().unwrap().contains("hash does not match"), "{verdict}");

    // A checkpoint file that is not one is refused by name.
    std::fs::write(&checkpoint_file, "not json").unwrap();
    let refused = audit(&data_dir, &["verify", "--checkpoint", checkpoint_file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a checkpoint"));
}
