//! Filters and orders compiled into SQLite SQL over the `records` table,
//! giving exactly the answers of [`Filter::matches`] and of the order in
//! [`crate::store::records`] (the differential tests hold them to it).
//!
//! System fields are columns (`owner = ?` uses an index); other fields live
//! in the `body` JSON and are read with `json_type`/`json_extract`. Every
//! condition checks the JSON type first, because values of different types
//! never compare, and is written so it is never SQL NULL: three-valued
//! logic under `NOT` would otherwise turn "missing" into "no answer".
//! Two functions the store registers on its connections keep the
//! semantics that SQL lacks: `objectos_time(text)`, the instant of an RFC
//! 3339 timestamp as a sortable key (NULL for other text), and
//! `objectos_json_eq(a, b)`, equality of two lists or objects.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Error};
use serde_json::Value;

use crate::field_path::FieldPath;
use crate::permissions::filter::time_key;
use crate::permissions::{Condition, Filter};
use crate::sandbox::{SortKey, SortOrder};
use crate::store::records::{Position, SYSTEM_FIELDS, SortValue};

/// SQL text and its positional parameters.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<SqlValue>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn param(&mut self, value: SqlValue) {
        self.text.push('?');
        self.params.push(value);
    }

    fn text_param(&mut self, text: &str) {
        self.param(SqlValue::Text(text.to_string()));
    }
}

/// Registers the functions compiled filters call.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("objectos_time", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0).as_str() {
            Ok(text) => time_key(text),
            Err(_) => None,
        })
    })?;
    conn.create_scalar_function("objectos_json_eq", 2, flags, |ctx| {
        let parse = |i| -> Result<Value, Error> {
            let text = ctx.get_raw(i).as_str().map_err(|e| Error::UserFunctionError(e.into()))?;
            serde_json::from_str(text).map_err(|e| Error::UserFunctionError(e.into()))
        };
        Ok(parse(0)? == parse(1)?)
    })
}

/// Where a field's value is read from.
struct Target {
    /// Its JSON type (`json_type` names), or `None` for a text column.
    kind: Option<String>,
    /// Its SQL value.
    value: String,
    /// Its JSON path literal, for a body field.
    path: Option<String>,
}

impl Target {
    fn of(path: &FieldPath) -> Self {
        if SYSTEM_FIELDS.contains(&path.as_str()) {
            return Target { kind: None, value: path.to_string(), path: None };
        }
        let json_path = json_path(path);
        Target {
            kind: Some(format!("json_type(body, {json_path})")),
            value: format!("json_extract(body, {json_path})"),
            path: Some(json_path),
        }
    }

    /// The elements of the list at this target, inside `json_each`.
    fn element() -> Self {
        Target { kind: Some("je.type".into()), value: "je.value".into(), path: None }
    }

    /// A condition that the type is one of `kinds`, as SQL (constant for a column).
    fn is(&self, kinds: &[&str]) -> String {
        match &self.kind {
            None if kinds.contains(&"text") => "1".into(),
            None => "0".into(),
            Some(kind) => {
                let tests: Vec<String> = kinds.iter().map(|k| format!("{kind} IS '{k}'")).collect();
                format!("({})", tests.join(" OR "))
            }
        }
    }
}

/// `'$."a"."b"'` as a SQL string literal. Each segment is quoted whole:
/// the field-path grammar admits no `"`, `\` or control character in a
/// segment, so SQLite reads every byte of it as itself — no escape it
/// would decode can make the path name another field than the checks saw.
fn json_path(path: &FieldPath) -> String {
    let steps: String = path.segments().map(|step| format!(".\"{step}\"")).collect();
    format!("'${}'", steps.replace('\'', "''"))
}

/// Compiles `filter` into a boolean SQL expression over a `records` row.
pub(crate) fn compile(filter: &Filter, sql: &mut Sql) {
    match filter {
        Filter::And(parts) => join(sql, parts, " AND ", "1", |sql, part| compile(part, sql)),
        Filter::Or(parts) => join(sql, parts, " OR ", "0", |sql, part| compile(part, sql)),
        Filter::Not(inner) => {
            sql.push("NOT (");
            compile(inner, sql);
            sql.push(")");
        }
        Filter::Field { path, condition } => compile_condition(&Target::of(path), condition, sql),
    }
}

/// `(a OR b …)` (or AND) over `items`; `empty` when there are none. Long
/// lists are grouped in balanced halves: SQLite limits the depth of an
/// expression tree (1,000), and a flat chain is as deep as it is long.
fn join<T>(sql: &mut Sql, items: &[T], joiner: &str, empty: &str, each: impl Fn(&mut Sql, &T) + Copy) {
    const FLAT: usize = 8;
    if items.is_empty() {
        sql.push(empty);
        return;
    }
    sql.push("(");
    if items.len() > FLAT {
        let (left, right) = items.split_at(items.len() / 2);
        join(sql, left, joiner, empty, each);
        sql.push(joiner);
        join(sql, right, joiner, empty, each);
    } else {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                sql.push(joiner);
            }
            each(sql, item);
        }
    }
    sql.push(")");
}

fn compile_condition(target: &Target, condition: &Condition, sql: &mut Sql) {
    match condition {
        Condition::Eq(Value::Null) | Condition::Null(true) => null_or_missing(target, sql),
        Condition::Null(false) => {
            sql.push("NOT ");
            null_or_missing(target, sql);
        }
        Condition::Eq(value) => equal(target, value, sql),
        Condition::Ne(value) => {
            negate(sql, |sql| compile_condition(target, &Condition::Eq(value.clone()), sql))
        }
        Condition::Gt(bound) => ordered(target, ">", bound, sql),
        Condition::Gte(bound) => ordered(target, ">=", bound, sql),
        Condition::Lt(bound) => ordered(target, "<", bound, sql),
        Condition::Lte(bound) => ordered(target, "<=", bound, sql),
        Condition::Between(low, high) => {
            sql.push("(");
            ordered(target, ">=", low, sql);
            sql.push(" AND ");
            ordered(target, "<=", high, sql);
            sql.push(")");
        }
        Condition::In(options) => one_of(target, options, sql),
        Condition::Nin(options) => {
            negate(sql, |sql| compile_condition(target, &Condition::In(options.clone()), sql))
        }
        Condition::Contains(needle) => contains(target, needle, sql),
        Condition::StartsWith(prefix) => affix(target, prefix, 1, sql),
        Condition::EndsWith(suffix) => affix(target, suffix, -1, sql),
        Condition::Exists(present) => match &target.kind {
            None => sql.push(if *present { "1" } else { "0" }),
            Some(kind) => sql.push(&format!("({kind} IS {}NULL)", if *present { "NOT " } else { "" })),
        },
        Condition::All(conditions) => {
            join(sql, conditions, " AND ", "1", |sql, c| compile_condition(target, c, sql))
        }
        Condition::Not(inner) => negate(sql, |sql| compile_condition(target, inner, sql)),
    }
}

fn negate(sql: &mut Sql, inner: impl FnOnce(&mut Sql)) {
    sql.push("NOT (");
    inner(sql);
    sql.push(")");
}

fn null_or_missing(target: &Target, sql: &mut Sql) {
    match &target.kind {
        None => sql.push("0"),
        Some(kind) => sql.push(&format!("coalesce({kind}, 'null') = 'null'")),
    }
}

/// `kind-check AND rest`, or just `rest` when the check is constant true.
fn typed(target: &Target, kinds: &[&str], sql: &mut Sql, rest: impl FnOnce(&mut Sql)) {
    match target.is(kinds).as_str() {
        "0" => sql.push("0"),
        "1" => {
            sql.push("(");
            rest(sql);
            sql.push(")");
        }
        check => {
            sql.push(&format!("({check} AND "));
            rest(sql);
            sql.push(")");
        }
    }
}

fn number(n: &serde_json::Number) -> SqlValue {
    match n.as_i64() {
        Some(i) => SqlValue::Integer(i),
        None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
    }
}

/// Whether `json_extract` alone tells `value` apart, so the JSON type
/// need not be checked: a field's extracted value equals it only if the
/// field holds exactly it. Lists and objects extract as their JSON text
/// (which a string starting with `[` or `{` could equal), booleans as 0
/// and 1 (which those numbers would equal).
fn self_typed(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.starts_with(['[', '{']),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && f != 1.0),
        _ => false,
    }
}

/// `rest`, made false instead of NULL for a missing field.
fn never_null(target: &Target, sql: &mut Sql, rest: impl FnOnce(&mut Sql)) {
    let json = target.kind.is_some();
    sql.push("(");
    if json {
        sql.push("(");
    }
    rest(sql);
    if json {
        sql.push(") IS 1");
    }
    sql.push(")");
}

fn bind(value: &Value, sql: &mut Sql) {
    match value {
        Value::Number(n) => sql.param(number(n)),
        Value::String(s) => sql.text_param(s),
        other => sql.text_param(&other.to_string()),
    }
}

/// The field is present and equal to `value` (the evaluator's `equal`).
fn equal(target: &Target, value: &Value, sql: &mut Sql) {
    let v = &target.value;
    if self_typed(value) {
        // One extraction and no type test: the common case, kept cheap.
        sql.push("(");
        never_null(target, sql, |sql| {
            sql.push(&format!("{v} = "));
            bind(value, sql);
        });
        if let Some(key) = value.as_str().and_then(time_key) {
            sql.push(&format!(" OR objectos_time({v}) IS "));
            sql.param(SqlValue::Text(key));
        }
        sql.push(")");
        return;
    }
    match value {
        Value::Null => typed(target, &["null"], sql, |sql| sql.push("1")),
        Value::Bool(b) => typed(target, &[if *b { "true" } else { "false" }], sql, |sql| sql.push("1")),
        Value::Number(n) => typed(target, &["integer", "real"], sql, |sql| {
            sql.push(&format!("{v} = "));
            sql.param(number(n));
        }),
        Value::String(s) => typed(target, &["text"], sql, |sql| {
            sql.push(&format!("{v} = "));
            sql.text_param(s);
        }),
        Value::Array(_) | Value::Object(_) => {
            let kind = if value.is_array() { "array" } else { "object" };
            typed(target, &[kind], sql, |sql| {
                sql.push(&format!("objectos_json_eq({v}, "));
                sql.text_param(&value.to_string());
                sql.push(")");
            })
        }
    }
}

/// The field equals one of `options`.
fn one_of(target: &Target, options: &[Value], sql: &mut Sql) {
    let plain = |o: &Value| self_typed(o) && o.as_str().and_then(time_key).is_none();
    if target.kind.is_none() && options.len() > 1 && options.iter().all(|o| o.is_string() && plain(o)) {
        // A text column (`id`, `owner`) against text: a plain `IN` list,
        // which SQLite answers from the column's index — a batch of ids
        // costs lookups, not a scan of the object.
        sql.push(&format!("{} IN (", target.value));
        for (i, option) in options.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            bind(option, sql);
        }
        sql.push(")");
    } else if options.len() > 1 && options.iter().all(plain) {
        // One extraction for the whole list (an `IN` list would build a
        // temporary b-tree per evaluation); a missing field matches no arm.
        sql.push(&format!("(CASE {}", target.value));
        for option in options {
            sql.push(" WHEN ");
            bind(option, sql);
            sql.push(" THEN 1");
        }
        sql.push(" ELSE 0 END)");
    } else {
        join(sql, options, " OR ", "0", |sql, o| equal(target, o, sql));
    }
}

/// The field compares with `bound` by `op` (same type only).
fn ordered(target: &Target, op: &str, bound: &Value, sql: &mut Sql) {
    let v = &target.value;
    match bound {
        Value::Number(n) => typed(target, &["integer", "real"], sql, |sql| {
            sql.push(&format!("{v} {op} "));
            sql.param(number(n));
        }),
        Value::Bool(b) => typed(target, &["true", "false"], sql, |sql| {
            sql.push(&format!("{v} {op} "));
            sql.param(SqlValue::Integer(*b as i64));
        }),
        Value::String(s) => typed(target, &["text"], sql, |sql| match time_key(s) {
            None => {
                sql.push(&format!("{v} {op} "));
                sql.text_param(s);
            }
            Some(key) => {
                sql.push(&format!("CASE WHEN objectos_time({v}) IS NULL THEN {v} {op} "));
                sql.text_param(s);
                sql.push(&format!(" ELSE objectos_time({v}) {op} "));
                sql.param(SqlValue::Text(key));
                sql.push(" END");
            }
        }),
        _ => sql.push("0"),
    }
}

fn contains(target: &Target, needle: &Value, sql: &mut Sql) {
    sql.push("(");
    if let Value::String(s) = needle {
        typed(target, &["text"], sql, |sql| {
            if s.is_empty() {
                sql.push("1");
            } else {
                sql.push(&format!("instr({}, ", target.value));
                sql.text_param(s);
                sql.push(") > 0");
            }
        });
        sql.push(" OR ");
    }
    match &target.path {
        None => sql.push("0"),
        Some(path) => typed(target, &["array"], sql, |sql| {
            sql.push(&format!("EXISTS (SELECT 1 FROM json_each(body, {path}) AS je WHERE "));
            equal(&Target::element(), needle, sql);
            sql.push(")");
        }),
    }
    sql.push(")");
}

/// A string prefix (`side` 1) or suffix (`side` -1).
fn affix(target: &Target, affix: &str, side: i64, sql: &mut Sql) {
    typed(target, &["text"], sql, |sql| {
        if affix.is_empty() {
            sql.push("1");
            return;
        }
        let chars = affix.chars().count() as i64;
        let v = &target.value;
        if side > 0 {
            sql.push(&format!("substr({v}, 1, {chars}) = "));
        } else {
            sql.push(&format!("substr({v}, -{chars}) = "));
        }
        sql.text_param(affix);
    });
}

/// One sort key as SQL: its kind's rank (none for a column) and its value.
fn sort_exprs(field: &FieldPath) -> (Option<String>, String) {
    let target = Target::of(field);
    match target.kind {
        None => (None, target.value),
        Some(kind) => (
            Some(format!(
                "CASE {kind} WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'object' THEN 3 \
                 WHEN 'array' THEN 4 WHEN 'true' THEN 5 WHEN 'false' THEN 5 ELSE 0 END"
            )),
            format!(
                "CASE {kind} WHEN 'object' THEN 0 WHEN 'array' THEN 0 ELSE coalesce({}, 0) END",
                target.value
            ),
        ),
    }
}

/// The keys that decide the order: all of them, or those up to the first
/// on `id` — which is unique, so no later key can matter — and whether
/// they end with it. A query sorted by `id` then pages on the primary key
/// alone.
fn deciding(sort: &[SortKey]) -> (&[SortKey], bool) {
    match sort.iter().position(|key| key.field.as_str() == "id") {
        Some(at) => (&sort[..=at], true),
        None => (sort, false),
    }
}

/// The columns of the order: (expression, descending), `id` last.
fn order_columns(sort: &[SortKey]) -> Vec<(String, bool)> {
    let (sort, by_id) = deciding(sort);
    let mut columns = Vec::with_capacity(sort.len() * 2 + 1);
    for key in sort {
        let desc = key.order == SortOrder::Desc;
        let (rank, value) = sort_exprs(&key.field);
        columns.extend(rank.map(|rank| (rank, desc)));
        columns.push((value, desc));
    }
    if !by_id {
        columns.push(("id".into(), false));
    }
    columns
}

/// `ORDER BY …` for `sort`.
pub(crate) fn order_by(sort: &[SortKey]) -> String {
    let columns: Vec<String> = order_columns(sort)
        .into_iter()
        .map(|(expr, desc)| format!("{expr}{}", if desc { " DESC" } else { "" }))
        .collect();
    format!("ORDER BY {}", columns.join(", "))
}

/// The parameters matching [`order_columns`] for a position.
fn position_params(sort: &[SortKey], after: &Position) -> Vec<SqlValue> {
    let (sort, by_id) = deciding(sort);
    let mut params = Vec::new();
    for (key, value) in sort.iter().zip(&after.keys) {
        let sql_value = match value {
            SortValue::Number(n) => number(n),
            SortValue::Text(s) => SqlValue::Text(s.clone()),
            SortValue::Bool(b) => SqlValue::Integer(*b as i64),
            SortValue::Null | SortValue::Object | SortValue::List => SqlValue::Integer(0),
        };
        if sort_exprs(&key.field).0.is_some() {
            params.push(SqlValue::Integer(value.rank() as i64));
        }
        params.push(sql_value);
    }
    if !by_id {
        params.push(SqlValue::Text(after.id.clone()));
    }
    params
}

/// The condition that a row comes strictly after `after` in `sort`'s order.
pub(crate) fn after(sort: &[SortKey], after: &Position, sql: &mut Sql) {
    let columns = order_columns(sort);
    let params = position_params(sort, after);
    sql.push("(");
    for i in 0..columns.len() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for (j, (expr, _)) in columns.iter().take(i).enumerate() {
            sql.push(&format!("{expr} = "));
            sql.param(params[j].clone());
            sql.push(" AND ");
        }
        let (expr, desc) = &columns[i];
        sql.push(&format!("{expr} {} ", if *desc { "<" } else { ">" }));
        sql.param(params[i].clone());
        sql.push(")");
    }
    sql.push(")");
}
