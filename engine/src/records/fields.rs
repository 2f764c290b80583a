//! Field names and paths: which are acceptable, which touch a restricted
//! field, and how hidden fields leave a record.

use serde_json::Value;

use crate::store::records::{Record, SYSTEM_FIELDS};

/// Why a top-level field name is refused, if it is.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("field name `{name}` must be 1 to 128 bytes"));
    }
    if name.starts_with('$') || name.contains(['.', '"']) || name.chars().any(char::is_control) {
        return Err(format!(
            "field name `{name}` may not start with `$` or contain `.`, `\"` or control characters"
        ));
    }
    Ok(())
}

/// Why a dotted path (in a sort) is refused, if it is.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    path.split('.').try_for_each(check_name).map_err(|e| format!("in path `{path}`: {e}"))
}

/// Whether reading or writing `path` reveals or changes `field` (one is
/// the other, or inside it).
pub(crate) fn touches(path: &str, field: &str) -> bool {
    let inside = |a: &str, b: &str| a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'.';
    path == field || inside(path, field) || inside(field, path)
}

/// The first of `paths` that touches one of `restricted`, with the field.
pub(crate) fn first_touching<'a>(
    paths: impl IntoIterator<Item = &'a str>,
    restricted: &[String],
) -> Option<&'a str> {
    paths.into_iter().find(|path| restricted.iter().any(|field| touches(path, field)))
}

/// Whether `name` is a system field.
pub(crate) fn is_system(name: &str) -> bool {
    SYSTEM_FIELDS.contains(&name)
}

/// Removes every field in `hidden` (dotted paths reach inside objects).
pub(crate) fn strip(record: &mut Record, hidden: &[String]) {
    for path in hidden {
        let mut steps: Vec<&str> = path.split('.').collect();
        let last = steps.pop().expect("split yields at least one step");
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
pub(crate) fn project(record: Record, keep: &[String]) -> Record {
    record.into_iter().filter(|(name, _)| name == "id" || keep.iter().any(|k| k == name)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn touching_is_containment_either_way() {
        assert!(touches("salary", "salary"));
        assert!(touches("salary.base", "salary"));
        assert!(touches("address", "address.city"));
        assert!(!touches("salaryBand", "salary"));
        assert!(!touches("address.zip", "address.city"));
    }

    #[test]
    fn strip_reaches_inside_objects() {
        let Value::Object(mut record) =
            json!({"id": "1", "salary": 5, "address": {"city": "Oslo", "zip": "0150"}})
        else {
            unreachable!()
        };
        strip(&mut record, &["salary".into(), "address.city".into(), "missing.deep".into()]);
        assert_eq!(Value::Object(record), json!({"id": "1", "address": {"zip": "0150"}}));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("amount_1").is_ok());
        for bad in ["", "$where", "a.b", "a\"b", "tab\there"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("address.city").is_ok());
        assert!(check_path("address..city").is_err());
    }
}
