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

/// Cuts `text` to at most `max` bytes on a character boundary, saying so.
pub(crate) fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let note = format!(" [cut from {} bytes]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&note);
}

impl Finding {
    /// The finding within the limits an agent may report, cut where a tool
    /// wrote more (a summary listing every package of a large host): an
    /// update over them would be refused whole, and the pre-check with it.
    pub fn fitted(mut self) -> Self {
        cut(&mut self.key, MAX_KEY);
        cut(&mut self.title, MAX_SHORT);
        cut(&mut self.summary, MAX_TEXT);
        self.remediations.truncate(MAX_ARGV);
        for remediation in &mut self.remediations {
            match remediation {
                Remediation::Hint(text) | Remediation::Playbook(text) => cut(text, MAX_TEXT),
                Remediation::Command(argv) => {
                    argv.truncate(MAX_ARGV);
                    argv.iter_mut().for_each(|arg| cut(arg, MAX_SHORT));
                }
            }
        }
        self
    }
}

/// Findings within the limits: each one fitted and, past `MAX_FINDINGS`,
/// the blocking ones kept first and the rest counted in a last finding.
pub fn fitted(findings: Vec<Finding>) -> Vec<Finding> {
    let mut findings: Vec<Finding> = findings.into_iter().map(Finding::fitted).collect();
    if findings.len() > MAX_FINDINGS {
        findings.sort_by_key(|f| (!f.blocking, std::cmp::Reverse(f.severity)));
        let left_out = findings.len() - (MAX_FINDINGS - 1);
        findings.truncate(MAX_FINDINGS - 1);
        findings.push(Finding {
            source: Source::Agent,
            key: "agent::findings-left-out".into(),
            severity: Severity::Info,
            blocking: false,
            title: format!("{left_out} more findings left out"),
            summary: format!(
                "The report holds more than {MAX_FINDINGS} findings; the blocking and most \
                 severe are kept. The whole report is on the host."
            ),
            remediations: Vec::new(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_over_the_limits_are_cut_to_them_and_say_so() {
        let mut long = finding();
        long.key = "k".repeat(300);
        long.title = "é".repeat(600);
        long.summary = "package-1.0-1.el7.x86_64 ".repeat(2000);
        long.remediations = vec![
            Remediation::Command(vec!["x".repeat(2000); 70]),
            Remediation::Hint("h".repeat(20_000)),
        ];
        long.remediations
            .extend(vec![Remediation::Playbook("p".into()); 70]);
        assert!(long.validate().is_err());
        let fitted = long.clone().fitted();
        assert_eq!(fitted.validate(), Ok(()));
        assert!(
            fitted
                .summary
                .ends_with(&format!(" [cut from {} bytes]", long.summary.len()))
        );
        assert!(
            fitted
                .summary
                .starts_with("package-1.0-1.el7.x86_64 package")
        );
        assert!(fitted.title.len() <= MAX_SHORT && fitted.title.starts_with("éé"));
        assert_eq!(fitted.remediations.len(), MAX_ARGV);
        let within = finding();
        assert_eq!(
            within.clone().fitted(),
            within,
            "a finding within the limits is kept whole"
        );
    }

    #[test]
    fn past_the_most_findings_the_blocking_ones_stay_and_the_rest_are_counted() {
        let many: Vec<Finding> = (0..600)
            .map(|i| Finding {
                key: format!("k{i}"),
                blocking: i % 100 == 99,
                severity: if i % 2 == 0 {
                    Severity::Low
                } else {
                    Severity::Medium
                },
                ..finding()
            })
            .collect();
        let kept = fitted(many);
        assert_eq!(kept.len(), MAX_FINDINGS);
        assert_eq!(kept.iter().filter(|f| f.blocking).count(), 6);
        let last = kept.last().expect("a last finding");
        assert_eq!(last.key, "agent::findings-left-out");
        assert_eq!(last.title, "89 more findings left out");
        // Then the 294 other medium ones, then low ones until the limit.
        assert!(kept[6..300].iter().all(|f| f.severity == Severity::Medium));
        assert!(
            kept[300..MAX_FINDINGS - 1]
                .iter()
                .all(|f| f.severity == Severity::Low)
        );
        let few = vec![finding(); 3];
        assert_eq!(fitted(few.clone()), few);
    }

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
