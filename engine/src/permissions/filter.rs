//! The record filter language: the ObjectStack `FilterCondition` form as a
//! typed tree, its parser, and an evaluator over JSON records with
//! MongoDB's semantics.
//!
//! A filter is a JSON object. Each key is a field path (`owner`,
//! `address.city`, in the grammar of [`crate::field_path`]) or a logical operator (`$and`, `$or`, `$not`); keys are
//! AND-ed. A field's value is either a value to equal, or an object of
//! operators (AND-ed): `$eq $ne $gt $gte $lt $lte $in $nin $between
//! $contains $startsWith $endsWith $null $exists`, and `$not` over a
//! field's operators.
//!
//! Semantics, the same on every backend:
//! - a missing field matches `$ne`, `$nin`, `$null: true`, `$exists: false`
//!   (and `$eq: null`), and nothing else;
//! - values of different JSON types never compare (`{"age": {"$gt": "5"}}`
//!   does not match `age: 7`); numbers compare as numbers (two integers
//!   exactly, otherwise as doubles);
//! - two strings that are both RFC 3339 timestamps compare as times;
//! - `$contains` is a substring test on strings and a membership test on
//!   arrays; `$startsWith`/`$endsWith` apply to strings only;
//! - `$between: [low, high]` includes both ends.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::field_path::FieldPath;

/// A malformed filter, with where in it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("filter at `{path}`: {message}")]
pub struct FilterError {
    /// Where in the filter (`$`, `$.age`, `$.$or[1].owner`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one matches (an empty `$and` matches everything).
    And(Vec<Filter>),
    /// Some one matches (an empty `$or` matches nothing).
    Or(Vec<Filter>),
    /// The inner filter does not match.
    Not(Box<Filter>),
    /// A condition on one field.
    Field {
        /// The field's path.
        path: FieldPath,
        /// The condition.
        condition: Condition,
    },
}

/// A condition on one field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equals (`null` also matches a missing field).
    Eq(Value),
    /// Does not equal (a missing field matches).
    Ne(Value),
    /// Greater than, same type.
    Gt(Value),
    /// Greater than or equal, same type.
    Gte(Value),
    /// Less than, same type.
    Lt(Value),
    /// Less than or equal, same type.
    Lte(Value),
    /// Equals one of.
    In(Vec<Value>),
    /// Equals none of (a missing field matches).
    Nin(Vec<Value>),
    /// Between, both ends included.
    Between(Value, Value),
    /// Substring of a string, or element of an array.
    Contains(Value),
    /// String prefix.
    StartsWith(String),
    /// String suffix.
    EndsWith(String),
    /// `true`: missing or null; `false`: present and not null.
    Null(bool),
    /// Whether the field is present.
    Exists(bool),
    /// Every condition holds.
    All(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Filter {
    /// A filter matching every record.
    pub fn everything() -> Self {
        Filter::And(Vec::new())
    }

    /// A filter matching no record.
    pub fn nothing() -> Self {
        Filter::Or(Vec::new())
    }

    /// Parses a filter from its JSON form. A filter nested deeper than
    /// [`MAX_DEPTH`] or holding more than [`MAX_VALUES`] JSON values is
    /// refused: every backend must be able to evaluate what it accepts.
    pub fn parse(json: &Value) -> Result<Self, FilterError> {
        let mut values = 0;
        check_size(json, 0, &mut values)?;
        parse_filter(json, "$")
    }

    /// Whether `record` matches.
    pub fn matches(&self, record: &Value) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(record)),
            Filter::Or(any) => any.iter().any(|f| f.matches(record)),
            Filter::Not(inner) => !inner.matches(record),
            Filter::Field { path, condition } => condition.holds(path.lookup(record)),
        }
    }

    /// Every field path the filter reads, for field-level permission checks.
    pub fn fields(&self) -> BTreeSet<FieldPath> {
        let mut fields = BTreeSet::new();
        self.collect_fields(&mut fields);
        fields
    }

    fn collect_fields(&self, into: &mut BTreeSet<FieldPath>) {
        match self {
            Filter::And(filters) | Filter::Or(filters) => filters.iter().for_each(|f| f.collect_fields(into)),
            Filter::Not(inner) => inner.collect_fields(into),
            Filter::Field { path, .. } => {
                into.insert(path.clone());
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn error(path: &str, message: impl Into<String>) -> FilterError {
    FilterError { path: path.to_string(), message: message.into() }
}

/// The deepest nesting of JSON a filter may have.
pub const MAX_DEPTH: usize = 32;
/// The most JSON values (objects, lists and scalars) a filter may hold.
pub const MAX_VALUES: usize = 2000;

fn check_size(json: &Value, depth: usize, values: &mut usize) -> Result<(), FilterError> {
    *values += 1;
    if depth > MAX_DEPTH {
        return Err(error("$", format!("a filter may nest at most {MAX_DEPTH} levels")));
    }
    if *values > MAX_VALUES {
        return Err(error("$", format!("a filter may hold at most {MAX_VALUES} values")));
    }
    match json {
        Value::Array(items) => items.iter().try_for_each(|item| check_size(item, depth + 1, values)),
        Value::Object(map) => map.values().try_for_each(|item| check_size(item, depth + 1, values)),
        _ => Ok(()),
    }
}

fn parse_filter(json: &Value, at: &str) -> Result<Filter, FilterError> {
    let Value::Object(map) = json else {
        return Err(error(at, format!("a filter is an object, not {}", kind(json))));
    };
    let mut parts = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{at}.{key}");
        parts.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(error(&here, format!("`{key}` takes a list of filters")));
                };
                let filters = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_filter(item, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "$and" { Filter::And(filters) } else { Filter::Or(filters) }
            }
            "$not" => Filter::Not(Box::new(parse_filter(value, &here)?)),
            op if op.starts_with('$') => {
                return Err(error(&here, format!("`{op}` is not a logical operator ($and, $or, $not)")));
            }
            field => {
                let path = FieldPath::parse(field).map_err(|e| error(&here, e.to_string()))?;
                Filter::Field { path, condition: parse_condition(value, &here)? }
            }
        });
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
}

/// Whether `value` is an object of operators (every key starts with `$`).
fn is_operator_object(value: &Value) -> Option<&Map<String, Value>> {
    value.as_object().filter(|map| !map.is_empty() && map.keys().all(|k| k.starts_with('$')))
}

fn parse_condition(value: &Value, at: &str) -> Result<Condition, FilterError> {
    let Some(operators) = is_operator_object(value) else {
        if value.as_object().is_some_and(|map| map.keys().any(|k| k.starts_with('$'))) {
            return Err(error(at, "mixes operators and fields; use only `$` operators or only a value"));
        }
        return Ok(Condition::Eq(value.clone()));
    };
    let mut conditions = Vec::with_capacity(operators.len());
    for (op, operand) in operators {
        let here = format!("{at}.{op}");
        let list = || match operand {
            Value::Array(items) => Ok(items.clone()),
            other => Err(error(&here, format!("`{op}` takes a list, not {}", kind(other)))),
        };
        let text = || match operand {
            Value::String(s) => Ok(s.clone()),
            other => Err(error(&here, format!("`{op}` takes a string, not {}", kind(other)))),
        };
        let flag = || match operand {
            Value::Bool(b) => Ok(*b),
            other => Err(error(&here, format!("`{op}` takes true or false, not {}", kind(other)))),
        };
        let scalar = || match operand {
            Value::Array(_) | Value::Object(_) => {
                Err(error(&here, format!("`{op}` compares with a single value, not {}", kind(operand))))
            }
            other => Ok(other.clone()),
        };
        conditions.push(match op.as_str() {
            "$eq" => Condition::Eq(operand.clone()),
            "$ne" => Condition::Ne(operand.clone()),
            "$gt" => Condition::Gt(scalar()?),
            "$gte" => Condition::Gte(scalar()?),
            "$lt" => Condition::Lt(scalar()?),
            "$lte" => Condition::Lte(scalar()?),
            "$in" => Condition::In(list()?),
            "$nin" => Condition::Nin(list()?),
            "$between" => match list()?.as_slice() {
                [low, high] if !low.is_array() && !high.is_array() => {
                    Condition::Between(low.clone(), high.clone())
                }
                _ => return Err(error(&here, "`$between` takes a list of two values: [low, high]")),
            },
            "$contains" => Condition::Contains(operand.clone()),
            "$startsWith" => Condition::StartsWith(text()?),
            "$endsWith" => Condition::EndsWith(text()?),
            "$null" => Condition::Null(flag()?),
            "$exists" => Condition::Exists(flag()?),
            "$not" => Condition::Not(Box::new(parse_condition(operand, &here)?)),
            other => {
                return Err(error(
                    &here,
                    format!(
                        "`{other}` is not an operator ($eq $ne $gt $gte $lt $lte $in $nin $between $contains \
                         $startsWith $endsWith $null $exists $not)"
                    ),
                ));
            }
        });
    }
    Ok(if conditions.len() == 1 { conditions.remove(0) } else { Condition::All(conditions) })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    // Cheap pre-check: RFC 3339 starts with a four-digit year and a dash.
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok()
}

/// A text key of the instant `text` names, if it is an RFC 3339 timestamp:
/// two keys compare as their instants do (a leap second included). Backends
/// that compare in their own query language use it so that timestamps
/// compare exactly as [`Filter::matches`] compares them.
pub(crate) fn time_key(text: &str) -> Option<String> {
    let at = timestamp(text)?;
    // Years 0000-9999 in any offset stay within ±10^12 seconds.
    Some(format!("{:013}{:010}", at.timestamp() + 1_000_000_000_000, at.timestamp_subsec_nanos()))
}

/// Numbers by value: two integers exactly, anything else as doubles.
pub(crate) fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a.as_f64().unwrap_or(0.0).partial_cmp(&b.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal),
    }
}

/// How two values order, if they are comparable: same JSON type (numbers
/// as numbers, timestamps as times, other strings by code point, booleans
/// false < true). Null, lists and objects do not order.
fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => Some(compare_numbers(a, b)),
        (Value::String(a), Value::String(b)) => match (timestamp(a), timestamp(b)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(a.cmp(b)),
        },
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Equality with the same type rules: numbers by value, timestamps as times.
fn equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
            compare(left, right) == Some(Ordering::Equal)
        }
        _ => left == right,
    }
}

/// `$eq`: `null` also matches a missing field.
fn equals(value: Option<&Value>, expected: &Value) -> bool {
    match expected {
        Value::Null => value.is_none_or(Value::is_null),
        expected => value.is_some_and(|v| equal(v, expected)),
    }
}

impl Condition {
    /// Whether the condition holds for a field's value (`None`: missing).
    pub fn holds(&self, value: Option<&Value>) -> bool {
        let ordered = |bound: &Value, accept: fn(Ordering) -> bool| {
            value.and_then(|v| compare(v, bound)).is_some_and(accept)
        };
        match self {
            Condition::Eq(expected) => equals(value, expected),
            Condition::Ne(expected) => !equals(value, expected),
            Condition::Gt(bound) => ordered(bound, Ordering::is_gt),
            Condition::Gte(bound) => ordered(bound, Ordering::is_ge),
            Condition::Lt(bound) => ordered(bound, Ordering::is_lt),
            Condition::Lte(bound) => ordered(bound, Ordering::is_le),
            Condition::In(options) => value.is_some_and(|v| options.iter().any(|o| equal(v, o))),
            Condition::Nin(options) => !value.is_some_and(|v| options.iter().any(|o| equal(v, o))),
            Condition::Between(low, high) => ordered(low, Ordering::is_ge) && ordered(high, Ordering::is_le),
            Condition::Contains(needle) => match (value, needle) {
                (Some(Value::String(hay)), Value::String(needle)) => hay.contains(needle.as_str()),
                (Some(Value::Array(items)), needle) => items.iter().any(|item| equal(item, needle)),
                _ => false,
            },
            Condition::StartsWith(prefix) => {
                value.and_then(Value::as_str).is_some_and(|s| s.starts_with(prefix.as_str()))
            }
            Condition::EndsWith(suffix) => {
                value.and_then(Value::as_str).is_some_and(|s| s.ends_with(suffix.as_str()))
            }
            Condition::Null(true) => value.is_none_or(Value::is_null),
            Condition::Null(false) => value.is_some_and(|v| !v.is_null()),
            Condition::Exists(present) => value.is_some() == *present,
            Condition::All(all) => all.iter().all(|c| c.holds(value)),
            Condition::Not(inner) => !inner.holds(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matches(filter: Value, record: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&record)
    }

    fn parse_error(filter: Value) -> String {
        Filter::parse(&filter).unwrap_err().to_string()
    }

    #[test]
    fn equality_and_implicit_and() {
        let record = json!({"owner": "u1", "teamId": 7, "address": {"city": "Oslo"}});
        assert!(matches(json!({"owner": "u1"}), record.clone()));
        assert!(matches(json!({"owner": "u1", "teamId": 7.0}), record.clone()), "numbers compare by value");
        assert!(
            !matches(json!({"owner": "u1", "teamId": "7"}), record.clone()),
            "different types never equal"
        );
        assert!(matches(json!({"address.city": "Oslo"}), record.clone()));
        assert!(!matches(json!({"address.zip": "0150"}), record.clone()));
        assert!(matches(json!({}), record), "an empty filter matches everything");
    }

    #[test]
    fn missing_fields_follow_mongodb() {
        let record = json!({"name": "Ada"});
        assert!(matches(json!({"level": {"$ne": 3}}), record.clone()));
        assert!(matches(json!({"level": {"$nin": [1, 2]}}), record.clone()));
        assert!(matches(json!({"level": {"$null": true}}), record.clone()));
        assert!(matches(json!({"level": null}), record.clone()));
        assert!(matches(json!({"level": {"$exists": false}}), record.clone()));
        for op in ["$eq", "$gt", "$gte", "$lt", "$lte"] {
            assert!(!matches(json!({"level": {op: 3}}), record.clone()), "{op} on a missing field");
        }
        assert!(!matches(json!({"level": {"$in": [3]}}), record.clone()));
        assert!(!matches(json!({"level": {"$between": [1, 5]}}), record));
    }

    #[test]
    fn comparisons_need_the_same_type() {
        let record = json!({"level": 3, "name": "Bea", "ok": true});
        assert!(matches(json!({"level": {"$lte": 3, "$gt": 1}}), record.clone()));
        assert!(!matches(json!({"level": {"$lte": "9"}}), record.clone()));
        assert!(matches(json!({"name": {"$gt": "Ada", "$lt": "Cy"}}), record.clone()));
        assert!(matches(json!({"level": {"$between": [3, 4]}}), record.clone()));
        assert!(matches(json!({"level": {"$in": [1, 3.0]}}), record.clone()));
        assert!(!matches(json!({"ok": {"$gt": 1}}), record));
    }

    #[test]
    fn timestamps_compare_as_times() {
        // The same instant in two offsets, and one lexically smaller but later.
        let record = json!({"created_at": "2026-01-01T10:00:00+02:00"});
        assert!(matches(json!({"created_at": "2026-01-01T08:00:00Z"}), record.clone()));
        assert!(matches(json!({"created_at": {"$lt": "2026-01-01T08:30:00Z"}}), record.clone()));
        assert!(matches(json!({"created_at": {"$gt": "2026-01-01T07:59:59.999Z"}}), record));
    }

    #[test]
    fn strings_lists_and_logic() {
        let record = json!({"email": "ada@example.com", "tags": ["vip", "eu"], "status": "open"});
        assert!(matches(json!({"email": {"$contains": "@example"}}), record.clone()));
        assert!(matches(json!({"tags": {"$contains": "vip"}}), record.clone()));
        assert!(matches(json!({"email": {"$startsWith": "ada", "$endsWith": ".com"}}), record.clone()));
        assert!(matches(
            json!({"$or": [{"status": "closed"}, {"tags": {"$contains": "eu"}}]}),
            record.clone()
        ));
        assert!(!matches(json!({"$or": []}), record.clone()), "an empty $or matches nothing");
        assert!(matches(json!({"$not": {"status": "closed"}}), record.clone()));
        assert!(matches(json!({"status": {"$not": {"$in": ["closed", "void"]}}}), record.clone()));
        assert!(matches(json!({"$and": [{"status": "open"}, {"email": {"$exists": true}}]}), record));
    }

    #[test]
    fn referenced_fields_are_listed() {
        let filter = Filter::parse(&json!({
            "$or": [{"owner": "u1"}, {"salary": {"$gt": 5}}],
            "$not": {"address.city": "Oslo"},
            "level": {"$lte": 3}
        }))
        .unwrap();
        let fields: Vec<String> = filter.fields().into_iter().map(String::from).collect();
        assert_eq!(fields, ["address.city", "level", "owner", "salary"]);
    }

    #[test]
    fn errors_name_the_operator_and_path() {
        assert_eq!(
            parse_error(json!({"age": {"$gtx": 3}})),
            "filter at `$.age.$gtx`: `$gtx` is not an operator ($eq $ne $gt $gte $lt $lte $in $nin $between \
             $contains $startsWith $endsWith $null $exists $not)"
        );
        assert_eq!(
            parse_error(json!({"age": {"$in": 3}})),
            "filter at `$.age.$in`: `$in` takes a list, not a number"
        );
        assert_eq!(
            parse_error(json!({"$or": [{"a": 1}, {"b": {"$between": [1]}}]})),
            "filter at `$.$or[1].b.$between`: `$between` takes a list of two values: [low, high]"
        );
        assert!(parse_error(json!({"$where": "1"})).contains("`$where` is not a logical operator"));
        assert!(parse_error(json!({"a": {"$gt": 1, "b": 2}})).contains("mixes operators and fields"));
        assert!(parse_error(json!(["a"])).contains("a filter is an object, not a list"));
        assert!(parse_error(json!({"a..b": 1})).contains("is not a field path"));
        assert!(parse_error(json!({"a\"b": 1})).contains("is not a field path"));
        assert!(parse_error(json!({"sal\\u0061ry": 1})).contains("is not a field path"));
        let mut deep = json!({"a": 1});
        for _ in 0..40 {
            deep = json!({"$not": deep});
        }
        assert!(parse_error(deep).contains("at most 32 levels"));
        let wide: Vec<i64> = (0..3000).collect();
        assert!(parse_error(json!({"a": {"$in": wide}})).contains("at most 2000 values"));
        assert!(parse_error(json!({"n": {"$null": "yes"}})).contains("takes true or false"));
    }
}
