//! `/etc/migration-results`: both tools append an activity per run.

use serde_json::{Value, json};

use super::tree::Tree;

const PATH: &str = "/etc/migration-results";

/// An activity as the tools record it.
pub struct Activity<'a> {
    pub activity: &'a str,
    pub success: bool,
    pub source_os: String,
    pub target_os: String,
    pub run_id: &'a str,
    pub extra: Value,
}

pub fn append(tree: &Tree, activity: Activity<'_>) {
    let mut document: Value = tree
        .read(PATH)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| json!({"activities": []}));
    let mut entry = json!({
        "activity": activity.activity,
        "success": activity.success,
        "source_os": activity.source_os,
        "target_os": activity.target_os,
        "executed": super::now_rfc3339(),
        "run_id": activity.run_id,
        "version": "1.0",
    });
    if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), activity.extra) {
        entry.extend(extra);
    }
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
