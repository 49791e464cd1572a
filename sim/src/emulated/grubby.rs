//! `grubby`, as far as the agent uses it to read and repair the boot loader:
//! `--default-kernel`, `--default-title`, `--info PATH`, `--set-default PATH`
//! and `--remove-kernel PATH` (each also as `--opt=PATH`). Exit 0, or 1 with
//! grubby's own message on stderr.

use super::CommandOutput;
use super::bootloader::{self, Entry};
use super::tree::Tree;

fn info(index: usize, entry: &Entry) -> String {
    format!(
        "index={index}\nkernel=\"{}\"\nargs=\"ro crashkernel=auto\"\nroot=\"/dev/mapper/rhel-root\"\ninitrd=\"{}\"\ntitle=\"{}\"\n",
        entry.kernel, entry.initrd, entry.title
    )
}

pub fn run(tree: &Tree, args: &[&str]) -> CommandOutput {
    let (option, value) = match args {
        [one] => match one.split_once('=') {
            Some((o, v)) => (o, Some(v)),
            None => (*one, None),
        },
        [option, value] => (*option, Some(*value)),
        _ => {
            return super::failed(
                1,
                "grubby: bad argument list (the emulation takes one option)",
            );
        }
    };
    let entries = bootloader::entries(tree);
    if entries.is_empty() {
        return super::failed(1, "grubby fatal error: unable to find a suitable template");
    }
    match (option, value) {
        ("--default-kernel", None) => match bootloader::default(tree) {
            Some(entry) => super::succeeded(format!("{}\n", entry.kernel)),
            None => super::failed(1, "grubby: no default entry"),
        },
        ("--default-title", None) => match bootloader::default(tree) {
            Some(entry) => super::succeeded(format!("{}\n", entry.title)),
            None => super::failed(1, "grubby: no default entry"),
        },
        ("--info", Some(kernel)) => {
            let found: String = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| kernel == "ALL" || e.kernel == kernel)
                .map(|(i, e)| info(i, e))
                .collect();
            if found.is_empty() {
                super::failed(1, &format!("grubby: kernel not found: {kernel}"))
            } else {
                super::succeeded(found)
            }
        }
        ("--set-default", Some(kernel)) => {
            if bootloader::set_default(tree, kernel) {
                super::succeeded(format!("The default is {kernel}\n"))
            } else {
                super::failed(1, &format!("grubby: no entry boots {kernel}"))
            }
        }
        ("--remove-kernel", Some(kernel)) => {
            bootloader::remove_kernel(tree, kernel);
            super::succeeded(String::new())
        }
        _ => super::failed(1, &format!("grubby: bad argument {option}")),
    }
}
