//! The audit log in SQLite, in a file of its own beside the database (see
//! [`super::audit_path`]): `audit_log` holds each entry's exact
//! bytes and hash (and the columns queries use, written from the same entry),
//! `audit_head` the end of the chain, the outbox cursors and the retained
//! checkpoint. The outboxes it reads are in the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, params, params_from_iter};

use super::db::Migrations;
use super::records::event_from_row as access_event_from_row;
use super::{SqliteStore, backend, event_from_row, parse, parse_optional, schedule_events_after};
use crate::audit::{Checkpoint, StoredEntry};
use crate::principal::Principal;
use crate::store::StoreError;
use crate::store::audit::{
    AuditAppend, AuditHead, AuditQuery, AuditSources, AuditStore, Cursors, FiledEntry, JobFacts,
};
use crate::store::records::timestamp;

/// The audit log's tables as first shipped (the database's migration 5
/// and the log file's 1): an entry is its exact bytes and hash, the
/// columns queries use generated from those bytes. The log file's
/// migration 2 stores those columns instead.
pub(super) const AUDIT_SCHEMA: &str = "CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        bytes TEXT NOT NULL,
        hash TEXT NOT NULL,
        at TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.at')) VIRTUAL,
        event TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.event')) VIRTUAL,
        user_id TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.actor.userId')) VIRTUAL,
        resource TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.resource')) VIRTUAL,
        job_id TEXT GENERATED ALWAYS AS (json_extract(bytes, '$.job.jobId')) VIRTUAL
    );
    CREATE INDEX audit_at ON audit_log (at);
    CREATE INDEX audit_event ON audit_log (event, seq);
    CREATE INDEX audit_user ON audit_log (user_id, seq);
    CREATE INDEX audit_job ON audit_log (job_id, seq) WHERE job_id IS NOT NULL;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        jobs INTEGER NOT NULL,
        schedules INTEGER NOT NULL,
        access INTEGER NOT NULL,
        pruned_seq INTEGER,
        pruned_hash TEXT
    );
    INSERT INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0, 0, NULL, NULL);";

/// The audit log file's migrations; never edit a shipped one.
pub(super) const AUDIT_MIGRATIONS: Migrations = &[
    (1, AUDIT_SCHEMA),
    (
        2,
        // The query columns are stored, written from the same entry its
        // bytes are encoded from (`AuditRow::chain`): generated, each
        // insert parsed the entry's JSON again for the four indexes,
        // about 5 % of the CPU a job costs with auditing on.
        "CREATE TABLE audit_entries (
            seq INTEGER PRIMARY KEY,
            bytes TEXT NOT NULL,
            hash TEXT NOT NULL,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            user_id TEXT NOT NULL,
            resource TEXT NOT NULL,
            job_id TEXT
        );
        INSERT INTO audit_entries SELECT seq, bytes, hash, at, event, user_id, resource, job_id FROM audit_log;
        DROP TABLE audit_log;
        ALTER TABLE audit_entries RENAME TO audit_log;
        CREATE INDEX audit_at ON audit_log (at);
        CREATE INDEX audit_event ON audit_log (event, seq);
        CREATE INDEX audit_user ON audit_log (user_id, seq);
        CREATE INDEX audit_job ON audit_log (job_id, seq) WHERE job_id IS NOT NULL;",
    ),
];

/// The page size of a new audit log file. The log only grows, by whole
/// batches of entries: with SQLite's default 4 KiB pages its writer, the
/// kernel writing the WAL and the checkpointer copying it spent about a
/// tenth more of a job's CPU with auditing on (alternating queue benchmark
/// runs; 8 KiB was between, 32 and 64 KiB no better than 16).
pub(super) const AUDIT_PAGE_SIZE: u32 = 16384;

/// Stores one entry: its sequence number, bytes and hash, and the columns
/// queries use.
const INSERT_ENTRY: &str = "INSERT INTO audit_log (seq, bytes, hash, at, event, user_id, resource, job_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// The database's migration that removes the audit log it held before the
/// log had a file of its own.
pub(super) const AUDIT_MOVED: i64 = 7;

/// Copies the log a database held (`db`, in its migration's transaction)
/// into the log's own file, unless that file already holds one (a crash
/// after the copy committed and before the database's migration did).
/// The copy commits first, so the entries are always in one file or both.
pub(super) fn move_audit_log(db: &Transaction<'_>, audit: &mut Connection) -> Result<(), StoreError> {
    let tx = audit.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
    if head(&tx)? != AuditHead::default() {
        return Ok(());
    }
    let mut moved = 0u64;
    {
        let mut insert = tx.prepare(INSERT_ENTRY).map_err(backend)?;
        // The database's log has the first schema: its query columns are
        // generated from the bytes, read as any other.
        let mut read = db
            .prepare(
                "SELECT seq, bytes, hash, at, event, user_id, resource, job_id FROM audit_log ORDER BY seq",
            )
            .map_err(backend)?;
        let mut rows = read.query([]).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let columns: Vec<rusqlite::types::Value> =
                (0..8).map(|i| row.get(i)).collect::<Result<_, _>>().map_err(backend)?;
            insert.execute(params_from_iter(columns)).map_err(backend)?;
            moved += 1;
        }
    }
    let old = head(db)?;
    tx.execute(
        "UPDATE audit_head SET seq = ?1, hash = ?2, jobs = ?3, schedules = ?4, access = ?5,
         pruned_seq = ?6, pruned_hash = ?7",
        params![
            old.seq as i64,
            old.hash,
            old.cursors.jobs as i64,
            old.cursors.schedules as i64,
            old.cursors.access as i64,
            old.pruned.as_ref().map(|p| p.seq as i64),
            old.pruned.map(|p| p.hash),
        ],
    )
    .map_err(backend)?;
    tx.commit().map_err(backend)?;
    if moved > 0 {
        tracing::info!(entries = moved, "moved the audit log out of the database into its own file");
    }
    Ok(())
}

fn head(conn: &Connection) -> Result<AuditHead, StoreError> {
    conn.prepare_cached("SELECT seq, hash, jobs, schedules, access, pruned_seq, pruned_hash FROM audit_head")
        .and_then(|mut stmt| {
            stmt.query_row([], |r| {
                let pruned = match (r.get::<_, Option<i64>>(5)?, r.get::<_, Option<String>>(6)?) {
                    (Some(seq), Some(hash)) => Some(Checkpoint { seq: seq as u64, hash }),
                    _ => None,
                };
                Ok(AuditHead {
                    seq: r.get::<_, i64>(0)? as u64,
                    hash: r.get(1)?,
                    cursors: Cursors {
                        jobs: r.get::<_, i64>(2)? as u64,
                        schedules: r.get::<_, i64>(3)? as u64,
                        access: r.get::<_, i64>(4)? as u64,
                    },
                    pruned,
                })
            })
        })
        .map_err(backend)
}

/// The job columns [`facts`] reads, from a join on `jobs j`; the result
/// only for a completion (`e`, the job event), the one entry to summarize it.
const FACTS: &str = "j.name, j.attempts, j.run_as, CASE WHEN e.type = 'job.completed' THEN j.result END";
/// [`FACTS`] for an access event, which never summarizes a result.
const ACCESS_FACTS: &str = "j.name, j.attempts, j.run_as, NULL";

/// The rows of an outbox read `sql` (`?1` the cursor, `?2` the limit), each
/// event read by `event` with its job's [`FACTS`] from column `facts_at`.
fn with_facts<T>(
    conn: &Connection,
    sql: &str,
    (after, limit): (u64, usize),
    event: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    facts_at: usize,
) -> Result<Vec<(T, Option<JobFacts>)>, StoreError> {
    let mut last_run_as = None;
    conn.prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_map(params![after as i64, limit as i64], |r| {
                Ok((event(r)?, facts(r, facts_at, &mut last_run_as)?))
            })?
            .collect()
        })
        .map_err(backend)
}

/// The job's [`FACTS`] from column `at` on (`None` if the job is gone).
/// `last_run_as` keeps the last principal parsed with its text: a batch's
/// jobs mostly run as the same few, and parsing each event's again showed
/// in the profile of reading a batch.
fn facts(
    row: &rusqlite::Row<'_>,
    at: usize,
    last_run_as: &mut Option<(String, Principal)>,
) -> rusqlite::Result<Option<JobFacts>> {
    let Some(name) = row.get::<_, Option<String>>(at)? else { return Ok(None) };
    let run_as = row.get_ref(at + 2)?.as_str()?;
    let run_as = match last_run_as {
        Some((text, principal)) if text == run_as => principal.clone(),
        _ => last_run_as.insert((run_as.to_string(), parse(run_as)?)).1.clone(),
    };
    Ok(Some(JobFacts { name, attempts: row.get(at + 1)?, run_as, result: parse_optional(row, at + 3)? }))
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        seq: row.get::<_, i64>(0)? as u64,
        bytes: row.get::<_, String>(1)?.into_bytes(),
        hash: row.get(2)?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        self.audit.read(head).await
    }

    async fn audit_sources(&self, cursors: Cursors, limit: usize) -> Result<AuditSources, StoreError> {
        self.read(move |conn| {
            let jobs = with_facts(
                conn,
                &format!(
                    "SELECT e.seq, e.at, e.type, e.job_id, e.job_name, e.attempt, e.from_status, e.to_status,
                     e.data, {FACTS} FROM job_events e LEFT JOIN jobs j ON j.id = e.job_id
                     WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
                ),
                (cursors.jobs, limit),
                event_from_row,
                9,
            )?;
            let schedules = schedule_events_after(conn, cursors.schedules, limit)?;
            let access = with_facts(
                conn,
                &format!(
                    "SELECT a.seq, a.at, a.type, a.actor, a.job_id, a.resource, a.data, {ACCESS_FACTS}
                     FROM access_events a LEFT JOIN jobs j ON j.id = a.job_id
                     WHERE a.seq > ?1 ORDER BY a.seq LIMIT ?2"
                ),
                (cursors.access, limit),
                access_event_from_row,
                7,
            )?;
            Ok(AuditSources { jobs, schedules, access })
        })
        .await
    }

    async fn append_audit(&self, append: AuditAppend) -> Result<(), StoreError> {
        self.audit
            .write(move |conn| {
                let current = head(conn)?;
                if current.seq != append.head.seq || current.hash != append.head.hash {
                    return Err(StoreError::AuditMoved);
                }
                let mut insert = conn.prepare_cached(INSERT_ENTRY).map_err(backend)?;
                let mut last = (current.seq, current.hash);
                for row in append.rows {
                    let bytes = String::from_utf8(row.stored.bytes).map_err(backend)?;
                    insert
                        .execute(params![
                            row.stored.seq as i64,
                            bytes,
                            row.stored.hash,
                            timestamp(row.at),
                            row.event,
                            row.user_id,
                            row.resource,
                            row.job_id
                        ])
                        .map_err(backend)?;
                    last = (row.stored.seq, row.stored.hash);
                }
                conn.prepare_cached(
                    "UPDATE audit_head SET seq = ?1, hash = ?2, jobs = ?3, schedules = ?4, access = ?5",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        last.0 as i64,
                        last.1,
                        append.cursors.jobs as i64,
                        append.cursors.schedules as i64,
                        append.cursors.access as i64
                    ])
                })
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<StoredEntry>, StoreError> {
        self.audit
            .read(move |conn| {
                let mut sql = String::from("SELECT seq, bytes, hash FROM audit_log WHERE seq > ?");
                let mut values: Vec<rusqlite::types::Value> = vec![(query.after as i64).into()];
                for (column, value) in [
                    ("event", &query.event),
                    ("user_id", &query.user_id),
                    ("resource", &query.resource),
                    ("job_id", &query.job_id),
                ] {
                    if let Some(value) = value {
                        sql.push_str(&format!(" AND {column} = ?"));
                        values.push(value.clone().into());
                    }
                }
                for (op, at) in [(">=", query.since), ("<", query.until)] {
                    if let Some(at) = at {
                        sql.push_str(&format!(" AND at {op} ?"));
                        values.push(timestamp(at).into());
                    }
                }
                sql.push_str(" ORDER BY seq LIMIT ?");
                values.push((query.limit as i64).into());
                conn.prepare_cached(&sql)
                    .and_then(|mut stmt| stmt.query_map(params_from_iter(values), entry)?.collect())
                    .map_err(backend)
            })
            .await
    }

    async fn audit_filed(&self, after: u64, limit: usize) -> Result<Vec<FiledEntry>, StoreError> {
        self.audit
            .read(move |conn| {
                // The columns are compared where they are, by SQLite's own
                // JSON reader: only the name of a column that disagrees
                // crosses over.
                conn.prepare_cached(
                    "SELECT seq, bytes, hash, CASE
                         WHEN NOT json_valid(bytes) THEN NULL
                         WHEN at IS NOT json_extract(bytes, '$.at') THEN 'at'
                         WHEN event IS NOT json_extract(bytes, '$.event') THEN 'event'
                         WHEN user_id IS NOT json_extract(bytes, '$.actor.userId') THEN 'user_id'
                         WHEN resource IS NOT json_extract(bytes, '$.resource') THEN 'resource'
                         WHEN job_id IS NOT json_extract(bytes, '$.job.jobId') THEN 'job_id'
                     END
                     FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![after as i64, limit as i64], |r| {
                        let misfiled = match r.get_ref(3)?.as_str_or_null()? {
                            None => None,
                            Some("at") => Some("at"),
                            Some("event") => Some("event"),
                            Some("user_id") => Some("user_id"),
                            Some("resource") => Some("resource"),
                            Some(_) => Some("job_id"),
                        };
                        Ok(FiledEntry { stored: entry(r)?, misfiled })
                    })?
                    .collect()
                })
                .map_err(backend)
            })
            .await
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.audit
            .write(move |conn| {
                // The prefix ends before the first entry that is not old enough.
                let old: Vec<StoredEntry> = conn
                    .prepare_cached("SELECT seq, bytes, hash, at FROM audit_log ORDER BY seq LIMIT ?1")
                    .and_then(|mut stmt| {
                        let rows =
                            stmt.query_map([limit as i64], |r| Ok((entry(r)?, r.get::<_, String>(3)?)))?;
                        let mut old = Vec::new();
                        for row in rows {
                            let (stored, at) = row?;
                            if at >= timestamp(before) {
                                break;
                            }
                            old.push(stored);
                        }
                        Ok(old)
                    })
                    .map_err(backend)?;
                let Some(last) = old.last() else { return Ok(0) };
                conn.execute("DELETE FROM audit_log WHERE seq <= ?1", [last.seq as i64]).map_err(backend)?;
                conn.execute(
                    "UPDATE audit_head SET pruned_seq = ?1, pruned_hash = ?2",
                    params![last.seq as i64, last.hash],
                )
                .map_err(backend)?;
                Ok(old.len() as u64)
            })
            .await
    }
}
