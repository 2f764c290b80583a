//! Streams records into a CSV artifact, then reads it back to verify it.
//!
//! Input: `{"object": "contacts", "fields": ["name", "email"]}`. Writes
//! `<object>.csv` through an `io::Write` artifact writer, one page of
//! records at a time, then re-reads it through an `io::Read` reader and
//! checks the line count. Needs `records`, `artifacts` and `artifacts-read`.
//!
//! Try it: `objectos run guest-sdk/examples/csv-export --records
//! guest-sdk/examples/contacts.json --artifacts ./out --data
//! '{"object":"contacts","fields":["name","email"]}'`.

use std::io::{BufRead, BufReader, Write};

use objectos_guest::artifacts::{ArtifactReader, ArtifactWriter};
use objectos_guest::records::{self, Query, Record};
use objectos_guest::{Context, Error, Handler, Value, export_handler};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    object: String,
    fields: Vec<String>,
}

#[derive(Serialize)]
struct Output {
    artifact: String,
    rows: u64,
    bytes: u64,
    sha256: String,
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

struct CsvExport;

impl Handler for CsvExport {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, Error> {
        if input.fields.is_empty() {
            return Err(Error::fatal("`fields` must name at least one field"));
        }
        let mut csv = ArtifactWriter::create(&format!("{}.csv", input.object), "text/csv")?;
        write!(csv, "{}\r\n", input.fields.join(","))?;
        let mut rows = 0u64;
        let query = Query::new().fields(input.fields.iter().cloned()).sort_asc("id").limit(1000);
        for record in records::iter::<Record>(&input.object, query) {
            let record = record?;
            let line: Vec<String> = input.fields.iter().map(|f| csv_field(record.get(f))).collect();
            write!(csv, "{}\r\n", line.join(","))?;
            rows += 1;
        }
        let info = csv.finish()?;

        // Read it back to prove the artifact is whole.
        let lines = BufReader::new(ArtifactReader::open(&info.id)?).lines().count() as u64;
        if lines != rows + 1 {
            return Err(Error::retryable(format!("wrote {} lines but read back {lines}", rows + 1)));
        }
        Ok(Output { artifact: info.id, rows, bytes: info.size, sha256: info.sha256 })
    }
}

export_handler!(CsvExport);
