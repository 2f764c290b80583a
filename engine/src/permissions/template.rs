//! Templates in record filters: `{{ userId }}`, `{{ profile }}` and
//! `{{ user.<key> }}` (from the principal's metadata, dotted for nested
//! values), substituted anywhere in a filter — inside operators and lists.
//!
//! A string that is exactly one template takes the value's JSON type (a
//! number stays a number, a list a list); a template inside other text is
//! written into it. A template naming a missing key makes the whole filter
//! unusable (`None`): the caller then matches nothing, so a missing key can
//! never widen access.

use serde_json::Value;

use super::filter::Filter;
use crate::principal::Principal;

/// What one template refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference<'a> {
    UserId,
    Profile,
    User(&'a str),
}

fn reference(name: &str) -> Result<Reference<'_>, String> {
    match name {
        "userId" => Ok(Reference::UserId),
        "profile" => Ok(Reference::Profile),
        _ => match name.strip_prefix("user.") {
            Some(key) if !key.is_empty() && !key.split('.').any(str::is_empty) => Ok(Reference::User(key)),
            _ => Err(format!("`{{{{ {name} }}}}` is not a template (userId, profile, user.<key>)")),
        },
    }
}

/// The pieces of a string: text and template names, in order.
fn pieces(text: &str) -> Result<Vec<Result<&str, &str>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("`{text}` opens a template without closing it"))?;
        if start > 0 {
            pieces.push(Ok(&rest[..start]));
        }
        pieces.push(Err(rest[start + 2..start + end].trim()));
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Ok(rest));
    }
    Ok(pieces)
}

fn lookup(principal: &Principal, profile: &str, name: &Reference<'_>) -> Option<Value> {
    match name {
        Reference::UserId => Some(Value::String(principal.user_id.clone())),
        Reference::Profile => Some(Value::String(profile.to_string())),
        Reference::User(path) => {
            let mut parts = path.split('.');
            let first = principal.metadata.get(parts.next()?)?;
            parts.try_fold(first, |value, key| value.as_object()?.get(key)).cloned()
        }
    }
}

fn substitute_string(text: &str, principal: &Principal, profile: &str) -> Option<Value> {
    let pieces = pieces(text).ok()?;
    if let [Err(name)] = pieces.as_slice() {
        return lookup(principal, profile, &reference(name).ok()?);
    }
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Ok(text) => out.push_str(text),
            Err(name) => match lookup(principal, profile, &reference(name).ok()?)? {
                Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Some(Value::String(out))
}

/// `filter` with every template replaced for `principal` evaluating
/// `profile`; `None` if a template names a missing key.
pub fn substitute(filter: &Value, principal: &Principal, profile: &str) -> Option<Value> {
    Some(match filter {
        Value::String(text) if text.contains("{{") => substitute_string(text, principal, profile)?,
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute(v, principal, profile)).collect::<Option<_>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Some((k.clone(), substitute(v, principal, profile)?)))
                .collect::<Option<_>>()?,
        ),
        other => other.clone(),
    })
}

/// A stand-in for an exact template in the operand of `operator`, of the
/// shape the operator takes, so a filter can be checked before any
/// principal is known.
fn stand_in(operator: Option<&str>) -> Value {
    match operator {
        Some("$in" | "$nin") => Value::Array(Vec::new()),
        Some("$between") => serde_json::json!([0, 0]),
        Some("$null" | "$exists") => Value::Bool(true),
        _ => Value::String("template".into()),
    }
}

fn stand_ins(filter: &Value, operator: Option<&str>) -> Result<Value, String> {
    Ok(match filter {
        Value::String(text) if text.contains("{{") => {
            let pieces = pieces(text)?;
            for name in pieces.iter().filter_map(|p| p.err()) {
                reference(name)?;
            }
            match pieces.as_slice() {
                [Err(_)] => stand_in(operator),
                _ => Value::String("template".into()),
            }
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| stand_ins(v, None)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), stand_ins(v, k.starts_with('$').then_some(k.as_str()))?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks a filter with templates: the templates are known and the filter
/// is well-formed whatever they are replaced with.
pub fn check(filter: &Value) -> Result<(), String> {
    Filter::parse(&stand_ins(filter, None)?).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hr() -> Principal {
        let mut principal = Principal::new("u7", &["hr", "sales"]);
        principal.metadata.insert("level".into(), json!(3));
        principal.metadata.insert("teams".into(), json!(["t1", "t2"]));
        principal.metadata.insert("org".into(), json!({"region": "eu"}));
        principal
    }

    #[test]
    fn exact_templates_keep_their_type_anywhere() {
        let filter = json!({
            "owner": "{{ userId }}",
            "level": {"$lte": "{{user.level}}"},
            "teamId": {"$in": "{{ user.teams }}"},
            "$or": [{"region": "{{ user.org.region }}"}, {"visibleTo": {"$contains": "{{ profile }}"}}],
            "label": "team of {{ userId }} at level {{ user.level }}"
        });
        assert_eq!(
            substitute(&filter, &hr(), "hr").unwrap(),
            json!({
                "owner": "u7",
                "level": {"$lte": 3},
                "teamId": {"$in": ["t1", "t2"]},
                "$or": [{"region": "eu"}, {"visibleTo": {"$contains": "hr"}}],
                "label": "team of u7 at level 3"
            })
        );
    }

    #[test]
    fn a_missing_key_makes_the_filter_unusable() {
        assert_eq!(substitute(&json!({"teamId": "{{ user.teamId }}"}), &hr(), "hr"), None);
        assert_eq!(substitute(&json!({"$or": [{"a": 1}, {"b": "x{{ user.nope }}"}]}), &hr(), "hr"), None);
    }

    #[test]
    fn check_accepts_templates_in_any_operand_and_refuses_unknown_ones() {
        check(&json!({"teamId": {"$in": "{{ user.teams }}"}, "n": {"$between": "{{ user.range }}"}}))
            .unwrap();
        check(&json!({"owner": "{{ userId }}", "level": {"$lte": "{{ user.level }}"}})).unwrap();
        assert!(check(&json!({"owner": "{{ user }}"})).unwrap_err().contains("is not a template"));
        assert!(check(&json!({"owner": "{{ userId"})).unwrap_err().contains("without closing"));
        assert!(
            check(&json!({"owner": {"$eqq": "{{ userId }}"}}))
                .unwrap_err()
                .contains("`$eqq` is not an operator")
        );
    }
}
