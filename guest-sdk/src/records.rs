//! Reading and changing records, always as the job's principal.
//!
//! Three capabilities live here, each imported only when its functions are
//! used: reading ([`find`], [`iter`], [`count`], [`objects`]) needs
//! `records`; [`insert`], [`update`] and [`delete`] need `records-write`;
//! [`import`] needs `records-import`. Hidden fields never appear in results,
//! and records outside the principal's record filter are never seen.
//!
//! ```no_run
//! use objectos_guest::records::{self, Filter, Query};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Contact { name: String, amount: f64 }
//!
//! # fn main() -> Result<(), objectos_guest::Error> {
//! let open = Filter::eq("status", "open").and(Filter::gt("amount", 100));
//! let mut total = 0.0;
//! for contact in records::iter::<Contact>("contacts", Query::new().filter(open).sort_asc("name")) {
//!     total += contact?.amount;
//! }
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::HostError;
use crate::bindings::objectos::jobs::{
    records as read, records_import as import_wit, records_write as write,
};

/// A FilterCondition: `{field: value}`, operators such as `$gt` and `$in`,
/// and `$and`/`$or`/`$not`. Build one with the constructors or convert a
/// [`Value`] you wrote yourself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Filter(Value);

impl Filter {
    /// Matches every record.
    pub fn all() -> Self {
        Filter(json!({}))
    }

    fn op(field: &str, op: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        Filter(json!({ field: { op: value } }))
    }

    /// `field` equals `value`.
    pub fn eq(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$eq", value)
    }
    /// `field` differs from `value` (or is missing).
    pub fn ne(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$ne", value)
    }
    /// `field` is greater than `value`.
    pub fn gt(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$gt", value)
    }
    /// `field` is greater than or equal to `value`.
    pub fn gte(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$gte", value)
    }
    /// `field` is less than `value`.
    pub fn lt(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$lt", value)
    }
    /// `field` is less than or equal to `value`.
    pub fn lte(field: &str, value: impl Serialize) -> Self {
        Self::op(field, "$lte", value)
    }
    /// `field` is one of `values`.
    pub fn one_of<T: Serialize>(field: &str, values: &[T]) -> Self {
        Self::op(field, "$in", values)
    }
    /// `field` is none of `values` (or is missing).
    pub fn none_of<T: Serialize>(field: &str, values: &[T]) -> Self {
        Self::op(field, "$nin", values)
    }
    /// `low <= field <= high`.
    pub fn between(field: &str, low: impl Serialize, high: impl Serialize) -> Self {
        let bounds = [
            serde_json::to_value(low).unwrap_or(Value::Null),
            serde_json::to_value(high).unwrap_or(Value::Null),
        ];
        Self::op(field, "$between", bounds)
    }
    /// The string `field` contains `text`.
    pub fn contains(field: &str, text: &str) -> Self {
        Self::op(field, "$contains", text)
    }
    /// The string `field` starts with `text`.
    pub fn starts_with(field: &str, text: &str) -> Self {
        Self::op(field, "$startsWith", text)
    }
    /// The string `field` ends with `text`.
    pub fn ends_with(field: &str, text: &str) -> Self {
        Self::op(field, "$endsWith", text)
    }
    /// `field` is present (`true`) or absent (`false`).
    pub fn exists(field: &str, present: bool) -> Self {
        Self::op(field, "$exists", present)
    }
    /// Both this and `other` match.
    pub fn and(self, other: Filter) -> Self {
        Filter(json!({ "$and": [self.0, other.0] }))
    }
    /// This or `other` matches.
    pub fn or(self, other: Filter) -> Self {
        Filter(json!({ "$or": [self.0, other.0] }))
    }
    /// This does not match.
    pub fn negate(self) -> Self {
        Filter(json!({ "$not": self.0 }))
    }
    /// The filter as JSON.
    pub fn into_value(self) -> Value {
        self.0
    }
}

impl From<Value> for Filter {
    fn from(value: Value) -> Self {
        Filter(value)
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct SortKey {
    field: String,
    order: Order,
}

/// A query for [`find`] and [`iter`]: filter, projection, sort and page size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Query {
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<Filter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sort: Vec<SortKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

impl Query {
    /// Every visible record, in the store's order, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only records matching `filter`.
    pub fn filter(mut self, filter: impl Into<Filter>) -> Self {
        self.filter = Some(filter.into());
        self
    }
    /// Only these fields of each record.
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }
    /// Then sort by `field`, smallest first.
    pub fn sort_asc(mut self, field: &str) -> Self {
        self.sort.push(SortKey { field: field.into(), order: Order::Asc });
        self
    }
    /// Then sort by `field`, largest first.
    pub fn sort_desc(mut self, field: &str) -> Self {
        self.sort.push(SortKey { field: field.into(), order: Order::Desc });
        self
    }
    /// Records per page (the engine allows at most 1000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Continue from a cursor returned with a previous page of this query.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
}

/// One page of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records.
    pub records: Vec<T>,
    /// The cursor for the next page; none at the end.
    pub next_cursor: Option<String>,
}

/// An object the principal can read and the fields it can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// Its visible fields.
    pub fields: Vec<String>,
}

/// What an update or delete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReport {
    /// Records the filter matched among those visible.
    pub matched: u64,
    /// Records changed.
    pub changed: u64,
    /// Records matched but not permitted to change.
    pub skipped: u64,
}

/// What to do when an imported record's `id` exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep the existing record.
    Skip,
    /// Replace it.
    Replace,
    /// Fail the whole import; nothing is stored.
    Fail,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// New records.
    pub inserted: u64,
    /// Replaced records.
    pub replaced: u64,
    /// Kept records.
    pub skipped: u64,
}

fn to_json(value: &impl Serialize) -> Result<String, HostError> {
    serde_json::to_string(value).map_err(|e| HostError::Invalid(format!("cannot encode as JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, HostError> {
    serde_json::from_str(text)
        .map_err(|e| HostError::Invalid(format!("records do not fit the requested type: {e}")))
}

/// Lists the objects the principal can read, with their visible fields.
pub fn objects() -> Result<Vec<ObjectInfo>, HostError> {
    Ok(read::objects()?.into_iter().map(|o| ObjectInfo { name: o.name, fields: o.fields }).collect())
}

/// Fetches one page of `object`'s records matching `query`.
pub fn find<T: DeserializeOwned>(object: &str, query: &Query) -> Result<Page<T>, HostError> {
    let page = read::find(object, &to_json(query)?)?;
    Ok(Page { records: from_json(&page.records)?, next_cursor: page.next_cursor })
}

/// Iterates over every record of `object` matching `query`, fetching pages
/// as it goes, so memory holds one page at a time.
pub fn iter<T: DeserializeOwned>(object: &str, query: Query) -> Records<T> {
    Records { object: object.to_string(), query, buffered: Vec::new().into_iter(), done: false }
}

/// The iterator returned by [`iter`].
pub struct Records<T> {
    object: String,
    query: Query,
    buffered: std::vec::IntoIter<T>,
    done: bool,
}

impl<T: DeserializeOwned> Iterator for Records<T> {
    type Item = Result<T, HostError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.buffered.next() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            match find::<T>(&self.object, &self.query) {
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Ok(page) => {
                    match page.next_cursor {
                        Some(cursor) => self.query.cursor = Some(cursor),
                        None => self.done = true,
                    }
                    self.buffered = page.records.into_iter();
                }
            }
        }
    }
}

/// Counts `object`'s records matching `filter` that the principal can see.
pub fn count(object: &str, filter: impl Into<Filter>) -> Result<u64, HostError> {
    Ok(read::count(object, &to_json(&filter.into())?)?)
}

/// Inserts `records` into `object` and returns their new ids. The engine
/// sets `id`, `owner`, `created_at` and `updated_at`.
pub fn insert<T: Serialize>(object: &str, records: &[T]) -> Result<Vec<String>, HostError> {
    Ok(write::insert(object, &to_json(&records)?)?)
}

/// Applies `patch` (field → value; `null` removes the field) to the records
/// of `object` matching `filter`. All or nothing.
pub fn update(
    object: &str,
    filter: impl Into<Filter>,
    patch: &impl Serialize,
) -> Result<WriteReport, HostError> {
    let report = write::update(object, &to_json(&filter.into())?, &to_json(patch)?)?;
    Ok(WriteReport { matched: report.matched, changed: report.changed, skipped: report.skipped })
}

/// Deletes the records of `object` matching `filter` that the principal may delete.
pub fn delete(object: &str, filter: impl Into<Filter>) -> Result<WriteReport, HostError> {
    let report = write::delete(object, &to_json(&filter.into())?)?;
    Ok(WriteReport { matched: report.matched, changed: report.changed, skipped: report.skipped })
}

/// Imports `records` (each with an `id`, and optionally `owner`,
/// `created_at`, `updated_at`) into `object`, keeping their system fields.
/// Needs the system permission `records.import`.
pub fn import<T: Serialize>(
    object: &str,
    records: &[T],
    on_conflict: OnConflict,
) -> Result<ImportReport, HostError> {
    let on_conflict = match on_conflict {
        OnConflict::Skip => import_wit::OnConflict::Skip,
        OnConflict::Replace => import_wit::OnConflict::Replace,
        OnConflict::Fail => import_wit::OnConflict::Fail,
    };
    let report = import_wit::import(object, &to_json(&records)?, on_conflict)?;
    Ok(ImportReport { inserted: report.inserted, replaced: report.replaced, skipped: report.skipped })
}

/// A record as a JSON object, for handlers that do not need a typed record.
pub type Record = Map<String, Value>;
