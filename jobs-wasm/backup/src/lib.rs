//! The `backup` built-in: the records the job's principal can read, as one
//! compressed archive artifact (the format is `backup-archive`'s).
//!
//! Input: `{"objects": ["contacts"], "compress": "gzip" | "none",
//! "includeMetadata": true}` — every key optional; `objects` defaults to
//! every object the principal can read.
//!
//! Each object's records are read page by page in id order, with every
//! field the principal can see (system fields included, so a restore
//! brings back the same ids, owners and timestamps), and written as JSON
//! Lines chunks through the compressor straight into the artifact: guest
//! memory holds one page and one chunk, however large the data. The
//! manifest, written last, says whose view the backup is and holds each
//! object's counts and checksum.

use std::collections::BTreeMap;
use std::io::Write;

use backup_archive::{ArchiveWriter, FORMAT, FORMAT_VERSION, Manifest, Metadata, Scope};
use flate2::Compression;
use flate2::write::GzEncoder;
use objectos_guest::artifacts::ArtifactWriter;
use objectos_guest::records::{self, Filter, ObjectInfo, Query};
use objectos_guest::{Context, Error, Handler, export_handler, progress};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Records fetched per host call (the engine's largest page).
const PAGE: u32 = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Input {
    objects: Option<Vec<String>>,
    #[serde(default)]
    compress: Compress,
    #[serde(default = "yes")]
    include_metadata: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Compress {
    #[default]
    Gzip,
    None,
}

impl Compress {
    fn name(self) -> &'static str {
        match self {
            Compress::Gzip => "gzip",
            Compress::None => "none",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    artifact_id: String,
    name: String,
    content_type: String,
    compression: &'static str,
    /// The archive's size.
    bytes: u64,
    sha256: String,
    /// Records backed up, in all and per object.
    records: u64,
    objects: BTreeMap<String, u64>,
    /// The records' JSON Lines before compression.
    raw_bytes: u64,
    /// `bytes / rawBytes`.
    size_ratio: f64,
}

/// The objects to back up, checked against those the principal can read.
fn chosen(ctx: &Context, asked: Option<Vec<String>>) -> Result<Vec<ObjectInfo>, Error> {
    let mut readable = records::objects()?;
    readable.sort_by(|a, b| a.name.cmp(&b.name));
    let Some(asked) = asked else { return Ok(readable) };
    if asked.is_empty() {
        return Err(Error::fatal("objects must name at least one object (leave it out for all)"));
    }
    let mut chosen: Vec<ObjectInfo> = Vec::new();
    for (index, name) in asked.iter().enumerate() {
        if chosen.iter().any(|o| &o.name == name) {
            return Err(Error::fatal(format!("objects[{index}]: `{name}` is named twice")));
        }
        let Some(info) = readable.iter().find(|o| &o.name == name) else {
            let names: Vec<&str> = readable.iter().map(|o| o.name.as_str()).collect();
            return Err(Error::fatal(format!(
                "objects[{index}]: unknown object `{name}` (objects {} can read: {})",
                ctx.principal.user_id,
                names.join(", ")
            )));
        };
        chosen.push(info.clone());
    }
    Ok(chosen)
}

/// Writes every chosen object's records and the manifest into `out`.
fn write_archive<W: Write>(
    out: W,
    mtime: u64,
    objects: &[ObjectInfo],
    manifest: Manifest,
) -> Result<(W, Manifest), Error> {
    let mut total = 0;
    for object in objects {
        total += records::count(&object.name, Filter::all())?;
    }
    let mut archive = ArchiveWriter::new(out, mtime);
    for object in objects {
        archive.begin_object(&object.name)?;
        let mut query = Query::new().sort_asc("id").limit(PAGE);
        loop {
            let page = records::find::<Box<RawValue>>(&object.name, &query)?;
            for record in &page.records {
                archive.record(record.get())?;
            }
            let done = archive.records();
            let percent = (done * 100).checked_div(total).unwrap_or(100).min(99) as u8;
            progress(percent, &format!("{}: {done} of {total} records written", object.name));
            match page.next_cursor {
                Some(cursor) => query = query.cursor(cursor),
                None => break,
            }
        }
    }
    Ok(archive.finish(manifest)?)
}

struct Backup;

impl Handler for Backup {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, Error> {
        let objects = chosen(ctx, input.objects)?;
        let started = objectos_guest::time::now();
        let (mtime, created_at) = (started.unix_seconds, started.rfc3339());
        let user = &ctx.principal.user_id;
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            engine: concat!("objectos-jobs ", env!("CARGO_PKG_VERSION")).into(),
            created_at: created_at.clone(),
            compression: input.compress.name().into(),
            scope: Scope {
                user_id: user.clone(),
                profiles: ctx.principal.profiles.clone(),
                note: format!(
                    "the records {user} could read when the backup ran, with the fields it could see: \
                     records outside its record filters and hidden fields are not in this backup"
                ),
            },
            objects: Vec::new(),
            records: 0,
            metadata: input.include_metadata.then(|| Metadata {
                job_id: ctx.job_id.clone(),
                schedule_id: ctx.schedule_id.clone(),
                visible_fields: objects.iter().map(|o| (o.name.clone(), o.fields.clone())).collect(),
            }),
        };
        // `2026-11-29T10:15:00.123Z` names the file `backup-20261129T101500Z`.
        let stamp: String = created_at[..19].chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let (name, content_type) = match input.compress {
            Compress::Gzip => (format!("backup-{stamp}Z.tar.gz"), "application/gzip"),
            Compress::None => (format!("backup-{stamp}Z.tar"), "application/x-tar"),
        };
        let artifact = ArtifactWriter::create(&name, content_type)?;
        let (artifact, manifest) = match input.compress {
            Compress::Gzip => {
                let gzip = GzEncoder::new(artifact, Compression::fast());
                let (gzip, manifest) = write_archive(gzip, mtime, &objects, manifest)?;
                (gzip.finish()?, manifest)
            }
            Compress::None => write_archive(artifact, mtime, &objects, manifest)?,
        };
        let info = artifact.finish()?;
        let raw_bytes: u64 = manifest.objects.iter().map(|o| o.bytes).sum();
        objectos_guest::info!(
            "backed up {} records of {} objects: {} bytes of JSON Lines in a {}-byte archive",
            manifest.records,
            manifest.objects.len(),
            raw_bytes,
            info.size
        );
        Ok(Output {
            artifact_id: info.id,
            name: info.name,
            content_type: info.content_type,
            compression: input.compress.name(),
            bytes: info.size,
            sha256: info.sha256,
            records: manifest.records,
            objects: manifest.objects.iter().map(|o| (o.name.clone(), o.records)).collect(),
            raw_bytes,
            size_ratio: if raw_bytes == 0 { 0.0 } else { info.size as f64 / raw_bytes as f64 },
        })
    }
}

export_handler!(Backup);
