//! The bound on password hashing. Argon2 takes 19 MiB and tens of milliseconds of a core
//! per hash, and logins need no account: unbounded, 200 concurrent wrong logins took a
//! server to 4.7 GiB that it never gave back. Every hash and verification of this process's
//! `Identity` (the dummy verification for unknown e-mails included, so a shed login says
//! nothing about whether the account exists) goes through one `HashGate`: at most
//! `auth.max_concurrent_hashes` at once, each in a reused [`HashMemory`], callers queueing
//! for at most `auth.hash_queue_ms`, then shed with 503 and `Retry-After`.
//!
//! A permit is held by the blocking task, not by the request: a client that goes away does
//! not free its slot before its hash is done, so the bound holds under aborted requests too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::IdentityError;
use crate::password::HashMemory;

/// Waiting callers beyond this many per permit are shed at once rather than queued.
const WAITERS_PER_PERMIT: usize = 64;

pub struct HashGate {
    permits: Arc<Semaphore>,
    /// One `HashMemory` per hash running now, kept for the next one. Never more than the
    /// permits, since only a permit holder takes one.
    memory: Arc<Mutex<Vec<HashMemory>>>,
    queue_wait: Duration,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts a queued caller while it waits, also when its future is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HashGate {
    /// `max_concurrent` 0 means one per core.
    pub fn new(max_concurrent: usize, queue_wait: Duration) -> HashGate {
        let permits = match max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        HashGate {
            permits: Arc::new(Semaphore::new(permits)),
            memory: Arc::new(Mutex::new(Vec::new())),
            queue_wait,
            waiting: AtomicUsize::new(0),
            max_waiting: permits * WAITERS_PER_PERMIT,
        }
    }

    /// Runs `work` on the blocking pool with a permit and hash memory, or sheds it with
    /// [`IdentityError::Busy`].
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, IdentityError> {
        let busy = IdentityError::Busy {
            retry_after_secs: 1,
        };
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(busy);
        }
        let queued = Waiting(&self.waiting);
        let permit =
            tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned()).await;
        drop(queued);
        let Ok(Ok(permit)) = permit else {
            return Err(busy);
        };
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let mut own = memory
                .lock()
                .map(|mut m| m.pop())
                .unwrap_or_default()
                .unwrap_or_default();
            let out = work(&mut own);
            if let Ok(mut m) = memory.lock() {
                m.push(own);
            }
            drop(permit);
            out
        })
        .await
        .map_err(|e| IdentityError::Task(e.to_string()))
    }

    /// Hash memory buffers allocated so far (for tests: never more than the permits).
    pub fn buffers(&self) -> usize {
        self.memory.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More callers than permits and queue time: the excess is shed with `Busy`, the rest
    /// run, and no more memory buffers exist than permits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excess_hashing_is_shed_and_memory_is_bounded() {
        let gate = Arc::new(HashGate::new(2, Duration::from_millis(50)));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                gate.run(|_memory| std::thread::sleep(Duration::from_millis(40)))
                    .await
            }));
        }
        let (mut ran, mut shed) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ran += 1,
                Err(IdentityError::Busy { .. }) => shed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(ran >= 2, "{ran} ran");
        assert!(shed >= 1, "{shed} shed");
        assert!(gate.buffers() <= 2, "{} buffers", gate.buffers());
    }
}
