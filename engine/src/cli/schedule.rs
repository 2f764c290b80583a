//! `objectos schedule`: manage the schedules of a local data directory.
//! Works whether or not `objectos serve` runs on it; a serving node picks
//! the change up within its scheduler poll interval.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use objectos_engine::config::EngineConfig;
use objectos_engine::jobs::Priority;
use objectos_engine::node::Node;
use objectos_engine::principal::Principal;
use objectos_engine::schedule::{MisfirePolicy, OverlapPolicy, Schedule, ScheduleSpec};
use serde_json::Value;

/// Add, list, pause, resume and remove cron schedules in a data directory.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos schedule add nightly --cron '0 2 * * *' --timezone Europe/Berlin --handler tasks \\\n    \
    --data '{\"task\":\"sum\",\"numbers\":[1,2]}'\n  \
    objectos schedule ls\n  objectos schedule pause nightly")]
pub struct ScheduleArgs {
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
    /// Add a schedule.
    #[command(
        after_help = "Examples:\n  objectos schedule add --cron '*/5 * * * * *' --handler template --data '{\"name\":\"Ada\"}'\n  \
        objectos schedule add weekdays --cron '0 9 * * MON-FRI' --timezone America/New_York --handler tasks \\\n    \
        --data @input.json --max-retries 0 --overlap allow --misfire skip"
    )]
    Add(AddArgs),
    /// List every schedule.
    #[command(after_help = "Example:\n  objectos schedule ls --json")]
    Ls,
    /// Show one schedule.
    #[command(after_help = "Example:\n  objectos schedule show nightly")]
    Show {
        /// The schedule's id.
        id: String,
    },
    /// Change a schedule by a JSON merge patch over its settings.
    #[command(
        after_help = "Example:\n  objectos schedule update nightly '{\"cron\":\"30 2 * * *\",\"maxRetries\":0}'"
    )]
    Update {
        /// The schedule's id.
        id: String,
        /// The patch, e.g. '{"cron":"0 3 * * *"}'; `null` restores a default.
        patch: String,
    },
    /// Pause a schedule.
    #[command(after_help = "Example:\n  objectos schedule pause nightly")]
    Pause {
        /// The schedule's id.
        id: String,
    },
    /// Resume a paused schedule from now on.
    #[command(after_help = "Example:\n  objectos schedule resume nightly")]
    Resume {
        /// The schedule's id.
        id: String,
    },
    /// Remove a schedule (jobs it enqueued stay).
    #[command(after_help = "Example:\n  objectos schedule rm nightly")]
    Rm {
        /// The schedule's id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The id (letters, digits, `-`, `_`, `.`, `:`); generated if left out.
    id: Option<String>,
    /// Cron expression: 5 fields, or 6 with seconds first.
    #[arg(long)]
    cron: String,
    /// The handler each fire runs.
    #[arg(long)]
    handler: String,
    /// The job's input: JSON, or @FILE.
    #[arg(long, default_value = "null", value_name = "JSON|@FILE")]
    data: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    timezone: String,
    /// low, normal, high or critical.
    #[arg(long, default_value = "normal")]
    priority: Priority,
    /// Retries after the first attempt (0: one attempt).
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// Wall-clock timeout per attempt in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout: Option<u64>,
    /// When a fire comes while the previous run is active.
    #[arg(long, value_enum, default_value = "skip")]
    overlap: Overlap,
    /// What to do with fires missed while the engine was down.
    #[arg(long, value_enum, default_value = "run-once")]
    misfire: Misfire,
    /// Run the jobs as this principal (JSON) instead of yourself.
    #[arg(long = "as", value_name = "PRINCIPAL_JSON")]
    run_as: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Overlap {
    Skip,
    Allow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Misfire {
    Skip,
    RunOnce,
}

/// The operator at this terminal.
fn operator() -> Principal {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "local".into());
    Principal::new(user, &["admin"])
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON"))
}

pub fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let mut config = EngineConfig::default();
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = Node::open_beside(config)?;
        node.install_handlers().await?;
        let scheduler = &node.scheduler;
        let me = operator();
        let changed = match args.action {
            Action::Ls => {
                let schedules = scheduler.list().await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&schedules)?);
                } else {
                    print_table(&schedules);
                }
                return Ok(ExitCode::SUCCESS);
            }
            Action::Show { id } => scheduler.get(&id).await?,
            Action::Add(add) => {
                let spec = ScheduleSpec {
                    timezone: add.timezone,
                    priority: add.priority,
                    max_retries: add.max_retries,
                    timeout: add.timeout,
                    overlap: match add.overlap {
                        Overlap::Skip => OverlapPolicy::Skip,
                        Overlap::Allow => OverlapPolicy::Allow,
                    },
                    misfire: match add.misfire {
                        Misfire::Skip => MisfirePolicy::Skip,
                        Misfire::RunOnce => MisfirePolicy::RunOnce,
                    },
                    run_as: add
                        .run_as
                        .map(|p| serde_json::from_str(&p).context("--as is not a principal: {\"userId\": …}"))
                        .transpose()?,
                    ..ScheduleSpec::new(add.cron, add.handler, json_arg(&add.data, "--data")?)
                };
                scheduler.add(&me, add.id, spec).await?
            }
            Action::Update { id, patch } => {
                scheduler.update(&me, &id, &json_arg(&patch, "the patch")?).await?
            }
            Action::Pause { id } => scheduler.pause(&me, &id).await?,
            Action::Resume { id } => scheduler.resume(&me, &id).await?,
            Action::Rm { id } => {
                let removed = scheduler.remove(&me, &id).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&removed)?);
                } else {
                    println!("removed schedule {}", removed.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&changed)?);
        } else {
            print_one(&changed);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".into(), |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn print_one(schedule: &Schedule) {
    let spec = &schedule.spec;
    println!("schedule   {}", schedule.id);
    println!("cron       {} ({})", spec.cron, spec.timezone);
    println!("handler    {}  data {}", spec.handler, spec.data);
    println!("runs as    {}", spec.run_as.as_ref().map_or("—", |p| p.user_id.as_str()));
    let name = |policy: Value| policy.as_str().unwrap_or_default().to_string();
    let (overlap, misfire) = (name(serde_json::json!(spec.overlap)), name(serde_json::json!(spec.misfire)));
    println!("policies   overlap {overlap}, misfire {misfire}");
    println!("state      {}", if schedule.paused { "paused" } else { "active" });
    println!("next run   {}", when(schedule.next_run));
    println!("last run   {}", when(schedule.last_run));
}

fn print_table(schedules: &[Schedule]) {
    if schedules.is_empty() {
        println!("no schedules; add one with `objectos schedule add --cron '…' --handler NAME`");
        return;
    }
    let id_width = schedules.iter().map(|s| s.id.len()).max().unwrap_or(0).max(2);
    let cron_width = schedules.iter().map(|s| s.spec.cron.len()).max().unwrap_or(0).max(4);
    let row = |cells: [&str; 7]| {
        let [id, cron, zone, handler, state, next, last] = cells;
        println!(
            "{id:<id_width$}  {cron:<cron_width$}  {zone:<16}  {handler:<16}  {state:<6}  {next:<23}  {last}"
        );
    };
    row(["ID", "CRON", "ZONE", "HANDLER", "STATE", "NEXT RUN", "LAST RUN"]);
    for s in schedules {
        let (next, last) = (when(s.next_run), when(s.last_run));
        let state = if s.paused { "paused" } else { "active" };
        row([&s.id, &s.spec.cron, &s.spec.timezone, &s.spec.handler, state, &next, &last]);
    }
}
