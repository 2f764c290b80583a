//! `objectos audit`: read, export, checkpoint and verify the audit log of a
//! local data directory. Each command first appends what the outboxes hold
//! (so the log covers every change committed so far), which is safe while
//! `objectos serve` feeds the same log: appends chain onto the head or are
//! retried.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use objectos_engine::audit::{AuditEntry, Checkpoint, Verification, log};
use objectos_engine::config::{EngineConfig, parse_span};
use objectos_engine::node::Node;
use objectos_engine::store::AuditQuery;

/// Exit code when the log does not verify.
pub const EXIT_BROKEN: u8 = 3;

/// List, export, checkpoint and verify the audit log of a data directory.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos audit ls --event permission.denied --since 24h\n  \
    objectos audit checkpoint --out audit-2026-11.checkpoint\n  \
    objectos audit verify --checkpoint audit-2026-11.checkpoint\n  \
    objectos audit export --job job_01J… > job.jsonl")]
pub struct AuditArgs {
    /// The data directory (default ./objectos-data).
    #[arg(long, value_name = "DIR", env = "OBJECTOS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
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
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let span =
        parse_span(text).map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a span like 24h"))?;
    Ok(Utc::now() - chrono::Duration::from_std(span).map_err(|e| e.to_string())?)
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let mut config = EngineConfig::default();
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = Node::open_beside(config)?;
        node.auditor.catch_up().await.context("appending new events to the audit log")?;
        let store = node.queue.store();
        match args.action {
            Action::Ls { filter, limit } => {
                let entries = store.audit_entries(filter.query(limit)).await?;
                let entries: Vec<AuditEntry> =
                    entries.iter().map(|e| serde_json::from_slice(&e.bytes)).collect::<Result<_, _>>()?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&entries)?);
                } else {
                    print_table(&entries);
                }
            }
            Action::Verify { checkpoint } => {
                let expect = checkpoint.iter().map(read_checkpoint).collect::<anyhow::Result<Vec<_>>>()?;
                let verdict = log::verify(&**store, &expect).await?;
                let broken = matches!(verdict, Verification::Broken { .. });
                print_verdict(&verdict, expect.len(), args.json)?;
                if broken {
                    return Ok(ExitCode::from(EXIT_BROKEN));
                }
            }
            Action::Export { filter, out } => {
                let query = filter.query(log::PAGE);
                let destination: Box<dyn std::io::Write> = match &out {
                    Some(path) => Box::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    ),
                    None => Box::new(std::io::stdout().lock()),
                };
                let mut writer = std::io::BufWriter::new(destination);
                let written = log::export(&**store, query, &mut writer).await?;
                writer.flush()?;
                if let Some(path) = out {
                    eprintln!("exported {written} entries to {}", path.display());
                }
            }
            Action::Checkpoint { out } => {
                let checkpoint = log::checkpoint(&**store).await?;
                let text = serde_json::to_string(&checkpoint)?;
                if let Some(path) = out {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                println!("{text}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn read_checkpoint(path: &PathBuf) -> anyhow::Result<Checkpoint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!("{} is not a checkpoint (expected {{\"seq\": N, \"hash\": \"…\"}})", path.display())
    })
}

fn print_verdict(verdict: &Verification, checkpoints: usize, json: bool) -> anyhow::Result<()> {
    match verdict {
        Verification::Valid { count, head } => {
            if json {
                println!("{}", serde_json::json!({"valid": true, "count": count, "head": head}));
            } else {
                let head =
                    head.as_ref().map_or("empty".to_string(), |h| format!("entry {} hash {}", h.seq, h.hash));
                println!(
                    "valid: {count} entries verified against their stored bytes, {checkpoints} checkpoint(s); head {head}"
                );
            }
        }
        Verification::Broken { seq, reason } => {
            if json {
                println!("{}", serde_json::json!({"valid": false, "seq": seq, "reason": reason}));
            } else {
                println!("BROKEN at entry {seq}: {reason}");
            }
        }
    }
    Ok(())
}

fn print_table(entries: &[AuditEntry]) {
    if entries.is_empty() {
        println!("no entries match");
        return;
    }
    let row = |cells: [&str; 7]| {
        let [seq, at, event, actor, resource, outcome, detail] = cells;
        println!("{seq:>7}  {at:<24}  {event:<18}  {actor:<14}  {resource:<36}  {outcome:<7}  {detail}");
    };
    row(["SEQ", "AT", "EVENT", "ACTOR", "RESOURCE", "OUTCOME", "DETAIL"]);
    for e in entries {
        let detail = e
            .job
            .as_ref()
            .and_then(|j| j.error.clone().or_else(|| j.result_summary.clone()))
            .unwrap_or_default();
        let outcome = serde_json::to_value(e.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        row([
            &e.seq.to_string(),
            &objectos_engine::store::records::timestamp(e.at),
            &e.event,
            &e.actor.user_id,
            &e.resource,
            &outcome,
            &detail,
        ]);
    }
}
