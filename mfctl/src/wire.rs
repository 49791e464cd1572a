//! mfctl's edge with the wire: the facts the coordinator returns, as the core's
//! type, for JSON output in the same shape the coordinator stores them.

use mf_core::facts::{Facts, Filesystem, OsInfo, UnknownFact};
use mf_proto::v1 as pb;

/// The coordinator validated these facts on the way in; mfctl only reshapes them.
pub fn facts_from_wire(wire: pb::Facts) -> Facts {
    Facts {
        os: wire.os.map(|os| OsInfo {
            id: os.id,
            name: os.name,
            version: os.version,
        }),
        kernel: wire.kernel,
        arch: wire.arch,
        hostname: wire.hostname,
        fqdn: wire.fqdn,
        machine_id: wire.machine_id,
        boot_id: wire.boot_id,
        uptime_seconds: wire.uptime_seconds,
        cpus: wire.cpus,
        memory_bytes: wire.memory_bytes,
        filesystems: wire
            .filesystems
            .into_iter()
            .map(|fs| Filesystem {
                path: fs.path,
                free_bytes: fs.free_bytes,
                total_bytes: fs.total_bytes,
            })
            .collect(),
        package_count: wire.package_count,
        packages: wire.packages.into_iter().collect(),
        agent_version: wire.agent_version,
        labels: wire.labels.into_iter().collect(),
        unknown: wire
            .unknown
            .into_iter()
            .map(|u| UnknownFact {
                fact: u.fact,
                reason: u.reason,
            })
            .collect(),
    }
}
