//! Login brute-force throttling: failures counted per account and per client IP in a
//! fixed window that starts at the first failure. At the limit, further attempts are
//! refused (429) until the window ends, before any password is checked.
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
    failures: u32,
    ends: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("login throttle store unavailable: {0}")]
pub struct ThrottleUnavailable(String);

/// Above this many tracked keys, the in-process map drops windows that have ended.
const MEMORY_PRUNE_AT: usize = 10_000;

/// INCR and, for a new key, set the window: one atomic step, so two nodes counting the
/// first failure at once cannot leave a key without expiry.
const RECORD_FAILURE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

impl LoginThrottle {
    pub fn memory() -> LoginThrottle {
        LoginThrottle::Memory(Arc::new(Mutex::new(HashMap::new())))
    }

    pub async fn redis(url: &str, prefix: &str) -> Result<LoginThrottle, ThrottleUnavailable> {
        let client = redis::Client::open(url).map_err(|e| ThrottleUnavailable(e.to_string()))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| ThrottleUnavailable(e.to_string()))?;
        Ok(LoginThrottle::Redis {
            conn,
            prefix: prefix.to_string(),
        })
    }

    /// If `key` has reached `max` failures in its window: how long until it ends.
    pub async fn locked_for(
        &self,
        key: &str,
        max: u32,
    ) -> Result<Option<Duration>, ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                let map = map
                    .lock()
                    .map_err(|_| ThrottleUnavailable("poisoned".into()))?;
                let now = Instant::now();
                Ok(map
                    .get(key)
                    .filter(|w| w.ends > now && w.failures >= max)
                    .map(|w| w.ends - now))
            }
            LoginThrottle::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let full = format!("{prefix}login:{key}");
                let (count, ttl_ms): (Option<u32>, i64) = redis::pipe()
                    .get(&full)
                    .pttl(&full)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| ThrottleUnavailable(e.to_string()))?;
                Ok(match count {
                    Some(n) if n >= max && ttl_ms > 0 => Some(Duration::from_millis(ttl_ms as u64)),
                    _ => None,
                })
            }
        }
    }

    pub async fn record_failure(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(), ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| ThrottleUnavailable("poisoned".into()))?;
                let now = Instant::now();
                if map.len() >= MEMORY_PRUNE_AT {
                    map.retain(|_, w| w.ends > now);
                }
                let entry = map.entry(key.to_string()).or_insert(Window {
                    failures: 0,
                    ends: now + window,
                });
                if entry.ends <= now {
                    *entry = Window {
                        failures: 0,
                        ends: now + window,
                    };
                }
                entry.failures += 1;
                Ok(())
            }
            LoginThrottle::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let _: i64 = redis::Script::new(RECORD_FAILURE)
                    .key(format!("{prefix}login:{key}"))
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| ThrottleUnavailable(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// After a successful login the account starts afresh (the IP count stays).
    pub async fn clear(&self, key: &str) -> Result<(), ThrottleUnavailable> {
        match self {
            LoginThrottle::Memory(map) => {
                map.lock()
                    .map_err(|_| ThrottleUnavailable("poisoned".into()))?
                    .remove(key);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_window_locks_at_max_and_clears() {
        let t = LoginThrottle::memory();
        let w = Duration::from_secs(60);
        for _ in 0..4 {
            t.record_failure("a", w).await.unwrap();
        }
        assert!(t.locked_for("a", 5).await.unwrap().is_none());
        t.record_failure("a", w).await.unwrap();
        let left = t.locked_for("a", 5).await.unwrap().unwrap();
        assert!(left <= w && left > Duration::from_secs(50));
        assert!(t.locked_for("b", 5).await.unwrap().is_none());
        t.clear("a").await.unwrap();
        assert!(t.locked_for("a", 5).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn memory_window_expires() {
        let t = LoginThrottle::memory();
        t.record_failure("a", Duration::from_millis(20))
            .await
            .unwrap();
        assert!(t.locked_for("a", 1).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(t.locked_for("a", 1).await.unwrap().is_none());
    }
}
