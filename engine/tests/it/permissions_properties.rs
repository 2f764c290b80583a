//! Property tests of the permission engine over random permission sets
//! (written as YAML and loaded), principals and records:
//! (a) every decision equals a deliberately naive reference written here;
//! (b) adding a set or a profile never reduces access, and a missing
//!     template key never widens it;
//! (c) the order of sets and of YAML entries, and duplicated sets, change
//!     nothing;
//! (d) an empty configuration grants nothing.

use std::path::Path;

use objectos_engine::permissions::{Action, PermissionSet, Permissions};
use objectos_engine::principal::Principal;
use proptest::prelude::*;
use serde_json::{Value, json};

const OBJECTS: [&str; 2] = ["contacts", "deals"];
const PROFILES: [&str; 4] = ["sales", "manager", "hr", "admin"];
const FIELDS: [&str; 2] = ["salary", "email"];

/// The view filters a generated profile may have.
#[derive(Debug, Clone, Copy, PartialEq)]
enum View {
    All,
    Owner,
    Team,
    LevelAtMost,
    LevelAbove2,
}

impl View {
    fn yaml(self) -> Option<&'static str> {
        match self {
            View::All => None,
            View::Owner => Some(r#"{ owner: "{{ userId }}" }"#),
            View::Team => Some(r#"{ teamId: "{{ user.teamId }}" }"#),
            View::LevelAtMost => Some(r#"{ level: { $lte: "{{ user.level }}" } }"#),
            View::LevelAbove2 => Some("{ level: { $gt: 2 } }"),
        }
    }

    /// The reference: what the filter means, written out by hand.
    fn admits(self, principal: &Principal, record: &Value) -> bool {
        let meta = |key: &str| principal.metadata.get(key);
        match self {
            View::All => true,
            View::Owner => record.get("owner") == Some(&json!(principal.user_id)),
            View::Team => match (meta("teamId"), record.get("teamId")) {
                (Some(Value::String(mine)), Some(Value::String(theirs))) => mine == theirs,
                _ => false,
            },
            View::LevelAtMost => match (meta("level"), record.get("level")) {
                (Some(Value::Number(mine)), Some(Value::Number(theirs))) => theirs.as_f64() <= mine.as_f64(),
                _ => false,
            },
            View::LevelAbove2 => record.get("level").and_then(Value::as_f64).is_some_and(|l| l > 2.0),
        }
    }
}

#[derive(Debug, Clone)]
struct Rules {
    profile: usize,
    allow: [bool; 4],
    view: View,
}

#[derive(Debug, Clone)]
struct Set {
    name: String,
    object: usize,
    profiles: Vec<Rules>,
    fields: Vec<FieldRules>,
}

/// A field with its visibleTo and editableBy, as profile indexes.
type FieldRules = (usize, Option<Vec<usize>>, Option<Vec<usize>>);

fn view() -> impl Strategy<Value = View> {
    prop_oneof![
        Just(View::All),
        Just(View::Owner),
        Just(View::Team),
        Just(View::LevelAtMost),
        Just(View::LevelAbove2)
    ]
}

fn profile_list() -> impl Strategy<Value = Option<Vec<usize>>> {
    prop::option::of(
        prop::collection::btree_set(0..PROFILES.len(), 0..3).prop_map(|s| s.into_iter().collect()),
    )
}

fn set(index: usize) -> impl Strategy<Value = Set> {
    let rules = (0..PROFILES.len(), prop::array::uniform4(any::<bool>()), view())
        .prop_map(|(profile, allow, view)| Rules { profile, allow, view });
    (
        0..OBJECTS.len(),
        prop::collection::vec(rules, 0..4),
        prop::collection::vec((0..FIELDS.len(), profile_list(), profile_list()), 0..2),
    )
        .prop_map(move |(object, mut profiles, mut fields)| {
            // A profile and a field appear once per set (YAML keys are unique).
            profiles.sort_by_key(|r| r.profile);
            profiles.dedup_by_key(|r| r.profile);
            fields.sort_by_key(|f| f.0);
            fields.dedup_by_key(|f| f.0);
            Set { name: format!("set-{index}"), object, profiles, fields }
        })
}

fn sets() -> impl Strategy<Value = Vec<Set>> {
    prop::collection::vec(0..1usize, 0..5)
        .prop_flat_map(|v| v.iter().enumerate().map(|(i, _)| set(i)).collect::<Vec<_>>())
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        prop::sample::select(vec!["u1", "u2"]),
        prop::collection::btree_set(0..PROFILES.len(), 0..4),
        prop::option::of(prop::sample::select(vec!["t1", "t2"])),
        prop::option::of(0..6i64),
    )
        .prop_map(|(user, profiles, team, level)| {
            let names: Vec<&str> = profiles.into_iter().map(|p| PROFILES[p]).collect();
            let mut principal = Principal::new(user, &names);
            if let Some(team) = team {
                principal.metadata.insert("teamId".into(), json!(team));
            }
            if let Some(level) = level {
                principal.metadata.insert("level".into(), json!(level));
            }
            principal
        })
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["u1", "u2"]),
        prop::option::of(prop::sample::select(vec!["t1", "t2"])),
        prop::option::of(0..6i64),
    )
        .prop_map(|(owner, team, level)| {
            let mut record = json!({"owner": owner});
            if let Some(team) = team {
                record["teamId"] = json!(team);
            }
            if let Some(level) = level {
                record["level"] = json!(level);
            }
            record
        })
}

fn list(profiles: &[usize]) -> String {
    let names: Vec<&str> = profiles.iter().map(|p| PROFILES[*p]).collect();
    format!("[{}]", names.join(", "))
}

/// The set as a YAML file, its entries in the order given.
fn yaml(set: &Set, reverse: bool) -> String {
    let mut out = format!("name: {}\nobjectName: {}\nprofiles:\n", set.name, OBJECTS[set.object]);
    let mut profiles: Vec<&Rules> = set.profiles.iter().collect();
    if reverse {
        profiles.reverse();
    }
    for rules in profiles {
        let keys = ["allowRead", "allowCreate", "allowEdit", "allowDelete"];
        let mut entries: Vec<String> =
            keys.iter().zip(rules.allow).map(|(k, v)| format!("{k}: {v}")).collect();
        if let Some(filter) = rules.view.yaml() {
            entries.push(format!("viewFilters: {filter}"));
        }
        if reverse {
            entries.reverse();
        }
        out.push_str(&format!("  {}: {{ {} }}\n", PROFILES[rules.profile], entries.join(", ")));
    }
    if set.profiles.is_empty() {
        out = out.replace("profiles:\n", "profiles: {}\n");
    }
    out.push_str("fieldPermissions:\n");
    for (field, visible, editable) in &set.fields {
        let mut entries = Vec::new();
        if let Some(visible) = visible {
            entries.push(format!("visibleTo: {}", list(visible)));
        }
        if let Some(editable) = editable {
            entries.push(format!("editableBy: {}", list(editable)));
        }
        out.push_str(&format!("  {}: {{ {} }}\n", FIELDS[*field], entries.join(", ")));
    }
    if set.fields.is_empty() {
        out = out.replace("fieldPermissions:\n", "fieldPermissions: {}\n");
    }
    out
}

fn load(sets: &[Set], reverse: bool) -> Permissions {
    Permissions::new(
        sets.iter()
            .map(|s| {
                PermissionSet::parse(Path::new("generated.yaml"), &yaml(s, reverse))
                    .expect("generated YAML loads")
            })
            .collect(),
    )
}

fn holds(principal: &Principal, profile: usize) -> bool {
    principal.profiles.iter().any(|p| p == PROFILES[profile])
}

/// The reference: may `principal` perform `action` on this record of `object`?
fn reference_record(
    sets: &[Set],
    principal: &Principal,
    object: usize,
    action: usize,
    record: &Value,
) -> bool {
    sets.iter().filter(|s| s.object == object).any(|s| {
        s.profiles
            .iter()
            .any(|r| holds(principal, r.profile) && r.allow[action] && r.view.admits(principal, record))
    })
}

fn reference_object(sets: &[Set], principal: &Principal, object: usize, action: usize) -> bool {
    sets.iter()
        .filter(|s| s.object == object)
        .any(|s| s.profiles.iter().any(|r| holds(principal, r.profile) && r.allow[action]))
}

/// The reference for fields: some set granting the action leaves the field
/// open to one of the principal's profiles.
fn reference_field(sets: &[Set], principal: &Principal, object: usize, field: usize, action: usize) -> bool {
    sets.iter().filter(|s| s.object == object).any(|s| {
        let grants = s.profiles.iter().any(|r| holds(principal, r.profile) && r.allow[action]);
        let rule = s.fields.iter().find(|f| f.0 == field);
        let listed = rule
            .and_then(|(_, visible, editable)| if action == 0 { visible.clone() } else { editable.clone() });
        grants && listed.is_none_or(|allowed| allowed.iter().any(|p| holds(principal, *p)))
    })
}

fn engine_record(
    engine: &Permissions,
    principal: &Principal,
    object: usize,
    action: usize,
    record: &Value,
) -> bool {
    engine.record_filter(principal, OBJECTS[object], Action::ALL[action]).is_some_and(|f| f.matches(record))
}

/// Everything `principal` may do with `records`, as booleans.
fn access(engine: &Permissions, principal: &Principal, records: &[Value]) -> Vec<bool> {
    let mut all = Vec::new();
    for (object, name) in OBJECTS.iter().enumerate() {
        for action in 0..4 {
            all.push(engine.object(principal, name, Action::ALL[action]).allowed);
            all.extend(records.iter().map(|r| engine_record(engine, principal, object, action, r)));
            for field in FIELDS {
                let decision = match action {
                    0 => engine.field_visible(principal, name, field),
                    _ => engine.field_editable(principal, name, field, Action::ALL[action]),
                };
                all.push(decision.allowed);
            }
        }
    }
    all
}

fn at_least(more: &[bool], less: &[bool]) -> bool {
    more.iter().zip(less).all(|(m, l)| *m || !*l)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decisions_equal_the_reference(sets in sets(), principal in principal(), records in prop::collection::vec(record(), 1..6)) {
        let engine = load(&sets, false);
        for (object, name) in OBJECTS.iter().enumerate() {
            for action in 0..4 {
                prop_assert_eq!(
                    engine.object(&principal, name, Action::ALL[action]).allowed,
                    reference_object(&sets, &principal, object, action)
                );
                for record in &records {
                    prop_assert_eq!(
                        engine_record(&engine, &principal, object, action, record),
                        reference_record(&sets, &principal, object, action, record),
                        "object {} action {} record {}", name, action, record
                    );
                }
                for (field, field_name) in FIELDS.iter().enumerate() {
                    let decision = match action {
                        0 => engine.field_visible(&principal, name, field_name),
                        _ => engine.field_editable(&principal, name, field_name, Action::ALL[action]),
                    };
                    prop_assert_eq!(decision.allowed, reference_field(&sets, &principal, object, field, action));
                    prop_assert_eq!(decision.allowed, !decision.grants.is_empty());
                }
            }
        }
    }

    #[test]
    fn adding_a_set_or_a_profile_never_reduces_access(
        sets in sets(), extra in set(9), principal in principal(), profile in 0..PROFILES.len(),
        records in prop::collection::vec(record(), 1..6),
    ) {
        let before = access(&load(&sets, false), &principal, &records);
        let mut more_sets = sets.clone();
        more_sets.push(extra);
        prop_assert!(at_least(&access(&load(&more_sets, false), &principal, &records), &before));
        let mut more_profiles = principal.clone();
        more_profiles.profiles.push(PROFILES[profile].to_string());
        prop_assert!(at_least(&access(&load(&sets, false), &more_profiles, &records), &before));
    }

    #[test]
    fn a_missing_template_key_never_widens_access(
        sets in sets(), principal in principal(), key in prop::sample::select(vec!["teamId", "level"]),
        records in prop::collection::vec(record(), 1..6),
    ) {
        let engine = load(&sets, false);
        let mut without = principal.clone();
        without.metadata.remove(key);
        prop_assert!(at_least(&access(&engine, &principal, &records), &access(&engine, &without, &records)));
    }

    #[test]
    fn order_and_duplication_change_nothing(sets in sets(), principal in principal(), records in prop::collection::vec(record(), 1..6)) {
        let expected = access(&load(&sets, false), &principal, &records);
        let mut shuffled: Vec<Set> = sets.iter().rev().cloned().collect();
        prop_assert_eq!(&access(&load(&shuffled, true), &principal, &records), &expected);
        if let Some(first) = sets.first() {
            shuffled.push(first.clone());
            prop_assert_eq!(&access(&load(&shuffled, false), &principal, &records), &expected);
        }
    }

    #[test]
    fn an_empty_configuration_grants_nothing(principal in principal(), records in prop::collection::vec(record(), 1..6)) {
        prop_assert!(access(&Permissions::empty(), &principal, &records).iter().all(|allowed| !allowed));
    }
}
