//! `objectos schedule`: manage schedules on a server or (with `--data-dir`)
//! in a local data directory. The local form works whether or not
//! `objectos serve` runs on it; a serving node picks the change up within
//! its scheduler poll interval.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use objectos_engine::config::EngineConfig;
use objectos_engine::node::Node;
use objectos_engine::ownership::Scope;
use objectos_engine::principal::Principal;
use objectos_engine::schedule::{MisfirePolicy, OverlapPolicy, Schedule, ScheduleSpec};
use serde_json::{Value, json};

use super::client::segment;
use super::output::{self, Table};
use super::{Globals, json_arg};

/// Add, list, pause, resume and remove cron schedules.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos schedule add nightly --cron '0 2 * * *' --timezone Europe/Berlin --handler tasks \\\n    \
    --data '{\"task\":\"sum\",\"numbers\":[1,2]}'\n  \
    objectos schedule ls\n  objectos schedule pause nightly")]
pub struct ScheduleArgs {
    /// Work on this local data directory instead of a server.
    #[arg(long, value_name = "DIR", env = "OBJECTOS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
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
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    timezone: String,
    #[command(flatten)]
    job: super::jobs::JobOptions,
    /// When a fire comes while the previous run is active.
    #[arg(long, value_enum, default_value = "skip")]
    overlap: Overlap,
    /// What to do with fires missed while the engine was down.
    #[arg(long, value_enum, default_value = "run-once")]
    misfire: Misfire,
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

impl AddArgs {
    fn spec(self) -> anyhow::Result<(Option<String>, ScheduleSpec)> {
        let spec = ScheduleSpec {
            timezone: self.timezone,
            priority: self.job.priority,
            max_retries: self.job.max_retries,
            timeout: self.job.timeout,
            overlap: match self.overlap {
                Overlap::Skip => OverlapPolicy::Skip,
                Overlap::Allow => OverlapPolicy::Allow,
            },
            misfire: match self.misfire {
                Misfire::Skip => MisfirePolicy::Skip,
                Misfire::RunOnce => MisfirePolicy::RunOnce,
            },
            run_as: self.job.run_as()?,
            ..ScheduleSpec::new(self.cron, self.handler, self.job.data()?)
        };
        Ok((self.id, spec))
    }
}

pub fn schedule(args: ScheduleArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let answer = match args.data_dir {
        Some(dir) => local(args.action, dir)?,
        None => remote(args.action, globals)?,
    };
    if globals.json {
        output::print_json(&answer)?;
    } else if let Some(list) = answer.get("schedules") {
        print_table(&serde_json::from_value::<Vec<Schedule>>(list.clone())?);
    } else if let Some(removed) = answer.get("removed") {
        println!("removed schedule {}; jobs it enqueued stay", removed["id"].as_str().unwrap_or_default());
    } else {
        print_one(&serde_json::from_value(answer)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The action on a local data directory; answers in the API's shapes.
fn local(action: Action, data_dir: PathBuf) -> anyhow::Result<Value> {
    let mut config = EngineConfig::default();
    config.apply_env(|name| std::env::var(name).ok())?;
    config.data_dir = data_dir;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let node = Node::open_beside(config)?;
        node.install_handlers().await?;
        let scheduler = &node.scheduler;
        let me = operator();
        // Whoever holds the data directory holds every schedule in it.
        let all = &Scope::Any;
        let changed = match action {
            Action::Ls => return Ok(json!({"schedules": scheduler.list(all).await?})),
            Action::Show { id } => scheduler.get(all, &id).await?,
            Action::Add(add) => {
                let (id, spec) = add.spec()?;
                scheduler.add(&me, id, spec).await?
            }
            Action::Update { id, patch } => {
                scheduler.update(&me, all, &id, &json_arg(&patch, "the patch")?).await?
            }
            Action::Pause { id } => scheduler.pause(&me, all, &id).await?,
            Action::Resume { id } => scheduler.resume(&me, all, &id).await?,
            Action::Rm { id } => return Ok(json!({"removed": scheduler.remove(&me, all, &id).await?})),
        };
        Ok(serde_json::to_value(changed)?)
    })
}

/// The action on the server.
fn remote(action: Action, globals: &Globals) -> anyhow::Result<Value> {
    let client = globals.client()?;
    let path = |id: &str, tail: &str| format!("/v1/schedules/{}{tail}", segment(id));
    Ok(match action {
        Action::Ls => client.get("/v1/schedules", &[])?,
        Action::Show { id } => client.get(&path(&id, ""), &[])?,
        Action::Add(add) => {
            let (id, spec) = add.spec()?;
            let spec = serde_json::to_value(spec)?;
            match id {
                Some(id) => client.send("PUT", &path(&id, ""), &spec)?,
                None => client.send("POST", "/v1/schedules", &spec)?,
            }
        }
        Action::Update { id, patch } => {
            client.send("PATCH", &path(&id, ""), &json_arg(&patch, "the patch")?)?
        }
        Action::Pause { id } => client.post(&path(&id, "/pause"))?,
        Action::Resume { id } => client.post(&path(&id, "/resume"))?,
        Action::Rm { id } => json!({"removed": client.delete(&path(&id, ""))?}),
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
    let (overlap, misfire) = (name(json!(spec.overlap)), name(json!(spec.misfire)));
    println!("policies   overlap {overlap}, misfire {misfire}");
    println!("state      {}", if schedule.paused { "paused" } else { "active" });
    println!("next run   {}", when(schedule.next_run));
    println!("last run   {}", when(schedule.last_run));
}

fn print_table(schedules: &[Schedule]) {
    let mut table = Table::new(&["ID", "CRON", "ZONE", "HANDLER", "STATE", "NEXT RUN", "LAST RUN"]);
    for s in schedules {
        let state = if s.paused { "paused" } else { "active" };
        table.row([
            s.id.clone(),
            s.spec.cron.clone(),
            s.spec.timezone.clone(),
            s.spec.handler.clone(),
            state.to_string(),
            when(s.next_run),
            when(s.last_run),
        ]);
    }
    table.print("no schedules; add one with `objectos schedule add --cron '…' --handler NAME`");
}
