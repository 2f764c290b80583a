//! The `report-generation` built-in: a report of one object's records,
//! as the job's principal, streamed into an artifact page by page.
//!
//! Input: `{"object": "contacts", "fields": ["name", "amount"],
//! "filter": {"status": "open"}, "sort": [{"field": "name", "order": "asc"}],
//! "groupBy": "region", "aggregates": [{"field": "amount", "op": "sum"}],
//! "format": "csv" | "json" | "markdown" | "html" | "xlsx", "title": "Open deals"}`.
//!
//! Without `groupBy` or `aggregates` the report lists the matching records,
//! one row each, in `sort` order, with `fields` as its columns (default:
//! every field the principal can see). With them, it has one row per group
//! (one row in all without `groupBy`) whose columns are the group fields and
//! the aggregates. Guest memory holds one page of records, the writer's
//! buffers and, when grouping, one accumulator per group. Fields come only
//! from what the engine returns to this principal, so a hidden field can
//! appear in no format; naming one fails the job.

mod aggregate;
mod format;
mod input;
mod xlsx;

use objectos_guest::artifacts::ArtifactWriter;
use objectos_guest::records::{self, Record};
use objectos_guest::{Context, Error, Handler, Value, export_handler, progress};
use serde::Serialize;

use aggregate::Groups;
use input::Input;

/// Records fetched per host call (the engine's largest page).
const PAGE: u32 = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    artifact_id: String,
    name: String,
    content_type: String,
    format: &'static str,
    /// Data rows written (the header row not counted).
    rows: u64,
    /// Records read to make them.
    records: u64,
    bytes: u64,
    sha256: String,
}

struct ReportGeneration;

impl Handler for ReportGeneration {
    type Input = Input;
    type Output = Output;

    fn run(ctx: &Context, input: Input) -> Result<Output, Error> {
        let plan = input.plan(&ctx.principal.user_id)?;
        let total = records::count(&plan.object, plan.filter.clone())?;
        let artifact = ArtifactWriter::create(&plan.file_name(), plan.format.content_type())?;
        let mut sink = plan.format.sink(artifact, &plan);
        sink.begin(&plan.columns)?;

        let mut read = 0u64;
        let mut rows = 0u64;
        let mut groups = plan.grouping.as_ref().map(Groups::new);
        let report = |read: u64| {
            let percent = (read * 100).checked_div(total).unwrap_or(100).min(99) as u8;
            progress(percent, &format!("{read} of {total} records read"));
        };
        let mut query = plan.query().limit(PAGE);
        loop {
            let page = records::find::<Record>(&plan.object, &query)?;
            read += page.records.len() as u64;
            for record in &page.records {
                match &mut groups {
                    Some(groups) => groups.add(record)?,
                    None => {
                        let cells: Vec<&Value> =
                            plan.columns.iter().map(|c| record.get(c).unwrap_or(&Value::Null)).collect();
                        sink.row(&cells)?;
                        rows += 1;
                    }
                }
            }
            report(read);
            match page.next_cursor {
                Some(cursor) => query = query.cursor(cursor),
                None => break,
            }
        }
        if let Some(groups) = groups {
            for row in groups.rows(&plan.sort) {
                sink.row(&row.iter().collect::<Vec<_>>())?;
                rows += 1;
            }
        }
        let info = sink.end()?.finish()?;
        progress(100, &format!("{rows} rows, {} bytes", info.size));
        Ok(Output {
            artifact_id: info.id,
            name: info.name,
            content_type: info.content_type,
            format: plan.format.name(),
            rows,
            records: read,
            bytes: info.size,
            sha256: info.sha256,
        })
    }
}

export_handler!(ReportGeneration);
