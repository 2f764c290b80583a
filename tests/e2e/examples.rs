//! The guest SDK's example handlers, built from source by the build and run
//! in the sandbox as a user would run them.

use std::sync::Arc;

use objectos_engine::clock::SystemClock;
use objectos_engine::local::load_records;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{MemoryArtifacts, OutcomeKind, Services};
use objectos_engine::store::MemoryStore;
use serde_json::json;

use crate::support::{completed, repo, run_with};

/// The example contacts, unrestricted, with `artifacts` for output.
async fn contacts_with(artifacts: MemoryArtifacts) -> Services {
    let store = Arc::new(MemoryStore::new());
    load_records(&repo().join("guest-sdk/examples/contacts.json"), "ada", store.as_ref()).await.unwrap();
    let records = RecordsEngine::unrestricted(store, Arc::new(SystemClock));
    Services { records: Arc::new(records), artifacts: Arc::new(artifacts) }
}

async fn contacts() -> Services {
    contacts_with(MemoryArtifacts::new()).await
}

#[tokio::test]
async fn template_greets() {
    let outcome =
        run_with(objectos_engine::examples::TEMPLATE, &json!({"name": "Ada", "times": 2}), &contacts().await)
            .await;
    assert_eq!(completed(&outcome), json!({"greetings": ["hello, Ada!", "hello, Ada!"]}));
    assert_eq!(outcome.progress.unwrap().percent, 100);
    let messages: Vec<_> = outcome.log.lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["job job-e2e (attempt 1) runs as ada", "said hello 2 times"]);
}

#[tokio::test]
async fn template_refuses_bad_input() {
    let outcome =
        run_with(objectos_engine::examples::TEMPLATE, &json!({"name": " "}), &contacts().await).await;
    assert_eq!(
        outcome.kind,
        OutcomeKind::HandlerError { retryable: false, message: "`name` must not be empty".into() }
    );
    let unknown =
        run_with(objectos_engine::examples::TEMPLATE, &json!({"nam": "Ada"}), &contacts().await).await;
    let OutcomeKind::HandlerError { message, .. } = unknown.kind else { panic!() };
    assert!(message.contains("unknown field `nam`"), "{message}");
}

#[tokio::test]
async fn contacts_summary_counts_and_marks() {
    let services = contacts().await;
    let outcome = run_with(
        objectos_engine::examples::CONTACTS_SUMMARY,
        &json!({"object": "contacts", "mark": true}),
        &services,
    )
    .await;
    assert_eq!(
        completed(&outcome),
        json!({"total": 4, "groups": {"lost": 1, "open": 2, "won": 1}, "marked": 4})
    );
}

#[tokio::test]
async fn csv_export_streams_an_rfc4180_artifact() {
    let artifacts = MemoryArtifacts::new();
    let services = contacts_with(artifacts.clone()).await;
    let input = json!({"object": "contacts", "fields": ["name", "email"]});
    let out = completed(&run_with(objectos_engine::examples::CSV_EXPORT, &input, &services).await);
    assert_eq!(out["rows"], 4);
    let (info, bytes) = &artifacts.all()[0];
    assert_eq!(info.name, "contacts.csv");
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(
        text,
        "name,email\r\nAda Lovelace,ada@example.com\r\nCharles Babbage,charles@example.com\r\n\
         Grace Hopper,grace@example.com\r\n\"Alan \"\"Turing\"\", Esq.\",alan@example.com\r\n"
    );
}
