//! The `backup` and `restore` built-ins, as operators use them: back up,
//! lose data, restore, compare; and every way a restore must refuse.

use std::io::Read;

use objectos_engine::jobs::{JobStatus, NewJob};
use objectos_engine::principal::Principal;
use objectos_engine::sandbox::{ArtifactsService, Query, RecordsService};
use serde_json::{Value, json};

use super::builtins::{World, admin, ops, tricky_contacts};

/// Tickets: only `admin` reads or writes them.
const TICKETS: &str = "name: ticket-permissions\nobjectName: tickets\nprofiles:\n  \
                       admin: { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }\n";

async fn world() -> World {
    World::with_sets(&[("tickets.yaml", TICKETS)]).await
}

/// `n` tickets with their own system fields, nested values and a soft
/// delete mark on some.
fn tickets(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let owner = ["ada", "grace", "linus"][i % 3];
            let mut ticket = json!({
                "id": format!("k{i:05}"),
                "owner": owner,
                "created_at": format!("2025-{:02}-{:02}T08:30:00.250Z", i % 12 + 1, i % 28 + 1),
                "updated_at": "2026-01-02T03:04:05.006Z",
                "title": format!("Ticket {i} — «ünïcode» \"quoted\"\nsecond line"),
                "tags": ["a", i % 5],
                "detail": {"priority": i % 4, "score": i as f64 / 8.0, "open": i % 2 == 0},
            });
            if i % 10 == 0 {
                ticket["deleted_at"] = json!("2026-02-03T00:00:00.000Z");
            }
            ticket
        })
        .collect()
}

impl World {
    /// Every record of `object` the admin sees, all fields, in id order.
    async fn all(&self, object: &str) -> Vec<Value> {
        let mut records = Vec::new();
        let mut query = Query { limit: Some(1000), ..Query::default() };
        loop {
            let page = self.node.records.find(&admin(), object, query.clone()).await.unwrap();
            records.extend(page.records);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return records,
            }
        }
    }

    async fn delete_where(&self, object: &str, filter: Value) -> u64 {
        self.node.records.delete(&admin(), object, filter).await.unwrap().changed
    }

    /// Backs up as `who` and returns the result and the archive's bytes.
    async fn backup(&self, who: &Principal, input: Value) -> (Value, Vec<u8>) {
        self.produce(who, "backup", input).await
    }

    /// Stores `bytes` as an artifact, as a job would, and returns its id.
    async fn store_artifact(&self, name: &str, bytes: &[u8]) -> String {
        let mut writer =
            self.node.artifacts.create(&ops(), "job_test", name, "application/gzip").await.unwrap();
        writer.write(bytes).await.unwrap();
        writer.finish().await.unwrap().id
    }
}

/// The archive's entries, read by an independent tar implementation.
fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar_bytes = Vec::new();
    if archive.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(archive).read_to_end(&mut tar_bytes).unwrap();
    } else {
        tar_bytes = archive.to_vec();
    }
    let mut tar = tar::Archive::new(tar_bytes.as_slice());
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            (path, body)
        })
        .collect()
}

fn manifest(archive: &[u8]) -> Value {
    let entries = entries(archive);
    let (path, body) = entries.last().unwrap();
    assert_eq!(path, "manifest.json", "the manifest is the last entry");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn backup_wipe_restore_gives_back_every_record_with_its_system_fields() {
    let world = world().await;
    let contacts: Vec<Value> = tricky_contacts().into_iter().chain((0..2460).map(|i| {
        json!({"id": format!("z{i:05}"), "name": format!("Bulk {i}"), "amount": i, "created_at": "2024-05-06T07:08:09.010Z"})
    })).collect();
    world.import_into("contacts", contacts).await;
    world.import_into("tickets", tickets(1200)).await;
    let (contacts, tickets) = (world.all("contacts").await, world.all("tickets").await);

    let (result, archive) = world.backup(&ops(), json!({})).await;
    assert_eq!(result["records"], json!(3700));
    assert_eq!(result["objects"], json!({"contacts": 2500, "tickets": 1200}));
    assert_eq!(
        (result["compression"].as_str(), result["contentType"].as_str()),
        (Some("gzip"), Some("application/gzip"))
    );
    assert!(result["name"].as_str().unwrap().ends_with(".tar.gz"));
    assert!(result["sizeRatio"].as_f64().unwrap() < 0.5, "gzip shrinks JSON Lines: {result}");

    // A standard tar reader sees the layout the docs promise.
    let paths: Vec<String> = entries(&archive).into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths,
        [
            "objects/contacts/000001.jsonl",
            "objects/contacts/000002.jsonl",
            "objects/contacts/000003.jsonl",
            "objects/tickets/000001.jsonl",
            "objects/tickets/000002.jsonl",
            "manifest.json",
        ]
    );
    let manifest = manifest(&archive);
    assert_eq!(manifest["format"], "objectos-backup");
    assert_eq!(manifest["formatVersion"], 1);
    assert_eq!(manifest["engine"], format!("objectos-jobs {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(manifest["scope"]["userId"], "ops");
    assert_eq!(manifest["objects"][1]["records"], 1200);
    assert_eq!(
        manifest["objects"][1]["fields"],
        json!(["created_at", "deleted_at", "detail", "id", "owner", "tags", "title", "updated_at"])
    );
    assert!(manifest["metadata"]["visibleFields"]["contacts"].as_array().unwrap().contains(&json!("salary")));

    assert_eq!(world.delete_where("contacts", json!({})).await, 2500);
    assert_eq!(world.delete_where("tickets", json!({"owner": "ada"})).await, 400);
    let job = world.run(&ops(), NewJob::new("restore", json!({"artifact": result["artifactId"]}))).await;
    let restored = job.result.unwrap();
    assert_eq!(
        restored["objects"]["contacts"],
        json!({"records": 2500, "inserted": 2500, "replaced": 0, "skipped": 0})
    );
    assert_eq!(
        restored["objects"]["tickets"],
        json!({"records": 1200, "inserted": 400, "replaced": 0, "skipped": 800})
    );
    assert_eq!(restored["verified"]["records"], 3700);
    assert_eq!(restored["verified"]["sha256"], result["sha256"]);
    assert_eq!(world.all("contacts").await, contacts, "every contact, every field, system fields included");
    assert_eq!(world.all("tickets").await, tickets);

    // The restore's changes are in the audit log with its job.
    let imported: u64 = world
        .audit_of(&job.id)
        .await
        .iter()
        .filter(|e| e.event == "records.imported")
        .map(|e| e.metadata["inserted"].as_u64().unwrap())
        .sum();
    assert_eq!(imported, 2900);
    world.stop().await;
}

#[tokio::test]
async fn a_backup_holds_only_what_its_principal_can_see() {
    let world = world().await;
    world.import_into("contacts", tricky_contacts()).await;
    world.import_into("tickets", tickets(5)).await;
    let reader = Principal::new("rita", &["reader"]);
    let (result, archive) =
        world.backup(&reader, json!({"compress": "none", "includeMetadata": false})).await;
    assert_eq!(result["objects"], json!({"contacts": 40}), "tickets are not readable by a reader");
    assert_eq!(result["contentType"], "application/x-tar");
    let manifest = manifest(&archive);
    assert!(manifest.get("metadata").is_none());
    assert!(manifest["scope"]["note"].as_str().unwrap().contains("hidden fields are not in this backup"));
    assert!(!manifest["objects"][0]["fields"].as_array().unwrap().contains(&json!("salary")));
    assert!(!String::from_utf8_lossy(&archive).contains("salary"));

    let error = world.failed(&reader, "backup", json!({"objects": ["tickets"]})).await;
    assert!(
        error.contains("objects[0]: unknown object `tickets` (objects rita can read: contacts)"),
        "{error}"
    );
    let error = world.failed(&reader, "backup", json!({"compress": "zip"})).await;
    assert!(error.contains("unknown variant `zip`"), "{error}");
    world.stop().await;
}

#[tokio::test]
async fn restore_modes_and_dry_runs() {
    let world = world().await;
    world.import_into("contacts", tricky_contacts()).await;
    world.import_into("tickets", tickets(10)).await;
    let original = world.all("contacts").await;
    let (backup, _) = world.backup(&ops(), json!({"objects": ["contacts"]})).await;
    let artifact = backup["artifactId"].clone();

    assert_eq!(world.delete_where("contacts", json!({"region": "north"})).await, 14);
    world
        .node
        .records
        .update(&admin(), "contacts", json!({"region": "south"}), json!({"name": "changed"}))
        .await
        .unwrap();
    let changed = world.all("contacts").await;

    let dry = json!({"artifact": artifact, "dryRun": true});
    let predicted = world.completed(&ops(), "restore", dry.clone()).await;
    assert_eq!(predicted["dryRun"], true);
    assert_eq!(
        predicted["objects"]["contacts"],
        json!({"records": 40, "inserted": 14, "replaced": 0, "skipped": 26})
    );
    let mut replace = dry;
    replace["mode"] = json!("replace");
    let predicted = world.completed(&ops(), "restore", replace).await;
    assert_eq!(
        predicted["objects"]["contacts"],
        json!({"records": 40, "inserted": 14, "replaced": 26, "skipped": 0})
    );
    assert_eq!(world.all("contacts").await, changed, "a dry run changes nothing");

    let missing = world.completed(&ops(), "restore", json!({"artifact": artifact})).await;
    assert_eq!((missing["inserted"].as_u64(), missing["skipped"].as_u64()), (Some(14), Some(26)));
    let now = world.all("contacts").await;
    assert_eq!(now.len(), 40);
    assert_eq!(
        now.iter().filter(|c| c["name"] == "changed").count(),
        13,
        "insert-missing keeps existing records"
    );

    let replaced = world.completed(&ops(), "restore", json!({"artifact": artifact, "mode": "replace"})).await;
    assert_eq!((replaced["inserted"].as_u64(), replaced["replaced"].as_u64()), (Some(0), Some(40)));
    assert_eq!(world.all("contacts").await, original, "replace brings back the backed-up versions");

    let error = world.failed(&ops(), "restore", json!({"artifact": artifact, "objects": ["tickets"]})).await;
    assert!(error.contains("objects[0]: `tickets` is not in this backup (it holds: contacts)"), "{error}");
    let error = world.failed(&ops(), "restore", json!({"artifact": artifact, "mode": "merge"})).await;
    assert!(error.contains("unknown variant `merge`"), "{error}");
    let error = world.failed(&ops(), "restore", json!({"artifact": "art_missing"})).await;
    assert!(error.contains("art_missing"), "{error}");
    world.stop().await;
}

/// `archive` (plain tar) with its manifest changed by `edit`, rebuilt by
/// an independent tar writer.
fn with_manifest(archive: &[u8], edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mut body) in entries(archive) {
        if path == "manifest.json" {
            let mut manifest: Value = serde_json::from_slice(&body).unwrap();
            edit(&mut manifest);
            body = serde_json::to_vec(&manifest).unwrap();
        }
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, body.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[tokio::test]
async fn a_corrupt_or_truncated_backup_is_refused_and_nothing_changes() {
    let world = world().await;
    let contacts: Vec<Value> =
        (0..1500).map(|i| json!({"id": format!("c{i:05}"), "name": format!("Contact {i}")})).collect();
    world.import_into("contacts", contacts).await;
    let (_, gzip) = world.backup(&ops(), json!({"objects": ["contacts"]})).await;
    let (_, plain) = world.backup(&ops(), json!({"objects": ["contacts"], "compress": "none"})).await;
    world.delete_where("contacts", json!({"name": {"$in": ["Contact 3", "Contact 1400"]}})).await;
    let before = world.all("contacts").await;

    let mut flipped = gzip.clone();
    flipped[gzip.len() / 2] ^= 0x01;
    let mut flipped_record = plain.clone();
    let at = plain.windows(12).position(|w| w == b"Contact 1400").unwrap();
    flipped_record[at + 8] = b'7';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a flipped byte", flipped, "is not an intact backup"),
        ("a changed record", flipped_record, "`contacts`: its records' sha256 is"),
        ("a truncated stream", gzip[..gzip.len() / 2].to_vec(), "truncated"),
        ("a cut before the manifest", plain[..plain.len() / 2].to_vec(), "truncated"),
        (
            "a wrong manifest count",
            with_manifest(&plain, |m| m["objects"][0]["records"] = json!(1501)),
            "`contacts`: the archive holds 1500 records, the manifest says 1501",
        ),
        ("not a backup", b"name,amount\nAda,1\n".to_vec(), "truncated or not a backup"),
    ];
    for (case, bytes, expected) in cases {
        let artifact = world.store_artifact("bad.tar.gz", &bytes).await;
        let error = world.failed(&ops(), "restore", json!({"artifact": artifact})).await;
        assert!(error.contains(expected), "{case}: {error}");
        assert!(error.contains("nothing was restored"), "{case}: {error}");
        assert_eq!(world.all("contacts").await, before, "{case}: nothing changed");
    }
    // The intact archives still restore.
    let artifact = world.store_artifact("good.tar", &with_manifest(&plain, |_| ())).await;
    let restored = world.completed(&ops(), "restore", json!({"artifact": artifact})).await;
    assert_eq!(restored["inserted"], 2);
    world.stop().await;
}

#[tokio::test]
async fn restoring_needs_records_import_and_create_permission() {
    let world = world().await;
    world.import_into("contacts", tricky_contacts()).await;
    let (backup, _) = world.backup(&ops(), json!({"objects": ["contacts"]})).await;
    world.delete_where("contacts", json!({})).await;
    let input = json!({"artifact": backup["artifactId"]});

    // A reader holds artifacts.read but not records.import: the job is refused.
    let rita = Principal::new("rita", &["reader"]);
    let error = world.node.queue.enqueue(&rita, NewJob::new("restore", input.clone())).await.unwrap_err();
    assert!(error.to_string().contains("records-import"), "{error}");
    // Sales may import, but the backup is not its own: to sales it does not exist.
    let error = world.failed(&Principal::new("sam", &["sales"]), "restore", input.clone()).await;
    assert!(error.contains("not found: artifact"), "{error}");
    // Reading anyone's backups, sales still may not create contacts: refused
    // before any record changes.
    let error = world.failed(&Principal::new("sam", &["sales", "archivist"]), "restore", input).await;
    assert!(error.contains("cannot restore `contacts`: denied"), "{error}");
    assert!(world.all("contacts").await.is_empty());
    world.stop().await;
}

#[tokio::test]
async fn a_backup_and_restore_of_200000_records_stay_under_a_64_mib_guest_memory_limit() {
    let world = world().await;
    let contacts: Vec<Value> = (0..200_000)
        .map(|i| json!({"id": format!("r{i:06}"), "name": format!("Contact {i}"), "amount": i, "region": "north"}))
        .collect();
    world.import_into("contacts", contacts).await;
    let job = NewJob { memory: Some(64 << 20), ..NewJob::new("backup", json!({"objects": ["contacts"]})) };
    let job = world.run(&ops(), job).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let result = job.result.clone().unwrap();
    assert_eq!(result["records"], 200_000);
    let peak = job.attempt_log.last().unwrap().usage.peak_memory;
    assert!(peak < 64 << 20, "backup peak {peak}");

    world.delete_where("contacts", json!({"amount": {"$gte": 150_000}})).await;
    let restore = NewJob {
        memory: Some(64 << 20),
        ..NewJob::new("restore", json!({"artifact": result["artifactId"]}))
    };
    let job = world.run(&ops(), restore).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.result.as_ref().unwrap()["inserted"], 50_000);
    let peak = job.attempt_log.last().unwrap().usage.peak_memory;
    assert!(peak < 64 << 20, "restore peak {peak}");
    world.stop().await;
}
