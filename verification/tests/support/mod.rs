//! Helpers shared by the snapshot suites (`snapshot_*.rs`) over the fault-injecting `Vfs`
//! ([`deltasnap_verification::fault_fs`]): a history of every write with its receipt from which
//! the state at any cut is rebuilt ([`History`]), gates to hold the copier or the cut checkpoint, and the [`Fixture`]
//! store on `SimFs` with the checks every failed snapshot must pass ([`Fixture::assert_failed_cleanly`]).
// Each test file uses a different part.
#![allow(dead_code)]

pub mod matrix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{
    CheckpointCut, CheckpointListener, Config, Engine, Epoch, Error, JobKind, JobStage, Manifest,
    PageId, PartitionId, SnapshotOptions, WriteGuard, WriteReceipt,
};

use deltasnap::snapshot::CopyGate;
use deltasnap_verification::fault_fs::FaultFs;

/// The engine's thread names (the crash and fault suites target operations by thread).
pub const SNAPSHOT_THREAD: &str = "deltasnap-snapshot";
pub const SNAPSHOT_CHECKPOINT_THREAD: &str = "deltasnap-snapshot-checkpoint";

pub fn config(page_size: u32) -> Config {
    Config {
        page_size,
        background_checkpointer: false,
        ..Config::default()
    }
}

/// Everything observable about a store: every page's payload and the metadata map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub pages: BTreeMap<PageId, Vec<u8>>,
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl State {
    /// Reads every page of every partition the engine has, and its metadata.
    pub fn read(engine: &Engine) -> State {
        let mut pages = BTreeMap::new();
        for (id, page_count) in engine.partitions() {
            for index in 0..page_count {
                let page = PageId::new(id, index);
                pages.insert(page, engine.read(page).expect("every page reads"));
            }
        }
        State {
            pages,
            metadata: engine.metadata().unwrap(),
        }
    }

    pub fn without_partition(mut self, id: PartitionId) -> State {
        self.pages.retain(|page, _| page.partition != id);
        self
    }

    /// The first page whose payload differs, for failure messages.
    pub fn first_difference(&self, other: &State) -> String {
        if self.metadata != other.metadata {
            return format!("metadata {:?} vs {:?}", self.metadata, other.metadata);
        }
        let pages: Vec<_> = self.pages.keys().collect();
        let others: Vec<_> = other.pages.keys().collect();
        if pages != others {
            return format!("pages {pages:?} vs {others:?}");
        }
        match self
            .pages
            .iter()
            .find(|(page, bytes)| other.pages[*page] != **bytes)
        {
            Some((page, _)) => format!("page {page}"),
            None => "no difference".into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Change {
    Page {
        page: PageId,
        offset: usize,
        bytes: Vec<u8>,
    },
    Metadata {
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

/// Every write that returned, with its receipt, so that the state at any cut epoch (the writes
/// with `receipt.epoch <= cut`, S1) or at the end can be rebuilt.
#[derive(Debug, Clone)]
pub struct History {
    payload_size: usize,
    /// The page count of every partition created (dropped ones included).
    shape: BTreeMap<PartitionId, u32>,
    changes: Vec<(Change, WriteReceipt)>,
}

impl History {
    /// Creates `partitions` partitions of `pages` zeroed pages each.
    pub fn create(engine: &Engine, partitions: u32, pages: u32) -> History {
        let mut shape = BTreeMap::new();
        for p in 0..partitions {
            let id = PartitionId(p);
            engine.create_partition(id).unwrap();
            for _ in 0..pages {
                engine.allocate_page(id).unwrap();
            }
            shape.insert(id, pages);
        }
        History {
            payload_size: engine.payload_size(),
            shape,
            changes: Vec::new(),
        }
    }

    /// Creates partition `id` with `pages` zeroed pages after [`History::create`]. The states the
    /// history rebuilds hold it from the start, so compare only states from its creation on.
    pub fn create_partition(
        &mut self,
        engine: &Engine,
        id: PartitionId,
        pages: u32,
    ) -> deltasnap::Result<()> {
        engine.create_partition(id)?;
        for _ in 0..pages {
            engine.allocate_page(id)?;
        }
        self.shape.insert(id, pages);
        Ok(())
    }

    pub fn pages(&self) -> Vec<PageId> {
        self.shape
            .iter()
            .flat_map(|(id, count)| (0..*count).map(move |i| PageId::new(*id, i)))
            .collect()
    }

    /// Writes 24 bytes derived from `page` and `round` at an offset derived from both; records
    /// the write if it returned.
    pub fn write(
        &mut self,
        engine: &Engine,
        page: PageId,
        round: u8,
    ) -> deltasnap::Result<WriteReceipt> {
        let seed = page.partition.0 * 131 + page.index * 17 + round as u32 * 7;
        let offset = (seed as usize * 29) % (self.payload_size - 24);
        let bytes: Vec<u8> = (0..24u8)
            .map(|i| (seed as u8).wrapping_add(i).wrapping_mul(3) | 1)
            .collect();
        let receipt = engine.write(page, offset, &bytes)?;
        self.changes.push((
            Change::Page {
                page,
                offset,
                bytes,
            },
            receipt,
        ));
        Ok(receipt)
    }

    pub fn put(
        &mut self,
        engine: &Engine,
        key: &[u8],
        value: &[u8],
    ) -> deltasnap::Result<WriteReceipt> {
        let receipt = engine.metadata_put(key, value)?;
        self.changes.push((
            Change::Metadata {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            receipt,
        ));
        Ok(receipt)
    }

    /// The number of writes recorded so far (a position in the history).
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The state made of the writes with `receipt.epoch <= cut` (all writes if `None`).
    pub fn state_at_cut(&self, cut: Option<Epoch>) -> State {
        let mut changes: Vec<_> = self
            .changes
            .iter()
            .filter(|(_, receipt)| cut.is_none_or(|cut| receipt.epoch <= cut))
            .collect();
        changes.sort_by_key(|(_, receipt)| receipt.lsn);
        self.apply(changes.into_iter().map(|(change, _)| change))
    }

    /// The state made of the first `count` writes (in the order they returned).
    pub fn state_after(&self, count: usize) -> State {
        self.apply(self.changes[..count].iter().map(|(change, _)| change))
    }

    fn apply<'a>(&self, changes: impl Iterator<Item = &'a Change>) -> State {
        let mut state = State {
            pages: self
                .pages()
                .into_iter()
                .map(|page| (page, vec![0u8; self.payload_size]))
                .collect(),
            metadata: BTreeMap::new(),
        };
        for change in changes {
            match change {
                Change::Page {
                    page,
                    offset,
                    bytes,
                } => state.pages.get_mut(page).expect("allocated")[*offset..][..bytes.len()]
                    .copy_from_slice(bytes),
                Change::Metadata { key, value } => {
                    state.metadata.insert(key.clone(), value.clone());
                }
            }
        }
        state
    }
}

/// Panics if `done` does not hold within a minute.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A point threads wait at until the test opens it; counts the threads that reached it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    reached: AtomicU64,
}

impl Gate {
    pub fn pass(&self) {
        self.reached.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }

    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::SeqCst)
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    /// A copy gate that holds the copier before its first chunk until the gate opens.
    pub fn copy_gate(self: &Arc<Self>) -> CopyGate {
        let gate = Arc::clone(self);
        Arc::new(move |_, _| gate.pass())
    }
}

/// Holds the first page write of the first checkpoint that begins after it is armed (register it
/// before the snapshot so that it runs before the snapshot's hook).
#[derive(Default)]
pub struct HoldCutCheckpoint {
    pub armed: AtomicBool,
    holding_epoch: Mutex<Option<Epoch>>,
    pub gate: Gate,
}

impl CheckpointListener for HoldCutCheckpoint {
    fn on_checkpoint_begin(&self, cut: &CheckpointCut) {
        if self.armed.swap(false, Ordering::SeqCst) {
            *self.holding_epoch.lock().unwrap() = Some(cut.epoch);
        }
    }

    fn before_page_write(&self, epoch: Epoch, _: PageId, _: &[u8]) -> Option<WriteGuard> {
        if *self.holding_epoch.lock().unwrap() == Some(epoch) {
            self.gate.pass();
        }
        None
    }
}

/// Waits until the checkpoint of `epoch` has ended (its job finished, successfully or not).
pub fn wait_checkpoint_ended(engine: &Engine, epoch: Epoch) {
    wait_until(&format!("the end of checkpoint {epoch}"), || {
        engine.jobs().iter().any(|job| {
            job.kind == JobKind::Checkpoint && job.epoch == Some(epoch) && job.duration.is_some()
        })
    });
}

pub const ROOT: &str = "/t";
pub const SNAPSHOT_NAME: &str = "snap";

pub fn store_dir() -> PathBuf {
    Path::new(ROOT).join("store")
}

pub fn target_dir() -> PathBuf {
    Path::new(ROOT).join("snapshots")
}

pub fn final_dir(name: &str) -> PathBuf {
    target_dir().join(name)
}

pub fn tmp_dir(name: &str) -> PathBuf {
    target_dir().join(format!(".{name}.deltasnap-tmp"))
}

pub fn marker(name: &str) -> PathBuf {
    store_dir()
        .join("snapshots-tmp")
        .join(format!("{name}.pending"))
}

/// A store on `SimFs` behind a [`FaultFs`]: `partitions` partitions of `pages` pages, every page
/// written and checkpointed, metadata `schema = v1`, then the even pages written again and synced
/// so that the snapshot's cut checkpoint has pages to write (and the hook has captures to make).
pub struct Fixture {
    pub sim: SimFs,
    pub fs: FaultFs,
    pub engine: Engine,
    pub history: History,
    pub page_size: u32,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(1024, 2, 16)
    }

    pub fn with(page_size: u32, partitions: u32, pages: u32) -> Fixture {
        let sim = SimFs::new();
        let fs = FaultFs::new(Arc::new(sim.clone()));
        let engine = Engine::open_on(Arc::new(fs.clone()), store_dir(), config(page_size)).unwrap();
        sim.create_dir_all(&target_dir()).unwrap();
        sim.sync_dir(&target_dir()).unwrap();
        sim.sync_dir(Path::new(ROOT)).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        let history = History::create(&engine, partitions, pages);
        let mut fixture = Fixture {
            sim,
            fs,
            engine,
            history,
            page_size,
        };
        fixture
            .history
            .put(&fixture.engine, b"schema", b"v1")
            .unwrap();
        fixture.write_pages(|_| true, 1);
        fixture.engine.checkpoint().unwrap();
        fixture.write_pages(|page| page.index % 2 == 0, 2);
        fixture.engine.sync().unwrap();
        fixture
    }

    /// Writes every page that `which` selects, in (partition, index) order.
    pub fn write_pages(&mut self, which: impl Fn(PageId) -> bool, round: u8) {
        for page in self.history.pages() {
            if which(page) {
                self.history.write(&self.engine, page, round).unwrap();
            }
        }
    }

    pub fn options(&self) -> SnapshotOptions {
        let mut options = SnapshotOptions::new(target_dir(), SNAPSHOT_NAME);
        options.chunk_bytes = 4 * self.page_size as u64;
        options
    }

    pub fn exists(&self, path: &Path) -> bool {
        Vfs::exists(&self.sim, path).unwrap()
    }

    /// Verifies the published snapshot `name`, restores it and checks that the restored store
    /// equals the history at the manifest's cut.
    pub fn assert_snapshot_is_the_cut(&self, name: &str, manifest: &Manifest) {
        let vfs: Arc<dyn Vfs> = Arc::new(self.sim.clone());
        let report = deltasnap::verify_snapshot_on(&vfs, &final_dir(name)).unwrap();
        assert!(
            report.is_ok(),
            "snapshot {name} does not verify: {:?}",
            report.problems
        );
        let restored_dir = Path::new(ROOT).join(format!("restored-{name}"));
        deltasnap::restore_on(&vfs, &final_dir(name), &restored_dir).unwrap();
        let restored = Engine::open_on(vfs, &restored_dir, config(self.page_size)).unwrap();
        let expected = self.history.state_at_cut(Some(manifest.cut_epoch));
        let found = State::read(&restored);
        assert!(
            found == expected,
            "snapshot {name} is not the state at cut epoch {}: {}",
            manifest.cut_epoch,
            found.first_difference(&expected)
        );
    }

    /// The checks every failed or cancelled snapshot must pass (DESIGN §4, "Errors and
    /// cancellation"): `wait` names the cause; nothing under the final name, no temporary
    /// directory, no marker; the engine is not poisoned; writes and checkpoints go on; the slot
    /// is free for a second snapshot of the same name, which verifies and equals its cut; every
    /// synced write survives close + reopen and a crash + reopen.
    pub fn assert_failed_cleanly(
        mut self,
        result: deltasnap::Result<Manifest>,
        faults_expected: usize,
        causes: &[&str],
    ) {
        let error = match result {
            Ok(manifest) => panic!(
                "the snapshot must fail, it published cut {}",
                manifest.cut_epoch
            ),
            Err(error) => error,
        };
        let text = error.to_string();
        eprintln!("the snapshot failed as expected: {text}");
        for cause in causes {
            assert!(
                text.contains(cause),
                "error {text:?} does not name {cause:?}"
            );
        }
        let fired = self.fs.fired();
        assert_eq!(fired.len(), faults_expected, "faults fired: {fired:?}");
        let job = self
            .engine
            .jobs()
            .into_iter()
            .rfind(|job| job.kind == JobKind::Snapshot)
            .expect("the snapshot is a job");
        assert_eq!(job.stage, JobStage::Failed, "{job:?}");
        assert!(
            job.error.as_deref().is_some_and(|e| e.contains(causes[0])),
            "the job's error names the cause: {job:?}"
        );

        for path in [
            final_dir(SNAPSHOT_NAME),
            tmp_dir(SNAPSHOT_NAME),
            marker(SNAPSHOT_NAME),
        ] {
            assert!(
                !self.exists(&path),
                "{} is left after the failure",
                path.display()
            );
        }
        assert_eq!(
            self.engine.poisoned(),
            None,
            "a snapshot failure poisons nothing"
        );

        // Writers and checkpoints go on.
        for round in 20..23 {
            self.write_pages(|page| page.index % 3 != 0, round);
            let outcome = self.engine.checkpoint().unwrap();
            assert!(outcome.epoch.is_some(), "checkpoint {round} wrote nothing");
        }
        self.history.put(&self.engine, b"schema", b"v2").unwrap();
        self.engine.sync().unwrap();

        // The one-at-a-time slot was released, and the name is free again.
        let manifest = self
            .engine
            .snapshot(self.options())
            .expect("a second snapshot starts")
            .wait()
            .expect("a second snapshot publishes");
        self.assert_snapshot_is_the_cut(SNAPSHOT_NAME, &manifest);
        assert!(!self.exists(&tmp_dir(SNAPSHOT_NAME)));
        assert!(!self.exists(&marker(SNAPSHOT_NAME)));

        // Every synced write survives close + reopen ...
        self.engine.close().unwrap();
        drop(self.engine);
        let reopen = |sim: &SimFs| {
            Engine::open_on(Arc::new(sim.clone()), store_dir(), config(self.page_size)).unwrap()
        };
        let engine = reopen(&self.sim);
        assert!(engine
            .recovery_report()
            .unfinished_snapshots_removed
            .is_empty());
        let expected = self.history.state_at_cut(None);
        let found = State::read(&engine);
        assert!(
            found == expected,
            "after reopen: {}",
            found.first_difference(&expected)
        );

        // ... and a power cut (nothing the failed snapshot did undermines durability).
        for page in self.history.pages() {
            self.history.write(&engine, page, 30).unwrap();
        }
        engine.sync().unwrap();
        std::mem::forget(engine);
        self.sim.crash(0x5eed);
        let engine = reopen(&self.sim);
        let expected = self.history.state_at_cut(None);
        let found = State::read(&engine);
        assert!(
            found == expected,
            "after a crash: {}",
            found.first_difference(&expected)
        );
        drop(engine);
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// `true` if `error` is `Error::SnapshotRunning` naming `name`.
pub fn is_snapshot_running(error: &Error, name: &str) -> bool {
    matches!(error, Error::SnapshotRunning(running) if running == name)
}

/// Copies the directory tree `from` to `to` on the real file system (a snapshot, to tamper with
/// the copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
