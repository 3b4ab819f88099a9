//! Rate limits by GCRA (the generic cell rate algorithm): one timestamp per key, the
//! "theoretical arrival time" (TAT), so a limit costs one small value and one atomic
//! step, with no buckets to refill and exact `Retry-After`.
//!
//! A quota of `per_minute` with `burst` emits one request every `T = 60 s / per_minute`
//! and lets a caller run up to `burst` requests ahead of that pace. In-process by
//! default; with Redis, one Lua script per check on Redis's own clock, so several nodes
//! enforce one limit and their clocks do not matter.
//!
//! When Redis cannot be reached the check lets the request through (and logs): rate
//! limits protect capacity, and refusing every request because the limiter is down would
//! cause the outage they exist to prevent. Login throttling, which protects accounts,
//! fails closed instead (see `identity::throttle`).
//!
//! The same GCRA step also reserves several units at once ([`RateLimiter::reserve`],
//! and [`RateLimiter::release`] for what went unused): the job queue paces its starts
//! with it, so with Redis one queue's rate holds for all nodes together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use redis::aio::ConnectionManager;

/// How many requests per minute a key may make, and how far ahead it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

impl Quota {
    fn emission_us(self) -> i64 {
        60_000_000 / i64::from(self.per_minute.max(1))
    }

    fn tolerance_us(self) -> i64 {
        self.emission_us() * i64::from(self.burst.max(1))
    }
}

/// A pace for [`RateLimiter::reserve`]: one unit every `interval`, and up to `burst`
/// units ahead of that. Finer than [`Quota`]'s whole requests a minute (a job queue may
/// run at one every two minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub interval: Duration,
    pub burst: u32,
}

impl Pace {
    fn emission_us(self) -> i64 {
        (self.interval.as_micros() as i64).max(1)
    }

    fn tolerance_us(self) -> i64 {
        self.emission_us() * i64::from(self.burst.max(1))
    }
}

/// What [`RateLimiter::reserve`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Units taken now, at most the number asked for.
    pub granted: u32,
    /// How long until one more unit fits (zero when it fits now).
    pub next_in: Duration,
}

/// The limiter's store could not be asked (Redis down or too slow).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limit store unreachable: {0}")]
pub struct Unreachable(String);

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left before the limit bites.
    pub remaining: u32,
    /// Seconds until the caller may try again (0 when allowed).
    pub retry_after_secs: u64,
    /// Seconds until the quota is whole again.
    pub reset_secs: u64,
    /// Which limit: `ip`, `api_key` or `tenant`.
    pub policy: &'static str,
    pub quota: Quota,
}

impl Decision {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        let policy = format!(
            "\"{}\";q={};w=60;burst={}",
            self.policy, self.quota.per_minute, self.quota.burst
        );
        let state = format!(
            "\"{}\";r={};t={}",
            self.policy, self.remaining, self.reset_secs
        );
        [
            (
                HeaderName::from_static("ratelimit-policy"),
                HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            ),
            (
                HeaderName::from_static("ratelimit"),
                HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("")),
            ),
        ]
    }
}

/// Decides from the stored TAT (µs) and now (µs): `(decision, new TAT to store)`.
fn gcra(tat: Option<i64>, now: i64, quota: Quota, policy: &'static str) -> (Decision, Option<i64>) {
    let t = quota.emission_us();
    let tau = quota.tolerance_us();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + t;
    let allow_at = new_tat - tau;
    let secs = |us: i64| (us.max(0) as u64).div_ceil(1_000_000);
    if now < allow_at {
        return (
            Decision {
                allowed: false,
                remaining: 0,
                retry_after_secs: secs(allow_at - now).max(1),
                reset_secs: secs(tat - now),
                policy,
                quota,
            },
            None,
        );
    }
    (
        Decision {
            allowed: true,
            remaining: ((now + tau - new_tat) / t).max(0) as u32,
            retry_after_secs: 0,
            reset_secs: secs(new_tat - now),
            policy,
            quota,
        },
        Some(new_tat),
    )
}

/// Takes up to `n` units at once from the stored TAT (µs) at `now` (µs), emission
/// interval `t` and tolerance `tau`: `(granted, new TAT to store, µs until one more
/// fits)`. With `n = 1` it is [`gcra`]'s step.
fn gcra_take(tat: Option<i64>, now: i64, t: i64, tau: i64, n: i64) -> (i64, Option<i64>, i64) {
    let tat = tat.unwrap_or(now).max(now);
    // How far ahead of now the caller may still run, in whole units.
    let room = now + tau - tat;
    let granted = if room < t { 0 } else { (room / t).min(n) };
    let new_tat = tat + granted * t;
    let next_in = (new_tat + t - tau - now).max(0);
    (granted, (granted > 0).then_some(new_tat), next_in)
}

/// The same step in Redis, on Redis's clock: takes up to `ARGV[3]` units (one for a
/// check). Returns `{tat_before, now}`; the caller derives the outcome with [`gcra`] or
/// [`gcra_take`], so both backends answer alike.
const GCRA_SCRIPT: &str = r#"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local n = tonumber(ARGV[3] or '1')
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local granted = math.min(n, math.floor((now + tau - tat) / t))
if granted > 0 then
  local new_tat = tat + granted * t
  redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1)
end
return {tat, now}
"#;

/// Gives back `ARGV[2]` units of interval `ARGV[1]` reserved and not used.
const RELEASE_SCRIPT: &str = r#"
local t = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local back = tat - n * t
  if back > now then
    redis.call('SET', KEYS[1], back, 'PX', math.floor((back - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[1])
  end
end
return 1
"#;

#[derive(Clone)]
pub struct RateLimiter {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<HashMap<String, i64>>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Arc<redis::Script>,
        release: Arc<redis::Script>,
    },
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &kind)
            .finish()
    }
}

/// Past this many keys the in-process map drops entries whose quota is whole again.
const SWEEP_AT: usize = 100_000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How long a request waits on Redis before the limit fails open (or, for login
/// throttling, closed). Redis answers in well under a millisecond when it is there.
pub const REDIS_DEADLINE: Duration = Duration::from_secs(1);

/// A Redis connection for per-request state (limits, throttles): it reconnects by itself
/// when Redis returns, but a command never waits longer than [`REDIS_DEADLINE`] for a
/// dead server (redis-rs' defaults retry for ~13 s and have no response timeout).
pub async fn redis_connection(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(REDIS_DEADLINE)
        .set_response_timeout(REDIS_DEADLINE)
        .set_number_of_retries(1)
        .set_max_delay(500);
    ConnectionManager::new_with_config(redis::Client::open(url)?, config).await
}

impl RateLimiter {
    pub fn memory() -> RateLimiter {
        RateLimiter {
            backend: Backend::Memory(Arc::default()),
        }
    }

    pub async fn redis(url: &str, prefix: &str) -> Result<RateLimiter, redis::RedisError> {
        let conn = redis_connection(url).await?;
        Ok(RateLimiter {
            backend: Backend::Redis {
                conn,
                prefix: format!("{prefix}ratelimit:"),
                script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
                release: Arc::new(redis::Script::new(RELEASE_SCRIPT)),
            },
        })
    }

    /// Counts one request against `key`'s quota.
    pub async fn check(&self, policy: &'static str, key: &str, quota: Quota) -> Decision {
        match &self.backend {
            Backend::Memory(map) => {
                let now = now_us();
                let Ok(mut map) = map.lock() else {
                    return gcra(None, now, quota, policy).0;
                };
                if map.len() >= SWEEP_AT {
                    map.retain(|_, tat| *tat > now);
                }
                let full_key = format!("{policy}:{key}");
                let (decision, new_tat) = gcra(map.get(&full_key).copied(), now, quota, policy);
                if let Some(tat) = new_tat {
                    map.insert(full_key, tat);
                }
                decision
            }
            Backend::Redis {
                conn,
                prefix,
                script,
                ..
            } => {
                let mut invocation = script.key(format!("{prefix}{policy}:{key}"));
                invocation
                    .arg(quota.emission_us())
                    .arg(quota.tolerance_us());
                match invoke::<(i64, i64)>(conn, &invocation).await {
                    Ok((tat, now)) => gcra(Some(tat), now, quota, policy).0,
                    Err(e) => {
                        tracing::warn!(error = %e, policy, "rate limit store unreachable; letting the request through");
                        gcra(None, now_us(), quota, policy).0
                    }
                }
            }
        }
    }

    /// Takes up to `n` units of `key`'s `pace` at once (one atomic step, on Redis's
    /// clock with Redis). Unlike [`RateLimiter::check`] it does not fail open: the caller
    /// learns that the store is unreachable and chooses.
    pub async fn reserve(
        &self,
        policy: &'static str,
        key: &str,
        pace: Pace,
        n: u32,
    ) -> Result<Reservation, Unreachable> {
        let (t, tau, n) = (pace.emission_us(), pace.tolerance_us(), i64::from(n));
        let (tat, now) = match &self.backend {
            Backend::Memory(map) => {
                let now = now_us();
                let mut map = map.lock().map_err(|_| Unreachable("poisoned".into()))?;
                let full_key = format!("{policy}:{key}");
                let tat = map.get(&full_key).copied();
                if let (_, Some(new_tat), _) = gcra_take(tat, now, t, tau, n) {
                    map.insert(full_key, new_tat);
                }
                (tat, now)
            }
            Backend::Redis {
                conn,
                prefix,
                script,
                ..
            } => {
                let mut invocation = script.key(format!("{prefix}{policy}:{key}"));
                invocation.arg(t).arg(tau).arg(n);
                let (tat, now) = invoke::<(i64, i64)>(conn, &invocation)
                    .await
                    .map_err(Unreachable)?;
                (Some(tat), now)
            }
        };
        let (granted, _, next_in) = gcra_take(tat, now, t, tau, n);
        Ok(Reservation {
            granted: granted as u32,
            next_in: Duration::from_micros(next_in as u64),
        })
    }

    /// Gives back `n` units reserved with [`RateLimiter::reserve`] and not used, so
    /// they are not lost to everyone sharing the key.
    pub async fn release(
        &self,
        policy: &'static str,
        key: &str,
        pace: Pace,
        n: u32,
    ) -> Result<(), Unreachable> {
        let back = pace.emission_us() * i64::from(n);
        match &self.backend {
            Backend::Memory(map) => {
                let now = now_us();
                let mut map = map.lock().map_err(|_| Unreachable("poisoned".into()))?;
                let full_key = format!("{policy}:{key}");
                match map.get(&full_key).map(|tat| tat - back) {
                    Some(tat) if tat > now => map.insert(full_key, tat),
                    _ => map.remove(&full_key),
                };
                Ok(())
            }
            Backend::Redis {
                conn,
                prefix,
                release,
                ..
            } => {
                let mut invocation = release.key(format!("{prefix}{policy}:{key}"));
                invocation.arg(pace.emission_us()).arg(n);
                invoke::<i64>(conn, &invocation)
                    .await
                    .map(drop)
                    .map_err(Unreachable)
            }
        }
    }
}

/// One script call, given up after [`REDIS_DEADLINE`].
async fn invoke<T: redis::FromRedisValue>(
    conn: &ConnectionManager,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<T, String> {
    let mut conn = conn.clone();
    match tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async::<T>(&mut conn)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within the deadline".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        per_minute: 60,
        burst: 3,
    };

    #[test]
    fn a_burst_then_one_per_emission_interval() {
        let mut tat = None;
        let now = 1_000_000_000;
        for i in 0..3 {
            let (d, next) = gcra(tat, now, Q, "ip");
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 2 - i);
            tat = next;
        }
        let (d, next) = gcra(tat, now, Q, "ip");
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1, "one emission interval");
        assert!(next.is_none(), "a refused request costs nothing");
        // One second later exactly one more fits.
        let (d, next) = gcra(tat, now + 1_000_000, Q, "ip");
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!gcra(next, now + 1_000_000, Q, "ip").0.allowed);
        // After a long pause the whole burst is back.
        assert_eq!(gcra(next, now + 60_000_000, Q, "ip").0.remaining, 2);
    }

    #[test]
    fn taking_several_units_is_the_same_step_as_taking_one_at_a_time() {
        let (t, tau) = (250_000, 1_000_000); // 4 a second, a burst of 4
        let now = 5_000_000;
        // A whole burst at once, then nothing until one interval has passed.
        let (granted, tat, next) = gcra_take(None, now, t, tau, 10);
        assert_eq!((granted, next), (4, t));
        assert_eq!(gcra_take(tat, now, t, tau, 10).0, 0);
        assert_eq!(gcra_take(tat, now + t - 1, t, tau, 10).0, 0);
        assert_eq!(gcra_take(tat, now + t, t, tau, 10).0, 1);
        // Asking for fewer than fit takes only those.
        let (granted, tat, next) = gcra_take(None, now, t, tau, 3);
        assert_eq!((granted, next), (3, 0));
        assert_eq!(gcra_take(tat, now, t, tau, 3).0, 1);
        // n = 1 agrees with the check.
        let q = Quota {
            per_minute: 240,
            burst: 4,
        };
        let mut tat = None;
        for i in 0..6 {
            let (d, next) = gcra(tat, now, q, "x");
            let (granted, take_next, _) = gcra_take(tat, now, t, tau, 1);
            assert_eq!(d.allowed, granted == 1, "request {i}");
            assert_eq!(next, take_next);
            tat = next.or(tat);
        }
    }

    #[tokio::test]
    async fn reservations_are_shared_and_unused_ones_come_back() {
        // Slow enough that no unit comes back while the test runs.
        let pace = Pace {
            interval: Duration::from_secs(60),
            burst: 4,
        };
        let mut limiters = vec![("memory", RateLimiter::memory(), RateLimiter::memory())];
        match std::env::var("RAMPART_TEST_REDIS_URL") {
            Ok(url) => {
                let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
                // Two connections, as two nodes have.
                limiters.push((
                    "redis",
                    RateLimiter::redis(&url, &prefix).await.unwrap(),
                    RateLimiter::redis(&url, &prefix).await.unwrap(),
                ));
            }
            Err(_) => eprintln!("skipped the Redis limiter: set RAMPART_TEST_REDIS_URL"),
        }
        for (name, a, b) in limiters {
            // The in-process backend is one node's: share it by using the same one.
            let b = if name == "memory" { a.clone() } else { b };
            let first = a.reserve("jobs", "q", pace, 3).await.unwrap();
            assert_eq!(first.granted, 3, "{name}");
            let second = b.reserve("jobs", "q", pace, 3).await.unwrap();
            assert_eq!(second.granted, 1, "{name}: one burst for both");
            let none = a.reserve("jobs", "q", pace, 3).await.unwrap();
            assert_eq!(none.granted, 0, "{name}");
            assert!(none.next_in > Duration::ZERO && none.next_in <= pace.interval);
            // Two of the first three found no work: they are back for anyone.
            a.release("jobs", "q", pace, 2).await.unwrap();
            assert_eq!(
                b.reserve("jobs", "q", pace, 3).await.unwrap().granted,
                2,
                "{name}"
            );
            assert_eq!(
                a.reserve("jobs", "other", pace, 9).await.unwrap().granted,
                4,
                "{name}: keys are separate"
            );
        }
    }

    #[test]
    fn headers_follow_the_draft() {
        let (d, _) = gcra(None, 0, Q, "tenant");
        let [(p, pv), (r, rv)] = d.headers();
        assert_eq!(p.as_str(), "ratelimit-policy");
        assert_eq!(pv.to_str().unwrap(), "\"tenant\";q=60;w=60;burst=3");
        assert_eq!(r.as_str(), "ratelimit");
        assert_eq!(rv.to_str().unwrap(), "\"tenant\";r=2;t=1");
    }

    #[tokio::test]
    async fn memory_and_redis_agree() {
        let mut limiters = vec![("memory", RateLimiter::memory())];
        match std::env::var("RAMPART_TEST_REDIS_URL") {
            Ok(url) => {
                let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
                limiters.push(("redis", RateLimiter::redis(&url, &prefix).await.unwrap()));
            }
            Err(_) => eprintln!("skipped the Redis limiter: set RAMPART_TEST_REDIS_URL"),
        }
        for (name, limiter) in limiters {
            let allowed = {
                let mut n = 0;
                for _ in 0..5 {
                    n += usize::from(limiter.check("ip", "203.0.113.9", Q).await.allowed);
                }
                n
            };
            assert_eq!(allowed, 3, "{name}: the burst, then refusals");
            let refused = limiter.check("ip", "203.0.113.9", Q).await;
            assert!(!refused.allowed && refused.retry_after_secs >= 1, "{name}");
            assert!(
                limiter.check("ip", "203.0.113.10", Q).await.allowed,
                "{name}: keys are separate"
            );
        }
    }
}
