//! `objectos records …`: records on a server, as the token's principal —
//! object, field and record permissions decide exactly as for a job.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{Client, segment};
use super::output::{self, Table, clip};
use super::{Globals, json_arg};

/// Records per request of an import or export.
const BATCH: usize = 1000;

/// Find, read, write, delete, import and export records.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  objectos records ls\n  \
    objectos records ls contacts --filter '{\"city\":\"Berlin\"}' --sort name\n  \
    objectos records put contacts '{\"name\":\"Ada\",\"city\":\"London\"}'\n  \
    objectos records export contacts --out contacts.jsonl")]
pub struct RecordsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the objects you can read (no OBJECT), or one page of an object's records.
    #[command(after_help = "Examples:\n  objectos records ls\n  \
        objectos records ls contacts --fields name,city --sort name:desc --limit 50\n  \
        objectos records ls tickets --filter '{\"status\":{\"$ne\":\"closed\"}}' --json")]
    Ls {
        /// The object; leave out to list objects.
        object: Option<String>,
        #[command(flatten)]
        query: QueryArgs,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Print one record as JSON.
    #[command(after_help = "Example:\n  objectos records get contacts rec_01J…")]
    Get {
        /// The object.
        object: String,
        /// The record's id.
        id: String,
    },
    /// Insert a record (or a JSON list of them), or with --id change one by a merge patch.
    #[command(after_help = "Examples:\n  objectos records put contacts '{\"name\":\"Ada\"}'\n  \
        objectos records put contacts @new-contacts.json\n  \
        objectos records put contacts --id rec_01J… '{\"city\":\"Paris\",\"phone\":null}'")]
    Put {
        /// The object.
        object: String,
        /// The record, a list of records, or the patch: JSON, or @FILE.
        record: String,
        /// Change this record instead of inserting.
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete a record.
    #[command(after_help = "Example:\n  objectos records rm contacts rec_01J…")]
    Rm {
        /// The object.
        object: String,
        /// The record's id.
        id: String,
    },
    /// Import records with their ids and system fields (JSON Lines or a JSON
    /// list, as `export` writes them); needs records.import.
    #[command(after_help = "Examples:\n  objectos records import contacts contacts.jsonl\n  \
        objectos records export contacts | objectos records import contacts - --on-conflict skip")]
    Import {
        /// The object.
        object: String,
        /// The file, or `-` for standard input.
        file: PathBuf,
        /// What to do with a record whose id exists.
        #[arg(long, value_enum, default_value = "fail")]
        on_conflict: Conflict,
    },
    /// Write every record you can see as JSON Lines.
    #[command(after_help = "Examples:\n  objectos records export contacts > contacts.jsonl\n  \
        objectos records export tickets --filter '{\"status\":\"open\"}' --out open.jsonl")]
    Export {
        /// The object.
        object: String,
        #[command(flatten)]
        query: QueryArgs,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Which records and fields.
#[derive(Debug, Args)]
struct QueryArgs {
    /// A filter condition as JSON, e.g. '{"age":{"$gte":18}}'.
    #[arg(long, value_name = "JSON")]
    filter: Option<String>,
    /// Only these fields, comma-separated.
    #[arg(long, value_name = "A,B")]
    fields: Option<String>,
    /// Order: comma-separated `field` or `field:desc`.
    #[arg(long, value_name = "FIELD[:desc],…")]
    sort: Option<String>,
}

impl QueryArgs {
    /// The query as `POST …/query` takes it.
    fn body(&self, limit: u32, cursor: Option<String>) -> anyhow::Result<Value> {
        let mut body = json!({"limit": limit});
        if let Some(filter) = &self.filter {
            body["filter"] = serde_json::from_str(filter).context("--filter is not valid JSON")?;
        }
        if let Some(fields) = &self.fields {
            body["fields"] = json!(fields.split(',').map(str::trim).collect::<Vec<_>>());
        }
        if let Some(sort) = &self.sort {
            let keys: Vec<Value> = sort
                .split(',')
                .map(|key| {
                    let (field, order) = key.split_once(':').unwrap_or((key, "asc"));
                    json!({"field": field.trim(), "order": order.trim()})
                })
                .collect();
            body["sort"] = json!(keys);
        }
        if let Some(cursor) = cursor {
            body["cursor"] = json!(cursor);
        }
        Ok(body)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Conflict {
    /// Refuse the whole batch.
    Fail,
    /// Keep the existing record.
    Skip,
    /// Replace it.
    Replace,
}

pub fn records(args: RecordsArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    let path = |object: &str, tail: &str| format!("/v1/objects/{}{tail}", segment(object));
    let answer = match args.action {
        Action::Ls { object: None, .. } => {
            let answer = client.get("/v1/objects", &[])?;
            if !globals.json {
                let mut table = Table::new(&["OBJECT", "FIELDS YOU SEE"]);
                for object in answer["objects"].as_array().into_iter().flatten() {
                    let fields: Vec<&str> =
                        object["fields"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    table.row([object["name"].as_str().unwrap_or_default().to_string(), fields.join(", ")]);
                }
                table.print("no objects you can read");
            }
            answer
        }
        Action::Ls { object: Some(object), query, limit, cursor } => {
            let answer = client.send("POST", &path(&object, "/query"), &query.body(limit, cursor)?)?;
            if !globals.json {
                let records = answer["records"].as_array().cloned().unwrap_or_default();
                print!("{}", records_table(&records, output::colour()));
                if let Some(next) = answer["nextCursor"].as_str() {
                    eprintln!("(more: --cursor {next})");
                }
            }
            answer
        }
        Action::Get { object, id } => {
            let record = client.get(&path(&object, &format!("/records/{}", segment(&id))), &[])?;
            output::print_json(&record)?;
            return Ok(ExitCode::SUCCESS);
        }
        Action::Put { object, record, id: None } => {
            let answer =
                client.send("POST", &path(&object, "/records"), &json_arg(&record, "the record")?)?;
            if !globals.json {
                let ids: Vec<&str> =
                    answer["ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                println!("inserted {} into {object}: {}", ids.len(), ids.join(", "));
            }
            answer
        }
        Action::Put { object, record, id: Some(id) } => {
            let patch = json_arg(&record, "the patch")?;
            let answer =
                client.send("PATCH", &path(&object, &format!("/records/{}", segment(&id))), &patch)?;
            if !globals.json {
                println!("updated {id} of {object}");
            }
            answer
        }
        Action::Rm { object, id } => {
            client.delete(&path(&object, &format!("/records/{}", segment(&id))))?;
            if !globals.json {
                println!("deleted {id} of {object}");
            }
            json!({"deleted": id})
        }
        Action::Import { object, file, on_conflict } => import(&client, &object, &file, on_conflict)?,
        Action::Export { object, query, out } => {
            let written = export(&client, &object, &query, out.as_ref())?;
            if let Some(file) = &out {
                eprintln!("exported {written} records of {object} to {}", file.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if globals.json {
        output::print_json(&answer)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Records as a table: `id` first, then every other field any of them has
/// (by name), the system fields last.
fn records_table(records: &[Value], colour: bool) -> String {
    const SYSTEM: [&str; 3] = ["owner", "created_at", "updated_at"];
    if records.is_empty() {
        return "no records match\n".into();
    }
    let mut columns: Vec<String> = vec!["id".into()];
    for record in records {
        for key in record.as_object().into_iter().flat_map(|r| r.keys()) {
            if !columns.contains(key) && !SYSTEM.contains(&key.as_str()) {
                columns.push(key.clone());
            }
        }
    }
    columns.extend(
        SYSTEM.iter().filter(|k| records.iter().any(|r| r.get(**k).is_some())).map(|k| k.to_string()),
    );
    let titles: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let mut table = Table::new(&titles.iter().map(String::as_str).collect::<Vec<_>>());
    for record in records {
        table.row(columns.iter().map(|column| match &record[column] {
            Value::Null => String::new(),
            Value::String(text) => clip(text, 40),
            other => clip(&other.to_string(), 40),
        }));
    }
    table.render(colour)
}

/// Reads JSON Lines or a JSON list from `file` and imports it in batches,
/// each all or none; prints (or returns as JSON) the totals.
fn import(client: &Client, object: &str, file: &PathBuf, on_conflict: Conflict) -> anyhow::Result<Value> {
    let reader: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        ))
    };
    let records = read_records(reader).with_context(|| format!("reading {}", file.display()))?;
    let conflict = match on_conflict {
        Conflict::Fail => "fail",
        Conflict::Skip => "skip",
        Conflict::Replace => "replace",
    };
    let bar = output::count_bar(Some(records.len() as u64), format!("importing into {object}"));
    let mut totals = json!({"inserted": 0, "replaced": 0, "skipped": 0});
    let url = format!("/v1/objects/{}/import?onConflict={conflict}", segment(object));
    for (index, batch) in records.chunks(BATCH).enumerate() {
        let report = client.send("POST", &url, &Value::Array(batch.to_vec())).with_context(|| {
            format!(
                "records {}–{} were not imported ({} before them were)",
                index * BATCH + 1,
                index * BATCH + batch.len(),
                index * BATCH
            )
        })?;
        for key in ["inserted", "replaced", "skipped"] {
            totals[key] = json!(totals[key].as_u64().unwrap_or(0) + report[key].as_u64().unwrap_or(0));
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "imported into {object}: {} inserted, {} replaced, {} skipped",
        totals["inserted"], totals["replaced"], totals["skipped"]
    );
    Ok(totals)
}

/// Records from JSON Lines, or from one JSON list.
fn read_records(mut reader: Box<dyn std::io::BufRead>) -> anyhow::Result<Vec<Value>> {
    let mut text = String::new();
    reader.read_to_string(&mut text)?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).context("not a JSON list of records");
    }
    let mut records = Vec::new();
    for (number, line) in std::io::Cursor::new(text).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        records
            .push(serde_json::from_str(&line).with_context(|| format!("line {} is not JSON", number + 1))?);
    }
    Ok(records)
}

/// Pages through every matching record, writing each as a line; returns
/// how many.
fn export(client: &Client, object: &str, query: &QueryArgs, out: Option<&PathBuf>) -> anyhow::Result<u64> {
    let mut writer = BufWriter::new(output::destination(out.map(PathBuf::as_path))?);
    let bar = output::count_bar(None, format!("exporting {object}"));
    let url = format!("/v1/objects/{}/query", segment(object));
    let (mut cursor, mut written) = (None, 0u64);
    loop {
        let page = client.send("POST", &url, &query.body(BATCH as u32, cursor)?)?;
        for record in page["records"].as_array().into_iter().flatten() {
            serde_json::to_writer(&mut writer, record)?;
            writer.write_all(b"\n")?;
            written += 1;
        }
        bar.set_position(written);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    writer.flush()?;
    bar.finish_and_clear();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_table_puts_id_first_and_system_fields_last() {
        let records = [
            json!({"id": "rec_1", "owner": "ada", "name": "Ada Lovelace", "city": "London", "updated_at": "2026-11-29T12:00:00.000Z"}),
            json!({"id": "rec_2", "owner": "grace", "name": "Grace", "tags": ["navy", "cobol"], "note": "x".repeat(60)}),
        ];
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/snapshots/records-table.txt");
        crate::snapshot::assert_snapshot(&path, &records_table(&records, false));
    }
}
