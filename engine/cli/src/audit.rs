//! `objectos audit`: read, export, checkpoint and verify the audit log, of
//! a server or (with `--data-dir`) of a local data directory. Either way the
//! log first takes in what the outboxes hold (so it covers every change
//! committed so far), which is safe while `objectos serve` feeds the same
//! log: appends chain onto the head or are retried.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use objectos_engine::audit::{AuditEntry, Checkpoint, log};
use objectos_engine::config::EngineConfig;
use objectos_engine::node::Node;
use objectos_engine::store::AuditQuery;
use serde_json::{Value, json};

use super::Globals;
use super::output::{self, Table, Tone};

/// Exit code when the log does not verify.
pub const EXIT_BROKEN: u8 = 3;

/// List, export, checkpoint and verify the audit log.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos audit ls --event permission.denied --since 24h\n  \
    objectos audit checkpoint --out audit-2026-11.checkpoint\n  \
    objectos audit verify --checkpoint audit-2026-11.checkpoint\n  \
    objectos audit export --job job_01J… > job.jsonl")]
pub struct AuditArgs {
    /// Work on this local data directory instead of a server.
    #[arg(long, value_name = "DIR", env = "OBJECTOS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the server's config file, whose `audit.retention`
    /// tells `verify` whether the log's start may have been removed.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List entries, oldest first.
    #[command(after_help = "Examples:\n  objectos audit ls --job job_01J…\n  \
        objectos audit ls --actor ada --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z --json")]
    Ls {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Recompute the chain from the stored bytes; exit 3 naming the first
    /// bad entry if it does not hold.
    #[command(after_help = "Examples:\n  objectos audit verify\n  \
        objectos audit verify --checkpoint monday.checkpoint --checkpoint tuesday.checkpoint")]
    Verify {
        /// A checkpoint written earlier by `objectos audit checkpoint`; the
        /// log must still reach it with the same hash (repeatable).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
    /// Write entries as JSON Lines ({"seq", "hash", "entry"} per line, the
    /// entry exactly as stored).
    #[command(after_help = "Examples:\n  objectos audit export --out audit.jsonl\n  \
        objectos audit export --event job.failed --since 7d | jq .entry.job")]
    Export {
        #[command(flatten)]
        filter: Filter,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the log's head ({"seq", "hash"}) to keep somewhere safe;
    /// `verify --checkpoint` later proves the log still reaches it.
    #[command(after_help = "Example:\n  objectos audit checkpoint --out /secure/audit.checkpoint")]
    Checkpoint {
        /// Write here as well as printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Which entries: every filter given must hold.
#[derive(Debug, Args)]
struct Filter {
    /// Event type, e.g. `job.failed` or `permission.denied`.
    #[arg(long)]
    event: Option<String>,
    /// Entries about this job.
    #[arg(long, value_name = "JOB_ID")]
    job: Option<String>,
    /// Entries by this user id.
    #[arg(long, value_name = "USER_ID")]
    actor: Option<String>,
    /// Entries about this resource, e.g. `objects/contacts`.
    #[arg(long)]
    resource: Option<String>,
    /// From this time: RFC 3339, or a span back from now (`24h`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = when)]
    since: Option<DateTime<Utc>>,
    /// Before this time: RFC 3339, or a span back from now.
    #[arg(long, value_name = "TIME", value_parser = when)]
    until: Option<DateTime<Utc>>,
    /// Only entries after this sequence number (paging).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
}

impl Filter {
    /// The filter as the API's query string.
    fn params(&self, limit: usize) -> Vec<(&'static str, String)> {
        let time = |at: &DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut params = vec![("limit", limit.to_string())];
        params.extend(self.event.clone().map(|v| ("event", v)));
        params.extend(self.job.clone().map(|v| ("job", v)));
        params.extend(self.actor.clone().map(|v| ("actor", v)));
        params.extend(self.resource.clone().map(|v| ("resource", v)));
        params.extend(self.since.as_ref().map(|at| ("since", time(at))));
        params.extend(self.until.as_ref().map(|at| ("until", time(at))));
        if self.after > 0 {
            params.push(("after", self.after.to_string()));
        }
        params
    }

    fn query(self, limit: usize) -> AuditQuery {
        AuditQuery {
            after: self.after,
            limit,
            event: self.event,
            job_id: self.job,
            user_id: self.actor,
            resource: self.resource,
            since: self.since,
            until: self.until,
        }
    }
}

fn when(text: &str) -> Result<DateTime<Utc>, String> {
    super::time_arg(text, super::From::Back)
}

pub fn audit(args: AuditArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    match args.data_dir {
        Some(dir) => local(args.action, dir, args.config, globals.json),
        None => remote(args.action, globals),
    }
}

fn local(action: Action, data_dir: PathBuf, config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let mut config = match config {
        Some(path) => EngineConfig::from_file(&path)?,
        None => EngineConfig::default(),
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    config.data_dir = data_dir;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = Node::open_beside(config)?;
        node.auditor.catch_up().await.context("appending new events to the audit log")?;
        let store = &node.store;
        match action {
            Action::Ls { filter, limit } => {
                let stored = store.audit_entries(filter.query(limit)).await?;
                let entries = stored
                    .iter()
                    .map(|e| Ok(json!({"seq": e.seq, "hash": e.hash, "entry": serde_json::from_slice::<Value>(&e.bytes)?})))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_entries(&json!({"entries": entries}), json)?;
            }
            Action::Verify { checkpoint } => {
                let expect = read_checkpoints(&checkpoint)?;
                let retention_on = node.config.audit.retention.is_some();
                let verdict = log::verify(&**store, &expect, retention_on).await?.to_json();
                return print_verdict(&verdict, expect.len(), json);
            }
            Action::Export { filter, out } => {
                let query = filter.query(log::PAGE);
                let mut writer = std::io::BufWriter::new(output::destination(out.as_deref())?);
                let written = log::export(&**store, query, &mut writer).await?;
                writer.flush()?;
                if let Some(path) = out {
                    eprintln!("exported {written} entries to {}", path.display());
                }
            }
            Action::Checkpoint { out } => print_checkpoint(&log::checkpoint(&**store).await?, out)?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn remote(action: Action, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    match action {
        Action::Ls { filter, limit } => {
            print_entries(&client.get("/v1/audit", &filter.params(limit))?, globals.json)?;
        }
        Action::Verify { checkpoint } => {
            let expect = read_checkpoints(&checkpoint)?;
            let list: Vec<String> = expect.iter().map(|c| format!("{}:{}", c.seq, c.hash)).collect();
            let query = if list.is_empty() { vec![] } else { vec![("checkpoints", list.join(","))] };
            let spinner = output::spinner("verifying the audit chain");
            let verdict = client.get("/v1/audit/verify", &query);
            spinner.finish_and_clear();
            return print_verdict(&verdict?, expect.len(), globals.json);
        }
        Action::Export { filter, out } => {
            let mut download = client.download("/v1/audit/export", &filter.params(1000))?;
            let mut writer = std::io::BufWriter::new(output::destination(out.as_deref())?);
            let bar = output::byte_bar(None, "exporting the audit log");
            let copied = std::io::copy(&mut bar.wrap_read(&mut download.body), &mut writer)?;
            writer.flush()?;
            bar.finish_and_clear();
            if let Some(path) = out {
                eprintln!("exported {} to {}", output::bytes(copied), path.display());
            }
        }
        Action::Checkpoint { out } => {
            let checkpoint: Checkpoint = serde_json::from_value(client.post("/v1/audit/checkpoint")?)?;
            print_checkpoint(&checkpoint, out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_checkpoint(checkpoint: &Checkpoint, out: Option<PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string(checkpoint)?;
    if let Some(path) = out {
        std::fs::write(&path, format!("{text}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

fn read_checkpoints(paths: &[PathBuf]) -> anyhow::Result<Vec<Checkpoint>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading checkpoint {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{} is not a checkpoint (expected {{\"seq\": N, \"hash\": \"…\"}})", path.display())
            })
        })
        .collect()
}

/// Prints a verdict (`Verification::to_json`'s shape); exit 3 if broken.
fn print_verdict(verdict: &Value, checkpoints: usize, json: bool) -> anyhow::Result<ExitCode> {
    let valid = verdict["valid"] == true;
    if json {
        output::print_json(verdict)?;
    } else if valid {
        let head = match verdict["head"].as_object() {
            Some(head) => format!("entry {} hash {}", head["seq"], head["hash"].as_str().unwrap_or_default()),
            None => "empty".into(),
        };
        println!(
            "valid: {} entries verified against their stored bytes, {checkpoints} checkpoint(s); head {head}",
            verdict["count"]
        );
    } else {
        println!("BROKEN at entry {}: {}", verdict["seq"], verdict["reason"].as_str().unwrap_or_default());
    }
    Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(EXIT_BROKEN) })
}

/// Prints `{"entries": [{"seq", "hash", "entry"}]}` as is, or as a table.
fn print_entries(page: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(page);
    }
    let mut entries = Vec::new();
    for item in page["entries"].as_array().into_iter().flatten() {
        // Parsed from text: an entry's timestamp deserializes from borrowed strings.
        entries.push(serde_json::from_str::<AuditEntry>(&item["entry"].to_string())?);
    }
    print!("{}", entries_table(&entries, output::colour()));
    Ok(())
}

fn entries_table(entries: &[AuditEntry], colour: bool) -> String {
    if entries.is_empty() {
        return "no entries match\n".into();
    }
    let mut table = Table::new(&["SEQ", "AT", "EVENT", "ACTOR", "RESOURCE", "OUTCOME", "DETAIL"]);
    for e in entries {
        let detail = e
            .job
            .as_ref()
            .and_then(|j| j.error.clone().or_else(|| j.result_summary.clone()))
            .or_else(|| e.metadata["reason"].as_str().map(str::to_string))
            .unwrap_or_default();
        let outcome = serde_json::to_value(e.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let tone = (outcome != "success").then_some(Tone::Bad);
        table.toned_row(vec![
            (e.seq.to_string(), None),
            (objectos_engine::store::records::timestamp(e.at), None),
            (e.event.clone(), None),
            (e.actor.user_id.clone(), None),
            (e.resource.clone(), None),
            (outcome, tone),
            (output::clip(&detail, 80), None),
        ]);
    }
    table.render(colour)
}
