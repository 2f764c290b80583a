//! The client commands of `objectos` against a spawned server: every
//! command with its human and `--json` output, the exit codes scripts rely
//! on, errors that say what to do, the login file, and `--help` (an
//! example on every command, and a snapshot of them all).

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::api::{ADMIN, Server, VIEWER};
use crate::snapshot::assert_snapshot;
use crate::support::{objectos, repo, write_file};

/// `objectos` pointed at `server` with `token`, no client config file, no colour.
pub(crate) fn client(server: &Server, token: &str) -> Command {
    let mut command = objectos();
    command
        .env("OBJECTOS_SERVER", format!("http://{}", server.address))
        .env("OBJECTOS_TOKEN", token)
        .env("OBJECTOS_CLIENT_CONFIG", "/nonexistent/objectos-client.yaml")
        .env_remove("OBJECTOS_DATA_DIR");
    command
}

/// Runs `args` and returns the output, asserting the exit code.
pub(crate) fn run(command: &mut Command, args: &[&str], code: i32) -> Output {
    let out = command.args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "objectos {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn errors(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(out), errors(out)))
}

#[test]
fn client_commands_drive_jobs_handlers_and_schedules() {
    let server = Server::start(true);
    let admin = || client(&server, ADMIN);
    let dir = tempfile::tempdir().unwrap();
    let wasm = write_file(dir.path(), "greet.wasm", objectos_engine::examples::TEMPLATE);

    // Handlers: upload, list, show.
    let uploaded = text(&run(&mut admin(), &["handler", "upload", "greet", wasm.to_str().unwrap()], 0));
    assert!(uploaded.starts_with("greet: version ") && uploaded.contains("ready in"), "{uploaded}");
    let listed = text(&run(&mut admin(), &["handler", "ls"], 0));
    assert!(listed.starts_with("NAME") && listed.lines().any(|l| l.starts_with("greet ")), "{listed}");
    let shown = json_of(&run(&mut admin(), &["handler", "show", "greet", "--json"], 0));
    assert_eq!(shown["name"], "greet");
    assert_eq!(shown["sha256"], objectos_engine::digest::sha256_hex(objectos_engine::examples::TEMPLATE));

    // Enqueue and wait: exit 0 with the result.
    let done = run(&mut admin(), &["enqueue", "greet", "--data", r#"{"name":"Ada"}"#, "--wait", "--json"], 0);
    let job = json_of(&done);
    assert_eq!(
        (job["status"].as_str(), &job["result"]["greetings"][0]),
        (Some("completed"), &json!("hello, Ada!"))
    );
    let id = job["id"].as_str().unwrap().to_string();
    let human = text(&run(&mut admin(), &["jobs", "wait", &id], 0));
    assert!(
        human.starts_with(&format!("{id} completed after 1 attempt(s)")) && human.contains("hello, Ada!")
    );

    let quiet = text(&run(&mut admin(), &["enqueue", "greet", "--data", r#"{"name":"Q"}"#, "-q"], 0));
    assert!(quiet.starts_with("job_") && quiet.lines().count() == 1, "-q prints the id alone: {quiet}");
    let ids = text(&run(&mut admin(), &["jobs", "ls", "--quiet", "--limit", "1"], 0));
    assert_eq!(ids, quiet, "the newest job's id");

    // A job that times out: `jobs wait` exits 4, and shows why.
    let slow = json_of(&run(
        &mut admin(),
        &[
            "enqueue",
            "tasks",
            "--data",
            r#"{"task":"work","ms":5000}"#,
            "--timeout",
            "200",
            "--max-retries",
            "0",
            "--json",
        ],
        0,
    ));
    let slow_id = slow["id"].as_str().unwrap();
    let failed = run(&mut admin(), &["jobs", "wait", slow_id], 4);
    assert!(text(&failed).contains("failed after 1 attempt(s)") && text(&failed).contains("timed out"));

    // Cancel a running job, retry it as a new job.
    let long = json_of(&run(
        &mut admin(),
        &["enqueue", "tasks", "--data", r#"{"task":"work","ms":60000}"#, "--json"],
        0,
    ));
    let long_id = long["id"].as_str().unwrap().to_string();
    let cancelled = text(&run(&mut admin(), &["jobs", "cancel", &long_id], 0));
    assert!(cancelled.starts_with(&long_id), "{cancelled}");
    let ended = json_of(&run(&mut admin(), &["jobs", "wait", &long_id, "--json"], 4));
    assert_eq!(ended["status"], "cancelled");
    let again = json_of(&run(&mut admin(), &["jobs", "retry", &long_id, "--json"], 0));
    assert_ne!(again["id"], ended["id"]);
    assert_eq!(again["data"], ended["data"]);
    run(&mut admin(), &["jobs", "cancel", again["id"].as_str().unwrap()], 0);
    let refused = run(&mut admin(), &["jobs", "retry", &id], 1);
    assert!(
        errors(&refused).contains("only a failed or cancelled job can be retried"),
        "{}",
        errors(&refused)
    );

    // Listing, one job, its logs, stats.
    let table = text(&run(&mut admin(), &["jobs", "ls", "--limit", "50"], 0));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATUS") && header.contains("CREATED"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id) && l.contains("completed")), "{table}");
    let page = json_of(&run(&mut admin(), &["jobs", "ls", "--status", "failed", "--json"], 0));
    let failed_ids: Vec<&str> =
        page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(failed_ids, [slow_id]);
    let details = text(&run(&mut admin(), &["jobs", "show", slow_id], 0));
    assert!(details.contains("status      failed") && details.contains("ATTEMPT"), "{details}");
    let logs = json_of(&run(&mut admin(), &["jobs", "logs", &id, "--json"], 0));
    assert_eq!(logs["jobId"], id.as_str());
    let logged = text(&run(&mut admin(), &["jobs", "logs", &id], 0));
    assert!(logged.starts_with("── attempt 1"), "{logged}");
    let stats = json_of(&run(&mut admin(), &["stats", "--json"], 0));
    assert!(stats["jobs"]["total"].as_u64().unwrap() >= 4, "{stats}");
    assert!(text(&run(&mut admin(), &["stats"], 0)).contains("completed"));

    // Schedules on the server.
    let added = json_of(&run(
        &mut admin(),
        &[
            "schedule",
            "add",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--handler",
            "greet",
            "--data",
            r#"{"name":"N"}"#,
            "--json",
        ],
        0,
    ));
    assert_eq!((added["id"].as_str(), added["paused"].as_bool()), (Some("nightly"), Some(false)));
    let schedules = text(&run(&mut admin(), &["schedule", "ls"], 0));
    assert!(schedules.lines().any(|l| l.starts_with("nightly") && l.contains("active")), "{schedules}");
    let paused = json_of(&run(&mut admin(), &["schedule", "pause", "nightly", "--json"], 0));
    assert_eq!(paused["paused"], true);
    let resumed = text(&run(&mut admin(), &["schedule", "resume", "nightly"], 0));
    assert!(resumed.contains("state      active"), "{resumed}");
    assert!(text(&run(&mut admin(), &["schedule", "show", "nightly"], 0)).contains("0 2 * * *"));
    run(&mut admin(), &["schedule", "rm", "nightly"], 0);
    let gone = run(&mut admin(), &["schedule", "show", "nightly"], 1);
    assert!(errors(&gone).contains("nightly"), "{}", errors(&gone));

    // Remove the handler.
    run(&mut admin(), &["handler", "rm", "greet"], 0);
    let unknown = run(&mut admin(), &["enqueue", "greet"], 1);
    assert!(errors(&unknown).contains("unknown handler `greet`"), "{}", errors(&unknown));
}

#[test]
fn client_commands_move_records_artifacts_and_the_audit_log() {
    let server = Server::start(true);
    let admin = || client(&server, ADMIN);
    let dir = tempfile::tempdir().unwrap();

    // Records: put, ls, get, patch, rm, export, import.
    let put = json_of(&run(
        &mut admin(),
        &[
            "records",
            "put",
            "contacts",
            r#"[{"name":"Ada","salary":1},{"name":"Grace","salary":2}]"#,
            "--json",
        ],
        0,
    ));
    let ids: Vec<String> =
        put["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2);
    let objects = text(&run(&mut admin(), &["records", "ls"], 0));
    assert!(objects.lines().any(|l| l.starts_with("contacts") && l.contains("salary")), "{objects}");
    let table = text(&run(&mut admin(), &["records", "ls", "contacts", "--sort", "name:desc"], 0));
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("ID") && rows[0].contains("NAME"), "{table}");
    assert!(rows[1].contains("Grace") && rows[2].contains("Ada"), "{table}");
    run(&mut admin(), &["records", "put", "contacts", "--id", &ids[0], r#"{"city":"London"}"#], 0);
    let got = json_of(&run(&mut admin(), &["records", "get", "contacts", &ids[0]], 0));
    assert_eq!((got["name"].as_str(), got["city"].as_str()), (Some("Ada"), Some("London")));

    let export = dir.path().join("contacts.jsonl");
    run(&mut admin(), &["records", "export", "contacts", "--out", export.to_str().unwrap()], 0);
    let lines: Vec<Value> =
        std::fs::read_to_string(&export).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    run(&mut admin(), &["records", "rm", "contacts", &ids[0]], 0);
    run(&mut admin(), &["records", "get", "contacts", &ids[0]], 1);
    let imported = json_of(&run(
        &mut admin(),
        &["records", "import", "contacts", export.to_str().unwrap(), "--on-conflict", "skip", "--json"],
        0,
    ));
    assert_eq!(imported, json!({"inserted": 1, "replaced": 0, "skipped": 1}));
    let back = json_of(&run(&mut admin(), &["records", "get", "contacts", &ids[0]], 0));
    assert_eq!(back, got, "the export and import keep ids and system fields");
    let dump = text(&run(&mut admin(), &["records", "export", "contacts"], 0));
    assert_eq!(dump.lines().count(), 2);

    // Artifacts: a report, listed and downloaded with its digest checked.
    let report = json_of(&run(
        &mut admin(),
        &[
            "enqueue",
            "report-generation",
            "--data",
            r#"{"object":"contacts","format":"csv"}"#,
            "--wait",
            "--json",
        ],
        0,
    ));
    let artifact = report["result"]["artifactId"].as_str().unwrap().to_string();
    let listed = text(&run(&mut admin(), &["artifacts", "ls"], 0));
    assert!(
        listed.lines().any(|l| l.starts_with(&artifact) && l.contains("contacts-report.csv")),
        "{listed}"
    );
    let saved = dir.path().join("report.csv");
    let out = run(&mut admin(), &["artifacts", "get", &artifact, "--out", saved.to_str().unwrap()], 0);
    assert!(text(&out).contains("sha256 verified"), "{}", text(&out));
    let csv = std::fs::read_to_string(&saved).unwrap();
    assert!(csv.starts_with("id,") && csv.contains("Grace"), "{csv}");
    let piped = run(&mut admin(), &["artifacts", "get", &artifact, "--out", "-"], 0);
    assert_eq!(text(&piped), csv);

    // The audit log over the server: list, checkpoint, verify, export.
    let entries = json_of(&run(&mut admin(), &["audit", "ls", "--event", "job.completed", "--json"], 0));
    assert!(entries["entries"].as_array().unwrap().iter().all(|e| e["entry"]["event"] == "job.completed"));
    let table = text(&run(&mut admin(), &["audit", "ls", "--resource", "objects/contacts"], 0));
    assert!(table.starts_with("SEQ") && table.contains("records."), "{table}");
    let checkpoint = dir.path().join("audit.checkpoint");
    run(&mut admin(), &["audit", "checkpoint", "--out", checkpoint.to_str().unwrap()], 0);
    let verdict = json_of(&run(
        &mut admin(),
        &["audit", "verify", "--checkpoint", checkpoint.to_str().unwrap(), "--json"],
        0,
    ));
    assert_eq!(verdict["valid"], true, "{verdict}");
    let exported = text(&run(&mut admin(), &["audit", "export"], 0));
    let first: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    let wrong = write_file(dir.path(), "wrong.checkpoint", br#"{"seq": 1, "hash": "00"}"#);
    let broken = run(&mut admin(), &["audit", "verify", "--checkpoint", wrong.to_str().unwrap()], 3);
    assert!(text(&broken).starts_with("BROKEN at entry 1"), "{}", text(&broken));
}

#[test]
fn client_errors_say_what_to_do_and_exit_with_their_code() {
    let server = Server::start(true);

    let wrong = run(&mut client(&server, "not-a-token"), &["jobs", "ls"], 6);
    assert!(
        errors(&wrong).contains("token") && errors(&wrong).contains("OBJECTOS_TOKEN"),
        "{}",
        errors(&wrong)
    );
    let mut anonymous = client(&server, "");
    anonymous.env_remove("OBJECTOS_TOKEN");
    let missing_token = run(&mut anonymous, &["stats"], 6);
    assert!(errors(&missing_token).contains("needs a token"), "{}", errors(&missing_token));

    let forbidden = run(&mut client(&server, VIEWER), &["enqueue", "tasks"], 6);
    assert!(errors(&forbidden).contains("jobs.enqueue") && errors(&forbidden).contains("permission set"));

    let no_job = run(&mut client(&server, ADMIN), &["jobs", "show", "job_missing"], 1);
    assert!(
        errors(&no_job).contains("job_missing") && errors(&no_job).contains("not found"),
        "{}",
        errors(&no_job)
    );
    let bad_json = run(&mut client(&server, ADMIN), &["enqueue", "tasks", "--data", "{oops"], 1);
    assert!(errors(&bad_json).contains("--data is not valid JSON"), "{}", errors(&bad_json));
    let bad_span = run(&mut client(&server, ADMIN), &["jobs", "wait", "x", "--timeout", "soon"], 2);
    assert!(errors(&bad_span).contains("--timeout"), "{}", errors(&bad_span));

    let mut nowhere = client(&server, ADMIN);
    nowhere.env("OBJECTOS_SERVER", "http://127.0.0.1:9");
    let unreachable = run(&mut nowhere, &["jobs", "ls"], 5);
    assert!(errors(&unreachable).contains("cannot reach the server at http://127.0.0.1:9"));
    assert!(errors(&unreachable).contains("objectos serve"), "{}", errors(&unreachable));
}

#[test]
fn login_saves_the_server_and_token_for_later_commands() {
    let server = Server::start(true);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.yaml");
    let bare = || {
        let mut command = objectos();
        command
            .env("OBJECTOS_CLIENT_CONFIG", &config)
            .env_remove("OBJECTOS_SERVER")
            .env_remove("OBJECTOS_TOKEN");
        command
    };
    let url = format!("http://{}", server.address);
    let refused = run(&mut bare(), &["login", "--server", &url, "--token", "wrong"], 6);
    assert!(errors(&refused).contains("token"), "{}", errors(&refused));
    assert!(!config.exists(), "a refused token is not saved");
    run(&mut bare(), &["login", "--server", &url, "--token", ADMIN], 0);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let stats = json_of(&run(&mut bare(), &["stats", "--json"], 0));
    assert!(stats["jobs"]["total"].is_u64());
}

/// Every command and subcommand's `--help`, in order.
fn every_help() -> Vec<(String, String)> {
    fn walk(path: Vec<String>, out: &mut Vec<(String, String)>) {
        let mut command = objectos();
        command.env_remove("OBJECTOS_SERVER").env_remove("OBJECTOS_TOKEN").env_remove("OBJECTOS_DATA_DIR");
        let help = command.args(&path).arg("--help").output().unwrap();
        assert!(help.status.success());
        let help = String::from_utf8(help.stdout).unwrap();
        let children: Vec<String> = help
            .split("\nCommands:\n")
            .nth(1)
            .map(|list| {
                list.lines()
                    .take_while(|l| l.starts_with("  "))
                    .map(|l| l.split_whitespace().next().unwrap().to_string())
                    .filter(|name| name != "help")
                    .collect()
            })
            .unwrap_or_default();
        out.push((path.join(" "), help));
        for child in children {
            let mut next = path.clone();
            next.push(child);
            walk(next, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

#[test]
fn every_command_has_help_with_an_example_matching_its_snapshot() {
    let helps = every_help();
    assert!(helps.len() > 40, "every command and subcommand is reached: {}", helps.len());
    let mut snapshot = String::new();
    for (path, help) in &helps {
        assert!(help.contains("Example"), "`objectos {path} --help` has no example:\n{help}");
        snapshot.push_str(&format!("$ objectos {path} --help\n{help}\n"));
    }
    assert_snapshot(&repo().join("tests/e2e/snapshots/help.txt"), &snapshot);
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&mut objectos(), &["completions", shell], 0);
        let script = text(&out);
        for command in ["enqueue", "jobs", "handler", "records", "artifacts", "audit", "schedule", "stats"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
    }
}
