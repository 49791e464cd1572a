//! The site's rules for migrations that application owners request
//! (`[self_service]`): each request becomes a wave under these rules, run by
//! the same scheduler as operators' waves, so an owner can choose what and to
//! where, never when or how many at once.

use std::time::Duration;

use mf_core::job::OnFailure;
use mf_core::wave::spec::SpecInput;
use mf_proto::v1 as pb;
use serde::Deserialize;

use crate::wire;

/// `[self_service]`: every key optional; the defaults are a wave's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfServiceConfig {
    /// Maintenance windows, e.g. "sat 22:00-sun 06:00 Europe/Paris".
    #[serde(default)]
    pub windows: Vec<String>,
    /// Change freezes, e.g. "2026-12-20..2027-01-04 Europe/Paris".
    #[serde(default)]
    pub freezes: Vec<String>,
    /// Disruption budgets per label value, e.g. "app=1", "dc=10%".
    #[serde(default)]
    pub budgets: Vec<String>,
    pub max_parallel: Option<u32>,
    /// Stage sizes, e.g. "1,25%,100%".
    pub batches: Option<String>,
    /// The error budgets that halt a request: per stage and in all.
    pub stage_errors: Option<String>,
    pub total_errors: Option<String>,
    /// Time between stages, e.g. "30m".
    pub soak: Option<String>,
    /// "rollback" (the default) or "hold".
    pub on_failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("self_service: {0}")]
pub struct PolicyError(String);

/// The checked rules.
#[derive(Debug, Clone, Default)]
pub struct SelfServicePolicy {
    config: SelfServiceConfig,
    soak: Duration,
    on_failure: Option<OnFailure>,
}

impl SelfServicePolicy {
    /// Checks the rules once, as a wave would be checked, so that a bad
    /// window or budget stops the coordinator at start, not a request later.
    pub fn new(config: SelfServiceConfig) -> Result<Self, PolicyError> {
        let soak = match &config.soak {
            None => Duration::ZERO,
            Some(text) => {
                humantime::parse_duration(text).map_err(|e| PolicyError(format!("soak: {e}")))?
            }
        };
        let on_failure = config
            .on_failure
            .as_deref()
            .map(str::parse::<OnFailure>)
            .transpose()
            .map_err(|e| PolicyError(e.to_string()))?;
        let policy = Self {
            config,
            soak,
            on_failure,
        };
        policy
            .input("check", "app=x", "rhel-8.10")
            .check()
            .map_err(|e| PolicyError(e.to_string()))?;
        Ok(policy)
    }

    fn input(&self, name: &str, selector: &str, target: &str) -> SpecInput {
        let c = &self.config;
        SpecInput {
            name: name.into(),
            selector: selector.into(),
            target: target.into(),
            batches: c.batches.clone().unwrap_or_default(),
            max_parallel: c.max_parallel.unwrap_or_default(),
            budgets: c.budgets.clone(),
            stage_errors: c.stage_errors.clone().unwrap_or_default(),
            total_errors: c.total_errors.clone().unwrap_or_default(),
            windows: c.windows.clone(),
            freezes: c.freezes.clone(),
            soak_seconds: self.soak.as_secs(),
            on_failure: self.on_failure,
            ..SpecInput::default()
        }
    }

    /// The wave an owner's request becomes: no canary stage of its own (the
    /// batches are the site's) and no approvals, which owners cannot give.
    pub fn wave(&self, name: &str, selector: &str, target: &str) -> pb::WaveSpec {
        let input = self.input(name, selector, target);
        pb::WaveSpec {
            name: input.name,
            selector: input.selector,
            target: input.target,
            canary: "0".into(),
            canary_selector: String::new(),
            batches: input.batches,
            max_parallel: input.max_parallel,
            budgets: input.budgets,
            stage_errors: input.stage_errors,
            total_errors: input.total_errors,
            windows: input.windows,
            freezes: input.freezes,
            soak_seconds: input.soak_seconds,
            approve_stages: false,
            on_failure: input
                .on_failure
                .map_or(pb::OnFailure::Unspecified.into(), wire::on_failure_to_wire),
            expected_seconds: 0,
            dry_run: false,
        }
    }

    /// The rules in words, for the answer to a request.
    pub fn describe(&self) -> Vec<String> {
        let c = &self.config;
        let mut rules = Vec::new();
        rules.extend(c.windows.iter().map(|w| format!("window {w}")));
        rules.extend(c.freezes.iter().map(|f| format!("freeze {f}")));
        rules.extend(c.budgets.iter().map(|b| format!("budget {b}")));
        if let Some(n) = c.max_parallel {
            rules.push(format!("at most {n} hosts at once"));
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_rule_is_refused_at_start_and_a_good_one_shapes_every_request() {
        let bad = SelfServiceConfig {
            windows: vec!["someday 25:00-26:00 Mars/Base".into()],
            ..SelfServiceConfig::default()
        };
        let err = SelfServicePolicy::new(bad).expect_err("a bad window");
        assert!(err.to_string().starts_with("self_service: "), "{err}");
        let bad_budget = SelfServiceConfig {
            budgets: vec!["app=0".into()],
            ..SelfServiceConfig::default()
        };
        assert!(SelfServicePolicy::new(bad_budget).is_err());

        let policy = SelfServicePolicy::new(SelfServiceConfig {
            windows: vec!["22:00-06:00 UTC".into()],
            budgets: vec!["app=1".into()],
            max_parallel: Some(5),
            soak: Some("30m".into()),
            on_failure: Some("hold".into()),
            ..SelfServiceConfig::default()
        })
        .expect("valid");
        let spec = policy.wave("req-1", "app=billing", "rhel-8.10");
        assert_eq!(spec.windows, ["22:00-06:00 UTC"]);
        assert_eq!(spec.budgets, ["app=1"]);
        assert_eq!((spec.max_parallel, spec.soak_seconds), (5, 1800));
        assert_eq!(spec.on_failure, i32::from(pb::OnFailure::Hold));
        assert!(!spec.approve_stages);
        assert_eq!(
            policy.describe(),
            [
                "window 22:00-06:00 UTC",
                "budget app=1",
                "at most 5 hosts at once"
            ]
        );
    }
}
