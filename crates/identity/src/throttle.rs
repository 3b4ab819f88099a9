//! Login brute-force throttling: attempts counted per account and per client IP in a
//! fixed window that starts at the first attempt.
//!
//! An attempt is counted *before* its password is checked (`hit`), atomically, so a burst
//! of parallel guesses cannot all slip past a check-then-record race: the sixth attempt in
//! a window sees a count of six and is refused (429) without a password check, however
//! many arrive at once. A successful login clears the account's count and gives back its
//! IP slot, so only failures accumulate.
//!
//! In this process by default; in Redis when `redis.url` is set, so every node counts
//! together. If Redis cannot be reached, login fails closed (503): refusing logins for a
//! while is better than unlimited guessing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

#[derive(Clone)]
pub enum LoginThrottle {
    Memory(Arc<Mutex<HashMap<String, Window>>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Window {
    attempts: u32,
    ends: Instant,
}

/// The state of a key after an attempt was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Attempts in the window, this one included.
    pub attempts: u32,
    /// Until the window ends.
    pub resets_in: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("login throttle store unavailable: {0}")]
pub struct ThrottleUnavailable(String);

/// Above this many tracked keys, the in-process map drops windows that have ended.
const MEMORY_PRUNE_AT: usize = 10_000;

/// INCR, set the window on a new key, report count and time left: one atomic step, so
/// two nodes counting at once cannot lose a count or leave a key without expiry.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

/// Gives back one attempt, never below zero, keeping the window's expiry.
const RELEASE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
";

impl LoginThrottle {
    pub fn memory() -> LoginThrottle {
        LoginThrottle::Memory(Arc::new(Mutex::new(HashMap::new())))
    }

    pub async fn redis(url: &str, prefix: &str) -> Result<LoginThrottle, ThrottleUnavailable> {
        let conn = rampart_edge::rate_limit::redis_connection(url)
            .await
            .map_err(|e| ThrottleUnavailable(e.to_string()))?;
        Ok(LoginThrottle::Redis {
            conn,
            prefix: prefix.to_string(),
        })
    }

    /// Counts one attempt against `key` and returns the count in the current window.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit, ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                let mut map = lock(map)?;
                let now = Instant::now();
                if map.len() >= MEMORY_PRUNE_AT {
                    map.retain(|_, w| w.ends > now);
                }
                let entry = map.entry(key.to_string()).or_insert(Window {
                    attempts: 0,
                    ends: now + window,
                });
                if entry.ends <= now {
                    *entry = Window {
                        attempts: 0,
                        ends: now + window,
                    };
                }
                entry.attempts += 1;
                Ok(Hit {
                    attempts: entry.attempts,
                    resets_in: entry.ends - now,
                })
            }
            LoginThrottle::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let (attempts, ttl_ms): (u32, i64) = redis::Script::new(HIT)
                    .key(format!("{prefix}login:{key}"))
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| ThrottleUnavailable(e.to_string()))?;
                Ok(Hit {
                    attempts,
                    resets_in: Duration::from_millis(ttl_ms.max(0) as u64),
                })
            }
        }
    }

    /// Takes back one counted attempt (a login that succeeded).
    pub async fn release(&self, key: &str) -> Result<(), ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                if let Some(w) = lock(map)?.get_mut(key) {
                    w.attempts = w.attempts.saturating_sub(1);
                }
                Ok(())
            }
            LoginThrottle::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: i64 = redis::Script::new(RELEASE)
                    .key(format!("{prefix}login:{key}"))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| ThrottleUnavailable(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// Forgets `key`'s window (an account after a successful login).
    pub async fn clear(&self, key: &str) -> Result<(), ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                lock(map)?.remove(key);
                Ok(())
            }
            LoginThrottle::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: i64 = redis::cmd("DEL")
                    .arg(format!("{prefix}login:{key}"))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| ThrottleUnavailable(e.to_string()))?;
                Ok(())
            }
        }
    }
}

fn lock(
    map: &Mutex<HashMap<String, Window>>,
) -> Result<std::sync::MutexGuard<'_, HashMap<String, Window>>, ThrottleUnavailable> {
    map.lock()
        .map_err(|_| ThrottleUnavailable("lock poisoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_window_counts_releases_and_clears() {
        let t = LoginThrottle::memory();
        let w = Duration::from_secs(60);
        for n in 1..=5 {
            assert_eq!(t.hit("a", w).await.unwrap().attempts, n);
        }
        let sixth = t.hit("a", w).await.unwrap();
        assert_eq!(sixth.attempts, 6);
        assert!(sixth.resets_in <= w && sixth.resets_in > Duration::from_secs(50));
        assert_eq!(t.hit("b", w).await.unwrap().attempts, 1);
        t.release("b").await.unwrap();
        assert_eq!(t.hit("b", w).await.unwrap().attempts, 1);
        t.clear("a").await.unwrap();
        assert_eq!(t.hit("a", w).await.unwrap().attempts, 1);
    }

    #[tokio::test]
    async fn memory_window_expires() {
        let t = LoginThrottle::memory();
        t.hit("a", Duration::from_millis(20)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            t.hit("a", Duration::from_millis(20))
                .await
                .unwrap()
                .attempts,
            1
        );
    }
}
