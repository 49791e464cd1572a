//! `rpm -qa [--queryformat FMT]`, the only rpm query the agent makes.

use std::fmt::Write;

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
    // Parsed once, written per package without copies: a simulated fleet
    // runs this after every command on every host.
    let pieces = compile(format);
    let mut stdout = String::with_capacity((packages.len() + other_packages as usize) * 48);
    for package in packages {
        render_into(
            &mut stdout,
            &pieces,
            [
                &package.name,
                &package.version,
                &package.release,
                &package.arch,
            ],
        );
    }
    let mut name = String::new();
    for i in 0..other_packages {
        name.clear();
        let _ = write!(name, "sim-package-{i:04}");
        render_into(&mut stdout, &pieces, [&name, "1.0", dist, "x86_64"]);
    }
    CommandOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

/// A piece of a query format: literal text, or the tag at this index of
/// [`TAGS`].
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Tag(usize),
}

const TAGS: [&str; 4] = ["%{NAME}", "%{VERSION}", "%{RELEASE}", "%{ARCH}"];

/// Splits rpm's query format into text (backslash escapes \n and \t
/// expanded, anything else kept as written) and tags.
fn compile(format: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if let Some(tag) = TAGS.iter().position(|t| rest.starts_with(t)) {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Tag(tag));
            rest = &rest[TAGS[tag].len()..];
        } else if let Some(after) = rest.strip_prefix("\\n") {
            text.push('\n');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("\\t") {
            text.push('\t');
            rest = after;
        } else {
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// Appends one package: `values` are its name, version, release and arch.
fn render_into(out: &mut String, pieces: &[Piece], values: [&str; 4]) {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Tag(tag) => out.push_str(values[*tag]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_formats_expand_tags_and_escapes_and_keep_the_rest() {
        let pieces = compile("%{NAME}\\t%{VERSION}-%{RELEASE}.%{ARCH} %{EPOCH}\\x\\n");
        let mut out = String::new();
        render_into(&mut out, &pieces, ["bash", "4.2.46", "35.el7_9", "x86_64"]);
        assert_eq!(out, "bash\t4.2.46-35.el7_9.x86_64 %{EPOCH}\\x\n");
    }
}
