//! `/etc/migration-results`: both tools append an activity per run, each in
//! its own shape. convert2rhel (breadcrumbs.py): `version` "1", the OS fields
//! are objects `{id, name, version}` and `target_os` stays "null" unless a
//! conversion succeeded. leapp (commands/upgrade/breadcrumbs.py): `version`
//! is leapp's, the OS fields are strings, `env` carries the `LEAPP_*`
//! variables (among them `LEAPP_CURRENT_PHASE`), and an upgrade appends one
//! entry on the source system, two in the initramfs and one at FirstBoot.

use serde_json::{Value, json};

use super::tree::Tree;

const PATH: &str = "/etc/migration-results";
/// The leapp framework version the emulated packages carry.
const LEAPP_VERSION: &str = "0.19.0";

pub fn append(tree: &Tree, entry: Value) {
    let mut document: Value = tree
        .read(PATH)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|d: &Value| d.get("activities").is_some_and(Value::is_array))
        .unwrap_or_else(|| json!({"activities": []}));
    if let Some(list) = document.get_mut("activities").and_then(Value::as_array_mut) {
        list.push(entry);
    }
    // A failure here would be the tool's own logging failure: it carries on.
    let _ = tree.write(
        PATH,
        serde_json::to_string_pretty(&document)
            .unwrap_or_default()
            .as_bytes(),
    );
}

/// `{id, name, version}` as convert2rhel records an OS: `id` is the release
/// codename, `version` the repr of its version tuple.
pub fn convert2rhel_os(name: &str, codename: &str, version: &str) -> Value {
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    json!({
        "id": codename,
        "name": name,
        "version": format!("Version(major={major}, minor={minor})"),
    })
}

/// A convert2rhel activity (`analysis` or `conversion`).
pub fn convert2rhel(
    activity: &str,
    success: bool,
    argv: &[&str],
    source_os: Value,
    target_os: Option<Value>,
    nevra: &str,
) -> Value {
    let now = super::now_rfc3339();
    json!({
        "version": "1",
        "activity": activity,
        "packages": [{"nevra": nevra, "signature": "RSA/SHA256, Key ID 199e2f91fd431d51"}],
        "executed": std::iter::once("/usr/bin/convert2rhel").chain(argv.iter().copied()).collect::<Vec<_>>().join(" "),
        "success": success,
        "activity_started": now,
        "activity_ended": now,
        "source_os": source_os,
        "target_os": target_os.unwrap_or(json!("null")),
        "env": {},
        "run_id": "null",
    })
}

/// A leapp activity (`preupgrade` or `upgrade`) ending in `phase`.
pub fn leapp(
    activity: &str,
    success: bool,
    argv: &[&str],
    source: &str,
    target: &str,
    run_id: &str,
    phase: &str,
) -> Value {
    let now = super::now_rfc3339();
    json!({
        "activity": activity,
        "packages": [],
        "leapp_file_changes": [],
        "executed": std::iter::once("/usr/bin/leapp").chain(argv.iter().copied()).collect::<Vec<_>>().join(" "),
        "success": success,
        "activity_started": now,
        "activity_ended": now,
        "source_os": format!("Red Hat Enterprise Linux {source}"),
        "target_os": format!("Red Hat Enterprise Linux {target}"),
        "env": {"LEAPP_CURRENT_PHASE": phase, "LEAPP_EXECUTION_ID": run_id},
        "run_id": run_id,
        "version": LEAPP_VERSION,
    })
}
