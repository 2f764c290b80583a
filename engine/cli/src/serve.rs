//! `objectos serve`: the engine as a long-running process on the embedded
//! database. Runs the workers and the scheduler until SIGINT or SIGTERM
//! (reloading the permission sets on SIGHUP or when their files change),
//! then stops firing schedules and shuts down
//! gracefully: no new claims, running jobs get `workers.shutdownGrace` to
//! finish, and whatever still runs is released to run again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use objectos_engine::api;
use objectos_engine::config::{ENV_VARS, EngineConfig, LogFormat};
use objectos_engine::node::Node;
use objectos_engine::permissions::sets::{SYSTEM_PERMISSIONS, is_set_file};

/// Run the engine: workers, leases, retention, on the embedded SQLite database.
#[derive(Debug, Args)]
#[command(after_help = serve_help())]
pub struct ServeArgs {
    /// A YAML config file (see the README for every key).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the database and compiled-code cache live (default ./objectos-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The directory of permission sets (default ./permissions beside the data directory).
    #[arg(long, value_name = "DIR")]
    permissions: Option<PathBuf>,
    /// Log as readable lines or as JSON objects.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
    /// Where the HTTP API listens (default 127.0.0.1:7878).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// [`LogFormat`] as the command line spells it (the library has no clap).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    /// Readable lines.
    Human,
    /// JSON objects, one per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

fn serve_help() -> String {
    let vars: Vec<String> = ENV_VARS.iter().map(|(name, key)| format!("  {name:<26} {key}")).collect();
    format!(
        "Examples:\n  objectos serve\n  objectos serve --config objectos.yaml --data-dir /var/lib/objectos\n  \
         objectos serve --permissions ./permissions   # reload: kill -HUP <pid>\n  \
         objectos serve --listen 0.0.0.0:7878\n  \
         OBJECTOS_CONCURRENCY=32 objectos serve --log-format json\n\n\
         Environment (overrides the config file; flags override both):\n{}",
        vars.join("\n")
    )
}

/// Loads the settings: defaults, file, environment, flags.
fn settings(args: &ServeArgs) -> anyhow::Result<EngineConfig> {
    let mut config = match &args.config {
        Some(path) => EngineConfig::from_file(path)?,
        None => EngineConfig::default(),
    };
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(dir) = &args.permissions {
        config.permissions = Some(dir.clone());
    }
    if let Some(format) = args.log_format {
        config.log.format = format.into();
    }
    if let Some(listen) = &args.listen {
        config.api.listen = listen.clone();
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn init_logging(config: &EngineConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log level `{}`", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = settings(&args)?;
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let grace = config.workers.shutdown_grace;
        let signals = Signals::install()?;
        let node = Arc::new(Node::open(config)?);
        node.install_handlers().await?;
        let (tokens, created) = api::auth::load(&node.config.data_dir, &node.config.api.tokens)?;
        if let Some(token) = created {
            // Printed, never logged: the data directory keeps only its digest.
            eprintln!(
                "Created an admin API token (shown once; only its sha256 is stored in {}):\n  {token}",
                node.config.data_dir.join(api::auth::TOKEN_FILE).display()
            );
            if let Some(file) = bootstrap_admin_set(&node)? {
                eprintln!("Created {}: profile `admin` holds every system permission.", file.display());
            }
        }
        let audit = node.start_audit();
        let workers = node.queue.start();
        let scheduler = node.scheduler.start().await?;
        let listener = tokio::net::TcpListener::bind(&node.config.api.listen)
            .await
            .with_context(|| format!("listening on {}", node.config.api.listen))?;
        let address = listener.local_addr()?;
        let http = api::Serving::spawn(listener, node.clone(), tokens);
        tracing::info!(
            listen = %address,
            data_dir = %node.config.data_dir.display(),
            permissions = %node.config.permissions_dir().0.display(),
            sets = node.permissions.current().set_count(),
            node = %node.config.node_id,
            concurrency = node.config.workers.concurrency,
            "objectos is serving; stop with Ctrl-C or SIGTERM, reload permissions with SIGHUP"
        );
        let watcher = node.permissions.watch(PERMISSIONS_POLL);
        let signal = signals.stop(&node).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        // No new requests; those in flight finish.
        if let Err(error) = http.stop().await? {
            tracing::error!(%error, "the HTTP server failed");
        }
        scheduler.stop().await;
        let running = node.queue.running_count();
        tracing::info!(signal, running, grace_ms = grace.as_millis() as u64, "shutting down");
        let report = workers.shutdown(Some(grace)).await;
        tracing::info!(
            finished = report.in_flight - report.released,
            released = report.released,
            "stopped; released jobs run again on the next start"
        );
        audit.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// On a first start with no permission sets at all, the admin token just
/// created would be refused everything: writes a set giving profile
/// `admin` every system permission, where the operator sees and edits it.
fn bootstrap_admin_set(node: &Node) -> anyhow::Result<Option<PathBuf>> {
    let (dir, _) = node.config.permissions_dir();
    let has_sets =
        std::fs::read_dir(&dir).is_ok_and(|entries| entries.flatten().any(|e| is_set_file(&e.path())));
    if has_sets {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join("admin.yaml");
    let set = format!(
        "# Written by the first `objectos serve`: the admin API token's profile may do\n\
         # everything the engine offers. Object permissions (records) are sets of their own.\n\
         name: admin\nsystem:\n  profiles:\n    admin: [{}]\n",
        SYSTEM_PERMISSIONS.join(", ")
    );
    std::fs::write(&file, set).with_context(|| format!("writing {}", file.display()))?;
    node.permissions.reload().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(Some(file))
}

/// How often the permission directory is checked for changed files.
const PERMISSIONS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The signals `serve` handles, installed before it says it is serving so
/// that a signal sent as soon as it listens is never fatal.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGINT or SIGTERM and names it, reloading the permission
    /// sets on every SIGHUP meanwhile.
    async fn stop(mut self, node: &Node) -> &'static str {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.hangup.recv() => {
                    let permissions = node.permissions.clone();
                    // Off the runtime: reading the files blocks.
                    let _ = tokio::task::spawn_blocking(move || permissions.reload_logged("SIGHUP")).await;
                }
            }
        }
    }
}
