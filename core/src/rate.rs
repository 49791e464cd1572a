//! A token bucket: `per_minute` tokens that refill evenly over a minute, so
//! a burst of up to `per_minute` passes and then one per `60 s / per_minute`.
//! Time is an argument (milliseconds), which is what makes the limiter
//! testable to the millisecond without sleeping.

/// How many events a minute a bucket lets through (also its burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMinute(pub u32);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    /// Tokens per millisecond.
    refill: f64,
    tokens: f64,
    updated_ms: i64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: PerMinute, now_ms: i64) -> Self {
        let capacity = f64::from(rate.0);
        Self {
            capacity,
            refill: capacity / 60_000.0,
            tokens: capacity,
            updated_ms: now_ms,
        }
    }

    fn refill_to(&mut self, now_ms: i64) {
        // A clock that steps back refills nothing rather than draining.
        let elapsed = (now_ms - self.updated_ms).max(0);
        self.tokens = (self.tokens + elapsed as f64 * self.refill).min(self.capacity);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Whether a token is there to take, without taking it.
    pub fn has_token(&mut self, now_ms: i64) -> bool {
        self.refill_to(now_ms);
        self.tokens >= 1.0
    }

    /// Takes a token; `Err` carries how long until one is back (ms).
    pub fn take(&mut self, now_ms: i64) -> Result<(), i64> {
        self.refill_to(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_ms())
        }
    }

    /// Takes a token even when none is left (the debt delays the next one),
    /// for events already paid for, such as a refusal that happened.
    pub fn charge(&mut self, now_ms: i64) {
        self.refill_to(now_ms);
        self.tokens = (self.tokens - 1.0).max(-self.capacity);
    }

    /// Milliseconds until a whole token is back; 0 when one is there.
    pub fn wait_ms(&self) -> i64 {
        if self.tokens >= 1.0 {
            return 0;
        }
        if self.refill <= 0.0 {
            return i64::MAX;
        }
        ((1.0 - self.tokens) / self.refill).ceil() as i64
    }

    /// Whether it has refilled completely (it remembers nothing then).
    pub fn is_full(&mut self, now_ms: i64) -> bool {
        self.refill_to(now_ms);
        self.tokens >= self.capacity
    }

    /// `per_second` tokens a second, at most `burst` kept: a budget of work
    /// rather than of calls.
    pub fn per_second(per_second: u32, burst: u32, now_ms: i64) -> Self {
        Self {
            capacity: f64::from(burst.max(1)),
            refill: f64::from(per_second) / 1000.0,
            tokens: f64::from(burst.max(1)),
            updated_ms: now_ms,
        }
    }

    /// Takes `n` tokens (at most the capacity), or says in how many
    /// milliseconds there will be enough.
    pub fn take_n(&mut self, n: u32, now_ms: i64) -> Result<(), i64> {
        self.refill_to(now_ms);
        let n = f64::from(n).min(self.capacity);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        if self.refill <= 0.0 {
            return Err(i64::MAX);
        }
        Err(((n - self.tokens) / self.refill).ceil() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_token_per_period() {
        let mut bucket = TokenBucket::new(PerMinute(3), 0);
        assert_eq!(bucket.take(0), Ok(()));
        assert_eq!(bucket.take(0), Ok(()));
        assert_eq!(bucket.take(0), Ok(()));
        // 3 a minute: one every 20 s.
        assert_eq!(bucket.take(0), Err(20_000));
        assert_eq!(bucket.take(19_999), Err(1));
        assert_eq!(bucket.take(20_000), Ok(()));
        assert_eq!(bucket.take(20_000), Err(20_000));
        assert!(!bucket.is_full(59_999));
        assert!(bucket.is_full(80_000));
        // Never more than the burst, however long it rested.
        let mut rested = 0;
        while bucket.take(10_000_000).is_ok() {
            rested += 1;
        }
        assert_eq!(rested, 3);
    }

    #[test]
    fn charges_run_into_debt_that_delays_the_next_token() {
        let mut bucket = TokenBucket::new(PerMinute(60), 0);
        for _ in 0..60 {
            bucket.charge(0);
        }
        assert!(!bucket.has_token(0));
        assert_eq!(bucket.wait_ms(), 1_000);
        for _ in 0..10 {
            bucket.charge(0);
        }
        assert_eq!(bucket.wait_ms(), 11_000);
        assert!(!bucket.has_token(10_999));
        assert!(bucket.has_token(11_000));
        // Debt is capped at one burst, so a flood cannot lock a source out for hours.
        for _ in 0..10_000 {
            bucket.charge(11_000);
        }
        assert_eq!(bucket.wait_ms(), 61_000);
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let mut bucket = TokenBucket::new(PerMinute(1), 100_000);
        assert_eq!(bucket.take(100_000), Ok(()));
        assert!(!bucket.has_token(0));
        assert!(!bucket.has_token(100_000));
        assert!(bucket.has_token(160_000));
    }

    #[test]
    fn a_zero_rate_never_lets_anything_through() {
        let mut bucket = TokenBucket::new(PerMinute(0), 0);
        assert_eq!(bucket.take(1_000_000), Err(i64::MAX));
    }

    #[test]
    fn a_work_budget_takes_many_tokens_at_once_and_says_when_there_are_enough() {
        let mut bucket = TokenBucket::per_second(1000, 500, 0);
        assert_eq!(bucket.take_n(500, 0), Ok(()));
        // Empty: 100 tokens come back in 100 ms.
        assert_eq!(bucket.take_n(100, 0), Err(100));
        assert_eq!(bucket.take_n(100, 50), Err(50));
        assert_eq!(bucket.take_n(100, 100), Ok(()));
        // More than it can ever hold costs the whole of it, not forever.
        assert_eq!(bucket.take_n(10_000, 600), Ok(()));
        assert_eq!(bucket.take_n(1, 600), Err(1));
    }
}
