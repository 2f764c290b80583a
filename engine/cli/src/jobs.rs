//! `objectos enqueue`, `objectos jobs …` and `objectos stats`: jobs on a
//! running server.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use objectos_engine::config::parse_span;
use objectos_engine::jobs::{Attempt, AttemptLog, Job, Priority};
use serde_json::{Value, json};

use super::client::{Client, segment};
use super::output::{self, Table, Tone, clip, relative};
use super::{Globals, json_arg};

/// Exit code of `jobs wait` (and `enqueue --wait`) when the job ends failed or cancelled.
pub const EXIT_JOB_FAILED: u8 = 4;

/// Enqueue a job on the server.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    objectos enqueue template --data '{\"name\":\"Ada\"}' --wait\n  \
    objectos enqueue report-generation --data @report.json --priority high --timeout 600000\n  \
    objectos enqueue tasks --data '{\"task\":\"sum\",\"numbers\":[1,2]}' --run-at 10m --unique-key sum-1")]
pub struct EnqueueArgs {
    /// The handler to run.
    handler: String,
    #[command(flatten)]
    job: JobOptions,
    /// Fuel per attempt (instructions, roughly).
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Guest memory limit in bytes.
    #[arg(long, value_name = "BYTES")]
    memory: Option<u64>,
    /// Run no earlier than this: RFC 3339, or a span from now (`10m`, `2h`).
    #[arg(long, value_name = "TIME", value_parser = later)]
    run_at: Option<DateTime<Utc>>,
    /// No second active job may hold this key.
    #[arg(long, value_name = "KEY")]
    unique_key: Option<String>,
    /// Wait for the job to finish and print its result.
    #[arg(long, conflicts_with = "quiet")]
    wait: bool,
    /// Print only the job's id (for scripts: `JOB=$(objectos enqueue … -q)`).
    #[arg(long, short)]
    quiet: bool,
}

/// A job's input and the options a job and a schedule's jobs share.
#[derive(Debug, Args)]
pub struct JobOptions {
    /// The job's input: JSON, or @FILE.
    #[arg(long, default_value = "{}", value_name = "JSON|@FILE")]
    pub data: String,
    /// low, normal, high or critical.
    #[arg(long, default_value = "normal")]
    pub priority: Priority,
    /// Retries after the first attempt (0: one attempt).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Wall-clock timeout per attempt in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
    /// Run as this principal (JSON, needs jobs.impersonate).
    #[arg(long = "as", value_name = "PRINCIPAL_JSON")]
    pub run_as: Option<String>,
}

impl JobOptions {
    /// `--data` read and parsed.
    pub fn data(&self) -> anyhow::Result<Value> {
        json_arg(&self.data, "--data")
    }

    /// `--as` parsed, if given.
    pub fn run_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<Option<T>> {
        self.run_as
            .as_deref()
            .map(|p| {
                serde_json::from_str(p).context("--as is not a principal: {\"userId\": …, \"profiles\": […]}")
            })
            .transpose()
    }
}

/// List, show, cancel, retry, read the logs of and wait for jobs.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  objectos jobs ls --status failed\n  objectos jobs show job_01J…\n  \
    objectos jobs wait job_01J… && echo done")]
pub struct JobsArgs {
    #[command(subcommand)]
    action: JobsAction,
}

#[derive(Debug, Subcommand)]
enum JobsAction {
    /// List jobs, newest first unless sorted otherwise.
    #[command(after_help = "Examples:\n  objectos jobs ls\n  \
        objectos jobs ls --status pending,retrying --sort priority --limit 100\n  \
        objectos jobs ls --name backup --json | jq '.jobs[].id'")]
    Ls {
        /// Only jobs of this handler.
        #[arg(long)]
        name: Option<String>,
        /// Only these statuses, comma-separated (pending, scheduled, running,
        /// retrying, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only this priority.
        #[arg(long)]
        priority: Option<Priority>,
        /// The order.
        #[arg(long, value_enum, default_value = "newest")]
        sort: Sort,
        /// Skip this many (paging).
        #[arg(long, default_value_t = 0)]
        skip: u64,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Print only the ids, one a line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show a job: status, options, attempts, result or error.
    #[command(after_help = "Example:\n  objectos jobs show job_01J…")]
    Show {
        /// The job's id.
        id: String,
    },
    /// Cancel a pending, waiting or running job (a running guest stops at its next yield).
    #[command(after_help = "Example:\n  objectos jobs cancel job_01J…")]
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Run a failed or cancelled job again, as a new job with the same input and options.
    #[command(after_help = "Example:\n  objectos jobs retry job_01J… --wait")]
    Retry {
        /// The job's id.
        id: String,
        /// Wait for the new job to finish.
        #[arg(long)]
        wait: bool,
    },
    /// Print what each attempt logged.
    #[command(after_help = "Example:\n  objectos jobs logs job_01J…")]
    Logs {
        /// The job's id.
        id: String,
    },
    /// Wait until a job finishes; exit 0 if it completed, 4 if it failed or was cancelled.
    #[command(
        after_help = "Examples:\n  objectos jobs wait job_01J…\n  objectos jobs wait job_01J… --timeout 30s --json"
    )]
    Wait {
        /// The job's id.
        id: String,
        /// Give up after this long (`30s`, `5m`).
        #[arg(long, value_name = "SPAN", default_value = "1h", value_parser = span)]
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Sort {
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
    /// Most urgent first, then oldest.
    Priority,
    /// Soonest to run first.
    RunAt,
}

impl Sort {
    fn as_api(self) -> &'static str {
        match self {
            Sort::Newest => "createdAtDesc",
            Sort::Oldest => "createdAtAsc",
            Sort::Priority => "priorityDesc",
            Sort::RunAt => "runAtAsc",
        }
    }
}

/// Counts per status and run times.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  objectos stats\n  objectos stats --json")]
pub struct StatsArgs {}

fn later(text: &str) -> Result<DateTime<Utc>, String> {
    super::time_arg(text, super::From::Now)
}

fn span(text: &str) -> Result<Duration, String> {
    parse_span(text).map_err(|e| e.to_string())
}

pub fn enqueue(args: EnqueueArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    let run_as: Option<Value> = args.job.run_as()?;
    let mut body = json!({
        "name": args.handler,
        "data": args.job.data()?,
        "priority": args.job.priority,
    });
    let options = [
        ("maxRetries", args.job.max_retries.map(Value::from)),
        ("timeout", args.job.timeout.map(Value::from)),
        ("fuel", args.fuel.map(Value::from)),
        ("memory", args.memory.map(Value::from)),
        ("runAt", args.run_at.map(|at| json!(at))),
        ("uniqueKey", args.unique_key.map(Value::from)),
        ("runAs", run_as),
    ];
    for (key, value) in options {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let job = client.send("POST", "/v1/jobs", &body)?;
    if args.wait {
        return wait(&client, job_id(&job)?, Duration::from_secs(3600), globals.json);
    }
    if globals.json {
        output::print_json(&job)?;
    } else if args.quiet {
        println!("{}", job_id(&job)?);
    } else {
        let job: Job = serde_json::from_value(job)?;
        println!(
            "enqueued {} ({}, {} priority, {}); follow it with `objectos jobs wait {}`",
            job.id,
            job.name,
            job.priority.as_str(),
            job.status.as_str(),
            job.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn job_id(job: &Value) -> anyhow::Result<&str> {
    job["id"].as_str().context("the server's answer has no job id")
}

pub fn jobs(args: JobsArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let client = globals.client()?;
    let path = |id: &str, tail: &str| format!("/v1/jobs/{}{tail}", segment(id));
    match args.action {
        JobsAction::Ls { name, status, priority, sort, skip, limit, quiet } => {
            let mut query = vec![("sort", sort.as_api().to_string()), ("limit", limit.to_string())];
            query.extend(name.map(|n| ("name", n)));
            query.extend(status.map(|s| ("status", s)));
            query.extend(priority.map(|p| ("priority", p.as_str().to_string())));
            if skip > 0 {
                query.push(("skip", skip.to_string()));
            }
            let page = client.get("/v1/jobs", &query)?;
            if globals.json {
                return print_json(&page);
            }
            let jobs: Vec<Job> = serde_json::from_value(page["jobs"].clone())?;
            if quiet {
                jobs.iter().for_each(|job| println!("{}", job.id));
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", jobs_table(&jobs, Utc::now(), output::colour()));
            if jobs.len() as u64 == limit {
                eprintln!("(more may follow: --skip {})", skip + limit);
            }
        }
        JobsAction::Show { id } => {
            let job = client.get(&path(&id, ""), &[])?;
            if globals.json {
                return print_json(&job);
            }
            print!("{}", job_details(&serde_json::from_value(job)?, Utc::now(), output::colour()));
        }
        JobsAction::Cancel { id } => {
            let job = client.post(&path(&id, "/cancel"))?;
            if globals.json {
                return print_json(&job);
            }
            let job: Job = serde_json::from_value(job)?;
            let state =
                if job.status.as_str() == "running" { "stopping at its next yield" } else { "cancelled" };
            println!("{}: {state}", job.id);
        }
        JobsAction::Retry { id, wait: and_wait } => {
            let job = client.post(&path(&id, "/retry"))?;
            if and_wait {
                return wait(&client, job_id(&job)?, Duration::from_secs(3600), globals.json);
            }
            if globals.json {
                return print_json(&job);
            }
            println!("{id} enqueued again as {}", job_id(&job)?);
        }
        JobsAction::Logs { id } => {
            let logs = client.get(&path(&id, "/logs"), &[])?;
            if globals.json {
                return print_json(&logs);
            }
            let attempts: Vec<AttemptLog> = serde_json::from_value(logs["attempts"].clone())?;
            print!("{}", logs_text(&attempts));
        }
        JobsAction::Wait { id, timeout } => return wait(&client, &id, timeout, globals.json),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    output::print_json(value)?;
    Ok(ExitCode::SUCCESS)
}

/// Polls the job until it is final, showing its status and progress on a
/// terminal; prints how it ended.
fn wait(client: &Client, id: &str, timeout: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/jobs/{}", segment(id));
    let spinner = output::spinner(format!("waiting for {id}"));
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    let (value, job) = loop {
        let value = client.get(&path, &[])?;
        let job: Job = serde_json::from_value(value.clone())?;
        if job.status.is_final() {
            break (value, job);
        }
        let progress =
            job.progress.as_ref().map_or(String::new(), |p| format!(" {}% {}", p.percent, p.message));
        spinner.set_message(format!("{id}: {} (attempt {}){progress}", job.status.as_str(), job.attempts));
        if Instant::now() >= deadline {
            spinner.finish_and_clear();
            anyhow::bail!(
                "{id} is still {} after {} s; wait longer with --timeout",
                job.status.as_str(),
                timeout.as_secs()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    };
    spinner.finish_and_clear();
    if json {
        output::print_json(&value)?;
    } else {
        let colour = output::colour();
        let status = output::paint(job.status.as_str(), Tone::of_status(job.status.as_str()), colour);
        let took = match (job.created_at, job.ended_at()) {
            (from, Some(to)) => format!(" in {:.1} s", (to - from).num_milliseconds() as f64 / 1000.0),
            _ => String::new(),
        };
        println!("{} {status} after {} attempt(s){took}", job.id, job.attempts);
        match (&job.result, &job.error) {
            (Some(result), _) => println!("{}", serde_json::to_string_pretty(result)?),
            (None, Some(error)) => println!("error: {error}"),
            (None, None) => {}
        }
    }
    Ok(if job.status.as_str() == "completed" { ExitCode::SUCCESS } else { ExitCode::from(EXIT_JOB_FAILED) })
}

/// The listing's table.
fn jobs_table(jobs: &[Job], now: DateTime<Utc>, colour: bool) -> String {
    if jobs.is_empty() {
        return "no jobs match; enqueue one with `objectos enqueue HANDLER --data JSON`\n".into();
    }
    let mut table = Table::new(&["ID", "HANDLER", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED", "OUTCOME"]);
    for job in jobs {
        let status = job.status.as_str();
        table.toned_row(vec![
            (job.id.clone(), None),
            (job.name.clone(), None),
            (status.to_string(), Tone::of_status(status)),
            (job.priority.as_str().to_string(), None),
            (format!("{}/{}", job.attempts, job.max_attempts()), None),
            (relative(Some(job.created_at), now), None),
            (clip(&outcome(job), 60), None),
        ]);
    }
    table.render(colour)
}

/// The job's result, error or what it waits for, in a line.
fn outcome(job: &Job) -> String {
    match (&job.result, &job.error, &job.progress) {
        (Some(result), _, _) => result.to_string(),
        (None, Some(error), _) => error.clone(),
        (None, None, Some(progress)) => format!("{}% {}", progress.percent, progress.message),
        _ => String::new(),
    }
}

/// `jobs show`: the job's fields, then its attempts.
fn job_details(job: &Job, now: DateTime<Utc>, colour: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let status = output::paint(job.status.as_str(), Tone::of_status(job.status.as_str()), colour);
    let when = |at: Option<DateTime<Utc>>| match at {
        Some(at) => {
            format!("{} ({})", objectos_engine::store::records::timestamp(at), relative(Some(at), now))
        }
        None => "—".into(),
    };
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<12}{value}");
    };
    field("job", job.id.clone());
    field(
        "handler",
        format!("{} (version {}…)", job.name, &job.handler_sha256[..12.min(job.handler_sha256.len())]),
    );
    field("status", format!("{status}, attempt {} of {}", job.attempts, job.max_attempts()));
    field("priority", job.priority.as_str().into());
    field("runs as", format!("{} ({})", job.run_as.user_id, job.run_as.profiles.join(", ")));
    field("data", clip(&job.data.to_string(), 200));
    field(
        "limits",
        format!("timeout {} ms, fuel {}, memory {}", job.timeout, job.fuel, output::bytes(job.memory)),
    );
    if let Some(key) = &job.unique_key {
        field("unique key", key.clone());
    }
    if let Some(schedule) = &job.schedule_id {
        field("schedule", schedule.clone());
    }
    field("created", when(Some(job.created_at)));
    field("run at", when(Some(job.run_at)));
    if let Some(at) = job.ended_at() {
        field("finished", when(Some(at)));
    }
    if let Some(progress) = &job.progress {
        field("progress", format!("{}% {}", progress.percent, progress.message));
    }
    if let Some(result) = &job.result {
        field("result", clip(&result.to_string(), 400));
    }
    if let Some(error) = &job.error {
        field("error", error.clone());
    }
    if !job.attempt_log.is_empty() {
        let mut table = Table::new(&["ATTEMPT", "STARTED", "OUTCOME", "WALL", "FUEL", "ERROR"]);
        for attempt in &job.attempt_log {
            table.toned_row(attempt_row(attempt, now));
        }
        out.push('\n');
        out.push_str(&table.render(colour));
    }
    out
}

fn attempt_row(attempt: &Attempt, now: DateTime<Utc>) -> Vec<(String, Option<Tone>)> {
    let tone = if attempt.outcome == "completed" { Tone::Good } else { Tone::Bad };
    vec![
        (attempt.number.to_string(), None),
        (relative(Some(attempt.started_at), now), None),
        (attempt.outcome.clone(), Some(tone)),
        (format!("{:.1} ms", attempt.usage.wall.as_secs_f64() * 1000.0), None),
        (attempt.usage.fuel.to_string(), None),
        (clip(attempt.error.as_deref().unwrap_or(""), 80), None),
    ]
}

/// `jobs logs`: each attempt's lines, with their time into the run.
fn logs_text(attempts: &[AttemptLog]) -> String {
    use std::fmt::Write as _;
    if attempts.is_empty() {
        return "no log lines yet\n".into();
    }
    let mut out = String::new();
    for attempt in attempts {
        let _ = writeln!(out, "── attempt {} ({} lines)", attempt.attempt, attempt.lines.len());
        for line in &attempt.lines {
            let level = serde_json::to_value(line.level).ok().and_then(|v| v.as_str().map(str::to_string));
            let _ = writeln!(out, "{:>8} ms  {:<5}  {}", line.at_ms, level.unwrap_or_default(), line.message);
        }
        if attempt.dropped_bytes > 0 {
            let _ = writeln!(out, "  … {} more bytes dropped past the log cap", attempt.dropped_bytes);
        }
    }
    out
}

pub fn stats(_: StatsArgs, globals: &Globals) -> anyhow::Result<ExitCode> {
    let stats = globals.client()?.get("/v1/stats", &[])?;
    if globals.json {
        return print_json(&stats);
    }
    let mut table = Table::new(&["STATUS", "JOBS"]);
    if let Some(counts) = stats["jobs"]["byStatus"].as_object() {
        for (status, n) in counts {
            table.toned_row(vec![(status.clone(), Tone::of_status(status)), (n.to_string(), None)]);
        }
    }
    table.row(["total".to_string(), stats["jobs"]["total"].to_string()]);
    print!("{}", table.render(output::colour()));
    let runs = &stats["runs"];
    println!(
        "\nthis server's runs: {} attempts, {:.1}/s over the last minute; run time p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        runs["attempts"],
        runs["perSecondLastMinute"].as_f64().unwrap_or(0.0),
        runs["p50Ms"].as_f64().unwrap_or(0.0),
        runs["p95Ms"].as_f64().unwrap_or(0.0),
        runs["p99Ms"].as_f64().unwrap_or(0.0),
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str, extra: Value) -> Job {
        let mut job = json!({
            "id": id, "name": "report-generation", "handlerSha256": "ab".repeat(32), "data": {"object": "contacts"},
            "priority": "normal", "status": status, "attempts": 1, "maxRetries": 3,
            "backoff": {"initialMs": 1000, "factor": 2.0, "maxMs": 60000, "jitter": 0.2},
            "timeout": 60000, "fuel": 10_000_000_000u64, "memory": 134_217_728,
            "runAs": {"userId": "ada", "profiles": ["admin"], "metadata": {}},
            "runAt": "2026-11-29T12:00:00Z", "uniqueKey": null, "createdAt": "2026-11-29T12:00:00Z",
            "startedAt": "2026-11-29T12:00:01Z", "completedAt": null, "failedAt": null, "cancelledAt": null,
            "error": null, "result": null, "progress": null, "attemptLog": [],
        });
        for (key, value) in extra.as_object().unwrap() {
            job[key] = value.clone();
        }
        serde_json::from_value(job).unwrap()
    }

    fn snapshot(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/snapshots").join(name);
        crate::snapshot::assert_snapshot(&path, text);
    }

    fn sample() -> Vec<Job> {
        let attempt = json!({"number": 1, "startedAt": "2026-11-29T12:00:01Z", "finishedAt": "2026-11-29T12:00:02Z",
            "outcome": "timeout", "error": "timed out after 1000 ms", "usage": {"fuel": 1234, "wall": 1000.5, "peakMemory": 65536}});
        vec![
            job(
                "job_0001",
                "completed",
                json!({"result": {"rows": 42, "artifactId": "art_1"}, "completedAt": "2026-11-29T12:00:02Z"}),
            ),
            job(
                "job_0002",
                "failed",
                json!({"error": "timed out after 1000 ms", "attempts": 4, "attemptLog": [attempt]}),
            ),
            job(
                "job_0003",
                "running",
                json!({"progress": {"percent": 40, "message": "page 4 of 10"}, "priority": "critical"}),
            ),
        ]
    }

    #[test]
    fn the_jobs_table_matches_its_snapshot() {
        let now = "2026-11-29T12:05:00Z".parse().unwrap();
        snapshot("jobs-table.txt", &jobs_table(&sample(), now, false));
        assert!(jobs_table(&[], now, false).contains("objectos enqueue"), "an empty list says what to do");
    }

    #[test]
    fn a_jobs_details_match_their_snapshot() {
        let now = "2026-11-29T12:05:00Z".parse().unwrap();
        snapshot("job-details.txt", &job_details(&sample()[1], now, false));
    }
}
