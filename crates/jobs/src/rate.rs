//! A token bucket per queue and node: `per_second` tokens a second, up to one second's
//! worth banked. Not the edge's GCRA limiter: that one answers "may this request pass
//! now", while a worker needs "how long until the next job may start", and a bucket says
//! that directly.

use std::time::{Duration, Instant};

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

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
