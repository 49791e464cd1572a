//! The layering, enforced rather than described: the crate graph from
//! `cargo metadata` (normal dependencies, transitively) and the source tree
//! are checked against the rules ARCHITECTURE.md states. Each rule is also
//! run against a graph or a source with a forbidden edge added, so that a
//! rule that can no longer fail is caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Package name -> the package names it depends on directly (normal
/// dependencies only: tests and build scripts may use more).
type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds tests/")
        .to_path_buf()
}

fn load_graph() -> Result<Graph> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut graph = Graph::new();
    for node in metadata["resolve"]["nodes"].as_array().context("nodes")? {
        let name = names[node["id"].as_str().context("id")?].to_string();
        let deps = node["deps"]
            .as_array()
            .context("deps")?
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|d| names.get(d["pkg"].as_str()?).map(|n| n.to_string()))
            .collect();
        graph
            .entry(name)
            .or_default()
            .extend::<BTreeSet<String>>(deps);
    }
    Ok(graph)
}

/// Everything `package` links, itself excluded.
fn closure(graph: &Graph, package: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![package.to_string()];
    while let Some(next) = stack.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

/// The rules, each with the crates it forbids; every breach is named.
fn violations(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    let mut forbid = |package: &str, forbidden: &[&str], why: &str| {
        let links = closure(graph, package);
        for f in forbidden {
            if links.contains(*f) {
                found.push(format!("{package} links {f}: {why}"));
            }
        }
    };
    let ours = [
        "mf-proto",
        "mf-core",
        "mf-pki",
        "mf-agent",
        "mf-sim",
        "mf-coordinator",
        "mfctl",
        "mf-demo",
    ];
    forbid(
        "mf-core",
        &ours,
        "the core is the bottom of our crates: it depends on none of them",
    );
    forbid(
        "mf-core",
        &["tokio", "tonic", "sled", "prost", "axum", "hyper", "rustls"],
        "the core is pure logic: no runtime, RPC, storage or TLS",
    );
    forbid(
        "mf-proto",
        &ours,
        "proto is the wire contract only; conversions live at each end",
    );
    forbid(
        "mf-pki",
        &["tokio", "tonic", "sled", "mf-core", "mf-proto"],
        "the PKI issues and reads certificates; it knows no runtime or wire",
    );
    forbid(
        "mf-agent",
        &[
            "mf-coordinator",
            "mf-sim",
            "mfctl",
            "mf-pki",
            "sled",
            "mf-demo",
        ],
        "the agent talks to the coordinator only through proto, and ships without the emulation",
    );
    forbid(
        "mf-coordinator",
        &["mf-agent", "mf-sim", "mfctl", "mf-demo"],
        "the coordinator is the server only: it never embeds an agent or the CLI",
    );
    forbid(
        "mfctl",
        &["mf-coordinator", "mf-agent", "mf-sim", "sled", "mf-demo"],
        "mfctl talks only through the admin API",
    );
    forbid(
        "mf-sim",
        &["mf-coordinator", "mfctl", "sled"],
        "the emulation stands for a host, under the agent only",
    );
    for (package, deps) in graph {
        if deps.contains("sled") && package != "mf-coordinator" {
            found.push(format!(
                "{package} depends on sled: only the coordinator's store touches it"
            ));
        }
        let links = closure(graph, package);
        if package != "mf-demo" && links.contains("mf-agent") && links.contains("mf-coordinator") {
            found.push(format!(
                "{package} links both ends: only mf-demo may (the demo and the fleet-scale benches)"
            ));
        }
    }
    found
}

#[test]
fn the_crate_graph_keeps_its_layers() -> Result<()> {
    let graph = load_graph()?;
    for crate_name in ["mf-core", "mf-agent", "mf-coordinator", "mfctl", "mf-demo"] {
        assert!(
            graph.contains_key(crate_name),
            "{crate_name} is not in the graph"
        );
    }
    let found = violations(&graph);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
    Ok(())
}

#[test]
fn every_forbidden_edge_is_caught() -> Result<()> {
    let graph = load_graph()?;
    let cases = [
        ("mf-core", "tokio", "the core is pure logic"),
        (
            "mf-core",
            "mf-proto",
            "the core is the bottom of our crates",
        ),
        ("mf-proto", "mf-core", "proto is the wire contract only"),
        (
            "mf-coordinator",
            "mf-agent",
            "the coordinator is the server only",
        ),
        (
            "mfctl",
            "mf-coordinator",
            "mfctl talks only through the admin API",
        ),
        ("mf-agent", "mf-sim", "ships without the emulation"),
        ("mfctl", "sled", "only the coordinator's store touches it"),
        // A transitive edge counts as much as a direct one.
        ("mf-pki", "tokio", "the PKI issues and reads certificates"),
    ];
    for (from, to, why) in cases {
        let mut broken = graph.clone();
        broken
            .get_mut(from)
            .with_context(|| format!("{from} is not in the graph"))?
            .insert(to.to_string());
        let found = violations(&broken);
        assert!(
            found.iter().any(|v| v.contains(why)),
            "adding {from} -> {to} was not caught: {found:?}"
        );
    }
    Ok(())
}

/// Source files of the crates we ship or run, below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `needle` stands in `line` as a path of its own, not as the end of
/// a longer name (`MalformedCommand::new(` is not `Command::new(`).
fn names(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Code lines (comments left out) of `text` that name one of `needles`.
fn code_mentions(text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| needles.iter().any(|n| names(l, n)))
        .map(str::to_string)
        .collect()
}

const SLED: &[&str] = &["sled::", "use sled"];
const SPAWN: &[&str] = &[
    "process::Command",
    "tokio::process",
    "Command::new(",
    "posix_spawn",
    "libc::fork",
];

/// Files allowed to name a capability, relative to the workspace root.
fn source_breaches(
    root: &Path,
    needles: &[&str],
    allowed: &[&str],
    crates: &[&str],
) -> Vec<String> {
    let mut files = Vec::new();
    for krate in crates {
        rust_files(&root.join(krate).join("src"), &mut files);
        rust_files(&root.join(krate).join("benches"), &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        let relative = relative.to_string_lossy().to_string();
        if allowed.iter().any(|a| relative.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in code_mentions(&text, needles) {
            found.push(format!("{relative}: {line}"));
        }
    }
    found
}

const PRODUCT_CRATES: &[&str] = &[
    "proto",
    "core",
    "pki",
    "agent",
    "sim",
    "coordinator",
    "mfctl",
    "demo",
];

#[test]
fn only_the_store_names_sled_and_only_the_host_module_spawns_processes() {
    let root = workspace_root();
    let sled = source_breaches(&root, SLED, &["coordinator/src/store/"], PRODUCT_CRATES);
    assert!(
        sled.is_empty(),
        "sled outside the store:\n{}",
        sled.join("\n")
    );
    let spawn = source_breaches(&root, SPAWN, &["agent/src/host/"], PRODUCT_CRATES);
    assert!(
        spawn.is_empty(),
        "a process spawned outside agent/src/host:\n{}",
        spawn.join("\n")
    );
}

#[test]
fn the_source_scan_catches_a_breach() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("coordinator/src/inventory");
    std::fs::create_dir_all(&src)?;
    std::fs::write(
        src.join("sneaky.rs"),
        "// sled:: in a comment is fine\nfn f() { let _ = sled::open(\"x\"); }\n\
         fn g() { std::process::Command::new(\"sh\"); }\n\
         fn h() { MalformedCommand::new(\"not a process\"); }\n",
    )?;
    let sled = source_breaches(
        dir.path(),
        SLED,
        &["coordinator/src/store/"],
        &["coordinator"],
    );
    assert_eq!(sled.len(), 1, "{sled:?}");
    assert!(sled[0].contains("sneaky.rs"));
    let spawn = source_breaches(dir.path(), SPAWN, &["agent/src/host/"], &["coordinator"]);
    assert_eq!(spawn.len(), 1, "{spawn:?}");
    Ok(())
}
