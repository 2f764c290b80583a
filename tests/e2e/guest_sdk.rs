//! Every wrapper of the guest SDK, round-tripped through the sandbox's
//! in-memory services.

use std::sync::Arc;

use objectos_engine::clock::SystemClock;
use objectos_engine::permissions::Filter;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{MemoryArtifacts, OutcomeKind, Services, Source};
use objectos_engine::store::{MemoryStore, RecordFind, RecordStore};
use serde_json::{Value, json};

use crate::support::{completed, run_with};

struct Fixture {
    store: Arc<MemoryStore>,
    artifacts: MemoryArtifacts,
    services: Services,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let records = RecordsEngine::unrestricted(store.clone(), Arc::new(SystemClock));
    let artifacts = MemoryArtifacts::new();
    let services = Services { records: Arc::new(records), artifacts: Arc::new(artifacts.clone()) };
    Fixture { store, artifacts, services }
}

impl Fixture {
    async fn stored(&self, object: &str) -> Vec<Value> {
        let find = RecordFind { filter: Filter::everything(), sort: vec![], after: None, limit: 1000 };
        let records = self.store.find_records(object, find).await.unwrap();
        records.into_iter().map(Value::Object).collect()
    }

    async fn call(&self, input: Value) -> Value {
        completed(&run_with(objectos_test_guests::SDK_ROUNDTRIP, &input, &self.services).await)
    }
}

#[tokio::test]
async fn context_reaches_the_handler() {
    let f = fixture();
    let ctx = f.call(json!({"action": "context"})).await;
    assert_eq!(ctx["job_id"], "job-e2e");
    assert_eq!(ctx["attempt"], 1);
    assert_eq!(ctx["principal"]["user_id"], "ada");
    assert_eq!(ctx["principal"]["profiles"], json!(["admin"]));
}

#[tokio::test]
async fn records_insert_iterate_count_update_delete() {
    let f = fixture();
    let rows: Vec<Value> =
        (0..25).map(|i| json!({"n": i, "parity": if i % 2 == 0 {"even"} else {"odd"}})).collect();
    let ids = f.call(json!({"action": "insert", "object": "items", "records": rows})).await;
    assert_eq!(ids.as_array().unwrap().len(), 25);

    // Pages of 4 → 7 host calls; the iterator hides the cursor.
    let all = f.call(json!({"action": "iterate", "object": "items", "page": 4, "sort": "n"})).await;
    let ns: Vec<i64> = all.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..25).collect::<Vec<_>>());
    assert_eq!(all[0]["owner"], "ada");

    let odd = f.call(json!({"action": "count", "object": "items", "filter": {"parity": "odd"}})).await;
    assert_eq!(odd, 12);
    let updated =
        f.call(json!({"action": "update", "object": "items", "filter": {"parity": "odd"}, "patch": {"flag": true}})).await;
    assert_eq!(updated, json!({"matched": 12, "changed": 12, "skipped": 0}));
    let deleted = f.call(json!({"action": "delete", "object": "items", "filter": {"flag": true}})).await;
    assert_eq!(deleted["changed"], 12);
    assert_eq!(f.stored("items").await.len(), 13);

    let objects = f.call(json!({"action": "objects"})).await;
    assert_eq!(objects[0]["name"], "items");
    assert!(objects[0]["fields"].as_array().unwrap().contains(&json!("parity")));
}

#[tokio::test]
async fn records_import_keeps_system_fields() {
    let f = fixture();
    let old = json!({"id": "x1", "owner": "grace", "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-02T00:00:00Z", "v": 1});
    let first =
        f.call(json!({"action": "import", "object": "items", "records": [old], "replace": false})).await;
    assert_eq!(first, json!({"inserted": 1, "replaced": 0, "skipped": 0}));
    let newer = json!({"id": "x1", "owner": "grace", "v": 2});
    let skipped =
        f.call(json!({"action": "import", "object": "items", "records": [newer], "replace": false})).await;
    assert_eq!(skipped["skipped"], 1);
    let replaced =
        f.call(json!({"action": "import", "object": "items", "records": [newer], "replace": true})).await;
    assert_eq!(replaced["replaced"], 1);
    let stored = &f.stored("items").await[0];
    assert_eq!(stored["owner"], "grace");
    assert_eq!(stored["v"], 2);
}

#[tokio::test]
async fn artifact_writer_and_reader_stream_through_io_traits() {
    let f = fixture();
    // 200 KiB: more than the writer's 64 KiB buffer, so it streams in chunks.
    let out = f.call(json!({"action": "artifact", "text": "0123456789abcdef", "repeat": 12_800})).await;
    assert_eq!(out["size"], 204_800);
    assert_eq!(out["readBack"], 204_800);
    assert_eq!(out["matches"], true);
    assert_eq!(out["infoAgrees"], true);
    let stored = f.artifacts.all();
    assert_eq!(stored[0].1.len(), 204_800);
    assert_eq!(stored[0].0.sha256, out["sha256"].as_str().unwrap());
}

#[tokio::test]
async fn errors_keep_their_retry_meaning() {
    let f = fixture();
    let retry = run_with(
        objectos_test_guests::SDK_ROUNDTRIP,
        &json!({"action": "fail", "retryable": true, "message": "busy"}),
        &f.services,
    )
    .await;
    assert_eq!(retry.kind, OutcomeKind::HandlerError { retryable: true, message: "busy".into() });
    let fatal = run_with(
        objectos_test_guests::SDK_ROUNDTRIP,
        &json!({"action": "fail", "retryable": false, "message": "bad"}),
        &f.services,
    )
    .await;
    assert_eq!(fatal.kind, OutcomeKind::HandlerError { retryable: false, message: "bad".into() });
}

#[tokio::test]
async fn bad_input_is_a_fatal_error_naming_the_problem() {
    let f = fixture();
    let outcome =
        run_with(objectos_test_guests::SDK_ROUNDTRIP, &json!({"action": "dance"}), &f.services).await;
    let OutcomeKind::HandlerError { retryable: false, message } = &outcome.kind else {
        panic!("{:?}", outcome.kind)
    };
    assert!(message.contains("does not fit this handler's input"), "{message}");
    assert!(message.contains("dance"), "{message}");
}

#[tokio::test]
async fn a_panic_is_logged_and_explains_the_trap() {
    let f = fixture();
    let outcome = run_with(
        objectos_test_guests::SDK_ROUNDTRIP,
        &json!({"action": "panic", "message": "oh no"}),
        &f.services,
    )
    .await;
    let OutcomeKind::Trap { message } = &outcome.kind else { panic!("{:?}", outcome.kind) };
    assert!(message.contains("panicked at") && message.contains("oh no"), "{message}");
    let logged = outcome.log.lines.iter().find(|l| l.source == Source::Log).expect("panic hook logged");
    assert!(logged.message.contains("oh no"));
}

#[tokio::test]
async fn a_host_error_becomes_a_fatal_error_with_its_message() {
    let f = fixture();
    let bad = run_with(
        objectos_test_guests::SDK_ROUNDTRIP,
        &json!({"action": "count", "object": "items", "filter": {"n": {"$regex": "x"}}}),
        &f.services,
    )
    .await;
    let OutcomeKind::HandlerError { retryable: false, message } = &bad.kind else { panic!("{:?}", bad.kind) };
    assert!(message.starts_with("invalid request:"), "{message}");
}
