//! A finding, the same shape whichever tool raised it (convert2rhel, leapp, or
//! the agent's own checks), and the limits a reported finding must keep.

use serde::{Deserialize, Serialize};

/// Who raised a finding: one of the tools, or the agent's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Convert2rhel,
    Leapp,
    Agent,
}

closed_set!(Source, "a finding source", {
    Source::Convert2rhel => "convert2rhel",
    Source::Leapp => "leapp",
    Source::Agent => "agent",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Remediation {
    Hint(String),
    Command(Vec<String>),
    Playbook(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub source: Source,
    /// Stable across runs and hosts: what the fleet view aggregates on.
    pub key: String,
    pub severity: Severity,
    /// Whether the migration cannot proceed while this finding stands.
    pub blocking: bool,
    pub title: String,
    pub summary: String,
    pub remediations: Vec<Remediation>,
}

/// Limits on what an agent may report; far above any real report.
pub const MAX_FINDINGS: usize = 512;
const MAX_TEXT: usize = 16 * 1024;
const MAX_SHORT: usize = 1024;
const MAX_KEY: usize = 256;
const MAX_ARGV: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid finding: {0}")]
pub struct InvalidFinding(pub String);

fn bounded(field: &str, text: &str, max: usize) -> Result<(), InvalidFinding> {
    if text.len() > max {
        return Err(InvalidFinding(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    Ok(())
}

impl Finding {
    /// Checks every limit of a finding an agent reported.
    pub fn validate(&self) -> Result<(), InvalidFinding> {
        if self.key.is_empty() {
            return Err(InvalidFinding("a finding has no key".into()));
        }
        bounded("a finding key", &self.key, MAX_KEY)?;
        bounded("a finding title", &self.title, MAX_SHORT)?;
        bounded("a finding summary", &self.summary, MAX_TEXT)?;
        if self.remediations.len() > MAX_ARGV {
            return Err(InvalidFinding("too many remediations".into()));
        }
        for remediation in &self.remediations {
            match remediation {
                Remediation::Hint(h) => bounded("a hint", h, MAX_TEXT)?,
                Remediation::Playbook(p) => bounded("a playbook", p, MAX_TEXT)?,
                Remediation::Command(argv) => {
                    if argv.len() > MAX_ARGV {
                        return Err(InvalidFinding("a remediation command is too long".into()));
                    }
                    for arg in argv {
                        bounded("a command argument", arg, MAX_SHORT)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            source: Source::Leapp,
            key: "k".into(),
            severity: Severity::High,
            blocking: true,
            title: "t".into(),
            summary: "s".into(),
            remediations: vec![Remediation::Command(vec!["leapp".into(), "answer".into()])],
        }
    }

    #[test]
    fn findings_breaking_a_limit_are_refused_with_the_reason() {
        assert_eq!(finding().validate(), Ok(()));
        let mut bad = finding();
        bad.key.clear();
        assert!(bad.validate().expect_err("no key").0.contains("no key"));
        let mut bad = finding();
        bad.summary = "x".repeat(MAX_TEXT + 1);
        assert!(bad.validate().expect_err("long").0.contains("summary"));
        let mut bad = finding();
        bad.remediations = vec![Remediation::Command(vec!["x".repeat(MAX_SHORT + 1)])];
        assert!(bad.validate().expect_err("argv").0.contains("argument"));
        let unknown = "shell".parse::<Source>().expect_err("not a source");
        assert_eq!(
            unknown.to_string(),
            "a finding source is one of convert2rhel, leapp, agent, not \"shell\""
        );
    }
}
