//! Per-token rate and concurrency limits for client ACL tokens.
//!
//! Each token has a bucket of `burst` requests refilled at `rate_per_sec`, and at most
//! `concurrency` requests in flight (an open event stream counts until it closes). A
//! request over either limit is answered 429 with `Retry-After`. The cluster token (the
//! operator's bootstrap credential, which the workers, `drover up` and the benchmarks
//! use), the worker endpoint and the servers' routes are not limited: the limits are
//! for the many clients an admin hands tokens to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits every ACL token gets (server settings; 0 turns a limit off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLimits {
    pub rate_per_sec: u32,
    pub burst: u32,
    pub concurrency: u32,
}

impl Default for TokenLimits {
    /// Far above what a person or a script sends, so only a runaway client meets them.
    fn default() -> TokenLimits {
        TokenLimits {
            rate_per_sec: 200,
            burst: 400,
            concurrency: 64,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    /// The token's bucket is empty: the next request fits after this long.
    Rate { retry_after: Duration },
    /// The token has `concurrency` requests in flight.
    Concurrency,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: u32,
}

/// The buckets of every token seen (one small entry per token; tokens are few).
#[derive(Debug)]
pub struct TokenLimiter {
    limits: TokenLimits,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

/// A request in flight: counted until dropped.
#[derive(Debug)]
pub struct InFlight {
    limiter: Arc<TokenLimiter>,
    token: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut buckets = self.limiter.lock();
        if let Some(b) = buckets.get_mut(&self.token) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

impl TokenLimiter {
    pub fn new(limits: TokenLimits) -> Arc<TokenLimiter> {
        Arc::new(TokenLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Bucket>> {
        // A panic elsewhere while holding it leaves only counters behind: go on.
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one request of `token`'s allowance at `now`, or says why not.
    pub fn admit(self: &Arc<Self>, token: u64, now: Instant) -> Result<InFlight, Refusal> {
        let TokenLimits {
            rate_per_sec,
            burst,
            concurrency,
        } = self.limits;
        let mut buckets = self.lock();
        let b = buckets.entry(token).or_insert(Bucket {
            tokens: burst as f64,
            at: now,
            in_flight: 0,
        });
        if concurrency > 0 && b.in_flight >= concurrency {
            return Err(Refusal::Concurrency);
        }
        if rate_per_sec > 0 {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            let cap = burst.max(1) as f64;
            b.tokens = (b.tokens + elapsed * rate_per_sec as f64).min(cap);
            b.at = now;
            if b.tokens < 1.0 {
                let wait = (1.0 - b.tokens) / rate_per_sec as f64;
                return Err(Refusal::Rate {
                    retry_after: Duration::from_secs_f64(wait),
                });
            }
            b.tokens -= 1.0;
        }
        b.in_flight += 1;
        Ok(InFlight {
            limiter: self.clone(),
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait_for_the_refill() {
        let l = TokenLimiter::new(TokenLimits {
            rate_per_sec: 10,
            burst: 3,
            concurrency: 0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(l.admit(1, t0).unwrap());
        }
        match l.admit(1, t0) {
            Err(Refusal::Rate { retry_after }) => {
                assert!(retry_after > Duration::from_millis(90), "{retry_after:?}");
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        // Another token has its own bucket.
        assert!(l.admit(2, t0).is_ok());
        // 100 ms later one more fits, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.admit(1, t1).is_ok());
        assert!(l.admit(1, t1).is_err());
    }

    #[test]
    fn concurrency_counts_requests_until_they_end() {
        let l = TokenLimiter::new(TokenLimits {
            rate_per_sec: 0,
            burst: 0,
            concurrency: 2,
        });
        let now = Instant::now();
        let a = l.admit(1, now).unwrap();
        let _b = l.admit(1, now).unwrap();
        assert_eq!(l.admit(1, now).unwrap_err(), Refusal::Concurrency);
        drop(a);
        assert!(l.admit(1, now).is_ok());
    }
}
