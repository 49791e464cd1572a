//! Plans a realistic fleet from a seed: the OS mix of an estate still on EL7,
//! applications of a few dozen VMs each, two datacenters, hypervisors holding
//! about fifteen VMs. The same seed gives the same fleet.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::facts::WATCHED_FILESYSTEMS;
use crate::host::{FsUsage, SimHostSpec, SimProfile};

/// Shape of the fleet to plan.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub hosts: usize,
    pub seed: u64,
    /// Prefix of every host id, so that two fleets can share a coordinator.
    pub prefix: String,
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
const HOSTS_PER_APP: usize = 16;
const HOSTS_PER_HYPERVISOR: usize = 15;

pub fn plan_fleet(spec: &FleetSpec) -> Vec<HostPlan> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
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
            let spec = SimHostSpec {
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
            };
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
        };
        let a: Vec<String> = plan_fleet(&spec).into_iter().map(|h| h.host_id).collect();
        let b: Vec<String> = plan_fleet(&spec).into_iter().map(|h| h.host_id).collect();
        assert_eq!(a, b);
        let other = plan_fleet(&FleetSpec { seed: 8, ..spec });
        assert_ne!(a, other.into_iter().map(|h| h.host_id).collect::<Vec<_>>());
    }

    #[test]
    fn a_large_fleet_has_every_profile_and_unique_ids() {
        let plan = plan_fleet(&FleetSpec {
            hosts: 2000,
            seed: 1,
            prefix: "sim".into(),
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
