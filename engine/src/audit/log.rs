//! Reading the log through the store: verification against the stored
//! head and any kept checkpoints, JSON Lines export, and retention.

use std::io::Write;

use chrono::{DateTime, Utc};

use super::{Checkpoint, StoredEntry, Verification, Verifier, check_pruned_start};
use crate::store::{AuditQuery, AuditStore, StoreError};

/// Entries read per page.
pub const PAGE: usize = 10_000;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The log's end as a checkpoint to keep elsewhere.
pub async fn checkpoint(store: &dyn AuditStore) -> Result<Checkpoint, StoreError> {
    Ok(store.audit_head().await?.end())
}

/// Recomputes the whole chain from the stored bytes, page by page: from the
/// genesis or the checkpoint retention kept (see [`check_pruned_start`]:
/// with `retention_on` false a removed start is itself a cut), to the head
/// the store records (so entries removed from the end are found), reaching
/// every checkpoint in `expect` with the hash it had, and checking that the
/// query columns stored beside each entry say what its bytes say.
pub async fn verify(
    store: &dyn AuditStore,
    expect: &[Checkpoint],
    retention_on: bool,
) -> Result<Verification, StoreError> {
    let head = store.audit_head().await?;
    if let Some(broken) =
        head.pruned.as_ref().and_then(|start| check_pruned_start(start, expect, retention_on))
    {
        return Ok(broken);
    }
    let start = head.pruned.as_ref().map_or(0, |p| p.seq);
    // Entries appended after the head was read are left for the next run.
    let page = |after: u64| PAGE.min(head.seq.saturating_sub(after) as usize);
    let mut verifier = Verifier::new(head.pruned.as_ref(), expect);
    let mut current =
        if start < head.seq { store.audit_filed(start, page(start)).await? } else { Vec::new() };
    // The next page is read while this one is checked.
    while let Some(last) = current.last().map(|e| e.stored.seq) {
        let next = async {
            if last < head.seq { store.audit_filed(last, page(last)).await } else { Ok(Vec::new()) }
        };
        let check = tokio::task::spawn_blocking(move || verifier.push_filed(&current).map(|()| verifier));
        let (next, checked) = tokio::join!(next, check);
        verifier = match checked.map_err(|e| StoreError::Backend(e.to_string()))? {
            Ok(verifier) => verifier,
            Err(broken) => return Ok(broken),
        };
        current = next?;
    }
    Ok(verifier.finish(Some(&head.end())))
}

/// Writes the entries `query` selects (its `limit` is the page size; 0
/// means [`PAGE`]) as JSON Lines, one `{"seq", "hash", "entry"}` object
/// each, the entry exactly as stored so the lines can be verified again.
/// Returns how many were written.
pub async fn export(
    store: &dyn AuditStore,
    query: AuditQuery,
    out: &mut impl Write,
) -> Result<u64, LogError> {
    scan(store, query, |stored| export_line(stored, out).map_err(LogError::from)).await
}

/// One exported line: `{"seq", "hash", "entry"}` with the entry's stored bytes.
pub fn export_line(stored: &StoredEntry, out: &mut impl Write) -> std::io::Result<()> {
    write!(out, "{{\"seq\":{},\"hash\":\"{}\",\"entry\":", stored.seq, stored.hash)?;
    out.write_all(&stored.bytes)?;
    out.write_all(b"}\n")
}

/// Calls `f` on every entry `query` selects, in order, reading them a page
/// (its `limit`; 0 means [`PAGE`]) at a time. Returns how many there were.
pub async fn scan<E: From<StoreError>>(
    store: &dyn AuditStore,
    mut query: AuditQuery,
    mut f: impl FnMut(&StoredEntry) -> Result<(), E>,
) -> Result<u64, E> {
    if query.limit == 0 {
        query.limit = PAGE;
    }
    let mut count = 0;
    loop {
        let page = store.audit_entries(query.clone()).await?;
        let Some(last) = page.last() else { return Ok(count) };
        query.after = last.seq;
        for stored in &page {
            f(stored)?;
        }
        count += page.len() as u64;
    }
}

/// Removes the entries older than `before` (a whole prefix), keeping a
/// checkpoint where it ends. Returns how many were removed.
pub async fn prune(store: &dyn AuditStore, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        match store.prune_audit(before, PAGE).await? {
            0 => return Ok(removed),
            n => removed += n,
        }
    }
}
