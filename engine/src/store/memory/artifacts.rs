//! Artifacts in process memory: the reference for the database backends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryStore;
use crate::store::StoreError;
use crate::store::artifacts::{ArtifactRecord, ArtifactStore, writable};

#[derive(Default)]
pub(super) struct Artifacts {
    records: BTreeMap<String, ArtifactRecord>,
    chunks: BTreeMap<(String, u32), Vec<u8>>,
}

impl Artifacts {
    fn unsealed(&mut self, id: &str) -> Result<&mut ArtifactRecord, StoreError> {
        writable(id, self.records.get_mut(id))
    }
}

#[async_trait]
impl ArtifactStore for MemoryStore {
    async fn create_artifact(&self, artifact: ArtifactRecord) -> Result<(), StoreError> {
        self.lock().artifacts.records.insert(artifact.id.clone(), artifact);
        Ok(())
    }

    async fn put_artifact_chunk(&self, id: &str, index: u32, bytes: Vec<u8>) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.artifacts.unsealed(id)?;
        state.artifacts.chunks.insert((id.to_string(), index), bytes);
        Ok(())
    }

    async fn discard_artifact(&self, id: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.artifacts.unsealed(id)?;
        state.artifacts.records.remove(id);
        let range = (id.to_string(), 0)..=(id.to_string(), u32::MAX);
        let chunks: Vec<_> = state.artifacts.chunks.range(range).map(|(key, _)| key.clone()).collect();
        for key in chunks {
            state.artifacts.chunks.remove(&key);
        }
        Ok(())
    }

    async fn unsealed_artifacts(&self, after: &str, limit: usize) -> Result<Vec<ArtifactRecord>, StoreError> {
        let state = self.lock();
        let later = state
            .artifacts
            .records
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
        Ok(later.map(|(_, r)| r).filter(|r| r.sealed_at.is_none()).take(limit).cloned().collect())
    }

    async fn seal_artifact(
        &self,
        id: &str,
        size: u64,
        sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<ArtifactRecord, StoreError> {
        let mut state = self.lock();
        let artifacts = &mut state.artifacts;
        let range = (id.to_string(), 0)..=(id.to_string(), u32::MAX);
        let stored: u64 = artifacts.chunks.range(range).map(|(_, bytes)| bytes.len() as u64).sum();
        let record = artifacts.unsealed(id)?;
        if stored != size {
            return Err(StoreError::ArtifactIncomplete { id: id.into(), stored, expected: size });
        }
        record.size = size;
        record.sha256 = sha256.into();
        record.sealed_at = Some(at);
        Ok(record.clone())
    }

    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        Ok(self.lock().artifacts.records.get(id).cloned())
    }

    async fn artifacts(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        let state = self.lock();
        let later = state
            .artifacts
            .records
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded));
        let listed = |r: &&ArtifactRecord| {
            r.sealed_at.is_some() && owner.is_none_or(|owner| r.owners().contains(&owner))
        };
        Ok(later.map(|(_, r)| r).filter(listed).take(limit).cloned().collect())
    }

    async fn artifact_chunk(&self, id: &str, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().artifacts.chunks.get(&(id.to_string(), index)).cloned())
    }
}
