//! The report's input, checked against the objects and fields the
//! principal can see, and turned into a plan.

use objectos_guest::records::{self, Filter, Query};
use objectos_guest::{Error, Value};
use serde::Deserialize;

use crate::aggregate::{Aggregate, Grouping, Op};
use crate::format::Format;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    object: String,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Vec<SortInput>,
    #[serde(default)]
    group_by: Option<OneOrMany>,
    #[serde(default)]
    aggregates: Option<Vec<AggregateInput>>,
    format: String,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SortInput {
    field: String,
    #[serde(default)]
    order: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateInput {
    #[serde(default)]
    field: Option<String>,
    op: String,
}

/// One sort key, by column name.
#[derive(Clone)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

/// What the report will do.
pub struct Plan {
    pub object: String,
    pub title: String,
    pub format: Format,
    pub filter: Filter,
    /// The report's columns, in order.
    pub columns: Vec<String>,
    /// The fields asked of the engine.
    pub read_fields: Vec<String>,
    pub sort: Vec<SortKey>,
    pub grouping: Option<Grouping>,
}

fn bad(message: String) -> Error {
    Error::fatal(message)
}

impl Input {
    /// Validates the input, naming the bad field, and plans the report.
    pub fn plan(self, user: &str) -> Result<Plan, Error> {
        let format = Format::parse(&self.format).ok_or_else(|| {
            bad(format!("format: unknown format `{}` (use csv, json, markdown, html or xlsx)", self.format))
        })?;
        let objects = records::objects()?;
        let Some(object) = objects.into_iter().find(|o| o.name == self.object) else {
            return Err(bad(format!("object: unknown object `{}`, or one {user} may not read", self.object)));
        };
        let visible = |what: &str, field: &str| -> Result<String, Error> {
            if object.fields.iter().any(|f| f == field) {
                Ok(field.to_string())
            } else {
                Err(bad(format!("{what}: `{field}` is not a field of `{}` that {user} can see", object.name)))
            }
        };
        let filter = match self.filter {
            None => Filter::all(),
            Some(value @ Value::Object(_)) => Filter::from(value),
            Some(other) => return Err(bad(format!("filter: must be a JSON object, got {other}"))),
        };

        let group_by = match self.group_by {
            None => Vec::new(),
            Some(OneOrMany::One(field)) => vec![visible("groupBy", &field)?],
            Some(OneOrMany::Many(fields)) => fields
                .iter()
                .enumerate()
                .map(|(i, f)| visible(&format!("groupBy[{i}]"), f))
                .collect::<Result<_, _>>()?,
        };
        let grouped = !group_by.is_empty() || self.aggregates.is_some();
        let mut aggregates = Vec::new();
        for (i, aggregate) in self.aggregates.unwrap_or_default().into_iter().enumerate() {
            let op = Op::parse(&aggregate.op).ok_or_else(|| {
                bad(format!(
                    "aggregates[{i}].op: unknown operation `{}` (use count, sum, avg, min or max)",
                    aggregate.op
                ))
            })?;
            let field = match aggregate.field {
                Some(field) if field != "*" => Some(visible(&format!("aggregates[{i}].field"), &field)?),
                _ if op == Op::Count => None,
                _ => return Err(bad(format!("aggregates[{i}].field: `{}` needs a field", aggregate.op))),
            };
            aggregates.push(Aggregate { field, op });
        }
        if grouped && aggregates.is_empty() {
            aggregates.push(Aggregate { field: None, op: Op::Count });
        }

        let (columns, read_fields) = if grouped {
            if let Some(fields) = &self.fields {
                for (i, field) in fields.iter().enumerate() {
                    if !group_by.contains(field) {
                        return Err(bad(format!(
                            "fields[{i}]: `{field}` is not a groupBy field; a grouped report's columns are its \
                             groupBy fields and its aggregates"
                        )));
                    }
                }
            }
            let mut columns = group_by.clone();
            columns.extend(aggregates.iter().map(Aggregate::column));
            let mut read = group_by.clone();
            for field in aggregates.iter().filter_map(|a| a.field.clone()) {
                if !read.contains(&field) {
                    read.push(field);
                }
            }
            if read.is_empty() {
                read.push("id".into());
            }
            (columns, read)
        } else {
            let fields = match self.fields {
                Some(fields) if fields.is_empty() => {
                    return Err(bad("fields: must name at least one field".into()));
                }
                Some(fields) => fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| visible(&format!("fields[{i}]"), f))
                    .collect::<Result<Vec<_>, _>>()?,
                None => object.fields.clone(),
            };
            (fields.clone(), fields)
        };

        let mut sort = Vec::new();
        for (i, key) in self.sort.into_iter().enumerate() {
            let descending = match key.order.as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(bad(format!("sort[{i}].order: `{other}` is neither asc nor desc")));
                }
            };
            let field = if grouped {
                if !columns.contains(&key.field) {
                    return Err(bad(format!(
                        "sort[{i}].field: `{}` is not a column of this grouped report ({})",
                        key.field,
                        columns.join(", ")
                    )));
                }
                key.field
            } else {
                visible(&format!("sort[{i}].field"), &key.field)?
            };
            sort.push(SortKey { field, descending });
        }

        let title = self.title.unwrap_or_else(|| format!("{} report", object.name));
        let grouping = grouped.then(|| Grouping::new(group_by, aggregates));
        Ok(Plan { object: object.name, title, format, filter, columns, read_fields, sort, grouping })
    }
}

impl Plan {
    /// The records query: the filter, and only the fields the report uses.
    /// A listing is sorted as asked (then by id, so paging is stable); a
    /// grouped report sorts its groups itself.
    pub fn query(&self) -> Query {
        let mut query = Query::new().filter(self.filter.clone()).fields(self.read_fields.iter().cloned());
        if self.grouping.is_none() {
            for key in &self.sort {
                query = if key.descending { query.sort_desc(&key.field) } else { query.sort_asc(&key.field) };
            }
        }
        query
    }

    /// The artifact's file name: the title in lower-case words joined by
    /// dashes, and the format's extension.
    pub fn file_name(&self) -> String {
        let mut slug = String::new();
        for c in self.title.chars() {
            if c.is_alphanumeric() {
                slug.extend(c.to_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_end_matches('-');
        let slug = if slug.is_empty() { "report" } else { slug };
        format!("{}.{}", slug.chars().take(80).collect::<String>(), self.format.extension())
    }
}
