//! Run-time statistics of this process: throughput and run-time percentiles
//! over recent attempts. Counts per status come from the store.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

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

#[derive(Default)]
pub(crate) struct Metrics {
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    total: u64,
    runs: VecDeque<(Instant, Duration)>,
}

impl Metrics {
    pub(crate) fn record(&self, wall: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.total += 1;
        recent.runs.push_back((Instant::now(), wall));
        if recent.runs.len() > WINDOW {
            recent.runs.pop_front();
        }
    }

    pub(crate) fn attempts(&self) -> u64 {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    pub(crate) fn snapshot(&self) -> RunStats {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
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
