//! The emulated machine's own state, kept in its tree (`/.mf-sim/state.json`)
//! so that it survives the agent process being killed to play a reboot: what
//! happens at the next boot, the LVM snapshots and their captured contents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tree::Tree;

const PATH: &str = "/.mf-sim/state.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MachineState {
    /// A reboot was asked for and has not happened yet.
    pub reboot_pending: bool,
    pub boots: u64,
    /// What the next boot does, in order.
    pub at_boot: Vec<BootAction>,
    pub snapshots: Vec<Snapshot>,
    /// Whole-machine snapshots taken by a site hook: name -> files.
    pub machine_snapshots: BTreeMap<String, BTreeMap<String, String>>,
    /// The machine did not come back from its last reboot.
    pub down: bool,
    /// Why it is down: stopped in the upgrade initramfs's emergency shell
    /// (someone at the console can bring it back), rather than gone.
    pub emergency_shell: bool,
    /// The target `leapp upgrade` prepared; the upgrade initramfs reads it
    /// (real leapp keeps it in /var/lib/leapp/leapp.db).
    pub leapp_target: Option<String>,
    /// The boot entry chosen at the console for the next boot only.
    pub boot_once: Option<String>,
    /// When leapp_resume.service finishes FirstBoot (unix ms), while it runs.
    pub first_boot_due_unix_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum BootAction {
    /// `lvconvert --merge` completes when the volumes are activated.
    MergeSnapshots,
    /// A hypervisor revert: the whole machine as the snapshot had it.
    RestoreMachine { name: String },
}

/// An LVM snapshot and the files of its origin volume when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub vg: String,
    pub name: String,
    pub origin: String,
    pub size_bytes: u64,
    pub merging: bool,
    /// Host path -> content (as text; the emulated trees hold text files).
    pub files: BTreeMap<String, String>,
}

impl MachineState {
    pub fn load(tree: &Tree) -> Self {
        tree.read(PATH)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, tree: &Tree) {
        // The emulation's own bookkeeping; a write failure would surface as the
        // next command's failure to find its state.
        let _ = tree.write(
            PATH,
            serde_json::to_string_pretty(self)
                .unwrap_or_default()
                .as_bytes(),
        );
    }
}
