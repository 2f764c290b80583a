//! Small tasks that show how the queue treats a handler: `objectos demo`
//! runs them. The input names the task:
//!
//! - `{"task": "sum", "numbers": [1, 2, 3]}` — adds the numbers up.
//! - `{"task": "flaky", "succeedOnAttempt": 2}` — fails with a retryable
//!   error until the given attempt, then succeeds: watch the retry.
//! - `{"task": "work", "ms": 5000}` — keeps the CPU busy for `ms`
//!   milliseconds, reporting progress: long enough to time out or cancel.

use std::time::{Duration, Instant};

use objectos_guest::{Context, Error, Handler, export_handler, info, progress};
use serde::Deserialize;
use serde_json::{Value, json};

/// The job's data.
#[derive(Deserialize)]
#[serde(tag = "task", rename_all = "camelCase", deny_unknown_fields)]
enum Task {
    Sum {
        numbers: Vec<f64>,
    },
    #[serde(rename_all = "camelCase")]
    Flaky {
        succeed_on_attempt: u32,
    },
    Work {
        ms: u64,
    },
}

struct Tasks;

impl Handler for Tasks {
    type Input = Task;
    type Output = Value;

    fn run(ctx: &Context, task: Task) -> Result<Value, Error> {
        match task {
            Task::Sum { numbers } => Ok(json!({"sum": numbers.iter().sum::<f64>(), "count": numbers.len()})),
            Task::Flaky { succeed_on_attempt } => {
                if ctx.attempt < succeed_on_attempt {
                    info!("attempt {} of {}: not yet", ctx.attempt, ctx.max_attempts);
                    return Err(Error::retryable(format!(
                        "attempt {} fails on purpose (succeeds on attempt {succeed_on_attempt})",
                        ctx.attempt
                    )));
                }
                Ok(json!({"succeededOnAttempt": ctx.attempt}))
            }
            Task::Work { ms } => {
                let started = Instant::now();
                let total = Duration::from_millis(ms);
                let mut spins: u64 = 0;
                let mut reported = 0;
                while started.elapsed() < total {
                    spins = std::hint::black_box(spins + 1);
                    let percent = (started.elapsed().as_millis() * 100 / total.as_millis().max(1)) as u8;
                    if percent >= reported + 10 {
                        reported = percent;
                        progress(percent, "working");
                    }
                }
                Ok(json!({"workedMs": ms, "spins": spins}))
            }
        }
    }
}

export_handler!(Tasks);
