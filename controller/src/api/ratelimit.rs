//! Per-client request rate limits: one token bucket per client key, pure (`now` is an argument).
//!
//! The key is the client's credential (token id or certificate) when it presented a valid
//! one, else its IP address, so one flooding client is answered 429 while others go on. The
//! table is bounded: when full, buckets that have refilled completely (idle clients) are
//! forgotten first, then the least recently seen.

use std::collections::HashMap;

/// Bucket size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Requests per second refilled.
    pub per_second: u32,
    /// Most clients tracked at once.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            burst: 40,
            per_second: 20,
            max_clients: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens × 1e9 (nano-tokens), so refill is exact integer arithmetic.
    nanotokens: u128,
    last: u64,
}

/// The buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<String, Bucket>,
}

const NANO: u128 = 1_000_000_000;

impl RateLimiter {
    /// An empty limiter.
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: HashMap::new(),
        }
    }

    fn full(&self) -> u128 {
        u128::from(self.limits.burst.max(1)) * NANO
    }

    /// Takes one request for `key` at `now` (ns): Ok, or Err(seconds until one is allowed).
    pub fn check(&mut self, key: &str, now: u64) -> Result<(), u64> {
        let full = self.full();
        let per_s = u128::from(self.limits.per_second.max(1));
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.limits.max_clients {
            self.evict(now);
        }
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            nanotokens: full,
            last: now,
        });
        let dt = u128::from(now.saturating_sub(b.last));
        b.nanotokens = (b.nanotokens + dt * per_s).min(full);
        b.last = now.max(b.last);
        if b.nanotokens >= NANO {
            b.nanotokens -= NANO;
            Ok(())
        } else {
            let missing = NANO - b.nanotokens;
            let wait_ns = missing.div_ceil(per_s);
            Err(u64::try_from(wait_ns.div_ceil(NANO))
                .unwrap_or(u64::MAX)
                .max(1))
        }
    }

    fn evict(&mut self, now: u64) {
        let full = self.full();
        let per_s = u128::from(self.limits.per_second.max(1));
        self.buckets.retain(|_, b| {
            let refilled = b.nanotokens + u128::from(now.saturating_sub(b.last)) * per_s;
            refilled < full
        });
        if self.buckets.len() >= self.limits.max_clients {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_client() {
        let mut l = RateLimiter::new(Limits {
            burst: 3,
            per_second: 2,
            max_clients: 10,
        });
        for _ in 0..3 {
            assert!(l.check("a", 0).is_ok());
        }
        assert_eq!(l.check("a", 0), Err(1));
        assert!(l.check("b", 0).is_ok(), "another client is not affected");
        assert!(
            l.check("a", 500_000_000).is_ok(),
            "half a second refills one"
        );
        assert!(l.check("a", 500_000_000).is_err());
    }

    #[test]
    fn table_is_bounded() {
        let mut l = RateLimiter::new(Limits {
            burst: 1,
            per_second: 1,
            max_clients: 4,
        });
        for i in 0..100u64 {
            let _ = l.check(&format!("c{i}"), i);
        }
        assert!(l.len() <= 4);
    }
}
