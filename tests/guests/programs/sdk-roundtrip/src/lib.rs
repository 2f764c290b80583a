//! Exercises every wrapper of the guest SDK, for the SDK's round-trip
//! tests. Input: `{"action": "...", ...}`; the output echoes what the host
//! answered, so the test can compare it with the in-memory services' state.

use std::io::{Read, Write};

use objectos_guest::artifacts::{ArtifactReader, ArtifactWriter};
use objectos_guest::records::{self, Filter, OnConflict, Query, Record};
use objectos_guest::{Context, Error, Handler, Value, export_handler, json};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
enum Input {
    Context,
    Objects,
    Insert { object: String, records: Vec<Value> },
    Iterate { object: String, page: u32, sort: String },
    Count { object: String, filter: Value },
    Update { object: String, filter: Value, patch: Value },
    Delete { object: String, filter: Value },
    Import { object: String, records: Vec<Value>, replace: bool },
    Artifact { text: String, repeat: usize },
    Fail { retryable: bool, message: String },
    Panic { message: String },
}

struct RoundTrip;

impl Handler for RoundTrip {
    type Input = Input;
    type Output = Value;

    fn run(ctx: &Context, input: Input) -> Result<Value, Error> {
        Ok(match input {
            Input::Context => serde_json::to_value(ctx)?,
            Input::Objects => {
                let objects = records::objects()?;
                json!(
                    objects
                        .into_iter()
                        .map(|o| json!({"name": o.name, "fields": o.fields}))
                        .collect::<Vec<_>>()
                )
            }
            Input::Insert { object, records: rows } => json!(records::insert(&object, &rows)?),
            Input::Iterate { object, page, sort } => {
                let query = Query::new().sort_asc(&sort).limit(page);
                let rows: Result<Vec<Record>, _> = records::iter(&object, query).collect();
                json!(rows?)
            }
            Input::Count { object, filter } => json!(records::count(&object, Filter::from(filter))?),
            Input::Update { object, filter, patch } => {
                json!(records::update(&object, Filter::from(filter), &patch)?)
            }
            Input::Delete { object, filter } => json!(records::delete(&object, Filter::from(filter))?),
            Input::Import { object, records: rows, replace } => {
                let on_conflict = if replace { OnConflict::Replace } else { OnConflict::Skip };
                json!(records::import(&object, &rows, on_conflict)?)
            }
            Input::Artifact { text, repeat } => {
                let mut writer = ArtifactWriter::create("roundtrip.txt", "text/plain")?;
                for _ in 0..repeat {
                    writer.write_all(text.as_bytes())?;
                }
                let info = writer.finish()?;
                let mut back = String::new();
                ArtifactReader::open(&info.id)?.read_to_string(&mut back)?;
                let again = ArtifactReader::info(&info.id)?;
                json!({"id": info.id, "size": info.size, "sha256": info.sha256, "readBack": back.len(),
                       "matches": back == text.repeat(repeat), "infoAgrees": again == info})
            }
            Input::Fail { retryable: true, message } => return Err(Error::retryable(message)),
            Input::Fail { retryable: false, message } => return Err(Error::fatal(message)),
            Input::Panic { message } => panic!("{message}"),
        })
    }
}

export_handler!(RoundTrip);
