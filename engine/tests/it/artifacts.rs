//! Artifacts in the database: written by jobs in chunks with bounded
//! memory, sealed with their digest, listed and read back through the
//! engine's Rust API.

use std::sync::Arc;

use objectos_engine::artifacts::{CHUNK_BYTES, StoredArtifacts};
use objectos_engine::clock::SystemClock;
use objectos_engine::digest::sha256_hex;
use objectos_engine::jobs::{JobStatus, NewJob};
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::queue::{AllowAll, QueueConfig};
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{ArtifactSource, ArtifactsService, HostError, Services};
use objectos_engine::store::{SqliteStore, Store, sqlite::Durability};
use serde_json::json;

use crate::harness;

fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("objectos.db"), Durability::Normal).unwrap();
    (Arc::new(store), dir)
}

async fn read_all(source: &mut dyn ArtifactSource) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let chunk = source.read(100_000).await.unwrap();
        if chunk.is_empty() {
            return bytes;
        }
        bytes.extend(chunk);
    }
}

#[tokio::test]
async fn a_large_artifact_is_stored_in_chunks_and_reads_back_exactly() {
    let (store, _dir) = sqlite();
    let artifacts = StoredArtifacts::new(store.clone(), Arc::new(SystemClock), Arc::new(AllowAll));
    let ada = Principal::new("ada", &["admin"]);
    let bytes: Vec<u8> = (0..2 * CHUNK_BYTES + 12_345).map(|i| (i * 7 % 251) as u8).collect();
    let mut sink = artifacts.create(&ada, "job-1", "data.bin", "application/octet-stream").await.unwrap();
    let unsealed = artifacts.list(&Scope::Any, "", 10).await.unwrap();
    assert!(unsealed.is_empty(), "not listed while being written");
    for piece in bytes.chunks(70_001) {
        sink.write(piece).await.unwrap();
    }
    let info = sink.finish().await.unwrap();
    assert_eq!((info.size, info.sha256.clone()), (bytes.len() as u64, sha256_hex(&bytes)));
    assert!(matches!(sink.write(b"more").await, Err(HostError::Invalid(_))), "sealed");
    assert_eq!(store.artifact_chunk(&info.id, 2).await.unwrap().unwrap().len(), 12_345, "three chunks");

    let listed = artifacts.list(&Scope::Any, "", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].job_id.as_str(), listed[0].owner.as_str()), ("job-1", "ada"));
    let mut source = artifacts.open(&ada, &info.id).await.unwrap();
    assert_eq!(read_all(&mut *source).await, bytes);
    assert!(matches!(artifacts.open(&ada, "art_missing").await, Err(HostError::NotFound(_))));
}

#[tokio::test]
async fn a_job_writes_an_artifact_the_engine_then_lists() {
    let (store, _dir) = sqlite();
    let clock = Arc::new(SystemClock);
    let artifacts = StoredArtifacts::new(store.clone(), clock.clone(), Arc::new(AllowAll));
    let services = Services {
        records: Arc::new(RecordsEngine::unrestricted(store.clone(), clock)),
        artifacts: Arc::new(artifacts.clone()),
    };
    let (queue, _) = harness::queue_with(store, QueueConfig::default(), Arc::new(AllowAll), services).await;
    let job = queue
        .enqueue(&Principal::new("ada", &["admin"]), NewJob::new("hostile", json!("artifact:a,b,c")))
        .await;
    let job = job.unwrap();
    let workers = queue.start();
    let done = queue.wait_final(&job.id).await.unwrap();
    workers.shutdown(None).await;
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(done.result, Some(json!("a,b,c")), "the guest read its artifact back");
    let listed = artifacts.list(&Scope::Any, "", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].job_id.as_str()), ("out.txt", job.id.as_str()));
    assert_eq!(listed[0].sha256, sha256_hex(b"a,b,c"));
}

/// Mia's and Max's permissions: both write and read artifacts (and reach
/// records, which the hostile fixture imports); an archivist reads anyone's.
const OWNERS: &str = "name: owners\nsystem:\n  profiles:\n    member: [records.import, artifacts.write, artifacts.read]\n    \
                      archivist: [artifacts.read.any]\n";
const NOTES: &str =
    "name: notes\nobjectName: notes\nprofiles:\n  member: { allowRead: true, allowCreate: true }\n";

#[tokio::test]
async fn a_guest_reads_only_its_principals_artifacts_unless_it_may_read_any() {
    use objectos_engine::permissions::{PermissionSet, Permissions, PermissionsDir};
    use objectos_engine::store::AccessEventType;
    let (store, _dir) = sqlite();
    let clock = Arc::new(SystemClock);
    let parse = |name: &str, text: &str| PermissionSet::parse(std::path::Path::new(name), text).unwrap();
    let permissions = Arc::new(PermissionsDir::fixed(Permissions::new(vec![
        parse("o.yaml", OWNERS),
        parse("n.yaml", NOTES),
    ])));
    let artifacts = StoredArtifacts::new(store.clone(), clock.clone(), permissions.clone());
    let services = Services {
        records: Arc::new(RecordsEngine::new(store.clone(), permissions.clone(), clock)),
        artifacts: Arc::new(artifacts.clone()),
    };
    let (queue, _) = harness::queue_with(store.clone(), QueueConfig::default(), permissions, services).await;
    let workers = queue.start();
    let run = |who: Principal, action: String| {
        let queue = queue.clone();
        async move {
            let job = queue.enqueue(&who, NewJob::new("hostile", json!(action))).await.unwrap();
            queue.wait_final(&job.id).await.unwrap()
        }
    };
    let mia = Principal::new("mia", &["member"]);
    let written = run(mia.clone(), "artifact:mia's secret".into()).await;
    assert_eq!(written.status, JobStatus::Completed, "{:?}", written.error);
    let id = artifacts.list(&Scope::Owner("mia".into()), "", 10).await.unwrap()[0].id.clone();

    // Max holds artifacts.read, but the artifact is not his: to his job it
    // does not exist, exactly like one that never did.
    let max = Principal::new("max", &["member"]);
    let probe = run(max.clone(), format!("read-artifact:{id}")).await;
    let missing = run(max.clone(), "read-artifact:art_000000000000000000000000".into()).await;
    assert_eq!((probe.status, missing.status), (JobStatus::Failed, JobStatus::Failed));
    let error = probe.error.unwrap();
    assert!(error.contains(&format!("NotFound(\"artifact {id}\")")), "{error}");
    assert_eq!(
        error.replace(&id, "ID"),
        missing.error.unwrap().replace("art_000000000000000000000000", "ID")
    );
    let denials: Vec<_> = store
        .access_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == AccessEventType::PermissionDenied && e.actor.user_id == "max")
        .collect();
    assert_eq!(denials.len(), 1, "the probe of mia's artifact is recorded: {denials:?}");
    assert_eq!(denials[0].resource, format!("artifacts/{id}"));

    // Mia reads her own, and an archivist reads anyone's.
    for reader in [mia, Principal::new("ann", &["member", "archivist"])] {
        let read = run(reader, format!("read-artifact:{id}")).await;
        assert_eq!(read.result, Some(json!("mia's secret")), "{:?}", read.error);
    }
    workers.shutdown(None).await;
}

#[tokio::test]
async fn an_abandoned_writer_leaves_no_artifact_and_no_chunk() {
    let (store, _dir) = sqlite();
    let clock = Arc::new(SystemClock);
    let artifacts = StoredArtifacts::new(store.clone(), clock.clone(), Arc::new(AllowAll));
    let services = Services {
        records: Arc::new(RecordsEngine::unrestricted(store.clone(), clock)),
        artifacts: Arc::new(artifacts.clone()),
    };
    let (queue, _) =
        harness::queue_with(store.clone(), QueueConfig::default(), Arc::new(AllowAll), services).await;
    let workers = queue.start();
    let ada = Principal::new("ada", &["admin"]);
    // Started, a chunk stored, then left open when the job returns.
    let job = queue.enqueue(&ada, NewJob::new("hostile", json!("abandon"))).await.unwrap();
    assert_eq!(queue.wait_final(&job.id).await.unwrap().status, JobStatus::Completed);
    // And a job that runs out of writers with a thousand held open.
    let job = queue.enqueue(&ada, NewJob::new("hostile", json!("writers:1000"))).await.unwrap();
    assert_eq!(queue.wait_final(&job.id).await.unwrap().status, JobStatus::Completed);
    workers.shutdown(None).await;
    let count = |sql: &'static str| {
        let path = _dir.path().join("objectos.db");
        rusqlite::Connection::open(path).unwrap().query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
    };
    assert_eq!(count("SELECT count(*) FROM artifacts"), 0, "no artifact row is left");
    assert_eq!(count("SELECT count(*) FROM artifact_chunks"), 0, "no chunk is left");
}

#[tokio::test]
async fn the_chunks_of_a_writer_lost_with_its_node_are_swept() {
    use objectos_engine::store::ArtifactRecord;
    let (store, _dir) = sqlite();
    let (queue, _) = harness::queue(store.clone(), QueueConfig::default(), Arc::new(AllowAll)).await;
    let ada = Principal::new("ada", &["admin"]);
    // As a node killed mid-write leaves them: a row and a chunk, never sealed,
    // for a job that no longer runs (here: one that never existed).
    let lost = ArtifactRecord::new(
        "art_lost".into(),
        "x",
        "text/plain",
        "job_gone",
        ["ada", "ada"],
        chrono::Utc::now(),
    );
    store.create_artifact(lost).await.unwrap();
    store.put_artifact_chunk("art_lost", 0, vec![1; 1000]).await.unwrap();
    // And one whose job is running now: its writer is still at work.
    let job = queue.enqueue(&ada, NewJob::new("hostile", json!("spin"))).await.unwrap();
    let claim = objectos_engine::store::ClaimRequest {
        now: queue.clock().now(),
        limit: 1,
        exclude: vec![],
        owner: "test".into(),
        lease_until: queue.clock().now() + chrono::Duration::seconds(30),
    };
    assert_eq!(store.claim(claim).await.unwrap().len(), 1);
    let live = ArtifactRecord::new(
        "art_live".into(),
        "y",
        "text/plain",
        &job.id,
        ["ada", "ada"],
        chrono::Utc::now(),
    );
    store.create_artifact(live).await.unwrap();

    assert_eq!(queue.discard_abandoned_artifacts().await.unwrap(), 1);
    assert!(store.artifact("art_lost").await.unwrap().is_none());
    assert!(store.artifact_chunk("art_lost", 0).await.unwrap().is_none(), "its chunks go with it");
    assert!(store.artifact("art_live").await.unwrap().is_some(), "a running job's writer is left alone");
}
