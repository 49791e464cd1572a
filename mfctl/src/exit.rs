//! mfctl's exit codes, one per kind of outcome, so that scripts can tell a
//! refusal from an outage and a rolled-back job from a held one. The table
//! is in the README and in `mfctl --help`.

/// Why mfctl stopped, when it did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Anything not classified below.
    Error = 1,
    /// The command line is wrong (clap's own code).
    Usage = 2,
    /// A host, job or wave that does not exist.
    NotFound = 3,
    /// The coordinator refused: bad input, or a state that forbids it.
    Refused = 4,
    /// The coordinator cannot be reached or is shutting down.
    Unavailable = 5,
    /// An outcome: blocked at a pre-check (nothing was changed).
    Blocked = 10,
    /// An outcome: failed before anything was changed.
    Failed = 11,
    /// An outcome: a change failed and was rolled back.
    RolledBack = 12,
    /// An outcome: held for an operator.
    Held = 13,
    /// Waited longer than asked.
    Timeout = 14,
}

/// The reader of mfctl's output went away (`| head`): the shell's own
/// convention for a process ended by SIGPIPE, 128 + 13.
pub const BROKEN_PIPE: i32 = 141;

/// The table shown in `mfctl --help`.
pub const TABLE: &str = "Exit codes: 0 success, 1 other error, 2 usage, 3 not found, \
4 refused by the coordinator, 5 coordinator unavailable; outcomes (with --wait): \
10 blocked, 11 failed, 12 rolled back, 13 held, 14 timeout; 141 the reader of the output \
went away (| head).";

/// An error that carries the exit code mfctl ends with.
#[derive(Debug)]
pub struct Exit {
    pub code: ExitCode,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// An error ending mfctl with `code`.
pub fn with_code(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        message: message.into(),
    })
}

/// The code for a gRPC status from the coordinator.
pub fn for_status(code: tonic::Code) -> ExitCode {
    use tonic::Code;
    match code {
        Code::NotFound => ExitCode::NotFound,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::ResourceExhausted => ExitCode::Refused,
        Code::Unavailable | Code::DeadlineExceeded => ExitCode::Unavailable,
        _ => ExitCode::Error,
    }
}

/// The code for a job that ended without success.
pub fn for_job_state(state: i32) -> ExitCode {
    use mf_proto::v1::JobState;
    match JobState::try_from(state) {
        Ok(JobState::Blocked) => ExitCode::Blocked,
        Ok(JobState::Failed) => ExitCode::Failed,
        Ok(JobState::RolledBack) => ExitCode::RolledBack,
        Ok(JobState::Held) => ExitCode::Held,
        _ => ExitCode::Error,
    }
}

/// The code `err` ends mfctl with.
pub fn code_of(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Exit>()
        .map_or(ExitCode::Error, |e| e.code) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_outcomes_map_to_distinct_codes() {
        assert_eq!(for_status(tonic::Code::NotFound) as i32, 3);
        assert_eq!(for_status(tonic::Code::FailedPrecondition) as i32, 4);
        assert_eq!(for_status(tonic::Code::Unavailable) as i32, 5);
        use mf_proto::v1::JobState;
        assert_eq!(for_job_state(JobState::RolledBack.into()) as i32, 12);
        assert_eq!(for_job_state(JobState::Held.into()) as i32, 13);
        assert_eq!(code_of(&with_code(ExitCode::Timeout, "late")), 14);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), 1);
    }
}
