//! Plans a realistic fleet from a seed: the OS mix of an estate still on EL7,
//! applications of a few dozen VMs each, two datacenters, hypervisors holding
//! about fifteen VMs. The same seed gives the same fleet.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::emulated::ScenarioFinding;
use crate::emulated::{SimHostSpec, SimProfile};
use mf_agent::facts::WATCHED_FILESYSTEMS;
use mf_agent::host::FsUsage;

/// Shape of the fleet to plan.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub hosts: usize,
    pub seed: u64,
    /// Prefix of every host id, so that two fleets can share a coordinator.
    pub prefix: String,
    /// Every host a RHEL 7.9 ready for its upgrade: no findings, room on
    /// every filesystem (the wave benchmark's fleet). Labels stay as drawn.
    pub ready_rhel79: bool,
}

/// One simulated host and its agent's labels.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
    pub spec: SimHostSpec,
}

/// Weights of the reference estate: mostly CentOS 7, then RHEL 7, RHEL 8 and a
/// tail of Oracle Linux and Rocky.
const PROFILE_WEIGHTS: [(SimProfile, u32); 5] = [
    (SimProfile::Centos79, 45),
    (SimProfile::Rhel79, 25),
    (SimProfile::Rhel810, 15),
    (SimProfile::Oracle79, 8),
    (SimProfile::Rocky810, 7),
];
const DATACENTERS: [&str; 2] = ["dc1", "dc2"];

/// Findings seen on real RHEL 7 hosts (keys and titles from real leapp reports):
/// (key, title, severity, blocking, share of hosts in percent).
const LEAPP_FINDINGS: [(&str, &str, &str, bool, u32); 6] = [
    (
        "d35f6c6b1b1fa6924ef442e3670d90fa92f0d54b",
        "Missing required answers in the answer file",
        "high",
        true,
        6,
    ),
    (
        "3d21e8cc9e1c09dc60429de7716165787e99515f",
        "Possible problems with remote login using root account",
        "high",
        true,
        4,
    ),
    (
        "b6fd580136aaf67fa42d68fb75b27f6e13f47c2d",
        "Detected loaded kernel drivers which have been removed in RHEL 8. Upgrade cannot proceed.",
        "high",
        true,
        2,
    ),
    (
        "0c98585b1d8d252eb540bf61560094f3495351f5",
        "Difference in Python versions and support in RHEL 8",
        "high",
        false,
        60,
    ),
    (
        "c4222ebd18730a76f6bc7b3b66df898b106e6554",
        "chrony using default configuration",
        "medium",
        false,
        25,
    ),
    (
        "13f0791ae5f19f50e7d0d606fb6501f91b1efb2c",
        "Packages not signed by Red Hat found on the system",
        "high",
        false,
        15,
    ),
];

/// Findings convert2rhel raises (ACTION::MESSAGE ids of convert2rhel 2.x).
const CONVERT2RHEL_FINDINGS: [(&str, &str, &str, bool, u32); 4] = [
    (
        "IS_LOADED_KERNEL_LATEST::INVALID_KERNEL_VERSION",
        "Invalid kernel version detected",
        "high",
        true,
        5,
    ),
    (
        "PACKAGE_UPDATES::OUT_OF_DATE_PACKAGES",
        "Outdated packages detected",
        "medium",
        false,
        40,
    ),
    (
        "LIST_THIRD_PARTY_PACKAGES::THIRD_PARTY_PACKAGE_DETECTED",
        "Third party packages detected",
        "medium",
        false,
        20,
    ),
    (
        "CHECK_FIREWALLD_AVAILABILITY::FIREWALLD_MODULES_CLEANUP_ON_EXIT_CONFIG",
        "Firewalld is set to cleanup modules after exit",
        "high",
        true,
        3,
    ),
];

/// What the pre-check of this profile's next step will find, drawn per host.
fn draw_findings(rng: &mut StdRng, profile: SimProfile) -> Vec<ScenarioFinding> {
    let table: &[(&str, &str, &str, bool, u32)] = match profile {
        SimProfile::Rhel79 | SimProfile::Rhel810 => &LEAPP_FINDINGS,
        SimProfile::Centos79 | SimProfile::Oracle79 | SimProfile::Rocky810 => {
            &CONVERT2RHEL_FINDINGS
        }
    };
    table
        .iter()
        .filter(|(_, _, _, _, percent)| rng.gen_range(0..100) < *percent)
        .map(|(key, title, severity, blocking, _)| ScenarioFinding {
            key: (*key).to_string(),
            title: (*title).to_string(),
            summary: format!("{title} (simulated host)"),
            severity: (*severity).to_string(),
            blocking: *blocking,
            hint: Some("See the tool's report for the remediation steps.".to_string()),
            error: false,
            // The dialog of the commonest RHEL 7 inhibitor, answered with
            // `leapp answer` (or the agent's configured answers).
            answer: (*title == "Missing required answers in the answer file")
                .then(|| "remove_pam_pkcs11_module_check.confirm".to_string()),
            skips: Vec::new(),
        })
        .collect()
}
const HOSTS_PER_APP: usize = 16;
const HOSTS_PER_HYPERVISOR: usize = 15;

/// A RHEL 7.9 whose upgrade pre-check passes.
fn make_ready_rhel79(spec: &mut SimHostSpec) {
    spec.profile = SimProfile::Rhel79;
    spec.findings.clear();
    for fs in spec.filesystems.values_mut() {
        fs.free_bytes = fs.free_bytes.max(fs.total_bytes / 2);
    }
}

pub fn plan_fleet(spec: &FleetSpec) -> Vec<HostPlan> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let ready = spec.ready_rhel79;
    let apps = spec.hosts.div_ceil(HOSTS_PER_APP).max(1);
    let hypervisors_per_dc = spec
        .hosts
        .div_ceil(HOSTS_PER_HYPERVISOR * DATACENTERS.len())
        .max(1);
    let total_weight: u32 = PROFILE_WEIGHTS.iter().map(|(_, w)| w).sum();
    (0..spec.hosts)
        .map(|index| {
            let mut pick = rng.gen_range(0..total_weight);
            let profile = PROFILE_WEIGHTS
                .iter()
                .find(|(_, w)| {
                    let hit = pick < *w;
                    pick = pick.saturating_sub(*w);
                    hit
                })
                .map_or(SimProfile::Centos79, |(p, _)| *p);
            let app = format!("app-{:03}", rng.gen_range(0..apps));
            let dc = DATACENTERS[rng.gen_range(0..DATACENTERS.len())];
            let hypervisor = format!("hv-{dc}-{:03}", rng.gen_range(0..hypervisors_per_dc));
            let hostname = format!("{}-{app}-{index:05}", spec.prefix);
            let domain = format!("{dc}.example.com");
            let host_id = format!("{hostname}.{domain}");
            let labels = BTreeMap::from([
                ("app".to_string(), app),
                ("dc".to_string(), dc.to_string()),
                ("hypervisor".to_string(), hypervisor),
            ]);
            let gib = |n: u64| n << 30;
            let filesystems = WATCHED_FILESYSTEMS
                .iter()
                .map(|path| {
                    let total = match *path {
                        "/boot" => gib(1),
                        "/var" => gib(rng.gen_range(8..64)),
                        _ => gib(rng.gen_range(20..100)),
                    };
                    let free = total / 100 * rng.gen_range(5..80);
                    (
                        path.to_string(),
                        FsUsage {
                            free_bytes: free,
                            total_bytes: total,
                        },
                    )
                })
                .collect();
            let mut spec = SimHostSpec {
                profile,
                hostname,
                domain,
                machine_id: format!("{:032x}", rng.r#gen::<u128>()),
                boot_id: uuid_like(rng.r#gen::<u128>()),
                cpus: [2, 4, 8, 16][rng.gen_range(0..4)],
                memory_bytes: gib([4, 8, 16, 32, 64][rng.gen_range(0..5)]),
                other_packages: rng.gen_range(350..1200),
                filesystems,
                uptime_seconds: rng.gen_range(3_600..40_000_000),
                findings: draw_findings(&mut rng, profile),
                failures: Vec::new(),
                hook: None,
            };
            if ready {
                make_ready_rhel79(&mut spec);
            }
            HostPlan {
                host_id,
                labels,
                spec,
            }
        })
        .collect()
}

fn uuid_like(n: u128) -> String {
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_fleet() {
        let spec = FleetSpec {
            hosts: 50,
            seed: 7,
            prefix: "sim".into(),
            ready_rhel79: false,
        };
        // The whole plan, as the README promises: ids, labels, facts and
        // the findings each host will show.
        let a = plan_fleet(&spec);
        let b = plan_fleet(&spec);
        assert_eq!(format!("{a:#?}"), format!("{b:#?}"));
        assert!(
            a.iter().any(|h| !h.spec.findings.is_empty()),
            "the fleet has findings to compare"
        );
        let other = plan_fleet(&FleetSpec { seed: 8, ..spec });
        assert_ne!(format!("{a:?}"), format!("{other:?}"));
    }

    #[test]
    fn a_large_fleet_has_every_profile_and_unique_ids() {
        let plan = plan_fleet(&FleetSpec {
            hosts: 2000,
            seed: 1,
            prefix: "sim".into(),
            ready_rhel79: false,
        });
        let ids: std::collections::BTreeSet<_> = plan.iter().map(|h| &h.host_id).collect();
        assert_eq!(ids.len(), 2000);
        for profile in SimProfile::ALL {
            let share = plan.iter().filter(|h| h.spec.profile == profile).count();
            assert!(share > 60, "{profile:?} only {share} of 2000");
        }
        for host in &plan {
            assert!(["dc1", "dc2"].contains(&host.labels["dc"].as_str()));
            assert!(host.labels["hypervisor"].starts_with(&format!("hv-{}-", host.labels["dc"])));
        }
    }
}
