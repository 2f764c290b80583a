//! The audit log's storage: an append-only table of chained entries, the
//! head it grows from, and the outbox positions it has consumed.
//!
//! Entries are appended by whichever node feeds the log, so an append is
//! conditional: it names the head it chains onto and is refused with
//! [`StoreError::AuditMoved`] if another writer got there first (the
//! writer then reads the new head and chains again). The head also records,
//! for each outbox (job, schedule and access events), the last event the
//! log holds, updated in the same transaction as the entries: an outbox
//! event becomes exactly one entry, whoever feeds and however often they
//! crash. Nothing in this trait changes or removes an entry except
//! [`AuditStore::prune_audit`], which removes only a whole prefix and keeps
//! a checkpoint of where it ended.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use super::records::AccessEvent;
use crate::audit::{AuditEntry, Checkpoint, GENESIS, StoredEntry, chain_into};
use crate::jobs::JobEvent;
use crate::principal::Principal;
use crate::schedule::ScheduleEvent;

/// How far the log has read each outbox: the last event it holds of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    /// The last job event.
    pub jobs: u64,
    /// The last schedule event.
    pub schedules: u64,
    /// The last access event (denials, record changes, handler changes).
    pub access: u64,
}

/// The end of the log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last entry's sequence number (0 when empty).
    pub seq: u64,
    /// Its hash ([`GENESIS`] when empty).
    pub hash: String,
    /// The outbox events the log holds.
    pub cursors: Cursors,
    /// Where the log begins when retention removed a prefix: the last
    /// removed entry.
    pub pruned: Option<Checkpoint>,
}

impl AuditHead {
    /// The last entry as a checkpoint (the genesis when empty).
    pub fn end(&self) -> Checkpoint {
        Checkpoint { seq: self.seq, hash: self.hash.clone() }
    }
}

impl Default for AuditHead {
    fn default() -> Self {
        Self { seq: 0, hash: GENESIS.into(), cursors: Cursors::default(), pruned: None }
    }
}

/// What the log records about the job an event concerns, read from the job
/// when the event is audited (`None` once the job has been pruned).
#[derive(Debug, Clone, PartialEq)]
pub struct JobFacts {
    /// Its handler.
    pub name: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// The principal it runs as.
    pub run_as: Principal,
    /// Its result, read for a `job.completed` event only (the one entry
    /// that summarizes it).
    pub result: Option<Value>,
}

/// Outbox events not yet in the log, each outbox in its own order.
#[derive(Debug, Clone, Default)]
pub struct AuditSources {
    /// Job events with their job.
    pub jobs: Vec<(JobEvent, Option<JobFacts>)>,
    /// Schedule events.
    pub schedules: Vec<ScheduleEvent>,
    /// Access events with the job acting, if any.
    pub access: Vec<(AccessEvent, Option<JobFacts>)>,
}

impl AuditSources {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.schedules.is_empty() && self.access.is_empty()
    }
}

/// An entry ready to store: its bytes and hash, and the columns queries use.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// The entry as chained.
    pub stored: StoredEntry,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its event type.
    pub event: String,
    /// Its actor's user id.
    pub user_id: String,
    /// Its resource.
    pub resource: String,
    /// The job it concerns.
    pub job_id: Option<String>,
}

impl AuditRow {
    /// `entries` chained onto the log ending at `head`, numbered from
    /// `head.seq + 1`, with their query columns.
    pub fn chain(head: &Checkpoint, entries: Vec<AuditEntry>) -> Vec<AuditRow> {
        chain_into(head.seq, &head.hash, entries, |stored, entry| AuditRow {
            stored,
            at: entry.at,
            event: entry.event,
            user_id: entry.actor.user_id,
            resource: entry.resource,
            job_id: entry.job.map(|j| j.job_id),
        })
    }
}

/// An entry as verification reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledEntry {
    /// The entry as stored.
    pub stored: StoredEntry,
    /// The first stored query column (`at`, `event`, `user_id`,
    /// `resource`, `job_id`) that differs from what the bytes say; `None`
    /// if all agree (or the bytes do not parse: the hash check's to report).
    pub misfiled: Option<&'static str>,
}

impl AsRef<StoredEntry> for FiledEntry {
    fn as_ref(&self) -> &StoredEntry {
        &self.stored
    }
}

/// Entries chained onto a head, and the outbox positions they reach.
#[derive(Debug, Clone)]
pub struct AuditAppend {
    /// The head the entries chain onto; the append is refused if the log
    /// has moved past it.
    pub head: Checkpoint,
    /// The entries, numbered from `head.seq + 1`.
    pub rows: Vec<AuditRow>,
    /// The outbox positions once they are stored.
    pub cursors: Cursors,
}

/// Which entries to read, in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries after this sequence number (paging).
    pub after: u64,
    /// At most this many.
    pub limit: usize,
    /// Only this event type.
    pub event: Option<String>,
    /// Only entries about this job.
    pub job_id: Option<String>,
    /// Only this actor.
    pub user_id: Option<String>,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
}

impl AuditQuery {
    /// Every entry after `after`, `limit` at a time.
    pub fn page(after: u64, limit: usize) -> Self {
        Self { after, limit, ..Self::default() }
    }

    /// Whether a row matches the filters (paging aside).
    pub fn matches(&self, row: &AuditRow) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.event, &row.event)
            && is(&self.user_id, &row.user_id)
            && is(&self.resource, &row.resource)
            && self.job_id.as_deref().is_none_or(|w| row.job_id.as_deref() == Some(w))
            && self.since.is_none_or(|s| row.at >= s)
            && self.until.is_none_or(|u| row.at < u)
    }
}

/// The audit log's half of the storage trait.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// The end of the log and the outbox positions it holds.
    async fn audit_head(&self) -> Result<AuditHead, StoreError>;

    /// Up to `limit` events of each outbox after `cursors`.
    async fn audit_sources(&self, cursors: Cursors, limit: usize) -> Result<AuditSources, StoreError>;

    /// Appends entries and moves the cursors, all or nothing; refused with
    /// [`StoreError::AuditMoved`] unless the log still ends at `head`.
    async fn append_audit(&self, append: AuditAppend) -> Result<(), StoreError>;

    /// Stored entries matching `query`, by sequence number.
    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<StoredEntry>, StoreError>;

    /// Up to `limit` entries after sequence number `after`, each with the
    /// first query column stored beside it that its bytes do not bear out,
    /// if any: verification's check of the index `audit_entries` filters
    /// on. Each backend checks its own columns where they are.
    async fn audit_filed(&self, after: u64, limit: usize) -> Result<Vec<FiledEntry>, StoreError>;

    /// Removes the entries before the first one at or after `before`, at
    /// most `limit` of them, keeping the last one removed as the log's new
    /// start. Returns how many were removed.
    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}
