//! The retry budget (a token bucket shared by all requests) and full-jitter backoff.
//!
//! Every request earns `budget_ratio` tokens and time earns `budget_floor_per_sec`; a retry
//! spends one. So retries add at most about 20 % to the load (plus a small floor that keeps a
//! quiet run able to retry), and a failing server is not hammered by a retry storm. Waits on
//! 429, on 409 `idempotency_in_flight` and on outages spend nothing: they are not failures.

use std::time::Duration;

use parking_lot::Mutex;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::config::RetryPolicy;

/// The shared retry budget.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    floor_per_sec: f64,
    max: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    /// A budget as `policy` says, starting with one second's floor.
    pub fn new(policy: &RetryPolicy) -> Self {
        let start = policy.budget_floor_per_sec.min(policy.budget_max);
        Self {
            ratio: policy.budget_ratio,
            floor_per_sec: policy.budget_floor_per_sec,
            max: policy.budget_max,
            state: Mutex::new((start, Instant::now())),
        }
    }

    fn refill(&self, s: &mut (f64, Instant)) {
        let now = Instant::now();
        let earned = now.duration_since(s.1).as_secs_f64() * self.floor_per_sec;
        s.0 = (s.0 + earned).min(self.max);
        s.1 = now;
    }

    /// A request is being sent (first attempt): earn its share.
    pub fn deposit(&self) {
        let mut s = self.state.lock();
        self.refill(&mut s);
        s.0 = (s.0 + self.ratio).min(self.max);
    }

    /// Takes one token for a retry; false when the budget is spent.
    pub fn withdraw(&self) -> bool {
        let mut s = self.state.lock();
        self.refill(&mut s);
        // Tolerate float error: 5 × 0.2 tokens make one retry.
        if s.0 >= 1.0 - 1e-9 {
            s.0 = (s.0 - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

/// Full-jitter exponential backoff before retry number `retry` (1, 2, …): uniform in
/// `[0, min(cap, base · 2^(retry-1))]`.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32, rng: &mut ChaCha8Rng) -> Duration {
    let exp = policy.base_backoff.saturating_mul(
        1u32.checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(policy.max_backoff);
    let us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.random_range(0..=us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_of_requests_plus_a_floor() {
        let policy = RetryPolicy {
            budget_ratio: 0.2,
            budget_floor_per_sec: 10.0,
            budget_max: 100.0,
            ..Default::default()
        };
        let b = RetryBudget::new(&policy);
        // One second's floor to start with.
        let n = (0..100).take_while(|_| b.withdraw()).count();
        assert_eq!(n, 10);
        // 50 requests earn 10 retries.
        for _ in 0..50 {
            b.deposit();
        }
        assert_eq!((0..100).take_while(|_| b.withdraw()).count(), 10);
        // Time earns the floor, up to the cap.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!((0..1000).take_while(|_| b.withdraw()).count(), 100);
    }

    #[test]
    fn backoff_is_bounded_jittered_and_seeded() {
        let policy = RetryPolicy::default();
        let mut a = crate::ids::rng(1, &["backoff".into(), "k".into()]);
        let mut b = crate::ids::rng(1, &["backoff".into(), "k".into()]);
        let da: Vec<_> = (1..=40).map(|r| backoff(&policy, r, &mut a)).collect();
        let db: Vec<_> = (1..=40).map(|r| backoff(&policy, r, &mut b)).collect();
        assert_eq!(da, db);
        assert!(da[0] <= Duration::from_millis(50));
        assert!(da[2] <= Duration::from_millis(200));
        assert!(da.iter().all(|d| *d <= Duration::from_secs(5)));
        assert!(da.windows(2).any(|w| w[0] != w[1]));
    }
}
