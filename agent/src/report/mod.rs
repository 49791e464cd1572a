//! Reading what convert2rhel and leapp leave behind. Both tools' exit codes can
//! lie (convert2rhel before 2.1 returns 0 with inhibitors), so the report is the
//! truth. Every finding of either tool is normalised into one [`Finding`].

mod convert2rhel;
mod leapp;

pub use convert2rhel::parse as parse_convert2rhel;
pub use leapp::parse as parse_leapp;

/// Largest report file the agent will read.
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;

pub use mf_core::finding::{Finding, Remediation, Severity, Source};

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
