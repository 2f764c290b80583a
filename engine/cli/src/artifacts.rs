//! `objectos artifacts …`: list and download the files jobs wrote.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use objectos_engine::store::ArtifactRecord;
use sha2::{Digest as _, Sha256};

use super::Globals;
use super::client::segment;
use super::output::{self, Table, relative};

/// List and download artifacts (reports, backups, exports).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  objectos artifacts ls\n  objectos artifacts get art_01J… --out report.xlsx"
)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List artifacts, oldest first, with the job that wrote each.
    #[command(
        after_help = "Examples:\n  objectos artifacts ls\n  objectos artifacts ls --after art_01J… --limit 500 --json"
    )]
    Ls {
        /// Only artifacts after this id (paging).
        #[arg(long)]
        after: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print only the ids, one a line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Download an artifact, checking its sha256 as it arrives.
    #[command(
        after_help = "Examples:\n  objectos artifacts get art_01J…              # saved under its own name\n  \
        objectos artifacts get art_01J… --out - | tar -tz"
    )]
    Get {
        /// The artifact's id.
        id: String,
        /// Where to save it (`-` for standard output); default: its name, in this directory.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn artifacts(args: ArtifactsArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    match args.action {
        Action::Ls { after, limit, quiet } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(after.map(|a| ("after", a)));
            let answer = client.get("/v1/artifacts", &query)?;
            if globals.json {
                output::print_json(&answer)?;
                return Ok(ExitCode::SUCCESS);
            }
            let artifacts: Vec<ArtifactRecord> = serde_json::from_value(answer["artifacts"].clone())?;
            if quiet {
                artifacts.iter().for_each(|a| println!("{}", a.id));
                return Ok(ExitCode::SUCCESS);
            }
            let now = Utc::now();
            let mut table = Table::new(&["ID", "NAME", "SIZE", "JOB", "OWNER", "CREATED"]);
            for a in &artifacts {
                table.row([
                    a.id.clone(),
                    a.name.clone(),
                    output::bytes(a.size),
                    a.job_id.clone(),
                    a.owner.clone(),
                    relative(Some(a.created_at), now),
                ]);
            }
            table.print("no artifacts yet; jobs such as report-generation and backup write them");
        }
        Action::Get { id, out } => {
            let path = format!("/v1/artifacts/{}", segment(&id));
            let record: ArtifactRecord = serde_json::from_value(client.get(&path, &[])?)?;
            let target = out.unwrap_or_else(|| PathBuf::from(safe_name(&record.name)));
            let mut download = client.download(&format!("{path}/content"), &[])?;
            let to_stdout = target.as_os_str() == "-";
            let mut sink = output::destination((!to_stdout).then_some(target.as_path()))?;
            let bar = output::byte_bar(download.length, format!("downloading {}", record.name));
            let mut digest = Sha256::new();
            let mut buffer = vec![0; 256 << 10];
            loop {
                let n = download.body.read(&mut buffer).context("reading the download")?;
                if n == 0 {
                    break;
                }
                digest.update(&buffer[..n]);
                sink.write_all(&buffer[..n])?;
                bar.inc(n as u64);
            }
            sink.flush()?;
            bar.finish_and_clear();
            let got = objectos_engine::digest::hex(&digest.finalize());
            let expected = download.sha256.unwrap_or(record.sha256.clone());
            if got != expected {
                if !to_stdout {
                    let _ = std::fs::remove_file(&target);
                }
                anyhow::bail!(
                    "the download of {id} is damaged (sha256 {got}, expected {expected}); try again"
                );
            }
            if !to_stdout {
                if globals.json {
                    let saved = serde_json::json!({"artifact": record, "savedTo": target, "sha256": got});
                    output::print_json(&saved)?;
                } else {
                    println!(
                        "saved {} ({}, sha256 verified) to {}",
                        record.name,
                        output::bytes(record.size),
                        target.display()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The artifact's name as a file name in this directory (no path parts).
fn safe_name(name: &str) -> String {
    let base = Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if base.is_empty() || base.starts_with('.') { format!("artifact{base}") } else { base }
}
