//! Sandbox overhead: instantiate + call a no-op component + tear down.
//!
//! Run with `cargo bench -p objectos-engine --bench sandbox`. Prints the
//! median (and p99) time of one no-op job run sequentially, and the median
//! throughput of no-op jobs with 2 concurrent tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use objectos_engine::principal::Principal;
use objectos_engine::sandbox::{JobRun, OutcomeKind, Sandbox, SandboxConfig};

const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;
const ROUNDS: usize = 7;
const JOBS_PER_TASK: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    objectos_alloc::keep_freed_memory();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sandbox = Arc::new(Sandbox::new(&SandboxConfig::new()).unwrap());
    let handler = Arc::new(sandbox.compile(objectos_test_guests::NOOP).unwrap());
    let template = JobRun::new("bench", "noop", Principal::new("bench", &["admin"]), "{}");

    runtime.block_on(async {
        for _ in 0..WARMUP {
            sandbox.run(&handler, template.clone()).await;
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let job = template.clone();
            let started = Instant::now();
            let outcome = sandbox.run(&handler, job).await;
            samples.push(started.elapsed());
            assert!(matches!(outcome.kind, OutcomeKind::Completed { .. }));
        }
        samples.sort();
        println!(
            "sandbox overhead per no-op job (sequential, {SAMPLES} runs): median {:.1} µs, p99 {:.1} µs",
            percentile(&samples, 0.5).as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
        );

        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let tasks: Vec<_> = (0..2)
                .map(|_| {
                    let (sandbox, handler, template) = (sandbox.clone(), handler.clone(), template.clone());
                    tokio::spawn(async move {
                        for _ in 0..JOBS_PER_TASK {
                            sandbox.run(&handler, template.clone()).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            rates.push(2.0 * JOBS_PER_TASK as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "no-op jobs/s with 2 concurrent tasks ({ROUNDS} rounds of {}): median {:.0}/s",
            2 * JOBS_PER_TASK,
            rates[ROUNDS / 2]
        );
    });
}
