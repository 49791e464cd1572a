//! The ETA of a wave: the scheduler itself run forward on a copy of the wave,
//! every host taking its expected duration and succeeding, under the same
//! budgets, stages, soak and windows (approvals assumed given at once). A
//! halted or paused wave has no ETA: it waits for an operator.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::calendar::Calendar;
use super::scheduler::{HostState, Outcome, Wave};

/// Simulated time gives up a year ahead: a host whose expected duration fits
/// no window would never start.
const HORIZON_MS: i64 = 366 * 24 * 3600 * 1000;

/// When the wave should be over, or None if it cannot be told.
/// `expected[m]` is member m's expected duration; `running_ends` when each
/// host in flight should finish.
pub fn finish_time(
    wave: &Wave,
    calendar: &Calendar,
    expected: &[i64],
    running_ends: &[(usize, i64)],
    now_unix_ms: i64,
) -> Option<i64> {
    if wave.progress.halted.is_some() || wave.progress.paused {
        return None;
    }
    let mut sim = wave.clone();
    sim.policy.approve_stages = false;
    let mut ends: BinaryHeap<Reverse<(i64, usize)>> = running_ends
        .iter()
        .map(|&(m, end)| Reverse((end.max(now_unix_ms), m)))
        .collect();
    let mut t = now_unix_ms;
    while t < now_unix_ms + HORIZON_MS {
        let gate = |m: usize| calendar.closed(t, expected[m]);
        for m in sim.dispatch(t, &gate) {
            ends.push(Reverse((t + expected[m].max(1), m)));
        }
        if sim.is_finished() {
            return Some(t);
        }
        if sim.progress.halted.is_some() {
            return None;
        }
        match ends.pop() {
            Some(Reverse((end, m))) => {
                t = end;
                sim.finish(m, Outcome::Succeeded, t);
                // Everything else ending at the same time, before dispatching again.
                while let Some(Reverse((next, n))) = ends.peek().copied() {
                    if next != t {
                        break;
                    }
                    ends.pop();
                    sim.finish(n, Outcome::Succeeded, t);
                }
            }
            None => {
                // Nothing in flight and nothing may start: soak, or a window.
                let soak_end = sim
                    .progress
                    .stage_done_unix_ms
                    .map(|done| done + sim.policy.soak_ms)
                    .filter(|end| *end > t);
                let next = match soak_end {
                    Some(end) => Some(end),
                    None => calendar.next_opening(t),
                };
                match next {
                    Some(next) if next > t => t = next,
                    _ => return None,
                }
            }
        }
        debug_assert!(sim.states.iter().all(|s| *s != HostState::Running) || !ends.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::wave::scheduler::{Budget, Limit, Member, Policy};

    fn wave(hosts: usize, max_parallel: u32, soak_ms: i64) -> Wave {
        let members = (0..hosts)
            .map(|i| Member {
                host_id: format!("h{i}"),
                labels: BTreeMap::from([("app".to_string(), format!("a{}", i % 2))]),
                concerns: false,
                canary: false,
            })
            .collect();
        Wave::plan(
            Policy {
                canary: 1,
                batches: vec![Limit::Percent(100)],
                max_parallel,
                budgets: vec![Budget {
                    label: "app".into(),
                    limit: Limit::Count(1),
                }],
                stage_errors: Limit::Count(0),
                total_errors: Limit::Count(0),
                soak_ms,
                approve_stages: true,
            },
            members,
        )
    }

    const MIN: i64 = 60_000;

    #[test]
    fn the_eta_follows_budgets_soak_and_windows() {
        // 5 hosts, 2 apps with a budget of 1 each: the canary (10 min), a
        // 5-minute soak, then the other four two at a time (one per app): 35 min.
        let w = wave(5, 10, 5 * MIN);
        let expected = vec![10 * MIN; 5];
        let calendar = Calendar::default();
        assert_eq!(
            finish_time(&w, &calendar, &expected, &[], 0),
            Some(35 * MIN)
        );
        // Every day from 01:00 UTC: starting at midnight waits an hour first.
        let nightly = Calendar {
            windows: vec!["01:00-05:00 UTC".parse().expect("window")],
            freezes: vec![],
        };
        assert_eq!(finish_time(&w, &nightly, &expected, &[], 0), Some(95 * MIN));
        // A host that fits no window: no ETA rather than a wrong one.
        let too_long = vec![5 * 60 * MIN; 5];
        assert_eq!(finish_time(&w, &nightly, &too_long, &[], 0), None);
    }

    #[test]
    fn a_halted_wave_has_no_eta() {
        let mut w = wave(3, 10, 0);
        let started = w.dispatch(0, &|_| None);
        w.finish(started[0], Outcome::RolledBack, 1);
        assert!(w.progress.halted.is_some());
        assert_eq!(
            finish_time(&w, &Calendar::default(), &[MIN; 3], &[], 0),
            None
        );
    }
}
