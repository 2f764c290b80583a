//! The report formats: each writes a header, then rows, straight into
//! the artifact as they come, keeping nothing but its writer's buffers.

use std::borrow::Cow;
use std::io::{self, Write};

use objectos_guest::Value;
use objectos_guest::artifacts::ArtifactWriter;

use crate::input::Plan;
use crate::xlsx::Workbook;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Markdown,
    Html,
    Xlsx,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "csv" => Format::Csv,
            "json" => Format::Json,
            "markdown" | "md" => Format::Markdown,
            "html" => Format::Html,
            "xlsx" => Format::Xlsx,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Xlsx => "xlsx",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            other => other.name(),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    /// A sink writing this format into `out`.
    pub fn sink(self, out: ArtifactWriter, plan: &Plan) -> Box<dyn Sink> {
        match self {
            Format::Csv => Box::new(Csv { out }),
            Format::Json => Box::new(Json { out, rows: 0, columns: Vec::new(), title: plan.title.clone() }),
            Format::Markdown => Box::new(Markdown { out, title: plan.title.clone() }),
            Format::Html => Box::new(Html { out, title: plan.title.clone() }),
            Format::Xlsx => Box::new(Workbook::new(out)),
        }
    }
}

/// Where rows go.
pub trait Sink {
    /// Writes whatever precedes the rows, with the column names.
    fn begin(&mut self, columns: &[String]) -> io::Result<()>;
    /// Writes one row, a value per column (null for a missing field).
    fn row(&mut self, cells: &[&Value]) -> io::Result<()>;
    /// Writes whatever follows the rows and hands back the artifact.
    fn end(self: Box<Self>) -> io::Result<ArtifactWriter>;
}

/// A cell as text: strings as they are, null as nothing, anything else as JSON.
pub fn text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// RFC 4180: CRLF line ends; a field with a comma, quote or line break is
/// quoted, quotes doubled.
struct Csv {
    out: ArtifactWriter,
}

impl Csv {
    fn line<'a>(&mut self, cells: impl Iterator<Item = Cow<'a, str>>) -> io::Result<()> {
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            if cell.contains([',', '"', '\n', '\r']) {
                write!(self.out, "\"{}\"", cell.replace('"', "\"\""))?;
            } else {
                self.out.write_all(cell.as_bytes())?;
            }
        }
        self.out.write_all(b"\r\n")
    }
}

impl Sink for Csv {
    fn begin(&mut self, columns: &[String]) -> io::Result<()> {
        self.line(columns.iter().map(|c| Cow::Borrowed(c.as_str())))
    }
    fn row(&mut self, cells: &[&Value]) -> io::Result<()> {
        self.line(cells.iter().map(|v| text(v)))
    }
    fn end(self: Box<Self>) -> io::Result<ArtifactWriter> {
        Ok(self.out)
    }
}

/// `{"title": .., "columns": [..], "rows": [{column: value, ..}, ..],
/// "rowCount": n}`, one row per line; values keep their JSON types.
struct Json {
    out: ArtifactWriter,
    rows: u64,
    /// The column names, each already encoded as a JSON string.
    columns: Vec<String>,
    title: String,
}

impl Sink for Json {
    fn begin(&mut self, columns: &[String]) -> io::Result<()> {
        self.columns = columns.iter().map(|c| serde_json::to_string(c).unwrap_or_default()).collect();
        write!(
            self.out,
            "{{\"title\":{},\"columns\":{},\"rows\":[",
            serde_json::to_string(&self.title)?,
            serde_json::to_string(columns)?
        )
    }
    fn row(&mut self, cells: &[&Value]) -> io::Result<()> {
        self.out.write_all(if self.rows == 0 { b"\n{" } else { b",\n{" })?;
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(column.as_bytes())?;
            self.out.write_all(b":")?;
            serde_json::to_writer(&mut self.out, cell)?;
        }
        self.rows += 1;
        self.out.write_all(b"}")
    }
    fn end(mut self: Box<Self>) -> io::Result<ArtifactWriter> {
        write!(self.out, "\n],\"rowCount\":{}}}\n", self.rows)?;
        Ok(self.out)
    }
}

/// A GitHub-flavoured table under a heading. Pipes and backslashes are
/// escaped, line breaks become `<br>`, and `&`, `<`, `>` are entities so a
/// value can never become markup when the Markdown is rendered.
struct Markdown {
    out: ArtifactWriter,
    title: String,
}

fn markdown_cell(text: &str) -> String {
    let mut cell = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => cell.push_str("\\|"),
            '\\' => cell.push_str("\\\\"),
            '&' => cell.push_str("&amp;"),
            '<' => cell.push_str("&lt;"),
            '>' => cell.push_str("&gt;"),
            '\n' => cell.push_str("<br>"),
            '\r' => {}
            c => cell.push(c),
        }
    }
    cell
}

impl Markdown {
    fn line<'a>(&mut self, cells: impl Iterator<Item = Cow<'a, str>>) -> io::Result<()> {
        self.out.write_all(b"|")?;
        for cell in cells {
            write!(self.out, " {} |", markdown_cell(&cell))?;
        }
        self.out.write_all(b"\n")
    }
}

impl Sink for Markdown {
    fn begin(&mut self, columns: &[String]) -> io::Result<()> {
        writeln!(self.out, "# {}\n", markdown_cell(&self.title))?;
        self.line(columns.iter().map(|c| Cow::Borrowed(c.as_str())))?;
        self.out.write_all(b"|")?;
        for _ in columns {
            self.out.write_all(b" --- |")?;
        }
        self.out.write_all(b"\n")
    }
    fn row(&mut self, cells: &[&Value]) -> io::Result<()> {
        self.line(cells.iter().map(|v| text(v)))
    }
    fn end(self: Box<Self>) -> io::Result<ArtifactWriter> {
        Ok(self.out)
    }
}

/// A standalone page (also well-formed XML), every value escaped.
struct Html {
    out: ArtifactWriter,
    title: String,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_markup(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem}\
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
th{background:#f4f4f4}";

impl Sink for Html {
    fn begin(&mut self, columns: &[String]) -> io::Result<()> {
        let title = escape_markup(&self.title);
        write!(
            self.out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{title}</title>\
             <style>{STYLE}</style></head>\n<body><h1>{title}</h1>\n<table><thead><tr>"
        )?;
        for column in columns {
            write!(self.out, "<th>{}</th>", escape_markup(column))?;
        }
        self.out.write_all(b"</tr></thead>\n<tbody>\n")
    }
    fn row(&mut self, cells: &[&Value]) -> io::Result<()> {
        self.out.write_all(b"<tr>")?;
        for cell in cells {
            write!(self.out, "<td>{}</td>", escape_markup(&text(cell)))?;
        }
        self.out.write_all(b"</tr>\n")
    }
    fn end(mut self: Box<Self>) -> io::Result<ArtifactWriter> {
        self.out.write_all(b"</tbody></table></body></html>\n")?;
        Ok(self.out)
    }
}
