//! How the tools reach RHEL content on this host, from `[convert2rhel]` and
//! `[leapp]` in the agent's configuration: RHSM or Satellite credentials
//! (convert2rhel's `-c FILE`, an INI file of mode 0600 holding
//! `activation_key` and `org`: never on an argv other users can read), or
//! `--no-rhsm` with the site's repositories (`--enablerepo`) for disconnected
//! sites; EL7's `--els`; leapp's `--channel`. Checked when the agent starts
//! (a bad file refuses the start) and at every pre-check (what changed since
//! blocks, with its remediation).

use crate::host::Host;
use crate::report::{Finding, Remediation, Severity, Source};

/// Where RHSM registration shows on a RHEL host.
pub const CONSUMER_CERT: &str = "/etc/pki/consumer/cert.pem";
/// The credentials file convert2rhel reads even without `-c`.
pub const DEFAULT_INI: &str = "/etc/convert2rhel.ini";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Convert2rhelConfig {
    /// `-c FILE`: `[subscription_manager]` `activation_key` and `org`.
    pub config_file: Option<String>,
    /// `--els`: EL7 extended life-cycle support content.
    pub els: bool,
    /// `--no-rhsm` with `enablerepo` (at least one).
    pub no_rhsm: bool,
    pub enablerepo: Vec<String>,
}

/// What the site gives leapp to reach the target's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeappContent {
    pub no_rhsm: bool,
    pub enablerepo: Vec<String>,
    /// ga, e4s, eus or aus.
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSubscription {
    #[error("{0}: no_rhsm needs at least one enablerepo (the site's repositories)")]
    NoRepos(&'static str),
    #[error("{section}: repository id {id:?} is not [A-Za-z0-9_.:-]+")]
    BadRepo { section: &'static str, id: String },
    #[error("[leapp] channel {0:?} is not one of ga, e4s, eus, aus")]
    BadChannel(String),
    #[error("[convert2rhel] config_file {0:?} must be an absolute path")]
    Relative(String),
    #[error("[convert2rhel] config_file {0}: {1}")]
    File(String, String),
    #[error(
        "[convert2rhel] config_file {path} is readable by group or others (mode {mode:04o}): \
         convert2rhel refuses it; chmod 600 {path}"
    )]
    Exposed { path: String, mode: u32 },
    #[error(
        "[convert2rhel] config_file {0} has only one of activation_key and org: convert2rhel \
         needs both (or neither, with a username and password)"
    )]
    Unpaired(String),
}

pub const CHANNELS: [&str; 4] = ["ga", "e4s", "eus", "aus"];

fn check_repos(
    section: &'static str,
    no_rhsm: bool,
    repos: &[String],
) -> Result<(), BadSubscription> {
    if no_rhsm && repos.is_empty() {
        return Err(BadSubscription::NoRepos(section));
    }
    for id in repos {
        let shaped = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        if !shaped {
            return Err(BadSubscription::BadRepo {
                section,
                id: id.clone(),
            });
        }
    }
    Ok(())
}

impl Convert2rhelConfig {
    /// What can be checked without the host.
    pub fn validate(&self) -> Result<(), BadSubscription> {
        if let Some(path) = &self.config_file
            && !path.starts_with('/')
        {
            return Err(BadSubscription::Relative(path.clone()));
        }
        check_repos("[convert2rhel]", self.no_rhsm, &self.enablerepo)
    }

    /// The credentials file as the tool will find it: present, 0600, paired.
    pub fn check_on(&self, host: &dyn Host) -> Result<(), BadSubscription> {
        match &self.config_file {
            Some(path) => credentials(host, path).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Whether the INI file at `path` holds credentials (an activation key and an
/// organisation); refused when exposed or half-given.
fn credentials(host: &dyn Host, path: &str) -> Result<bool, BadSubscription> {
    let file_error = |e: crate::host::HostError| BadSubscription::File(path.into(), e.to_string());
    let mode = host.file_mode(path).map_err(file_error)?;
    if mode & 0o077 != 0 {
        return Err(BadSubscription::Exposed {
            path: path.into(),
            mode,
        });
    }
    let text = host.read_to_string(path).map_err(file_error)?;
    let has = |key: &str| {
        text.lines().any(|l| {
            l.split_once('=')
                .is_some_and(|(k, v)| k.trim() == key && !v.trim().is_empty())
        })
    };
    if has("activation_key") != has("org") {
        return Err(BadSubscription::Unpaired(path.into()));
    }
    Ok(has("activation_key"))
}

impl Convert2rhelConfig {
    /// `convert2rhel SUBCOMMAND -y` and the options of this host.
    pub fn argv(&self, subcommand: &str) -> Vec<String> {
        let mut argv: Vec<String> = ["convert2rhel", subcommand, "-y"]
            .map(str::to_string)
            .to_vec();
        if self.els {
            argv.push("--els".into());
        }
        if let Some(path) = &self.config_file {
            argv.extend(["-c".into(), path.clone()]);
        }
        if self.no_rhsm {
            argv.push("--no-rhsm".into());
            for repo in &self.enablerepo {
                argv.extend(["--enablerepo".into(), repo.clone()]);
            }
        }
        argv
    }
}

impl LeappContent {
    pub fn validate(&self) -> Result<(), BadSubscription> {
        if let Some(channel) = &self.channel
            && !CHANNELS.contains(&channel.as_str())
        {
            return Err(BadSubscription::BadChannel(channel.clone()));
        }
        check_repos("[leapp]", self.no_rhsm, &self.enablerepo)
    }

    /// The options after `leapp preupgrade|upgrade --target X.Y`.
    pub fn options(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if self.no_rhsm {
            argv.push("--no-rhsm".to_string());
        }
        for repo in &self.enablerepo {
            argv.extend(["--enablerepo".to_string(), repo.clone()]);
        }
        if let Some(channel) = &self.channel {
            argv.extend(["--channel".to_string(), channel.clone()]);
        }
        argv
    }
}

fn blocking(key: &str, title: &str, summary: String, fix: &str) -> Finding {
    Finding {
        source: Source::Agent,
        key: format!("agent::{key}"),
        severity: Severity::High,
        blocking: true,
        title: title.into(),
        summary,
        remediations: vec![Remediation::Hint(fix.into())],
    }
}

const CONFIG: &str = "/etc/mf-agent/agent.toml";

/// Whether convert2rhel has a way to RHEL content on this host.
pub fn convert2rhel_path(host: &dyn Host, config: &Convert2rhelConfig) -> Option<Finding> {
    let file = config.config_file.as_deref().unwrap_or(DEFAULT_INI);
    let present = config.config_file.is_some() || host.read_file(DEFAULT_INI).is_ok();
    let with_credentials = match present.then(|| credentials(host, file)) {
        Some(Err(reason)) => {
            return Some(blocking(
                "subscription-file",
                "The convert2rhel credentials file is unusable",
                reason.to_string(),
                "Fix the file named (mode 0600, activation_key and org together), then run the \
                 pre-check again.",
            ));
        }
        Some(Ok(found)) => found,
        None => false,
    };
    if !with_credentials && !config.no_rhsm {
        return Some(blocking(
            "no-subscription-path",
            "No subscription path to RHEL content",
            format!(
                "Neither {DEFAULT_INI} nor {CONFIG} gives convert2rhel credentials ([convert2rhel] \
                 config_file: an activation key and organisation for RHSM or Satellite), nor \
                 no_rhsm with the site's repositories: the host cannot be subscribed."
            ),
            "Set [convert2rhel] config_file to a 0600 INI file with activation_key and org, or \
             no_rhsm = true with enablerepo = [...] for a disconnected site.",
        ));
    }
    None
}

/// Whether leapp has a way to the target's content on this host.
pub fn leapp_path(host: &dyn Host, content: &LeappContent) -> Option<Finding> {
    if content.no_rhsm || host.read_file(CONSUMER_CERT).is_ok() {
        return None;
    }
    Some(blocking(
        "no-subscription-path",
        "No subscription path to RHEL content",
        format!(
            "The host is not registered with RHSM or Satellite ({CONSUMER_CERT} is missing) and \
             {CONFIG} does not set [leapp] no_rhsm with the site's repositories."
        ),
        "Register the host (subscription-manager register --activationkey KEY --org ORG), or \
         set [leapp] no_rhsm = true with enablerepo = [...] for a disconnected site.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_become_the_tools_argv() {
        let config = Convert2rhelConfig {
            config_file: Some("/etc/mf-agent/convert2rhel.ini".into()),
            els: true,
            ..Default::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.argv("analyze"),
            [
                "convert2rhel",
                "analyze",
                "-y",
                "--els",
                "-c",
                "/etc/mf-agent/convert2rhel.ini"
            ]
        );
        let offline = Convert2rhelConfig {
            no_rhsm: true,
            ..Default::default()
        };
        assert_eq!(
            offline.validate(),
            Err(BadSubscription::NoRepos("[convert2rhel]"))
        );
        let bad_repo = Convert2rhelConfig {
            no_rhsm: true,
            enablerepo: vec!["rhel-7-server-rpms; reboot".into()],
            ..Default::default()
        };
        assert!(matches!(
            bad_repo.validate(),
            Err(BadSubscription::BadRepo { .. })
        ));
        let relative = Convert2rhelConfig {
            config_file: Some("c2r.ini".into()),
            ..Default::default()
        };
        assert!(matches!(
            relative.validate(),
            Err(BadSubscription::Relative(_))
        ));
        let leapp = LeappContent {
            no_rhsm: true,
            enablerepo: vec!["local-baseos".into()],
            channel: Some("eus".into()),
        };
        assert_eq!(leapp.validate(), Ok(()));
        assert_eq!(
            leapp.options(),
            [
                "--no-rhsm",
                "--enablerepo",
                "local-baseos",
                "--channel",
                "eus"
            ]
        );
        let beta = LeappContent {
            channel: Some("beta".into()),
            ..Default::default()
        };
        assert!(matches!(
            beta.validate(),
            Err(BadSubscription::BadChannel(_))
        ));
    }
}
