//! How client commands print for people: aligned tables, relative times,
//! colour only on a terminal (and never with `NO_COLOR`), and progress on
//! standard error only when it is a terminal. `--json` output bypasses
//! all of it and prints the server's JSON as is.

use std::io::IsTerminal as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// A colour for a cell, chosen by what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done well.
    Good,
    /// Failed or refused.
    Bad,
    /// In progress or waiting.
    Busy,
    /// Of lesser interest.
    Dim,
}

impl Tone {
    fn code(self) -> &'static str {
        match self {
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Busy => "33",
            Tone::Dim => "2",
        }
    }

    /// The tone of a job status.
    pub fn of_status(status: &str) -> Option<Self> {
        match status {
            "completed" => Some(Tone::Good),
            "failed" => Some(Tone::Bad),
            "running" | "retrying" => Some(Tone::Busy),
            "cancelled" => Some(Tone::Dim),
            _ => None,
        }
    }
}

/// Whether standard output takes colour.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// `text` in `tone` when `colour` is on.
pub fn paint(text: &str, tone: Option<Tone>, colour: bool) -> String {
    match tone {
        Some(tone) if colour => format!("\x1b[{}m{text}\x1b[0m", tone.code()),
        _ => text.to_string(),
    }
}

/// Rows printed with their columns aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, Option<Tone>)>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row of plain cells.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(|c| (c.into(), None)).collect());
    }

    /// Adds a row whose cells may carry a tone.
    pub fn toned_row(&mut self, cells: Vec<(String, Option<Tone>)>) {
        self.rows.push(cells);
    }

    /// The table as text, each line ending in a newline; the last column is
    /// not padded.
    pub fn render(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(i) {
                    Some(w) => *w = (*w).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut out = String::new();
        let mut line = |cells: Vec<(&str, Option<Tone>)>| {
            let last = cells.len().saturating_sub(1);
            let mut text = String::new();
            for (i, (cell, tone)) in cells.into_iter().enumerate() {
                let pad = if i == last { 0 } else { widths[i] - cell.chars().count() + 2 };
                text.push_str(&paint(cell, tone, colour));
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(self.header.iter().map(|h| (h.as_str(), colour.then_some(Tone::Dim))).collect());
        for row in &self.rows {
            line(row.iter().map(|(c, t)| (c.as_str(), *t)).collect());
        }
        out
    }

    /// Prints the table, or `empty` if it has no rows.
    pub fn print(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render(colour()));
        }
    }
}

/// `at` relative to `now`: `12s ago`, `in 5m`, `3d ago`; `—` for none.
pub fn relative(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else { return "—".into() };
    let seconds = (now - at).num_seconds();
    let span = seconds.unsigned_abs();
    let text = match span {
        0 => return "now".into(),
        1..60 => format!("{span}s"),
        60..3600 => format!("{}m", span / 60),
        3600..86_400 => format!("{}h", span / 3600),
        _ => format!("{}d", span / 86_400),
    };
    if seconds > 0 { format!("{text} ago") } else { format!("in {text}") }
}

/// `text` cut to `max` characters, with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    let text = text.replace('\n', " ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// Where a command writes its output: the file `out` (created or
/// truncated), or standard output.
pub fn destination(out: Option<&std::path::Path>) -> anyhow::Result<Box<dyn std::io::Write>> {
    use anyhow::Context as _;
    Ok(match out {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    })
}

/// Prints `value` as indented JSON: the stable shape scripts read.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A spinner on standard error saying `message`, drawn only on a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A progress bar over `total` bytes (a spinner if unknown) on standard
/// error, drawn only on a terminal.
pub fn byte_bar(total: Option<u64>, message: impl Into<String>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.with_message(message.into())
}

/// A progress bar over `total` items (a counter if unknown).
pub fn count_bar(total: Option<u64>, message: impl Into<String>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec})")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {msg} {pos}").expect("a valid template")),
    };
    bar.with_message(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Option<DateTime<Utc>> {
        Some(DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap())
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = at(0).unwrap();
        let cases = [(0, "now"), (-5, "5s ago"), (-59, "59s ago"), (-60, "1m ago"), (-7200, "2h ago")];
        for (offset, expected) in cases {
            assert_eq!(relative(at(offset), now), expected);
        }
        assert_eq!(relative(at(3 * 86_400), now), "in 3d");
        assert_eq!(relative(None, now), "—");
    }

    #[test]
    fn tables_align_on_the_widest_cell_and_colour_only_when_asked() {
        let mut table = Table::new(&["ID", "STATUS", "NOTE"]);
        table.row(["a", "completed", "x"]);
        table.toned_row(vec![
            ("bbbb".into(), None),
            ("failed".into(), Some(Tone::Bad)),
            ("ünïcode".into(), None),
        ]);
        assert_eq!(
            table.render(false),
            "ID    STATUS     NOTE\na     completed  x\nbbbb  failed     ünïcode\n"
        );
        assert!(table.render(true).contains("\x1b[31mfailed\x1b[0m     "));
    }

    #[test]
    fn clipping_and_byte_counts() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer line\nof text", 8), "a longe…");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
    }
}
