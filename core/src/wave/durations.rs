//! How long a migration path takes, measured: the time from start to commit of
//! the jobs that succeeded on that path (the sum of their phases, reboots
//! included). The estimate is the 90th percentile of the latest samples, so a
//! window is not planned on a lucky average.

use std::collections::{HashMap, VecDeque};

use crate::job::{Job, JobState};
use crate::path::Step;

const SAMPLES: usize = 64;

/// The name of a path, e.g. "convert2rhel to 7.9, then leapp to 8.10".
pub fn path_key(steps: &[Step]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", then ")
}

#[derive(Debug, Clone, Default)]
pub struct Durations {
    by_path: HashMap<String, VecDeque<i64>>,
}

impl Durations {
    /// Takes a finished job into account; only successes measure a path.
    pub fn record(&mut self, job: &Job) {
        if job.state != JobState::Succeeded {
            return;
        }
        let Some(end) = job.timeline.last().map(|e| e.at_unix_ms) else {
            return;
        };
        let samples = self.by_path.entry(path_key(&job.steps)).or_default();
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((end - job.created_unix_ms).max(0));
    }

    /// The expected duration of a path and how many samples it rests on.
    pub fn estimate(&self, path: &str) -> Option<(i64, usize)> {
        let samples = self.by_path.get(path).filter(|s| !s.is_empty())?;
        let mut sorted: Vec<i64> = samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = (sorted.len() * 9).div_ceil(10).max(1) - 1;
        Some((sorted[rank], sorted.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{self, OnFailure};
    use crate::path::{Target, Tool};

    fn job(state: JobState, took_ms: i64) -> Job {
        let step = Step {
            tool: Tool::Leapp,
            to: Target {
                major: 8,
                minor: 10,
            },
        };
        let target = step.to;
        let mut job = job::start(
            "j".into(),
            "h".into(),
            target,
            vec![step],
            OnFailure::Rollback,
            1_000,
        );
        job.state = state;
        job.timeline.push(job::TimelineEntry {
            at_unix_ms: 1_000 + took_ms,
            text: "done".into(),
        });
        job
    }

    #[test]
    fn the_estimate_is_the_90th_percentile_of_successes() {
        let mut durations = Durations::default();
        for minutes in 1..=10 {
            durations.record(&job(JobState::Succeeded, minutes * 60_000));
        }
        durations.record(&job(JobState::RolledBack, 999 * 60_000));
        assert_eq!(durations.estimate("leapp to 8.10"), Some((9 * 60_000, 10)));
        assert_eq!(durations.estimate("convert2rhel to 7.9"), None);
    }
}
