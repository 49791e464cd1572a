//! A site's snapshot hook, as a hypervisor would answer it: `take` keeps the
//! whole machine, `revert` brings it back at the next boot (the guest goes
//! down with the revert), `remove` drops it. Every call is logged with its
//! environment to `/.mf-sim/hook.log`, so tests can see what the hook got.

use super::CommandOutput;
use super::scenario::Hook;
use super::state::{BootAction, MachineState};
use super::tree::Tree;

const LOG: &str = "/.mf-sim/hook.log";

pub fn run(tree: &Tree, hook: &Hook, args: &[&str], env: &[(&str, &str)]) -> CommandOutput {
    let action = args.first().copied().unwrap_or_default();
    let name = env
        .iter()
        .find(|(k, _)| *k == "MF_SNAPSHOT")
        .map(|(_, v)| (*v).to_string())
        .unwrap_or_default();
    let mut log = tree
        .read(LOG)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    log.push_str(&format!("{action} {}\n", vars.join(" ")));
    let _ = tree.write(LOG, log.as_bytes());
    let fail = |message: &str| CommandOutput {
        status: 1,
        stdout: String::new(),
        stderr: format!("{message}\n"),
    };
    if hook.fail.iter().any(|f| f == action) {
        return fail(&format!("{action}: the hypervisor refused (simulated)"));
    }
    if name.is_empty() {
        return fail("MF_SNAPSHOT is not set");
    }
    let mut state = MachineState::load(tree);
    match action {
        "take" => {
            let files = tree
                .list()
                .into_iter()
                .filter(|p| !p.starts_with("/proc/"))
                .filter_map(|p| {
                    tree.read(&p)
                        .ok()
                        .map(|c| (p, String::from_utf8_lossy(&c).into_owned()))
                })
                .collect();
            state.machine_snapshots.insert(name.clone(), files);
        }
        "revert" if state.machine_snapshots.contains_key(&name) => {
            state
                .at_boot
                .push(BootAction::RestoreMachine { name: name.clone() });
            state.reboot_pending = true;
        }
        "remove" if state.machine_snapshots.remove(&name).is_some() => {}
        "revert" | "remove" => return fail(&format!("no snapshot {name}")),
        other => return fail(&format!("unknown action {other:?}")),
    }
    state.save(tree);
    CommandOutput {
        status: 0,
        stdout: format!("{action} {name}: done\n"),
        stderr: String::new(),
    }
}
