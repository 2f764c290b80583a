//! The embedded SQLite store: one database file in WAL mode for the jobs
//! and everything else, and a second beside it for the audit log, each
//! with its own writer thread (`db.rs`). The log's entries,
//! head and outbox cursors live together in its file, so an append and the
//! cursors it moves still commit as one; the queue's commits no longer wait
//! behind the log's.

mod artifacts;
mod audit;
mod db;
mod filter;
mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use self::audit::{AUDIT_MIGRATIONS, AUDIT_MOVED, AUDIT_PAGE_SIZE, AUDIT_SCHEMA, move_audit_log};
pub use self::db::Durability;
use self::db::{Connections, Database, Migrations};
use self::db::{backend, in_savepoint};
use self::records::emit;
use crate::jobs::{
    AttemptLog, Job, JobEvent, JobQuery, JobSort, JobStatus, Priority, StatusCounts, Transition,
};
use crate::principal::Principal;
use crate::sandbox::Progress;
use crate::schedule::{Schedule, ScheduleEvent, ScheduleEventType};
use crate::store::{
    Cancelled, ClaimRequest, Claimed, Finish, FinishKind, Fire, FireOutcome, HandlerRecord, HandlerStore,
    JobInsert, JobStore, Lease, Renewal, RescueRequest, Rescued, ScheduleChange, ScheduleStore, StoreError,
    apply_change, event_for, finish_events, fire_decision, fire_key, fired_event, handler_event,
    lost_attempt, schedule_change_event, skipped_event,
};

/// Schema migrations, applied in order on open; never edit a shipped one.
const MIGRATIONS: Migrations = &[
    (
        1,
        "CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        handler_sha256 TEXT NOT NULL,
        data TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        backoff TEXT NOT NULL,
        timeout_ms INTEGER NOT NULL,
        fuel INTEGER NOT NULL,
        memory INTEGER NOT NULL,
        run_as TEXT NOT NULL,
        run_at INTEGER NOT NULL,
        unique_key TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        failed_at INTEGER,
        cancelled_at INTEGER,
        error TEXT,
        result TEXT,
        progress TEXT,
        attempt_log TEXT NOT NULL DEFAULT '[]',
        lease_token INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, seq)
        WHERE status IN ('pending', 'scheduled', 'retrying');
    CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('pending', 'scheduled', 'running', 'retrying');
    CREATE INDEX jobs_status ON jobs (status, seq);
    CREATE INDEX jobs_name ON jobs (name, seq);
    CREATE TABLE job_logs (
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        lines TEXT NOT NULL,
        dropped_bytes INTEGER NOT NULL,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE job_events (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        job_id TEXT NOT NULL,
        job_name TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE handlers (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        versions TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE handler_versions (
        sha256 TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );",
    ),
    (
        2,
        // An `IN (...)` list of three or more builds a temporary b-tree each
        // time it is evaluated, and a partial index's condition is evaluated
        // on every update of a job: spelled as comparisons it costs nothing.
        "DROP INDEX jobs_ready;
    DROP INDEX jobs_unique_active;
    CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, seq) WHERE status = 'pending' OR status = 'scheduled' OR status = 'retrying';
    CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key) WHERE unique_key IS NOT NULL
        AND (status = 'pending' OR status = 'scheduled' OR status = 'running' OR status = 'retrying');",
    ),
    (
        3,
        "ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
    ALTER TABLE jobs ADD COLUMN fire_key TEXT;
    CREATE UNIQUE INDEX jobs_fire_key ON jobs (fire_key) WHERE fire_key IS NOT NULL;
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        paused INTEGER NOT NULL,
        next_run INTEGER,
        last_run INTEGER,
        last_job_id TEXT,
        revision INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX schedules_due ON schedules (next_run) WHERE next_run IS NOT NULL;
    CREATE TABLE schedule_events (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        schedule_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL
    );",
    ),
    (
        4,
        // System fields are columns (indexed where record filters and
        // cleanups look); every other field is in `body`.
        "CREATE TABLE records (
        seq INTEGER PRIMARY KEY,
        object TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE UNIQUE INDEX records_id ON records (object, id);
    CREATE INDEX records_owner ON records (object, owner, id);
    CREATE INDEX records_created ON records (object, created_at);
    CREATE INDEX records_updated ON records (object, updated_at);
    CREATE TABLE record_fields (
        object TEXT NOT NULL,
        field TEXT NOT NULL,
        PRIMARY KEY (object, field)
    ) WITHOUT ROWID;
    CREATE TABLE access_events (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        actor TEXT NOT NULL,
        job_id TEXT,
        resource TEXT NOT NULL,
        data TEXT NOT NULL
    );",
    ),
    (
        5,
        // The audit log, kept in this file until migration 7 moved it to
        // its own (where it starts from the same schema).
        AUDIT_SCHEMA,
    ),
    (
        6,
        "CREATE TABLE artifacts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        job_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        sealed_at INTEGER
    );
    CREATE TABLE artifact_chunks (
        artifact_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (artifact_id, idx)
    ) WITHOUT ROWID;",
    ),
    (
        AUDIT_MOVED,
        // The audit log moved to its own file (copied there first, by
        // `move_audit_log`).
        "DROP TABLE audit_log; DROP TABLE audit_head;",
    ),
    (
        8,
        // Owners: a job's (the user it runs as, and the one who enqueued
        // it), a schedule's (its creator) and an artifact's (its job's).
        // Rows from before were all enqueued by the user they run as, and a
        // schedule was created by the user its jobs run as unless that user
        // was impersonated, which the stored row does not tell. Unique keys
        // become unique per user jobs run as.
        "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN enqueued_by TEXT NOT NULL DEFAULT '';
    UPDATE jobs SET owner = json_extract(run_as, '$.userId'), enqueued_by = json_extract(run_as, '$.userId');
    DROP INDEX jobs_unique_active;
    CREATE UNIQUE INDEX jobs_unique_active ON jobs (owner, unique_key) WHERE unique_key IS NOT NULL
        AND (status = 'pending' OR status = 'scheduled' OR status = 'running' OR status = 'retrying');
    CREATE INDEX jobs_owner ON jobs (owner, seq);
    CREATE INDEX jobs_enqueued_by ON jobs (enqueued_by, seq) WHERE enqueued_by <> owner;
    ALTER TABLE schedules ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    UPDATE schedules SET owner = coalesce(json_extract(spec, '$.runAs.userId'), '');
    CREATE INDEX schedules_owner ON schedules (owner, id);
    ALTER TABLE artifacts ADD COLUMN enqueued_by TEXT NOT NULL DEFAULT '';
    UPDATE artifacts SET enqueued_by = owner;
    CREATE INDEX artifacts_owner ON artifacts (owner, id);
    CREATE INDEX artifacts_enqueued_by ON artifacts (enqueued_by, id) WHERE enqueued_by <> owner;",
    ),
];

/// Rows one user owns (`?` bound to the user): the form the partial
/// `*_enqueued_by` indexes answer.
const OWNED: &str = "(owner = ?1 OR (enqueued_by = ?1 AND enqueued_by <> owner))";

const JOB_COLUMNS: &str = "id, name, handler_sha256, data, priority, status, attempts, max_retries, backoff, \
    timeout_ms, fuel, memory, run_as, run_at, unique_key, created_at, started_at, completed_at, failed_at, \
    cancelled_at, error, result, progress, attempt_log, schedule_id, enqueued_by";

/// How many columns [`JOB_COLUMNS`] names.
const JOB_COLUMN_COUNT: usize = 26;

/// Waiting jobs, exactly as the condition of the `jobs_ready` index (so a
/// query using it can use the index).
const WAITING: &str = "(status = 'pending' OR status = 'scheduled' OR status = 'retrying')";
/// Jobs holding their unique key, exactly as in `jobs_unique_active`.
const ACTIVE: &str =
    "(status = 'pending' OR status = 'scheduled' OR status = 'running' OR status = 'retrying')";

/// Jobs, events, handlers, schedules, records and artifacts in one SQLite
/// database file, the audit log in a second one beside it.
pub struct SqliteStore {
    db: Database,
    audit: Database,
    path: PathBuf,
}

/// The audit log's file for the database at `path`: `objectos.db` keeps
/// its log in `objectos.audit.db`.
pub fn audit_path(path: &Path) -> PathBuf {
    path.with_extension("audit.db")
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its audit log
    /// (see [`audit_path`]) and migrates them.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut audit = Connections::open(
            &audit_path(&path),
            durability,
            Some(AUDIT_PAGE_SIZE),
            AUDIT_MIGRATIONS,
            |_, _| Ok(()),
        )?;
        let db = Connections::open(&path, durability, None, MIGRATIONS, |version, tx| match version {
            AUDIT_MOVED => move_audit_log(tx, &mut audit.writer),
            _ => Ok(()),
        })?;
        Ok(Self { db: db.start("sqlite")?, audit: audit.start("audit")?, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the database's next write transaction (see
    /// [`Database::write`]).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.write(f).await
    }

    /// Runs `f` on the database's reader.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.read(f).await
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("engine types serialize")
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// Parses the JSON text of column `i` where SQLite holds it, without
/// copying it into a `String` first.
fn parse_column<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    parse(row.get_ref(i)?.as_str()?)
}

/// [`parse_column`] for a column that may be `NULL`.
fn parse_optional<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    row.get_ref(i)?.as_str_or_null()?.map(parse).transpose()
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(5)?;
    Ok(Job {
        id: row.get(0)?,
        name: row.get(1)?,
        handler_sha256: row.get(2)?,
        data: parse_column(row, 3)?,
        priority: Priority::from_rank(row.get(4)?).unwrap_or_default(),
        status: status
            .parse()
            .map_err(|e: String| rusqlite::Error::InvalidColumnType(5, e, rusqlite::types::Type::Text))?,
        attempts: row.get(6)?,
        max_retries: row.get(7)?,
        backoff: parse_column(row, 8)?,
        timeout: row.get::<_, i64>(9)? as u64,
        fuel: row.get::<_, i64>(10)? as u64,
        memory: row.get::<_, i64>(11)? as u64,
        run_as: parse_column(row, 12)?,
        run_at: time(row.get(13)?),
        unique_key: row.get(14)?,
        created_at: time(row.get(15)?),
        started_at: row.get::<_, Option<i64>>(16)?.map(time),
        completed_at: row.get::<_, Option<i64>>(17)?.map(time),
        failed_at: row.get::<_, Option<i64>>(18)?.map(time),
        cancelled_at: row.get::<_, Option<i64>>(19)?.map(time),
        error: row.get(20)?,
        result: parse_optional(row, 21)?,
        progress: parse_optional(row, 22)?,
        attempt_log: parse_column(row, 23)?,
        schedule_id: row.get(24)?,
        enqueued_by: row.get(25)?,
    })
}

fn get_job(conn: &Connection, id: &str) -> Result<Option<Job>, StoreError> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], job_from_row).optional())
        .map_err(backend)
}

fn insert_event(conn: &Connection, event: &JobEvent) -> Result<u64, StoreError> {
    insert_event_with_data(conn, event, &json(&event.data))
}

/// [`insert_event`] with the event's data already as JSON text (`event.data`
/// is not read): a claim's events all carry the same.
fn insert_event_with_data(conn: &Connection, event: &JobEvent, data: &str) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO job_events (at, type, job_id, job_name, attempt, from_status, to_status, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            millis(event.at),
            event.event.as_str(),
            event.job_id,
            event.job_name,
            event.attempt,
            event.from.map(|s| s.as_str()),
            event.to.as_str(),
            data,
        ])
    })
    .map_err(backend)?;
    Ok(conn.last_insert_rowid() as u64)
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<JobEvent> {
    let kind: String = row.get(2)?;
    let from: Option<String> = row.get(6)?;
    let to: String = row.get(7)?;
    let bad = |i, e: String| rusqlite::Error::InvalidColumnType(i, e, rusqlite::types::Type::Text);
    Ok(JobEvent {
        seq: row.get::<_, i64>(0)? as u64,
        at: time(row.get(1)?),
        event: crate::jobs::EventType::parse(&kind).ok_or_else(|| bad(2, kind.clone()))?,
        job_id: row.get(3)?,
        job_name: row.get(4)?,
        attempt: row.get(5)?,
        from: from.map(|f| f.parse()).transpose().map_err(|e| bad(6, e))?,
        to: to.parse().map_err(|e| bad(7, e))?,
        data: parse_column(row, 8)?,
    })
}

fn handler_from_row(row: &Row<'_>) -> rusqlite::Result<HandlerRecord> {
    Ok(HandlerRecord {
        name: row.get(0)?,
        sha256: row.get(1)?,
        versions: parse_column(row, 2)?,
        created_at: time(row.get(3)?),
        updated_at: time(row.get(4)?),
    })
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Stores a new job with its first event (`job.enqueued` or `job.scheduled`).
fn insert_job(
    conn: &Connection,
    job: &Job,
    event: &JobEvent,
    fire_key: Option<&str>,
) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}, fire_key, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '[]', ?17, ?18, ?19, ?20)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                job.id,
                job.name,
                job.handler_sha256,
                json(&job.data),
                job.priority.rank(),
                job.status.as_str(),
                job.attempts,
                job.max_retries,
                json(&job.backoff),
                job.timeout as i64,
                job.fuel as i64,
                job.memory as i64,
                json(&job.run_as),
                millis(job.run_at),
                job.unique_key,
                millis(job.created_at),
                job.schedule_id,
                job.enqueued_by,
                fire_key,
                job.run_as.user_id,
            ])
        });
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) && job.unique_key.is_some() => {
            let key = job.unique_key.clone().unwrap_or_default();
            let holder: String = conn
                .query_row(
                    &format!(
                        "SELECT id FROM jobs WHERE owner = ?1 AND unique_key IS NOT NULL AND unique_key = ?2 \
                         AND {ACTIVE}"
                    ),
                    [&job.run_as.user_id, &key],
                    |r| r.get(0),
                )
                .unwrap_or_default();
            return Err(StoreError::UniqueConflict { key, job_id: holder });
        }
        Err(error) => return Err(backend(error)),
    }
    insert_event(conn, event)?;
    Ok(())
}

fn claim(conn: &Connection, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    let exclude = vec!["?"; request.exclude.len()].join(", ");
    let not_excluded =
        if request.exclude.is_empty() { String::new() } else { format!("AND name NOT IN ({exclude})") };
    // Without statistics the planner prefers the status index and sorts
    // every waiting job; the partial index is already in claim order. The
    // `+` keeps `run_at <= ?` from being a range the planner re-plans (and
    // re-prepares the statement for) each time a new time is bound.
    // The candidates are read whole, so the update needs no `RETURNING`
    // (which builds and drops a temporary table on every run).
    let sql = format!(
        "SELECT {JOB_COLUMNS}, seq FROM jobs INDEXED BY jobs_ready
         WHERE {WAITING} AND +run_at <= ? {not_excluded}
         ORDER BY priority DESC, run_at, seq LIMIT ?"
    );
    let mut values: Vec<rusqlite::types::Value> = vec![millis(request.now).into()];
    values.extend(request.exclude.iter().map(|n| n.clone().into()));
    values.push((request.limit as i64).into());
    let candidates: Vec<(Job, i64)> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(values), |r| Ok((job_from_row(r)?, r.get(JOB_COLUMN_COUNT)?)))?
                .collect()
        })
        .map_err(backend)?;
    let started_at = millis(request.now);
    let data = json(&serde_json::json!({"owner": request.owner}));
    let mut claimed = Vec::with_capacity(candidates.len());
    for (mut job, seq) in candidates {
        let event = JobEvent {
            seq: 0,
            at: request.now,
            event: Transition::Claim.event(),
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            attempt: job.attempts + 1,
            from: Some(job.status),
            to: Transition::Claim.to(),
            data: serde_json::Value::Null, // written as `data`, the same for the whole claim
        };
        // The started event's sequence number is unique and increasing: it
        // doubles as the lease's fencing token.
        let token = insert_event_with_data(conn, &event, &data)?;
        conn.prepare_cached(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?2, lease_owner = ?3,
             lease_expires_at = ?4, lease_token = ?5 WHERE seq = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![seq, started_at, request.owner, millis(request.lease_until), token as i64])
        })
        .map_err(backend)?;
        job.status = Transition::Claim.to();
        job.attempts += 1;
        job.started_at = Some(time(started_at));
        claimed.push(Claimed { job, lease_token: token });
    }
    Ok(claimed)
}

/// Ends one attempt. A stale lease is detected before anything is written,
/// so a refused finish leaves no trace and needs no savepoint of its own.
fn finish_one(conn: &Connection, finish: &Finish, now: DateTime<Utc>) -> Result<JobStatus, StoreError> {
    if finish.kind == FinishKind::Release {
        return release_one(conn, finish, now);
    }
    let (status, run_at, result, completed, failed, cancelled) = match &finish.kind {
        FinishKind::Complete { result } => {
            (JobStatus::Completed, None, Some(json(result)), Some(millis(now)), None, None)
        }
        FinishKind::Retry { run_at } => (JobStatus::Retrying, Some(millis(*run_at)), None, None, None, None),
        FinishKind::Fail => (JobStatus::Failed, None, None, None, Some(millis(now)), None),
        FinishKind::Cancel => (JobStatus::Cancelled, None, None, None, None, Some(millis(now))),
        FinishKind::Release => unreachable!("handled above"),
    };
    // The attempt is appended as text: the log is always a compact JSON
    // array this store wrote (`[]`, or built here or by `json_insert`), and
    // `json_insert` converted the whole log to SQLite's JSON form and back,
    // a fifth of a finish on the writer thread.
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET status = ?3, run_at = coalesce(?4, run_at), result = ?5, completed_at = ?6,
             failed_at = ?7, cancelled_at = ?8, error = ?9, progress = coalesce(?10, progress),
             attempt_log = CASE attempt_log WHEN '[]' THEN '[' || ?11 || ']'
                 ELSE substr(attempt_log, 1, length(attempt_log) - 1) || ',' || ?11 || ']' END,
             lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0
             WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                finish.job_id,
                finish.lease_token as i64,
                status.as_str(),
                run_at,
                result,
                completed,
                failed,
                cancelled,
                finish.attempt.error,
                finish.progress.as_ref().map(json),
                json(&finish.attempt),
            ])
        })
        .map_err(backend)?;
    if changed == 0 {
        return Err(lease_refused(conn, &finish.job_id)?);
    }
    for event in finish_events(finish, JobStatus::Running, now) {
        insert_event(conn, &event)?;
    }
    if let Some(log) = &finish.log {
        conn.prepare_cached("INSERT OR REPLACE INTO job_logs VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut stmt| {
                stmt.execute(params![finish.job_id, log.attempt, json(&log.lines), log.dropped_bytes as i64])
            })
            .map_err(backend)?;
    }
    Ok(status)
}

/// Why a change under a lease matched no job.
fn lease_refused(conn: &Connection, id: &str) -> Result<StoreError, StoreError> {
    let exists: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)", [id], |r| r.get(0))
        .map_err(backend)?;
    Ok(if exists { StoreError::LeaseLost(id.to_string()) } else { StoreError::NotFound(id.to_string()) })
}

/// Gives a running job back uncharged: waiting again with its old `run_at`
/// (at the front of its priority), its attempt not counted or recorded (the
/// `job.released` event is).
fn release_one(conn: &Connection, finish: &Finish, now: DateTime<Utc>) -> Result<JobStatus, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'pending', attempts = attempts - 1,
             progress = coalesce(?3, progress), lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0
             WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![finish.job_id, finish.lease_token as i64, finish.progress.as_ref().map(json)])
        })
        .map_err(backend)?;
    if changed == 0 {
        return Err(lease_refused(conn, &finish.job_id)?);
    }
    for event in finish_events(finish, JobStatus::Running, now) {
        insert_event(conn, &event)?;
    }
    Ok(JobStatus::Pending)
}

/// Takes back one running job whose lease lapsed.
fn rescue_one(
    conn: &Connection,
    seq: i64,
    owner: Option<String>,
    now: DateTime<Utc>,
) -> Result<Rescued, StoreError> {
    let job: Job = conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?1"))
        .and_then(|mut stmt| stmt.query_row([seq], job_from_row))
        .map_err(backend)?;
    let attempt = lost_attempt(&job, now);
    // A rescued job keeps its `run_at` (it was due when claimed), so it
    // goes back to the front of its priority rather than behind the queue.
    let (transition, failed_at) = if job.attempts < job.max_attempts() {
        (Transition::Rescue, None)
    } else {
        (Transition::Fail, Some(millis(now)))
    };
    let status = transition.to();
    conn.prepare_cached(
        "UPDATE jobs SET status = ?2, failed_at = ?3, error = ?4,
         attempt_log = json_insert(attempt_log, '$[#]', json(?5)),
         lease_owner = NULL, lease_expires_at = NULL, cancel_requested = 0
         WHERE seq = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![seq, status.as_str(), failed_at, attempt.error, json(&attempt)])
    })
    .map_err(backend)?;
    let data = serde_json::json!({"outcome": attempt.outcome, "error": attempt.error, "owner": owner});
    insert_event(conn, &event_for(&job, transition, Some(JobStatus::Running), now, data))?;
    Ok(Rescued { job_id: job.id, status })
}

fn order_by(sort: JobSort) -> &'static str {
    match sort {
        JobSort::CreatedAtDesc => "seq DESC",
        JobSort::CreatedAtAsc => "seq ASC",
        JobSort::PriorityDesc => "priority DESC, seq ASC",
        JobSort::RunAtAsc => "run_at ASC, seq ASC",
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue(&self, jobs: Vec<JobInsert>, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                for JobInsert { job } in &jobs {
                    let event = event_for(
                        job,
                        Transition::enqueue(job),
                        None,
                        now,
                        serde_json::json!({"priority": job.priority}),
                    );
                    insert_job(conn, job, &event, None)?;
                }
                Ok(())
            })?;
            Ok(jobs.into_iter().map(|insert| insert.job).collect())
        })
        .await
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        self.write(move |conn| claim(conn, &request)).await
    }

    async fn finish(
        &self,
        finishes: Arc<[Finish]>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<JobStatus, StoreError>>, StoreError> {
        self.write(move |conn| Ok(finishes.iter().map(|finish| finish_one(conn, finish, now)).collect()))
            .await
    }

    async fn cancel(&self, id: &str, now: DateTime<Utc>) -> Result<Cancelled, StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let job = get_job(conn, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if job.status.is_final() {
                return Ok(Cancelled::AlreadyFinal(job));
            }
            if job.status == JobStatus::Running {
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1", [&id]).map_err(backend)?;
                return Ok(Cancelled::Requested(job));
            }
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', cancelled_at = ?2 WHERE id = ?1",
                params![id, millis(now)],
            )
            .map_err(backend)?;
            let cancelled = get_job(conn, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
            insert_event(
                conn,
                &event_for(&cancelled, Transition::Cancel, Some(job.status), now, serde_json::json!({})),
            )?;
            Ok(Cancelled::Now(cancelled))
        })
        .await
    }

    async fn set_progress(&self, id: &str, lease_token: u64, progress: Progress) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE jobs SET progress = ?3 WHERE id = ?1 AND lease_token = ?2 AND status = 'running'",
                    params![id, lease_token as i64, json(&progress)],
                )
                .map_err(backend)?;
            if changed == 0 { Err(StoreError::LeaseLost(id)) } else { Ok(()) }
        })
        .await
    }

    async fn heartbeat(&self, leases: Vec<Lease>, until: DateTime<Utc>) -> Result<Renewal, StoreError> {
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_expires_at = max(lease_expires_at, ?3)
                     WHERE id = ?1 AND lease_token = ?2 AND status = 'running'
                     RETURNING cancel_requested",
                )
                .map_err(backend)?;
            let mut renewal = Renewal::default();
            for lease in leases {
                let cancel_requested: Option<bool> = stmt
                    .query_row(params![lease.job_id, lease.token as i64, millis(until)], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                match cancel_requested {
                    None => renewal.lost.push(lease.job_id),
                    Some(true) => renewal.cancel_requested.push(lease.job_id),
                    Some(false) => {}
                }
            }
            Ok(renewal)
        })
        .await
    }

    async fn rescue(&self, request: RescueRequest) -> Result<Vec<Rescued>, StoreError> {
        self.write(move |conn| {
            let lapsed: Vec<(i64, Option<String>)> = conn
                .prepare_cached(
                    "SELECT seq, lease_owner FROM jobs WHERE status = 'running'
                     AND (lease_expires_at < ?1 OR lease_owner = ?2) ORDER BY seq LIMIT ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![millis(request.now), request.owner, request.limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .map_err(backend)?;
            lapsed.into_iter().map(|(seq, owner)| rescue_one(conn, seq, owner, request.now)).collect()
        })
        .await
    }

    async fn prune(&self, cutoffs: &[(JobStatus, DateTime<Utc>)], limit: usize) -> Result<u64, StoreError> {
        let cutoffs = cutoffs.to_vec();
        self.write(move |conn| {
            let mut deleted = 0u64;
            for (status, before) in cutoffs {
                let left = limit as i64 - deleted as i64;
                if left <= 0 {
                    break;
                }
                let ids: Vec<String> = conn
                    .prepare_cached(
                        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE status = ?1
                         AND coalesce(completed_at, failed_at, cancelled_at) < ?2 ORDER BY seq LIMIT ?3)
                         RETURNING id",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_map(params![status.as_str(), millis(before), left], |r| r.get(0))?
                            .collect()
                    })
                    .map_err(backend)?;
                let mut logs =
                    conn.prepare_cached("DELETE FROM job_logs WHERE job_id = ?1").map_err(backend)?;
                for id in &ids {
                    logs.execute([id]).map_err(backend)?;
                }
                deleted += ids.len() as u64;
            }
            Ok(deleted)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| get_job(conn, &id)).await
    }

    async fn list(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let query = query.clone();
        self.read(move |conn| {
            let mut clauses = Vec::new();
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(owner) = &query.owner {
                // First, so that `?1` in `OWNED` is its parameter.
                clauses.push(OWNED.to_string());
                values.push(owner.clone().into());
            }
            if let Some(name) = &query.name {
                clauses.push("name = ?".to_string());
                values.push(name.clone().into());
            }
            if !query.status.is_empty() {
                clauses.push(format!("status IN ({})", vec!["?"; query.status.len()].join(", ")));
                values.extend(query.status.iter().map(|s| s.as_str().to_string().into()));
            }
            if let Some(priority) = query.priority {
                clauses.push("priority = ?".to_string());
                values.push(priority.rank().into());
            }
            let filter =
                if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
            values.push((query.page_size() as i64).into());
            values.push((query.skip as i64).into());
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs {filter} ORDER BY {} LIMIT ? OFFSET ?",
                order_by(query.sort)
            );
            conn.prepare_cached(&sql)
                .and_then(|mut stmt| stmt.query_map(params_from_iter(values), job_from_row)?.collect())
                .map_err(backend)
        })
        .await
    }

    async fn counts(&self) -> Result<StatusCounts, StoreError> {
        self.read(|conn| {
            let mut counts = StatusCounts::default();
            let mut stmt =
                conn.prepare_cached("SELECT status, count(*) FROM jobs GROUP BY status").map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
                .map_err(backend)?;
            for row in rows {
                let (status, n) = row.map_err(backend)?;
                counts.total += n;
                counts.by_status.insert(status, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn logs(&self, id: &str) -> Result<Vec<AttemptLog>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT attempt, lines, dropped_bytes FROM job_logs WHERE job_id = ?1 ORDER BY attempt",
            )
            .and_then(|mut stmt| {
                stmt.query_map([&id], |r| {
                    Ok(AttemptLog {
                        attempt: r.get(0)?,
                        lines: parse_column(r, 1)?,
                        dropped_bytes: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect()
            })
            .map_err(backend)
        })
        .await
    }

    async fn next_run_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            // The ready index is ordered by priority first: the earliest
            // run_at is the least of each priority's first entry.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT min(run_at) FROM jobs INDEXED BY jobs_ready WHERE {WAITING} AND priority = ?1"
                ))
                .map_err(backend)?;
            let mut earliest: Option<i64> = None;
            for priority in Priority::ALL {
                let first: Option<i64> = stmt.query_row([priority.rank()], |r| r.get(0)).map_err(backend)?;
                earliest = earliest.into_iter().chain(first).min();
            }
            Ok(earliest.map(time))
        })
        .await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT seq, at, type, job_id, job_name, attempt, from_status, to_status, data FROM job_events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .and_then(|mut stmt| stmt.query_map(params![after as i64, limit as i64], event_from_row)?.collect())
            .map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl HandlerStore for SqliteStore {
    async fn put_handler(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<HandlerRecord, StoreError> {
        let (name, sha256, bytes, by) = (name.to_string(), sha256.to_string(), bytes.to_vec(), by.clone());
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO handler_versions VALUES (?1, ?2, ?3, ?4)",
                params![sha256, bytes, bytes.len() as i64, millis(now)],
            )
            .map_err(backend)?;
            let existing = conn
                .query_row(
                    "SELECT name, sha256, versions, created_at, updated_at FROM handlers WHERE name = ?1",
                    [&name],
                    handler_from_row,
                )
                .optional()
                .map_err(backend)?;
            let previous = existing.as_ref().map(|h| h.sha256.as_str());
            emit(conn, handler_event(&name, previous, Some(&sha256), &by, now))?;
            let record = match existing {
                None => HandlerRecord {
                    name: name.clone(),
                    sha256: sha256.clone(),
                    versions: vec![sha256.clone()],
                    created_at: now,
                    updated_at: now,
                },
                Some(mut record) => {
                    if record.sha256 != sha256 {
                        record.sha256 = sha256.clone();
                        record.updated_at = now;
                    }
                    if !record.versions.contains(&sha256) {
                        record.versions.push(sha256.clone());
                    }
                    record
                }
            };
            conn.execute(
                "INSERT OR REPLACE INTO handlers VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.name,
                    record.sha256,
                    json(&record.versions),
                    millis(record.created_at),
                    millis(record.updated_at)
                ],
            )
            .map_err(backend)?;
            Ok(record)
        })
        .await
    }

    async fn handler(&self, name: &str) -> Result<Option<HandlerRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT name, sha256, versions, created_at, updated_at FROM handlers WHERE name = ?1",
                [&name],
                handler_from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT name, sha256, versions, created_at, updated_at FROM handlers ORDER BY name",
            )
            .and_then(|mut stmt| stmt.query_map([], handler_from_row)?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn handler_bytes(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha256 = sha256.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT bytes FROM handler_versions WHERE sha256 = ?1", [&sha256], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn delete_handler(
        &self,
        name: &str,
        by: &Principal,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (name, by) = (name.to_string(), by.clone());
        self.write(move |conn| {
            let removed: Option<String> = conn
                .query_row("DELETE FROM handlers WHERE name = ?1 RETURNING sha256", [&name], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let Some(removed) = removed else { return Ok(false) };
            emit(conn, handler_event(&name, Some(&removed), None, &by, now))?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn change_schedule(&self, change: ScheduleChange) -> Result<Schedule, StoreError> {
        self.write(move |conn| {
            let current = get_schedule(conn, &change.schedule.id)?;
            let stored = apply_change(current.as_ref(), &change)?;
            insert_schedule_event(conn, &schedule_change_event(&change, &stored))?;
            if change.event == ScheduleEventType::Deleted {
                conn.prepare_cached("DELETE FROM schedules WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute([&stored.id]))
                    .map_err(backend)?;
            } else {
                put_schedule(conn, &stored)?;
            }
            Ok(stored)
        })
        .await
    }

    async fn fire(&self, fires: Vec<Fire>) -> Result<Vec<Result<FireOutcome, StoreError>>, StoreError> {
        self.write(move |conn| {
            fires.into_iter().map(|fire| fire_one(conn, fire)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map(|outcomes| outcomes.into_iter().map(Ok).collect())
    }

    async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| get_schedule(conn, &id)).await
    }

    async fn schedules(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError> {
        let (owner, after) = (owner.map(str::to_string), after.to_string());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE (?1 IS NULL OR owner = ?1) AND id > ?2 \
                 ORDER BY id LIMIT ?3"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(params![owner, after, limit as i64], schedule_from_row)?.collect()
            })
            .map_err(backend)
        })
        .await
    }

    async fn last_schedule_event(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT coalesce(max(seq), 0) FROM schedule_events", [], |r| r.get::<_, i64>(0))
                .map(|seq| seq as u64)
                .map_err(backend)
        })
        .await
    }

    async fn schedule_events(&self, after: u64, limit: usize) -> Result<Vec<ScheduleEvent>, StoreError> {
        self.read(move |conn| schedule_events_after(conn, after, limit)).await
    }
}

/// Up to `limit` schedule events after sequence number `after`.
fn schedule_events_after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<ScheduleEvent>, StoreError> {
    conn.prepare_cached(
        "SELECT seq, at, type, schedule_id, actor, data FROM schedule_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )
    .and_then(|mut stmt| stmt.query_map(params![after as i64, limit as i64], schedule_event_from_row)?.collect())
    .map_err(backend)
}

const SCHEDULE_COLUMNS: &str =
    "id, spec, paused, next_run, last_run, last_job_id, revision, created_at, updated_at, owner";

fn schedule_from_row(row: &Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: row.get(0)?,
        spec: parse_column(row, 1)?,
        paused: row.get(2)?,
        next_run: row.get::<_, Option<i64>>(3)?.map(time),
        last_run: row.get::<_, Option<i64>>(4)?.map(time),
        last_job_id: row.get(5)?,
        revision: row.get::<_, i64>(6)? as u64,
        created_at: time(row.get(7)?),
        updated_at: time(row.get(8)?),
        owner: row.get(9)?,
    })
}

fn get_schedule(conn: &Connection, id: &str) -> Result<Option<Schedule>, StoreError> {
    conn.prepare_cached(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], schedule_from_row).optional())
        .map_err(backend)
}

fn put_schedule(conn: &Connection, schedule: &Schedule) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut stmt| {
        stmt.execute(params![
            schedule.id,
            json(&schedule.spec),
            schedule.paused,
            schedule.next_run.map(millis),
            schedule.last_run.map(millis),
            schedule.last_job_id,
            schedule.revision as i64,
            millis(schedule.created_at),
            millis(schedule.updated_at),
            schedule.owner,
        ])
    })
    .map(drop)
    .map_err(backend)
}

fn insert_schedule_event(conn: &Connection, event: &ScheduleEvent) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO schedule_events (at, type, schedule_id, actor, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            millis(event.at),
            event.event.as_str(),
            event.schedule_id,
            json(&event.actor),
            json(&event.data)
        ])
    })
    .map(drop)
    .map_err(backend)
}

fn schedule_event_from_row(row: &Row<'_>) -> rusqlite::Result<ScheduleEvent> {
    let kind: String = row.get(2)?;
    Ok(ScheduleEvent {
        seq: row.get::<_, i64>(0)? as u64,
        at: time(row.get(1)?),
        event: ScheduleEventType::parse(&kind).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(2, kind.clone(), rusqlite::types::Type::Text)
        })?,
        schedule_id: row.get(3)?,
        actor: parse_column(row, 4)?,
        data: parse_column(row, 5)?,
    })
}

/// The parts of a schedule a fire reads and writes, kept out of the JSON
/// spec so a fire neither parses nor rewrites it.
struct FireState {
    revision: u64,
    paused: bool,
    next_run: Option<DateTime<Utc>>,
    last_job_id: Option<String>,
    overlap_skip: bool,
}

fn fire_one(conn: &Connection, fire: Fire) -> Result<FireOutcome, StoreError> {
    let state = conn
        .prepare_cached(
            "SELECT revision, paused, next_run, last_job_id, json_extract(spec, '$.overlap') = 'skip'
             FROM schedules WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([&fire.schedule_id], |r| {
                Ok(FireState {
                    revision: r.get::<_, i64>(0)? as u64,
                    paused: r.get(1)?,
                    next_run: r.get::<_, Option<i64>>(2)?.map(time),
                    last_job_id: r.get(3)?,
                    overlap_skip: r.get::<_, Option<bool>>(4)?.unwrap_or(false),
                })
            })
            .optional()
        })
        .map_err(backend)?;
    let Some(state) =
        state.filter(|s| s.revision == fire.revision && !s.paused && s.next_run == Some(fire.due))
    else {
        return Ok(FireOutcome::Stale);
    };
    let key = fire_key(&fire.schedule_id, fire.due);
    let job = fire_decision(&fire, state.last_job_id.as_deref(), || {
        let overlapping = state.overlap_skip
            && match state.last_job_id.as_deref() {
                Some(id) => get_status(conn, id)?.is_some_and(|status| !status.is_final()),
                None => false,
            };
        let earlier: Option<String> = conn
            .prepare_cached("SELECT id FROM jobs WHERE fire_key = ?1")
            .and_then(|mut stmt| stmt.query_row([&key], |r| r.get(0)).optional())
            .map_err(backend)?;
        Ok((overlapping, earlier))
    })?;
    let (last_run, last_job_id) = match &job {
        Ok(job) => (Some(fire.now), Some(job.id.clone())),
        Err(_) => (None, None),
    };
    let outcome = match job {
        Err(reason) => {
            insert_schedule_event(conn, &skipped_event(&fire, &reason))?;
            FireOutcome::Skipped(reason)
        }
        Ok(job) => {
            insert_job(conn, &job, &fired_event(&job, &fire), Some(&key))?;
            FireOutcome::Fired(Box::new(job))
        }
    };
    conn.prepare_cached(
        "UPDATE schedules SET next_run = ?2, revision = revision + 1,
         last_run = coalesce(?3, last_run), last_job_id = coalesce(?4, last_job_id) WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![fire.schedule_id, fire.next_run.map(millis), last_run.map(millis), last_job_id])
    })
    .map_err(backend)?;
    Ok(outcome)
}

fn get_status(conn: &Connection, id: &str) -> Result<Option<JobStatus>, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM jobs WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    status.map(|s| s.parse().map_err(backend)).transpose()
}
