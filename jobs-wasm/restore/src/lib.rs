//! The `restore` built-in: puts a backup's records back, with their
//! original ids, owners and timestamps, through `records-import`.
//!
//! Input: `{"artifact": "<artifact id>", "objects": ["contacts"],
//! "mode": "insert-missing" | "replace", "dryRun": false}` — `objects`
//! defaults to every object in the backup, `mode` to `insert-missing`.
//!
//! A first pass reads the whole archive and checks it (every entry, each
//! object's record count, byte count and sha256 against the manifest, each
//! line a JSON object with a string `id`, the compressed stream's checksum
//! and the artifact's stored digest) and that the principal may import
//! into every object chosen; a corrupt or truncated backup, or a refusal,
//! fails the job before anything changes. The second pass imports chunk by
//! chunk (1,000 records a call): `insert-missing` keeps records that exist,
//! `replace` overwrites them. Each import is all or nothing and audited; a
//! run stopped part way can be run again, as restoring a record twice
//! changes nothing. A dry run stops after the checks and reports what a
//! run would do, judged by the records the principal can see.

use std::collections::BTreeMap;
use std::io;

use backup_archive::{ArchiveError, Chunk, Manifest, scan};
use objectos_guest::artifacts::ArtifactReader;
use objectos_guest::records::{self, Filter, ImportReport, OnConflict, Query, Record};
use objectos_guest::{Context, Error, Handler, HostError, export_handler, progress};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Input {
    artifact: String,
    objects: Option<Vec<String>>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Records whose id exists are kept as they are.
    #[default]
    InsertMissing,
    /// Records whose id exists are replaced by the backup's.
    Replace,
}

impl Mode {
    fn on_conflict(self) -> OnConflict {
        match self {
            Mode::InsertMissing => OnConflict::Skip,
            Mode::Replace => OnConflict::Replace,
        }
    }
}

/// What was done to one object (in a dry run, what would be).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectReport {
    /// The object's records in the backup.
    records: u64,
    inserted: u64,
    replaced: u64,
    skipped: u64,
}

impl ObjectReport {
    fn add(&mut self, import: ImportReport) {
        self.inserted += import.inserted;
        self.replaced += import.replaced;
        self.skipped += import.skipped;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    /// The backup's objects and records, all checked.
    objects: usize,
    records: u64,
    /// The archive's sha256, as stored and as read.
    sha256: String,
    /// When the backup was made.
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    artifact_id: String,
    mode: Mode,
    dry_run: bool,
    verified: Verified,
    objects: BTreeMap<String, ObjectReport>,
    inserted: u64,
    replaced: u64,
    skipped: u64,
}

/// Only this (a string `id`) is required of a record line; the rest is
/// checked by the engine when it is imported.
#[derive(Deserialize)]
struct Identified {
    id: String,
}

/// A host call's failure inside a scan, kept whole so that `unavailable`
/// stays retryable when it comes out.
fn host(error: HostError) -> ArchiveError {
    ArchiveError::Io(io::Error::other(error))
}

/// The first pass: the whole archive checked, nothing changed.
fn verify(artifact: &str) -> Result<(Manifest, Verified), Error> {
    let info = ArtifactReader::info(artifact)?;
    let scanned = scan(ArtifactReader::open(artifact)?, |chunk| {
        for (number, line) in chunk.records() {
            serde_json::from_slice::<Identified>(line).map_err(|e| {
                ArchiveError::Corrupt(format!(
                    "`{}` line {number} is not a record with an id: {e}",
                    chunk.path
                ))
            })?;
        }
        let percent = (chunk.consumed * 100).checked_div(info.size).unwrap_or(0).min(100) as u8;
        progress(percent / 3, &format!("checking the backup: {} of {} bytes", chunk.consumed, info.size));
        Ok(())
    })
    .map_err(|e| refused(artifact, e))?;
    if scanned.sha256 != info.sha256 || scanned.bytes != info.size {
        return Err(Error::fatal(format!(
            "artifact `{artifact}` reads as {} bytes with sha256 {}, but was stored as {} bytes with sha256 {}: \
             the stored copy is damaged; nothing was restored",
            scanned.bytes, scanned.sha256, info.size, info.sha256
        )));
    }
    let manifest = scanned.manifest;
    let verified = Verified {
        objects: manifest.objects.len(),
        records: manifest.records,
        sha256: scanned.sha256,
        created_at: manifest.created_at.clone(),
    };
    Ok((manifest, verified))
}

/// Why the archive was refused, or the read's own failure.
fn refused(artifact: &str, error: ArchiveError) -> Error {
    match error {
        ArchiveError::Corrupt(what) => Error::fatal(format!(
            "artifact `{artifact}` is not an intact backup: {what}; nothing was restored"
        )),
        ArchiveError::Io(error) => Error::from(error),
    }
}

/// The objects to restore, by archive directory, each checked to be in the
/// backup and importable by the principal (an empty import is refused
/// exactly as a real one would be, and changes nothing).
fn chosen(
    manifest: &Manifest,
    asked: Option<Vec<String>>,
    mode: Mode,
) -> Result<BTreeMap<String, String>, Error> {
    let names: Vec<String> = match asked {
        None => manifest.objects.iter().map(|o| o.name.clone()).collect(),
        Some(asked) => {
            for (index, name) in asked.iter().enumerate() {
                if manifest.object(name).is_none() {
                    let held: Vec<&str> = manifest.objects.iter().map(|o| o.name.as_str()).collect();
                    return Err(Error::fatal(format!(
                        "objects[{index}]: `{name}` is not in this backup (it holds: {})",
                        held.join(", ")
                    )));
                }
            }
            asked
        }
    };
    let mut chosen = BTreeMap::new();
    for name in names {
        records::import::<&RawValue>(&name, &[], mode.on_conflict()).map_err(|e| match e {
            HostError::Unavailable(_) => Error::from(e),
            e => Error::fatal(format!("cannot restore `{name}`: {e}; nothing was restored")),
        })?;
        let summary = manifest.object(&name).expect("checked above");
        chosen.insert(summary.path.clone(), name);
    }
    Ok(chosen)
}

/// What importing `chunk` would do: its records whose ids the principal
/// can see already exist.
fn predict(object: &str, chunk: &Chunk<'_>, mode: Mode) -> Result<ImportReport, HostError> {
    let ids: Vec<String> = chunk
        .records()
        .map(|(_, line)| serde_json::from_slice::<Identified>(line).map(|r| r.id))
        .collect::<Result<_, _>>()
        .map_err(|e| HostError::Invalid(e.to_string()))?;
    let mut existing = 0;
    for batch in ids.chunks(1000) {
        let query = Query::new().filter(Filter::one_of("id", batch)).fields(["id"]).limit(1000);
        existing += records::find::<Record>(object, &query)?.records.len() as u64;
    }
    let new = ids.len() as u64 - existing;
    Ok(match mode {
        Mode::InsertMissing => ImportReport { inserted: new, replaced: 0, skipped: existing },
        Mode::Replace => ImportReport { inserted: new, replaced: existing, skipped: 0 },
    })
}

/// Imports one chunk as it is.
fn import(object: &str, chunk: &Chunk<'_>, mode: Mode) -> Result<ImportReport, HostError> {
    let lines: Vec<&RawValue> = chunk
        .records()
        .map(|(_, line)| serde_json::from_slice(line))
        .collect::<Result<_, _>>()
        .map_err(|e| HostError::Invalid(e.to_string()))?;
    records::import(object, &lines, mode.on_conflict())
}

struct Restore;

impl Handler for Restore {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, Error> {
        let (manifest, verified) = verify(&input.artifact)?;
        let chosen = chosen(&manifest, input.objects, input.mode)?;
        let mut reports: BTreeMap<String, ObjectReport> = BTreeMap::new();
        for object in chosen.values() {
            let records = manifest.object(object).map_or(0, |o| o.records);
            reports.insert(object.clone(), ObjectReport { records, ..ObjectReport::default() });
        }
        let total: u64 = reports.values().map(|r| r.records).sum();
        let mut done = 0;
        let (artifact, mode, dry_run) = (&input.artifact, input.mode, input.dry_run);
        scan(ArtifactReader::open(artifact)?, |chunk| {
            let Some(object) = chosen.get(chunk.dir) else { return Ok(()) };
            let report = if dry_run { predict(object, chunk, mode) } else { import(object, chunk, mode) };
            let report = report.map_err(|e| {
                objectos_guest::error!("restoring `{object}` stopped at `{}`: {e}", chunk.path);
                host(e)
            })?;
            reports.get_mut(object).expect("chosen objects have reports").add(report);
            done += report.inserted + report.replaced + report.skipped;
            let percent = 33 + (done * 66).checked_div(total).unwrap_or(66).min(66) as u8;
            let verb = if dry_run { "checked" } else { "restored" };
            progress(percent, &format!("{object}: {done} of {total} records {verb}"));
            Ok(())
        })
        .map_err(|e| match e {
            // The artifact cannot change between the passes; should its
            // store fail it anyway, say what may already be restored.
            ArchiveError::Corrupt(what) => Error::fatal(format!(
                "artifact `{artifact}` changed while it was restored: {what}; records restored before it stay"
            )),
            ArchiveError::Io(error) => Error::from(error),
        })?;
        for (object, report) in &reports {
            objectos_guest::info!(
                "{object}: {} records, {} inserted, {} replaced, {} skipped{}",
                report.records,
                report.inserted,
                report.replaced,
                report.skipped,
                if dry_run { " (dry run: nothing changed)" } else { "" }
            );
        }
        Ok(Output {
            artifact_id: input.artifact,
            mode,
            dry_run,
            verified,
            inserted: reports.values().map(|r| r.inserted).sum(),
            replaced: reports.values().map(|r| r.replaced).sum(),
            skipped: reports.values().map(|r| r.skipped).sum(),
            objects: reports,
        })
    }
}

export_handler!(Restore);
