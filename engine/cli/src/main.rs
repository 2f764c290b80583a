//! The `objectos` command: argument definitions and dispatch over the
//! engine's library. Only this crate parses user input from the terminal,
//! and only it carries the terminal's dependencies (clap, ureq, indicatif,
//! tracing-subscriber) and the allocator set-up.
//!
//! Client commands talk to a running server ([`client`]); `audit` and
//! `schedule` work on a local data directory instead when given
//! `--data-dir` (or `OBJECTOS_DATA_DIR`). `run`, `serve` and `demo` are
//! local by nature.

mod artifacts;
mod audit;
mod client;
mod demo;
mod handler;
mod jobs;
mod output;
mod records;
mod run;
mod schedule;
mod serve;
#[cfg(test)]
#[path = "../../../tests/e2e/snapshot.rs"]
mod snapshot;

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use serde_json::Value;

use client::Failure;

/// Exit code for an error of the command itself (bad file, bad JSON, an
/// error the server reports).
pub const EXIT_ERROR: u8 = 1;

/// ObjectOS Jobs: background jobs whose handlers are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(
    name = "objectos",
    version,
    about,
    propagate_version = true,
    after_help = "Examples, to start:\n  objectos demo                      the whole product in one command\n  \
                  objectos serve                     run the engine (HTTP API on 127.0.0.1:7878)\n  \
                  objectos enqueue template --data '{\"name\":\"Ada\"}' --wait\n\n\
                  Client commands reach the server named by --server, OBJECTOS_SERVER or `objectos login`.\n\
                  Exit codes: 0 ok, 1 error, 2 usage, 3 audit log broken, 4 job failed, 5 server unreachable,\n\
                  6 token missing, refused or not permitted."
)]
pub struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Globals {
    #[command(flatten)]
    connection: client::Connection,
    /// Print JSON (the API's shape) instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl Globals {
    /// The client for the chosen server.
    fn client(&self) -> anyhow::Result<client::Client> {
        client::Client::new(&self.connection)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    Enqueue(jobs::EnqueueArgs),
    Jobs(jobs::JobsArgs),
    Schedule(schedule::ScheduleArgs),
    Handler(handler::HandlerArgs),
    Records(records::RecordsArgs),
    Artifacts(artifacts::ArtifactsArgs),
    Audit(audit::AuditArgs),
    Stats(jobs::StatsArgs),
    Login(LoginArgs),
    Serve(serve::ServeArgs),
    Run(run::RunArgs),
    Demo(demo::DemoArgs),
    Completions(CompletionsArgs),
}

/// Save the server and token for later commands, after checking them.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  objectos login --server http://jobs.internal:7878 --token \"$TOKEN\"")]
struct LoginArgs {}

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  objectos completions bash > ~/.local/share/bash-completion/completions/objectos\n  \
                  objectos completions zsh > \"${fpath[1]}/_objectos\"\n  \
                  objectos completions fish > ~/.config/fish/completions/objectos.fish"
)]
struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

/// Runs the chosen command and returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let globals = &cli.globals;
    match cli.command {
        Command::Enqueue(args) => jobs::enqueue(args, globals),
        Command::Jobs(args) => jobs::jobs(args, globals),
        Command::Schedule(args) => schedule::schedule(args, globals),
        Command::Handler(args) => handler::handler(args, globals),
        Command::Records(args) => records::records(args, globals),
        Command::Artifacts(args) => artifacts::artifacts(args, globals),
        Command::Audit(args) => audit::audit(args, globals),
        Command::Stats(args) => jobs::stats(args, globals),
        Command::Login(_) => login(globals),
        Command::Serve(args) => serve::serve(args),
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::demo(args),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "objectos", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn login(globals: &Globals) -> anyhow::Result<ExitCode> {
    let connection = &globals.connection;
    anyhow::ensure!(
        connection.server.is_some() && connection.token.is_some(),
        "login needs both --server and --token"
    );
    let client = globals.client()?;
    // Any token-guarded route tells a refused token (401) from a valid one.
    match client.get("/v1/stats", &[]) {
        Ok(_) => {}
        Err(error) if error.downcast_ref::<Failure>().is_some_and(|f| f.status == Some(403)) => {}
        Err(error) => return Err(error),
    }
    let saved = client::ClientConfig { server: connection.server.clone(), token: connection.token.clone() };
    let path = saved.save()?;
    println!("saved the server and token to {} (readable by you only)", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Which way a span given for a time reaches from now.
enum From {
    /// `24h` means 24 hours ago.
    Back,
    /// `10m` means in ten minutes.
    Now,
}

/// A time argument: RFC 3339, or a span (`24h`, `7d`) back from or on from now.
fn time_arg(text: &str, from: From) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let example = match from {
        From::Back => "24h",
        From::Now => "10m",
    };
    let span = objectos_engine::config::parse_span(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a span like {example}"))?;
    let span = chrono::Duration::from_std(span).map_err(|e| e.to_string())?;
    Ok(match from {
        From::Back => Utc::now() - span,
        From::Now => Utc::now() + span,
    })
}

/// A JSON argument given inline or as `@FILE`.
fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

fn main() -> ExitCode {
    objectos_alloc::keep_freed_memory();
    let args = Cli::parse();
    match dispatch(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            let exit = error.downcast_ref::<Failure>().map_or(EXIT_ERROR, |f| f.exit);
            ExitCode::from(exit)
        }
    }
}
