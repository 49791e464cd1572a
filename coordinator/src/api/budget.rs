//! The API's share of the coordinator: host records read per second, across
//! every caller. A list costs the hosts it may return, one host a few; past
//! the budget a call waits its turn (at most 10 s, then 429 with
//! Retry-After), so that portals can never take the CPU the inventory task
//! needs to drive waves. Callers are served in the order they came (a fair
//! queue): a call waits for those before it, never for luck.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use axum::http::StatusCode;
use mf_core::rate::TokenBucket;

use super::problem::Problem;

/// What reading one host with its findings and job costs, in host records.
pub const ONE_HOST: u32 = 20;
/// A call waits at most this long for its share.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The default: about a tenth of a core on this project's benchmark machine.
pub const DEFAULT_PER_SECOND: u32 = 10_000;

#[derive(Debug)]
pub struct ReadBudget {
    bucket: Mutex<TokenBucket>,
    /// The queue: tokio's mutex hands itself over first come, first served.
    turn: tokio::sync::Mutex<()>,
    epoch: Instant,
}

impl ReadBudget {
    /// `per_second` host records a second, a second's worth saved at most.
    pub fn new(per_second: u32) -> Self {
        Self {
            bucket: Mutex::new(TokenBucket::per_second(per_second, per_second, 0)),
            turn: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Waits until `cost` host records may be read, or refuses.
    pub async fn spend(&self, cost: u32) -> Result<(), Problem> {
        let deadline = Instant::now() + MAX_WAIT;
        let busy = || {
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                "the API's read budget is spent (api_reads_per_second): try again shortly",
            );
            problem.retry_after = Some(MAX_WAIT.as_secs());
            problem
        };
        let Ok(_turn) = tokio::time::timeout(MAX_WAIT, self.turn.lock()).await else {
            return Err(busy());
        };
        loop {
            let wait_ms = {
                let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                match bucket.take_n(cost, self.now_ms()) {
                    Ok(()) => return Ok(()),
                    Err(wait) => wait,
                }
            };
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX));
            if Instant::now() + wait > deadline {
                let mut problem = busy();
                problem.retry_after = Some(wait.as_secs().max(1));
                return Err(problem);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tokio's clock, paused: the waits pass without the test waiting them.
    #[tokio::test(start_paused = true)]
    async fn calls_past_the_budget_wait_their_turn_then_are_refused_with_when_to_retry() {
        let budget = std::sync::Arc::new(ReadBudget::new(1000));
        budget.spend(1000).await.expect("the first second's worth");
        let started = Instant::now();
        budget.spend(100).await.expect("waits a tenth of a second");
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        // Fifteen callers of a second's worth each, in line: those that
        // would wait more than 10 s for their turn are refused.
        let started = Instant::now();
        let callers: Vec<_> = (0..15)
            .map(|_| {
                let budget = std::sync::Arc::clone(&budget);
                tokio::spawn(async move { budget.spend(1000).await })
            })
            .collect();
        let mut served = 0;
        let mut refused = Vec::new();
        for caller in callers {
            match caller.await.expect("a caller") {
                Ok(()) => served += 1,
                Err(problem) => refused.push(problem),
            }
        }
        assert_eq!(served, 10, "one a second for ten seconds");
        assert_eq!(refused.len(), 5);
        assert!(refused.iter().all(|p| p.status == 429));
        assert!(
            refused
                .iter()
                .all(|p| p.retry_after.is_some_and(|s| s >= 1))
        );
        assert!(started.elapsed() <= MAX_WAIT + Duration::from_millis(100));
    }
}
