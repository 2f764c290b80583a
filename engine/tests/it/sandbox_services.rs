//! The host side of every interface, reached from a real guest: log,
//! progress, the job context, records, records-write, records-import,
//! artifacts and artifacts-read.

use std::sync::{Arc, Mutex};

use objectos_engine::clock::SystemClock;
use objectos_engine::permissions::Filter;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{
    Level, MemoryArtifacts, OutcomeKind, Progress, ProgressObserver, Services, Source,
};
use objectos_engine::store::{MemoryStore, RecordStore};

use crate::harness::{hostile, job, run, sandbox};

#[derive(Default)]
struct Seen(Mutex<Vec<Progress>>);

impl ProgressObserver for Seen {
    fn progress(&self, progress: &Progress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

#[tokio::test]
async fn log_progress_and_stdout_reach_the_job() {
    let seen = Arc::new(Seen::default());
    let mut logging = job("log");
    logging.observer = Some(seen.clone());
    let outcome = sandbox().run(&hostile(), logging).await;
    assert_eq!(outcome.kind, OutcomeKind::Completed { result: "null".into() });
    let lines: Vec<_> = outcome.log.lines.iter().map(|l| (l.level, l.source, l.message.as_str())).collect();
    assert_eq!(
        lines,
        [(Level::Info, Source::Log, "hello from job-1"), (Level::Info, Source::Stdout, "printed line")]
    );
    let expected = Progress { percent: 50, message: "half way".into() };
    assert_eq!(outcome.progress, Some(expected.clone()));
    assert_eq!(*seen.0.lock().unwrap(), [expected]);
}

#[tokio::test]
async fn the_guest_sees_its_job_context() {
    let outcome = run("context").await;
    assert_eq!(
        outcome.kind,
        OutcomeKind::Completed {
            result: r#"{"job":"job-1","user":"ada","attempt":1,"schedule":null}"#.into()
        }
    );
}

#[tokio::test]
async fn records_round_trip_through_the_services() {
    let store = Arc::new(MemoryStore::new());
    let records = RecordsEngine::unrestricted(store.clone(), Arc::new(SystemClock));
    let services = Services { records: Arc::new(records), artifacts: Arc::new(MemoryArtifacts::new()) };
    let with = |action: &str| {
        let mut job = job(action);
        job.services = services.clone();
        job
    };
    let inserted = sandbox().run(&hostile(), with("insert:contacts")).await;
    assert_eq!(inserted.kind, OutcomeKind::Completed { result: "1".into() });
    let counted = sandbox().run(&hostile(), with("count:contacts")).await;
    assert_eq!(counted.kind, OutcomeKind::Completed { result: "1".into() });
    let found = sandbox().run(&hostile(), with("find:contacts")).await;
    let OutcomeKind::Completed { result } = found.kind else { panic!("{:?}", found.kind) };
    let page: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(page[0]["name"], "Ada");
    assert_eq!(page[0]["owner"], "ada");

    let imported = sandbox().run(&hostile(), with("import:contacts")).await;
    assert_eq!(imported.kind, OutcomeKind::Completed { result: "1".into() });
    let again = sandbox().run(&hostile(), with("import:contacts")).await;
    let OutcomeKind::HandlerError { message, .. } = again.kind else { panic!("{:?}", again.kind) };
    assert!(message.contains("already exists"), "{message}");
    let stored = store.count_records("contacts", &Filter::everything()).await.unwrap();
    assert_eq!(stored, 2, "the failed import stored nothing");
}

#[tokio::test]
async fn artifacts_are_written_and_read_back_in_chunks() {
    let artifacts = MemoryArtifacts::new();
    let mut write = job("artifact:hello, artifact world");
    write.services = Services { artifacts: Arc::new(artifacts.clone()), ..Services::in_memory() };
    let outcome = sandbox().run(&hostile(), write).await;
    assert_eq!(outcome.kind, OutcomeKind::Completed { result: "\"hello, artifact world\"".into() });
    let stored = artifacts.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0.size, 21);
    assert_eq!(stored[0].0.content_type, "text/plain");
    assert_eq!(stored[0].1.as_slice(), b"hello, artifact world");
}
