//! The durable job queue's runtime: handlers registered by kind, a worker per node that
//! claims due jobs with a lease, retries with exponential backoff and full jitter, dead
//! letters, per-queue concurrency (per node) and rate limits (per deployment with a
//! [`SharedRate`], else per node), cron schedules that run once across all nodes, and a
//! graceful shutdown.
//!
//! The queue lives in the database (`jobs` and `cron_runs`, see `rampart_store::jobs`),
//! so a job survives restarts, and every node of a deployment works the same queue. This
//! crate never builds SQL: it calls the store.
//!
//! Delivery is at least once: a job whose worker dies runs again when its lease expires,
//! and a handler that finished its side effect but crashed before the job was marked
//! done runs twice. Handlers must be idempotent (use the job id as an idempotency key).
//!
//! Why not apalis: its SQL backends keep one storage per job type, have no portable
//! "enqueue inside my transaction" over sqlx's `Any` driver, and no cross-node cron slot
//! claim; the queue here is a few hundred lines over the store we already have.
#![forbid(unsafe_code)]

pub mod cron;
mod metrics;
mod rate;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rampart_store::jobs::NewJob;
use rampart_store::{Store, StoreError, Tx};
use tokio::sync::Notify;

pub use metrics::JobMetrics;
pub use rampart_store::jobs::JobRow;
pub use rate::{Rate, RateFuture, Reserved, SharedRate};
pub use worker::Worker;

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (a timeout, a 503): retried with backoff until
    /// `max_attempts`, then dead.
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (bad payload, a 4xx): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// Not now (a rate limit said wait): queued again after this long, the attempt not
    /// counted.
    #[error("deferred for {0:?}")]
    Deferred(Duration),
}

/// What a handler knows about the job it runs.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// 1 on the first run.
    pub attempt: i64,
    pub max_attempts: i64,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl JobContext {
    /// Resolves when the node starts shutting down: a long handler may finish early (and
    /// return a retryable error to be run again) instead of being cut off at the grace.
    pub async fn stopping(&self) {
        let mut rx = self.stopping.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
type Handler = Arc<dyn Fn(JobContext, serde_json::Value) -> HandlerFuture + Send + Sync>;

/// Wakes a node's idle queue loops (see [`Jobs::waker`]).
#[derive(Clone, Debug)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_waiters();
    }
}

/// Concurrency and rate limit of one queue on one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueLimits {
    /// Jobs of this queue running at once on this node.
    pub concurrency: usize,
    /// Jobs started per second; `None` for no limit. Across all nodes with a
    /// [`SharedRate`] ([`JobsBuilder::shared_rate`]); without one, per node: N nodes
    /// start up to N times this.
    pub per_second: Option<f64>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            concurrency: 4,
            per_second: None,
        }
    }
}

/// How the runtime behaves (from `[jobs]` in the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an idle queue looks for due jobs (a local enqueue wakes it earlier).
    pub poll_interval: Duration,
    /// How long a claim lasts without renewal; renewed every third of it while the
    /// handler runs. A job whose worker died runs again after at most this long.
    pub lease: Duration,
    pub default_max_attempts: i64,
    /// Backoff before attempt n+1: uniform in [0, min(cap, base * 2^(n-1))].
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Per-queue limits; queues not named use `QueueLimits::default()`.
    pub queues: HashMap<String, QueueLimits>,
    /// This node's name in leases and cron records.
    pub node: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            default_max_attempts: 10,
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(6 * 3600),
            queues: HashMap::new(),
            node: format!("node-{}", rampart_store::new_id()),
        }
    }
}

/// Backoff before the retry that follows failed attempt `attempt` (1-based): full
/// jitter, so retries of many jobs that failed together (a partner outage) spread out
/// instead of arriving together.
pub fn backoff(attempt: i64, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.clamp(1, 40) - 1;
    let ceiling = base
        .as_millis()
        .saturating_mul(1u128 << exp)
        .min(cap.as_millis()) as u64;
    Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling))
}

/// A cron schedule: at each slot of `expr` in `zone`, one node enqueues `kind` with
/// `payload` on `queue`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub expr: cron::CronExpr,
    pub zone: cron::Zone,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
}

/// A job to enqueue, built with defaults and adjusted with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct Job {
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i64,
    pub delay: Duration,
    pub max_attempts: Option<i64>,
    pub unique_key: Option<String>,
}

impl Job {
    pub fn new(queue: &str, kind: &str, payload: serde_json::Value) -> Job {
        Job {
            queue: queue.to_string(),
            kind: kind.to_string(),
            payload,
            priority: 0,
            delay: Duration::ZERO,
            max_attempts: None,
            unique_key: None,
        }
    }

    pub fn with_priority(mut self, priority: i64) -> Job {
        self.priority = priority;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Job {
        self.delay = delay;
        self
    }

    pub fn with_max_attempts(mut self, n: i64) -> Job {
        self.max_attempts = Some(n.max(1));
        self
    }

    pub fn with_unique_key(mut self, key: &str) -> Job {
        self.unique_key = Some(key.to_string());
        self
    }

    fn into_new(self, default_max_attempts: i64) -> NewJob {
        NewJob {
            queue: self.queue,
            kind: self.kind,
            payload: self.payload.to_string(),
            priority: self.priority,
            run_at: rampart_store::now_ms() + self.delay.as_millis() as i64,
            max_attempts: self.max_attempts.unwrap_or(default_max_attempts),
            unique_key: self.unique_key,
        }
    }
}

/// Registration of handlers and schedules, before the worker starts.
pub struct JobsBuilder {
    store: Store,
    settings: Settings,
    handlers: HashMap<String, (String, Handler)>,
    schedules: Vec<Schedule>,
    shared_rate: Option<Arc<dyn SharedRate>>,
}

impl JobsBuilder {
    /// Paces rate-limited queues through `rate`, shared by every node given the same
    /// one, instead of per node.
    pub fn shared_rate(mut self, rate: Arc<dyn SharedRate>) -> JobsBuilder {
        self.shared_rate = Some(rate);
        self
    }

    /// Runs `kind` jobs with `handler`; the worker polls `queue` for them.
    pub fn handler<F, Fut>(mut self, queue: &str, kind: &str, handler: F) -> JobsBuilder
    where
        F: Fn(JobContext, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler: Handler =
            Arc::new(move |ctx, payload| -> HandlerFuture { Box::pin(handler(ctx, payload)) });
        self.handlers
            .insert(kind.to_string(), (queue.to_string(), handler));
        self
    }

    /// Enqueues `kind` with `payload` at every slot of `expr` (five-field cron) in
    /// `zone`. The kind needs a handler on some node.
    pub fn schedule(
        mut self,
        name: &str,
        expr: &str,
        zone: &str,
        queue: &str,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<JobsBuilder, String> {
        self.schedules.push(Schedule {
            name: name.to_string(),
            expr: cron::CronExpr::parse(expr).map_err(|e| format!("schedule {name}: {e}"))?,
            zone: cron::Zone::parse(zone).map_err(|e| format!("schedule {name}: {e}"))?,
            queue: queue.to_string(),
            kind: kind.to_string(),
            payload,
        });
        Ok(self)
    }

    pub fn build(self) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                store: self.store,
                settings: self.settings,
                handlers: self.handlers,
                schedules: self.schedules,
                shared_rate: self.shared_rate,
                wake: Arc::new(Notify::new()),
                metrics: JobMetrics::default(),
            }),
        }
    }
}

/// The queue of one node: enqueue, and (once) start the worker. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Settings,
    /// kind → (queue, handler)
    handlers: HashMap<String, (String, Handler)>,
    schedules: Vec<Schedule>,
    shared_rate: Option<Arc<dyn SharedRate>>,
    /// Wakes idle queue loops after a local enqueue; a hint, polling is the guarantee.
    wake: Arc<Notify>,
    metrics: JobMetrics,
}

impl Jobs {
    pub fn builder(store: Store, settings: Settings) -> JobsBuilder {
        JobsBuilder {
            store,
            settings,
            handlers: HashMap::new(),
            schedules: Vec::new(),
            shared_rate: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &JobMetrics {
        &self.inner.metrics
    }

    /// Enqueues in a transaction of its own. `None`: a live job holds the unique key.
    pub async fn enqueue(&self, job: Job) -> Result<Option<String>, StoreError> {
        let id = self
            .inner
            .store
            .enqueue_job(&job.into_new(self.inner.settings.default_max_attempts))
            .await?;
        self.inner.wake.notify_waiters();
        Ok(id)
    }

    /// Enqueues inside the caller's transaction: the job exists exactly when the caller's
    /// writes commit. The local worker is woken now; if the commit comes later, the job
    /// is found at the next poll.
    pub async fn enqueue_in<S>(
        &self,
        tx: &mut Tx<S>,
        job: Job,
    ) -> Result<Option<String>, StoreError> {
        let id = tx
            .enqueue_job(&job.into_new(self.inner.settings.default_max_attempts))
            .await?;
        self.inner.wake.notify_waiters();
        Ok(id)
    }

    /// Wakes this node's idle queue loops (after a commit that enqueued jobs elsewhere,
    /// such as an outbox written by the store).
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// What [`Jobs::wake`] uses, on its own: a service whose handlers the queue holds
    /// keeps this rather than the queue, so the two do not keep each other alive (and
    /// the database pool open) after the app is dropped.
    pub fn waker(&self) -> Waker {
        Waker(self.inner.wake.clone())
    }

    /// Refreshes the depth gauges from the database (called at scrape time).
    pub async fn refresh_metrics(&self) -> Result<(), StoreError> {
        self.inner.metrics.refresh(&self.inner.store).await
    }

    /// Starts claiming and running jobs and evaluating schedules on this node.
    pub async fn start(&self) -> Result<Worker, StoreError> {
        Worker::start(self.inner.clone()).await
    }

    /// One cron evaluation at `now_ms`: for each schedule, the latest slot due since the
    /// last one seen is claimed (by one node only) and enqueued. Returns how many slots
    /// this node won. The worker calls this every poll; tests call it directly.
    pub async fn cron_tick(
        &self,
        seen: &mut HashMap<String, i64>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        worker::cron_tick(&self.inner, seen, now_ms).await
    }

    /// The last slot of each schedule any node ran, or `now_ms` for a schedule that
    /// never ran: the starting point of [`Jobs::cron_tick`]. So a slot missed while every
    /// node was down runs once at start (only the latest missed one), and a new schedule
    /// does not fire for the past.
    pub async fn cron_start(&self, now_ms: i64) -> Result<HashMap<String, i64>, StoreError> {
        worker::cron_start(&self.inner, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(6 * 3600);
        for _ in 0..200 {
            assert!(backoff(1, base, cap) <= Duration::from_secs(10));
            assert!(backoff(4, base, cap) <= Duration::from_secs(80));
            assert!(backoff(30, base, cap) <= cap);
            assert!(backoff(1000, base, cap) <= cap);
        }
        // Full jitter: not always the ceiling (200 draws from [0, 80 s]).
        let draws: HashSet<Duration> = (0..200).map(|_| backoff(4, base, cap)).collect();
        assert!(draws.len() > 1);
    }
}
