//! The job queue's start rates shared by every node: the jobs crate's `SharedRate` over
//! the edge's GCRA limiter in Redis (one Lua step per reservation, on Redis's clock), so
//! `jobs.queues = "webhooks:8:50/s"` means 50 a second for the deployment, not per node.
//! Here because the jobs crate does not depend on the edge.

use std::time::Duration;

use rampart_edge::rate_limit::{Pace, RateLimiter};
use rampart_jobs::{Rate, RateFuture, Reserved, SharedRate};

/// Keys are `<redis.key_prefix>ratelimit:jobs:<queue>`.
const POLICY: &str = "jobs";

pub struct RedisQueueRate(pub RateLimiter);

fn pace(rate: Rate) -> Pace {
    Pace {
        interval: rate.interval().max(Duration::from_micros(1)),
        burst: rate.burst,
    }
}

impl SharedRate for RedisQueueRate {
    fn reserve<'a>(&'a self, queue: &'a str, rate: Rate, n: u32) -> RateFuture<'a, Reserved> {
        Box::pin(async move {
            let r = self
                .0
                .reserve(POLICY, queue, pace(rate), n)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Reserved {
                granted: r.granted,
                next_in: r.next_in,
            })
        })
    }

    fn release<'a>(&'a self, queue: &'a str, rate: Rate, n: u32) -> RateFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .release(POLICY, queue, pace(rate), n)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
