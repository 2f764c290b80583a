//! `objectos handler …`: upload, list, show and remove handlers on a server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Globals;
use super::client::segment;
use super::output::{self, Table, relative};

/// Upload, list, show and remove job handlers (wasm components).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  objectos handler upload greet target/wasm32-wasip2/release/greet.wasm\n  \
    objectos handler upload greet ./my-handler-crate\n  objectos handler ls"
)]
pub struct HandlerArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Upload a component as the handler NAME's new version (validated and
    /// compiled by the server before it is accepted).
    #[command(after_help = "Examples:\n  objectos handler upload greet greet.wasm\n  \
        objectos handler upload template guest-sdk/examples/template   # builds the crate first")]
    Upload {
        /// The handler's name, as jobs name it.
        name: String,
        /// A `.wasm` component, or a guest crate directory to build first.
        path: PathBuf,
    },
    /// List handlers.
    #[command(after_help = "Example:\n  objectos handler ls --json")]
    Ls,
    /// Show a handler: its current version, size and the capabilities it imports.
    #[command(after_help = "Example:\n  objectos handler show backup")]
    Show {
        /// The handler's name.
        name: String,
    },
    /// Remove a handler name (jobs already pinned to its versions still run).
    #[command(after_help = "Example:\n  objectos handler rm greet")]
    Rm {
        /// The handler's name.
        name: String,
    },
}

pub fn handler(args: HandlerArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    let path = |name: &str| format!("/v1/handlers/{}", segment(name));
    let answer = match args.action {
        Action::Upload { name, path: file } => {
            let file = super::run::component_path(&file)?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let bar = output::byte_bar(Some(bytes.len() as u64), format!("uploading {name}"));
            let reader = bar.wrap_read(std::io::Cursor::new(bytes));
            let answer = client.put_bytes(&path(&name), "application/wasm", reader);
            bar.finish_and_clear();
            let answer = answer?;
            if !globals.json {
                let capabilities = list(&answer["capabilities"]);
                println!(
                    "{name}: version {}… ({} versions), compiled and ready in {:.0} ms; imports {}",
                    short(&answer["sha256"]),
                    answer["versions"].as_array().map_or(0, Vec::len),
                    answer["readyMs"].as_f64().unwrap_or(0.0),
                    if capabilities.is_empty() { "no capabilities".into() } else { capabilities }
                );
            }
            answer
        }
        Action::Ls => {
            let answer = client.get("/v1/handlers", &[])?;
            if !globals.json {
                let now = Utc::now();
                let mut table = Table::new(&["NAME", "VERSION", "VERSIONS", "UPDATED"]);
                for handler in answer["handlers"].as_array().into_iter().flatten() {
                    table.row([
                        handler["name"].as_str().unwrap_or_default().to_string(),
                        short(&handler["sha256"]),
                        handler["versions"].as_array().map_or(0, Vec::len).to_string(),
                        relative(time(&handler["updatedAt"]), now),
                    ]);
                }
                table.print("no handlers; upload one with `objectos handler upload NAME FILE.wasm`");
            }
            answer
        }
        Action::Show { name } => {
            let answer = client.get(&path(&name), &[])?;
            if !globals.json {
                println!("handler       {name}");
                println!("version       {}", answer["sha256"].as_str().unwrap_or_default());
                println!("compiled size {}", output::bytes(answer["size"].as_u64().unwrap_or(0)));
                let capabilities = list(&answer["capabilities"]);
                println!("imports       {}", if capabilities.is_empty() { "—".into() } else { capabilities });
                println!("updated       {}", relative(time(&answer["updatedAt"]), Utc::now()));
                println!("versions      {}", answer["versions"].as_array().map_or(0, Vec::len));
                for version in answer["versions"].as_array().into_iter().flatten() {
                    println!("  {}", version.as_str().map_or_else(|| version.to_string(), str::to_string));
                }
            }
            answer
        }
        Action::Rm { name } => {
            client.delete(&path(&name))?;
            if !globals.json {
                println!("removed handler {name}; jobs pinned to its versions still run");
            }
            serde_json::json!({"removed": name})
        }
    };
    if globals.json {
        output::print_json(&answer)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn short(sha256: &Value) -> String {
    sha256.as_str().map_or(String::new(), |s| s.chars().take(12).collect())
}

fn list(values: &Value) -> String {
    let names: Vec<&str> = values.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    names.join(", ")
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|s| s.parse().ok())
}
