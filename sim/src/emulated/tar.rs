//! `tar`, as far as the /boot backup of a snapshot needs it. The archive is
//! the emulation's own format; only `tar` itself ever reads it.

use super::CommandOutput;
use super::tree::Tree;

fn done() -> CommandOutput {
    CommandOutput {
        status: 0,
        stdout: String::new(),
        stderr: String::new(),
    }
}

fn fail(message: &str) -> CommandOutput {
    CommandOutput {
        status: 2,
        stdout: String::new(),
        stderr: format!("{message}\n"),
    }
}

/// `tar -czf ARCHIVE -C DIR .` and `tar -xzf ARCHIVE -C DIR`, for the /boot backup.
pub fn run(tree: &Tree, args: &[&str]) -> CommandOutput {
    match args {
        ["-czf", archive, "-C", dir, "."] => {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            let files: std::collections::BTreeMap<String, String> = tree
                .list()
                .into_iter()
                .filter(|p| p.starts_with(&prefix))
                .filter_map(|p| {
                    tree.read(&p)
                        .ok()
                        .map(|c| (p, String::from_utf8_lossy(&c).into_owned()))
                })
                .collect();
            match tree.write(
                archive,
                serde_json::to_string(&files).unwrap_or_default().as_bytes(),
            ) {
                Ok(()) => done(),
                Err(e) => fail(&format!("tar: {archive}: Cannot open: {e}")),
            }
        }
        ["-xzf", archive, "-C", dir] => {
            let Ok(bytes) = tree.read(archive) else {
                return fail(&format!(
                    "tar: {archive}: Cannot open: No such file or directory"
                ));
            };
            let Ok(files) =
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&bytes)
            else {
                return fail("tar: This does not look like a tar archive");
            };
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            for path in tree.list().into_iter().filter(|p| p.starts_with(&prefix)) {
                let _ = tree.remove(&path);
            }
            for (path, content) in files {
                let _ = tree.write(&path, content.as_bytes());
            }
            done()
        }
        _ => fail(&format!("tar: unsupported arguments: {}", args.join(" "))),
    }
}
