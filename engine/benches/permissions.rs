//! Permission decisions: 100 permission sets (20 objects, 5 sets each,
//! each with 8 of 40 profiles, most with templated view filters and field
//! rules) and a principal holding 5 profiles. Prints p50/p99 latency of
//! object, field and record-filter decisions, and the rate at which a
//! record filter evaluates over JSON records.
//!
//! Run with `cargo bench -p objectos-engine --bench permissions`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use objectos_engine::permissions::{Action, Filter, PermissionSet, Permissions};
use objectos_engine::principal::Principal;
use serde_json::json;

const SETS: usize = 100;
const OBJECTS: usize = 20;
const PROFILES: usize = 40;
const SAMPLES: usize = 200_000;

fn permission_set(index: usize) -> PermissionSet {
    let filters = [
        r#"{ owner: "{{ userId }}" }"#,
        r#"{ teamId: "{{ user.teamId }}" }"#,
        r#"{ level: { $lte: "{{ user.level }}" } }"#,
        r#"{ $or: [ { owner: "{{ userId }}" }, { status: { $in: [open, won] } } ] }"#,
    ];
    let mut yaml = format!("name: set-{index}\nobjectName: object-{}\nprofiles:\n", index % OBJECTS);
    for k in 0..8 {
        let profile = (index * 7 + k * 5) % PROFILES;
        let filter = match k % 5 {
            4 => String::new(),
            n => format!(", viewFilters: {}", filters[n % filters.len()]),
        };
        yaml.push_str(&format!(
            "  p{profile}: {{ allowRead: true, allowEdit: {}, allowDelete: false{filter} }}\n",
            k % 2 == 0
        ));
    }
    yaml.push_str("fieldPermissions:\n  salary: { visibleTo: [p1, p2], editableBy: [p1] }\n");
    PermissionSet::parse(Path::new("bench.yaml"), &yaml).expect("bench sets load")
}

fn percentiles(mut nanos: Vec<u64>) -> (f64, f64) {
    nanos.sort_unstable();
    let at = |p: f64| nanos[((nanos.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn measure(label: &str, mut decide: impl FnMut(usize)) {
    let mut nanos = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        decide(i);
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    let (p50, p99) = percentiles(nanos);
    println!("{label:<28} p50 {p50:>6.2} µs  p99 {p99:>6.2} µs");
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let permissions = Permissions::new((0..SETS).map(permission_set).collect());
    let mut principal = Principal::new("u42", &["p3", "p8", "p12", "p21", "p33"]);
    principal.metadata.insert("teamId".into(), json!("t7"));
    principal.metadata.insert("level".into(), json!(4));
    let object = |i: usize| format!("object-{}", i % OBJECTS);
    let objects: Vec<String> = (0..OBJECTS).map(object).collect();

    let granted = objects.iter().filter(|o| permissions.object(&principal, o, Action::Read).allowed).count();
    println!(
        "{SETS} permission sets over {OBJECTS} objects; a principal with 5 profiles, granted read on \
         {granted} of them; {SAMPLES} decisions each, cycling over the objects"
    );
    measure("object (read)", |i| {
        black_box(permissions.object(&principal, &objects[i % OBJECTS], Action::Read));
    });
    measure("field visible (salary)", |i| {
        black_box(permissions.field_visible(&principal, &objects[i % OBJECTS], "salary"));
    });
    measure("record filter (read)", |i| {
        black_box(permissions.record_filter(&principal, &objects[i % OBJECTS], Action::Read));
    });
    measure("system permission", |_| {
        black_box(permissions.system(&principal, "jobs.enqueue"));
    });

    let filter = Filter::parse(&json!({
        "$or": [{"owner": "u42"}, {"teamId": "t7", "level": {"$lte": 4}}, {"status": {"$in": ["open", "won"]}}]
    }))
    .unwrap();
    let records: Vec<_> = (0..100_000)
        .map(|i| {
            let status = ["open", "lost", "won", "new"][i % 4];
            json!({"id": i, "owner": format!("u{}", i % 97), "teamId": format!("t{}", i % 11), "level": i % 7,
                   "status": status, "email": "someone@example.com"})
        })
        .collect();
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let matched = records.iter().filter(|r| filter.matches(r)).count();
        black_box(matched);
        rates.push(records.len() as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("filter evaluation: {:.1} million records/s (median of 5 passes over 100,000)", rates[2] / 1e6);
}
