//! The worker pool: one dispatcher that claims ready jobs while slots are
//! free, and one task per running job.
//!
//! A job waiting for its retry is back in the store with a later `run_at`:
//! it holds no slot and no task. The dispatcher sleeps until the next job is
//! due, a job is enqueued, or a slot frees up; only jobs enqueued by other
//! processes wait for its slow poll (`poll_interval`).
//!
//! Beside the dispatcher run a heartbeat, renewing the leases of running
//! jobs (and stopping any whose lease was lost), and a maintenance task that
//! rescues lapsed leases and prunes finished jobs. On start the pool takes
//! back the jobs still leased to this node's name: its previous run died.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Inner, Queue, Running, result_value};
use crate::jobs::{Attempt, AttemptLog, Job, JobStatus};
use crate::sandbox::{Disposition, JobRun, Limits, Outcome, OutcomeKind, Progress, ProgressObserver};
use crate::store::{ClaimRequest, Claimed, Finish, FinishKind, Lease, Renewal, StoreError};

/// The running worker pool. Stop it with [`Workers::stop`] or
/// [`Workers::shutdown`].
pub struct Workers {
    /// Stops the dispatcher claiming.
    shutdown: CancellationToken,
    /// Stops the heartbeat and maintenance, once no job runs.
    stopped: CancellationToken,
    dispatcher: JoinHandle<()>,
    /// Ends once every ended attempt is recorded and no sender is left.
    recorder: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    inner: Arc<Inner>,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shutdown {
    /// Jobs running when the shutdown began.
    pub in_flight: usize,
    /// Of those, the ones still running at the deadline: stopped and given
    /// back to the queue uncharged, to run again.
    pub released: usize,
}

impl Workers {
    /// Stops claiming, waits for running jobs to finish, and returns.
    pub async fn stop(self) {
        self.shutdown(None).await;
    }

    /// Stops claiming and lets running jobs finish for up to `grace` (for
    /// ever with `None`); jobs still running then are stopped and released
    /// so they run again. Leases are renewed until the end.
    pub async fn shutdown(self, grace: Option<Duration>) -> Shutdown {
        self.shutdown.cancel();
        let _ = self.dispatcher.await;
        let all = self.inner.config.claimable();
        let in_flight = all - self.inner.slots.available_permits();
        // Every claimed job holds a permit until its sandbox run ends;
        // taking them all means none runs or waits to.
        let drained = self.inner.slots.acquire_many(all as u32);
        tokio::pin!(drained);
        let released = match grace {
            None => {
                let _ = drained.await;
                0
            }
            Some(grace) => {
                let deadline = self.inner.clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
                tokio::select! {
                    _ = &mut drained => 0,
                    () = self.inner.clock.sleep_until(deadline) => {
                        let released = release_running(&self.inner);
                        let _ = drained.await;
                        released
                    }
                }
            }
        };
        // The dispatcher and every job are gone, and with them every sender
        // to the recorder: it ends once the last attempts are recorded.
        let _ = self.recorder.await;
        self.stopped.cancel();
        for task in self.background {
            let _ = task.await;
        }
        Shutdown { in_flight, released }
    }
}

/// Stops every job running here so it is given back, not cancelled; a job
/// claimed but not yet started is stopped as it registers.
fn release_running(inner: &Inner) -> usize {
    let mut running = inner.running.lock().unwrap_or_else(|e| e.into_inner());
    inner.releasing.store(true, Ordering::SeqCst);
    for job in running.values_mut() {
        job.released = true;
        job.cancel.cancel();
    }
    running.len()
}

pub(super) fn start(inner: Arc<Inner>) -> Workers {
    inner.releasing.store(false, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let stopped = CancellationToken::new();
    let (finished, to_record) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_finishes(inner.clone(), to_record));
    let dispatcher = tokio::spawn(dispatch(inner.clone(), shutdown.clone(), finished));
    let background = vec![
        tokio::spawn(heartbeat(inner.clone(), stopped.clone())),
        tokio::spawn(maintain(inner.clone(), stopped.clone())),
    ];
    Workers { shutdown, stopped, dispatcher, recorder, background, inner }
}

/// Renews the leases of the jobs running here every third of the lease,
/// and stops any whose lease was lost (a stale worker must not go on).
async fn heartbeat(inner: Arc<Inner>, stopped: CancellationToken) {
    let lease = chrono::Duration::from_std(inner.config.lease).unwrap_or_default();
    loop {
        tokio::select! {
            () = inner.clock.sleep_until(inner.clock.now() + lease / 3) => {}
            () = stopped.cancelled() => return,
        }
        let leases: Vec<Lease> = {
            let running = inner.running.lock().unwrap_or_else(|e| e.into_inner());
            running.iter().map(|(id, job)| Lease { job_id: id.clone(), token: job.lease_token }).collect()
        };
        if leases.is_empty() {
            continue;
        }
        match inner.store.heartbeat(leases, inner.clock.now() + lease).await {
            Ok(Renewal { lost, cancel_requested }) => {
                for id in &lost {
                    tracing::warn!(job = %id, "lease lost (the job was rescued or changed elsewhere); stopping it");
                }
                // A lost lease stops the job unrecorded; a cancel request
                // (made through any process: stopping twice is harmless)
                // stops it as cancelled, as `released` is unset.
                let running = inner.running.lock().unwrap_or_else(|e| e.into_inner());
                for id in lost.iter().chain(&cancel_requested) {
                    if let Some(job) = running.get(id) {
                        job.cancel.cancel();
                    }
                }
            }
            Err(error) => tracing::error!(%error, "renewing leases failed; retrying at the next heartbeat"),
        }
    }
}

/// Rescues lapsed leases and prunes finished jobs every `maintenance_interval`.
async fn maintain(inner: Arc<Inner>, stopped: CancellationToken) {
    let queue = Queue { inner };
    let every = chrono::Duration::from_std(queue.inner.config.maintenance_interval).unwrap_or_default();
    loop {
        tokio::select! {
            () = queue.inner.clock.sleep_until(queue.inner.clock.now() + every) => {}
            () = stopped.cancelled() => return,
        }
        match queue.rescue_lapsed().await {
            Ok(rescued) if !rescued.is_empty() => {
                tracing::warn!(jobs = rescued.len(), "rescued jobs whose lease lapsed")
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "rescuing lapsed leases failed"),
        }
        match queue.prune_finished().await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(jobs = pruned, "pruned finished jobs past their retention"),
            Err(error) => tracing::error!(%error, "pruning finished jobs failed"),
        }
        match queue.discard_abandoned_artifacts().await {
            Ok(0) => {}
            Ok(discarded) => tracing::info!(artifacts = discarded, "removed artifacts whose writer was lost"),
            Err(error) => tracing::error!(%error, "removing abandoned artifacts failed"),
        }
    }
}

/// Records ended attempts (each [`Finish`] sent by its job) in batches:
/// everything that ended while the previous batch was being written goes
/// into the next store call. A job's slot is freed when its sandbox run
/// ends, before this records it, so the dispatcher's next claim and these
/// finishes share one commit (and one fsync); the job stays in `running`
/// (its lease renewed) until recorded.
async fn record_finishes(inner: Arc<Inner>, mut ended: mpsc::UnboundedReceiver<Finish>) {
    const MAX_BATCH: usize = 1024;
    loop {
        // Sized for what is waiting: growing it one finish at a time was a
        // visible part of every job's cost.
        let mut finishes = Vec::with_capacity(ended.len().clamp(1, MAX_BATCH));
        if ended.recv_many(&mut finishes, MAX_BATCH).await == 0 {
            return;
        }
        let ids: Vec<(String, String)> =
            finishes.iter().map(|f| (f.job_id.clone(), f.job_name.clone())).collect();
        match finish_retrying(&inner, finishes).await {
            Ok(results) => {
                for ((id, _), result) in ids.iter().zip(results) {
                    if let Err(error) = result {
                        tracing::warn!(job = %id, %error, "attempt result not recorded");
                    }
                }
            }
            Err(error) => tracing::error!(%error, jobs = ids.len(), "attempt results not recorded"),
        }
        {
            let mut running = inner.running.lock().unwrap_or_else(|e| e.into_inner());
            let mut per_handler = inner.per_handler.lock().unwrap_or_else(|e| e.into_inner());
            for (id, name) in &ids {
                running.remove(id);
                if let Some(count) = per_handler.get_mut(name) {
                    *count -= 1;
                }
            }
        }
        inner.wake.notify_one();
        inner.bump();
    }
}

/// Records finishes, making the call again while the store says it may
/// succeed (a busy database): the attempts ran, and their results are not
/// to be lost to a moment's contention. The jobs keep their leases
/// meanwhile; after the last try their leases lapse and they are rescued.
async fn finish_retrying(
    inner: &Inner,
    finishes: Vec<Finish>,
) -> Result<Vec<Result<JobStatus, StoreError>>, StoreError> {
    const TRIES: u32 = 10;
    let finishes: Arc<[Finish]> = finishes.into();
    let mut pause = Duration::from_millis(50);
    for _ in 1..TRIES {
        match inner.store.finish(finishes.clone(), inner.clock.now()).await {
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, jobs = finishes.len(), ?pause, "recording results failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
    inner.store.finish(finishes, inner.clock.now()).await
}

/// How many jobs to claim now: the free slots, but no more than the
/// smallest remaining capacity of a capped handler, so a batch can never
/// overrun a per-handler limit. Also names the handlers already at their cap.
fn claim_budget(inner: &Inner, free: usize) -> (usize, Vec<String>) {
    let counts = inner.per_handler.lock().unwrap_or_else(|e| e.into_inner());
    let mut limit = free;
    let mut saturated = Vec::new();
    for (name, cap) in &inner.config.handler_concurrency {
        let running = counts.get(name).copied().unwrap_or(0);
        if running >= *cap {
            saturated.push(name.clone());
        } else {
            limit = limit.min(cap - running);
        }
    }
    (limit, saturated)
}

async fn dispatch(inner: Arc<Inner>, shutdown: CancellationToken, finished: mpsc::UnboundedSender<Finish>) {
    let queue = Queue { inner: inner.clone() };
    match queue.rescue(Some(inner.config.node_id.clone())).await {
        Ok(recovered) if !recovered.is_empty() => tracing::warn!(
            jobs = recovered.len(),
            node = %inner.config.node_id,
            "took back jobs left running by this node's previous run"
        ),
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "recovering jobs left running failed; their leases will lapse"),
    }
    let poll = chrono::Duration::from_std(inner.config.poll_interval).unwrap_or_default();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // Register interest before looking, so a wake-up in between is kept.
        let woken = inner.wake.notified();
        let free = inner.slots.available_permits();
        let mut full_batch = false;
        if free > 0 {
            let (limit, exclude) = claim_budget(&inner, free);
            let now = inner.clock.now();
            let request = ClaimRequest {
                now,
                limit,
                exclude,
                owner: inner.config.node_id.clone(),
                lease_until: now + chrono::Duration::from_std(inner.config.lease).unwrap_or_default(),
            };
            match inner.store.claim(request).await {
                Ok(claimed) => {
                    full_batch = claimed.len() == limit;
                    if !claimed.is_empty() {
                        inner.bump();
                    }
                    for job in claimed {
                        let permit = inner
                            .slots
                            .clone()
                            .try_acquire_owned()
                            .expect("claimed no more than the free slots");
                        *inner
                            .per_handler
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(job.job.name.clone())
                            .or_insert(0) += 1;
                        tokio::spawn(run_job(inner.clone(), job, permit, finished.clone()));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "claiming jobs failed; retrying in a second");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                    continue;
                }
            }
        }
        if full_batch && inner.slots.available_permits() > 0 {
            continue;
        }
        let next_due = if inner.slots.available_permits() == 0 {
            None
        } else {
            let next_poll = inner.clock.now() + poll;
            match inner.store.next_run_at().await {
                Ok(at) => Some(at.map_or(next_poll, |at| at.min(next_poll))),
                Err(error) => {
                    tracing::error!(%error, "reading the next due time failed; looking again at the next poll");
                    Some(next_poll)
                }
            }
        };
        tokio::select! {
            () = woken => {}
            () = async {
                match next_due {
                    Some(at) => inner.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Keeps the latest progress of a running job where `Queue::get` sees it.
struct LiveProgress {
    inner: Arc<Inner>,
    job_id: String,
}

impl ProgressObserver for LiveProgress {
    fn progress(&self, progress: &Progress) {
        if let Some(running) =
            self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.job_id)
        {
            running.progress = Some(progress.clone());
        }
    }
}

async fn run_job(
    inner: Arc<Inner>,
    claimed: Claimed,
    permit: OwnedSemaphorePermit,
    finished: mpsc::UnboundedSender<Finish>,
) {
    let Claimed { job, lease_token } = claimed;
    let cancel = CancellationToken::new();
    {
        let mut running = inner.running.lock().unwrap_or_else(|e| e.into_inner());
        let releasing = inner.releasing.load(Ordering::SeqCst);
        running.insert(
            job.id.clone(),
            Running { cancel: cancel.clone(), lease_token, progress: None, released: releasing },
        );
        if releasing {
            cancel.cancel();
        }
    }
    // A job claimed ahead waits here for a slot; registered, so a cancel
    // or a release ends it without waiting for one (and without running).
    let runner = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        runner = inner.runners.acquire() => Some(runner.expect("the runners' semaphore is never closed")),
    };
    let started_at = inner.clock.now();
    inner.stats.started(&job.name);

    let outcome = match &runner {
        Some(_) => attempt(&inner, &job, cancel).await,
        None => not_run(OutcomeKind::Cancelled),
    };
    drop(runner);
    inner.stats.record(&job.name, outcome.kind.name(), &outcome.usage);

    let now = inner.clock.now();
    let released =
        inner.running.lock().unwrap_or_else(|e| e.into_inner()).get(&job.id).is_some_and(|r| r.released);
    let kind = match outcome.kind.disposition() {
        Disposition::Cancelled if released => FinishKind::Release,
        Disposition::Done => match &outcome.kind {
            OutcomeKind::Completed { result } => FinishKind::Complete { result: result_value(result) },
            _ => unreachable!("only completion is done"),
        },
        Disposition::Retry if job.attempts < job.max_attempts() => {
            let delay = job.backoff.delay_ms(job.attempts, fastrand::f64());
            FinishKind::Retry { run_at: now + chrono::Duration::milliseconds(delay as i64) }
        }
        Disposition::Retry | Disposition::Fail => FinishKind::Fail,
        Disposition::Cancelled => FinishKind::Cancel,
    };
    let error = match &outcome.kind {
        OutcomeKind::Completed { .. } => None,
        other => Some(other.to_string()),
    };
    let logged = !outcome.log.lines.is_empty();
    let log = logged.then_some(AttemptLog {
        attempt: job.attempts,
        lines: outcome.log.lines,
        dropped_bytes: outcome.log.dropped_bytes,
    });
    let finish = Finish {
        job_id: job.id.clone(),
        job_name: job.name.clone(),
        lease_token,
        kind,
        attempt: Attempt {
            number: job.attempts,
            started_at,
            finished_at: now,
            outcome: outcome.kind.name().to_string(),
            error,
            usage: outcome.usage,
        },
        log,
        progress: outcome.progress,
        timed_out: matches!(outcome.kind, OutcomeKind::Timeout { .. }),
    };
    // The recorder outlives every sender; if it is gone the engine is
    // shutting down and the lease will expire and be rescued.
    let _ = finished.send(finish);
    drop(permit);
    inner.wake.notify_one();
}

/// Runs one attempt of `job` in the sandbox.
async fn attempt(inner: &Arc<Inner>, job: &Job, cancel: CancellationToken) -> Outcome {
    let handler = match inner.registry.compiled(&job.handler_sha256).await {
        Ok(handler) => handler,
        Err(error) => return not_run(OutcomeKind::InvalidComponent { message: error.to_string() }),
    };
    let run = JobRun {
        job_id: job.id.clone(),
        handler: job.name.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts(),
        principal: job.run_as.clone(),
        schedule_id: job.schedule_id.clone(),
        enqueued_at: job.created_at,
        input: job.data.to_string(),
        limits: Limits {
            fuel: job.fuel,
            timeout: Duration::from_millis(job.timeout),
            memory: job.memory,
            ..inner.config.limits
        },
        // Grants are decided now, not at enqueue: a permission revoked
        // in between fails the job before it runs.
        grants: inner.policy.grants(&job.run_as),
        services: inner.services.clone(),
        cancel,
        observer: Some(Arc::new(LiveProgress { inner: inner.clone(), job_id: job.id.clone() })),
    };
    inner.sandbox.run(&handler, run).await
}

/// The outcome of an attempt that ended before its guest ran.
fn not_run(kind: OutcomeKind) -> Outcome {
    Outcome { kind, usage: Default::default(), log: Default::default(), progress: None }
}
