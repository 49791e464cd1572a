//! What an operator asks for when creating a wave, checked once, here, before
//! anything is recorded: the coordinator can make root daemons act on every
//! host, so nothing vague or oversized gets in.

use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, Freeze, Window};
use super::scheduler::{BadLimit, Budget, Limit, Policy};
use crate::job::OnFailure;
use crate::path::Target;
use crate::selector::Selector;

/// Defaults for what the operator leaves out (also in `mfctl wave create --help`).
pub const DEFAULT_BATCHES: &str = "1,5%,25%,100%";
pub const DEFAULT_MAX_PARALLEL: u32 = 50;
pub const DEFAULT_STAGE_ERRORS: &str = "10%";
pub const DEFAULT_TOTAL_ERRORS: &str = "5%";
/// Expected duration of a path nobody has measured yet.
pub const DEFAULT_EXPECTED_SECONDS: u64 = 2 * 3600;
const MAX_RULES: usize = 16;
const MAX_BATCHES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

/// The request as it comes off the wire; empty means "the default".
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub name: String,
    pub selector: String,
    pub target: String,
    pub canary: String,
    pub canary_selector: String,
    pub batches: String,
    pub max_parallel: u32,
    pub budgets: Vec<String>,
    pub stage_errors: String,
    pub total_errors: String,
    pub windows: Vec<String>,
    pub freezes: Vec<String>,
    pub soak_seconds: u64,
    pub approve_stages: bool,
    /// Unset: roll back.
    pub on_failure: Option<OnFailure>,
    pub expected_seconds: u64,
}

/// A checked wave spec, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSpec {
    pub name: String,
    pub selector: Selector,
    pub target: Target,
    /// When set, the canary stage is the selected hosts (else `policy.canary`).
    pub canary_selector: Option<Selector>,
    pub policy: Policy,
    pub calendar: Calendar,
    pub on_failure: OnFailure,
    pub default_expected_ms: i64,
    /// The scope of the operator who created it: the wave takes only hosts
    /// in it, and only operators with that scope (or none) see it.
    #[serde(default)]
    pub scope: Option<Selector>,
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn limit(what: &str, text: &str, default: &str) -> Result<Limit, SpecError> {
    let text = if text.is_empty() { default } else { text };
    text.parse()
        .map_err(|e: BadLimit| SpecError(format!("{what}: {e}")))
}

fn budget(text: &str) -> Result<Budget, SpecError> {
    let (label, value) = text.split_once('=').ok_or_else(|| {
        SpecError(format!(
            "budget {text:?}: write LABEL=LIMIT, e.g. app=1 or dc=10%"
        ))
    })?;
    let label_ok = !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !label_ok {
        return Err(SpecError(format!(
            "budget {text:?}: {label:?} is not a label name"
        )));
    }
    let limit = limit(&format!("budget {label}"), value, "")?;
    if limit == Limit::Count(0) {
        return Err(SpecError(format!(
            "budget {text:?}: a budget of 0 would never start a host with that label"
        )));
    }
    Ok(Budget {
        label: label.to_string(),
        limit,
    })
}

fn at_most<T>(what: &str, items: &[T], max: usize) -> Result<(), SpecError> {
    if items.len() > max {
        return Err(SpecError(format!(
            "at most {max} {what}, not {}",
            items.len()
        )));
    }
    Ok(())
}

impl SpecInput {
    pub fn check(self) -> Result<WaveSpec, SpecError> {
        if !valid_name(&self.name) {
            return Err(SpecError(format!(
                "wave name {:?}: use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit",
                self.name
            )));
        }
        if self.selector.trim().is_empty() {
            return Err(SpecError(
                "a wave needs a selector (use 'os' to select every host that reported one)".into(),
            ));
        }
        let selector =
            Selector::parse(&self.selector).map_err(|e| SpecError(format!("selector: {e}")))?;
        let target: Target = self
            .target
            .parse()
            .map_err(|e: crate::path::PathError| SpecError(e.to_string()))?;
        let canary_selector = match self.canary_selector.trim() {
            "" => None,
            text => {
                let canary = Selector::parse(text)
                    .map_err(|e| SpecError(format!("canary selector: {e}")))?;
                if !self.canary.is_empty() {
                    return Err(SpecError(
                        "give the canary as a count or as a selector, not both".into(),
                    ));
                }
                Some(canary)
            }
        };
        let canary = match self.canary.as_str() {
            "" => 1,
            text => text
                .parse::<u32>()
                .map_err(|_| SpecError(format!("canary {text:?} is not a count of hosts")))?,
        };
        let batches_text = if self.batches.is_empty() {
            DEFAULT_BATCHES
        } else {
            &self.batches
        };
        let batches = batches_text
            .split(',')
            .map(|b| limit("batches", b.trim(), ""))
            .collect::<Result<Vec<_>, _>>()?;
        at_most("batches", &batches, MAX_BATCHES)?;
        if batches.contains(&Limit::Count(0)) {
            return Err(SpecError("batches: a batch of 0 hosts never ends".into()));
        }
        at_most("budgets", &self.budgets, MAX_RULES)?;
        at_most("windows", &self.windows, MAX_RULES)?;
        at_most("freezes", &self.freezes, MAX_RULES)?;
        let budgets = self
            .budgets
            .iter()
            .map(|b| budget(b))
            .collect::<Result<Vec<_>, _>>()?;
        let windows = self
            .windows
            .iter()
            .map(|w| w.parse::<Window>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SpecError(e.to_string()))?;
        let freezes = self
            .freezes
            .iter()
            .map(|f| f.parse::<Freeze>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SpecError(e.to_string()))?;
        let on_failure = self.on_failure.unwrap_or(OnFailure::Rollback);
        let max_parallel = match self.max_parallel {
            0 => DEFAULT_MAX_PARALLEL,
            n @ 1..=100_000 => n,
            n => return Err(SpecError(format!("max-parallel {n} is over 100000"))),
        };
        let week = 7 * 24 * 3600;
        if self.soak_seconds > week || self.expected_seconds > week {
            return Err(SpecError(
                "soak and expected durations are at most a week".into(),
            ));
        }
        let expected = match self.expected_seconds {
            0 => DEFAULT_EXPECTED_SECONDS,
            s => s,
        };
        Ok(WaveSpec {
            name: self.name,
            selector,
            target,
            canary_selector,
            policy: Policy {
                canary,
                batches,
                max_parallel,
                budgets,
                stage_errors: limit("stage errors", &self.stage_errors, DEFAULT_STAGE_ERRORS)?,
                total_errors: limit("total errors", &self.total_errors, DEFAULT_TOTAL_ERRORS)?,
                soak_ms: self.soak_seconds as i64 * 1000,
                approve_stages: self.approve_stages,
            },
            calendar: Calendar { windows, freezes },
            on_failure,
            default_expected_ms: expected as i64 * 1000,
            scope: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SpecInput {
        SpecInput {
            name: "rhel8-batch-1".into(),
            selector: "os=rhel,dc=dc1".into(),
            target: "rhel-8.10".into(),
            ..SpecInput::default()
        }
    }

    #[test]
    fn defaults_fill_what_the_operator_left_out() {
        let spec = input().check().expect("valid");
        assert_eq!(spec.policy.canary, 1);
        assert_eq!(spec.policy.batches.len(), 4);
        assert_eq!(spec.policy.max_parallel, DEFAULT_MAX_PARALLEL);
        assert_eq!(spec.policy.stage_errors, Limit::Percent(10));
        assert_eq!(spec.on_failure, OnFailure::Rollback);
        assert_eq!(spec.default_expected_ms, 7_200_000);
    }

    #[test]
    fn every_part_is_checked_with_a_reason() {
        let cases: Vec<(SpecInput, &str)> = vec![
            (
                SpecInput {
                    name: "Bad Name".into(),
                    ..input()
                },
                "wave name",
            ),
            (
                SpecInput {
                    selector: " ".into(),
                    ..input()
                },
                "needs a selector",
            ),
            (
                SpecInput {
                    selector: "app in (".into(),
                    ..input()
                },
                "selector",
            ),
            (
                SpecInput {
                    target: "rhel-5".into(),
                    ..input()
                },
                "rhel-5",
            ),
            (
                SpecInput {
                    batches: "1,0".into(),
                    ..input()
                },
                "batch of 0",
            ),
            (
                SpecInput {
                    batches: "1,150%".into(),
                    ..input()
                },
                "batches",
            ),
            (
                SpecInput {
                    budgets: vec!["app".into()],
                    ..input()
                },
                "LABEL=LIMIT",
            ),
            (
                SpecInput {
                    budgets: vec!["app=0".into()],
                    ..input()
                },
                "never start",
            ),
            (
                SpecInput {
                    budgets: vec!["a b=1".into()],
                    ..input()
                },
                "not a label",
            ),
            (
                SpecInput {
                    budgets: vec!["app=1".into(); 17],
                    ..input()
                },
                "at most 16 budgets",
            ),
            (
                SpecInput {
                    windows: vec!["sat".into()],
                    ..input()
                },
                "not a window",
            ),
            (
                SpecInput {
                    freezes: vec!["x..y UTC".into()],
                    ..input()
                },
                "not a freeze",
            ),
            (
                SpecInput {
                    max_parallel: 200_000,
                    ..input()
                },
                "over 100000",
            ),
            (
                SpecInput {
                    soak_seconds: 10_000_000,
                    ..input()
                },
                "at most a week",
            ),
            (
                SpecInput {
                    canary: "2".into(),
                    canary_selector: "app=a".into(),
                    ..input()
                },
                "not both",
            ),
            (
                SpecInput {
                    canary: "many".into(),
                    ..input()
                },
                "not a count",
            ),
        ];
        for (case, expected) in cases {
            let error = case.check().expect_err(expected).to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
