//! `objectos run` as a handler author uses it: the spawned binary, its
//! output and its exit code for every kind of outcome.

use std::process::Output;

use serde_json::Value;

use crate::support::{objectos, repo, write_file};

fn run(args: &[&str]) -> Output {
    objectos().arg("run").args(args).output().expect("objectos runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the hostile fixture with `action` and extra flags; returns the exit
/// code, stdout and stderr.
fn hostile(action: &str, flags: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_file(dir.path(), "hostile.wasm", objectos_test_guests::HOSTILE);
    let data = format!("{action:?}");
    let mut args = vec![wasm.to_str().unwrap(), "--data", &data];
    args.extend(flags);
    let out = run(&args);
    (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn completed_prints_result_log_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_file(dir.path(), "template.wasm", objectos_engine::examples::TEMPLATE);
    let out = run(&[wasm.to_str().unwrap(), "--data", r#"{"name":"Ada"}"#]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("\"hello, Ada!\""), "{stdout}");
    assert!(stdout.contains("said hello 1 times"), "{stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(summary.starts_with("completed · fuel "), "{summary}");
    assert!(summary.contains("wall") && summary.contains("peak memory"), "{summary}");
}

#[test]
fn every_outcome_has_its_exit_code_and_message() {
    let cases: &[(&str, &[&str], i32, &str)] = &[
        ("retryable:db busy", &[], 10, "retryable error: db busy"),
        ("fatal:no such thing", &[], 11, "fatal error: no such thing"),
        ("panic:boom", &[], 12, "handler gave up: boom"),
        ("recurse", &[], 13, "stack overflow"),
        ("spin", &["--fuel", "1000000"], 14, "out of fuel"),
        ("sleep:10000", &["--timeout", "100"], 15, "timed out after 100 ms"),
        ("alloc", &["--memory", "16MiB"], 16, "memory limit"),
        ("runs", &["--grant", "records"], 17, "capability denied"),
    ];
    for (action, flags, code, message) in cases {
        let (got, stdout, stderr) = hostile(action, flags);
        assert_eq!(got, *code, "{action}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{action}: stderr lacks {message:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{action}: {stderr}");
    }
}

#[test]
fn invalid_components_exit_18() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, message) in [
        ("empty.wasm", &b""[..], "the file is empty"),
        ("text.wasm", &b"hello"[..], "not a WebAssembly binary"),
        ("core.wasm", &b"\0asm\x01\0\0\0"[..], "core WebAssembly module"),
    ] {
        let wasm = write_file(dir.path(), name, bytes);
        let out = run(&[wasm.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(18), "{name}");
        assert!(text(&out.stderr).contains(message), "{name}: {}", text(&out.stderr));
    }
}

#[test]
fn bad_flags_and_files_exit_1_or_2() {
    let (code, _, stderr) = hostile("runs", &["--grant", "network"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown capability `network`"), "{stderr}");
    let out = run(&["/no/such/handler.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /no/such/handler.wasm"));
    let out = run(&["x.wasm", "--data", "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--data is not valid JSON"));
    let out = run(&["x.wasm", "--memory", "12 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_output_is_one_document() {
    let (code, stdout, _) = hostile("fatal:nope", &["--json"]);
    assert_eq!(code, 11);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["kind"], "handler-error");
    assert_eq!(report["message"], "nope");
    assert_eq!(report["exitCode"], 11);
    assert!(report["usage"]["fuel"].as_u64().unwrap() > 0);
    assert!(report["usage"]["peakMemory"].as_u64().unwrap() > 0);
}

#[test]
fn records_file_write_back_and_artifacts_folder() {
    let dir = tempfile::tempdir().unwrap();
    let records =
        write_file(dir.path(), "records.json", br#"{"contacts": [{"name": "Ada", "status": "open"}]}"#);
    let summary = write_file(dir.path(), "summary.wasm", objectos_engine::examples::CONTACTS_SUMMARY);
    let data = r#"{"object":"contacts","mark":true}"#;
    let path = records.to_str().unwrap();

    // Without --write-back the file is untouched.
    let out = run(&[summary.to_str().unwrap(), "--records", path, "--data", data]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!std::fs::read_to_string(&records).unwrap().contains("reviewed"));

    let out = run(&[summary.to_str().unwrap(), "--records", path, "--write-back", "--data", data]);
    assert_eq!(out.status.code(), Some(0));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&records).unwrap()).unwrap();
    assert_eq!(saved["contacts"][0]["reviewed"], true);
    assert_eq!(saved["contacts"][0]["id"], "contacts-1");

    let export = write_file(dir.path(), "export.wasm", objectos_engine::examples::CSV_EXPORT);
    let out_dir = dir.path().join("out");
    let out = run(&[
        export.to_str().unwrap(),
        "--records",
        path,
        "--artifacts",
        out_dir.to_str().unwrap(),
        "--data",
        r#"{"object":"contacts","fields":["name","reviewed"]}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("contacts.csv")).unwrap(),
        "name,reviewed\r\nAda,true\r\n"
    );
}

/// A built-in runs by its name, so its input can be tried on a records file.
#[test]
fn a_built_in_runs_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let records = repo().join("guest-sdk/examples/contacts.json");
    let out_dir = dir.path().join("out");
    let data = r#"{"object":"contacts","fields":["name","status"],"sort":[{"field":"name"}],"format":"csv"}"#;
    let out = run(&[
        "report-generation",
        "--records",
        records.to_str().unwrap(),
        "--artifacts",
        out_dir.to_str().unwrap(),
        "--data",
        data,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(out_dir.join("contacts-report.csv")).unwrap();
    assert!(csv.starts_with("name,status\r\n"), "{csv}");
    assert_eq!(csv.lines().count(), 5, "a header and the four sample contacts: {csv}");

    let out = run(&["data-cleanup", "--records", records.to_str().unwrap(), "--data", r#"{"objects":[]}"#]);
    assert_eq!(out.status.code(), Some(11), "bad input is a fatal handler error");
    let printed = text(&out.stdout) + &text(&out.stderr);
    assert!(printed.contains("missing field `retentionDays`"), "{printed}");
}

#[test]
fn a_crate_directory_is_built_then_run() {
    let out =
        run(&[repo().join("guest-sdk/examples/template").to_str().unwrap(), "--data", r#"{"name":"Ada"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello, Ada!"));
}

#[test]
fn the_demo_shows_the_queue_at_work_and_exits_0() {
    let out = objectos().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for shown in [
        "cancelled",
        "timeout after",
        "handler-error after",
        "succeededOnAttempt",
        "Stats: 1 cancelled, 17 completed, 1 failed",
        "data-cleanup → deleted 610 (skipped 0); 590 tickets left",
        "| team | count | sum(minutes) | avg(minutes) |",
        "xlsx → tickets-report.xlsx (590 rows,",
        "594 records (4 contacts, 590 tickets)",
        "deleted the 198 pending tickets → 392 left",
        "would insert 198, skip 396",
        "restore → inserted 198, skipped 396; 590 tickets again, identical to the backup",
        "paused the schedule after 3 fires",
        r#"as grace  (sales) → {"groups":{"lost":1,"open":1},"marked":null,"total":2}"#,
        "field `amount` of `contacts` is not visible to `grace`",
        "imports records-write which `vic` is not granted",
        "The HTTP API serves at http://127.0.0.1:",
        "$ objectos handler upload template template.wasm",
        "vic (viewer, read-only) enqueueing it over HTTP → 403",
        "$ objectos artifacts ls",
        "$ objectos audit verify\n   the chain holds",
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing from:\n{stdout}");
    }
    // Critical jobs start first, the low-priority one last.
    let table =
        stdout.split("What happened").nth(1).unwrap().split("5. Records under permission").next().unwrap();
    let rows: Vec<&str> =
        table.lines().filter(|l| l.contains(" completed ") || l.contains(" cancelled ")).collect();
    assert!(rows.first().unwrap().contains("critical"), "{table}");
    assert!(rows.last().unwrap().contains("low"), "{table}");
}

/// `--as` and `--permissions`: the author sees what a principal would see on
/// the server — its records, without hidden fields, with its capabilities.
#[test]
fn permissions_restrict_a_local_run_as_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_file(dir.path(), "summary.wasm", objectos_engine::examples::CONTACTS_SUMMARY);
    let records = dir.path().join("records.json");
    std::fs::copy(repo().join("guest-sdk/examples/contacts.json"), &records).unwrap();
    let sets = dir.path().join("permissions");
    std::fs::create_dir(&sets).unwrap();
    write_file(
        &sets,
        "contacts.yaml",
        b"name: contacts\nobjectName: contacts\nprofiles:\n  sales: { allowRead: true, allowEdit: true, \
          viewFilters: { owner: \"{{ userId }}\" } }\n  viewer: { allowRead: true }\n\
          fieldPermissions:\n  amount: { visibleTo: [manager] }\n",
    );
    let as_user = |profile: &str| format!(r#"{{"userId":"grace","profiles":["{profile}"]}}"#);
    let base = |principal: String, data: &str| -> (i32, String, String) {
        let args = [
            wasm.to_str().unwrap(),
            "--records",
            records.to_str().unwrap(),
            "--permissions",
            sets.to_str().unwrap(),
            "--as",
            &principal,
            "--data",
            data,
            "--write-back",
        ];
        let out = run(&args);
        (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
    };

    let (code, stdout, stderr) = base(as_user("sales"), r#"{"object":"contacts","mark":true}"#);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\"total\": 2"), "only grace's two contacts: {stdout}");
    assert!(stdout.contains("\"marked\": 2"), "{stdout}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&records).unwrap()).unwrap();
    let reviewed: Vec<&str> = saved["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reviewed"] == true)
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    assert_eq!(reviewed, ["grace", "grace"], "ada's contacts were not touched");

    let (code, _, stderr) = base(as_user("sales"), r#"{"object":"contacts","groupBy":"amount"}"#);
    assert_eq!(code, 11, "{stderr}");
    assert!(stderr.contains("`amount`") && stderr.contains("not visible"), "{stderr}");

    // A read-only principal is not granted records-write, which the handler imports.
    let (code, _, stderr) = base(as_user("viewer"), r#"{"object":"contacts"}"#);
    assert_eq!(code, 17, "{stderr}");
    assert!(stderr.contains("records-write"), "{stderr}");

    let bad = write_file(
        &sets,
        "broken.yaml",
        b"name: broken\nobjectName: x\nprofiles:\n  a: { allowRaed: true }\n",
    );
    let out = run(&[wasm.to_str().unwrap(), "--permissions", sets.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains(":4"),
        "names file and line: {stderr}"
    );
}
