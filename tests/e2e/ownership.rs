//! Ownership at the HTTP API and the CLI, written as the attack it stops:
//! a member (`max`) probing another member's (`mia`'s) jobs, artifacts and
//! schedules through every route learns nothing — each answer is exactly
//! the one a made-up id gets, and each probe is audited — while mia and
//! the admin (who holds the `.any` permissions) see them.

use objectos_engine::api::route_docs;
use serde_json::{Value, json};

use crate::api::{ADMIN, MAX, MIA, Server, error_code, json_body};
use crate::cli::{client, run};

/// The routes about owned things; every other route is about something
/// shared (handlers, records under their own permissions, the audit log,
/// aggregate stats) or public.
const OWNED: [&str; 3] = ["/v1/jobs", "/v1/artifacts", "/v1/schedules"];
const SHARED: [&str; 7] =
    ["/v1/handlers", "/v1/objects", "/v1/audit", "/v1/stats", "/metrics", "/healthz", "/v1/openapi.json"];

/// Mia's things, each made through the API as she would.
struct Mias {
    finished_job: String,
    waiting_job: String,
    artifact: String,
    schedule: String,
}

fn mias(server: &Server) -> Mias {
    let enqueue = |body: Value| {
        let (status, job) = server.post("/v1/jobs", MIA, &body);
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().unwrap().to_string()
    };
    let finished_job = enqueue(json!({"name": "template", "data": {"name": "Mia"}, "uniqueKey": "nightly"}));
    server.wait(&finished_job);
    let waiting_job =
        enqueue(json!({"name": "template", "uniqueKey": "weekly", "runAt": "2099-01-01T00:00:00Z"}));
    let report =
        enqueue(json!({"name": "report-generation", "data": {"object": "contacts", "format": "csv"}}));
    let report = server.wait(&report);
    let artifact = report["result"]["artifactId"].as_str().unwrap_or_else(|| panic!("{report}")).to_string();
    let (status, schedule) =
        server.post("/v1/schedules", MIA, &json!({"cron": "0 0 1 1 *", "handler": "template"}));
    assert_eq!(status, 201, "{schedule}");
    let schedule = schedule["id"].as_str().unwrap().to_string();
    Mias { finished_job, waiting_job, artifact, schedule }
}

/// An id of the same shape that names nothing.
fn made_up(id: &str) -> String {
    let (prefix, _) = id.split_once('_').unwrap();
    format!("{prefix}_{}", "0".repeat(id.len() - prefix.len() - 1))
}

/// The request body a route needs to get past its parsing.
fn body_for(method: &str, path: &str) -> Option<Vec<u8>> {
    match (method, path) {
        ("PATCH", "/v1/schedules/{id}") => Some(json_body(&json!({"data": {"n": 1}}))),
        ("PUT", "/v1/schedules/{id}") => {
            Some(json_body(&json!({"cron": "0 0 * * *", "handler": "template"})))
        }
        _ => None,
    }
}

#[test]
fn a_member_learns_nothing_of_another_members_jobs_artifacts_or_schedules() {
    let mut server = Server::start(true);
    let mia = mias(&server);
    let mut probes = 0;
    for doc in route_docs() {
        let owned = OWNED.iter().any(|p| doc.path.starts_with(p));
        assert!(owned || SHARED.iter().any(|p| doc.path.starts_with(p)), "{} is in neither list", doc.path);
        if !owned || !doc.path.contains("{id}") {
            continue;
        }
        let theirs = match doc.path {
            p if p.starts_with("/v1/artifacts") => &mia.artifact,
            p if p.starts_with("/v1/schedules") => &mia.schedule,
            "/v1/jobs/{id}/cancel" => &mia.waiting_job,
            _ => &mia.finished_job,
        };
        let nobodys = made_up(theirs);
        let body = body_for(doc.method, doc.path);
        let ask = |id: &str| {
            let body = body.as_deref().map(|bytes| ("application/json", bytes));
            server.call(doc.method, &doc.path.replace("{id}", id), Some(MAX), body)
        };
        let (status, answer) = ask(theirs);
        let (expected_status, expected) = ask(&nobodys);
        let route = format!("{} {}", doc.method, doc.path);
        assert!([403, 404].contains(&status), "{route}: {status} {answer}");
        assert_eq!(status, expected_status, "{route}: mia's answered unlike a missing one");
        let answer: Value =
            serde_json::from_str(&answer.to_string().replace(theirs.as_str(), &nobodys)).unwrap();
        assert_eq!(answer, expected, "{route}: mia's answered unlike a missing one");
        probes += 1;
    }
    assert_eq!(probes, 12, "every route about one job, artifact or schedule was probed");

    // Listings hold none of mia's, and her unique key neither blocks nor names her job.
    for (path, key) in [("/v1/jobs", "jobs"), ("/v1/artifacts", "artifacts"), ("/v1/schedules", "schedules")]
    {
        let (status, listed) = server.get(path, MAX);
        assert_eq!((status, listed[key].as_array().unwrap().len()), (200, 0), "{path}: {listed}");
    }
    let (status, job) = server.post(
        "/v1/jobs",
        MAX,
        &json!({"name": "template", "uniqueKey": "weekly", "runAt": "2099-01-01T00:00:00Z"}),
    );
    assert_eq!(status, 201, "keys are per user: {job}");
    let (status, body) = server.post(
        "/v1/jobs",
        MIA,
        &json!({"name": "template", "uniqueKey": "weekly", "runAt": "2099-01-01T00:00:00Z"}),
    );
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&mia.waiting_job),
        "named to its owner: {body}"
    );

    // Mia, and the admin with the `.any` permissions, see all of it.
    for token in [MIA, ADMIN] {
        for path in [
            format!("/v1/jobs/{}", mia.finished_job),
            format!("/v1/jobs/{}/logs", mia.finished_job),
            format!("/v1/artifacts/{}", mia.artifact),
            format!("/v1/schedules/{}", mia.schedule),
        ] {
            assert_eq!(server.get(&path, token).0, 200, "{path}");
        }
    }
    let (_, all) = server.get("/v1/jobs", ADMIN);
    assert_eq!(all["jobs"].as_array().unwrap().len(), 4, "{all}");

    // Every probe of mia's things is in the audit log as max's denial.
    let (_, audit) = server.get("/v1/audit?event=permission.denied&actor=max&limit=1000", ADMIN);
    let mine = [&mia.finished_job, &mia.waiting_job, &mia.artifact, &mia.schedule];
    let denials = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| mine.iter().any(|id| e["entry"]["resource"].as_str().unwrap().ends_with(id.as_str())))
        .count();
    assert_eq!(denials, probes, "{audit}");

    // The CLI says the same of mia's job as of one that does not exist.
    let show = |id: &str| {
        let out = run(&mut client(&server, MAX), &["jobs", "show", id], 1);
        String::from_utf8_lossy(&out.stderr).replace(id, "ID")
    };
    assert_eq!(show(&mia.finished_job), show(&made_up(&mia.finished_job)));
    server.stop();
}
