//! Run-time statistics of this process: throughput and run-time percentiles
//! over recent attempts, and per-handler counters and a run-time histogram
//! for `/metrics`. Counts per status come from the store.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::jobs::StatusCounts;
use crate::sandbox::Usage;

/// Upper bounds (seconds) of the run-time histogram's buckets.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0, 60.0];

/// How many recent attempts the percentiles cover.
const WINDOW: usize = 10_000;

/// Throughput and run times of attempts finished in this process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStats {
    /// Attempts finished since start.
    pub attempts: u64,
    /// Attempts finished per second over the last minute.
    pub per_second_last_minute: f64,
    /// Median run time of recent attempts, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
}

/// One lock for both, taken once per attempt start and once per finish.
#[derive(Default)]
pub(crate) struct Metrics {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    recent: Recent,
    tallies: Tallies,
}

/// Counters since the process started.
#[derive(Default)]
struct Tallies {
    /// Per handler.
    handlers: BTreeMap<String, HandlerTally>,
    /// Attempts per run-time bucket (not cumulative), the last for `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    seconds: f64,
}

#[derive(Default)]
struct HandlerTally {
    started: u64,
    /// Finished attempts by outcome (`completed`, `timeout`, `trap`, …).
    outcomes: BTreeMap<&'static str, u64>,
    fuel: u64,
}

impl Tallies {
    fn handler(&mut self, name: &str) -> &mut HandlerTally {
        if !self.handlers.contains_key(name) {
            self.handlers.insert(name.to_string(), HandlerTally::default());
        }
        self.handlers.get_mut(name).expect("inserted above")
    }
}

/// What `/metrics` shows besides this process's counters.
pub struct Gauges {
    /// Jobs per status in the store.
    pub counts: StatusCounts,
    /// Jobs running in this process (with those claimed ahead of a slot).
    pub running: usize,
    /// How long the oldest ready pending job has waited, in seconds.
    pub lag_seconds: f64,
}

#[derive(Default)]
struct Recent {
    total: u64,
    runs: VecDeque<(Instant, Duration)>,
}

impl Metrics {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn started(&self, handler: &str) {
        self.state().tallies.handler(handler).started += 1;
    }

    pub(crate) fn record(&self, handler: &str, outcome: &'static str, usage: &Usage) {
        let wall = usage.wall;
        let mut state = self.state();
        let State { recent, tallies } = &mut *state;
        recent.total += 1;
        recent.runs.push_back((Instant::now(), wall));
        if recent.runs.len() > WINDOW {
            recent.runs.pop_front();
        }
        let seconds = wall.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS.len());
        tallies.buckets[bucket] += 1;
        tallies.seconds += seconds;
        let tally = tallies.handler(handler);
        *tally.outcomes.entry(outcome).or_default() += 1;
        tally.fuel += usage.fuel;
    }

    /// The Prometheus text exposition of this process's counters and `gauges`.
    pub(crate) fn prometheus(&self, gauges: &Gauges) -> String {
        let state = self.state();
        let tallies = &state.tallies;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            samples(&mut out);
        };
        family("objectos_jobs", "gauge", "Jobs in the store by status.", &mut |out| {
            for (status, n) in &gauges.counts.by_status {
                let _ = writeln!(out, "objectos_jobs{{status=\"{}\"}} {n}", label(status));
            }
        });
        let handlers = || tallies.handlers.iter().map(|(name, tally)| (label(name), tally));
        family("objectos_attempts_started_total", "counter", "Attempts started, by handler.", &mut |out| {
            for (name, tally) in handlers() {
                let _ =
                    writeln!(out, "objectos_attempts_started_total{{handler=\"{name}\"}} {}", tally.started);
            }
        });
        let help = "Attempts finished, by handler and outcome (completed, or the failure's kind).";
        family("objectos_attempts_total", "counter", help, &mut |out| {
            for (name, tally) in handlers() {
                for (outcome, n) in &tally.outcomes {
                    let _ = writeln!(
                        out,
                        "objectos_attempts_total{{handler=\"{name}\",outcome=\"{outcome}\"}} {n}"
                    );
                }
            }
        });
        family("objectos_fuel_consumed_total", "counter", "Fuel the handlers' attempts used.", &mut |out| {
            for (name, tally) in handlers() {
                let _ = writeln!(out, "objectos_fuel_consumed_total{{handler=\"{name}\"}} {}", tally.fuel);
            }
        });
        let help = "Run time of finished attempts in the sandbox, seconds.";
        family("objectos_attempt_duration_seconds", "histogram", help, &mut |out| {
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += tallies.buckets[i];
                let _ =
                    writeln!(out, "objectos_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
            }
            cumulative += tallies.buckets[BUCKETS.len()];
            let _ = writeln!(out, "objectos_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(out, "objectos_attempt_duration_seconds_sum {}", tallies.seconds);
            let _ = writeln!(out, "objectos_attempt_duration_seconds_count {cumulative}");
        });
        family("objectos_running_jobs", "gauge", "Jobs running in this process.", &mut |out| {
            let _ = writeln!(out, "objectos_running_jobs {}", gauges.running);
        });
        let help = "How long the oldest ready pending job has waited, seconds.";
        family("objectos_queue_lag_seconds", "gauge", help, &mut |out| {
            let _ = writeln!(out, "objectos_queue_lag_seconds {}", gauges.lag_seconds);
        });
        out
    }

    pub(crate) fn attempts(&self) -> u64 {
        self.state().recent.total
    }

    pub(crate) fn snapshot(&self) -> RunStats {
        let state = self.state();
        let recent = &state.recent;
        let minute_ago = Instant::now().checked_sub(Duration::from_secs(60));
        let last_minute = recent.runs.iter().filter(|(at, _)| minute_ago.is_none_or(|m| *at >= m)).count();
        let mut walls: Vec<Duration> = recent.runs.iter().map(|(_, wall)| *wall).collect();
        walls.sort();
        let percentile = |p: f64| {
            walls
                .get(((walls.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        RunStats {
            attempts: recent.total,
            per_second_last_minute: last_minute as f64 / 60.0,
            p50_ms: percentile(0.5),
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
