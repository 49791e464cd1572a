//! The agent's facts collected from emulated hosts of every simulated profile.

use std::collections::BTreeMap;

use mf_agent::facts::collect;
use mf_sim::{EmulatedHost, SimHostSpec, SimProfile};

fn sim(profile: SimProfile) -> EmulatedHost {
    EmulatedHost::simulated(&SimHostSpec::example(profile))
}

#[test]
fn a_simulated_centos_host_is_fully_known() {
    let facts = collect(&sim(SimProfile::Centos79), &BTreeMap::new());
    assert_eq!(facts.unknown, vec![]);
    let os = facts.os.as_ref().expect("os known");
    assert_eq!((os.id.as_str(), os.version.as_str()), ("centos", "7.9"));
    assert_eq!(
        facts.kernel.as_deref(),
        Some("3.10.0-1160.119.1.el7.x86_64")
    );
    assert_eq!(facts.arch.as_deref(), Some("x86_64"));
    assert_eq!(facts.fqdn.as_deref(), Some("h.example.com"));
    assert_eq!(facts.uptime_seconds, Some(100));
    assert_eq!(facts.package_count, Some(5));
    assert_eq!(facts.packages["convert2rhel"], "2.1.0-1.el7.noarch");
    assert_eq!(facts.filesystems.len(), 3);
}

#[test]
fn every_profile_reports_its_own_os() {
    let expected = [
        (SimProfile::Centos79, "centos", "7.9"),
        (SimProfile::Oracle79, "ol", "7.9"),
        (SimProfile::Rhel79, "rhel", "7.9"),
        (SimProfile::Rhel810, "rhel", "8.10"),
        (SimProfile::Rocky810, "rocky", "8.10"),
    ];
    for (profile, id, version) in expected {
        let os = collect(&sim(profile), &BTreeMap::new())
            .os
            .expect("os known");
        assert_eq!(
            (os.id.as_str(), os.version.as_str()),
            (id, version),
            "{profile:?}"
        );
    }
}

#[test]
fn uptime_and_small_free_space_changes_are_not_material() {
    let host = sim(SimProfile::Rhel79);
    let a = collect(&host, &BTreeMap::new());
    let mut b = a.clone();
    b.uptime_seconds = Some(999_999);
    b.filesystems[0].free_bytes += 1024;
    assert!(!a.materially_differs(&b));
    b.labels.insert("app".into(), "billing".into());
    assert!(a.materially_differs(&b));
}
