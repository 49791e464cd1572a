//! `tar`, as far as the /boot backup of a snapshot needs it: `-czf ARCHIVE -C
//! DIR .`, `-tzf ARCHIVE` (members as `./name`, as GNU tar lists them) and
//! `-xzf ARCHIVE -C DIR`, which like the real one writes the archive's files
//! over DIR and deletes nothing. The archive is the emulation's own format;
//! only `tar` itself ever reads it.

use std::collections::BTreeMap;

use super::CommandOutput;
use super::tree::Tree;

/// Member (`./name`) -> content.
fn open(tree: &Tree, archive: &str) -> Result<BTreeMap<String, String>, CommandOutput> {
    let bytes = tree.read(archive).map_err(|_| {
        super::failed(
            2,
            &format!("tar: {archive}: Cannot open: No such file or directory"),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|_| super::failed(2, "tar: This does not look like a tar archive"))
}

pub fn run(tree: &Tree, args: &[&str]) -> CommandOutput {
    match args {
        ["-czf", archive, "-C", dir, "."] => {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            let files: BTreeMap<String, String> = tree
                .list()
                .into_iter()
                .filter_map(|p| {
                    let member = format!("./{}", p.strip_prefix(&prefix)?);
                    tree.read(&p)
                        .ok()
                        .map(|c| (member, String::from_utf8_lossy(&c).into_owned()))
                })
                .collect();
            match tree.write(
                archive,
                serde_json::to_string(&files).unwrap_or_default().as_bytes(),
            ) {
                Ok(()) => super::succeeded(String::new()),
                Err(e) => super::failed(2, &format!("tar: {archive}: Cannot open: {e}")),
            }
        }
        ["-tzf", archive] => match open(tree, archive) {
            Ok(files) => super::succeeded(
                std::iter::once("./\n".to_string())
                    .chain(files.keys().map(|m| format!("{m}\n")))
                    .collect(),
            ),
            Err(out) => out,
        },
        ["-xzf", archive, "-C", dir] => match open(tree, archive) {
            Ok(files) => {
                let dir = dir.trim_end_matches('/');
                for (member, content) in files {
                    let name = member.trim_start_matches("./");
                    let _ = tree.write(&format!("{dir}/{name}"), content.as_bytes());
                }
                super::succeeded(String::new())
            }
            Err(out) => out,
        },
        _ => super::failed(
            2,
            &format!("tar: unsupported arguments: {}", args.join(" ")),
        ),
    }
}
