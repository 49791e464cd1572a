//! Reading what convert2rhel and leapp leave behind. Both tools' exit codes can
//! lie (convert2rhel before 2.1 returns 0 with inhibitors), so the report is the
//! truth. Every finding of either tool is normalised into one [`Finding`].

mod convert2rhel;
mod leapp;

pub use convert2rhel::parse as parse_convert2rhel;
pub use leapp::parse as parse_leapp;

use serde::{Deserialize, Serialize};

/// Largest report file the agent will read.
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;

/// Who raised a finding: one of the tools, or the agent's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Convert2rhel,
    Leapp,
    Agent,
}

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
    /// Text for a person.
    Hint(String),
    /// A command line, as argv.
    Command(Vec<String>),
    /// An Ansible playbook the tool suggests, by name or content.
    Playbook(String),
}

/// One finding, the same shape whichever tool raised it.
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

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the report is larger than {MAX_REPORT_BYTES} bytes")]
    TooLarge,
    #[error("the report is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the report is invalid: {0}")]
    Invalid(String),
}

fn check_size(bytes: &[u8]) -> Result<(), ReportError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ReportError::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod fuzz;
