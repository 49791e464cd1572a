//! Refused enrollments are rate-limited per source and in total, so guessing
//! tokens is slow and a flood of bad attempts costs a map lookup each: once a
//! source (or the whole listener) has used its refusals, its next attempts
//! are refused before the token is read, the store touched or the audit
//! written. Accepted enrollments cost nothing here, so a fleet enrolling
//! from behind one NAT address is not slowed.
//!
//! Sources are counted as [`Source`] says (IPv6 by /64).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mf_core::rate::{PerMinute, TokenBucket};

use crate::clock::SharedClock;
pub use crate::source::Source;

/// How many sources are remembered; beyond it, sources that have refilled
/// are forgotten, and new ones count in the total only.
const MAX_SOURCES: usize = 65_536;
/// The most often the map is swept for refilled sources.
const SWEEP_EVERY_MS: i64 = 1_000;

/// Refusals allowed a minute, per source and in total (each also the burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollLimits {
    pub per_source: PerMinute,
    pub total: PerMinute,
}

impl Default for EnrollLimits {
    /// 30 a minute lets an operator mistype a token a few times and a
    /// misconfigured host retry; 600 in total caps the refusals written to
    /// the audit at 10 a second whatever the number of sources.
    fn default() -> Self {
        Self {
            per_source: PerMinute(30),
            total: PerMinute(600),
        }
    }
}

/// Why an attempt was refused unread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error(
        "too many refused enrollments from {from} ({limit} a minute): try again in {} s",
        seconds(*retry_after_ms)
    )]
    Source {
        from: Source,
        limit: u32,
        retry_after_ms: i64,
        /// The first attempt refused since the limit engaged: the one audited.
        first: bool,
    },
    #[error(
        "too many refused enrollments on this coordinator ({limit} a minute from all sources): \
         try again in {} s",
        seconds(*retry_after_ms)
    )]
    Total {
        limit: u32,
        retry_after_ms: i64,
        first: bool,
    },
}

impl Limited {
    pub fn first(&self) -> bool {
        match self {
            Self::Source { first, .. } | Self::Total { first, .. } => *first,
        }
    }
}

fn seconds(ms: i64) -> i64 {
    (ms.max(1) + 999) / 1000
}

#[derive(Debug)]
struct Bucket {
    bucket: TokenBucket,
    /// Whether an attempt was already refused since it ran dry.
    engaged: bool,
}

impl Bucket {
    fn new(rate: PerMinute, now_ms: i64) -> Self {
        Self {
            bucket: TokenBucket::new(rate, now_ms),
            engaged: false,
        }
    }

    /// `Some((wait, first))` when dry.
    fn check(&mut self, now_ms: i64) -> Option<(i64, bool)> {
        if self.bucket.has_token(now_ms) {
            self.engaged = false;
            return None;
        }
        let first = !self.engaged;
        self.engaged = true;
        Some((self.bucket.wait_ms(), first))
    }
}

#[derive(Debug)]
struct State {
    sources: HashMap<Source, Bucket>,
    total: Bucket,
    swept_ms: i64,
}

/// Shared by every enrollment call on the agent listener.
#[derive(Debug, Clone)]
pub struct EnrollLimiter {
    limits: EnrollLimits,
    clock: SharedClock,
    state: Arc<Mutex<State>>,
}

impl EnrollLimiter {
    pub fn new(limits: EnrollLimits, clock: SharedClock) -> Self {
        let now = clock.now_unix_ms();
        Self {
            limits,
            state: Arc::new(Mutex::new(State {
                sources: HashMap::new(),
                total: Bucket::new(limits.total, now),
                swept_ms: now,
            })),
            clock,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters only: one a panic left half-updated is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt from `source` may be read at all.
    pub fn admit(&self, source: Source) -> Result<(), Limited> {
        let now = self.clock.now_unix_ms();
        let mut state = self.state();
        if let Some(bucket) = state.sources.get_mut(&source)
            && let Some((retry_after_ms, first)) = bucket.check(now)
        {
            return Err(Limited::Source {
                from: source,
                limit: self.limits.per_source.0,
                retry_after_ms,
                first,
            });
        }
        if let Some((retry_after_ms, first)) = state.total.check(now) {
            return Err(Limited::Total {
                limit: self.limits.total.0,
                retry_after_ms,
                first,
            });
        }
        Ok(())
    }

    /// Counts a refusal against its source and the total.
    pub fn refused(&self, source: Source) {
        let now = self.clock.now_unix_ms();
        let mut state = self.state();
        state.total.bucket.charge(now);
        if !state.sources.contains_key(&source) && state.sources.len() >= MAX_SOURCES {
            if now - state.swept_ms < SWEEP_EVERY_MS {
                return;
            }
            state.swept_ms = now;
            state.sources.retain(|_, b| !b.bucket.is_full(now));
            if state.sources.len() >= MAX_SOURCES {
                return;
            }
        }
        let rate = self.limits.per_source;
        state
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::new(rate, now))
            .bucket
            .charge(now);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.state().sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn limiter(per_source: u32, total: u32) -> (EnrollLimiter, ManualClock) {
        let clock = ManualClock::at(1_000_000);
        let limits = EnrollLimits {
            per_source: PerMinute(per_source),
            total: PerMinute(total),
        };
        (EnrollLimiter::new(limits, Arc::new(clock.clone())), clock)
    }

    fn ip(text: &str) -> Source {
        Source::of(Some(text.parse().expect("an address")))
    }

    #[test]
    fn a_source_out_of_refusals_is_refused_unread_until_it_refills() {
        let (limiter, clock) = limiter(3, 1000);
        let attacker = ip("127.0.0.2");
        for _ in 0..3 {
            assert_eq!(limiter.admit(attacker), Ok(()));
            limiter.refused(attacker);
        }
        let refused = limiter.admit(attacker).expect_err("limited");
        assert!(refused.first());
        assert_eq!(
            refused.to_string(),
            "too many refused enrollments from 127.0.0.2 (3 a minute): try again in 20 s"
        );
        // Only the first refusal after the limit engaged is the one audited.
        assert!(!limiter.admit(attacker).expect_err("limited").first());
        // Other sources are not affected.
        assert_eq!(limiter.admit(ip("127.0.0.3")), Ok(()));
        clock.advance(Duration::from_secs(20));
        assert_eq!(limiter.admit(attacker), Ok(()));
        limiter.refused(attacker);
        assert!(limiter.admit(attacker).expect_err("limited again").first());
    }

    #[test]
    fn accepted_enrollments_cost_nothing() {
        let (limiter, _clock) = limiter(1, 1);
        let nat = ip("127.0.0.9");
        for _ in 0..10_000 {
            assert_eq!(limiter.admit(nat), Ok(()));
        }
    }

    #[test]
    fn the_total_limits_a_flood_from_many_sources() {
        let (limiter, clock) = limiter(30, 5);
        for last in 1..=5u8 {
            let source = Source::V4([127, 0, 1, last]);
            assert_eq!(limiter.admit(source), Ok(()));
            limiter.refused(source);
        }
        let fresh = ip("127.0.2.1");
        let refused = limiter.admit(fresh).expect_err("the total is used up");
        assert!(
            matches!(refused, Limited::Total { limit: 5, .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("from all sources"),
            "{refused}"
        );
        clock.advance(Duration::from_secs(12));
        assert_eq!(limiter.admit(fresh), Ok(()));
    }

    #[test]
    fn ipv6_sources_count_by_their_64_block_and_mapped_v4_as_v4() {
        let (limiter, _clock) = limiter(2, 1000);
        limiter.refused(ip("2001:db8:1:2::1"));
        limiter.refused(ip("2001:db8:1:2:ffff::9"));
        let refused = limiter.admit(ip("2001:db8:1:2::77")).expect_err("same /64");
        assert!(
            refused.to_string().contains("2001:db8:1:2::/64"),
            "{refused}"
        );
        assert_eq!(limiter.admit(ip("2001:db8:1:3::1")), Ok(()));
        assert_eq!(ip("::ffff:127.0.0.5"), ip("127.0.0.5"));
    }

    #[test]
    fn the_remembered_sources_are_bounded() {
        let (limiter, clock) = limiter(30, u32::MAX);
        for n in 0..(MAX_SOURCES as u32 + 100) {
            limiter.refused(Source::V4(n.to_be_bytes()));
        }
        assert_eq!(limiter.remembered(), MAX_SOURCES);
        // Once they refill, a sweep forgets them and makes room.
        clock.advance(Duration::from_secs(61));
        limiter.refused(ip("127.0.0.1"));
        assert_eq!(limiter.remembered(), 1);
    }
}
