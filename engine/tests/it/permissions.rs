//! The permission engine through its public API: the original README's
//! examples (owner, team, hierarchy by level), unions, templates, fields,
//! system permissions, explanations and reloads.

use std::path::Path;

use objectos_engine::permissions::{Action, Filter, PermissionSet, Permissions, PermissionsDir};
use objectos_engine::principal::Principal;
use serde_json::{Value, json};

const CONTACTS: &str = "name: contact-permissions
objectName: contacts
profiles:
  sales:   { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: false,
             viewFilters: { owner: \"{{ userId }}\" } }
  manager: { allowRead: true, viewFilters: { teamId: \"{{ user.teamId }}\" } }
  hr:      { allowRead: true, viewFilters: { level: { $lte: \"{{ user.level }}\" } } }
  admin:   { allowRead: true, allowCreate: true, allowEdit: true, allowDelete: true }
fieldPermissions:
  salary: { visibleTo: [admin, hr], editableBy: [admin] }
";

const OPERATORS: &str = "name: operators
system:
  profiles:
    ops: [jobs.read, jobs.enqueue, jobs.cancel]
";

fn set(text: &str) -> PermissionSet {
    PermissionSet::parse(Path::new("test.yaml"), text).unwrap()
}

fn engine() -> Permissions {
    Permissions::new(vec![set(CONTACTS), set(OPERATORS)])
}

fn user(id: &str, profiles: &[&str], metadata: Value) -> Principal {
    let mut principal = Principal::new(id, profiles);
    principal.metadata = metadata.as_object().cloned().unwrap_or_default();
    principal
}

fn records() -> Vec<Value> {
    vec![
        json!({"id": "c1", "owner": "ann", "teamId": "t1", "level": 1, "salary": 10}),
        json!({"id": "c2", "owner": "bob", "teamId": "t1", "level": 3, "salary": 30}),
        json!({"id": "c3", "owner": "cid", "teamId": "t2", "level": 5, "salary": 50}),
    ]
}

fn visible(engine: &Permissions, principal: &Principal) -> Vec<String> {
    match engine.record_filter(principal, "contacts", Action::Read) {
        None => vec!["denied".into()],
        Some(filter) => records()
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect(),
    }
}

#[test]
fn the_originals_examples_owner_team_and_level() {
    let engine = engine();
    assert_eq!(visible(&engine, &user("ann", &["sales"], json!({}))), ["c1"], "sales sees its own");
    assert_eq!(visible(&engine, &user("m", &["manager"], json!({"teamId": "t1"}))), ["c1", "c2"], "a team");
    assert_eq!(visible(&engine, &user("h", &["hr"], json!({"level": 3}))), ["c1", "c2"], "level ≤ 3");
    assert_eq!(visible(&engine, &user("root", &["admin"], json!({}))), ["c1", "c2", "c3"]);
    assert_eq!(visible(&engine, &user("x", &["intern"], json!({}))), ["denied"]);
}

#[test]
fn more_profiles_mean_more_access() {
    let engine = engine();
    let both = user("cid", &["sales", "manager"], json!({"teamId": "t1"}));
    assert_eq!(visible(&engine, &both), ["c1", "c2", "c3"], "own records OR the team's");
    let decision = engine.object(&both, "contacts", Action::Read);
    assert!(decision.allowed);
    assert_eq!(decision.reason, "granted by contact-permissions/sales, contact-permissions/manager");
}

#[test]
fn a_missing_template_key_matches_nothing_and_never_widens() {
    let engine = engine();
    let no_team = user("m", &["manager"], json!({}));
    assert_eq!(visible(&engine, &no_team), Vec::<String>::new());
    let with_sales = user("ann", &["manager", "sales"], json!({}));
    assert_eq!(visible(&engine, &with_sales), ["c1"], "the other profile still applies");
    // A value of the wrong shape (a list where a scalar is compared) also matches nothing.
    let odd = user("h", &["hr"], json!({"level": [1, 2]}));
    assert_eq!(visible(&engine, &odd), Vec::<String>::new());
}

#[test]
fn object_actions_default_deny() {
    let engine = engine();
    let sales = user("ann", &["sales"], json!({}));
    assert!(engine.object(&sales, "contacts", Action::Edit).allowed);
    let delete = engine.object(&sales, "contacts", Action::Delete);
    assert!(!delete.allowed);
    assert_eq!(delete.reason, "none of the profiles [sales] of `ann` allows delete on `contacts`");
    let other = engine.object(&sales, "invoices", Action::Read);
    assert_eq!(other.reason, "no permission set covers object `invoices`");
    assert!(Permissions::empty().record_filter(&sales, "contacts", Action::Read).is_none());
    assert_eq!(engine.objects_allowing(&sales, Action::Create), ["contacts"]);
}

#[test]
fn field_visibility_and_editability() {
    let engine = engine();
    let hr = user("h", &["hr"], json!({"level": 3}));
    let sales = user("ann", &["sales"], json!({}));
    let admin = user("root", &["admin"], json!({}));
    assert!(engine.field_visible(&hr, "contacts", "salary").allowed);
    let hidden = engine.field_visible(&sales, "contacts", "salary");
    assert!(!hidden.allowed);
    assert_eq!(hidden.reason, "field `salary` of `contacts` is restricted to other profiles");
    assert!(engine.field_visible(&sales, "contacts", "email").allowed, "unlisted fields follow the object");
    assert!(!engine.field_editable(&sales, "contacts", "salary", Action::Edit).allowed);
    assert!(engine.field_editable(&admin, "contacts", "salary", Action::Edit).allowed);
    assert!(!engine.field_editable(&hr, "contacts", "email", Action::Edit).allowed, "hr cannot edit at all");
}

#[test]
fn sets_naming_the_same_object_are_unioned() {
    let extra = set("name: sales-delete
objectName: contacts
profiles:
  sales: { allowDelete: true, viewFilters: { owner: \"{{ userId }}\", level: { $lt: 2 } } }
");
    let engine = Permissions::new(vec![set(CONTACTS), extra]);
    let sales = user("ann", &["sales"], json!({}));
    let decision = engine.object(&sales, "contacts", Action::Delete);
    assert_eq!(decision.reason, "granted by sales-delete/sales");
    let deletable = engine.record_filter(&sales, "contacts", Action::Delete).unwrap();
    assert!(deletable.matches(&records()[0]) && !deletable.matches(&records()[1]));
}

#[test]
fn system_permissions() {
    let engine = engine();
    let ops = user("o", &["ops", "sales"], json!({}));
    assert_eq!(engine.system(&ops, "jobs.enqueue").reason, "granted by operators/ops");
    let denied = engine.system(&ops, "audit.read");
    assert_eq!(denied.reason, "none of the profiles [ops, sales] of `o` holds `audit.read`");
}

#[test]
fn a_bad_reload_keeps_the_sets_in_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("contacts.yaml"), CONTACTS).unwrap();
    let permissions = PermissionsDir::open(dir.path()).unwrap();
    let sales = user("ann", &["sales"], json!({}));
    assert!(permissions.current().object(&sales, "contacts", Action::Read).allowed);

    std::fs::write(
        dir.path().join("contacts.yaml"),
        CONTACTS.replace("allowRead: true, allowCreate", "allowRaed: true, allowCreate"),
    )
    .unwrap();
    let error = permissions.reload().unwrap_err().to_string();
    assert!(error.contains("contacts.yaml:4: ") && error.contains("unknown field `allowRaed`"), "{error}");
    assert!(permissions.current().object(&sales, "contacts", Action::Read).allowed, "still in force");

    std::fs::write(
        dir.path().join("contacts.yaml"),
        CONTACTS.replace("sales:   { allowRead: true,", "sales:   { allowRead: false,"),
    )
    .unwrap();
    assert_eq!(permissions.reload().unwrap(), 1);
    assert!(!permissions.current().object(&sales, "contacts", Action::Read).allowed, "the new sets apply");
}

#[test]
fn an_empty_directory_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let permissions = Permissions::load(dir.path()).unwrap();
    let admin = user("root", &["admin"], json!({}));
    assert!(!permissions.object(&admin, "contacts", Action::Read).allowed);
    assert!(!permissions.system(&admin, "jobs.read").allowed);
    assert_eq!(permissions.record_filter(&admin, "contacts", Action::Read), None::<Filter>);
}

#[test]
fn strange_files_in_the_directory_are_skipped_and_never_block_a_load() {
    let dir = tempfile::tempdir().unwrap();
    // A set saved by an editor that writes a byte-order mark.
    let set = "name: ops\nsystem:\n  profiles:\n    ops: [jobs.read]\n";
    std::fs::write(dir.path().join("ops.yaml"), format!("\u{feff}{set}")).unwrap();
    // A FIFO no one writes to: reading it would wait for ever.
    let fifo = dir.path().join("fifo.yaml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A directory named like a set, a huge file and a deeply nested one.
    std::fs::create_dir(dir.path().join("folder.yaml")).unwrap();
    std::fs::write(dir.path().join("huge.yaml"), vec![b'#'; 2 << 20]).unwrap();
    let deep = format!(
        "name: deep\nobjectName: x\nprofiles:\n  p: {{ allowRead: true, viewFilters: {{ a: {}1{} }} }}\n",
        "[".repeat(500),
        "]".repeat(500)
    );
    std::fs::write(dir.path().join("deep.yaml"), deep).unwrap();

    let permissions = PermissionsDir::open(dir.path()).expect("the strange files are skipped, not fatal");
    assert_eq!(permissions.current().set_count(), 1, "only the set with a byte-order mark loads");
    let ops = user("o", &["ops"], json!({}));
    assert!(permissions.current().system(&ops, "jobs.read").allowed);
    assert_eq!(permissions.reload().unwrap(), 1, "and again on reload");
}
