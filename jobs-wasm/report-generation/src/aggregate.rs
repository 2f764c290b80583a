//! Grouping and aggregates: one accumulator per group and aggregate, so
//! memory grows with the number of groups, never with the records.

use std::cmp::Ordering;
use std::collections::HashMap;

use objectos_guest::records::Record;
use objectos_guest::{Error, Value};

use crate::input::SortKey;

/// More groups than this fail the job rather than exhaust guest memory.
const MAX_GROUPS: usize = 100_000;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Op {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Op::Count,
            "sum" => Op::Sum,
            "avg" => Op::Avg,
            "min" => Op::Min,
            "max" => Op::Max,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Count => "count",
            Op::Sum => "sum",
            Op::Avg => "avg",
            Op::Min => "min",
            Op::Max => "max",
        }
    }
}

/// One aggregate column. Like SQL, every operation but `count` without a
/// field ignores records where the field is missing or null; `sum` and
/// `avg` also ignore values that are not numbers.
pub struct Aggregate {
    pub field: Option<String>,
    pub op: Op,
}

impl Aggregate {
    /// The column's name: `count`, or `op(field)`.
    pub fn column(&self) -> String {
        match &self.field {
            None => self.op.name().to_string(),
            Some(field) => format!("{}({field})", self.op.name()),
        }
    }
}

pub struct Grouping {
    group_by: Vec<String>,
    aggregates: Vec<Aggregate>,
}

impl Grouping {
    pub fn new(group_by: Vec<String>, aggregates: Vec<Aggregate>) -> Self {
        Self { group_by, aggregates }
    }
}

#[derive(Default, Clone)]
struct Accumulator {
    count: u64,
    integers: i128,
    floats: f64,
    all_integers: bool,
    least: Option<Value>,
    greatest: Option<Value>,
}

impl Accumulator {
    fn new() -> Self {
        Self { all_integers: true, ..Self::default() }
    }

    fn add(&mut self, op: Op, value: Option<&Value>) {
        let value = value.filter(|v| !v.is_null());
        match op {
            Op::Count => self.count += u64::from(value.is_some()),
            Op::Sum | Op::Avg => {
                let Some(Value::Number(n)) = value else { return };
                self.count += 1;
                match n.as_i64() {
                    Some(i) => self.integers += i128::from(i),
                    None => {
                        self.all_integers = false;
                        self.floats += n.as_f64().unwrap_or(0.0);
                    }
                }
            }
            Op::Min | Op::Max => {
                let Some(value) = value else { return };
                let slot = if op == Op::Min { &mut self.least } else { &mut self.greatest };
                let wanted = if op == Op::Min { Ordering::Less } else { Ordering::Greater };
                if slot.as_ref().is_none_or(|current| compare(value, current) == wanted) {
                    *slot = Some(value.clone());
                }
            }
        }
    }

    fn result(self, op: Op) -> Value {
        let total = || {
            if self.all_integers
                && let Ok(exact) = i64::try_from(self.integers)
            {
                return Value::from(exact);
            }
            number(self.integers as f64 + self.floats)
        };
        match op {
            Op::Count => Value::from(self.count),
            Op::Sum if self.count == 0 => Value::Null,
            Op::Sum => total(),
            Op::Avg if self.count == 0 => Value::Null,
            Op::Avg => number((self.integers as f64 + self.floats) / self.count as f64),
            Op::Min => self.least.unwrap_or(Value::Null),
            Op::Max => self.greatest.unwrap_or(Value::Null),
        }
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// A total order over JSON values for grouping, sorting and min/max:
/// null, then booleans, numbers (by value), strings, arrays, objects.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0))
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The groups seen so far.
pub struct Groups<'a> {
    grouping: &'a Grouping,
    index: HashMap<String, usize>,
    groups: Vec<(Vec<Value>, Vec<Accumulator>)>,
}

impl<'a> Groups<'a> {
    pub fn new(grouping: &'a Grouping) -> Self {
        Self { grouping, index: HashMap::new(), groups: Vec::new() }
    }

    /// Adds one record to its group.
    pub fn add(&mut self, record: &Record) -> Result<(), Error> {
        let key: Vec<Value> =
            self.grouping.group_by.iter().map(|f| record.get(f).cloned().unwrap_or(Value::Null)).collect();
        let text = serde_json::to_string(&key)?;
        let slot = match self.index.get(&text) {
            Some(&slot) => slot,
            None => {
                if self.groups.len() == MAX_GROUPS {
                    return Err(Error::fatal(format!(
                        "groupBy: more than {MAX_GROUPS} groups; group by fewer distinct values or filter"
                    )));
                }
                self.groups.push((key, vec![Accumulator::new(); self.grouping.aggregates.len()]));
                self.index.insert(text, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let accumulators = &mut self.groups[slot].1;
        for (aggregate, accumulator) in self.grouping.aggregates.iter().zip(accumulators) {
            match &aggregate.field {
                None => accumulator.count += 1,
                Some(field) => accumulator.add(aggregate.op, record.get(field)),
            }
        }
        Ok(())
    }

    /// One row per group — group values, then aggregates — sorted by
    /// `sort` (column names), then by the group values.
    pub fn rows(mut self, sort: &[SortKey]) -> Vec<Vec<Value>> {
        let aggregates = &self.grouping.aggregates;
        // Totals over no records are still one row (a count of 0), as in SQL.
        if self.grouping.group_by.is_empty() && self.groups.is_empty() {
            self.groups.push((Vec::new(), vec![Accumulator::new(); aggregates.len()]));
        }
        let mut rows: Vec<Vec<Value>> = self
            .groups
            .into_iter()
            .map(|(mut key, accumulators)| {
                key.extend(aggregates.iter().zip(accumulators).map(|(a, acc)| acc.result(a.op)));
                key
            })
            .collect();
        let mut columns: Vec<String> = self.grouping.group_by.clone();
        columns.extend(aggregates.iter().map(Aggregate::column));
        let keys: Vec<(usize, bool)> = sort
            .iter()
            .filter_map(|k| columns.iter().position(|c| *c == k.field).map(|i| (i, k.descending)))
            .chain((0..self.grouping.group_by.len()).map(|i| (i, false)))
            .collect();
        rows.sort_by(|a, b| {
            keys.iter()
                .map(|&(i, descending)| {
                    let order = compare(&a[i], &b[i]);
                    if descending { order.reverse() } else { order }
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        rows
    }
}
