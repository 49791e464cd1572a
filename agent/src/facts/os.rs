//! Identifies the operating system from `/etc/os-release` and the release files.
//! `ID` and `VERSION_ID` are the truth; `PRETTY_NAME` is never used because RHEL 7
//! sometimes leaves it as just "Red Hat Enterprise Linux".

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    pub id: String,
    pub name: String,
    pub version: String,
}

/// Release files that carry the minor version when os-release does not (CentOS 7
/// says only `VERSION_ID="7"`), most specific first.
pub const RELEASE_FILES: [&str; 5] = [
    "/etc/centos-release",
    "/etc/oracle-release",
    "/etc/rocky-release",
    "/etc/almalinux-release",
    "/etc/redhat-release",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsReleaseError {
    #[error("os-release has no {0}")]
    Missing(&'static str),
    #[error("os-release line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
}

/// Parses the `KEY=value` lines of os-release(5): values may be bare, or in
/// single or double quotes with backslash escapes; comments and blanks are skipped.
pub fn parse_os_release(text: &str) -> Result<BTreeMap<String, String>, OsReleaseError> {
    let mut fields = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line_no = index + 1;
        let (key, value) = line.split_once('=').ok_or(OsReleaseError::Malformed {
            line: line_no,
            reason: "expected KEY=value",
        })?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(OsReleaseError::Malformed {
                line: line_no,
                reason: "invalid key",
            });
        }
        fields.insert(
            key.to_string(),
            unquote(value).ok_or(OsReleaseError::Malformed {
                line: line_no,
                reason: "unterminated quote",
            })?,
        );
    }
    Ok(fields)
}

fn unquote(value: &str) -> Option<String> {
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Some(value.to_string()),
    };
    let inner = value[1..].strip_suffix(quote)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && quote == '"' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The version in a release file line: `CentOS Linux release 7.9.2009 (Core)` -> `7.9`.
pub fn version_from_release_line(line: &str) -> Option<String> {
    let after = line.split(" release ").nth(1)?;
    let token = after.split_whitespace().next()?;
    let mut parts = token.split('.');
    let major = parts
        .next()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?;
    match parts
        .next()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(minor) => Some(format!("{major}.{minor}")),
        None => Some(major.to_string()),
    }
}

/// Combines os-release with the first release file that knows the minor version.
/// `release_line` is asked for each path of [`RELEASE_FILES`] in turn.
pub fn identify(
    os_release: &BTreeMap<String, String>,
    mut release_line: impl FnMut(&str) -> Option<String>,
) -> Result<OsInfo, OsReleaseError> {
    let id = os_release
        .get("ID")
        .filter(|v| !v.is_empty())
        .ok_or(OsReleaseError::Missing("ID"))?;
    let version_id = os_release
        .get("VERSION_ID")
        .filter(|v| !v.is_empty())
        .ok_or(OsReleaseError::Missing("VERSION_ID"))?;
    let name = os_release
        .get("NAME")
        .cloned()
        .unwrap_or_else(|| id.clone());
    let mut version = version_id.clone();
    if !version_id.contains('.') {
        let major_prefix = format!("{version_id}.");
        if let Some(full) = RELEASE_FILES
            .iter()
            .filter_map(|path| release_line(path))
            .filter_map(|line| version_from_release_line(&line))
            .find(|v| v.starts_with(&major_prefix))
        {
            version = full;
        }
    }
    Ok(OsInfo {
        id: id.clone(),
        name,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    fn identified(os_release: &str, release: Option<String>) -> OsInfo {
        let fields = parse_os_release(os_release).expect("parses");
        identify(&fields, |_| release.clone()).expect("identifies")
    }

    #[test]
    fn every_os_release_sample_is_identified() {
        let own = [
            ("centos-7", None, "centos", "CentOS Linux", "7"),
            (
                "centos-7",
                Some("centos-release-7.1"),
                "centos",
                "CentOS Linux",
                "7.1",
            ),
            (
                "centos-7",
                Some("centos-release-7.9"),
                "centos",
                "CentOS Linux",
                "7.9",
            ),
            ("oracle-7.9", None, "ol", "Oracle Linux Server", "7.9"),
            (
                "rhel-7.6",
                None,
                "rhel",
                "Red Hat Enterprise Linux Server",
                "7.6",
            ),
            (
                "rhel-7.9",
                Some("redhat-release-7.9"),
                "rhel",
                "Red Hat Enterprise Linux Server",
                "7.9",
            ),
            (
                "rhel-8.10",
                None,
                "rhel",
                "Red Hat Enterprise Linux",
                "8.10",
            ),
            ("rhel-9.4", None, "rhel", "Red Hat Enterprise Linux", "9.4"),
            ("rhel-9.6", None, "rhel", "Red Hat Enterprise Linux", "9.6"),
            ("almalinux-8.10", None, "almalinux", "AlmaLinux", "8.10"),
            ("rocky-8.10", None, "rocky", "Rocky Linux", "8.10"),
        ];
        for (os_release, release, id, name, version) in own {
            let os = identified(
                &text(fixtures::own(&format!("os-release/{os_release}"))),
                release.map(|r| text(fixtures::own(&format!("release/{r}")))),
            );
            assert_eq!(
                (os.id.as_str(), os.name.as_str(), os.version.as_str()),
                (id, name, version),
                "{os_release} with {release:?}"
            );
        }

        let Some(real) = fixtures::real_samples("every_os_release_sample_is_identified") else {
            return;
        };
        let read = |name: &str| text(std::fs::read(real.join(name)).expect("real sample"));
        let real_cases = [
            (
                "os-release__centos-7__which-distro.txt",
                None,
                "centos",
                "7",
            ),
            (
                "os-release__centos-7__which-distro.txt",
                Some("centos-release__centos-7.1__python-distro-tests.txt"),
                "centos",
                "7.1",
            ),
            (
                "os-release__rhel-7.0__python-distro-tests.txt",
                None,
                "rhel",
                "7.0",
            ),
            (
                "os-release__rhel-7.5__which-distro.txt",
                None,
                "rhel",
                "7.5",
            ),
            (
                "os-release__rhel-7.6__oamg-leapp-repository-test.txt",
                None,
                "rhel",
                "7.6",
            ),
            (
                "os-release__rhel-8.10__which-distro.txt",
                None,
                "rhel",
                "8.10",
            ),
            (
                "os-release__rhel-9.4__which-distro.txt",
                None,
                "rhel",
                "9.4",
            ),
            (
                "os-release__rhel-9.6__which-distro.txt",
                None,
                "rhel",
                "9.6",
            ),
            (
                "os-release__almalinux-8.10__which-distro.txt",
                None,
                "almalinux",
                "8.10",
            ),
        ];
        for (os_release, release, id, version) in real_cases {
            let os = identified(&read(os_release), release.map(read));
            assert_eq!(
                (os.id.as_str(), os.version.as_str()),
                (id, version),
                "{os_release} with {release:?}"
            );
        }
    }

    #[test]
    fn release_lines_give_major_and_minor() {
        let cases = [
            ("CentOS Linux release 7.9.2009 (Core)", Some("7.9")),
            ("CentOS Linux release 7.1.1503 (Core) ", Some("7.1")),
            (
                "Red Hat Enterprise Linux Server release 7.9 (Maipo)",
                Some("7.9"),
            ),
            (
                "Red Hat Enterprise Linux release 8.10 (Ootpa)",
                Some("8.10"),
            ),
            ("Oracle Linux Server release 7.9", Some("7.9")),
            ("Fedora release 40", Some("40")),
            ("no version here", None),
            ("weird release x.y", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                version_from_release_line(line).as_deref(),
                expected,
                "{line}"
            );
        }
    }

    #[test]
    fn a_release_file_of_another_major_is_ignored() {
        let fields = parse_os_release("ID=centos\nVERSION_ID=7\n").expect("parses");
        let os = identify(&fields, |_| Some("CentOS Linux release 8.5.2111".into())).expect("ok");
        assert_eq!(os.version, "7");
    }

    #[test]
    fn malformed_os_release_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_os_release("ID=\"rhel\nVERSION_ID=7"),
            Err(OsReleaseError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse_os_release("just words"),
            Err(OsReleaseError::Malformed { .. })
        ));
        let fields = parse_os_release("NAME=x\n").expect("parses");
        assert_eq!(
            identify(&fields, |_| None),
            Err(OsReleaseError::Missing("ID"))
        );
    }

    #[test]
    fn quoting_follows_os_release_5() {
        let fields = parse_os_release("A=\"x \\\"y\\\"\"\nB='single $q'\nC=bare\n# comment\n\n")
            .expect("parses");
        assert_eq!(fields["A"], "x \"y\"");
        assert_eq!(fields["B"], "single $q");
        assert_eq!(fields["C"], "bare");
    }
}
