//! What the package ships beside the binary, generated from the clap
//! definitions so that it never drifts from them: shell completions and man
//! pages (one per command: `mfctl(1)`, `mfctl-hosts-list(1)`...).

use std::io::Write;
use std::path::Path;

use clap::{CommandFactory, ValueEnum};

use crate::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completion(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "mfctl", out);
    Ok(())
}

/// Writes `NAME.1` for mfctl and every visible subcommand; returns how many.
pub fn man_pages(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    command.build();
    write_pages(&command, "mfctl", dir)
}

fn write_pages(command: &clap::Command, name: &str, dir: &Path) -> std::io::Result<usize> {
    let page = command.clone().name(name.to_string());
    let mut file = std::fs::File::create(dir.join(format!("{name}.1")))?;
    clap_mangen::Man::new(page).render(&mut file)?;
    let mut written = 1;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        written += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_every_command_and_man_pages_cover_them() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completion(shell, &mut out).expect("written");
            let text = String::from_utf8(out).expect("utf8");
            for word in ["precheck", "migrate", "wave", "selector"] {
                assert!(text.contains(word), "{shell:?} lacks {word}");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let written = man_pages(dir.path()).expect("written");
        assert!(written > 20, "{written} pages");
        let list = std::fs::read_to_string(dir.path().join("mfctl-hosts-list.1")).expect("page");
        assert!(list.contains(".TH mfctl-hosts-list 1"), "{list}");
        assert!(list.contains("selector"), "{list}");
        assert!(
            !dir.path().join("mfctl-man.1").exists(),
            "hidden commands have no page"
        );
    }
}
