//! Artifacts in SQLite: `artifacts` (one row each) and `artifact_chunks`
//! (the bytes, keyed by artifact and chunk number).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, backend, millis, time};
use crate::store::StoreError;
use crate::store::artifacts::{ArtifactRecord, ArtifactStore, writable};

const COLUMNS: &str =
    "id, name, content_type, job_id, owner, size, sha256, created_at, sealed_at, enqueued_by";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        content_type: row.get(2)?,
        job_id: row.get(3)?,
        owner: row.get(4)?,
        size: row.get::<_, i64>(5)? as u64,
        sha256: row.get(6)?,
        created_at: time(row.get(7)?),
        sealed_at: row.get::<_, Option<i64>>(8)?.map(time),
        enqueued_by: row.get(9)?,
    })
}

fn get(conn: &Connection, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM artifacts WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], record_from_row).optional())
        .map_err(backend)
}

/// The artifact, if it may still be written.
fn unsealed(conn: &Connection, id: &str) -> Result<ArtifactRecord, StoreError> {
    writable(id, get(conn, id)?)
}

#[async_trait]
impl ArtifactStore for SqliteStore {
    async fn create_artifact(&self, a: ArtifactRecord) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO artifacts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))
            .and_then(|mut stmt| {
                stmt.execute(params![
                    a.id,
                    a.name,
                    a.content_type,
                    a.job_id,
                    a.owner,
                    a.size as i64,
                    a.sha256,
                    millis(a.created_at),
                    a.sealed_at.map(millis),
                    a.enqueued_by
                ])
            })
            .map(drop)
            .map_err(backend)
        })
        .await
    }

    async fn put_artifact_chunk(&self, id: &str, index: u32, bytes: Vec<u8>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            unsealed(conn, &id)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO artifact_chunks (artifact_id, idx, bytes) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![id, index, bytes]))
            .map(drop)
            .map_err(backend)
        })
        .await
    }

    async fn discard_artifact(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            unsealed(conn, &id)?;
            conn.execute("DELETE FROM artifact_chunks WHERE artifact_id = ?1", [&id]).map_err(backend)?;
            conn.execute("DELETE FROM artifacts WHERE id = ?1", [&id]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn unsealed_artifacts(&self, after: &str, limit: usize) -> Result<Vec<ArtifactRecord>, StoreError> {
        let after = after.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM artifacts WHERE id > ?1 AND sealed_at IS NULL ORDER BY id LIMIT ?2"
            ))
            .and_then(|mut stmt| stmt.query_map(params![after, limit as i64], record_from_row)?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn seal_artifact(
        &self,
        id: &str,
        size: u64,
        sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<ArtifactRecord, StoreError> {
        let (id, sha256) = (id.to_string(), sha256.to_string());
        self.write(move |conn| {
            let mut record = unsealed(conn, &id)?;
            let stored: i64 = conn
                .query_row(
                    "SELECT coalesce(sum(length(bytes)), 0) FROM artifact_chunks WHERE artifact_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if stored as u64 != size {
                return Err(StoreError::ArtifactIncomplete { id, stored: stored as u64, expected: size });
            }
            conn.execute(
                "UPDATE artifacts SET size = ?2, sha256 = ?3, sealed_at = ?4 WHERE id = ?1",
                params![id, size as i64, sha256, millis(at)],
            )
            .map_err(backend)?;
            record.size = size;
            record.sha256 = sha256;
            record.sealed_at = Some(at);
            Ok(record)
        })
        .await
    }

    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| get(conn, &id)).await
    }

    async fn artifacts(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ArtifactRecord>, StoreError> {
        let (owner, after) = (owner.map(str::to_string), after.to_string());
        self.read(move |conn| {
            // The owner's clause is `OWNED` with a NULL meaning everyone.
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM artifacts WHERE (?1 IS NULL OR owner = ?1 OR (enqueued_by = ?1 \
                 AND enqueued_by <> owner)) AND id > ?2 AND sealed_at IS NOT NULL ORDER BY id LIMIT ?3"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params![owner, after, limit as i64], record_from_row)?.collect()
            })
            .map_err(backend)
        })
        .await
    }

    async fn artifact_chunk(&self, id: &str, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT bytes FROM artifact_chunks WHERE artifact_id = ?1 AND idx = ?2")
                .and_then(|mut stmt| stmt.query_row(params![id, index], |r| r.get(0)).optional())
                .map_err(backend)
        })
        .await
    }
}
