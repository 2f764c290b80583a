//! The built-in handlers at work on a node, as users run them: enqueued as
//! a principal, reading and changing records under permission sets, their
//! reports read back from the artifacts they wrote in every format.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::time::Duration;

use objectos_engine::audit::AuditEntry;
use objectos_engine::config::{EngineConfig, WorkersConfig};
use objectos_engine::jobs::{Job, JobStatus, NewJob};
use objectos_engine::node::Node;
use objectos_engine::principal::Principal;
use objectos_engine::queue::Workers;
use objectos_engine::sandbox::{OnConflict, Query, RecordsService};
use objectos_engine::store::{Actor, AuditQuery};
use serde_json::{Value, json};

/// Contacts: `admin` does anything and alone sees `salary`; `sales` reads,
/// edits and deletes its own contacts; `reader` reads every contact.
const CONTACTS: &str = r#"name: contact-permissions
objectName: contacts
profiles:
  admin:  { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }
  sales:  { allowRead: true, allowEdit: true, allowDelete: true, viewFilters: { owner: "{{ userId }}" } }
  reader: { allowRead: true }
fieldPermissions:
  salary: { visibleTo: [admin] }
"#;

/// `archivist` reads anyone's artifacts (backups included).
const SYSTEM: &str = "name: operators\nsystem:\n  profiles:\n    admin: [records.import, artifacts.write, artifacts.read]\n    \
                      reader: [artifacts.write, artifacts.read]\n    sales: [records.import, artifacts.write, artifacts.read]\n    \
                      archivist: [artifacts.read.any]\n";

/// A node on a fresh data directory with the built-ins installed and two workers.
pub(crate) struct World {
    pub(crate) node: Node,
    workers: Option<Workers>,
    _dir: tempfile::TempDir,
}

impl World {
    pub(crate) async fn new() -> Self {
        Self::with_sets(&[]).await
    }

    /// A world with further permission set files (`(file name, YAML)`).
    pub(crate) async fn with_sets(sets: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let permissions = dir.path().join("permissions");
        std::fs::create_dir_all(&permissions).unwrap();
        for (file, yaml) in [("contacts.yaml", CONTACTS), ("operators.yaml", SYSTEM)].iter().chain(sets) {
            std::fs::write(permissions.join(file), yaml).unwrap();
        }
        let config = EngineConfig {
            data_dir: dir.path().join("data"),
            permissions: Some(permissions),
            workers: WorkersConfig { concurrency: 2, ..Default::default() },
            ..Default::default()
        };
        let node = Node::open(config).unwrap();
        node.install_handlers().await.unwrap();
        let workers = Some(node.queue.start());
        Self { node, workers, _dir: dir }
    }

    /// Imports contacts (with their own `id`, `owner`, `created_at`) as the admin.
    pub(crate) async fn import(&self, records: Vec<Value>) {
        self.import_into("contacts", records).await;
    }

    /// Imports `records` of `object` as the admin.
    pub(crate) async fn import_into(&self, object: &str, records: Vec<Value>) {
        for batch in records.chunks(1000) {
            self.node.records.import(&admin(), object, batch.to_vec(), OnConflict::Fail).await.unwrap();
        }
    }

    pub(crate) async fn run(&self, who: &Principal, job: NewJob) -> Job {
        let job = self.node.queue.enqueue(who, job).await.unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.node.queue.wait_final(&job.id))
            .await
            .unwrap()
            .unwrap()
    }

    pub(crate) async fn completed(&self, who: &Principal, handler: &str, data: Value) -> Value {
        let job = self.run(who, NewJob::new(handler, data)).await;
        assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
        job.result.unwrap()
    }

    pub(crate) async fn failed(&self, who: &Principal, handler: &str, data: Value) -> String {
        let job = self.run(who, NewJob::new(handler, data)).await;
        assert_eq!(job.status, JobStatus::Failed);
        assert_eq!(job.attempts, 1, "bad input is not retried");
        job.error.unwrap()
    }

    pub(crate) async fn contacts(&self) -> Vec<Value> {
        let query = Query { sort: Vec::new(), limit: Some(1000), ..Query::default() };
        self.node.records.find(&admin(), "contacts", query).await.unwrap().records
    }

    pub(crate) async fn artifact(&self, id: &str) -> Vec<u8> {
        self.node.artifacts.read_to_end(id).await.unwrap()
    }

    /// Runs the built-in `handler` as `who` and returns its result and the
    /// bytes of the artifact it describes (its size and sha256 checked).
    pub(crate) async fn produce(&self, who: &Principal, handler: &str, input: Value) -> (Value, Vec<u8>) {
        let result = self.completed(who, handler, input).await;
        let bytes = self.artifact(result["artifactId"].as_str().unwrap()).await;
        assert_eq!(result["bytes"], json!(bytes.len()));
        assert_eq!(result["sha256"], json!(objectos_engine::digest::sha256_hex(&bytes)));
        (result, bytes)
    }

    async fn report(&self, who: &Principal, input: Value) -> (Value, Vec<u8>) {
        self.produce(who, "report-generation", input).await
    }

    /// The audit log's entries about the job `id`.
    pub(crate) async fn audit_of(&self, id: &str) -> Vec<AuditEntry> {
        self.node.auditor.catch_up().await.unwrap();
        let query = AuditQuery { job_id: Some(id.to_string()), ..AuditQuery::page(0, 1000) };
        let entries = self.node.store.audit_entries(query).await.unwrap();
        entries.iter().map(|e| serde_json::from_slice(&e.bytes).unwrap()).collect()
    }

    pub(crate) async fn stop(mut self) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown(None).await;
        }
    }
}

pub(crate) fn admin() -> Actor {
    Actor::user(Principal::new("ops", &["admin"]))
}

pub(crate) fn ops() -> Principal {
    Principal::new("ops", &["admin"])
}

/// Ten contacts, six created in 2020 and four now; ada owns the odd ones.
fn aged_contacts() -> Vec<Value> {
    (0..10)
        .map(|i| {
            let mut contact = json!({
                "id": format!("c{i:02}"),
                "owner": if i % 2 == 1 { "ada" } else { "grace" },
                "name": format!("Contact {i}"),
            });
            if i < 6 {
                contact["created_at"] = json!(format!("2020-01-{:02}T00:00:00.000Z", i + 1));
            }
            contact
        })
        .collect()
}

fn ids<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<&'a str> {
    records.into_iter().map(|r| r["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn cleanup_deletes_only_records_past_retention_and_audits_the_change() {
    let world = World::new().await;
    world.import(aged_contacts()).await;
    let job = world
        .run(&ops(), NewJob::new("data-cleanup", json!({"objects": ["contacts"], "retentionDays": 30})))
        .await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let result = job.result.clone().unwrap();
    assert_eq!(result["objects"]["contacts"], json!({"matched": 6, "deleted": 6, "skipped": 0}));
    assert_eq!(ids(&world.contacts().await), ["c06", "c07", "c08", "c09"]);

    let entries = world.audit_of(&job.id).await;
    let deleted: u64 = entries
        .iter()
        .filter(|e| e.event == "records.deleted")
        .map(|e| e.metadata["changed"].as_u64().unwrap())
        .sum();
    assert_eq!(deleted, 6, "the deletions are in the audit log with the job id");
    assert!(entries.iter().all(|e| e.job.as_ref().unwrap().job_name == "data-cleanup"));
    world.stop().await;
}

#[tokio::test]
async fn soft_delete_marks_old_records_once_and_dry_run_changes_nothing() {
    let world = World::new().await;
    world.import(aged_contacts()).await;
    let dry = json!({"objects": ["contacts"], "retentionDays": 30, "softDelete": true, "dryRun": true});
    let result = world.completed(&ops(), "data-cleanup", dry).await;
    assert_eq!(
        result["objects"]["contacts"],
        json!({"matched": 6, "deleted": 0, "wouldDelete": 6, "skipped": 0})
    );
    assert!(
        world.contacts().await.iter().all(|c| c.get("deleted_at").is_none()),
        "a dry run changes nothing"
    );

    let soft = json!({"objects": ["contacts"], "retentionDays": 30, "softDelete": true, "batchSize": 4});
    let result = world.completed(&ops(), "data-cleanup", soft.clone()).await;
    assert_eq!(result["objects"]["contacts"]["deleted"], json!(6));
    let contacts = world.contacts().await;
    assert_eq!(contacts.len(), 10, "soft-deleted records stay");
    let marked = contacts.iter().filter(|c| c.get("deleted_at").is_some());
    assert_eq!(ids(marked), ["c00", "c01", "c02", "c03", "c04", "c05"]);

    let again = world.completed(&ops(), "data-cleanup", soft).await;
    assert_eq!(
        again["objects"]["contacts"],
        json!({"matched": 0, "deleted": 0, "skipped": 0}),
        "marked once"
    );
    world.stop().await;
}

#[tokio::test]
async fn cleanup_deletes_only_what_record_level_security_lets_the_principal_delete() {
    let world = World::new().await;
    world.import(aged_contacts()).await;
    // Ada reads every contact (reader) but may delete only her own (sales).
    let ada = Principal::new("ada", &["reader", "sales"]);
    let result =
        world.completed(&ada, "data-cleanup", json!({"objects": ["contacts"], "retentionDays": 30})).await;
    assert_eq!(result["objects"]["contacts"], json!({"matched": 6, "deleted": 3, "skipped": 3}));
    let left = world.contacts().await;
    assert_eq!(ids(&left), ["c00", "c02", "c04", "c06", "c07", "c08", "c09"], "grace's old contacts stay");

    // Grace as sales alone sees only her own, so matches only those.
    let grace = Principal::new("grace", &["sales"]);
    let result =
        world.completed(&grace, "data-cleanup", json!({"objects": ["contacts"], "retentionDays": 30})).await;
    assert_eq!(result["objects"]["contacts"], json!({"matched": 3, "deleted": 3, "skipped": 0}));
    world.stop().await;
}

#[tokio::test]
async fn bad_input_fails_at_once_naming_the_field() {
    let world = World::new().await;
    world.import(aged_contacts()).await;
    let cases = [
        ("data-cleanup", json!({"objects": ["contacts"], "retentionDays": -1}), "retentionDays"),
        (
            "data-cleanup",
            json!({"objects": ["invoices"], "retentionDays": 3}),
            "objects[0]: unknown object `invoices`",
        ),
        ("data-cleanup", json!({"objects": [], "retentionDays": 3}), "objects must name"),
        (
            "data-cleanup",
            json!({"objects": ["contacts"], "retentionDays": 3, "batch": 4}),
            "unknown field `batch`",
        ),
        ("report-generation", json!({"object": "contacts", "format": "pdf"}), "format: unknown format `pdf`"),
        (
            "report-generation",
            json!({"object": "invoices", "format": "csv"}),
            "object: unknown object `invoices`",
        ),
        (
            "report-generation",
            json!({"object": "contacts", "format": "csv", "fields": ["nmae"]}),
            "fields[0]: `nmae`",
        ),
        (
            "report-generation",
            json!({"object": "contacts", "format": "csv", "aggregates": [{"field": "name", "op": "median"}]}),
            "aggregates[0].op: unknown operation `median`",
        ),
        (
            "report-generation",
            json!({"object": "contacts", "format": "csv", "sort": [{"field": "name", "order": "up"}]}),
            "sort[0].order",
        ),
    ];
    for (handler, input, expected) in cases {
        let error = world.failed(&ops(), handler, input.clone()).await;
        assert!(error.contains(expected), "{input}: {error}");
    }
    world.stop().await;
}

/// Contacts with values that break naive writers: separators, quotes,
/// line breaks, markup, non-ASCII, numbers, booleans and missing fields.
pub(crate) fn tricky_contacts() -> Vec<Value> {
    let names =
        ["Ada, Countess", "Grace \"Amazing\" Hopper", "Line\nBreak", "<script>x</script> & co", "Zoë | pipe"];
    let regions = ["north", "south", "east"];
    (0..40)
        .map(|i| {
            let mut contact = json!({
                "id": format!("t{i:02}"),
                "owner": if i % 2 == 0 { "ada" } else { "grace" },
                "name": format!("{} {i:02}", names[i % names.len()]),
                "region": regions[i % 3],
                "amount": if i % 4 == 0 { json!((i * 37 % 101) as f64 + 0.5) } else { json!(i * 37 % 101) },
                "active": i % 3 != 0,
                "salary": 900_000 + i,
            });
            if i % 7 == 0 {
                contact.as_object_mut().unwrap().remove("amount");
            }
            contact
        })
        .collect()
}

/// A cell as the report shows it: text as is, missing as empty, anything else as JSON.
fn cell_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

const COLUMNS: [&str; 4] = ["name", "region", "amount", "active"];

/// The expected rows of a listing of `COLUMNS` sorted by name.
fn expected_rows(contacts: &[Value]) -> Vec<Vec<String>> {
    let mut sorted = contacts.to_vec();
    sorted.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    sorted.iter().map(|c| COLUMNS.iter().map(|f| cell_text(c.get(*f))).collect()).collect()
}

/// An RFC 4180 parser, strict about CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR is followed by LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the last line ends with CRLF");
    rows
}

/// The text of every `<th>` or `<td>` of an HTML page, by row, read with an XML parser.
fn html_cells(page: &[u8]) -> (String, Vec<Vec<String>>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(page);
    let (mut rows, mut title, mut text, mut inside, mut in_title) =
        (Vec::new(), String::new(), String::new(), false, false);
    let mut buffer = Vec::new();
    loop {
        match reader.read_event_into(&mut buffer).unwrap() {
            Event::Start(e) => match e.name().as_ref() {
                "tr" => rows.push(Vec::new()),
                "td" | "th" => {
                    inside = true;
                    text.clear();
                }
                "title" => in_title = true,
                _ => {}
            },
            Event::Text(t) if inside || in_title => {
                let decoded = t.html_content();
                if in_title { title.push_str(&decoded) } else { text.push_str(&decoded) }
            }
            Event::GeneralRef(r) if inside || in_title => {
                let name = r.html_content();
                let target = if in_title { &mut title } else { &mut text };
                target.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "#39" => "'",
                    other => panic!("unexpected entity {other}"),
                });
            }
            Event::End(e) => match e.name().as_ref() {
                "td" | "th" => {
                    inside = false;
                    rows.last_mut().unwrap().push(text.clone());
                }
                "title" => in_title = false,
                _ => {}
            },
            Event::Eof => return (title, rows),
            _ => {}
        }
        buffer.clear();
    }
}

fn xlsx_rows(bytes: Vec<u8>) -> Vec<Vec<calamine::Data>> {
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    assert_eq!(workbook.sheet_names(), ["Report"]);
    let range = workbook.worksheet_range("Report").unwrap();
    range.rows().map(|r| r.to_vec()).collect()
}

fn xlsx_text(cell: &calamine::Data) -> String {
    match cell {
        calamine::Data::Empty => String::new(),
        calamine::Data::String(s) => s.clone(),
        calamine::Data::Float(f) if f.fract() == 0.0 => (*f as i64).to_string(),
        calamine::Data::Float(f) => f.to_string(),
        calamine::Data::Int(i) => i.to_string(),
        calamine::Data::Bool(b) => b.to_string(),
        other => panic!("unexpected cell {other:?}"),
    }
}

#[tokio::test]
async fn every_format_reads_back_to_the_records() {
    let world = World::new().await;
    let contacts = tricky_contacts();
    world.import(contacts.clone()).await;
    let expected = expected_rows(&contacts);
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let input = |format: &str| {
        json!({"object": "contacts", "fields": COLUMNS, "sort": [{"field": "name"}], "format": format,
               "title": "Contacts <all> & more"})
    };

    let (result, csv) = world.report(&ops(), input("csv")).await;
    assert_eq!((result["rows"].clone(), result["name"].clone()), (json!(40), json!("contacts-all-more.csv")));
    let rows = parse_csv(std::str::from_utf8(&csv).unwrap());
    assert_eq!(rows[0], header);
    assert_eq!(rows[1..], expected[..]);

    let (_, json_bytes) = world.report(&ops(), input("json")).await;
    let document: Value = serde_json::from_slice(&json_bytes).unwrap();
    assert_eq!(document["title"], json!("Contacts <all> & more"));
    assert_eq!(document["columns"], json!(COLUMNS));
    assert_eq!(document["rowCount"], json!(40));
    let rows: Vec<Vec<String>> = document["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.as_object().unwrap().keys().count(), COLUMNS.len());
            COLUMNS.iter().map(|c| cell_text(r.get(*c))).collect()
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(document["rows"][0]["amount"], json!(10), "numbers stay numbers");

    let (_, markdown) = world.report(&ops(), input("markdown")).await;
    let markdown = String::from_utf8(markdown).unwrap();
    let lines: Vec<&str> = markdown.lines().collect();
    assert_eq!(lines[0], "# Contacts &lt;all&gt; &amp; more");
    assert_eq!(lines[2], "| name | region | amount | active |");
    assert_eq!(lines[3], "| --- | --- | --- | --- |");
    assert_eq!(lines.len(), 4 + 40, "one line per row: line breaks in values became <br>");
    assert!(markdown.contains("| &lt;script&gt;x&lt;/script&gt; &amp; co 03 |"));
    assert!(markdown.contains("| Zoë \\| pipe 04 |"));
    assert!(markdown.contains("| Line<br>Break 02 |"));

    let (_, html) = world.report(&ops(), input("html")).await;
    assert!(html.starts_with(b"<!DOCTYPE html>"));
    assert!(!String::from_utf8_lossy(&html).contains("<script>"), "markup in values is escaped");
    let (title, cells) = html_cells(&html);
    assert_eq!(title, "Contacts <all> & more");
    assert_eq!(cells[0], header);
    assert_eq!(cells[1..], expected[..]);

    let (result, xlsx) = world.report(&ops(), input("xlsx")).await;
    assert_eq!(
        result["contentType"],
        json!("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    );
    let rows = xlsx_rows(xlsx);
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(xlsx_text).collect()).collect();
    assert_eq!(rows[0], header);
    assert_eq!(rows[1..], expected[..]);
    world.stop().await;
}

#[tokio::test]
async fn aggregates_match_a_direct_computation() {
    let world = World::new().await;
    let contacts = tricky_contacts();
    world.import(contacts.clone()).await;
    let input = json!({
        "object": "contacts", "groupBy": "region", "format": "json",
        "filter": {"active": true},
        "aggregates": [
            {"op": "count"}, {"field": "amount", "op": "count"}, {"field": "amount", "op": "sum"},
            {"field": "amount", "op": "avg"}, {"field": "amount", "op": "min"}, {"field": "amount", "op": "max"}
        ],
        "sort": [{"field": "sum(amount)", "order": "desc"}]
    });
    let (result, bytes) = world.report(&ops(), input).await;
    assert_eq!(result["records"], json!(contacts.iter().filter(|c| c["active"] == json!(true)).count()));
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        document["columns"],
        json!([
            "region",
            "count",
            "count(amount)",
            "sum(amount)",
            "avg(amount)",
            "min(amount)",
            "max(amount)"
        ])
    );

    let mut direct: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for contact in contacts.iter().filter(|c| c["active"] == json!(true)) {
        direct.entry(contact["region"].as_str().unwrap()).or_default().push(contact["amount"].as_f64());
    }
    let rows = document["rows"].as_array().unwrap();
    assert_eq!(rows.len(), direct.len());
    let sums: Vec<f64> = rows.iter().map(|r| r["sum(amount)"].as_f64().unwrap()).collect();
    assert!(sums.windows(2).all(|w| w[0] >= w[1]), "sorted by sum, largest first: {sums:?}");
    for row in rows {
        let amounts = &direct[row["region"].as_str().unwrap()];
        let present: Vec<f64> = amounts.iter().flatten().copied().collect();
        let sum: f64 = present.iter().sum();
        assert_eq!(row["count"], json!(amounts.len()));
        assert_eq!(row["count(amount)"], json!(present.len()));
        assert!((row["sum(amount)"].as_f64().unwrap() - sum).abs() < 1e-9);
        assert!((row["avg(amount)"].as_f64().unwrap() - sum / present.len() as f64).abs() < 1e-9);
        assert_eq!(row["min(amount)"].as_f64(), present.iter().copied().reduce(f64::min));
        assert_eq!(row["max(amount)"].as_f64(), present.iter().copied().reduce(f64::max));
    }

    // Totals without grouping: one row, even over no records.
    let none = json!({"object": "contacts", "format": "csv", "filter": {"region": "west"},
                      "aggregates": [{"op": "count"}, {"field": "amount", "op": "sum"}]});
    let (_, csv) = world.report(&ops(), none).await;
    assert_eq!(String::from_utf8(csv).unwrap(), "count,sum(amount)\r\n0,\r\n");
    world.stop().await;
}

#[tokio::test]
async fn a_hidden_field_appears_in_no_format() {
    let world = World::new().await;
    world.import(tricky_contacts()).await;
    let reader = Principal::new("rita", &["reader"]);
    for format in ["csv", "json", "markdown", "html", "xlsx"] {
        let (result, bytes) = world.report(&reader, json!({"object": "contacts", "format": format})).await;
        assert_eq!(result["rows"], json!(40));
        let text = if format == "xlsx" {
            xlsx_rows(bytes).iter().flatten().map(xlsx_text).collect::<Vec<_>>().join(",")
        } else {
            String::from_utf8(bytes).unwrap()
        };
        assert!(text.contains("Countess"), "{format}: the visible fields are there");
        assert!(!text.contains("salary") && !text.contains("9000"), "{format}: salary leaked");
    }
    let error = world
        .failed(
            &reader,
            "report-generation",
            json!({"object": "contacts", "format": "csv", "fields": ["salary"]}),
        )
        .await;
    assert!(error.contains("fields[0]: `salary`"), "{error}");
    let grouped =
        json!({"object": "contacts", "format": "csv", "aggregates": [{"field": "salary", "op": "sum"}]});
    let error = world.failed(&reader, "report-generation", grouped).await;
    assert!(error.contains("aggregates[0].field: `salary`"), "{error}");
    world.stop().await;
}

#[tokio::test]
async fn a_report_of_200000_rows_streams_under_a_64_mib_guest_memory_limit() {
    let world = World::new().await;
    let contacts: Vec<Value> = (0..200_000)
        .map(|i| json!({"id": format!("r{i:06}"), "name": format!("Contact {i}"), "amount": i, "region": "north"}))
        .collect();
    world.import(contacts).await;
    for format in ["csv", "xlsx"] {
        let input = json!({"object": "contacts", "fields": ["id", "name", "amount"], "format": format});
        let job = NewJob { memory: Some(64 << 20), ..NewJob::new("report-generation", input) };
        let job = world.run(&ops(), job).await;
        assert_eq!(job.status, JobStatus::Completed, "{format}: {:?}", job.error);
        assert_eq!(job.result.as_ref().unwrap()["rows"], json!(200_000));
        let peak = job.attempt_log.last().unwrap().usage.peak_memory;
        assert!(peak < 64 << 20, "{format}: peak {peak}");
        if format == "xlsx" {
            let bytes = world.artifact(job.result.as_ref().unwrap()["artifactId"].as_str().unwrap()).await;
            let rows = xlsx_rows(bytes);
            assert_eq!(rows.len(), 200_001);
            assert_eq!(rows[200_000][2], calamine::Data::Float(199_999.0));
        }
    }
    world.stop().await;
}

#[tokio::test]
async fn built_in_defaults_apply_unless_the_job_overrides_them() {
    let world = World::new().await;
    let queue = &world.node.queue;
    let input = json!({"objects": ["contacts"], "retentionDays": 1});
    let job = queue.enqueue(&ops(), NewJob::new("data-cleanup", input.clone())).await.unwrap();
    assert_eq!((job.max_retries, job.timeout, job.memory), (3, 3_600_000, 32 << 20));
    let job = NewJob { timeout: Some(5_000), memory: Some(16 << 20), ..NewJob::new("data-cleanup", input) };
    let job = queue.enqueue(&ops(), job).await.unwrap();
    assert_eq!((job.max_retries, job.timeout, job.memory), (3, 5_000, 16 << 20));
    let job = queue.enqueue(&ops(), NewJob::new("template", json!({"name": "x"}))).await.unwrap();
    assert_eq!((job.timeout, job.memory), (60_000, 128 << 20), "other handlers keep the engine's defaults");
    world.stop().await;
}
