//! The built-in handlers, compiled from `jobs-wasm` by the build script and
//! embedded in the binary, with the defaults each is enqueued with.
//!
//! - `data-cleanup` deletes or soft-deletes records older than a retention
//!   period, as the job's principal (`records`, `records-write`).
//! - `report-generation` streams a report of an object's records — CSV,
//!   JSON, Markdown, HTML or an xlsx workbook — into an artifact
//!   (`records`, `artifacts`).
//! - `backup` writes every record the principal can read — or the objects
//!   named — into one compressed, checksummed archive artifact
//!   (`records`, `artifacts`).
//! - `restore` checks such an archive whole, then imports its records
//!   with their original system fields (`records`, `records-import`,
//!   `artifacts-read`).
//!
//! Their names are reserved: a node registers the binary's version of each
//! whenever the stored one differs, so an upgrade brings new built-ins.

use std::collections::HashMap;
use std::time::Duration;

use crate::queue::HandlerDefaults;

mod bytes {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// A built-in handler.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its handler name.
    pub name: &'static str,
    /// Its component.
    pub wasm: &'static [u8],
    /// What a job for it gets when it does not say.
    pub defaults: HandlerDefaults,
}

/// Enough fuel that the wall-clock timeout, not fuel, bounds a long run
/// over a large object (about an hour of guest CPU).
const LONG_RUN_FUEL: u64 = 2_000_000_000_000;

/// Every built-in.
pub const ALL: [Builtin; 4] = [
    Builtin {
        name: "data-cleanup",
        wasm: bytes::DATA_CLEANUP,
        // Deleting by id is idempotent, so a retry after a transient failure
        // just continues; memory holds one page of ids.
        defaults: HandlerDefaults {
            max_retries: Some(3),
            timeout: Some(Duration::from_secs(3600)),
            fuel: Some(LONG_RUN_FUEL),
            memory: Some(32 << 20),
        },
    },
    Builtin {
        name: "report-generation",
        wasm: bytes::REPORT_GENERATION,
        // A report is rewritten from the start on a retry, so fewer of them;
        // memory holds a page of records, the writer's buffers and the groups.
        defaults: HandlerDefaults {
            max_retries: Some(2),
            timeout: Some(Duration::from_secs(3600)),
            fuel: Some(LONG_RUN_FUEL),
            memory: Some(64 << 20),
        },
    },
    Builtin {
        name: "backup",
        wasm: bytes::BACKUP,
        // A backup is rewritten from the start on a retry; memory holds a
        // page of records, a chunk and the compressor's window.
        defaults: HandlerDefaults {
            max_retries: Some(2),
            timeout: Some(Duration::from_secs(3600)),
            fuel: Some(LONG_RUN_FUEL),
            memory: Some(64 << 20),
        },
    },
    Builtin {
        name: "restore",
        wasm: bytes::RESTORE,
        // Restoring a record twice changes nothing, so a retry continues
        // where a transient failure stopped it; memory holds a chunk.
        defaults: HandlerDefaults {
            max_retries: Some(3),
            timeout: Some(Duration::from_secs(3600)),
            fuel: Some(LONG_RUN_FUEL),
            memory: Some(64 << 20),
        },
    },
];

/// The built-ins' defaults by handler name.
pub fn defaults() -> HashMap<String, HandlerDefaults> {
    ALL.iter().map(|b| (b.name.to_string(), b.defaults)).collect()
}
