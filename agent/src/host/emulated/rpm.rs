//! `rpm -qa [--queryformat FMT]`, the only rpm query the agent makes.

use super::CommandOutput;
use super::scenario::Package;

pub fn run(
    packages: &[Package],
    other_packages: u32,
    os_version: &str,
    args: &[&str],
) -> CommandOutput {
    let format = match args {
        ["-qa"] => "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n",
        ["-qa", "--queryformat" | "--qf", format] => format,
        _ => {
            return CommandOutput {
                status: 1,
                stdout: String::new(),
                stderr: format!("rpm: unsupported query {}\n", args.join(" ")),
            };
        }
    };
    let dist = if os_version.starts_with('7') {
        "1.el7"
    } else {
        "1.el8"
    };
    let mut stdout = String::new();
    for package in packages {
        stdout.push_str(&render(
            format,
            &package.name,
            &package.version,
            &package.release,
            &package.arch,
        ));
    }
    for i in 0..other_packages {
        stdout.push_str(&render(
            format,
            &format!("sim-package-{i:04}"),
            "1.0",
            dist,
            "x86_64",
        ));
    }
    CommandOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

/// Expands rpm's query-format tags and backslash escapes.
fn render(format: &str, name: &str, version: &str, release: &str, arch: &str) -> String {
    format
        .replace("%{NAME}", name)
        .replace("%{VERSION}", version)
        .replace("%{RELEASE}", release)
        .replace("%{ARCH}", arch)
        .replace("\\n", "\n")
        .replace("\\t", "\t")
}
