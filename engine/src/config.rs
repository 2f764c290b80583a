//! The engine's settings for `objectos serve`: defaults, then a YAML file,
//! then environment variables, then command-line flags, each overriding the
//! one before.
//!
//! Durations are written as milliseconds (`30000`) or with a unit (`500ms`,
//! `30s`, `15m`, `24h`, `7d`); a retention of `null` keeps jobs for ever.
//! Unknown keys and wrong types are errors naming the line, never ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::queue::{HandlerDefaults, QueueConfig, Retention};
use crate::sandbox::Limits;
use crate::schedule::SchedulerConfig;
use crate::store::sqlite::Durability;

/// A setting that could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An environment variable holds a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Everything `objectos serve` can be told.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Where the database, compiled-code cache and lock file live.
    /// Default `./objectos-data`.
    pub data_dir: PathBuf,
    /// The directory of permission sets. Default `permissions` beside the
    /// data directory (`./permissions` with the default data directory).
    pub permissions: Option<PathBuf>,
    /// This node's name on leases; unique per node sharing a database.
    pub node_id: String,
    /// `full` (default: every commit survives power loss) or `normal`
    /// (survives a crash of the process).
    pub durability: DurabilitySetting,
    /// The worker pool.
    pub workers: WorkersConfig,
    /// Defaults for jobs that do not say.
    pub jobs: JobDefaults,
    /// How long finished jobs are kept.
    pub retention: RetentionConfig,
    /// The cron scheduler.
    pub scheduler: SchedulerSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// Logging.
    pub log: LogConfig,
    /// The HTTP API.
    pub api: ApiConfig,
}

/// The HTTP API's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The address to listen on. Default `127.0.0.1:7878`.
    pub listen: String,
    /// Bearer tokens and the principals they act as. With none here and
    /// none created before, the first start creates an admin token.
    pub tokens: Vec<TokenConfig>,
    /// The largest request body outside uploads. Default 4 MiB.
    pub max_body_bytes: usize,
    /// The largest handler upload. Default 20 MiB.
    pub max_upload_bytes: usize,
    /// The most bytes of jobs one page of `GET /v1/jobs` holds: a page
    /// stops early there (and says where the next starts). Default 16 MiB.
    pub max_page_bytes: usize,
    /// Connections open at once; more wait to be accepted. Default 1024.
    pub max_connections: usize,
    /// Time a client has to send a request's headers. Default 10 s.
    #[serde(deserialize_with = "span")]
    pub header_timeout: Duration,
    /// Time from a request's headers to its answer, a slow body included
    /// (a streamed download is not bounded by it). Default 60 s.
    #[serde(deserialize_with = "span")]
    pub request_timeout: Duration,
    /// The most bytes of request headers. Default 64 KiB.
    pub max_header_bytes: usize,
}

impl ApiConfig {
    /// The limits of the server's connections.
    pub fn connection_limits(&self) -> crate::api::ConnectionLimits {
        crate::api::ConnectionLimits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            max_header_bytes: self.max_header_bytes,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7878".into(),
            tokens: Vec::new(),
            max_body_bytes: 4 << 20,
            max_upload_bytes: 20 << 20,
            max_page_bytes: 16 << 20,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}

/// One API token: only its sha256 is ever stored.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for people and logs (never the token).
    pub name: String,
    /// The lowercase hex sha256 of the token.
    pub sha256: String,
    /// Who requests with this token act as.
    pub principal: crate::principal::Principal,
}

/// The scheduler's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// A fire handled later than this is a misfire and follows the
    /// schedule's misfire policy. Default 60 s.
    #[serde(deserialize_with = "span")]
    pub misfire_threshold: Duration,
    /// How often changes made by other processes (`objectos schedule`) are
    /// picked up. Default 1 s.
    #[serde(deserialize_with = "span")]
    pub poll_interval: Duration,
    /// How long before its time a fire is handled (its job waits for the
    /// time). Default 200 ms.
    #[serde(deserialize_with = "span")]
    pub lead: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        let defaults = SchedulerConfig::default();
        Self {
            misfire_threshold: defaults.misfire_threshold,
            poll_interval: defaults.poll_interval,
            lead: defaults.lead,
        }
    }
}

/// The audit log's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditSettings {
    /// How often new events are appended to the log. Default 250 ms.
    #[serde(deserialize_with = "span")]
    pub interval: Duration,
    /// Entries older than this are removed as a whole prefix, keeping a
    /// checkpoint of where it ended. Default `null`: kept for ever.
    #[serde(deserialize_with = "optional_span")]
    pub retention: Option<Duration>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { interval: Duration::from_millis(250), retention: None }
    }
}

/// SQLite's commit durability, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilitySetting {
    /// fsync on every commit.
    #[default]
    Full,
    /// fsync at checkpoints only.
    Normal,
}

/// The worker pool's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Jobs running at once. Default 16.
    pub concurrency: usize,
    /// Jobs claimed ahead of a free slot (see [`QueueConfig::prefetch`]).
    /// Default 0.
    pub prefetch: usize,
    /// Per-handler caps.
    pub handler_concurrency: HashMap<String, usize>,
    /// Lease length; renewed every third of it. Default 30 s.
    #[serde(deserialize_with = "span")]
    pub lease: Duration,
    /// How long a shutdown lets running jobs finish before releasing them.
    /// Default 30 s.
    #[serde(deserialize_with = "span")]
    pub shutdown_grace: Duration,
    /// How often to look for jobs other processes enqueued. Default 1 s.
    #[serde(deserialize_with = "span")]
    pub poll_interval: Duration,
    /// How often to rescue lapsed leases and prune. Default 10 s.
    #[serde(deserialize_with = "span")]
    pub maintenance_interval: Duration,
}

/// Defaults for jobs that do not set their own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JobDefaults {
    /// Default 3.
    pub max_retries: u32,
    /// Wall-clock timeout. Default 60 s.
    #[serde(deserialize_with = "span")]
    pub timeout: Duration,
    /// Fuel budget. Default 10 billion.
    pub fuel: u64,
    /// Memory limit in bytes. Default 128 MiB.
    pub memory: u64,
    /// Largest input accepted, in bytes. Default 1 MiB.
    pub max_input_bytes: usize,
    /// An attempt's log cap in bytes; past it lines are dropped with one
    /// marker. Default 1 MiB.
    pub max_log_bytes: usize,
    /// Largest result a handler may return, in bytes. Default 1 MiB.
    pub max_result_bytes: usize,
    /// Longest error message kept, in bytes (cut with a marker). Default 64 KiB.
    pub max_error_bytes: usize,
    /// Longest progress message kept, in bytes (cut with a marker). Default 4 KiB.
    pub max_progress_bytes: usize,
    /// Artifact writers an attempt may hold open at once. Default 16.
    pub max_artifact_writers: usize,
    /// Bytes an attempt may write to artifacts. Default 8 GiB.
    pub max_artifact_bytes: u64,
    /// Defaults per handler (`maxRetries`, `timeout`, `fuel`, `memory`),
    /// between a job's own options and the ones above. The built-ins have
    /// their own ([`crate::builtins`]); what is set here overrides them
    /// option by option.
    pub handlers: HashMap<String, HandlerDefaults>,
}

/// Retention per final status; `null` keeps for ever.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Default 24 h.
    #[serde(deserialize_with = "optional_span")]
    pub completed: Option<Duration>,
    /// Default 24 h.
    #[serde(deserialize_with = "optional_span")]
    pub cancelled: Option<Duration>,
    /// Default 7 d.
    #[serde(deserialize_with = "optional_span")]
    pub failed: Option<Duration>,
}

/// How the engine logs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json` (one object per line).
    pub format: LogFormat,
    /// A tracing filter such as `info` or `objectos_engine=debug`. Default `info`.
    pub level: String,
}

/// The log's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// JSON objects, one per line.
    Json,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("objectos-data"),
            permissions: None,
            node_id: "node-1".into(),
            durability: DurabilitySetting::Full,
            workers: WorkersConfig::default(),
            jobs: JobDefaults::default(),
            retention: RetentionConfig::default(),
            scheduler: SchedulerSettings::default(),
            audit: AuditSettings::default(),
            log: LogConfig::default(),
            api: ApiConfig::default(),
        }
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        let queue = QueueConfig::default();
        Self {
            concurrency: queue.concurrency,
            prefetch: queue.prefetch,
            handler_concurrency: HashMap::new(),
            lease: queue.lease,
            shutdown_grace: Duration::from_secs(30),
            poll_interval: queue.poll_interval,
            maintenance_interval: queue.maintenance_interval,
        }
    }
}

impl Default for JobDefaults {
    fn default() -> Self {
        let queue = QueueConfig::default();
        Self {
            max_retries: queue.max_retries,
            timeout: queue.limits.timeout,
            fuel: queue.limits.fuel,
            memory: queue.limits.memory,
            max_input_bytes: queue.max_input_bytes,
            max_log_bytes: queue.limits.log_bytes,
            max_result_bytes: queue.limits.result_bytes,
            max_error_bytes: queue.limits.error_bytes,
            max_progress_bytes: queue.limits.progress_bytes,
            max_artifact_writers: queue.limits.artifact_writers,
            max_artifact_bytes: queue.limits.artifact_bytes,
            handlers: HashMap::new(),
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let retention = Retention::default();
        Self { completed: retention.completed, cancelled: retention.cancelled, failed: retention.failed }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Human, level: "info".into() }
    }
}

/// The environment variables read, and what each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("OBJECTOS_DATA_DIR", "dataDir"),
    ("OBJECTOS_PERMISSIONS", "permissions"),
    ("OBJECTOS_NODE_ID", "nodeId"),
    ("OBJECTOS_DURABILITY", "durability (full | normal)"),
    ("OBJECTOS_CONCURRENCY", "workers.concurrency"),
    ("OBJECTOS_SHUTDOWN_GRACE", "workers.shutdownGrace"),
    ("OBJECTOS_LOG_FORMAT", "log.format (human | json)"),
    ("OBJECTOS_LOG", "log.level"),
    ("OBJECTOS_LISTEN", "api.listen"),
];

impl EngineConfig {
    /// Reads a YAML config file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |message: String| ConfigError::File { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        Self::from_yaml(&text).map_err(file_error)
    }

    /// Parses YAML text over the defaults; an empty text is all defaults.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_norway::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies the environment variables of [`ENV_VARS`] that `lookup` finds.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env { name, message: e.to_string() })
        }
        let env = |name: &'static str| lookup(name).filter(|v| !v.is_empty()).map(|v| (name, v));
        if let Some((_, v)) = env("OBJECTOS_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some((_, v)) = env("OBJECTOS_LISTEN") {
            self.api.listen = v;
        }
        if let Some((_, v)) = env("OBJECTOS_PERMISSIONS") {
            self.permissions = Some(PathBuf::from(v));
        }
        if let Some((_, v)) = env("OBJECTOS_NODE_ID") {
            self.node_id = v;
        }
        if let Some((name, v)) = env("OBJECTOS_DURABILITY") {
            self.durability = match v.as_str() {
                "full" => DurabilitySetting::Full,
                "normal" => DurabilitySetting::Normal,
                _ => return Err(ConfigError::Env { name, message: format!("`{v}` is not full or normal") }),
            };
        }
        if let Some((name, v)) = env("OBJECTOS_CONCURRENCY") {
            self.workers.concurrency = parsed(name, &v)?;
        }
        if let Some((name, v)) = env("OBJECTOS_SHUTDOWN_GRACE") {
            self.workers.shutdown_grace =
                parse_span(&v).map_err(|message| ConfigError::Env { name, message })?;
        }
        if let Some((name, v)) = env("OBJECTOS_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError::Env { name, message: format!("`{v}` is not human or json") }),
            };
        }
        if let Some((_, v)) = env("OBJECTOS_LOG") {
            self.log.level = v;
        }
        self.validate().map_err(|message| ConfigError::Env { name: "OBJECTOS_*", message })
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers.concurrency == 0 {
            return Err("workers.concurrency must be at least 1".into());
        }
        if self.workers.lease < Duration::from_secs(1) {
            return Err("workers.lease must be at least 1s".into());
        }
        if self.node_id.is_empty() {
            return Err("nodeId must not be empty".into());
        }
        if self.scheduler.poll_interval.is_zero() {
            return Err("scheduler.pollInterval must be positive".into());
        }
        if self.audit.interval.is_zero() {
            return Err("audit.interval must be positive".into());
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "api.listen must be an address and port such as 127.0.0.1:7878, not `{}`",
                self.api.listen
            ));
        }
        for token in &self.api.tokens {
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "api.tokens `{}`: sha256 must be 64 hex digits (the token's digest, never the token)",
                    token.name
                ));
            }
        }
        Ok(())
    }

    /// The directory of permission sets, and whether it was configured
    /// (rather than the default).
    pub fn permissions_dir(&self) -> (PathBuf, bool) {
        match &self.permissions {
            Some(dir) => (dir.clone(), true),
            None => {
                let parent = self.data_dir.parent().filter(|p| !p.as_os_str().is_empty());
                (parent.unwrap_or(Path::new(".")).join("permissions"), false)
            }
        }
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("objectos.db")
    }

    /// The queue's settings.
    pub fn queue_config(&self) -> QueueConfig {
        let defaults = QueueConfig::default();
        QueueConfig {
            concurrency: self.workers.concurrency,
            prefetch: self.workers.prefetch,
            handler_concurrency: self.workers.handler_concurrency.clone(),
            max_retries: self.jobs.max_retries,
            handler_defaults: self.handler_defaults(),
            limits: Limits {
                timeout: self.jobs.timeout,
                fuel: self.jobs.fuel,
                memory: self.jobs.memory,
                log_bytes: self.jobs.max_log_bytes,
                result_bytes: self.jobs.max_result_bytes,
                error_bytes: self.jobs.max_error_bytes,
                progress_bytes: self.jobs.max_progress_bytes,
                artifact_writers: self.jobs.max_artifact_writers,
                artifact_bytes: self.jobs.max_artifact_bytes,
            },
            max_input_bytes: self.jobs.max_input_bytes,
            lease: self.workers.lease,
            node_id: self.node_id.clone(),
            poll_interval: self.workers.poll_interval,
            maintenance_interval: self.workers.maintenance_interval,
            retention: Retention {
                completed: self.retention.completed,
                cancelled: self.retention.cancelled,
                failed: self.retention.failed,
            },
            ..defaults
        }
    }

    /// The built-ins' defaults, overridden option by option by `jobs.handlers`.
    fn handler_defaults(&self) -> HashMap<String, HandlerDefaults> {
        let mut merged = crate::builtins::defaults();
        for (name, over) in &self.jobs.handlers {
            let entry = merged.entry(name.clone()).or_default();
            *entry = entry.overridden_by(*over);
        }
        merged
    }

    /// The scheduler's settings.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            misfire_threshold: self.scheduler.misfire_threshold,
            poll_interval: self.scheduler.poll_interval,
            lead: self.scheduler.lead,
        }
    }

    /// SQLite durability.
    pub fn durability(&self) -> Durability {
        match self.durability {
            DurabilitySetting::Full => Durability::Full,
            DurabilitySetting::Normal => Durability::Normal,
        }
    }
}

/// Parses `30000`, `500ms`, `30s`, `15m`, `24h` or `7d`.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration such as 30s or 500ms"))?;
    let ms = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("`{other}` is not a unit: use ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(number.saturating_mul(ms)))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SpanText {
    Millis(u64),
    Text(String),
}

fn span<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    match SpanText::deserialize(deserializer)? {
        SpanText::Millis(ms) => Ok(Duration::from_millis(ms)),
        SpanText::Text(text) => parse_span(&text).map_err(serde::de::Error::custom),
    }
}

pub(crate) fn optional_span<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<SpanText>::deserialize(deserializer)?
        .map(|span| match span {
            SpanText::Millis(ms) => Ok(Duration::from_millis(ms)),
            SpanText::Text(text) => parse_span(&text).map_err(serde::de::Error::custom),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let mut config = EngineConfig::from_yaml(
            "dataDir: /srv/objectos\nworkers:\n  concurrency: 4\n  shutdownGrace: 2m\n\
             retention:\n  completed: 1h\n  failed: null\nlog:\n  format: json\n",
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/objectos"));
        assert_eq!(config.workers.concurrency, 4);
        assert_eq!(config.workers.shutdown_grace, Duration::from_secs(120));
        assert_eq!(config.workers.lease, Duration::from_secs(30), "unset keys keep their default");
        assert_eq!(config.retention.completed, Some(Duration::from_secs(3600)));
        assert_eq!(config.retention.failed, None, "null keeps for ever");
        assert_eq!(config.log.format, LogFormat::Json);
        let env: HashMap<&str, &str> =
            [("OBJECTOS_CONCURRENCY", "9"), ("OBJECTOS_LOG_FORMAT", "human")].into();
        config.apply_env(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!((config.workers.concurrency, config.log.format), (9, LogFormat::Human));
        assert_eq!(config.queue_config().retention.completed, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn handler_defaults_override_the_built_ins_option_by_option() {
        let config = EngineConfig::from_yaml(
            "jobs:\n  handlers:\n    report-generation: { timeout: 2h }\n    mine: { memory: 1048576, maxRetries: 0 }\n",
        )
        .unwrap();
        let defaults = config.queue_config().handler_defaults;
        let report = defaults["report-generation"];
        assert_eq!(report.timeout, Some(Duration::from_secs(7200)));
        assert_eq!(report.memory, Some(64 << 20), "the built-in's own memory default stays");
        assert_eq!((defaults["mine"].memory, defaults["mine"].max_retries), (Some(1 << 20), Some(0)));
        assert!(defaults.contains_key("data-cleanup"));
        let typo = EngineConfig::from_yaml("jobs:\n  handlers:\n    mine: { timout: 2h }\n").unwrap_err();
        assert!(typo.contains("timout") && typo.contains("line 3"), "{typo}");
    }

    #[test]
    fn mistakes_are_errors_that_say_where() {
        let unknown = EngineConfig::from_yaml("workers:\n  concurency: 4\n").unwrap_err();
        assert!(unknown.contains("concurency") && unknown.contains("line 2"), "{unknown}");
        let wrong_type = EngineConfig::from_yaml("workers:\n  concurrency: lots\n").unwrap_err();
        assert!(wrong_type.contains("line 2"), "{wrong_type}");
        let bad_unit = EngineConfig::from_yaml("workers:\n  lease: 3 weeks\n").unwrap_err();
        assert!(bad_unit.contains("unit"), "{bad_unit}");
        let mut config = EngineConfig::default();
        let zero = config.apply_env(|name| (name == "OBJECTOS_CONCURRENCY").then(|| "0".into())).unwrap_err();
        assert!(zero.to_string().contains("at least 1"), "{zero}");
        let nan = config.apply_env(|name| (name == "OBJECTOS_CONCURRENCY").then(|| "x".into())).unwrap_err();
        assert!(nan.to_string().contains("OBJECTOS_CONCURRENCY"), "{nan}");
        assert!(EngineConfig::from_yaml("").unwrap() == EngineConfig::default());
    }
}
