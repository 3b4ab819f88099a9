//! The worker of one node: a loop per queue that claims due jobs while it has free slots
//! and rate, a task per running job that renews its lease, and a maintenance loop that
//! reclaims expired leases and evaluates cron schedules.
//!
//! Invariant: a queue loop claims at most as many jobs as it holds free permits of the
//! queue's semaphore, and every running job holds one; so this node never runs more than
//! `concurrency` jobs of a queue, even for a moment.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rampart_store::jobs::{FailOutcome, JobRow, NewJob};
use rampart_store::{now_ms, StoreError};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::metrics::label;
use crate::rate::{Admit, QueueRate};
use crate::{backoff, Inner, JobContext, JobError};

/// Jobs claimed in one statement at most, so one node does not lease a whole backlog.
const CLAIM_BATCH: usize = 32;
/// How far back catch-up looks for a missed cron slot.
const CATCH_UP_WINDOW_MS: i64 = 35 * 24 * 3600 * 1000;
/// Errors are stored and listed; long ones are cut.
const MAX_ERROR_CHARS: usize = 1000;

/// A running worker. Stop it with [`Worker::shutdown`]; dropping it stops claiming and
/// returns running jobs to the queue, without waiting.
pub struct Worker {
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    /// Every loop and job task holds a sender; `recv` gives `None` when all have ended.
    done: mpsc::Receiver<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }
}

impl Worker {
    pub(crate) async fn start(inner: Arc<Inner>) -> Result<Worker, StoreError> {
        let seen = cron_start(&inner, now_ms()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (abort, abort_rx) = watch::channel(false);
        let (done_tx, done) = mpsc::channel(1);
        let queues: HashSet<&String> = inner.handlers.values().map(|(q, _)| q).collect();
        for queue in queues {
            let limits = inner
                .settings
                .queues
                .get(queue)
                .copied()
                .unwrap_or_default();
            tokio::spawn(queue_loop(
                inner.clone(),
                queue.clone(),
                limits,
                stop_rx.clone(),
                abort_rx.clone(),
                done_tx.clone(),
            ));
        }
        tokio::spawn(maintenance_loop(inner.clone(), seen, stop_rx, done_tx));
        tracing::info!(node = %inner.settings.node, kinds = inner.handlers.len(),
            schedules = inner.schedules.len(), "job worker started");
        Ok(Worker { stop, abort, done })
    }

    /// Stops claiming, waits up to `grace` for running jobs to finish, then returns the
    /// ones still running to the queue (their attempt not counted) and waits for that.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.done.recv()).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "jobs still running after the grace period; returning them to the queue"
            );
            let _ = self.abort.send(true);
            let _ = self.done.recv().await;
        }
        tracing::info!("job worker stopped");
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn queue_loop(
    inner: Arc<Inner>,
    queue: String,
    limits: crate::QueueLimits,
    mut stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut rate = limits
        .per_second
        .map(|per_second| QueueRate::new(&queue, per_second, inner.shared_rate.clone()));
    let settings = &inner.settings;
    while !*stop.borrow() {
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = wait_stop(&mut stop) => break,
        };
        let mut free = (1 + permits.available_permits()).min(CLAIM_BATCH);
        // Starts are reserved before the claim, so nodes sharing a rate cannot both spend
        // the same budget; what finds no job is given back below.
        if let Some(rate) = rate.as_mut() {
            match rate.reserve(free).await {
                Admit::Start(granted) => free = free.min(granted),
                Admit::Wait(wait) => {
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = wait_stop(&mut stop) => break,
                    }
                }
            }
        }
        let lease_until = now_ms() + settings.lease.as_millis() as i64;
        let claimed = match inner
            .store
            .claim_jobs(&queue, free as i64, &settings.node, lease_until)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(queue, error = %e, "cannot claim jobs; will retry");
                if let Some(rate) = rate.as_mut() {
                    rate.release(free).await;
                }
                drop(first);
                tokio::select! {
                    () = tokio::time::sleep(settings.poll_interval) => continue,
                    () = wait_stop(&mut stop) => break,
                }
            }
        };
        if let Some(rate) = rate.as_mut() {
            rate.release(free - claimed.len()).await;
        }
        let drained = claimed.len() < free;
        let mut first = Some(first);
        for job in claimed {
            let permit = match first.take() {
                Some(p) => p,
                // Only this loop acquires, and it counted the free permits: immediate.
                None => match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            tokio::spawn(run_job(
                inner.clone(),
                job,
                permit,
                stop.clone(),
                abort.clone(),
                done.clone(),
            ));
        }
        drop(first);
        if drained {
            tokio::select! {
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = wait_stop(&mut stop) => break,
            }
        }
    }
}

/// One run of a job, in a span of its own (for traces: the kind, id, queue, attempt and
/// outcome, never the payload). The handler's own spans (a webhook delivery, a
/// transaction) are its children.
async fn run_job(
    inner: Arc<Inner>,
    job: JobRow,
    permit: OwnedSemaphorePermit,
    stopping: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let span = tracing::info_span!(
        "job",
        otel.name = %format_args!("job {}", job.kind),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        job.kind = %job.kind,
        job.id = %job.id,
        job.queue = %job.queue,
        job.attempt = job.attempts,
        job.outcome = tracing::field::Empty,
    );
    if let Some(parent) = &job.trace_parent {
        rampart_store::trace_context::continue_from(&span, parent);
    }
    run_job_in_span(inner, job, permit, stopping, abort, done)
        .instrument(span)
        .await
}

async fn run_job_in_span(
    inner: Arc<Inner>,
    job: JobRow,
    _permit: OwnedSemaphorePermit,
    stopping: watch::Receiver<bool>,
    mut abort: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    let span = tracing::Span::current();
    let settings = &inner.settings;
    let Some((_, handler)) = inner.handlers.get(&job.kind) else {
        // Another node (a newer version, during a rolling deploy) may know the kind.
        let msg = format!("no handler for kind {} on node {}", job.kind, settings.node);
        return record_failure(&inner, &job, &msg, false).await;
    };
    let payload = match serde_json::from_str(&job.payload) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("payload is not JSON: {e}");
            return record_failure(&inner, &job, &msg, true).await;
        }
    };
    let ctx = JobContext {
        id: job.id.clone(),
        queue: job.queue.clone(),
        kind: job.kind.clone(),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        stopping,
    };
    // Its own task, so a panicking handler fails its job instead of the worker.
    let mut task = tokio::spawn(handler(ctx, payload).instrument(span.clone()));
    let renew_every = settings.lease / 3;
    let outcome = loop {
        tokio::select! {
            // A handler that has finished is recorded as finished, even if the abort
            // arrived in the same instant.
            biased;
            result = &mut task => break Some(result),
            () = tokio::time::sleep(renew_every) => {
                let until = now_ms() + settings.lease.as_millis() as i64;
                match inner.store.renew_job_lease(&job.id, &settings.node, job.attempts, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %job.id, kind = %job.kind,
                        "lease lost: another worker may run this job too"),
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot renew the lease"),
                }
            }
            () = wait_stop(&mut abort) => {
                task.abort();
                break None;
            }
        }
    };
    let l = label(&job.queue);
    let settled = match &outcome {
        None => Some("returned"),
        Some(Ok(Ok(()))) => Some("completed"),
        Some(Ok(Err(JobError::Deferred(_)))) => Some("deferred"),
        // `record_failure` says which: retrying or dead.
        Some(_) => None,
    };
    if let Some(settled) = settled {
        span.record("job.outcome", settled);
    }
    match outcome {
        None => match inner
            .store
            .return_job(&job.id, &settings.node, job.attempts)
            .await
        {
            Ok(_) => {
                tracing::info!(job = %job.id, kind = %job.kind, "returned to the queue at shutdown")
            }
            Err(e) => tracing::warn!(job = %job.id, error = %e,
                "cannot return the job; it runs again when its lease expires"),
        },
        Some(Ok(Ok(()))) => {
            match inner
                .store
                .complete_job(&job.id, &settings.node, job.attempts)
                .await
            {
                Ok(true) => {
                    inner.metrics.completed.get_or_create(&l).inc();
                }
                Ok(false) => tracing::warn!(job = %job.id, "completed after losing the lease"),
                Err(e) => tracing::warn!(job = %job.id, error = %e,
                    "cannot mark the job done; it runs again when its lease expires"),
            }
        }
        Some(Ok(Err(JobError::Retryable(msg)))) => record_failure(&inner, &job, &msg, false).await,
        Some(Ok(Err(JobError::Permanent(msg)))) => record_failure(&inner, &job, &msg, true).await,
        Some(Ok(Err(JobError::Deferred(wait)))) => {
            let run_at = now_ms() + wait.as_millis() as i64;
            if let Err(e) = inner
                .store
                .defer_job(&job.id, &settings.node, job.attempts, run_at)
                .await
            {
                tracing::warn!(job = %job.id, error = %e,
                    "cannot defer the job; it runs again when its lease expires");
            }
        }
        Some(Err(_)) => record_failure(&inner, &job, "the handler panicked", false).await,
    }
}

async fn record_failure(inner: &Inner, job: &JobRow, error: &str, permanent: bool) {
    let settings = &inner.settings;
    let l = label(&job.queue);
    inner.metrics.failed.get_or_create(&l).inc();
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    let retry_at = (!permanent).then(|| {
        now_ms()
            + backoff(job.attempts, settings.backoff_base, settings.backoff_cap).as_millis() as i64
    });
    // The job's span (the error text stays in the log: it may quote what the handler met).
    let span = tracing::Span::current();
    span.record("otel.status_code", "ERROR");
    match inner
        .store
        .fail_job(&job.id, &settings.node, job.attempts, &error, retry_at)
        .await
    {
        Ok(FailOutcome::Retrying) => {
            span.record("job.outcome", "retrying");
            inner.metrics.retried.get_or_create(&l).inc();
            tracing::info!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %error, "job failed; will retry");
        }
        Ok(FailOutcome::Dead) => {
            span.record("job.outcome", "dead");
            inner.metrics.dead_lettered.get_or_create(&l).inc();
            tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %error, "job dead");
        }
        Ok(FailOutcome::LeaseLost) => {
            tracing::warn!(job = %job.id, "failed after losing the lease")
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e,
            "cannot record the failure; the job runs again when its lease expires"),
    }
}

async fn maintenance_loop(
    inner: Arc<Inner>,
    mut seen: HashMap<String, i64>,
    mut stop: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    loop {
        let now = now_ms();
        match inner.store.reclaim_expired_jobs(now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "reclaimed jobs whose lease expired"),
            Err(e) => tracing::warn!(error = %e, "cannot reclaim expired leases"),
        }
        if let Err(e) = cron_tick(&inner, &mut seen, now).await {
            tracing::warn!(error = %e, "cron evaluation failed; will retry");
        }
        tokio::select! {
            () = tokio::time::sleep(inner.settings.poll_interval) => {}
            () = wait_stop(&mut stop) => break,
        }
    }
}

pub(crate) async fn cron_start(
    inner: &Inner,
    now: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut seen = HashMap::new();
    for s in &inner.schedules {
        let last = inner.store.last_cron_slot(&s.name).await?;
        seen.insert(s.name.clone(), last.unwrap_or(now));
    }
    Ok(seen)
}

/// The latest slot of `expr` in (`after`, `now`], looking back at most the catch-up
/// window.
fn latest_due(s: &crate::Schedule, after: i64, now: i64) -> Option<i64> {
    let mut cursor = after.max(now - CATCH_UP_WINDOW_MS);
    let mut latest = None;
    while let Some(next) = s.expr.next_after(cursor, s.zone) {
        if next > now {
            break;
        }
        latest = Some(next);
        cursor = next;
    }
    latest
}

pub(crate) async fn cron_tick(
    inner: &Inner,
    seen: &mut HashMap<String, i64>,
    now: i64,
) -> Result<usize, StoreError> {
    let mut won = 0;
    for s in &inner.schedules {
        let after = *seen.entry(s.name.clone()).or_insert(now);
        let Some(slot) = latest_due(s, after, now) else {
            continue;
        };
        let job = NewJob {
            queue: s.queue.clone(),
            kind: s.kind.clone(),
            payload: s.payload.to_string(),
            priority: 0,
            run_at: now,
            max_attempts: inner.settings.default_max_attempts,
            unique_key: Some(format!("cron:{}:{slot}", s.name)),
        };
        if inner
            .store
            .enqueue_cron_job(&s.name, slot, &inner.settings.node, &job)
            .await?
        {
            won += 1;
            tracing::info!(schedule = %s.name, slot, "cron slot enqueued");
            inner.wake.notify_waiters();
        }
        seen.insert(s.name.clone(), slot);
    }
    Ok(won)
}
