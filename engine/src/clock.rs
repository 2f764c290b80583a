//! Time, behind a trait so tests control it.
//!
//! Everything in the engine that reads the time or waits for a moment goes
//! through a [`Clock`]; tests use [`ManualClock`] and never sleep.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A new identifier `<prefix>_<hex>` that sorts by creation time: the
/// milliseconds since the epoch, then 52 random bits.
pub fn time_ordered_id(prefix: &str) -> String {
    format!("{prefix}_{:011x}{:013x}", Utc::now().timestamp_millis(), fastrand::u64(..) >> 12)
}

/// A source of the current time that can also wait for a moment.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Returns once `now() >= at`.
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Arc::new(Mutex::new(start)), moved: watch::channel(start).0 }
    }

    /// Moves the clock forward by `by`, waking everything whose moment came.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
        self.moved.send_replace(*now);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut moved = self.moved.subscribe();
        // The sender lives as long as the clock; if it is gone, never wake.
        if moved.wait_for(|now| *now >= at).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
