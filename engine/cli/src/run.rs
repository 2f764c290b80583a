//! `objectos run`: runs one handler locally, for handler authors.
//!
//! Builds the handler if given a crate directory, loads records from a file
//! and keeps artifacts in a folder, runs one attempt in the same sandbox the
//! server uses, and prints the result, the log and a one-line summary. The
//! exit code tells the outcome apart (see `exit_code`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use objectos_engine::clock::SystemClock;
use objectos_engine::local::{DirArtifacts, load_records, save_records};
use objectos_engine::permissions::{Permissions, PermissionsDir};
use objectos_engine::principal::Principal;
use objectos_engine::records::RecordsEngine;
use objectos_engine::sandbox::{
    ArtifactsService, Capability, CapabilitySet, JobRun, Limits, MemoryArtifacts, Outcome, OutcomeKind,
    Sandbox, SandboxConfig, Services,
};
use objectos_engine::store::MemoryStore;
use serde_json::{Value, json};

/// Run one job handler locally and show its result, log and resource use.
///
/// Exit codes: 0 completed; 1 the command failed (bad file or flag);
/// 2 usage; 10 retryable handler error; 11 fatal handler error; 12 trap
/// (panic); 13 stack overflow; 14 out of fuel; 15 timeout; 16 memory limit;
/// 17 capability denied; 18 invalid component; 19 result too large;
/// 21 the guest exited instead of returning.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos run guest-sdk/examples/template --data '{\"name\":\"Ada\"}'\n  \
    objectos run my_handler.wasm --records records.json --grant records --data @input.json\n  \
    objectos run csv_export.wasm --records records.json --artifacts ./out --json\n  \
    objectos run report-generation --records records.json --artifacts ./out \\\n      \
    --data '{\"object\":\"contacts\",\"format\":\"markdown\"}'\n  \
    objectos run contacts_summary.wasm --records records.json --permissions ./permissions \\\n      \
    --as '{\"userId\":\"u1\",\"profiles\":[\"sales\"]}'")]
pub struct RunArgs {
    /// The handler: a `.wasm` component, a guest crate directory to build
    /// first, or the name of a built-in (`data-cleanup`, `report-generation`,
    /// `backup`, `restore`).
    handler: PathBuf,
    /// The job's data as JSON, or `@FILE` to read it from a file.
    #[arg(long, default_value = "{}")]
    data: String,
    /// A JSON file of object name → list of records for the `records` interfaces.
    #[arg(long, value_name = "FILE")]
    records: Option<PathBuf>,
    /// Save the records file with the handler's changes after the run.
    #[arg(long, requires = "records")]
    write_back: bool,
    /// A folder for artifacts the handler writes and reads (default: kept in memory).
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Capabilities to grant, comma separated (`records,records-write,records-import,
    /// artifacts,artifacts-read`), or `all` or `none` [default: all]. With
    /// `--permissions` the sets decide instead, as on the server.
    #[arg(long, value_name = "CAPS", conflicts_with = "permissions")]
    grant: Option<String>,
    /// A directory of permission sets: records, fields and capabilities are
    /// then restricted for the principal exactly as `objectos serve` would.
    /// Without it nothing is restricted.
    #[arg(long, value_name = "DIR")]
    permissions: Option<PathBuf>,
    /// The principal to run as, as JSON: `{"userId": "ada", "profiles": ["sales"], "metadata": {}}`
    /// [default: user `local` with profile `admin`].
    #[arg(long = "as", value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Fuel budget (roughly, wasm instructions).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Wall-clock timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// Memory limit in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Print one JSON document instead of human-readable output.
    #[arg(long)]
    json: bool,
}

/// Parses `123`, `64KiB`, `64MiB`, `1GiB` (and `KB`/`MB`/`GB` as powers of 1024 too).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is not a size in bytes"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("`{text}` is too large"))
}

fn parse_grants(text: &str) -> anyhow::Result<CapabilitySet> {
    match text.trim() {
        "all" => return Ok(CapabilitySet::all()),
        "none" | "" => return Ok(CapabilitySet::empty()),
        _ => {}
    }
    text.split(',')
        .map(|name| {
            Capability::from_interface(name.trim()).with_context(|| {
                format!(
                    "--grant: unknown capability `{}` (known: records, records-write, records-import, \
                     artifacts, artifacts-read, or all/none)",
                    name.trim()
                )
            })
        })
        .collect()
}

fn read_data(data: &str) -> anyhow::Result<String> {
    let text = match data.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("--data: cannot read {file}"))?,
        None => data.to_string(),
    };
    serde_json::from_str::<Value>(&text).context("--data is not valid JSON")?;
    Ok(text)
}

/// The handler's name and component: a built-in's by its name (when no
/// such file exists), else read from `handler` (built first if a crate).
fn component(handler: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if !handler.exists()
        && let Some(builtin) = objectos_engine::builtins::ALL.iter().find(|b| handler.as_os_str() == b.name)
    {
        return Ok((builtin.name.to_string(), builtin.wasm.to_vec()));
    }
    let path = component_path(handler)?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((name, bytes))
}

/// The component to run: the file itself, or the crate directory built for
/// `wasm32-wasip2` in release mode.
pub(super) fn component_path(handler: &Path) -> anyhow::Result<PathBuf> {
    if !handler.is_dir() {
        return Ok(handler.to_path_buf());
    }
    let manifest = handler.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "{} is a directory without a Cargo.toml: give a .wasm file or a guest crate",
            handler.display()
        );
    }
    eprintln!("building {} for wasm32-wasip2 …", handler.display());
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !output.status.success() {
        bail!(
            "building {} failed (is the target installed? `rustup target add wasm32-wasip2`)",
            handler.display()
        );
    }
    // The last compiler artifact of a cdylib is the component.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wasm = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .rfind(|name| name.extension().is_some_and(|ext| ext == "wasm"));
    wasm.with_context(|| {
        format!("building {} produced no .wasm (is crate-type = [\"cdylib\"]?)", handler.display())
    })
}

/// The exit code for an outcome; documented on [`RunArgs`].
fn exit_code(kind: &OutcomeKind) -> u8 {
    match kind {
        OutcomeKind::Completed { .. } => 0,
        OutcomeKind::HandlerError { retryable: true, .. } => 10,
        OutcomeKind::HandlerError { retryable: false, .. } => 11,
        OutcomeKind::Trap { .. } => 12,
        OutcomeKind::StackOverflow => 13,
        OutcomeKind::OutOfFuel { .. } => 14,
        OutcomeKind::Timeout { .. } => 15,
        OutcomeKind::MemoryLimit { .. } => 16,
        OutcomeKind::CapabilityDenied { .. } => 17,
        OutcomeKind::InvalidComponent { .. } => 18,
        OutcomeKind::ResultTooLarge { .. } => 19,
        OutcomeKind::Cancelled => 20,
        OutcomeKind::Exited { .. } => 21,
    }
}

/// Runs the command.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<ExitCode> {
    let input = read_data(&args.data)?;
    let principal: Principal = match &args.principal {
        Some(json) => serde_json::from_str(json)
            .context("--as is not a principal (`{\"userId\": …, \"profiles\": […]}`)")?,
        None => Principal::new("local", &["admin"]),
    };
    let permissions = match &args.permissions {
        Some(dir) => PermissionsDir::open(dir).with_context(|| format!("--permissions {}", dir.display()))?,
        None => PermissionsDir::fixed(Permissions::unrestricted()),
    };
    let grants = match &args.grant {
        Some(text) => parse_grants(text)?,
        None => permissions.current().capabilities(&principal),
    };
    let store = Arc::new(MemoryStore::new());
    if let Some(path) = &args.records {
        load_records(path, &principal.user_id, store.as_ref()).await?;
    }
    let records = RecordsEngine::new(store.clone(), Arc::new(permissions), Arc::new(SystemClock));
    let memory_artifacts = MemoryArtifacts::new();
    let artifacts: Arc<dyn ArtifactsService> = match &args.artifacts {
        Some(dir) => {
            Arc::new(DirArtifacts::new(dir).with_context(|| format!("--artifacts {}", dir.display()))?)
        }
        None => Arc::new(memory_artifacts.clone()),
    };

    let (name, bytes) = component(&args.handler)?;
    let sandbox = Sandbox::new(SandboxConfig::new().max_concurrent_jobs(1))?;

    let outcome = match sandbox.compile(&bytes) {
        Err(error) => Outcome {
            kind: OutcomeKind::InvalidComponent { message: error.to_string() },
            usage: Default::default(),
            log: Default::default(),
            progress: None,
        },
        Ok(handler) => {
            let mut job = JobRun::new("local-1", name, principal, input);
            let defaults = Limits::default();
            job.limits = Limits {
                fuel: args.fuel.unwrap_or(defaults.fuel),
                timeout: args.timeout.map_or(defaults.timeout, Duration::from_millis),
                memory: args.memory.unwrap_or(defaults.memory),
                ..defaults
            };
            job.grants = grants;
            job.services = Services { records: Arc::new(records), artifacts };
            sandbox.run(&handler, job).await
        }
    };

    if args.write_back
        && let Some(path) = &args.records
    {
        save_records(path, store.as_ref()).await?;
    }
    let written: Vec<Value> = memory_artifacts
        .all()
        .into_iter()
        .map(|(info, _)| json!({"id": info.id, "name": info.name, "size": info.size, "sha256": info.sha256}))
        .collect();

    let code = exit_code(&outcome.kind);
    if args.json {
        let mut report = serde_json::to_value(&outcome)?;
        report["exitCode"] = json!(code);
        report["artifacts"] = json!(written);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&outcome, &written);
    }
    Ok(ExitCode::from(code))
}

fn print_human(outcome: &Outcome, artifacts: &[Value]) {
    if !outcome.log.lines.is_empty() {
        println!("log:");
        for line in &outcome.log.lines {
            let level = format!("{:?}", line.level).to_lowercase();
            let source = format!("{:?}", line.source).to_lowercase();
            println!("  {:>6} ms  {level:<5}  {source:<6}  {}", line.at_ms, line.message);
        }
    }
    if let OutcomeKind::Completed { result } = &outcome.kind {
        let pretty = serde_json::from_str::<Value>(result)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| result.clone());
        println!("result:\n{pretty}");
    }
    if !artifacts.is_empty() {
        println!("artifacts (in memory; pass --artifacts DIR to keep them):");
        for artifact in artifacts {
            let text = |key: &str| artifact[key].as_str().unwrap_or_default().to_string();
            println!("  {}  {} bytes  sha256 {}", text("name"), artifact["size"], text("sha256"));
        }
    }
    let usage = &outcome.usage;
    let summary = format!(
        "{} · fuel {} · wall {:.2} ms · peak memory {:.1} MiB",
        outcome.kind,
        usage.fuel,
        usage.wall.as_secs_f64() * 1000.0,
        usage.peak_memory as f64 / (1 << 20) as f64
    );
    println!("{summary}");
    if !matches!(outcome.kind, OutcomeKind::Completed { .. }) {
        eprintln!("error: {}", hint(&outcome.kind));
    }
}

/// What to do about a failed run.
fn hint(kind: &OutcomeKind) -> String {
    let advice = match kind {
        OutcomeKind::OutOfFuel { .. } => "raise --fuel, or look for a loop that never ends",
        OutcomeKind::Timeout { .. } => "raise --timeout, or look for a wait that never returns",
        OutcomeKind::MemoryLimit { .. } => "raise --memory, or stream data instead of holding it all",
        OutcomeKind::StackOverflow => "look for unbounded recursion",
        OutcomeKind::CapabilityDenied { .. } => {
            "grant the capabilities with --grant (or in the permission sets), or stop importing them"
        }
        OutcomeKind::InvalidComponent { .. } => {
            "build the handler with `cargo build --target wasm32-wasip2` and the guest SDK"
        }
        OutcomeKind::Trap { .. } => "the handler panicked or aborted; the message above is its last words",
        OutcomeKind::ResultTooLarge { .. } => "return less, or write large output to an artifact",
        _ => "the handler reported this error",
    };
    format!("{kind}\nhint: {advice}")
}
