//! How the agent calls leapp: the command line (always report schema 1.2.0,
//! the only one whose report shows actor errors), the answers a site gives to
//! leapp's dialogs (`leapp answer --section dialog.option=value --add` before
//! each run), and how long verification waits for FirstBoot.

use std::time::Duration;

use mf_core::path::Target;

use super::subscription::LeappContent;
use crate::host::Host;

/// The report schema asked for: 1.1.0 (leapp's default) drops the `error`
/// group, so an actor error would read as a harmless high-severity entry.
pub const REPORT_SCHEMA: &str = "1.2.0";

/// One answer to a leapp dialog, `dialog.option=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub dialog: String,
    pub option: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leapp answer {0:?}: {1}")]
pub struct BadAnswer(pub String, pub &'static str);

impl std::str::FromStr for Answer {
    type Err = BadAnswer;

    fn from_str(text: &str) -> Result<Self, BadAnswer> {
        let bad = |why| BadAnswer(text.to_string(), why);
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| bad("expected dialog.option=value"))?;
        let (dialog, option) = name
            .split_once('.')
            .ok_or_else(|| bad("expected dialog.option=value"))?;
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !word(dialog) || !word(option) {
            return Err(bad("dialog and option are letters, digits and _"));
        }
        // leapp splits --section on commas; the value goes on a command line.
        if value.is_empty()
            || value.len() > 128
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad("the value is 1-128 of letters, digits, _ . -"));
        }
        Ok(Self {
            dialog: dialog.into(),
            option: option.into(),
            value: value.into(),
        })
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}={}", self.dialog, self.option, self.value)
    }
}

/// The site's leapp settings, from `[leapp]` in the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeappConfig {
    /// Recorded before every preupgrade and upgrade.
    pub answers: Vec<Answer>,
    /// How long verification waits for leapp_resume.service to finish
    /// FirstBoot (an SELinux relabel or a slow first boot takes a while).
    pub first_boot_timeout: Duration,
    /// Where the target's packages come from.
    pub content: LeappContent,
}

impl Default for LeappConfig {
    fn default() -> Self {
        Self {
            answers: Vec::new(),
            first_boot_timeout: Duration::from_secs(3600),
            content: LeappContent::default(),
        }
    }
}

/// `leapp preupgrade|upgrade --target X.Y --report-schema 1.2.0` and the
/// site's content options.
pub fn argv(command: &str, target: Target, content: &LeappContent) -> Vec<String> {
    let target = target.version();
    let mut argv: Vec<String> = [
        "leapp",
        command,
        "--target",
        &target,
        "--report-schema",
        REPORT_SCHEMA,
    ]
    .map(str::to_string)
    .to_vec();
    argv.extend(content.options());
    argv
}

/// Records the configured answers; `--add` creates a dialog's section before
/// leapp has asked it, so the first run is already answered.
pub fn apply_answers(host: &dyn Host, answers: &[Answer]) -> Result<(), String> {
    if answers.is_empty() {
        return Ok(());
    }
    let sections: Vec<String> = answers.iter().map(ToString::to_string).collect();
    let mut argv = vec!["leapp", "answer", "--add"];
    for section in &sections {
        argv.extend(["--section", section.as_str()]);
    }
    let command = argv.join(" ");
    match host.run(&argv) {
        Ok(output) if output.status == 0 => Ok(()),
        Ok(output) => Err(format!(
            "{command} exited {}: {}",
            output.status,
            output.stderr.trim()
        )),
        Err(e) => Err(format!("cannot run {command}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_dialog_option_value_and_nothing_a_shell_or_leapp_would_split() {
        let answer: Answer = "remove_pam_pkcs11_module_check.confirm=True"
            .parse()
            .expect("valid");
        assert_eq!(answer.dialog, "remove_pam_pkcs11_module_check");
        assert_eq!(
            answer.to_string(),
            "remove_pam_pkcs11_module_check.confirm=True"
        );
        for bad in [
            "confirm=True",
            "a.b",
            "a.b=",
            "a.b=x,c.d=y",
            "a.b=$(reboot)",
            "a b.c=d",
            ".c=d",
        ] {
            assert!(bad.parse::<Answer>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn leapp_is_asked_for_the_report_schema_that_shows_errors() {
        assert_eq!(
            argv(
                "preupgrade",
                Target::from_version("8.10").expect("supported"),
                &LeappContent::default()
            ),
            [
                "leapp",
                "preupgrade",
                "--target",
                "8.10",
                "--report-schema",
                "1.2.0"
            ]
        );
    }
}
