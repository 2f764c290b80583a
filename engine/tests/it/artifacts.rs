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
