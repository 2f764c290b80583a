//! One SQLite database file in WAL mode, as the SQLite store uses it.
//!
//! Writes go through one writer thread that commits whatever has queued up
//! in a single transaction (group commit). A request that is refused (a
//! stale lease, an unknown job) finds out before it writes anything, so it
//! leaves no trace and the others commit; a request that can be refused
//! halfway (a batch enqueue meeting a taken unique key) runs in its own
//! savepoint. A database error rolls the whole group back: the request that
//! failed gets its error, the others a retryable one (their writes were
//! sound), and nothing partial is ever committed. Replies are sent
//! only after the commit, so a caller never sees a write that could still be
//! lost. Reads use a separate connection; WAL lets them run beside
//! the writer, and other processes may open the same file.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::{Connection, ErrorCode, Transaction, params};
use tokio::sync::oneshot;

use crate::store::StoreError;

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsynced: nothing acknowledged is lost, even on power loss.
    #[default]
    Full,
    /// Commits survive a crash of the process (kill -9) but the last ones may
    /// be lost on power loss. Faster on slow disks.
    Normal,
}

/// Schema migrations, applied in order on open; never edit a shipped one.
pub(super) type Migrations = &'static [(i64, &'static str)];

type Delivery = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One request run inside the group's transaction: whether it failed in the
/// database (which rolls the group back), and how to send its reply.
type Work = Box<dyn FnOnce(&Connection) -> (bool, Delivery) + Send>;

/// A database file's writer thread, reader and checkpointer.
pub(super) struct Database {
    writer: mpsc::Sender<Work>,
    reader: Arc<Mutex<Connection>>,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: mpsc::Sender<()>,
}

/// A database file's connections, migrated, before its threads start.
pub(super) struct Connections {
    /// The writer's connection.
    pub writer: Connection,
    reader: Connection,
    checkpointer: Connection,
}

impl Connections {
    /// Opens (creating if needed, with pages of `page_size` bytes or
    /// SQLite's default) the database at `path` and migrates it;
    /// `before(version, tx)` runs inside each migration's transaction before
    /// its SQL (for a step SQL cannot say). An existing file keeps the page
    /// size it was created with.
    pub fn open(
        path: &Path,
        durability: Durability,
        page_size: Option<u32>,
        migrations: Migrations,
        mut before: impl FnMut(i64, &Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
        }
        // Two processes opening one new database at once (a server starting
        // and a local command beside it) can find it locked in ways SQLite
        // reports at once instead of waiting out the busy timeout (while the
        // other switches it to WAL or migrates it): try again for a while.
        let started = Instant::now();
        loop {
            let mut connect = || -> Result<Self, StoreError> {
                let mut writer = open_connection(path, durability, page_size)?;
                migrate(&mut writer, migrations, &mut before)?;
                writer.execute_batch("PRAGMA wal_autocheckpoint = 0").map_err(backend)?;
                Ok(Self {
                    writer,
                    reader: open_connection(path, durability, None)?,
                    checkpointer: open_connection(path, durability, None)?,
                })
            };
            match connect() {
                Err(StoreError::Backend(message))
                    if message.contains("database is locked")
                        && started.elapsed() < Duration::from_secs(10) =>
                {
                    tracing::debug!(%message, "the database is busy opening; trying again");
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Starts the writer and checkpointer threads, named after `name`.
    pub fn start(self, name: &str) -> Result<Database, StoreError> {
        let (writer, work) = mpsc::channel::<Work>();
        let connection = self.writer;
        std::thread::Builder::new()
            .name(format!("objectos-{name}-writer"))
            .spawn(move || write_loop(connection, work))
            .map_err(backend)?;
        let (checkpointer, stop) = mpsc::channel();
        let connection = self.checkpointer;
        std::thread::Builder::new()
            .name(format!("objectos-{name}-checkpoint"))
            .spawn(move || checkpoint_loop(connection, stop))
            .map_err(backend)?;
        Ok(Database { writer, reader: Arc::new(Mutex::new(self.reader)), _checkpointer: checkpointer })
    }
}

impl Database {
    /// Runs `f` inside the writer's next transaction and returns its result
    /// once that transaction has committed. `f` must either succeed, or fail
    /// before writing anything, or fail with a database error; a request
    /// that can be refused after it has written uses [`in_savepoint`].
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let result = f(conn);
            let failed = matches!(result, Err(StoreError::Backend(_)));
            if let Err(StoreError::Backend(error)) = &result {
                tracing::error!(%error, "a write failed in the database; rolling back its group");
            }
            // The write that failed hears its own error, the others the
            // group's (a rolled-back group is theirs to make again).
            let deliver: Delivery = Box::new(move |committed| {
                let _ = reply.send(if failed { result } else { committed.and(result) });
            });
            (failed, deliver)
        });
        self.writer.send(work).map_err(|_| backend("the database writer has stopped"))?;
        // The work was dropped unrun: its transaction could not begin (the
        // database stayed busy), so nothing was written.
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the write could not begin (see the engine log)".into()))?
    }

    /// Runs `f` on the reader's connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(backend)?
    }
}

/// A database failure as a [`StoreError`]: retryable when SQLite was busy
/// (another process held the lock past the busy timeout).
pub(super) fn backend(error: impl Failure) -> StoreError {
    if error.busy() {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Backend(error.to_string())
    }
}

/// What [`backend`] turns into a store error.
pub(super) trait Failure: std::fmt::Display {
    /// Whether the database was busy, so trying again may succeed.
    fn busy(&self) -> bool {
        false
    }
}

impl Failure for rusqlite::Error {
    fn busy(&self) -> bool {
        matches!(self.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
    }
}

impl Failure for String {}
impl Failure for &str {}
impl Failure for tokio::task::JoinError {}
impl Failure for std::io::Error {}
impl Failure for std::string::FromUtf8Error {}

fn open_connection(
    path: &Path,
    durability: Durability,
    page_size: Option<u32>,
) -> Result<Connection, StoreError> {
    // Each connection is used by one thread at a time (the writer thread, or
    // readers behind a mutex), so SQLite's own per-call locking is not needed.
    let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let flags = flags - rusqlite::OpenFlags::SQLITE_OPEN_FULL_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| backend(format!("{}: {e}", path.display())))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // The page size comes before anything that writes: a new file is
    // created by switching it to WAL. It changes nothing in an existing one.
    if let Some(size) = page_size {
        conn.execute_batch(&format!("PRAGMA page_size = {size}")).map_err(backend)?;
    }
    // The busy timeout comes next: switching a new database to WAL takes a
    // lock that another process opening it at the same moment may hold.
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;"
    ))
    .map_err(backend)?;
    // Without the query planner stability guarantee, a statement whose
    // plan may depend on a bound value (every `LIMIT ?`: SQLite reads the
    // value to cost the plan) is parsed and planned again each time it is
    // run with new bindings — a tenth of a claim's time on the writer.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(backend)?;
    super::filter::register_functions(&conn).map_err(backend)?;
    // Room for every statement the store prepares (the default 16 is fewer,
    // and an evicted statement is parsed again on its next use).
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(
    conn: &mut Connection,
    migrations: Migrations,
    before: &mut impl FnMut(i64, &Transaction<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(backend)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .map_err(backend)?;
    // Each migration not yet recorded, in order (a database only ever holds
    // a prefix; a test that takes one back out sees just that one run again).
    let applied: std::collections::HashSet<i64> = tx
        .prepare("SELECT version FROM schema_migrations")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .map_err(backend)?;
    for (version, sql) in migrations.iter().filter(|(v, _)| !applied.contains(v)) {
        before(*version, &tx)?;
        tx.execute_batch(sql).map_err(|e| backend(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2)",
            params![version, Utc::now().timestamp_millis()],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies the WAL into the database file beside the writer. Left to the
/// writer (SQLite's automatic checkpoint), every thousandth page written
/// stalled a commit — and every caller waiting on it — while the pages were
/// copied and synced. A passive checkpoint never blocks the writer.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed; retrying");
        }
    }
}

/// Runs `f` in a savepoint of the writer's transaction, undoing what it
/// wrote if it fails.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    control(conn, "SAVEPOINT request")?;
    let result = f(conn);
    if result.is_err() {
        control(conn, "ROLLBACK TO request")?;
    }
    control(conn, "RELEASE request")?;
    result
}

/// Runs a transaction-control statement, prepared once per connection
/// (parsing it anew each time was a visible part of every write).
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut stmt| stmt.execute([])).map(drop).map_err(backend)
}

/// Commits whatever work has queued up, in one transaction at a time.
fn write_loop(conn: Connection, work: mpsc::Receiver<Work>) {
    const MAX_BATCH: usize = 1024;
    while let Ok(first) = work.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match work.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Err(error) = control(&conn, "BEGIN IMMEDIATE") {
            // Dropping the work unrun drops its reply channel: each caller
            // gets an error and nothing was written.
            tracing::error!(%error, "cannot begin a write transaction");
            continue;
        }
        let mut failed = false;
        let mut deliveries = Vec::with_capacity(batch.len());
        for item in batch {
            let (item_failed, deliver) = item(&conn);
            failed |= item_failed;
            deliveries.push(deliver);
        }
        let committed = if failed {
            // The others' writes were sound: theirs may be made again.
            Err(StoreError::Unavailable(
                "another write's database error rolled back this one (see the engine log)".into(),
            ))
        } else {
            control(&conn, "COMMIT")
        };
        if committed.is_err() {
            let _ = control(&conn, "ROLLBACK");
        }
        for deliver in deliveries {
            deliver(committed.clone());
        }
    }
}
