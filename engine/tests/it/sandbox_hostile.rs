//! Guests that loop, allocate, recurse, panic, print without end, or wait
//! for ever: each is stopped, reported as what it is, and harms nothing else.

use std::time::{Duration, Instant};

use objectos_engine::sandbox::{Disposition, OutcomeKind, Source};

use crate::harness::{self, hostile, job, run, sandbox};

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let outcome = run("spin").await;
    assert_eq!(outcome.kind, OutcomeKind::OutOfFuel { budget: 500_000_000 });
    assert_eq!(outcome.kind.disposition(), Disposition::Fail);
    assert_eq!(outcome.usage.fuel, 500_000_000);
}

#[tokio::test]
async fn loop_with_huge_fuel_budget_hits_the_wall_clock() {
    let mut spin = job("spin");
    spin.limits.fuel = u64::MAX / 2;
    spin.limits.timeout = Duration::from_millis(300);
    let outcome = sandbox().run(&hostile(), spin).await;
    assert_eq!(outcome.kind, OutcomeKind::Timeout { after_ms: 300 });
    assert_eq!(outcome.kind.disposition(), Disposition::Retry);
    assert!(outcome.usage.wall >= Duration::from_millis(300));
}

#[tokio::test]
async fn sleeping_in_a_host_call_hits_the_wall_clock() {
    let mut sleep = job("sleep:60000");
    sleep.limits.timeout = Duration::from_millis(200);
    let outcome = sandbox().run(&hostile(), sleep).await;
    assert_eq!(outcome.kind, OutcomeKind::Timeout { after_ms: 200 });
}

#[tokio::test]
async fn unbounded_allocation_is_reported_as_the_memory_limit() {
    let outcome = run("alloc").await;
    assert_eq!(outcome.kind, OutcomeKind::MemoryLimit { limit: 32 << 20 });
    assert_eq!(outcome.kind.disposition(), Disposition::Fail);
    assert!(outcome.usage.peak_memory <= 32 << 20);
    assert!(outcome.usage.peak_memory > 16 << 20, "peak {}", outcome.usage.peak_memory);
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let outcome = run("recurse").await;
    assert_eq!(outcome.kind, OutcomeKind::StackOverflow);
}

#[tokio::test]
async fn a_panic_keeps_its_message() {
    let outcome = run("panic:the disk is on fire").await;
    let OutcomeKind::Trap { message } = &outcome.kind else {
        panic!("expected a trap, got {:?}", outcome.kind)
    };
    assert!(message.contains("handler gave up: the disk is on fire"), "{message}");
    assert_eq!(outcome.kind.disposition(), Disposition::Retry);
}

#[tokio::test]
async fn printing_100_mb_truncates_the_log_and_the_job_completes() {
    let total = 100 << 20;
    let mut print = job(&format!("print:{total}"));
    print.limits.fuel = 50_000_000_000;
    print.limits.log_bytes = 64 << 10;
    let outcome = sandbox().run(&hostile(), print).await;
    assert_eq!(outcome.kind, OutcomeKind::Completed { result: total.to_string() });
    let kept: usize = outcome.log.lines.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 64 << 10, "kept {kept} bytes");
    let last = outcome.log.lines.last().unwrap();
    assert_eq!(last.source, Source::Engine);
    assert!(last.message.contains("truncated"));
    assert!(outcome.log.dropped_bytes > (99 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_job_does_not_stall_another() {
    let mut spin = job("spin");
    spin.limits.fuel = u64::MAX / 2;
    spin.limits.timeout = Duration::from_secs(30);
    let cancel = spin.cancel.clone();
    let spinner = tokio::spawn(async move { sandbox().run(&hostile(), spin).await });

    // Give the spinner a head start so it is really running.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let outcome = harness::run("runs").await;
    let quick = started.elapsed();
    assert_eq!(outcome.kind, OutcomeKind::Completed { result: "1".into() });

    cancel.cancel();
    let spun = spinner.await.unwrap();
    assert_eq!(spun.kind, OutcomeKind::Cancelled);
    // Not a timing assertion on speed: only that the second job did not wait
    // for the first one's 30-second timeout.
    assert!(quick < Duration::from_secs(10), "second job took {quick:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_job_yields_even_on_one_thread() {
    let mut spin = job("spin");
    spin.limits.fuel = u64::MAX / 2;
    let cancel = spin.cancel.clone();
    let handler = hostile();
    let (spun, ()) = tokio::join!(sandbox().run(&handler, spin), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    assert_eq!(spun.kind, OutcomeKind::Cancelled);
}

#[tokio::test]
async fn cancel_before_start_never_runs() {
    let runs = job("runs");
    runs.cancel.cancel();
    let outcome = sandbox().run(&hostile(), runs).await;
    assert_eq!(outcome.kind, OutcomeKind::Cancelled);
    assert_eq!(outcome.usage.fuel, 0);
}

#[tokio::test]
async fn jobs_never_see_each_others_memory() {
    let stored = run("store:secret-of-job-one").await;
    assert_eq!(stored.kind, OutcomeKind::Completed { result: "null".into() });
    let peeked = run("peek").await;
    assert_eq!(peeked.kind, OutcomeKind::Completed { result: "\"\"".into() });
    for _ in 0..3 {
        assert_eq!(run("runs").await.kind, OutcomeKind::Completed { result: "1".into() });
    }
}

#[tokio::test]
async fn handler_errors_carry_their_retry_meaning() {
    let retry = run("retryable:database busy").await;
    assert_eq!(retry.kind, OutcomeKind::HandlerError { retryable: true, message: "database busy".into() });
    assert_eq!(retry.kind.disposition(), Disposition::Retry);
    let fatal = run("fatal:no such customer").await;
    assert_eq!(
        fatal.kind,
        OutcomeKind::HandlerError { retryable: false, message: "no such customer".into() }
    );
    assert_eq!(fatal.kind.disposition(), Disposition::Fail);
}

#[tokio::test]
async fn oversize_result_fails_the_run() {
    let mut big = job("print:10");
    big.limits.result_bytes = 1;
    let outcome = sandbox().run(&hostile(), big).await;
    assert_eq!(outcome.kind, OutcomeKind::ResultTooLarge { size: 4, limit: 1 });
}

#[tokio::test]
async fn a_guest_holds_at_most_its_share_of_open_artifact_writers() {
    let mut many = job("writers:1000");
    many.limits.artifact_writers = 16;
    let outcome = sandbox().run(&hostile(), many).await;
    let OutcomeKind::Completed { result } = &outcome.kind else { panic!("{:?}", outcome.kind) };
    let (held, refusal) = serde_json::from_str::<String>(result)
        .unwrap()
        .split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(held, "16");
    assert!(
        refusal.contains("at most 16 artifact writers open at once (jobs.maxArtifactWriters)"),
        "{refusal}"
    );
}

#[tokio::test]
async fn a_guest_writes_at_most_its_artifact_bytes() {
    let mut big = job("artifact-bytes:10485760");
    big.limits.artifact_bytes = 1 << 20;
    let outcome = sandbox().run(&hostile(), big).await;
    let OutcomeKind::Completed { result } = &outcome.kind else { panic!("{:?}", outcome.kind) };
    let result: String = serde_json::from_str(result).unwrap();
    let (written, refusal) = result.split_once(':').unwrap();
    assert_eq!(written, (1 << 20).to_string(), "every byte up to the limit, none past it");
    assert!(refusal.contains("at most 1048576 bytes to artifacts (jobs.maxArtifactBytes)"), "{refusal}");
}

#[tokio::test]
async fn long_errors_and_progress_messages_are_cut_naming_their_limit() {
    let outcome = run("long-error:8000000").await;
    let OutcomeKind::HandlerError { message, .. } = &outcome.kind else { panic!("{:?}", outcome.kind) };
    assert!(message.len() < (64 << 10) + 100, "{} bytes kept", message.len());
    assert!(message.ends_with("bytes cut at jobs.maxErrorBytes]"), "{}", &message[message.len() - 80..]);

    let outcome = run("long-progress:1000000").await;
    let progress = outcome.progress.unwrap();
    assert!(progress.message.len() < (4 << 10) + 100, "{} bytes kept", progress.message.len());
    assert!(progress.message.ends_with("bytes cut at jobs.maxProgressBytes]"));
}

#[tokio::test]
async fn a_guest_that_exits_is_reported_as_exiting_not_as_an_invalid_component() {
    for (action, status) in [("exit:0", 0), ("exit:3", 1)] {
        let outcome = run(action).await;
        assert_eq!(outcome.kind, OutcomeKind::Exited { status }, "{action}");
        assert_eq!(outcome.kind.disposition(), Disposition::Fail, "the same code would exit again");
        assert!(outcome.kind.to_string().contains("instead of returning a result"), "{}", outcome.kind);
    }
}

#[tokio::test]
async fn overflowing_the_guests_own_stack_is_a_stack_overflow() {
    // Frames of 4 KiB in linear memory run off the guest's own stack
    // (an out-of-bounds access) long before the wasm stack fills.
    let outcome = run("deep").await;
    assert_eq!(outcome.kind, OutcomeKind::StackOverflow);
}
