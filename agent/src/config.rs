//! The daemon's settings, from flags or a TOML file; loading does no other I/O
//! than reading that file, and every value is checked here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::session::SessionConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid label {0:?}: {1}")]
    Label(String, &'static str),
    #[error("no state directory: give --state-dir or state_dir in the config file")]
    NoStateDir,
    #[error("[leapp] {0}")]
    Leapp(String),
    #[error(transparent)]
    Subscription(#[from] crate::phases::subscription::BadSubscription),
}

/// The `mf-agent run` configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub host_root: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// e.g. "5m"
    pub facts_interval: Option<String>,
    /// How changes are protected on this host (default: LVM snapshots).
    pub snapshot: Option<crate::phases::SnapshotConfig>,
    /// Answers to leapp's dialogs, how long to wait for FirstBoot, where the
    /// target's packages come from.
    pub leapp: Option<LeappFile>,
    /// How convert2rhel reaches RHEL content.
    pub convert2rhel: Option<Convert2rhelFile>,
    /// Where `mf-agent enroll --config` enrolls.
    pub enroll: Option<EnrollFile>,
}

/// `[enroll]`: the coordinator's agent listener and its CA certificate. The
/// token is never in the file: it comes from MF_ENROLL_TOKEN or --token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollFile {
    pub coordinator: Option<String>,
    pub ca: Option<PathBuf>,
}

/// `[convert2rhel]`: `config_file` (0600 INI with activation_key and org),
/// `els`, `no_rhsm` with `enablerepo`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convert2rhelFile {
    pub config_file: Option<String>,
    #[serde(default)]
    pub els: bool,
    #[serde(default)]
    pub no_rhsm: bool,
    #[serde(default)]
    pub enablerepo: Vec<String>,
}

/// `[leapp]`: `answers = ["dialog.option=value", ...]`, `first_boot_timeout = "1h"`,
/// `no_rhsm` with `enablerepo`, `channel`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeappFile {
    #[serde(default)]
    pub answers: Vec<String>,
    pub first_boot_timeout: Option<String>,
    #[serde(default)]
    pub no_rhsm: bool,
    #[serde(default)]
    pub enablerepo: Vec<String>,
    pub channel: Option<String>,
}

impl LeappFile {
    fn resolve(self) -> Result<crate::phases::LeappConfig, ConfigError> {
        let mut config = crate::phases::LeappConfig::default();
        for text in &self.answers {
            config.answers.push(
                text.parse().map_err(|e: crate::phases::leapp::BadAnswer| {
                    ConfigError::Leapp(e.to_string())
                })?,
            );
        }
        if let Some(text) = self.first_boot_timeout {
            config.first_boot_timeout = humantime::parse_duration(&text)
                .map_err(|e| ConfigError::Leapp(format!("first_boot_timeout {text:?}: {e}")))?;
        }
        config.content = crate::phases::subscription::LeappContent {
            no_rhsm: self.no_rhsm,
            enablerepo: self.enablerepo,
            channel: self.channel,
        };
        config.content.validate()?;
        Ok(config)
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            // toml's own rendering: the line, the column and the offending text.
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// The settings the daemon runs with.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub state_dir: PathBuf,
    pub host_root: PathBuf,
    pub session: SessionConfig,
}

/// Flags win over the file; labels from both are merged, flags last.
pub fn resolve(
    file: FileConfig,
    state_dir: Option<PathBuf>,
    host_root: Option<PathBuf>,
    labels: &[String],
    facts_interval: Option<Duration>,
) -> Result<RunConfig, ConfigError> {
    let mut merged = BTreeMap::new();
    for (key, value) in file.labels {
        validate_label(&key, &value)?;
        merged.insert(key, value);
    }
    for flag in labels {
        let (key, value) = parse_label(flag)?;
        merged.insert(key, value);
    }
    let file_interval = file
        .facts_interval
        .map(|text| {
            humantime::parse_duration(&text).map_err(|e| ConfigError::Parse {
                path: "facts_interval".into(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    let mut session = SessionConfig {
        labels: merged,
        ..SessionConfig::default()
    };
    if let Some(snapshot) = file.snapshot {
        session.phases.snapshot = snapshot;
    }
    if let Some(leapp) = file.leapp {
        session.phases.leapp = leapp.resolve()?;
    }
    if let Some(c2r) = file.convert2rhel {
        let config = crate::phases::Convert2rhelConfig {
            config_file: c2r.config_file,
            els: c2r.els,
            no_rhsm: c2r.no_rhsm,
            enablerepo: c2r.enablerepo,
        };
        config.validate()?;
        session.phases.convert2rhel = config;
    }
    if let Some(interval) = facts_interval.or(file_interval) {
        session.facts_interval = interval.max(Duration::from_secs(1));
    }
    let state_dir = state_dir
        .or(file.state_dir)
        .ok_or(ConfigError::NoStateDir)?;
    // Renewed certificates are saved where the enrollment is.
    session.state_dir = Some(state_dir.clone());
    Ok(RunConfig {
        state_dir,
        host_root: host_root.or(file.host_root).unwrap_or_else(|| "/".into()),
        session,
    })
}

/// `KEY=VALUE` with Kubernetes label syntax, so selectors can name any label.
pub fn parse_label(text: &str) -> Result<(String, String), ConfigError> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| ConfigError::Label(text.into(), "expected KEY=VALUE"))?;
    validate_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// The core's label rule (the coordinator refuses what breaks it), with a
/// message that says which side is wrong.
fn validate_label(key: &str, value: &str) -> Result<(), ConfigError> {
    use mf_core::facts::valid_label_part as shaped;
    let whole = format!("{key}={value}");
    if key.is_empty() || !shaped(key) {
        return Err(ConfigError::Label(
            whole,
            "keys are 1-63 of [A-Za-z0-9-_.], alphanumeric at both ends",
        ));
    }
    if !shaped(value) {
        return Err(ConfigError::Label(
            whole,
            "values are 0-63 of [A-Za-z0-9-_.], alphanumeric at both ends",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: "t".into(),
            message: e.to_string(),
        })
    }

    /// A file's settings with no flags: `state_dir = "/x"` and `text`.
    fn load(text: &str) -> Result<RunConfig, ConfigError> {
        resolve(
            parse(&format!("state_dir = \"/x\"\n{text}"))?,
            None,
            None,
            &[],
            None,
        )
    }

    #[test]
    fn labels_follow_kubernetes_syntax() {
        assert_eq!(
            parse_label("app=billing").ok(),
            Some(("app".into(), "billing".into()))
        );
        assert!(parse_label("empty=").is_ok());
        for bad in [
            "novalue",
            "=x",
            "a b=c",
            "app=bad value",
            "-app=x",
            "app=x-",
            "k=v=w",
        ] {
            assert!(parse_label(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn flags_win_over_the_file() -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(
            "state_dir = \"/var/lib/mf-agent\"\nfacts_interval = \"10m\"\n[labels]\napp = \"old\"\ndc = \"dc1\"\n",
        )
        .map_err(|e| ConfigError::Parse { path: "t".into(), message: e.to_string() })?;
        let config = resolve(
            file,
            None,
            Some("/srv/root".into()),
            &["app=new".into()],
            None,
        )?;
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/mf-agent"));
        assert_eq!(config.host_root, PathBuf::from("/srv/root"));
        assert_eq!(config.session.labels["app"], "new");
        assert_eq!(config.session.labels["dc"], "dc1");
        assert_eq!(config.session.facts_interval, Duration::from_secs(600));
        assert_eq!(
            config.session.phases.snapshot.provider,
            crate::phases::snapshot::Provider::Lvm
        );
        let none: FileConfig = toml::from_str(
            "state_dir = \"/x\"\n[snapshot]\nprovider = \"none\"\n",
        )
        .map_err(|e| ConfigError::Parse {
            path: "t".into(),
            message: e.to_string(),
        })?;
        let config = resolve(none, None, None, &[], None)?;
        assert_eq!(
            config.session.phases.snapshot.provider,
            crate::phases::snapshot::Provider::None
        );
        assert!(toml::from_str::<FileConfig>("[snapshot]\nprovider = \"zfs\"\n").is_err());
        Ok(())
    }

    #[test]
    fn the_packaged_example_is_valid() -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(include_str!("../../packaging/config/agent.toml"))
            .map_err(|e| ConfigError::Parse {
                path: "packaging/config/agent.toml".into(),
                message: e.to_string(),
            })?;
        let config = resolve(file, None, None, &[], None)?;
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/mf-agent"));
        assert_eq!(config.session.labels["app"], "billing");
        assert_eq!(config.session.phases.snapshot.size_percent, 20);
        Ok(())
    }

    #[test]
    fn leapp_answers_and_the_first_boot_wait_are_checked_when_loaded() -> Result<(), ConfigError> {
        let config = load(
            "[leapp]\nanswers = [\"remove_pam_pkcs11_module_check.confirm=True\"]\nfirst_boot_timeout = \"90m\"\n",
        )?;
        assert_eq!(config.session.phases.leapp.answers.len(), 1);
        assert_eq!(
            config.session.phases.leapp.first_boot_timeout,
            Duration::from_secs(5400)
        );
        for bad in [
            "[leapp]\nanswers = [\"confirm=True\"]\n",
            "[leapp]\nfirst_boot_timeout = \"soon\"\n",
        ] {
            let refused = load(bad);
            assert!(matches!(refused, Err(ConfigError::Leapp(_))), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn subscription_options_are_checked_when_loaded() -> Result<(), ConfigError> {
        let good = load(
            "[convert2rhel]\nconfig_file = \"/etc/mf-agent/c2r.ini\"\nels = true\n[leapp]\nno_rhsm = true\nenablerepo = [\"baseos-local\"]\nchannel = \"eus\"\n",
        )?;
        assert_eq!(
            good.session.phases.convert2rhel.argv("analyze"),
            [
                "convert2rhel",
                "analyze",
                "-y",
                "--els",
                "-c",
                "/etc/mf-agent/c2r.ini"
            ]
        );
        assert_eq!(
            good.session.phases.leapp.content.options(),
            [
                "--no-rhsm",
                "--enablerepo",
                "baseos-local",
                "--channel",
                "eus"
            ]
        );
        for (bad, words) in [
            (
                "[convert2rhel]\nconfig_file = \"c2r.ini\"\n",
                "absolute path",
            ),
            (
                "[convert2rhel]\nno_rhsm = true\n",
                "at least one enablerepo",
            ),
            (
                "[leapp]\nchannel = \"beta\"\n",
                "not one of ga, e4s, eus, aus",
            ),
            (
                "[leapp]\nno_rhsm = true\nenablerepo = [\"a b\"]\n",
                "repository id",
            ),
        ] {
            let refused = load(bad).expect_err(bad);
            assert!(refused.to_string().contains(words), "{bad}: {refused}");
        }
        Ok(())
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        assert!(toml::from_str::<FileConfig>("state_dri = \"/x\"\n").is_err());
        assert!(matches!(
            resolve(FileConfig::default(), None, None, &[], None),
            Err(ConfigError::NoStateDir)
        ));
    }
}
