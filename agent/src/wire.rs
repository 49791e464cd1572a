//! Converts the agent's domain facts to the wire type. Only session code uses it.

use mf_proto::v1 as pb;

use crate::facts::Facts;

impl From<&Facts> for pb::Facts {
    fn from(facts: &Facts) -> Self {
        pb::Facts {
            os: facts.os.as_ref().map(|os| pb::OsInfo {
                id: os.id.clone(),
                name: os.name.clone(),
                version: os.version.clone(),
            }),
            kernel: facts.kernel.clone().unwrap_or_default(),
            arch: facts.arch.clone().unwrap_or_default(),
            hostname: facts.hostname.clone().unwrap_or_default(),
            fqdn: facts.fqdn.clone().unwrap_or_default(),
            machine_id: facts.machine_id.clone().unwrap_or_default(),
            boot_id: facts.boot_id.clone().unwrap_or_default(),
            uptime_seconds: facts.uptime_seconds,
            cpus: facts.cpus,
            memory_bytes: facts.memory_bytes,
            filesystems: facts
                .filesystems
                .iter()
                .map(|fs| pb::Filesystem {
                    path: fs.path.clone(),
                    free_bytes: fs.free_bytes,
                    total_bytes: fs.total_bytes,
                })
                .collect(),
            package_count: facts.package_count,
            packages: facts.packages.clone().into_iter().collect(),
            agent_version: facts.agent_version.clone(),
            labels: facts.labels.clone().into_iter().collect(),
            unknown: facts
                .unknown
                .iter()
                .map(|u| pb::UnknownFact {
                    fact: u.fact.clone(),
                    reason: u.reason.clone(),
                })
                .collect(),
        }
    }
}
