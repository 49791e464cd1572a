//! The boot loader of an emulated host, kept in the files a real one uses, so
//! that what the agent reads (through `grubby`) is what decides the next boot.
//! EL7: `menuentry` blocks in `/boot/grub2/grub.cfg`, the default chosen by
//! title. EL8 and later: Boot Loader Specification files
//! `/boot/loader/entries/<machine-id>-<kernel>.conf`, the default chosen by
//! file name. Both keep the default as `saved_entry` in `/boot/grub2/grubenv`.
//! Kernel paths in the files are relative to /boot (a separate partition);
//! grubby reports them under `/boot`.

use super::tree::Tree;

pub const GRUB_CFG: &str = "/boot/grub2/grub.cfg";
pub const GRUBENV: &str = "/boot/grub2/grubenv";
const BLS_DIR: &str = "/boot/loader/entries/";
/// The title leapp gives its entry (`grubby --title RHEL-Upgrade-Initramfs`).
pub const UPGRADE_TITLE: &str = "RHEL-Upgrade-Initramfs";
pub const UPGRADE_KERNEL: &str = "/boot/vmlinuz-upgrade.x86_64";
pub const UPGRADE_INITRD: &str = "/boot/initramfs-upgrade.x86_64.img";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What `saved_entry` names: the BLS file's stem, or the menuentry title.
    pub id: String,
    pub title: String,
    /// `/boot/vmlinuz-...`
    pub kernel: String,
    pub initrd: String,
}

impl Entry {
    /// The kernel release this entry boots (`uname -r`).
    pub fn release(&self) -> &str {
        self.kernel
            .strip_prefix("/boot/vmlinuz-")
            .unwrap_or(&self.kernel)
    }

    pub fn is_upgrade(&self) -> bool {
        self.kernel == UPGRADE_KERNEL
    }
}

fn text(tree: &Tree, path: &str) -> Option<String> {
    tree.read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn uses_bls(tree: &Tree) -> bool {
    tree.list().iter().any(|p| p.starts_with(BLS_DIR))
        || text(tree, GRUB_CFG).is_some_and(|cfg| cfg.contains("blscfg"))
}

fn on_boot(path: &str) -> String {
    format!("/boot{path}")
}

fn bls_entries(tree: &Tree) -> Vec<Entry> {
    let mut entries: Vec<Entry> = tree
        .list()
        .into_iter()
        .filter(|p| p.starts_with(BLS_DIR) && p.ends_with(".conf"))
        .filter_map(|path| {
            let body = text(tree, &path)?;
            let field = |key: &str| {
                body.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .filter(|rest| rest.starts_with(' '))
                        .map(|rest| rest.trim().to_string())
                })
            };
            let id = path
                .strip_prefix(BLS_DIR)?
                .strip_suffix(".conf")?
                .to_string();
            let initrd = field("initrd").unwrap_or_default();
            Some(Entry {
                id,
                title: field("title").unwrap_or_default(),
                kernel: on_boot(&field("linux")?),
                initrd: on_boot(initrd.split_whitespace().next().unwrap_or_default()),
            })
        })
        .collect();
    // GRUB lists BLS entries newest version first.
    entries.sort_by(|a, b| b.id.cmp(&a.id));
    entries
}

fn grub_entries(cfg: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current: Option<Entry> = None;
    for line in cfg.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("menuentry '") {
            let title = rest.split('\'').next().unwrap_or_default().to_string();
            current = Some(Entry {
                id: title.clone(),
                title,
                kernel: String::new(),
                initrd: String::new(),
            });
        } else if let Some(entry) = current.as_mut() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("linux16" | "linux") => {
                    entry.kernel = on_boot(words.next().unwrap_or_default())
                }
                Some("initrd16" | "initrd") => {
                    entry.initrd = on_boot(words.next().unwrap_or_default())
                }
                Some("}") => entries.extend(current.take()),
                _ => {}
            }
        }
    }
    entries
}

/// The entries in menu order.
pub fn entries(tree: &Tree) -> Vec<Entry> {
    if uses_bls(tree) {
        bls_entries(tree)
    } else {
        text(tree, GRUB_CFG)
            .map(|cfg| grub_entries(&cfg))
            .unwrap_or_default()
    }
}

fn saved_entry(tree: &Tree) -> Option<String> {
    text(tree, GRUBENV)?
        .lines()
        .find_map(|l| l.strip_prefix("saved_entry="))
        .map(str::to_string)
}

fn set_saved_entry(tree: &Tree, id: &str) {
    // The environment block is a fixed 1 KiB, padded with '#'.
    let mut block = format!("# GRUB Environment Block\nsaved_entry={id}\n");
    let pad = 1024usize.saturating_sub(block.len());
    block.push_str(&"#".repeat(pad));
    let _ = tree.write(GRUBENV, block.as_bytes());
}

/// What boots when nobody touches the console.
pub fn default(tree: &Tree) -> Option<Entry> {
    let entries = entries(tree);
    let saved = saved_entry(tree);
    entries
        .iter()
        .find(|e| Some(&e.id) == saved.as_ref())
        .or(entries.first())
        .cloned()
}

/// The newest entry that is not leapp's: what an operator picks at the
/// console to bring back a host stopped in the upgrade initramfs.
pub fn previous(tree: &Tree) -> Option<Entry> {
    entries(tree).into_iter().find(|e| !e.is_upgrade())
}

fn machine_id(tree: &Tree) -> String {
    text(tree, "/etc/machine-id")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".repeat(32))
}

/// Adds an entry (`grubby --add-kernel K --initrd I --title T [--make-default]`).
pub fn add(tree: &Tree, title: &str, kernel: &str, initrd: &str, make_default: bool) {
    let relative = |p: &str| p.strip_prefix("/boot").unwrap_or(p).to_string();
    let id = if uses_bls(tree) {
        let release = kernel.strip_prefix("/boot/vmlinuz-").unwrap_or(kernel);
        let id = format!("{}-{release}", machine_id(tree));
        let body = format!(
            "title {title}\nversion {release}\nlinux {}\ninitrd {}\noptions $kernelopts\ngrub_class kernel\n",
            relative(kernel),
            relative(initrd)
        );
        let _ = tree.write(&format!("{BLS_DIR}{id}.conf"), body.as_bytes());
        id
    } else {
        let mut cfg = text(tree, GRUB_CFG).unwrap_or_default();
        let block = format!(
            "menuentry '{title}' --class red --class gnu-linux --class gnu --class os {{\n\
             \tload_video\n\tinsmod xfs\n\tlinux16 {} root=/dev/mapper/rhel-root ro crashkernel=auto\n\
             \tinitrd16 {}\n}}\n",
            relative(kernel),
            relative(initrd)
        );
        // grubby puts a new entry first, as the newest.
        let at = cfg.find("menuentry '").unwrap_or(cfg.len());
        cfg.insert_str(at, &block);
        let _ = tree.write(GRUB_CFG, cfg.as_bytes());
        title.to_string()
    };
    if make_default {
        set_saved_entry(tree, &id);
    }
}

/// `grubby --remove-kernel PATH`: removes its entries; if the default went,
/// the first remaining entry becomes the default. Returns how many went.
pub fn remove_kernel(tree: &Tree, kernel: &str) -> usize {
    let was_default = default(tree).is_some_and(|e| e.kernel == kernel);
    let gone: Vec<Entry> = entries(tree)
        .into_iter()
        .filter(|e| e.kernel == kernel)
        .collect();
    if uses_bls(tree) {
        for entry in &gone {
            let _ = tree.remove(&format!("{BLS_DIR}{}.conf", entry.id));
        }
    } else if let Some(cfg) = text(tree, GRUB_CFG) {
        let _ = tree.write(GRUB_CFG, without_grub_entries(&cfg, kernel).as_bytes());
    }
    if was_default && let Some(first) = entries(tree).first() {
        set_saved_entry(tree, &first.id);
    }
    gone.len()
}

fn without_grub_entries(cfg: &str, kernel: &str) -> String {
    let relative = kernel.strip_prefix("/boot").unwrap_or(kernel);
    let mut out = String::new();
    let mut block = String::new();
    let mut inside = false;
    for line in cfg.split_inclusive('\n') {
        if line.trim_start().starts_with("menuentry '") {
            inside = true;
        }
        if inside {
            block.push_str(line);
            if line.trim() == "}" {
                inside = false;
                let boots_it = block.lines().any(|l| {
                    let mut w = l.split_whitespace();
                    matches!(w.next(), Some("linux16" | "linux")) && w.next() == Some(relative)
                });
                if !boots_it {
                    out.push_str(&block);
                }
                block.clear();
            }
        } else {
            out.push_str(line);
        }
    }
    out.push_str(&block);
    out
}

/// `grubby --set-default PATH`. False when no entry boots that kernel.
pub fn set_default(tree: &Tree, kernel: &str) -> bool {
    match entries(tree).into_iter().find(|e| e.kernel == kernel) {
        Some(entry) => {
            set_saved_entry(tree, &entry.id);
            true
        }
        None => false,
    }
}

/// The title an installer or a kernel package gives a RHEL-family entry.
fn title_for(os_name: &str, release: &str, version: &str) -> String {
    format!("{os_name} ({release}) {version}")
}

/// Writes the boot loader an installed system has, when the tree has none:
/// one entry per kernel in /boot, the newest the default.
pub fn ensure(tree: &Tree, os_major: u32, os_name: &str, version: &str) {
    if tree.read(GRUB_CFG).is_ok() || uses_bls(tree) {
        return;
    }
    let mut kernels: Vec<String> = tree
        .list()
        .into_iter()
        .filter(|p| p.starts_with("/boot/vmlinuz-") && p.as_str() != UPGRADE_KERNEL)
        .collect();
    kernels.sort();
    if os_major >= 8 {
        let _ = tree.write(
            GRUB_CFG,
            b"### generated by grub2-mkconfig\ninsmod blscfg\nblscfg\n",
        );
    } else {
        let _ = tree.write(GRUB_CFG, b"### generated by grub2-mkconfig\n");
    }
    for kernel in &kernels {
        let release = kernel.trim_start_matches("/boot/vmlinuz-");
        add(
            tree,
            &title_for(os_name, release, version),
            kernel,
            &format!("/boot/initramfs-{release}.img"),
            true,
        );
    }
}

/// Adds the entry of a kernel a migration installed and makes it the default,
/// switching an EL7 loader to BLS when the system becomes EL8 or later.
pub fn install_kernel(tree: &Tree, release: &str, os_major: u32, os_name: &str, version: &str) {
    if os_major >= 8 && !uses_bls(tree) {
        let old = entries(tree);
        let _ = tree.write(
            GRUB_CFG,
            b"### generated by grub2-mkconfig\ninsmod blscfg\nblscfg\n",
        );
        for entry in old.iter().filter(|e| !e.is_upgrade()).rev() {
            add(tree, &entry.title, &entry.kernel, &entry.initrd, false);
        }
    }
    add(
        tree,
        &title_for(os_name, release, version),
        &format!("/boot/vmlinuz-{release}"),
        &format!("/boot/initramfs-{release}.img"),
        true,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tree(files: &[(&str, &str)]) -> Tree {
        Tree::memory(
            files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn an_el7_loader_adds_a_menuentry_by_title_and_removes_it_by_kernel() {
        let t = tree(&[("/boot/vmlinuz-3.10.0-1160.el7.x86_64", "k")]);
        ensure(&t, 7, "Red Hat Enterprise Linux Server", "7.9 (Maipo)");
        let first = default(&t).expect("a default");
        assert_eq!(first.release(), "3.10.0-1160.el7.x86_64");
        add(&t, UPGRADE_TITLE, UPGRADE_KERNEL, UPGRADE_INITRD, true);
        let cfg = text(&t, GRUB_CFG).expect("grub.cfg");
        assert!(cfg.contains("menuentry 'RHEL-Upgrade-Initramfs'"), "{cfg}");
        assert!(!t.list().iter().any(|p| p.starts_with(BLS_DIR)));
        assert_eq!(default(&t).expect("default").title, UPGRADE_TITLE);
        assert_eq!(remove_kernel(&t, UPGRADE_KERNEL), 1);
        assert_eq!(default(&t), Some(first));
        assert!(!text(&t, GRUB_CFG).expect("cfg").contains(UPGRADE_TITLE));
    }

    #[test]
    fn an_el8_loader_names_the_upgrade_entry_after_the_machine_id_not_the_title() {
        let t = tree(&[
            ("/etc/machine-id", "abc\n"),
            ("/boot/vmlinuz-4.18.0-553.el8_10.x86_64", "k"),
        ]);
        ensure(&t, 8, "Red Hat Enterprise Linux", "8.10 (Ootpa)");
        add(&t, UPGRADE_TITLE, UPGRADE_KERNEL, UPGRADE_INITRD, true);
        assert!(
            t.read("/boot/loader/entries/abc-upgrade.x86_64.conf")
                .is_ok()
        );
        assert!(
            t.read("/boot/loader/entries/RHEL-Upgrade-Initramfs.conf")
                .is_err()
        );
        assert!(default(&t).expect("default").is_upgrade());
        assert_eq!(
            previous(&t).expect("previous").release(),
            "4.18.0-553.el8_10.x86_64"
        );
        remove_kernel(&t, UPGRADE_KERNEL);
        assert!(!default(&t).expect("default").is_upgrade());
    }

    #[test]
    fn an_upgrade_to_el8_switches_the_loader_to_bls() {
        let t = tree(&[
            ("/etc/machine-id", "abc\n"),
            ("/boot/vmlinuz-3.10.0-1160.el7.x86_64", "k"),
        ]);
        ensure(&t, 7, "Red Hat Enterprise Linux Server", "7.9 (Maipo)");
        install_kernel(
            &t,
            "4.18.0-553.el8_10.x86_64",
            8,
            "Red Hat Enterprise Linux",
            "8.10 (Ootpa)",
        );
        assert_eq!(
            default(&t).expect("default").release(),
            "4.18.0-553.el8_10.x86_64"
        );
        assert!(
            t.read("/boot/loader/entries/abc-3.10.0-1160.el7.x86_64.conf")
                .is_ok()
        );
    }
}
