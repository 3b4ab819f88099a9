//! How fast a queue's jobs may start: `per_second` starts a second, up to one second's
//! worth at once.
//!
//! With a [`SharedRate`] (the binary gives one over Redis when `redis.url` is set), every
//! node draws from one rate per queue, so the limit holds for the deployment. Without one,
//! or while it cannot be reached, each node paces its own starts with a token bucket, and
//! N nodes start up to N times the rate.
//!
//! A worker reserves starts before it claims (so two nodes cannot both spend the same
//! budget) and gives back the ones it found no job for (so an idle node does not eat a
//! busy one's budget).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A queue's start rate, as the shared limiter is asked for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    /// Starts that may happen at once: one second's worth, at least one.
    pub burst: u32,
}

impl Rate {
    pub fn per_second(per_second: f64) -> Rate {
        Rate {
            per_second,
            burst: (per_second.floor() as u32).max(1),
        }
    }

    /// The time between two starts at this rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

/// What a reservation granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// Starts taken now, at most the number asked for.
    pub granted: u32,
    /// When none was granted: how long until one may be.
    pub next_in: Duration,
}

pub type RateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// A start rate per queue shared by all nodes of a deployment. The jobs crate does not
/// say how: the binary implements it with the edge's GCRA limiter in Redis.
pub trait SharedRate: Send + Sync {
    /// Takes up to `n` starts of `queue` at `rate`. An error means the shared store
    /// cannot be asked; the node then paces itself.
    fn reserve<'a>(&'a self, queue: &'a str, rate: Rate, n: u32) -> RateFuture<'a, Reserved>;

    /// Gives back `n` starts reserved and not used.
    fn release<'a>(&'a self, queue: &'a str, rate: Rate, n: u32) -> RateFuture<'a, ()>;
}

/// A token bucket for one queue on one node: `per_second` tokens a second, up to one
/// second's worth banked.
pub(crate) struct TokenBucket {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(per_second: f64) -> TokenBucket {
        TokenBucket {
            per_second,
            tokens: per_second.max(1.0),
            at: Instant::now(),
        }
    }

    fn capacity(&self) -> f64 {
        self.per_second.max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity());
        self.at = now;
    }

    /// Whole tokens available now.
    pub(crate) fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        self.tokens.floor().max(0.0) as usize
    }

    pub(crate) fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Returns `n` tokens taken and not used.
    pub(crate) fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.capacity());
    }

    /// How long until one token is available.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }
}

/// Whether a queue loop may claim now.
#[derive(Debug, PartialEq)]
pub(crate) enum Admit {
    /// Claim up to this many jobs.
    Start(usize),
    /// Try again after this long.
    Wait(Duration),
}

/// The pacing of one queue on this node: the shared rate when there is one and it
/// answers, else this node's bucket.
pub(crate) struct QueueRate {
    queue: String,
    rate: Rate,
    shared: Option<Arc<dyn SharedRate>>,
    local: TokenBucket,
    /// Where the last reservation came from, so unused starts go back there.
    last_shared: bool,
}

impl QueueRate {
    pub(crate) fn new(
        queue: &str,
        per_second: f64,
        shared: Option<Arc<dyn SharedRate>>,
    ) -> QueueRate {
        QueueRate {
            queue: queue.to_string(),
            rate: Rate::per_second(per_second),
            shared,
            local: TokenBucket::new(per_second),
            last_shared: false,
        }
    }

    /// Reserves up to `n` starts.
    pub(crate) async fn reserve(&mut self, n: usize) -> Admit {
        if let Some(shared) = &self.shared {
            let ask = u32::try_from(n).unwrap_or(u32::MAX);
            match shared.reserve(&self.queue, self.rate, ask).await {
                Ok(r) => {
                    self.last_shared = true;
                    return match r.granted {
                        0 => Admit::Wait(r.next_in.max(Duration::from_millis(1))),
                        granted => Admit::Start(granted as usize),
                    };
                }
                Err(e) => tracing::warn!(queue = %self.queue, error = %e,
                    "the shared queue rate cannot be reached; this node paces itself"),
            }
        }
        self.last_shared = false;
        let now = Instant::now();
        match self.local.available(now).min(n) {
            0 => Admit::Wait(self.local.wait(now)),
            granted => {
                self.local.take(granted);
                Admit::Start(granted)
            }
        }
    }

    /// Gives back `n` starts of the last reservation that found no job.
    pub(crate) async fn release(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        match (&self.shared, self.last_shared) {
            (Some(shared), true) => {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                if let Err(e) = shared.release(&self.queue, self.rate, n).await {
                    // They come back by themselves as the rate's time passes.
                    tracing::debug!(queue = %self.queue, error = %e, "cannot give back unused starts");
                }
            }
            _ => self.local.give_back(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn refills_at_the_rate_and_caps_at_one_second() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0);
        assert_eq!(b.available(start), 10);
        b.take(10);
        assert_eq!(b.available(start), 0);
        assert_eq!(b.wait(start), Duration::from_millis(100));
        assert_eq!(b.available(start + Duration::from_millis(500)), 5);
        assert_eq!(b.available(start + Duration::from_secs(60)), 10);
        b.take(4);
        b.give_back(9);
        assert_eq!(b.available(start + Duration::from_secs(60)), 10, "capped");
    }

    #[test]
    fn a_rate_bursts_one_second_of_starts() {
        assert_eq!(Rate::per_second(50.0).burst, 50);
        assert_eq!(Rate::per_second(2.5).burst, 2);
        assert_eq!(Rate::per_second(0.5).burst, 1);
        assert_eq!(Rate::per_second(0.5).interval(), Duration::from_secs(2));
    }

    /// A shared rate that is down, then answers with what it is given.
    struct Scripted {
        answers: Mutex<Vec<Result<Reserved, String>>>,
        released: Mutex<Vec<u32>>,
    }

    impl SharedRate for Scripted {
        fn reserve<'a>(&'a self, _: &'a str, _: Rate, _: u32) -> RateFuture<'a, Reserved> {
            let answer = self.answers.lock().unwrap().remove(0);
            Box::pin(async move { answer })
        }
        fn release<'a>(&'a self, _: &'a str, _: Rate, n: u32) -> RateFuture<'a, ()> {
            self.released.lock().unwrap().push(n);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn the_shared_rate_decides_and_an_unreachable_one_falls_back_to_the_node() {
        let shared = Arc::new(Scripted {
            answers: Mutex::new(vec![
                Ok(Reserved {
                    granted: 3,
                    next_in: Duration::ZERO,
                }),
                Ok(Reserved {
                    granted: 0,
                    next_in: Duration::from_millis(250),
                }),
                Err("connection refused".into()),
            ]),
            released: Mutex::new(Vec::new()),
        });
        let mut rate = QueueRate::new("webhooks", 2.0, Some(shared.clone()));
        assert_eq!(rate.reserve(8).await, Admit::Start(3));
        rate.release(1).await;
        assert_eq!(
            *shared.released.lock().unwrap(),
            [1],
            "back to the shared rate"
        );
        assert_eq!(
            rate.reserve(8).await,
            Admit::Wait(Duration::from_millis(250))
        );
        // Unreachable: this node's own bucket (two a second) decides, and gets what is
        // given back.
        assert_eq!(rate.reserve(8).await, Admit::Start(2));
        rate.release(2).await;
        assert_eq!(shared.released.lock().unwrap().len(), 1);
        assert_eq!(rate.local.available(Instant::now()), 2);
    }
}
