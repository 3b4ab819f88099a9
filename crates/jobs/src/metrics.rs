//! Queue metrics: depth and age gauges read from the database at scrape time (so every
//! node reports the cluster's queue, not its own share), and counters of this node's
//! outcomes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rampart_store::{Store, StoreError};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Default)]
pub struct JobMetrics {
    queued: Family<QueueLabel, Gauge>,
    running: Family<QueueLabel, Gauge>,
    dead: Family<QueueLabel, Gauge>,
    oldest_age_seconds: Family<QueueLabel, Gauge>,
    pub(crate) completed: Family<QueueLabel, Counter>,
    pub(crate) failed: Family<QueueLabel, Counter>,
    pub(crate) retried: Family<QueueLabel, Counter>,
    pub(crate) dead_lettered: Family<QueueLabel, Counter>,
    /// Queues seen at earlier scrapes: an emptied queue reads 0, not its last value.
    seen: Arc<Mutex<HashSet<String>>>,
}

pub(crate) fn label(queue: &str) -> QueueLabel {
    QueueLabel {
        queue: queue.to_string(),
    }
}

impl JobMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rampart_jobs_queued",
            "Jobs waiting, due or delayed",
            self.queued.clone(),
        );
        registry.register(
            "rampart_jobs_running",
            "Jobs leased by a worker",
            self.running.clone(),
        );
        registry.register(
            "rampart_jobs_dead",
            "Dead jobs awaiting `rampart jobs retry`",
            self.dead.clone(),
        );
        registry.register(
            "rampart_jobs_oldest_age_seconds",
            "How long the oldest due job has waited past its run time",
            self.oldest_age_seconds.clone(),
        );
        registry.register(
            "rampart_jobs_completed",
            "Jobs this node completed",
            self.completed.clone(),
        );
        registry.register(
            "rampart_jobs_failed",
            "Failed attempts on this node",
            self.failed.clone(),
        );
        registry.register(
            "rampart_jobs_retried",
            "Failed attempts queued again with backoff",
            self.retried.clone(),
        );
        registry.register(
            "rampart_jobs_dead_lettered",
            "Jobs this node moved to dead",
            self.dead_lettered.clone(),
        );
    }

    pub(crate) async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let depths = store.queue_depths().await?;
        let now = rampart_store::now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for queue in seen.iter() {
            let l = label(queue);
            self.queued.get_or_create(&l).set(0);
            self.running.get_or_create(&l).set(0);
            self.dead.get_or_create(&l).set(0);
            self.oldest_age_seconds.get_or_create(&l).set(0);
        }
        for d in depths {
            let l = label(&d.queue);
            self.queued.get_or_create(&l).set(d.queued);
            self.running.get_or_create(&l).set(d.running);
            self.dead.get_or_create(&l).set(d.dead);
            // MIN(run_at) is in the past exactly when some job is due, and then it is the
            // oldest due job's.
            let age = d
                .oldest_queued_run_at
                .map_or(0, |t| (now - t).max(0) / 1000);
            self.oldest_age_seconds.get_or_create(&l).set(age);
            seen.insert(d.queue);
        }
        Ok(())
    }
}
