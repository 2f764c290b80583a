//! The `data-cleanup` built-in: deletes, or soft-deletes, records older
//! than a retention period, in batches, as the job's principal.
//!
//! Input: `{"objects": ["contacts"], "retentionDays": 30, "softDelete": false,
//! "dateField": "created_at", "dryRun": false, "batchSize": 500}`.
//!
//! The cutoff is the job's enqueue time minus `retentionDays`, so every
//! retry of one job removes the same records. Records are found page by
//! page (ids only, keyset-ordered, so deleting a page never disturbs the
//! next) and each page is deleted — or marked with `deleted_at` — by id
//! through `records-write`, where record-level security decides: a record
//! the principal can see but may not delete is counted as skipped, never
//! removed. A soft delete leaves records already marked alone. Every change
//! reaches the audit log with the job's id.

use std::collections::BTreeMap;

use objectos_guest::records::{self, Filter, Query, Record};
use objectos_guest::time::{self, civil_from_days, days_from_civil};
use objectos_guest::{Context, Error, Handler, Value, export_handler, json, progress};
use serde::{Deserialize, Serialize};

/// The largest batch the engine accepts in one page.
const MAX_BATCH: u32 = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Input {
    objects: Vec<String>,
    /// Kept as a JSON number so a negative or fractional value gets an
    /// error naming this field rather than serde's generic one.
    retention_days: Value,
    #[serde(default)]
    soft_delete: bool,
    #[serde(default = "created_at")]
    date_field: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default = "default_batch")]
    batch_size: u32,
}

fn created_at() -> String {
    "created_at".into()
}

fn default_batch() -> u32 {
    500
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectReport {
    /// Records older than the cutoff that the principal can see.
    matched: u64,
    /// Records deleted (or marked deleted); 0 in a dry run.
    deleted: u64,
    /// In a dry run, the records a real run would try to delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    would_delete: Option<u64>,
    /// Records matched that the principal may not delete (or edit, for a
    /// soft delete), left as they were.
    skipped: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    cutoff: String,
    date_field: String,
    soft_delete: bool,
    dry_run: bool,
    objects: BTreeMap<String, ObjectReport>,
    deleted: u64,
}

struct Settings {
    cutoff: String,
    date_field: String,
    soft_delete: bool,
    dry_run: bool,
    batch_size: u32,
}

/// Checks the input against itself and against the objects the principal
/// can read, naming the bad field.
fn validate(ctx: &Context, input: Input) -> Result<(Vec<String>, Settings), Error> {
    let days = match input.retention_days.as_f64() {
        Some(days) if days >= 0.0 && days.fract() == 0.0 && days <= 36_500.0 => days as i64,
        _ => {
            return Err(Error::fatal(format!(
                "retentionDays must be a whole number of days from 0 to 36500, got {}",
                input.retention_days
            )));
        }
    };
    if input.objects.is_empty() {
        return Err(Error::fatal("objects must name at least one object"));
    }
    if input.batch_size == 0 || input.batch_size > MAX_BATCH {
        return Err(Error::fatal(format!(
            "batchSize must be from 1 to {MAX_BATCH}, got {}",
            input.batch_size
        )));
    }
    if input.soft_delete && input.date_field == "deleted_at" {
        return Err(Error::fatal("dateField cannot be deleted_at for a soft delete"));
    }
    let readable = records::objects()?;
    for (index, name) in input.objects.iter().enumerate() {
        let Some(info) = readable.iter().find(|o| &o.name == name) else {
            let names: Vec<&str> = readable.iter().map(|o| o.name.as_str()).collect();
            return Err(Error::fatal(format!(
                "objects[{index}]: unknown object `{name}` (objects {} can read: {})",
                ctx.principal.user_id,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        if !info.fields.contains(&input.date_field) {
            objectos_guest::warn!(
                "object `{name}` has no visible field `{}`: nothing will match",
                input.date_field
            );
        }
    }
    let cutoff = cutoff(&ctx.enqueued_at, days).ok_or_else(|| {
        Error::fatal(format!("cannot compute a cutoff from enqueuedAt `{}`", ctx.enqueued_at))
    })?;
    let settings = Settings {
        cutoff,
        date_field: input.date_field,
        soft_delete: input.soft_delete,
        dry_run: input.dry_run,
        batch_size: input.batch_size,
    };
    Ok((input.objects, settings))
}

/// `enqueued_at` (RFC 3339, UTC, as the engine writes it) minus `days`.
fn cutoff(enqueued_at: &str, days: i64) -> Option<String> {
    let (date, time) = enqueued_at.split_once('T')?;
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    let (y, m, d) = civil_from_days(days_from_civil(year, month, day) - days);
    Some(format!("{y:04}-{m:02}-{d:02}T{time}"))
}

/// Cleans one object, batch by batch.
fn clean(object: &str, settings: &Settings) -> Result<ObjectReport, Error> {
    let mut old = Filter::lt(&settings.date_field, &settings.cutoff);
    if settings.soft_delete {
        old = old.and(Filter::exists("deleted_at", false));
    }
    let mut report = ObjectReport::default();
    let total = records::count(object, old.clone())?;
    let query = Query::new().filter(old).fields(["id"]).sort_asc("id").limit(settings.batch_size);
    let mut page = records::find::<Record>(object, &query)?;
    loop {
        let ids: Vec<&Value> = page.records.iter().filter_map(|r| r.get("id")).collect();
        report.matched += ids.len() as u64;
        if !ids.is_empty() && !settings.dry_run {
            let batch = Filter::one_of("id", &ids);
            let written = if settings.soft_delete {
                records::update(object, batch, &json!({"deleted_at": time::now().rfc3339()}))?
            } else {
                records::delete(object, batch)?
            };
            report.deleted += written.changed;
            report.skipped += written.skipped;
        }
        let percent = (report.matched * 100).checked_div(total).unwrap_or(100).min(100) as u8;
        progress(percent, &format!("{object}: {} of {total} checked", report.matched));
        match page.next_cursor {
            Some(cursor) => page = records::find::<Record>(object, &query.clone().cursor(cursor))?,
            None => break,
        }
    }
    if settings.dry_run {
        report.would_delete = Some(report.matched);
    }
    Ok(report)
}

struct DataCleanup;

impl Handler for DataCleanup {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, Error> {
        let (objects, settings) = validate(ctx, input)?;
        let mut reports = BTreeMap::new();
        let mut deleted = 0;
        for object in objects {
            let report = clean(&object, &settings)?;
            objectos_guest::info!(
                "{object}: matched {}, {} {}, skipped {}",
                report.matched,
                if settings.dry_run { "would delete" } else { "deleted" },
                report.would_delete.unwrap_or(report.deleted),
                report.skipped
            );
            deleted += report.deleted;
            reports.insert(object, report);
        }
        Ok(Output {
            cutoff: settings.cutoff,
            date_field: settings.date_field,
            soft_delete: settings.soft_delete,
            dry_run: settings.dry_run,
            objects: reports,
            deleted,
        })
    }
}

export_handler!(DataCleanup);
