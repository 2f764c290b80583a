//! Field names and paths at the records engine: which are acceptable,
//! which touch a restricted field, and how hidden fields leave a record.
//! Every name and path is a [`FieldPath`], so a check and the query the
//! store runs see the same field.

use serde_json::Value;

use crate::field_path::{FieldPath, FieldPathError};
use crate::store::records::{Record, SYSTEM_FIELDS};

/// Parses a top-level field name (or record id), refusing anything outside
/// the grammar.
pub(crate) fn check_name(name: &str) -> Result<FieldPath, FieldPathError> {
    FieldPath::name(name)
}

/// Refuses a key anywhere inside `value` that holds a control character.
/// No path can name such a key, and SQLite compares a key holding NUL as
/// if it ended there (so `a` would find `a\0b`): records never hold one.
pub(crate) fn check_nested_keys(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(map) => map.iter().try_for_each(|(key, inner)| {
            if key.chars().any(char::is_control) {
                return Err(format!("key `{}` holds a control character", key.escape_debug()));
            }
            check_nested_keys(inner)
        }),
        Value::Array(items) => items.iter().try_for_each(check_nested_keys),
        _ => Ok(()),
    }
}

/// The first of `paths` that touches one of `restricted`.
pub(crate) fn first_touching<'a>(
    paths: impl IntoIterator<Item = &'a FieldPath>,
    restricted: &[FieldPath],
) -> Option<&'a FieldPath> {
    paths.into_iter().find(|path| restricted.iter().any(|field| path.touches(field)))
}

/// Whether `name` is a system field.
pub(crate) fn is_system(name: &str) -> bool {
    SYSTEM_FIELDS.contains(&name)
}

/// Removes every field in `hidden` (dotted paths reach inside objects).
pub(crate) fn strip(record: &mut Record, hidden: &[FieldPath]) {
    for path in hidden {
        let mut steps: Vec<&str> = path.segments().collect();
        let last = steps.pop().expect("a path has at least one segment");
        let mut here = Some(&mut *record);
        for step in steps {
            here = here.and_then(|map| map.get_mut(step)).and_then(Value::as_object_mut);
        }
        if let Some(map) = here {
            map.remove(last);
        }
    }
}

/// Keeps `id` and the fields in `keep`.
pub(crate) fn project(record: Record, keep: &[FieldPath]) -> Record {
    record.into_iter().filter(|(name, _)| name == "id" || keep.iter().any(|k| k.as_str() == name)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(texts: &[&str]) -> Vec<FieldPath> {
        texts.iter().map(|t| FieldPath::parse(t).unwrap()).collect()
    }

    #[test]
    fn strip_reaches_inside_objects() {
        let Value::Object(mut record) =
            json!({"id": "1", "salary": 5, "address": {"city": "Oslo", "zip": "0150"}})
        else {
            unreachable!()
        };
        strip(&mut record, &paths(&["salary", "address.city", "missing.deep"]));
        assert_eq!(Value::Object(record), json!({"id": "1", "address": {"zip": "0150"}}));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("amount_1").is_ok());
        for bad in ["", "$where", "a.b", "a\"b", "tab\there", "back\\slash"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nested_keys_hold_no_control_character() {
        assert!(check_nested_keys(&json!({"a": {"b.c": [{"d e": 1}]}})).is_ok());
        let error = check_nested_keys(&json!({"a": [{"b\u{0}c": 1}]})).unwrap_err();
        assert!(error.contains("b\\0c"), "{error}");
    }

    #[test]
    fn the_first_touching_path_is_named() {
        let hidden = paths(&["salary", "address.city"]);
        let asked = paths(&["name", "address", "salary.base"]);
        assert_eq!(first_touching(&asked, &hidden).map(FieldPath::as_str), Some("address"));
        assert_eq!(first_touching(&paths(&["name"]), &hidden), None);
    }
}
