//! Which migration step a host may take from the OS it runs now: the agent
//! checks every step it is asked for, whatever the coordinator planned.

use crate::command::MigrationTool;
use crate::facts::OsInfo;

/// Ok when `tool` can take a host running `os` to `target`.
pub fn check(os: &OsInfo, tool: MigrationTool, target: &str) -> Result<(), String> {
    let (id, version) = (os.id.as_str(), os.version.as_str());
    let minor = |v: &str| v.split_once('.').and_then(|(_, m)| m.parse::<u32>().ok());
    match tool {
        MigrationTool::Convert2rhel => match id {
            "centos" | "ol" if version == "7.9" => same(version, target),
            "centos" | "ol" if version.starts_with("7.") || version == "7" => Err(format!(
                "{id} {version} must be updated to 7.9 before conversion"
            )),
            "almalinux" | "rocky" | "ol"
                if version.starts_with("8.") && minor(version).is_some_and(|m| m >= 5) =>
            {
                same(version, target)
            }
            "rhel" => Err("the host already runs RHEL: there is nothing to convert".into()),
            _ => Err(format!("convert2rhel does not convert {id} {version}")),
        },
        MigrationTool::Leapp => match (id, version) {
            ("rhel", "7.9") if target == "8.10" => Ok(()),
            ("rhel", "8.10") if matches!(target, "9.4" | "9.6") => Ok(()),
            ("rhel", "7.9" | "8.10") => Err(format!(
                "leapp cannot upgrade RHEL {version} to {target} in one run (RHEL 7.9 goes to 8.10, 8.10 to 9.4 or 9.6)"
            )),
            ("rhel", _) => Err(format!(
                "RHEL {version} must be updated to the last minor release before an upgrade"
            )),
            _ => Err(format!(
                "leapp upgrades RHEL only; this host runs {id} {version}"
            )),
        },
    }
}

fn same(version: &str, target: &str) -> Result<(), String> {
    if version == target {
        Ok(())
    } else {
        Err(format!(
            "convert2rhel keeps the version: {version} converts to RHEL {version}, not {target}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(id: &str, version: &str) -> OsInfo {
        OsInfo {
            id: id.into(),
            name: id.into(),
            version: version.into(),
        }
    }

    #[test]
    fn only_real_paths_are_allowed() {
        use MigrationTool::{Convert2rhel as C, Leapp as L};
        let cases = [
            ("centos", "7.9", C, "7.9", None),
            ("ol", "7.9", C, "7.9", None),
            ("rocky", "8.10", C, "8.10", None),
            ("almalinux", "8.4", C, "8.4", Some("does not convert")),
            ("centos", "7.6", C, "7.6", Some("updated to 7.9")),
            ("centos", "7.9", C, "8.10", Some("keeps the version")),
            ("rhel", "7.9", C, "7.9", Some("already runs RHEL")),
            ("rhel", "7.9", L, "8.10", None),
            ("rhel", "8.10", L, "9.6", None),
            ("rhel", "7.9", L, "9.6", Some("in one run")),
            ("rhel", "8.8", L, "9.4", Some("last minor release")),
            ("centos", "7.9", L, "8.10", Some("upgrades RHEL only")),
        ];
        for (id, version, tool, target, error) in cases {
            let result = check(&os(id, version), tool, target);
            match error {
                None => assert_eq!(result, Ok(()), "{id} {version} {tool} {target}"),
                Some(text) => {
                    let message = result.expect_err(text);
                    assert!(
                        message.contains(text),
                        "{id} {version} {tool} {target}: {message}"
                    );
                }
            }
        }
    }
}
