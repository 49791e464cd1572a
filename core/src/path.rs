//! One hop per tool run: CentOS 7.9 to RHEL 9.6 is convert (to RHEL 7.9), then
//! upgrade to 8.10, then upgrade to 9.6, each with its own pre-check.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    Convert2rhel,
    Leapp,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tool::Convert2rhel => "convert2rhel",
            Tool::Leapp => "leapp",
        })
    }
}

/// A supported RHEL release to migrate to, written `rhel-8.10`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Target {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rhel-{}.{}", self.major, self.minor)
    }
}

impl Target {
    pub fn version(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// A target as the agent receives it, `MAJOR.MINOR` (no prefix): digits
    /// only, because it ends up on a command line, and supported.
    pub fn from_version(version: &str) -> Result<Target, PathError> {
        let bad = || PathError::BadTarget(version.to_string());
        let (major, minor) = version.split_once('.').ok_or_else(bad)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return Err(bad());
        }
        format!("rhel-{version}").parse()
    }
}

/// The RHEL releases a migration can end on. Which of them leapp reaches
/// from a given release is the installed leapp-repository's
/// `upgrade_paths.json`, read on the host at pre-check (an unsupported one is
/// an inhibitor there); this table only says which hops exist.
const TARGETS: [Target; 6] = [
    Target { major: 7, minor: 9 },
    Target {
        major: 8,
        minor: 10,
    },
    Target { major: 9, minor: 4 },
    Target { major: 9, minor: 6 },
    Target { major: 9, minor: 8 },
    Target {
        major: 10,
        minor: 0,
    },
];

/// The release each major is upgraded from to reach the next major.
const EL9_TO_EL10_FROM: Target = Target { major: 9, minor: 6 };

impl std::str::FromStr for Target {
    type Err = PathError;

    fn from_str(text: &str) -> Result<Self, PathError> {
        let bad = || PathError::BadTarget(text.to_string());
        let version = text.strip_prefix("rhel-").ok_or_else(bad)?;
        let (major, minor) = version.split_once('.').ok_or_else(bad)?;
        let target = Target {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        };
        if TARGETS.contains(&target) {
            Ok(target)
        } else {
            Err(PathError::UnsupportedTarget(target))
        }
    }
}

/// One run of one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub tool: Tool,
    /// The RHEL version the step ends on.
    pub to: Target,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.tool, self.to.version())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0:?} is not a target: write rhel-MAJOR.MINOR, e.g. rhel-8.10")]
    BadTarget(String),
    #[error(
        "{0} is not a supported target (supported: rhel-7.9, rhel-8.10, rhel-9.4, rhel-9.6, rhel-9.8, rhel-10.0)"
    )]
    UnsupportedTarget(Target),
    #[error("the host already runs RHEL {0}")]
    AlreadyThere(String),
    #[error("{0}")]
    Impossible(String),
}

fn parse_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The architectures each tool takes a host from, as Red Hat documents
/// them: convert2rhel x86_64 only; leapp from RHEL 7 x86_64, IBM POWER (little
/// endian) and IBM Z (RHEL 7 for ARM had no in-place upgrade), from RHEL 8 and
/// 9 those and 64-bit ARM.
const CONVERT2RHEL_ARCHES: &[&str] = &["x86_64"];
const LEAPP_FROM_7_ARCHES: &[&str] = &["x86_64", "ppc64le", "s390x"];
const LEAPP_ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x"];

/// Whether Red Hat's tools can move a host of this platform in place at all;
/// when they cannot, why (the host is to be rebuilt on a supported release,
/// which no change on the host fixes). A version that does not parse, or an
/// older minor that an update fixes, is for the pre-check to tell.
pub fn in_place(os_id: &str, version: &str, arch: &str) -> Result<(), String> {
    let Some((major, _)) = parse_version(version) else {
        return Ok(());
    };
    let (tool, arches) = match os_id {
        "centos" | "ol" if major == 7 => ("convert2rhel", CONVERT2RHEL_ARCHES),
        "almalinux" | "rocky" | "ol" if major == 8 => ("convert2rhel", CONVERT2RHEL_ARCHES),
        "rhel" if major == 7 => ("leapp", LEAPP_FROM_7_ARCHES),
        "rhel" if (8..=9).contains(&major) => ("leapp", LEAPP_ARCHES),
        // The newest release: nothing to migrate.
        "rhel" if major >= 10 => return Ok(()),
        _ => {
            return Err(format!(
                "no in-place path from {os_id} {version}: neither convert2rhel nor leapp takes it"
            ));
        }
    };
    if arch.is_empty() || arches.contains(&arch) {
        return Ok(());
    }
    Err(format!(
        "{tool} does not take {arch} hosts from {os_id} {version} (only {})",
        arches.join(", ")
    ))
}

/// The steps from `os_id` `version` (facts) to `target`.
pub fn plan(os_id: &str, version: &str, target: Target) -> Result<Vec<Step>, PathError> {
    let impossible = |why: String| Err(PathError::Impossible(why));
    let Some((major, minor)) = parse_version(version) else {
        return impossible(format!(
            "the version of {os_id} {version} is not MAJOR.MINOR"
        ));
    };
    let mut steps = Vec::new();
    // Where conversion lands: RHEL of the same version.
    let mut at = match os_id {
        "rhel" => Target { major, minor },
        "centos" | "ol" if (major, minor) == (7, 9) => {
            steps.push(Step {
                tool: Tool::Convert2rhel,
                to: Target { major: 7, minor: 9 },
            });
            Target { major: 7, minor: 9 }
        }
        "centos" | "ol" if major == 7 => {
            return impossible(format!(
                "{os_id} {version} must be updated to 7.9 before conversion"
            ));
        }
        "almalinux" | "rocky" | "ol" if major == 8 && minor >= 5 => {
            let same = Target { major, minor };
            steps.push(Step {
                tool: Tool::Convert2rhel,
                to: same,
            });
            same
        }
        _ => return impossible(format!("no supported path from {os_id} {version}")),
    };
    if at > target {
        return impossible(format!(
            "{target} is older than {os_id} {version}: there is no downgrade"
        ));
    }
    if at == target {
        return if steps.is_empty() {
            Err(PathError::AlreadyThere(version.to_string()))
        } else {
            Ok(steps)
        };
    }
    while at != target {
        let next = match (at.major, at.minor) {
            (7, 9) => Target {
                major: 8,
                minor: 10,
            },
            (8, 10) if target.major == 9 => target,
            (8, 10) => EL9_TO_EL10_FROM,
            (9, _) if at == EL9_TO_EL10_FROM => target,
            (7..=9, _) if target.major > at.major => {
                return impossible(format!(
                    "RHEL {} must be updated to {} before an in-place upgrade",
                    at.version(),
                    match at.major {
                        7 => "7.9".to_string(),
                        8 => "8.10".to_string(),
                        _ => EL9_TO_EL10_FROM.version(),
                    }
                ));
            }
            _ => {
                return impossible(format!(
                    "leapp has no path from RHEL {} to {target}",
                    at.version()
                ));
            }
        };
        if next > target {
            return impossible(format!(
                "leapp cannot stop at {target} on the way from RHEL {}",
                at.version()
            ));
        }
        steps.push(Step {
            tool: Tool::Leapp,
            to: next,
        });
        at = next;
    }
    Ok(steps)
}

/// Whether `step` is the next tool run for a host running `os_id` `version`:
/// the agent checks every step it is asked for against the same table the
/// coordinator plans with, whatever the coordinator sent.
pub fn check_step(os_id: &str, version: &str, step: Step) -> Result<(), PathError> {
    let steps = plan(os_id, version, step.to)?;
    if steps.first() == Some(&step) && steps.len() == 1 {
        return Ok(());
    }
    let path: Vec<String> = steps.iter().map(ToString::to_string).collect();
    Err(PathError::Impossible(format!(
        "{step} is not one run from {os_id} {version}: the path to {} is {}",
        step.to,
        path.join(", then ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        text.parse().expect("target")
    }

    fn steps(os: &str, version: &str, to: &str) -> Result<Vec<String>, String> {
        plan(os, version, target(to))
            .map(|s| s.iter().map(ToString::to_string).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn paths_go_one_hop_per_run() {
        let ok = |os, v, to, expected: &[&str]| {
            assert_eq!(
                steps(os, v, to),
                Ok(expected.iter().map(|s| s.to_string()).collect()),
                "{os} {v} -> {to}"
            )
        };
        ok("centos", "7.9", "rhel-7.9", &["convert2rhel to 7.9"]);
        ok(
            "centos",
            "7.9",
            "rhel-8.10",
            &["convert2rhel to 7.9", "leapp to 8.10"],
        );
        ok(
            "ol",
            "7.9",
            "rhel-9.6",
            &["convert2rhel to 7.9", "leapp to 8.10", "leapp to 9.6"],
        );
        ok("rhel", "7.9", "rhel-8.10", &["leapp to 8.10"]);
        ok(
            "rhel",
            "7.9",
            "rhel-9.4",
            &["leapp to 8.10", "leapp to 9.4"],
        );
        ok("rhel", "8.10", "rhel-9.6", &["leapp to 9.6"]);
        ok("rhel", "8.10", "rhel-9.8", &["leapp to 9.8"]);
        ok("rhel", "9.6", "rhel-10.0", &["leapp to 10.0"]);
        ok(
            "rhel",
            "8.10",
            "rhel-10.0",
            &["leapp to 9.6", "leapp to 10.0"],
        );
        ok("rocky", "8.10", "rhel-8.10", &["convert2rhel to 8.10"]);
        // Oracle Linux 8 converts in place, as Rocky and Alma do (it is not
        // held to the EL7 rule of 7.9 first).
        ok("ol", "8.10", "rhel-8.10", &["convert2rhel to 8.10"]);
        ok(
            "almalinux",
            "8.10",
            "rhel-9.6",
            &["convert2rhel to 8.10", "leapp to 9.6"],
        );
    }

    #[test]
    fn impossible_paths_say_why() {
        let err = |os, v, to, text: &str| {
            let e = steps(os, v, to).expect_err(text);
            assert!(e.contains(text), "{os} {v} -> {to}: {e}");
        };
        err("rhel", "8.10", "rhel-8.10", "already runs RHEL 8.10");
        err("rhel", "8.10", "rhel-7.9", "no downgrade");
        err("centos", "7.6", "rhel-8.10", "updated to 7.9");
        err(
            "rhel",
            "7.6",
            "rhel-8.10",
            "updated to 7.9 before an in-place upgrade",
        );
        err("rhel", "8.8", "rhel-9.6", "updated to 8.10");
        err("rhel", "9.4", "rhel-10.0", "updated to 9.6");
        err("rocky", "8.4", "rhel-8.10", "no supported path");
        err("rocky", "8.10", "rhel-7.9", "no downgrade");
        err("ubuntu", "22.04", "rhel-9.6", "no supported path");
        err("rhel", "9.4", "rhel-9.6", "no path from RHEL 9.4");
    }

    #[test]
    fn a_step_is_allowed_only_as_the_next_single_run() {
        let step = |tool, to: &str| Step {
            tool,
            to: Target::from_version(to).expect("version"),
        };
        use Tool::{Convert2rhel as C, Leapp as L};
        let cases = [
            ("centos", "7.9", step(C, "7.9"), None),
            ("ol", "7.9", step(C, "7.9"), None),
            ("rocky", "8.10", step(C, "8.10"), None),
            ("rhel", "7.9", step(L, "8.10"), None),
            ("rhel", "8.10", step(L, "9.6"), None),
            (
                "almalinux",
                "8.4",
                step(C, "8.10"),
                Some("no supported path"),
            ),
            ("centos", "7.6", step(C, "7.9"), Some("updated to 7.9")),
            (
                "centos",
                "7.9",
                step(C, "8.10"),
                Some("the path to rhel-8.10 is convert2rhel to 7.9, then leapp to 8.10"),
            ),
            ("rhel", "7.9", step(C, "7.9"), Some("already runs RHEL")),
            (
                "rhel",
                "7.9",
                step(L, "9.6"),
                Some("is not one run from rhel 7.9"),
            ),
            ("rhel", "8.8", step(L, "9.4"), Some("updated to 8.10")),
            // The right target, the wrong tool.
            (
                "rhel",
                "7.9",
                step(C, "8.10"),
                Some("convert2rhel to 8.10 is not one run"),
            ),
            (
                "centos",
                "7.9",
                step(L, "8.10"),
                Some("leapp to 8.10 is not one run"),
            ),
        ];
        for (id, version, step, error) in cases {
            let result = check_step(id, version, step).map_err(|e| e.to_string());
            match error {
                None => assert_eq!(result, Ok(()), "{id} {version} {step}"),
                Some(text) => {
                    let message = result.expect_err(text);
                    assert!(message.contains(text), "{id} {version} {step}: {message}");
                }
            }
        }
    }

    #[test]
    fn a_target_version_is_digits_and_supported() {
        assert_eq!(
            Target::from_version("8.10"),
            Ok(Target {
                major: 8,
                minor: 10
            })
        );
        for bad in ["8", "8.10; rm -rf /", "rhel-8.10", "8.x", "", "1234.1"] {
            assert!(
                matches!(Target::from_version(bad), Err(PathError::BadTarget(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Target::from_version("9.5"),
            Err(PathError::UnsupportedTarget(_))
        ));
    }

    #[test]
    fn targets_are_written_rhel_major_minor() {
        assert_eq!(
            target("rhel-8.10"),
            Target {
                major: 8,
                minor: 10
            }
        );
        assert_eq!(target("rhel-8.10").to_string(), "rhel-8.10");
        for (bad, text) in [
            ("8.10", "is not a target"),
            ("rhel-8", "is not a target"),
            ("rhel-9.5", "not a supported target"),
            ("centos-7.9", "is not a target"),
        ] {
            let e = bad.parse::<Target>().expect_err(bad).to_string();
            assert!(e.contains(text), "{bad}: {e}");
        }
    }

    #[test]
    fn a_platform_no_tool_takes_needs_a_rebuild_and_one_an_update_fixes_does_not() {
        for (os, version, arch) in [
            ("centos", "7.9", "x86_64"),
            ("centos", "7.4", "x86_64"),
            ("ol", "8.10", "x86_64"),
            ("rhel", "7.9", "ppc64le"),
            ("rhel", "8.10", "aarch64"),
            ("rhel", "9.6", "s390x"),
            ("rhel", "10.0", "x86_64"),
            ("rhel", "7.9", ""),
            ("rhel", "weird", "x86_64"),
        ] {
            assert_eq!(in_place(os, version, arch), Ok(()), "{os} {version} {arch}");
        }
        for (os, version, arch, says) in [
            (
                "centos",
                "6.10",
                "x86_64",
                "no in-place path from centos 6.10",
            ),
            ("centos", "8.5", "x86_64", "neither convert2rhel nor leapp"),
            ("ubuntu", "22.04", "x86_64", "no in-place path from ubuntu"),
            ("centos", "7.9", "i686", "convert2rhel does not take i686"),
            ("centos", "7.9", "aarch64", "only x86_64"),
            (
                "rhel",
                "7.9",
                "aarch64",
                "leapp does not take aarch64 hosts from rhel 7.9",
            ),
        ] {
            let refused = in_place(os, version, arch).expect_err(says);
            assert!(refused.contains(says), "{refused}");
        }
    }
}
