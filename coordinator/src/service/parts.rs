//! Answers that grow with the fleet leave in parts, each far below the 4 MiB
//! message limit of gRPC clients, so that a fleet of any size can be read:
//! a part holds about `PART_BYTES` of items (one item at least; every item
//! is bounded on its own by the limits on what agents report).

use std::pin::Pin;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use mf_proto::v1 as pb;

/// What a part aims at; a part is at most twice this (hosts and findings).
pub const PART_BYTES: usize = 1 << 20;

pub type PartStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Sends the parts from a task; stops when the client goes away.
pub fn stream<T: Send + 'static>(parts: Vec<T>) -> PartStream<T> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for part in parts {
            if tx.send(Ok(part)).await.is_err() {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Consecutive runs of `items` of about `budget` encoded bytes each.
fn runs<T: Message>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    let mut size = 0;
    for item in items {
        let len = item.encoded_len() + 8;
        if !run.is_empty() && size + len > budget {
            runs.push(std::mem::take(&mut run));
            size = 0;
        }
        size += len;
        run.push(item);
    }
    if !run.is_empty() || runs.is_empty() {
        runs.push(run);
    }
    runs
}

/// The counts in the first part; hosts and findings spread over the parts.
pub fn readiness(report: pb::ReadinessReport, budget: usize) -> Vec<pb::ReadinessReport> {
    let mut hosts = runs(report.hosts, budget).into_iter();
    let mut findings = runs(report.findings, budget).into_iter();
    let mut parts = vec![pb::ReadinessReport {
        counts: report.counts,
        hosts: hosts.next().unwrap_or_default(),
        findings: findings.next().unwrap_or_default(),
    }];
    loop {
        let (h, f) = (hosts.next(), findings.next());
        if h.is_none() && f.is_none() {
            return parts;
        }
        parts.push(pb::ReadinessReport {
            hosts: h.unwrap_or_default(),
            findings: f.unwrap_or_default(),
            counts: None,
        });
    }
}

/// The first part is the whole plan but for its stages' hosts and its
/// exclusions; every part has one stage per stage, so that the client appends
/// each stage's hosts where they belong.
pub fn plan(mut plan: pb::WavePlan, budget: usize) -> Vec<pb::WavePlan> {
    let stages: Vec<Vec<String>> = plan
        .stages
        .iter_mut()
        .map(|s| std::mem::take(&mut s.hosts))
        .collect();
    let excluded = std::mem::take(&mut plan.excluded);
    let stage_count = stages.len();
    let empty = move || vec![pb::WaveStage::default(); stage_count];
    let mut parts = vec![plan];
    let mut size = parts[0].encoded_len();
    let next_part = |parts: &mut Vec<pb::WavePlan>, size: &mut usize, len: usize| {
        if *size + len > budget {
            parts.push(pb::WavePlan {
                stages: empty(),
                ..Default::default()
            });
            *size = 0;
        }
        *size += len;
    };
    for (index, hosts) in stages.into_iter().enumerate() {
        for host in hosts {
            next_part(&mut parts, &mut size, host.len() + 8);
            if let Some(part) = parts.last_mut() {
                part.stages[index].hosts.push(host);
            }
        }
    }
    for refusal in excluded {
        next_part(&mut parts, &mut size, refusal.encoded_len() + 8);
        if let Some(part) = parts.last_mut() {
            part.excluded.push(refusal);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(i: usize) -> pb::HostReadiness {
        pb::HostReadiness {
            host_id: format!("host-{i:06}.dc1.example.com"),
            precheck: Some(pb::LatestPrecheck {
                target: "rhel-9.6".into(),
                detail: "x".repeat(200),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const LIMIT: usize = 4 * 1024 * 1024;

    #[test]
    fn a_readiness_report_above_the_limit_leaves_in_parts_below_it_and_nothing_is_lost() {
        let hosts: Vec<pb::HostReadiness> = (0..100_000).map(host).collect();
        let findings: Vec<pb::FindingSummary> = (0..3000)
            .map(|i| pb::FindingSummary {
                key: format!("key-{i}"),
                title: "t".repeat(500),
                ..Default::default()
            })
            .collect();
        let whole = pb::ReadinessReport {
            hosts,
            findings,
            counts: Some(pb::ReadinessCounts {
                hosts: 100_000,
                ..Default::default()
            }),
        };
        assert!(whole.encoded_len() > LIMIT, "{}", whole.encoded_len());
        let parts = readiness(whole.clone(), PART_BYTES);
        assert!(parts.len() > 4);
        assert!(
            parts
                .iter()
                .all(|p| p.encoded_len() < 2 * PART_BYTES + 4096)
        );
        assert!(parts[0].counts.is_some() && parts[1..].iter().all(|p| p.counts.is_none()));
        let hosts: Vec<_> = parts.iter().flat_map(|p| p.hosts.clone()).collect();
        let findings: Vec<_> = parts.iter().flat_map(|p| p.findings.clone()).collect();
        assert_eq!(hosts, whole.hosts);
        assert_eq!(findings, whole.findings);
    }

    #[test]
    fn an_empty_answer_is_one_part() {
        assert_eq!(
            readiness(pb::ReadinessReport::default(), PART_BYTES).len(),
            1
        );
        let plan_parts = plan(pb::WavePlan::default(), PART_BYTES);
        assert_eq!(plan_parts.len(), 1);
    }

    #[test]
    fn a_plan_above_the_limit_leaves_in_parts_that_append_to_their_stages() {
        let stages: Vec<pb::WaveStage> = [1usize, 5_000, 60_000, 85_000]
            .iter()
            .scan(0, |start, &n| {
                let hosts = (*start..*start + n)
                    .map(|i| format!("host-{i:06}.dc1.example.com"))
                    .collect();
                *start += n;
                Some(pb::WaveStage { hosts })
            })
            .collect();
        let whole = pb::WavePlan {
            name: "w".into(),
            stages,
            excluded: (0..20_000)
                .map(|i| pb::HostRefusal {
                    host_id: format!("out-{i}"),
                    reason: "blocked at pre-check: Missing required answers in the answer file"
                        .into(),
                })
                .collect(),
            has_canary: true,
            ..Default::default()
        };
        assert!(whole.encoded_len() > LIMIT, "{}", whole.encoded_len());
        let parts = plan(whole.clone(), PART_BYTES);
        assert!(parts.len() > 4);
        assert!(parts.iter().all(|p| p.encoded_len() < PART_BYTES + 4096));
        assert!(parts.iter().all(|p| p.stages.len() == 4));
        assert!(parts[0].has_canary && parts[0].name == "w");
        let mut merged = parts[0].clone();
        for part in &parts[1..] {
            for (stage, more) in merged.stages.iter_mut().zip(&part.stages) {
                stage.hosts.extend(more.hosts.iter().cloned());
            }
            merged.excluded.extend(part.excluded.iter().cloned());
        }
        assert_eq!(merged, whole);
    }
}
