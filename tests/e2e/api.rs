//! The HTTP API of `objectos serve`, over real HTTP against the spawned
//! binary: the main flows, every error status with its body, and the
//! OpenAPI document against the routes served.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use objectos_engine::digest::sha256_hex;
use serde_json::{Value, json};

use crate::support::{objectos, write_file};

pub(crate) const ADMIN: &str = "admin-token-for-tests";
pub(crate) const VIEWER: &str = "viewer-token-for-tests";

/// `admin` holds every API permission, over anyone's jobs, schedules and
/// artifacts; `viewer` may only read its own jobs; a `member` works with
/// its own jobs, schedules and artifacts; `sales` may import records.
const SYSTEM: &str = "name: api\nsystem:\n  profiles:\n    admin: [jobs.read, jobs.read.any, jobs.enqueue, jobs.cancel, \
                      jobs.cancel.any, records.import, handlers.read, handlers.upload, stats.read, schedules.read, \
                      schedules.read.any, schedules.write, schedules.write.any, artifacts.read, \
                      artifacts.read.any, artifacts.write, audit.read]\n    viewer: [jobs.read]\n    \
                      member: [jobs.read, jobs.enqueue, jobs.cancel, schedules.read, schedules.write, \
                      artifacts.read, artifacts.write]\n    sales: [records.import]\n";

/// `admin` reads and writes contacts and alone sees `salary`; `sales`
/// reads, creates and edits its own; a `member` reads its own.
const CONTACTS: &str = "name: contacts\nobjectName: contacts\nprofiles:\n  admin: { allowRead: true, \
                        allowCreate: true, allowEdit: true, allowDelete: true }\n  sales: { allowRead: true, \
                        allowCreate: true, allowEdit: true, viewFilters: { owner: \"{{ userId }}\" } }\n  \
                        member: { allowRead: true, viewFilters: { owner: \"{{ userId }}\" } }\n\
                        fieldPermissions:\n  salary: { visibleTo: [admin], editableBy: [admin] }\n";
pub(crate) const SALES: &str = "sales-token-for-tests";
/// Two members (`mia` and `max`): neither may see the other's things.
pub(crate) const MIA: &str = "mia-token-for-tests";
pub(crate) const MAX: &str = "max-token-for-tests";

/// A spawned `objectos serve` and the address it listens on.
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
    pub(crate) data: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with the test tokens and permission sets (or, with `tokens`
    /// false, as on a first start: neither), a 1 MiB upload limit and 1 MiB
    /// pages of jobs.
    pub(crate) fn start(tokens: bool) -> Self {
        Self::start_with(tokens, "")
    }

    /// [`Server::start`] with more `api` settings (YAML lines indented by two).
    pub(crate) fn start_with(tokens: bool, api: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let permissions = dir.path().join("permissions");
        std::fs::create_dir_all(&permissions).unwrap();
        if tokens {
            write_file(&permissions, "system.yaml", SYSTEM.as_bytes());
            write_file(&permissions, "contacts.yaml", CONTACTS.as_bytes());
        }
        let mut config = format!(
            "permissions: {}\napi:\n  maxUploadBytes: 1048576\n  maxPageBytes: 1048576\n{api}",
            permissions.display()
        );
        if tokens {
            config.push_str(&format!(
                "  tokens:\n    - {{name: admin, sha256: {}, principal: {{userId: ada, profiles: [admin]}}}}\n    \
                 - {{name: viewer, sha256: {}, principal: {{userId: vic, profiles: [viewer]}}}}\n    \
                 - {{name: sales, sha256: {}, principal: {{userId: sam, profiles: [sales]}}}}\n    \
                 - {{name: mia, sha256: {}, principal: {{userId: mia, profiles: [member]}}}}\n    \
                 - {{name: max, sha256: {}, principal: {{userId: max, profiles: [member]}}}}\n",
                sha256_hex(ADMIN.as_bytes()),
                sha256_hex(VIEWER.as_bytes()),
                sha256_hex(SALES.as_bytes()),
                sha256_hex(MIA.as_bytes()),
                sha256_hex(MAX.as_bytes())
            ));
        }
        let config = write_file(dir.path(), "objectos.yaml", config.as_bytes());
        let data = dir.path().join("data");
        let log = dir.path().join("serve.log");
        let child = objectos()
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let address = wait_for_address(&log);
        Self { child, address, data, log, _dir: dir }
    }

    /// Sends one request and returns the status and the body as JSON
    /// (`null` if empty).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> (u16, Value) {
        let (status, body) = self.send(method, path, token, body);
        let json = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        (status, json)
    }

    /// The body of a successful request, as bytes.
    fn raw(&self, method: &str, path: &str, token: &str) -> Vec<u8> {
        let (status, body) = self.send(method, path, Some(token), None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        body
    }

    /// Sends one request over a fresh connection; returns the status and the body.
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.address);
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let (content_type, bytes) = body.unwrap_or(("application/json", b""));
        head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", bytes.len()));
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body: a failed
        // write is then expected, and the answer is still there to read.
        let _ = stream.write_all(bytes);
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse::<usize>().unwrap()),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            reader.read_exact(&mut body).unwrap();
        }
        (status, body)
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None)
    }

    pub(crate) fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(("application/json", body.to_string().as_bytes())))
    }

    fn upload(&self, name: &str, token: &str, wasm: &[u8]) -> (u16, Value) {
        self.call("PUT", &format!("/v1/handlers/{name}"), Some(token), Some(("application/wasm", wasm)))
    }

    /// Polls the job until it is final.
    pub(crate) fn wait(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"), ADMIN);
            assert_eq!(status, 200, "{job}");
            if ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
                return job;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "job never finished: {job}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM (its data directory stays until it is dropped).
    pub(crate) fn stop(&mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let exit = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}\n{log}");
        log
    }
}

/// The address from the server's `listen=` log line.
fn wait_for_address(log: &Path) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("listen=") {
            return text[at + 7..].split_whitespace().next().unwrap().to_string();
        }
        // A first start compiles every built-in and example: slow on a busy machine.
        assert!(started.elapsed() < Duration::from_secs(180), "serve never listened:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not the error shape: {body}"))
}

#[test]
fn upload_enqueue_wait_and_read_a_job_over_http() {
    let mut server = Server::start(true);
    let wasm = objectos_engine::examples::TEMPLATE;
    let (status, handler) = server.upload("greeter", ADMIN, wasm);
    assert_eq!(status, 201, "{handler}");
    assert_eq!(handler["sha256"], sha256_hex(wasm));
    assert!(handler["capabilities"].is_array(), "{handler}");
    let (status, again) = server.upload("greeter", ADMIN, wasm);
    assert_eq!(
        (status, &again["versions"]),
        (200, &json!([sha256_hex(wasm)])),
        "the same bytes again change nothing"
    );

    let (status, job) =
        server.post("/v1/jobs", ADMIN, &json!({"name": "greeter", "data": {"name": "Ada", "times": 2}}));
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["runAs"]["userId"], "ada", "a job runs as the token's principal");
    let done = server.wait(job["id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["result"].is_object(), "{done}");
    assert!(done["attemptLog"][0]["usage"]["peakMemory"].as_u64().unwrap() > 0, "{done}");
    let logs_path = format!("/v1/jobs/{}/logs", job["id"].as_str().unwrap());
    let (status, body) = server.get(&logs_path, VIEWER);
    assert_eq!((status, error_code(&body)), (404, "not_found"), "another's job is not the viewer's: {body}");
    let (status, logs) = server.get(&logs_path, ADMIN);
    assert_eq!(status, 200);
    assert_eq!(logs["attempts"].as_array().unwrap().len(), 1, "{logs}");

    let batch = json!({"jobs": [{"name": "greeter", "data": {"name": "B"}}, {"name": "greeter", "data": {"name": "C"}}]});
    let (status, created) = server.post("/v1/jobs/batch", ADMIN, &batch);
    assert_eq!((status, created["jobs"].as_array().unwrap().len()), (201, 2), "{created}");
    for job in created["jobs"].as_array().unwrap() {
        server.wait(job["id"].as_str().unwrap());
    }
    let (status, listed) = server.get("/v1/jobs?name=greeter&status=completed&limit=2", ADMIN);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2);
    let (status, listed) = server.get("/v1/jobs", VIEWER);
    assert_eq!(
        (status, listed["jobs"].as_array().unwrap().len()),
        (200, 0),
        "the viewer owns none: {listed}"
    );
    let (_, stats) = server.get("/v1/stats", ADMIN);
    assert_eq!(stats["jobs"]["byStatus"]["completed"], 3, "{stats}");

    // A failed job retried as a new job; a pending one cancelled.
    let (_, bad) = server.post("/v1/jobs", ADMIN, &json!({"name": "greeter", "data": {"name": ""}}));
    let bad = server.wait(bad["id"].as_str().unwrap());
    assert_eq!(bad["status"], "failed", "{bad}");
    let retry = format!("/v1/jobs/{}/retry", bad["id"].as_str().unwrap());
    let (status, again) = server.post(&retry, ADMIN, &json!({}));
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["id"], bad["id"]);
    assert_eq!((&again["data"], &again["maxRetries"]), (&bad["data"], &bad["maxRetries"]));
    server.wait(again["id"].as_str().unwrap());
    let later = json!({"name": "greeter", "data": {"name": "Later"}, "runAt": "2099-01-01T00:00:00Z"});
    let (_, later) = server.post("/v1/jobs", ADMIN, &later);
    let cancel = format!("/v1/jobs/{}/cancel", later["id"].as_str().unwrap());
    let (status, cancelled) = server.post(&cancel, ADMIN, &json!({}));
    assert_eq!((status, &cancelled["status"]), (200, &json!("cancelled")), "{cancelled}");
    let (status, body) =
        server.post(&format!("/v1/jobs/{}/retry", job["id"].as_str().unwrap()), ADMIN, &json!({}));
    assert_eq!((status, error_code(&body)), (409, "conflict"), "a completed job is not retried: {body}");

    let metrics = String::from_utf8(server.raw("GET", "/metrics", ADMIN)).unwrap();
    for line in [
        "objectos_jobs{status=\"completed\"} 3",
        "objectos_jobs{status=\"failed\"} 2",
        "objectos_jobs{status=\"cancelled\"} 1",
        "objectos_attempts_started_total{handler=\"greeter\"} 5",
        "objectos_attempts_total{handler=\"greeter\",outcome=\"completed\"} 3",
        "objectos_attempts_total{handler=\"greeter\",outcome=\"handler-error\"} 2",
        "objectos_attempt_duration_seconds_count 5",
        "# TYPE objectos_queue_lag_seconds gauge",
    ] {
        assert!(metrics.lines().any(|l| l == line), "`{line}` missing from:\n{metrics}");
    }
    let (status, handlers) = server.get("/v1/handlers", ADMIN);
    assert_eq!(status, 200);
    assert!(handlers["handlers"].as_array().unwrap().iter().any(|h| h["name"] == "greeter"));
    assert_eq!(server.call("DELETE", "/v1/handlers/greeter", Some(ADMIN), None).0, 204);
    assert_eq!(server.get("/v1/handlers/greeter", ADMIN).0, 404);
    server.stop();
}

/// `body` as request bytes.
pub(crate) fn json_body(body: &Value) -> Vec<u8> {
    body.to_string().into_bytes()
}

#[test]
fn schedules_artifacts_and_the_audit_log_over_http() {
    let mut server = Server::start(true);
    let every_second =
        json_body(&json!({"cron": "* * * * * *", "handler": "template", "data": {"name": "Cron"}}));
    let put = |path: &str| server.call("PUT", path, Some(ADMIN), Some(("application/json", &every_second)));
    let (status, schedule) = put("/v1/schedules/ticker");
    assert_eq!((status, &schedule["id"]), (201, &json!("ticker")), "{schedule}");
    let (status, body) = put("/v1/schedules/ticker");
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) =
        server.post("/v1/schedules", ADMIN, &json!({"cron": "61 * * * *", "handler": "template"}));
    assert_eq!((status, error_code(&body)), (422, "invalid"), "{body}");
    let started = Instant::now();
    let fired = loop {
        let (_, schedule) = server.get("/v1/schedules/ticker", ADMIN);
        if let Some(job) = schedule["lastJobId"].as_str() {
            break job.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "never fired: {schedule}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(server.wait(&fired)["status"], "completed");
    let (_, paused) = server.post("/v1/schedules/ticker/pause", ADMIN, &json!({}));
    assert_eq!(paused["paused"], true, "{paused}");
    let patch = json_body(&json!({"data": {"name": "Patched"}}));
    let (status, patched) =
        server.call("PATCH", "/v1/schedules/ticker", Some(ADMIN), Some(("application/json", &patch)));
    assert_eq!((status, &patched["data"]["name"]), (200, &json!("Patched")), "{patched}");
    let (_, listed) = server.get("/v1/schedules", ADMIN);
    assert_eq!(listed["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(server.call("DELETE", "/v1/schedules/ticker", Some(ADMIN), None).0, 200);
    assert_eq!(server.get("/v1/schedules/ticker", ADMIN).0, 404);

    // A report's artifact, listed and downloaded.
    let report = json!({"name": "report-generation",
                        "data": {"object": "contacts", "format": "csv", "fields": ["id"]}});
    let (status, job) = server.post("/v1/jobs", ADMIN, &report);
    assert_eq!(status, 201, "{job}");
    let job = server.wait(job["id"].as_str().unwrap());
    let id = job["result"]["artifactId"].as_str().unwrap_or_else(|| panic!("{job}"));
    let (_, listed) = server.get("/v1/artifacts", ADMIN);
    let listed = listed["artifacts"].as_array().unwrap();
    assert!(listed.iter().any(|a| a["id"] == id && a["jobId"] == job["id"]), "{listed:?}");
    let (status, shown) = server.get(&format!("/v1/artifacts/{id}"), ADMIN);
    assert_eq!((status, &shown["sha256"]), (200, &job["result"]["sha256"]));
    let bytes = server.raw("GET", &format!("/v1/artifacts/{id}/content"), ADMIN);
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), "id\r\n");
    assert_eq!(sha256_hex(&bytes), job["result"]["sha256"]);

    // The audit log over HTTP: the job's entries, verification, export, checkpoint.
    let (status, audit) = server.get(&format!("/v1/audit?job={}", job["id"].as_str().unwrap()), ADMIN);
    assert_eq!(status, 200, "{audit}");
    let events: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["entry"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["job.enqueued", "job.started", "job.completed"]);
    let (_, verified) = server.get("/v1/audit/verify", ADMIN);
    assert_eq!(verified["valid"], true, "{verified}");
    let (_, checkpoint) = server.post("/v1/audit/checkpoint", ADMIN, &json!({}));
    assert!(checkpoint["seq"].as_u64().unwrap() >= verified["count"].as_u64().unwrap());
    let export = String::from_utf8(server.raw("GET", "/v1/audit/export", ADMIN)).unwrap();
    let lines: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() as u64 >= verified["count"].as_u64().unwrap());
    assert_eq!(lines[0]["seq"], 1);
    server.stop();
}

#[test]
fn records_over_http_are_what_each_principal_may_see_and_change() {
    let mut server = Server::start(true);
    let contacts = json!([{"name": "Ann", "salary": 1}, {"name": "Bob", "salary": 2}]);
    let (status, inserted) = server.post("/v1/objects/contacts/records", ADMIN, &contacts);
    assert_eq!(status, 201, "{inserted}");
    let (status, mine) = server.post("/v1/objects/contacts/records", SALES, &json!({"name": "Sam's"}));
    assert_eq!(status, 201, "{mine}");
    let mine = mine["ids"][0].as_str().unwrap().to_string();
    let (status, body) =
        server.post("/v1/objects/contacts/records", SALES, &json!({"name": "X", "salary": 9}));
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "a hidden field cannot be written: {body}");

    let (_, all) = server.get("/v1/objects/contacts/records?sort=name:desc", ADMIN);
    let names: Vec<&str> =
        all["records"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Sam's", "Bob", "Ann"]);
    let (_, own) = server.get("/v1/objects/contacts/records", SALES);
    let own = own["records"].as_array().unwrap();
    assert_eq!(own.len(), 1, "sales sees its own contacts only: {own:?}");
    assert!(own[0].get("salary").is_none());
    let filter = "/v1/objects/contacts/records?filter=%7B%22name%22%3A%22Ann%22%7D&fields=name,salary";
    let (_, ann) = server.get(filter, ADMIN);
    let ann_id = inserted["ids"][0].as_str().unwrap();
    assert_eq!(
        ann["records"],
        json!([{"id": ann_id, "name": "Ann", "salary": 1}]),
        "a projection keeps the id"
    );
    let (_, queried) =
        server.post("/v1/objects/contacts/query", ADMIN, &json!({"filter": {"salary": {"$gt": 1}}}));
    assert_eq!(queried["records"].as_array().unwrap().len(), 1);
    // A hidden field is refused however it is spelled: by name (a denial)
    // and by an escape the database's own path language would decode.
    for (filter, status, says) in [
        (json!({"salary": {"$gt": 1}}), 403, "field `salary` of `contacts` is not visible"),
        (json!({"sal\\u0061ry": {"$gt": 1}}), 422, "is not a field path"),
    ] {
        let (got, body) = server.post("/v1/objects/contacts/query", SALES, &json!({"filter": filter}));
        assert_eq!(got, status, "{filter}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{body}");
    }

    assert_eq!(server.get(&format!("/v1/objects/contacts/records/{ann_id}"), SALES).0, 404);
    // Sales may import, but an import naming Ann's id would tell whether
    // Ann's record exists: one it cannot see. The refusal is the same for
    // any id, taken or not.
    for id in [ann_id, "rec_no_such_record"] {
        let probe = json!([{"id": id, "name": "probe"}]);
        let (status, body) = server.post("/v1/objects/contacts/import?onConflict=skip", SALES, &probe);
        assert_eq!(status, 403, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("needs read access to all of its records"), "{message}");
    }
    let rename = json_body(&json!({"name": "Sam (renamed)"}));
    let path = format!("/v1/objects/contacts/records/{mine}");
    let (status, report) = server.call("PATCH", &path, Some(SALES), Some(("application/json", &rename)));
    assert_eq!((status, &report["changed"]), (200, &json!(1)), "{report}");
    assert_eq!(server.get(&path, ADMIN).1["name"], "Sam (renamed)");
    let (status, body) = server.call("DELETE", &path, Some(SALES), None);
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "sales may not delete: {body}");
    assert_eq!(server.call("DELETE", &path, Some(ADMIN), None).0, 204);
    let (_, objects) = server.get("/v1/objects", SALES);
    assert_eq!(objects["objects"][0]["name"], "contacts");
    assert!(!objects["objects"][0]["fields"].as_array().unwrap().contains(&json!("salary")));
    server.stop();
}

/// `wasm` with a custom section naming `tag` appended: another version of
/// the same code.
fn another_version(wasm: &[u8], tag: &str) -> Vec<u8> {
    let mut out = wasm.to_vec();
    out.push(0);
    out.push((tag.len() + 1) as u8);
    out.push(tag.len() as u8);
    out.extend_from_slice(tag.as_bytes());
    out
}

#[test]
fn concurrent_uploads_and_enqueues_all_land() {
    let mut server = Server::start(true);
    let wasm = objectos_engine::examples::TEMPLATE;
    std::thread::scope(|scope| {
        for i in 0..4 {
            let (server, version) = (&server, another_version(wasm, &format!("v{i}")));
            scope.spawn(move || {
                let (status, body) = server.upload("shared", ADMIN, &version);
                assert_eq!(status, 201, "{body}");
            });
        }
        for t in 0..4 {
            let server = &server;
            scope.spawn(move || {
                for i in 0..25 {
                    let job = json!({"name": "template", "data": {"name": format!("{t}-{i}")}});
                    let (status, body) = server.post("/v1/jobs", ADMIN, &job);
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
    let (_, shared) = server.get("/v1/handlers/shared", ADMIN);
    assert_eq!(shared["versions"].as_array().unwrap().len(), 4, "every upload is a version: {shared}");
    let started = Instant::now();
    loop {
        let (_, stats) = server.get("/v1/stats", ADMIN);
        if stats["jobs"]["byStatus"]["completed"] == 100 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn every_error_status_has_the_one_shape() {
    let mut server = Server::start(true);
    let cases: Vec<(&str, (u16, Value), u16, &str)> = vec![
        ("no token", server.call("GET", "/v1/jobs", None, None), 401, "unauthorized"),
        ("a wrong token", server.get("/v1/jobs", "nope"), 401, "unauthorized"),
        (
            "a viewer enqueues",
            server.post("/v1/jobs", VIEWER, &json!({"name": "template"})),
            403,
            "forbidden",
        ),
        ("a missing job", server.get("/v1/jobs/job_missing", ADMIN), 404, "not_found"),
        ("an unknown route", server.get("/v1/nothing", ADMIN), 404, "not_found"),
        (
            "malformed JSON",
            server.call("POST", "/v1/jobs", Some(ADMIN), Some(("application/json", b"{\"name\":"))),
            400,
            "bad_request",
        ),
        ("a bad status filter", server.get("/v1/jobs?status=done", ADMIN), 400, "bad_request"),
        ("an unknown handler", server.post("/v1/jobs", ADMIN, &json!({"name": "nope"})), 422, "invalid"),
        (
            "an unknown option",
            server.post("/v1/jobs", ADMIN, &json!({"name": "template", "colour": 1})),
            422,
            "invalid",
        ),
        ("bytes that are not wasm", server.upload("bad", ADMIN, b"hello"), 422, "invalid"),
        ("an oversize upload", server.upload("big", ADMIN, &vec![0u8; 2 << 20]), 413, "payload_too_large"),
        // A built-in is the binary's: neither replaced (until a restart
        // silently undid it) nor removed.
        (
            "replacing a built-in",
            server.upload("backup", ADMIN, objectos_engine::examples::TEMPLATE),
            403,
            "forbidden",
        ),
        (
            "removing a built-in",
            server.call("DELETE", "/v1/handlers/data-cleanup", Some(ADMIN), None),
            403,
            "forbidden",
        ),
        ("a handler named `..`", server.upload("..", ADMIN, b"\0asm"), 422, "invalid"),
        ("a handler named `.hidden`", server.upload(".hidden", ADMIN, b"\0asm"), 422, "invalid"),
        ("a path in a handler name", server.upload("a%2Fb", ADMIN, b"\0asm"), 422, "invalid"),
    ];
    for (case, (status, body), expected, code) in cases {
        assert_eq!(status, expected, "{case}: {body}");
        assert_eq!(error_code(&body), code, "{case}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{case}");
    }
    let unique = json!({"name": "template", "uniqueKey": "once", "runAt": "2099-01-01T00:00:00Z"});
    let (status, body) = server.post("/v1/jobs", ADMIN, &unique);
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post("/v1/jobs", ADMIN, &unique);
    assert_eq!((status, error_code(&body)), (409, "conflict"), "{body}");
    let (_, body) = server.upload("bad", ADMIN, b"hello");
    assert!(body["error"]["message"].as_str().unwrap().contains("bad"), "{body}");

    // The viewer's denial is in the audit log.
    server.stop();
    let out = objectos()
        .args(["audit", "ls", "--event", "permission.denied", "--json", "--data-dir"])
        .arg(&server.data)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("jobs.enqueue") && shown.contains("vic"), "{shown}");
}

#[test]
fn the_openapi_document_lists_every_route_served() {
    let mut server = Server::start(true);
    let (status, document) = server.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let routes = objectos_engine::api::route_docs();
    let documented: usize =
        document["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len());
    for route in routes {
        let op = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert_eq!(op["summary"], route.summary, "{} {}", route.method, route.path);
        assert_eq!(op["x-permission"].as_str(), route.permission);
        // Served: without a token a guarded route answers 401, never the fallback's 404.
        let path = route.path.replace("{id}", "job_x").replace("{name}", "x").replace("{object}", "contacts");
        let (status, body) = server.call(route.method, &path, None, None);
        let expected = if route.auth { 401 } else { 200 };
        assert_eq!(status, expected, "{} {path}: {body}", route.method);
    }
    server.stop();
}

#[test]
fn the_first_start_creates_an_admin_token_shown_once() {
    let mut server = Server::start(false);
    let log = std::fs::read_to_string(&server.log).unwrap();
    let token = log.split_whitespace().find(|word| word.starts_with("oos_")).expect("the token is printed");
    let stored = std::fs::read_to_string(server.data.join("api-tokens.json")).unwrap();
    assert!(!stored.contains(token), "only its digest is stored");
    assert_eq!(server.get("/v1/handlers", token).0, 200);
    let (status, job) =
        server.post("/v1/jobs", token, &json!({"name": "template", "data": {"name": "First"}}));
    assert_eq!(status, 201, "the admin token may do everything: {job}");
    let set = std::fs::read_to_string(server.data.parent().unwrap().join("permissions/admin.yaml")).unwrap();
    assert!(set.contains("handlers.upload"), "{set}");
    let log = server.stop();
    assert_eq!(log.matches(token).count(), 1, "the token is printed once and never logged");
}

#[test]
fn a_page_of_jobs_is_bounded_in_bytes_and_says_where_the_next_starts() {
    let mut server = Server::start(true);
    let bulky = "x".repeat(200 << 10);
    for i in 0..12 {
        let job =
            json!({"name": "template", "data": {"i": i, "pad": bulky}, "runAt": "2099-01-01T00:00:00Z"});
        assert_eq!(server.post("/v1/jobs", MIA, &job).0, 201);
    }
    let (mut seen, mut skip, mut pages) = (Vec::new(), 0, 0);
    loop {
        let (status, page) = server.get(&format!("/v1/jobs?limit=1000&sort=createdAtAsc&skip={skip}"), MIA);
        assert_eq!(status, 200);
        let jobs = page["jobs"].as_array().unwrap();
        assert!(
            !jobs.is_empty() && page.to_string().len() < (1 << 20) + (250 << 10),
            "one job past the bound at most"
        );
        seen.extend(jobs.iter().map(|j| j["data"]["i"].as_u64().unwrap()));
        pages += 1;
        match page["nextSkip"].as_u64() {
            Some(next) => skip = next,
            None => break,
        }
    }
    assert_eq!(seen, (0..12).collect::<Vec<_>>(), "every job once, in order");
    assert!(pages >= 3, "1 MiB pages of 200 KiB jobs: {pages}");
    server.stop();
}

/// Reads what the server sends on `stream` until it closes it (a server
/// that never does fails the test after a minute).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => answer,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => answer,
        Err(e) => panic!("the server kept the connection open: {e}"),
    }
}

#[test]
fn slow_and_greedy_clients_are_cut_off_and_answered_in_the_error_shape() {
    let mut server = Server::start_with(
        true,
        "  headerTimeout: 1s\n  requestTimeout: 2s\n  maxConnections: 8\n  maxHeaderBytes: 8192\n",
    );
    // Forty clients that never finish their headers: each is closed by the
    // server (first the eight it accepts, then the rest as they free up).
    let mut half_sent: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut stream = TcpStream::connect(&server.address).unwrap();
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n").unwrap();
            stream
        })
        .collect();
    for stream in &mut half_sent {
        let answer = read_to_close(stream);
        assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "a half-sent request was served");
    }
    // Then the server still answers, and a body sent too slowly gets a 408.
    assert_eq!(server.call("GET", "/healthz", None, None).0, 200);
    let mut slow = TcpStream::connect(&server.address).unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"name\":"
    );
    slow.write_all(head.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut slow)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    // 405 and 431 have the one error shape too.
    let (status, body) = server.call("DELETE", "/v1/stats", Some(ADMIN), None);
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"), "{body}");
    let mut big = TcpStream::connect(&server.address).unwrap();
    let padding = "x".repeat(10_000);
    big.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut big)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains(r#""code":"headers_too_large""#), "{answer}");
    server.stop();
}
