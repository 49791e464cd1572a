//! The blast-radius policy: a wave past the site's limits (hosts,
//! parallelism, error budgets) starts only when a second, different admin
//! starts it too, so that no single operator can launch a fleet-wide change.

use super::scheduler::{Limit, Policy};
use crate::access::Role;

/// The site's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlastRadius {
    pub max_hosts: Option<usize>,
    pub max_parallel: Option<u32>,
    /// Error budgets (stage or total) above this share of the wave.
    pub max_error_percent: Option<u32>,
}

impl BlastRadius {
    /// What of this wave is past the limits, in words; empty when nothing.
    pub fn exceeded(&self, hosts: usize, policy: &Policy) -> Vec<String> {
        let mut over = Vec::new();
        if let Some(max) = self.max_hosts.filter(|max| hosts > *max) {
            over.push(format!("{hosts} hosts (limit {max})"));
        }
        if let Some(max) = self.max_parallel.filter(|max| policy.max_parallel > *max) {
            over.push(format!(
                "max-parallel {} (limit {max})",
                policy.max_parallel
            ));
        }
        if let Some(max) = self.max_error_percent {
            for (what, limit) in [
                ("stage errors", policy.stage_errors),
                ("total errors", policy.total_errors),
            ] {
                let percent = match limit {
                    Limit::Percent(p) => u64::from(p),
                    Limit::Count(n) => u64::from(n) * 100 / (hosts.max(1) as u64),
                };
                if percent > u64::from(max) {
                    over.push(format!("{what} {percent}% of the wave (limit {max}%)"));
                }
            }
        }
        over
    }
}

/// What a start does to a wave past the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondStart {
    /// Within the limits, or the second admin's start: it starts.
    Start,
    /// The first start: recorded; the wave waits for a second admin.
    Recorded,
    /// Refused, with the reason.
    Refused(String),
}

/// Decides a start of a wave whose excess is `over` (empty: within the
/// limits), asked by `who` with `role`, when `first` already asked.
pub fn start(over: &[String], first: Option<&str>, who: &str, role: Role) -> SecondStart {
    if over.is_empty() {
        return SecondStart::Start;
    }
    match first {
        None => SecondStart::Recorded,
        Some(first) if first == who => SecondStart::Refused(format!(
            "the wave is past the blast radius ({}): its start needs a second, different admin \
             (you asked first)",
            over.join(", ")
        )),
        Some(_) if role != Role::Admin => SecondStart::Refused(format!(
            "the wave is past the blast radius ({}): only an admin gives the second start",
            over.join(", ")
        )),
        Some(_) => SecondStart::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_parallel: u32, total: Limit) -> Policy {
        Policy {
            canary: 1,
            batches: vec![Limit::Percent(100)],
            max_parallel,
            budgets: Vec::new(),
            stage_errors: Limit::Count(1),
            total_errors: total,
            soak_ms: 0,
            approve_stages: false,
        }
    }

    #[test]
    fn a_wave_past_any_limit_needs_a_second_different_admin() {
        let limits = BlastRadius {
            max_hosts: Some(1000),
            max_parallel: Some(50),
            max_error_percent: Some(10),
        };
        assert!(
            limits
                .exceeded(1000, &policy(50, Limit::Count(100)))
                .is_empty()
        );
        let over = limits.exceeded(100_000, &policy(100_000, Limit::Percent(100)));
        assert_eq!(over.len(), 3, "{over:?}");
        assert_eq!(over[0], "100000 hosts (limit 1000)");
        assert!(over[2].contains("total errors 100%"), "{over:?}");
        // A count is judged as a share of the wave.
        assert_eq!(limits.exceeded(100, &policy(10, Limit::Count(20))).len(), 1);
        assert_eq!(
            BlastRadius::default().exceeded(1_000_000, &policy(100_000, Limit::Percent(100))),
            Vec::<String>::new()
        );

        assert_eq!(start(&[], None, "ann", Role::Operator), SecondStart::Start);
        assert_eq!(
            start(&over, None, "ann", Role::Operator),
            SecondStart::Recorded
        );
        assert!(
            matches!(start(&over, Some("ann"), "ann", Role::Admin), SecondStart::Refused(r) if r.contains("different admin"))
        );
        assert!(
            matches!(start(&over, Some("ann"), "otto", Role::Operator), SecondStart::Refused(r) if r.contains("only an admin"))
        );
        assert_eq!(
            start(&over, Some("ann"), "ada", Role::Admin),
            SecondStart::Start
        );
    }
}
