//! Reads records page by page and summarises them; optionally marks them.
//!
//! Input: `{"object": "contacts", "groupBy": "status", "mark": false}`.
//! Counts the records of `object` the principal can see, grouped by the
//! `groupBy` field. With `"mark": true` it also sets `reviewed: true` on
//! every record it can edit (which needs the `records-write` capability:
//! the component imports it, so the job must be granted it).
//!
//! Try it: `objectos run guest-sdk/examples/contacts-summary --records
//! guest-sdk/examples/contacts.json --data '{"object":"contacts"}'`.

use std::collections::BTreeMap;

use objectos_guest::records::{self, Filter, Query, Record};
use objectos_guest::{Context, Error, Handler, Value, export_handler, info, progress};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Input {
    object: String,
    #[serde(default = "status")]
    group_by: String,
    #[serde(default)]
    mark: bool,
}

fn status() -> String {
    "status".into()
}

#[derive(Serialize)]
struct Output {
    total: u64,
    groups: BTreeMap<String, u64>,
    marked: Option<u64>,
}

struct Summary;

impl Handler for Summary {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &Context, input: Input) -> Result<Output, Error> {
        let total = records::count(&input.object, Filter::all())?;
        let mut groups = BTreeMap::new();
        let mut seen = 0u64;
        let query = Query::new().fields([input.group_by.as_str()]).limit(500);
        for record in records::iter::<Record>(&input.object, query) {
            let key = match record?.get(&input.group_by) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "(none)".into(),
            };
            *groups.entry(key).or_insert(0) += 1;
            seen += 1;
            if total > 0 && seen % 500 == 0 {
                progress((seen * 100 / total) as u8, "counting");
            }
        }
        let marked = if input.mark {
            let report =
                records::update(&input.object, Filter::all(), &serde_json::json!({"reviewed": true}))?;
            info!("marked {} of {} records ({} skipped)", report.changed, report.matched, report.skipped);
            Some(report.changed)
        } else {
            None
        };
        Ok(Output { total, groups, marked })
    }
}

export_handler!(Summary);
