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

/// A data directory with a few audit entries (a schedule's changes).
fn a_log(dir: &Path) -> std::path::PathBuf {
    let data_dir = dir.join("data");
    for args in
        [&["add", "nightly", "--cron", "0 2 * * *", "--handler", "template"][..], &["pause", "nightly"]]
    {
        let out = objectos().arg("schedule").args(args).arg("--data-dir").arg(&data_dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    data_dir
}

fn verdict(data_dir: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let out = audit(data_dir, &[&["verify", "--json"][..], args].concat());
    (out.status.code(), serde_json::from_str(&stdout(&out)).unwrap())
}

#[test]
fn a_log_cut_short_at_its_start_is_caught_and_so_is_a_refiled_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = a_log(dir.path());
    assert_eq!(verdict(&data_dir, &[]).0, Some(0));
    // An operator kept a checkpoint of entry 2 (as `audit checkpoint` wrote it then).
    let conn = rusqlite::Connection::open(data_dir.join("objectos.audit.db")).unwrap();
    let second: String =
        conn.query_row("SELECT hash FROM audit_log WHERE seq = 2", [], |r| r.get(0)).unwrap();
    let checkpoint_file = dir.path().join("early.checkpoint");
    std::fs::write(&checkpoint_file, serde_json::json!({"seq": 2, "hash": second}).to_string()).unwrap();
    assert_eq!(verdict(&data_dir, &["--checkpoint", checkpoint_file.to_str().unwrap()]).0, Some(0));

    // Someone with the file deletes the oldest entries and marks the start
    // as pruned, consistent with what is left; retention is off.
    let (seq, hash): (i64, String) = conn
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq LIMIT 1 OFFSET 2", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    conn.execute("DELETE FROM audit_log WHERE seq <= ?1", [seq]).unwrap();
    conn.execute("UPDATE audit_head SET pruned_seq = ?1, pruned_hash = ?2", rusqlite::params![seq, hash])
        .unwrap();
    let (code, cut) = verdict(&data_dir, &[]);
    assert_eq!((code, &cut["seq"]), (Some(3), &Value::from(1)), "{cut}");
    assert!(cut["reason"].as_str().unwrap().contains("retention is off"), "{cut}");

    // Even with retention on, a checkpoint from inside the cut proves it.
    std::fs::write(dir.path().join("objectos.yaml"), "audit:\n  retention: 365d\n").unwrap();
    let with_retention = |args: &[&str]| {
        let out = objectos()
            .args(["audit", "verify", "--json", "--config"])
            .arg(dir.path().join("objectos.yaml"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap();
        (out.status.code(), serde_json::from_str::<Value>(&stdout(&out)).unwrap())
    };
    let (code, inside) = with_retention(&["--checkpoint", checkpoint_file.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{inside}");
    assert!(inside["reason"].as_str().unwrap().contains("inside the removed start"), "{inside}");
    assert_eq!(with_retention(&[]).0, Some(0), "without a checkpoint, retention's start is accepted");

    // An entry re-filed under another event, so `audit ls --event` misses it.
    let last: i64 = conn.query_row("SELECT max(seq) FROM audit_log", [], |r| r.get(0)).unwrap();
    conn.execute("UPDATE audit_log SET event = 'job.completed' WHERE seq = ?1", [last]).unwrap();
    let (code, refiled) = with_retention(&[]);
    assert_eq!((code, &refiled["seq"]), (Some(3), &Value::from(last)), "{refiled}");
    assert!(
        refiled["reason"].as_str().unwrap().contains("stored `event` does not match its bytes"),
        "{refiled}"
    );
}
