//! A host's facts as the coordinator keeps and shows them, and the limits an
//! agent's report must keep: one that breaks a limit is refused whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub os: Option<OsInfo>,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    pub fqdn: String,
    pub machine_id: String,
    pub boot_id: String,
    pub uptime_seconds: Option<u64>,
    pub cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub filesystems: Vec<Filesystem>,
    pub package_count: Option<u64>,
    pub packages: BTreeMap<String, String>,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub unknown: Vec<UnknownFact>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    pub id: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownFact {
    pub fact: String,
    pub reason: String,
}

/// Limits on what an agent may report; far above any real host.
const MAX_SHORT: usize = 256;
const MAX_REASON: usize = 1024;
const MAX_ENTRIES: usize = 64;
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid facts: {0}")]
pub struct InvalidFacts(pub String);

fn short(field: &str, value: String) -> Result<String, InvalidFacts> {
    if value.len() > MAX_SHORT {
        return Err(InvalidFacts(format!(
            "{field} is longer than {MAX_SHORT} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidFacts(format!("{field} contains control characters")));
    }
    Ok(value)
}

fn bounded<T>(field: &str, items: Vec<T>) -> Result<Vec<T>, InvalidFacts> {
    if items.len() > MAX_ENTRIES {
        return Err(InvalidFacts(format!(
            "{field} has more than {MAX_ENTRIES} entries"
        )));
    }
    Ok(items)
}

/// One side of a label (key or value) in Kubernetes syntax: at most 63 of
/// `[A-Za-z0-9-_.]`, alphanumeric at both ends (a value may be empty).
pub fn valid_label_part(s: &str) -> bool {
    s.len() <= MAX_LABEL
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

/// Kubernetes label syntax, which selectors rely on.
pub fn valid_label(key: &str, value: &str) -> bool {
    !key.is_empty() && valid_label_part(key) && valid_label_part(value)
}

impl Facts {
    /// Checks every limit; a report that breaks one is refused whole.
    pub fn validate(self) -> Result<Facts, InvalidFacts> {
        let os = self
            .os
            .map(|os| {
                Ok::<_, InvalidFacts>(OsInfo {
                    id: short("os.id", os.id)?,
                    name: short("os.name", os.name)?,
                    version: short("os.version", os.version)?,
                })
            })
            .transpose()?;
        if self.labels.len() > MAX_ENTRIES {
            return Err(InvalidFacts(format!(
                "labels has more than {MAX_ENTRIES} entries"
            )));
        }
        if let Some((k, v)) = self.labels.iter().find(|(k, v)| !valid_label(k, v)) {
            return Err(InvalidFacts(format!("label {k}={v} is not a valid label")));
        }
        if self.packages.len() > MAX_ENTRIES {
            return Err(InvalidFacts(format!(
                "packages has more than {MAX_ENTRIES} entries"
            )));
        }
        let packages = self
            .packages
            .into_iter()
            .map(|(k, v)| Ok((short("package name", k)?, short("package version", v)?)))
            .collect::<Result<_, InvalidFacts>>()?;
        let filesystems = bounded("filesystems", self.filesystems)?
            .into_iter()
            .map(|fs| {
                if fs.free_bytes > fs.total_bytes {
                    return Err(InvalidFacts(format!(
                        "{}: more free than total space",
                        fs.path
                    )));
                }
                Ok(Filesystem {
                    path: short("filesystem path", fs.path)?,
                    ..fs
                })
            })
            .collect::<Result<_, _>>()?;
        let unknown = bounded("unknown", self.unknown)?
            .into_iter()
            .map(|u| {
                if u.reason.len() > MAX_REASON {
                    return Err(InvalidFacts("an unknown-fact reason is too long".into()));
                }
                Ok(UnknownFact {
                    fact: short("unknown fact", u.fact)?,
                    reason: u.reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Facts {
            os,
            kernel: short("kernel", self.kernel)?,
            arch: short("arch", self.arch)?,
            hostname: short("hostname", self.hostname)?,
            fqdn: short("fqdn", self.fqdn)?,
            machine_id: short("machine_id", self.machine_id)?,
            boot_id: short("boot_id", self.boot_id)?,
            filesystems,
            packages,
            agent_version: short("agent_version", self.agent_version)?,
            unknown,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            os: Some(OsInfo {
                id: "centos".into(),
                name: "CentOS Linux".into(),
                version: "7.9".into(),
            }),
            kernel: "3.10.0-1160.el7.x86_64".into(),
            labels: [("app".to_string(), "billing".to_string())].into(),
            ..Facts::default()
        }
    }

    #[test]
    fn valid_facts_pass_unchanged() {
        assert_eq!(facts().validate(), Ok(facts()));
    }

    #[test]
    fn reports_breaking_a_limit_are_refused_with_the_reason() {
        type Mutation = fn(&mut Facts);
        let cases: Vec<(Mutation, &str)> = vec![
            (|f| f.kernel = "x".repeat(300), "kernel is longer"),
            (|f| f.hostname = "a\nb".into(), "hostname contains control"),
            (
                |f| {
                    f.labels.insert("bad key".into(), "v".into());
                },
                "not a valid label",
            ),
            (
                |f| {
                    f.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
                },
                "labels has more than",
            ),
            (
                |f| {
                    f.filesystems.push(Filesystem {
                        path: "/".into(),
                        free_bytes: 2,
                        total_bytes: 1,
                    })
                },
                "more free than total",
            ),
        ];
        for (mutate, expected) in cases {
            let mut facts = facts();
            mutate(&mut facts);
            let err = facts.validate().expect_err(expected);
            assert!(err.0.contains(expected), "{err} lacks {expected}");
        }
    }
}
