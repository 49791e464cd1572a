//! The wave's record in a real store, written as the inventory writes it,
//! and the way back after a crash: the coordinator's own (`restored`).

use tempfile::TempDir;

use super::super::restored;
use crate::store::Store;
use crate::store::wave_record::{Lifecycle, MemberRecord, WaveHead, WavePlan};
use mf_core::wave::calendar::Calendar;
use mf_core::wave::scheduler::{HostState, Wave};

/// The wave's record in a real store, written as the inventory writes it.
pub struct Stored {
    dir: TempDir,
    store: Store,
    head: WaveHead,
    written: Vec<HostState>,
}

impl Stored {
    pub fn create(wave: &Wave, calendar: Calendar) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_with(dir.path(), false).expect("store");
        let mut spec = crate::inventory::tests::wave_spec("property", &[]);
        spec.policy = wave.policy.clone();
        spec.calendar = calendar;
        let head = WaveHead {
            spec,
            lifecycle: Lifecycle::Running,
            created_unix_ms: 0,
            started_unix_ms: Some(0),
            finished_unix_ms: None,
            rollback_on_cancel: false,
            progress: wave.progress.clone(),
            start_requested_by: None,
        };
        let plan = WavePlan {
            members: wave.members.clone(),
            stages: wave.stages.clone(),
            paths: vec!["leapp to 8.10".into(); wave.members.len()],
            excluded: vec![],
            outside_selector: 0,
        };
        store.put_wave_plan("property", &plan).expect("plan");
        let mut stored = Self {
            dir,
            store,
            head,
            written: vec![HostState::Pending; wave.members.len()],
        };
        for m in 0..wave.members.len() {
            stored.put_member(m, HostState::Pending);
        }
        stored.store.put_wave_head(&stored.head).expect("head");
        stored.store.flush_now().expect("flush");
        stored
    }

    fn put_member(&mut self, m: usize, state: HostState) {
        let record = MemberRecord {
            state,
            ..MemberRecord::pending()
        };
        self.store
            .put_wave_member("property", m, &record)
            .expect("member");
        self.written[m] = state;
    }

    /// The members that changed and the head, flushed (as a batch is before
    /// any command it implies leaves).
    pub fn save(&mut self, wave: &Wave) {
        let changed: Vec<usize> = (0..wave.states.len())
            .filter(|&m| wave.states[m] != self.written[m])
            .collect();
        if changed.is_empty() && self.head.progress == wave.progress {
            return;
        }
        for m in changed {
            self.put_member(m, wave.states[m]);
        }
        self.head.progress = wave.progress.clone();
        self.store.put_wave_head(&self.head).expect("head");
        self.store.flush_now().expect("flush");
    }

    /// A kill -9 and a start on what it left on disk.
    pub fn crash_and_restart(self) -> (Self, Wave) {
        let image = crate::store::crash_image(self.dir.path());
        drop(self.store);
        let store = Store::open_with(image.path(), false).expect("reopened");
        let mut waves = store.waves().expect("waves");
        assert_eq!(waves.len(), 1);
        let (head, plan, members) = waves.remove(0);
        let wave = restored(&head, &plan, &members).expect("restored");
        let written = members.iter().map(|m| m.state).collect();
        let stored = Self {
            dir: image,
            store,
            head,
            written,
        };
        (stored, wave)
    }
}
