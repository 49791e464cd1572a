//! The admin service's wave calls: wire to domain (every field checked before
//! the inventory sees it) and domain to wire.

use mf_proto::v1 as pb;
use tonic::Status;

use super::valid_host_id;
use crate::inventory::{CreateMode, HostAction, PlanView, StatusView, WaveAction, WhyView};
use crate::wire;
use mf_core::wave::spec::{SpecInput, WaveSpec, valid_name};

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The checked spec, and whether only a plan is asked for.
pub fn spec_from_wire(spec: pb::WaveSpec) -> Result<(WaveSpec, CreateMode), Status> {
    let mode = if spec.dry_run {
        CreateMode::DryRun
    } else {
        CreateMode::Record
    };
    SpecInput {
        name: spec.name,
        selector: spec.selector,
        target: spec.target,
        canary: spec.canary,
        canary_selector: spec.canary_selector,
        batches: spec.batches,
        max_parallel: spec.max_parallel,
        budgets: spec.budgets,
        stage_errors: spec.stage_errors,
        total_errors: spec.total_errors,
        windows: spec.windows,
        freezes: spec.freezes,
        soak_seconds: spec.soak_seconds,
        approve_stages: spec.approve_stages,
        on_failure: crate::wire::on_failure_from_wire(spec.on_failure)
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
        expected_seconds: spec.expected_seconds,
    }
    .check()
    .map(|checked| (checked, mode))
    .map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn name(name: &str) -> Result<String, Status> {
    if valid_name(name) {
        Ok(name.to_string())
    } else {
        Err(Status::invalid_argument(format!(
            "{name:?} is not a wave name"
        )))
    }
}

pub fn host(host_id: &str) -> Result<String, Status> {
    if valid_host_id(host_id) {
        Ok(host_id.to_string())
    } else {
        Err(Status::invalid_argument("invalid host id"))
    }
}

pub fn action(request: &pb::WaveActionRequest) -> Result<WaveAction, Status> {
    let action = pb::WaveAction::try_from(request.action);
    if request.rollback && action != Ok(pb::WaveAction::Cancel) {
        return Err(Status::invalid_argument("rollback goes with cancel only"));
    }
    Ok(match action {
        Ok(pb::WaveAction::Start) => WaveAction::Start,
        Ok(pb::WaveAction::Pause) => WaveAction::Pause,
        Ok(pb::WaveAction::Resume) => WaveAction::Resume,
        Ok(pb::WaveAction::Approve) => WaveAction::Approve,
        Ok(pb::WaveAction::Cancel) => WaveAction::Cancel {
            rollback: request.rollback,
        },
        Ok(pb::WaveAction::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(
                "the wave action is start, pause, resume, approve or cancel",
            ));
        }
    })
}

pub fn host_action(action: i32) -> Result<HostAction, Status> {
    match pb::WaveHostAction::try_from(action) {
        Ok(pb::WaveHostAction::Retry) => Ok(HostAction::Retry),
        Ok(pb::WaveHostAction::Skip) => Ok(HostAction::Skip),
        _ => Err(Status::invalid_argument("the host action is retry or skip")),
    }
}

pub fn plan_to_wire(plan: PlanView) -> pb::WavePlan {
    pb::WavePlan {
        name: plan.name,
        target: plan.target,
        state: wire::wave_state_to_wire(plan.state),
        stages: plan
            .stages
            .into_iter()
            .map(|hosts| pb::WaveStage { hosts })
            .collect(),
        excluded: plan
            .excluded
            .into_iter()
            .map(|(host_id, reason)| pb::HostRefusal { host_id, reason })
            .collect(),
        outside_selector: as_u32(plan.outside_selector),
        eta_unix_ms: plan.eta_unix_ms.unwrap_or(0),
        paths: plan
            .paths
            .into_iter()
            .map(|(path, hosts, ms, samples)| pb::PathEstimate {
                path,
                hosts: as_u32(hosts),
                expected_seconds: u64::try_from(ms / 1000).unwrap_or(0),
                samples: as_u32(samples),
            })
            .collect(),
        policy: plan.policy,
        dry_run: plan.dry_run,
        has_canary: plan.has_canary,
    }
}

pub fn status_to_wire(status: StatusView) -> pb::WaveStatus {
    pb::WaveStatus {
        name: status.name,
        target: status.target,
        state: wire::wave_state_to_wire(status.state),
        halted_reason: status.halted.unwrap_or_default(),
        waiting: status.waiting.unwrap_or_default(),
        next_start_unix_ms: status.next_start_unix_ms.unwrap_or_default(),
        selector: status.selector,
        current_stage: as_u32(status.current_stage),
        stages: status
            .stages
            .into_iter()
            .map(|s| pb::StageProgress {
                hosts: as_u32(s.hosts),
                done: as_u32(s.done),
                running: as_u32(s.running),
                failures: as_u32(s.failures),
            })
            .collect(),
        counts: status
            .counts
            .into_iter()
            .map(|(state, hosts)| pb::WaveHostCount {
                state: wire::host_status_to_wire(state),
                hosts: as_u32(hosts),
            })
            .collect(),
        eta_unix_ms: status.eta_unix_ms.unwrap_or(0),
        created_unix_ms: status.created_unix_ms,
        started_unix_ms: status.started_unix_ms.unwrap_or(0),
        finished_unix_ms: status.finished_unix_ms.unwrap_or(0),
        budgets: status
            .budgets
            .into_iter()
            .map(|(label, in_use, full)| pb::BudgetUse {
                label,
                in_use: as_u32(in_use),
                full_values: as_u32(full),
            })
            .collect(),
        problems: status
            .problems
            .into_iter()
            .map(|(host_id, outcome, detail)| pb::WaveProblem {
                host_id,
                outcome: wire::host_status_to_wire(outcome),
                detail,
            })
            .collect(),
        has_canary: status.has_canary,
    }
}

pub fn why_to_wire(why: WhyView) -> pb::WhyWaveResponse {
    pb::WhyWaveResponse {
        host_id: why.host_id,
        state: wire::host_status_to_wire(why.state),
        stage: as_u32(why.stage),
        job_id: why.job_id,
        reason: why.reason,
    }
}
