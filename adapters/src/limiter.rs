//! Per-environment request pacing: at most `concurrency` requests in flight and at most
//! `per_second` started per second (evenly spaced), so a sync never floods a customer's instance.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How hard one environment may be called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub per_second: f64,
    pub concurrency: u32,
    /// One request's time limit (connect to last byte).
    pub timeout: Duration,
    /// Tries per request for transient failures (429, 5xx, network), at least 1.
    pub tries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            tries: 4,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Limiter {
    slots: Semaphore,
    spacing: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        let per_second = if limits.per_second.is_finite() && limits.per_second > 0.0 {
            limits.per_second
        } else {
            1.0
        };
        Self {
            slots: Semaphore::new(limits.concurrency.max(1) as usize),
            spacing: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for a slot and for this request's turn; the permit ends the request's slot.
    pub(crate) async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .slots
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the limiter's semaphore is never closed"));
        let turn = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let turn = (*next).max(now);
            *next = turn + self.spacing;
            turn
        };
        tokio::time::sleep_until(turn).await;
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_rate() {
        let limiter = Limiter::new(&Limits {
            per_second: 10.0,
            ..Limits::default()
        });
        let start = Instant::now();
        for _ in 0..5 {
            drop(limiter.acquire().await);
        }
        // The first goes at once, the next four 100 ms apart.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let limiter = Limiter::new(&Limits {
            per_second: 1000.0,
            concurrency: 2,
            ..Limits::default()
        });
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let third = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
        assert!(third.is_err(), "a third request must wait for a slot");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
        assert!(third.is_ok());
    }
}
