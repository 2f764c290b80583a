//! The audit log in process memory: the reference for the SQLite and
//! PostgreSQL backends in the conformance suite.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::log::Log;
use super::{MemoryStore, events_after};
use crate::audit::{Checkpoint, StoredEntry};
use crate::jobs::EventType;
use crate::store::StoreError;
use crate::store::audit::{
    AuditAppend, AuditHead, AuditQuery, AuditRow, AuditSources, AuditStore, Cursors, FiledEntry,
};

#[derive(Default)]
pub(super) struct Audit {
    head: AuditHead,
    /// The entries after `head.pruned`, in order.
    rows: Log<AuditRow>,
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(self.lock().audit.head.clone())
    }

    async fn audit_sources(&self, cursors: Cursors, limit: usize) -> Result<AuditSources, StoreError> {
        let state = self.lock();
        let jobs: Vec<_> = state
            .events
            .iter_from(cursors.jobs as usize)
            .take(limit)
            .map(|event| (event.clone(), state.job_facts(&event.job_id, event.event == EventType::Completed)))
            .collect();
        let schedules = events_after(&state.schedule_events, cursors.schedules, limit);
        let access = state
            .records
            .events
            .iter_from(cursors.access as usize)
            .take(limit)
            .map(|event| (event.clone(), event.job_id.as_deref().and_then(|id| state.job_facts(id, false))))
            .collect();
        drop(state);
        // Copied now that workers can take the lock again.
        let jobs = jobs.into_iter().map(|(event, facts)| (Arc::unwrap_or_clone(event), facts)).collect();
        Ok(AuditSources { jobs, schedules, access })
    }

    async fn append_audit(&self, append: AuditAppend) -> Result<(), StoreError> {
        let mut state = self.lock();
        let audit = &mut state.audit;
        if audit.head.seq != append.head.seq || audit.head.hash != append.head.hash {
            return Err(StoreError::AuditMoved);
        }
        if let Some(last) = append.rows.last() {
            audit.head.seq = last.stored.seq;
            audit.head.hash.clone_from(&last.stored.hash);
        }
        audit.head.cursors = append.cursors;
        audit.rows.extend(append.rows);
        Ok(())
    }

    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let state = self.lock();
        let rows = &state.audit.rows;
        let start = rows.partition_point(|r| r.stored.seq <= query.after);
        Ok(rows
            .iter_from(start)
            .filter(|r| query.matches(r))
            .take(query.limit)
            .map(|r| r.stored.clone())
            .collect())
    }

    async fn audit_filed(&self, after: u64, limit: usize) -> Result<Vec<FiledEntry>, StoreError> {
        let state = self.lock();
        let rows = &state.audit.rows;
        let start = rows.partition_point(|r| r.stored.seq <= after);
        Ok(rows
            .iter_from(start)
            .take(limit)
            .map(|row| FiledEntry { stored: row.stored.clone(), misfiled: crate::audit::misfiled(row) })
            .collect())
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let audit = &mut state.audit;
        let (mut old, mut last) = (0, None);
        for row in audit.rows.iter_from(0).take(limit).take_while(|r| r.at < before) {
            old += 1;
            last = Some(&row.stored);
        }
        let Some(last) = last else { return Ok(0) };
        audit.head.pruned = Some(Checkpoint { seq: last.seq, hash: last.hash.clone() });
        audit.rows.drop_front(old);
        Ok(old as u64)
    }
}
