//! The lifecycle simulation tier (issue 11; TigerBeetle's VOPR and FoundationDB's simulation are
//! the model): seeded random programs of every public call of `deltasnap::Engine` and of the free
//! functions, from several threads at once, on `SimFs` with I/O faults and power cuts, under a
//! watchdog. If a lifecycle call racing another one could hang, panic, lose a synced write,
//! publish a snapshot that is not its cut, lose a published snapshot or a restored store at a
//! power cut, leak memory-budget bytes, accept a bad option or let a second engine open a live
//! store, a program fails with its seed.
//!
//! A program (one seed): a random configuration, 2 to 4 worker threads and a controller, run in
//! phases. In each phase the workers issue random calls against one shared `Arc<Engine>` (writes
//! and reads of their own pages, allocate, create and drop partitions, metadata put, delete and
//! get, sync, checkpoint, listeners, one of which may panic, snapshots with either delta policy
//! and sometimes a rate limit, cancel, progress, wait, verify, restore, bad `Config` and
//! `SnapshotOptions` values), while the controller may arm an EIO or ENOSPC fault, cut the power
//! or close the engine under them. The phase ends with a close, a drop, a power cut or nothing;
//! the next one reopens (sometimes with a fault, or with the snapshot target unreachable) and
//! checks.
//!
//! Checks (the reference is `support/lifecycle/model.rs`):
//! - no call runs longer than the bound (`DELTASNAP_LIFECYCLE_CALL_BOUND_MS`, default 10 000): a
//!   hang fails with the seed and every thread's call in flight;
//! - no panic escapes a call or happens on an engine thread; a panicking checkpoint listener
//!   poisons the engine (`Error::Poisoned`);
//! - R1 after every reopen: every call that returned before a successful `sync`, `checkpoint` or
//!   `close` started is in the recovered store, and nothing no call made;
//! - reads and metadata gets see the owner's last write;
//! - S1 for every published snapshot: it verifies, and restored and opened it is the reference at
//!   its manifest's cut (writes with `receipt.epoch <= cut_epoch`); it still is after a later
//!   power cut, and so is every store restored from it;
//! - a snapshot whose `wait` fails leaves nothing under its final name; `wait` after `cancel`
//!   returns within the bound (a rate limit sleeps for a minute per chunk);
//! - after a checkpoint with no writer, the memory budget holds no dirty bytes and at most the
//!   live pages; after a reopen, at most the live pages;
//! - a second `open` of a live store is refused with `Error::StoreLocked`; every out-of-range
//!   `Config` or `SnapshotOptions` value is an `Err`, never a panic, a spin or a protocol error;
//! - a snapshot target that cannot be reached does not stop the store from opening.
//!
//! Replay: the failure message carries `DELTASNAP_LIFECYCLE_SEED=<seed>`; run the tier with it to
//! run that program alone. The program (each thread's sequence of calls, the configuration, the
//! faults, the phase ends) is a function of the seed; the threads' interleaving is the operating
//! system's, so a replay runs the same calls but not necessarily in the same order: a race may
//! need a few replays (`DELTASNAP_LIFECYCLE_REPEAT=<n>` runs the seed `n` times).
//! `DELTASNAP_LIFECYCLE_SEEDS=<n>` sets how many programs run (`cargo xtask verify` sets it per
//! depth).
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

#[path = "support/lifecycle/model.rs"]
mod model;
#[path = "support/lifecycle/watchdog.rs"]
mod watchdog;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use deltasnap::vfs::{FaultError, FaultKind, FaultPlan, SimFs, Vfs};
use deltasnap::{
    CheckpointCut, CheckpointListener, Config, DeltaPolicy, Engine, Error, Manifest, PageId,
    PartitionId, SnapshotHandle, SnapshotOptions,
};
use deltasnap_verification::fault_fs::FaultFs;
use model::{
    Clock, History, Page, Partition, SnapshotSpan, Stamp, StoreState, WorkerModel, PARTITION_STRIDE,
};
use watchdog::{Slot, Watch, DELIBERATE_PANIC};

const STORE: &str = "/t/store";
/// Programs per run by default: under a minute in release on two cores (a program takes 10 to
/// 30 ms when no call hangs).
const SEEDS_DEFAULT: u64 = 2000;
const SNAPSHOTS_MAX: u64 = 8;
/// The rate of a slow snapshot: the lowest the engine accepts (4 KiB/s), so that copying a
/// partition of up to `PAGES_MAX` pages sleeps for up to 12 s.
const SLOW_BYTES_PER_SEC: u64 = 4096;
/// Pages per partition, at most.
const PAGES_MAX: usize = 48;
/// The merge's batch bound in this tier: 2 to 5 delta entries, by page size.
const MERGE_BATCH_BYTES: usize = 3 * 1032;
/// `wait` after `cancel` returns within this: it must not sleep out the rate limiter (which
/// sleeps for seconds), and on `SimFs` what is left to do takes milliseconds.
const CANCEL_WAIT_BOUND: Duration = Duration::from_secs(1);
const RESTORES_MAX: u64 = 3;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// SplitMix64: small, seedable, and the same on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// `true` with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

/// The seed of the `k`-th program of a run.
fn program_seed(k: u64) -> u64 {
    Rng(k).next()
}

// ---------------------------------------------------------------------------------------------
// The program: what the seed decides.

/// How a phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseEnd {
    /// The engine stays open into the next phase.
    Continue,
    Close,
    /// `drop(engine)` without `close` (the drop closes it).
    Drop,
    /// A power cut after the workers stopped, then `SimFs::crash`.
    Crash,
    /// A power cut while the workers run.
    CrashUnderLoad,
    /// `close()` while the workers run (racing their checkpoints, syncs and snapshots).
    CloseUnderLoad,
}

/// How a published snapshot's manifest is changed (each must fail verify and restore).
const TAMPERS: [&str; 3] = [
    "cut_epoch + 1",
    "cut_epoch = u64::MAX",
    "a metadata entry added",
];

/// A bad `Config` or `SnapshotOptions` value (each must be refused with an `Err`).
const BAD_CONFIGS: [&str; 6] = [
    "page_size = 1000",
    "dirty_checkpoint_percent = 0",
    "dirty_throttle_percent = 101",
    "wal_segment_bytes = 1",
    "checkpoint_redo_bytes = 0",
    "checkpoint_interval_ms = Some(0)",
];

fn bad_config(which: usize, base: &Config) -> Config {
    let mut config = base.clone();
    match BAD_CONFIGS[which] {
        "page_size = 1000" => config.page_size = 1000,
        "dirty_checkpoint_percent = 0" => config.dirty_checkpoint_percent = 0,
        "dirty_throttle_percent = 101" => config.dirty_throttle_percent = 101,
        "wal_segment_bytes = 1" => config.wal_segment_bytes = 1,
        "checkpoint_redo_bytes = 0" => config.checkpoint_redo_bytes = 0,
        "checkpoint_interval_ms = Some(0)" => config.checkpoint_interval_ms = Some(0),
        other => unreachable!("{other}"),
    }
    config
}

const BAD_SNAPSHOT_OPTIONS: [&str; 5] = [
    "name = \".hidden\"",
    "chunk_bytes = 1",
    "chunk_bytes = u64::MAX",
    "chunk_bytes = 1 << 50",
    "rate_limit_bytes_per_sec = Some(0)",
];

fn bad_snapshot_options(which: usize, mut options: SnapshotOptions) -> SnapshotOptions {
    match BAD_SNAPSHOT_OPTIONS[which] {
        "name = \".hidden\"" => options.name = ".hidden".into(),
        "chunk_bytes = 1" => options.chunk_bytes = 1,
        "chunk_bytes = u64::MAX" => options.chunk_bytes = u64::MAX,
        "chunk_bytes = 1 << 50" => options.chunk_bytes = 1 << 50,
        "rate_limit_bytes_per_sec = Some(0)" => options.rate_limit_bytes_per_sec = Some(0),
        other => unreachable!("{other}"),
    }
    options
}

/// One call a worker makes. Its numbers are raw draws: the worker resolves them against its
/// model when it runs the call (which page exists depends on earlier calls' outcomes).
#[derive(Debug, Clone)]
enum Call {
    Write {
        partition: u64,
        page: u64,
        offset: u64,
        len: u64,
        byte: u8,
    },
    Read {
        partition: u64,
        page: u64,
    },
    Allocate {
        partition: u64,
    },
    CreatePartition,
    DropPartition {
        partition: u64,
    },
    Sync,
    Checkpoint,
    MetadataPut {
        key: u64,
        len: u64,
        byte: u8,
    },
    MetadataDelete {
        key: u64,
    },
    MetadataGet {
        key: u64,
    },
    AddListener {
        panics: bool,
    },
    RemoveListener {
        which: u64,
    },
    Snapshot {
        policy: DeltaPolicy,
        rate: Rate,
        chunk_pages: u64,
    },
    Cancel {
        which: u64,
    },
    Progress {
        which: u64,
    },
    Wait {
        which: u64,
    },
    Verify {
        which: u64,
    },
    Restore {
        which: u64,
    },
    BadConfig {
        which: usize,
    },
    BadSnapshotOptions {
        which: usize,
    },
    Observe,
}

/// A snapshot's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    Unlimited,
    /// Fast enough to finish within milliseconds.
    Fast,
    /// The lowest rate (`SLOW_BYTES_PER_SEC`) with chunks of 64 pages: the copier sleeps for
    /// seconds after each partition. Such a snapshot is always cancelled before it is waited for.
    Slow,
}

/// Draws the next call; `panicking_listener` allows the listener that panics (rarely).
fn next_call(rng: &mut Rng, panicking_listener: bool) -> Call {
    let mut draw = || rng.next();
    let weight = draw() % 1000;
    let (a, b, c, d) = (draw(), draw(), draw(), draw());
    match weight {
        0..=299 => Call::Write {
            partition: a,
            page: b,
            offset: c,
            len: 1 + d % 64,
            byte: (a >> 32) as u8 | 1,
        },
        300..=389 => Call::Read {
            partition: a,
            page: b,
        },
        390..=449 => Call::Allocate { partition: a },
        450..=469 => Call::CreatePartition,
        470..=484 => Call::DropPartition { partition: a },
        485..=544 => Call::Sync,
        545..=574 => Call::Checkpoint,
        575..=614 => Call::MetadataPut {
            key: a,
            len: b % 24,
            byte: c as u8,
        },
        615..=629 => Call::MetadataDelete { key: a },
        630..=649 => Call::MetadataGet { key: a },
        650..=659 => Call::AddListener {
            panics: panicking_listener && a % 8 == 0,
        },
        660..=669 => Call::RemoveListener { which: a },
        670..=699 => Call::Snapshot {
            policy: if a % 2 == 0 {
                DeltaPolicy::Full
            } else {
                DeltaPolicy::CursorAware
            },
            rate: match b % 10 {
                0..=5 => Rate::Unlimited,
                6..=7 => Rate::Fast,
                _ => Rate::Slow,
            },
            chunk_pages: [1, 2, 4, 16][(c % 4) as usize],
        },
        700..=719 => Call::Cancel { which: a },
        720..=739 => Call::Progress { which: a },
        740..=769 => Call::Wait { which: a },
        770..=784 => Call::Verify { which: a },
        785..=794 => Call::Restore { which: a },
        795..=799 => Call::BadConfig {
            which: (a % BAD_CONFIGS.len() as u64) as usize,
        },
        800..=804 => Call::BadSnapshotOptions {
            which: (a % BAD_SNAPSHOT_OPTIONS.len() as u64) as usize,
        },
        _ => Call::Observe,
    }
}

/// The configuration a program's store runs with: small pages, a small memory budget (so that
/// dirty-byte checkpoints and writer throttling happen) and short intervals.
fn program_config(rng: &mut Rng) -> Config {
    let page_size = [512, 1024][rng.below(2) as usize];
    let dirty_checkpoint_percent = 20 + rng.below(40) as u8;
    Config {
        page_size,
        create_if_missing: true,
        memory_budget_bytes: (48 + rng.below(160)) * page_size as u64,
        dirty_checkpoint_percent,
        dirty_throttle_percent: dirty_checkpoint_percent + 10 + rng.below(30) as u8,
        checkpoint_interval_ms: [None, Some(5), Some(20), Some(200)][rng.below(4) as usize],
        checkpoint_redo_bytes: (16 + rng.below(1024)) << 10,
        wal_segment_bytes: (8 + rng.below(56)) << 10,
        background_checkpointer: !rng.chance(1, 5),
    }
}

// ---------------------------------------------------------------------------------------------
// State shared by the threads of a program.

struct RunningSnapshot {
    name: String,
    final_dir: PathBuf,
    handle: Arc<SnapshotHandle>,
    slow: bool,
    /// When a thread asked to cancel it.
    cancelled: Option<Instant>,
    requested: u64,
}

struct Published {
    name: String,
    dir: PathBuf,
    manifest: Manifest,
    span: SnapshotSpan,
    /// What restoring it gave once S1 held; `None` until then.
    restored: Option<StoreState>,
}

struct Restored {
    dir: PathBuf,
    snapshot: String,
    /// The restore returned before this power cut generation (it must survive later ones).
    checked: bool,
}

#[derive(Default)]
struct Counters {
    snapshots_started: AtomicU64,
    snapshots_published: AtomicU64,
    snapshots_cancelled: AtomicU64,
    snapshots_failed: AtomicU64,
    restores: AtomicU64,
    power_cuts: AtomicU64,
    faults_armed: AtomicU64,
    reopens: AtomicU64,
    listener_panics: AtomicU64,
}

struct Shared {
    seed: u64,
    sim: SimFs,
    /// The engine's file system: `sim` under a fault layer whose rules can name paths.
    faults: FaultFs,
    watch: Arc<Watch>,
    clock: Clock,
    config: Config,
    page_size: u32,
    payload_size: usize,
    snapshots: Mutex<Vec<RunningSnapshot>>,
    published: Mutex<Vec<Published>>,
    restored: Mutex<Vec<Restored>>,
    listeners: Mutex<Vec<u64>>,
    panicking_listener_added: AtomicBool,
    names: AtomicU64,
    phase: AtomicU64,
    /// Snapshot and restore calls of this program, each bounded (every published snapshot and
    /// restored store is checked again after every power cut).
    snapshots_started: AtomicU64,
    restores_started: AtomicU64,
    counters: Arc<Counters>,
}

impl Shared {
    fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.faults.clone())
    }

    fn unique(&self) -> u64 {
        self.names.fetch_add(1, Ordering::Relaxed)
    }

    fn power_cut(&self) -> bool {
        self.sim.power_cut_at().is_some()
    }
}

/// A listener that counts, or panics once in `on_checkpoint_begin`.
struct SimListener {
    panics: AtomicBool,
    begun: AtomicU64,
}

impl CheckpointListener for SimListener {
    fn on_checkpoint_begin(&self, _cut: &CheckpointCut) {
        self.begun.fetch_add(1, Ordering::Relaxed);
        if self.panics.swap(false, Ordering::SeqCst) {
            panic!("{DELIBERATE_PANIC}");
        }
    }
}

/// Errors after which the call surely did nothing. Any other error (I/O, a failed log, a
/// poisoned engine) may come after the call's record was logged: the call is uncertain.
fn did_nothing(error: &Error) -> bool {
    matches!(
        error,
        Error::Closed
            | Error::InvalidArgument(_)
            | Error::OutOfPage { .. }
            | Error::NoSuchPartition(_)
            | Error::PageOutOfRange { .. }
            | Error::PartitionExists(_)
    )
}

/// Errors a call may return once faults or a power cut hit, or the engine was closed.
fn expected_failure(error: &Error) -> bool {
    matches!(
        error,
        Error::Closed | Error::Io { .. } | Error::WalFailed(_) | Error::Poisoned(_)
    )
}

/// How a snapshot may fail: cancelled, or a checkpoint, the log or an I/O operation failed
/// (the task reports those as `InvalidSnapshot` with the cause). Never a panic of its task, never
/// a step the protocol refuses.
fn snapshot_failure_expected(error: &Error) -> bool {
    match error {
        Error::Cancelled => true,
        // A cut checkpoint that failed because the test's listener poisoned the engine is an
        // expected failure; the task itself panicking, or the protocol refusing, is not.
        Error::InvalidSnapshot(reason) => {
            !reason.contains("snapshot task panicked") && !reason.contains("protocol refused")
        }
        error => expected_failure(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Workers.

struct Worker {
    shared: Arc<Shared>,
    engine: Arc<Engine>,
    model: WorkerModel,
    slot: Arc<Slot>,
    rng: Rng,
}

type Outcome = Result<(), String>;

impl Worker {
    fn run(mut self, calls: u64, panicking_listener: bool) -> WorkerModel {
        for _ in 0..calls {
            if self.shared.watch.stopped() {
                break;
            }
            let call = next_call(&mut self.rng, panicking_listener);
            if let Err(violation) = self.step(&call) {
                self.shared
                    .watch
                    .fail(format!("worker {}: {violation}", self.model.index));
                break;
            }
        }
        self.model
    }

    fn call<T>(&self, what: &str, call: impl FnOnce() -> T) -> Result<T, String> {
        self.shared.watch.call(&self.slot, what, call)
    }

    fn tick(&self) -> u64 {
        self.shared.clock.tick()
    }

    fn step(&mut self, call: &Call) -> Outcome {
        match *call {
            Call::Write {
                partition,
                page,
                offset,
                len,
                byte,
            } => self.write(partition, page, offset, len, byte),
            Call::Read { partition, page } => self.read(partition, page),
            Call::Allocate { partition } => self.allocate(partition),
            Call::CreatePartition => self.create_partition(),
            Call::DropPartition { partition } => self.drop_partition(partition),
            Call::Sync => {
                let start = self.tick();
                if self.call("sync", || self.engine.sync())?.is_ok() {
                    self.shared.clock.made_durable(start);
                }
                Ok(())
            }
            Call::Checkpoint => {
                let start = self.tick();
                if self
                    .call("checkpoint", || self.engine.checkpoint())?
                    .is_ok()
                {
                    self.shared.clock.made_durable(start);
                }
                Ok(())
            }
            Call::MetadataPut { key, len, byte } => {
                self.metadata_set(key, Some(vec![byte; len as usize]))
            }
            Call::MetadataDelete { key } => self.metadata_set(key, None),
            Call::MetadataGet { key } => self.metadata_get(key),
            Call::AddListener { panics } => self.add_listener(panics),
            Call::RemoveListener { which } => {
                let id = {
                    let mut listeners = self.shared.listeners.lock().unwrap();
                    if listeners.is_empty() {
                        return Ok(());
                    }
                    let index = (which % listeners.len() as u64) as usize;
                    listeners.swap_remove(index)
                };
                self.call("remove_checkpoint_listener", || {
                    self.engine.remove_checkpoint_listener(id)
                })
            }
            Call::Snapshot {
                policy,
                rate,
                chunk_pages,
            } => self.snapshot(policy, rate, chunk_pages),
            Call::Cancel { which } => {
                let Some(handle) = self.running(which, true) else {
                    return Ok(());
                };
                self.call("SnapshotHandle::cancel", || handle.cancel())
            }
            Call::Progress { which } => {
                let Some(handle) = self.running(which, false) else {
                    return Ok(());
                };
                let progress = self.call("SnapshotHandle::progress", || handle.progress())?;
                if progress.bytes_total > 0 && progress.bytes_copied > progress.bytes_total {
                    return Err(format!("progress copied more than the total: {progress:?}"));
                }
                Ok(())
            }
            Call::Wait { which } => {
                let taken = {
                    let mut snapshots = self.shared.snapshots.lock().unwrap();
                    if snapshots.is_empty() {
                        return Ok(());
                    }
                    let index = (which % snapshots.len() as u64) as usize;
                    snapshots.swap_remove(index)
                };
                wait_snapshot(&self.shared, &self.slot, taken)
            }
            Call::Verify { which } => self.verify(which),
            Call::Restore { which } => self.restore(which),
            Call::BadConfig { which } => self.bad_config(which),
            Call::BadSnapshotOptions { which } => self.bad_snapshot_options(which),
            Call::Observe => {
                let engine = &self.engine;
                self.call("stats, jobs, memory_usage, partitions, poisoned", || {
                    let _ = engine.stats();
                    let _ = engine.jobs();
                    let _ = engine.memory_usage();
                    let _ = engine.partitions();
                    let _ = engine.poisoned();
                    let _ = engine.current_epoch();
                })?;
                // The read-only look at a store another engine holds, racing close, drop,
                // crash and checkpoints: the lock is ours or free, and the control file is
                // always a whole one (it is replaced by a rename), never a torn read.
                let vfs = self.shared.vfs();
                let dir = Path::new(STORE);
                match self.call("lock_holder_on", || deltasnap::lock_holder_on(&vfs, dir))? {
                    // `None`: the holder has not written its pid yet (it does after locking).
                    Ok(Some(holder)) if holder.pid.is_some_and(|pid| pid != std::process::id()) => {
                        return Err(format!("lock_holder_on names another process: {holder:?}"))
                    }
                    Ok(_) => {}
                    Err(error) if expected_failure(&error) => {}
                    Err(error) => return Err(format!("lock_holder_on: {error}")),
                }
                match self.call("last_checkpoint_on", || {
                    deltasnap::last_checkpoint_on(&vfs, dir)
                })? {
                    Ok(Some(control)) if control.page_size != self.shared.page_size => {
                        Err(format!(
                            "last_checkpoint_on read page size {}, the store has {}",
                            control.page_size, self.shared.page_size
                        ))
                    }
                    Ok(_) => Ok(()),
                    Err(error) if expected_failure(&error) => Ok(()),
                    Err(error) => Err(format!("last_checkpoint_on of the live store: {error}")),
                }
            }
        }
    }

    /// The `raw`-th (modulo) live, not frozen partition of this worker.
    fn pick_partition(&self, raw: u64) -> Option<PartitionId> {
        let live: Vec<PartitionId> = self
            .model
            .partitions
            .iter()
            .filter(|(_, p)| p.live() && !p.frozen)
            .map(|(id, _)| *id)
            .collect();
        (!live.is_empty()).then(|| live[(raw % live.len() as u64) as usize])
    }

    fn pick_page(&self, partition: u64, page: u64) -> Option<PageId> {
        let id = self.pick_partition(partition)?;
        let pages = &self.model.partitions[&id].pages;
        if pages.is_empty() {
            return None;
        }
        let index = (page % pages.len() as u64) as u32;
        (!pages[index as usize].history.frozen).then(|| PageId::new(id, index))
    }

    fn page_mut(&mut self, page: PageId) -> &mut Page {
        &mut self
            .model
            .partitions
            .get_mut(&page.partition)
            .expect("picked")
            .pages[page.index as usize]
    }

    fn write(&mut self, partition: u64, page: u64, offset: u64, len: u64, byte: u8) -> Outcome {
        let Some(page) = self.pick_page(partition, page) else {
            return Ok(());
        };
        let payload_size = self.shared.payload_size;
        let len = (len as usize).min(payload_size);
        let offset = (offset as usize) % (payload_size - len + 1);
        let bytes: Vec<u8> = (0..len as u8).map(|i| byte.wrapping_add(i) | 1).collect();
        let mut value = self.page_mut(page).history.latest().clone();
        value[offset..offset + len].copy_from_slice(&bytes);
        let start = self.tick();
        let what = format!("write {page} at {offset}, {len} bytes");
        let result = self.call(&what, || self.engine.write(page, offset, &bytes))?;
        let done = self.tick();
        match result {
            Ok(receipt) => {
                let stamp = Stamp {
                    start,
                    done,
                    certain: true,
                };
                self.page_mut(page)
                    .history
                    .push(value, stamp, Some(receipt.epoch));
            }
            Err(error) if did_nothing(&error) => {
                if !matches!(error, Error::Closed) {
                    return Err(format!("{what}: {error} (the page exists)"));
                }
            }
            Err(_) => {
                let stamp = Stamp {
                    start,
                    done,
                    certain: false,
                };
                self.page_mut(page).history.push(value, stamp, None);
            }
        }
        Ok(())
    }

    fn read(&mut self, partition: u64, page: u64) -> Outcome {
        let Some(page) = self.pick_page(partition, page) else {
            return Ok(());
        };
        let what = format!("read {page}");
        match self.call(&what, || self.engine.read(page))? {
            Ok(found) => {
                let expected = self.page_mut(page).history.latest();
                if found != *expected {
                    return Err(format!("{what}: not the owner's last write"));
                }
                Ok(())
            }
            Err(Error::Closed | Error::Io { .. }) => Ok(()),
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    fn allocate(&mut self, partition: u64) -> Outcome {
        let Some(id) = self.pick_partition(partition) else {
            return Ok(());
        };
        if self.model.partitions[&id].pages.len() >= PAGES_MAX {
            return Ok(());
        }
        let start = self.tick();
        let what = format!("allocate_page in partition {id}");
        let result = self.call(&what, || self.engine.allocate_page(id))?;
        let done = self.tick();
        let zeros = vec![0u8; self.shared.payload_size];
        let partition = self.model.partitions.get_mut(&id).expect("picked");
        let certain = match result {
            Ok(page) if page.index as usize == partition.pages.len() => true,
            Ok(page) => {
                return Err(format!(
                    "{what}: got page {page}, {} were allocated before",
                    partition.pages.len()
                ))
            }
            Err(Error::Closed) => return Ok(()),
            Err(error) if did_nothing(&error) => {
                return Err(format!("{what}: {error} (the partition exists)"))
            }
            Err(_) => false,
        };
        partition.frozen |= !certain;
        partition.pages.push(Page {
            allocated: Stamp {
                start,
                done,
                certain,
            },
            history: History::recovered(zeros),
        });
        Ok(())
    }

    fn create_partition(&mut self) -> Outcome {
        if self.model.partitions.values().filter(|p| p.live()).count() >= 4 {
            return Ok(());
        }
        let id = PartitionId(self.model.index * PARTITION_STRIDE + self.model.next_partition);
        self.model.next_partition += 1;
        let start = self.tick();
        let what = format!("create_partition {id}");
        let result = self.call(&what, || self.engine.create_partition(id))?;
        let done = self.tick();
        let certain = match result {
            Ok(()) => true,
            Err(Error::Closed) => return Ok(()),
            Err(error) if did_nothing(&error) => return Err(format!("{what}: {error}")),
            Err(_) => false,
        };
        self.model.partitions.insert(
            id,
            Partition::new(Stamp {
                start,
                done,
                certain,
            }),
        );
        Ok(())
    }

    fn drop_partition(&mut self, partition: u64) -> Outcome {
        let Some(id) = self.pick_partition(partition) else {
            return Ok(());
        };
        let start = self.tick();
        let what = format!("drop_partition {id}");
        let result = self.call(&what, || self.engine.drop_partition(id))?;
        let done = self.tick();
        let certain = match result {
            Ok(()) => true,
            Err(Error::Closed) => return Ok(()),
            Err(error) if did_nothing(&error) => return Err(format!("{what}: {error}")),
            Err(_) => false,
        };
        let partition = self.model.partitions.get_mut(&id).expect("picked");
        partition.dropped = Some(Stamp {
            start,
            done,
            certain,
        });
        partition.frozen |= !certain;
        Ok(())
    }

    fn key(&self, raw: u64) -> Vec<u8> {
        let mut key = model::key_prefix(self.model.index);
        key.extend_from_slice(format!("k{}", raw % 4).as_bytes());
        key
    }

    fn metadata_set(&mut self, key: u64, value: Option<Vec<u8>>) -> Outcome {
        let key = self.key(key);
        let history = self
            .model
            .keys
            .entry(key.clone())
            .or_insert_with(|| History::recovered(None));
        if history.frozen {
            return Ok(());
        }
        let start = self.tick();
        let what = format!(
            "metadata {} {:?}",
            if value.is_some() { "put" } else { "delete" },
            String::from_utf8_lossy(&key)
        );
        let result = self.call(&what, || match &value {
            Some(value) => self.engine.metadata_put(&key, value),
            None => self.engine.metadata_delete(&key),
        })?;
        let done = self.tick();
        let history = self.model.keys.get_mut(&key).expect("inserted");
        match result {
            Ok(receipt) => history.push(
                value,
                Stamp {
                    start,
                    done,
                    certain: true,
                },
                Some(receipt.epoch),
            ),
            Err(Error::Closed) => {}
            Err(error) if did_nothing(&error) => return Err(format!("{what}: {error}")),
            Err(_) => history.push(
                value,
                Stamp {
                    start,
                    done,
                    certain: false,
                },
                None,
            ),
        }
        Ok(())
    }

    fn metadata_get(&mut self, key: u64) -> Outcome {
        let key = self.key(key);
        let Some(history) = self.model.keys.get(&key).filter(|h| !h.frozen) else {
            return Ok(());
        };
        let expected = history.latest().clone();
        let what = format!("metadata_get {:?}", String::from_utf8_lossy(&key));
        match self.call(&what, || self.engine.metadata_get(&key))? {
            Ok(found) if found == expected => Ok(()),
            Ok(found) => Err(format!(
                "{what}: {found:?}, the owner's last write is {expected:?}"
            )),
            Err(Error::Closed) => Ok(()),
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    fn add_listener(&mut self, panics: bool) -> Outcome {
        let panics = panics
            && !self
                .shared
                .panicking_listener_added
                .swap(true, Ordering::SeqCst);
        let listener = Arc::new(SimListener {
            panics: AtomicBool::new(panics),
            begun: AtomicU64::new(0),
        });
        let what = if panics {
            "add_checkpoint_listener (one that panics)"
        } else {
            "add_checkpoint_listener"
        };
        let id = self.call(what, || self.engine.add_checkpoint_listener(listener))?;
        self.shared.listeners.lock().unwrap().push(id);
        Ok(())
    }

    /// A running snapshot's handle; `cancel` marks it cancelled.
    fn running(&self, which: u64, cancel: bool) -> Option<Arc<SnapshotHandle>> {
        let mut snapshots = self.shared.snapshots.lock().unwrap();
        if snapshots.is_empty() {
            return None;
        }
        let index = (which % snapshots.len() as u64) as usize;
        if cancel {
            snapshots[index].cancelled.get_or_insert_with(Instant::now);
        }
        Some(Arc::clone(&snapshots[index].handle))
    }

    fn snapshot_options(&self, name: &str) -> SnapshotOptions {
        let phase = self.shared.phase.load(Ordering::Relaxed);
        // A new target directory per phase: the engine creates it (and must make it durable).
        SnapshotOptions::new(format!("/t/snapshots/phase-{phase}"), name)
    }

    fn snapshot(&mut self, policy: DeltaPolicy, rate: Rate, chunk_pages: u64) -> Outcome {
        if self
            .shared
            .snapshots_started
            .fetch_add(1, Ordering::Relaxed)
            >= SNAPSHOTS_MAX
        {
            return Ok(());
        }
        let name = format!("s{}", self.shared.unique());
        let page_size = self.shared.page_size as u64;
        let mut options = self.snapshot_options(&name);
        options.delta_policy = policy;
        options.chunk_bytes = chunk_pages * page_size;
        match rate {
            Rate::Unlimited => {}
            Rate::Fast => options.rate_limit_bytes_per_sec = Some(256 << 20),
            Rate::Slow => {
                options.chunk_bytes = 64 * page_size;
                options.rate_limit_bytes_per_sec = Some(SLOW_BYTES_PER_SEC);
            }
        }
        let final_dir = options.target_dir.join(&name);
        let requested = self.tick();
        let what = format!(
            "snapshot {name} ({policy:?}, {rate:?}, chunk {} bytes)",
            options.chunk_bytes
        );
        match self.call(&what, || self.engine.snapshot(options))? {
            Ok(handle) => {
                self.shared
                    .counters
                    .snapshots_started
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.snapshots.lock().unwrap().push(RunningSnapshot {
                    name,
                    final_dir,
                    handle: Arc::new(handle),
                    slow: rate == Rate::Slow,
                    cancelled: None,
                    requested,
                });
                Ok(())
            }
            Err(Error::SnapshotRunning(_)) => Ok(()),
            Err(error) if expected_failure(&error) => Ok(()),
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    fn published(&self, which: u64) -> Option<(String, PathBuf)> {
        let published = self.shared.published.lock().unwrap();
        if published.is_empty() {
            return None;
        }
        let p = &published[(which % published.len() as u64) as usize];
        Some((p.name.clone(), p.dir.clone()))
    }

    fn verify(&mut self, which: u64) -> Outcome {
        let Some((name, dir)) = self.published(which) else {
            return Ok(());
        };
        let vfs = self.shared.vfs();
        let what = format!("verify_snapshot_on {}", dir.display());
        match self.call(&what, || deltasnap::verify_snapshot_on(&vfs, &dir))? {
            Ok(report) if report.is_ok() => Ok(()),
            // An injected fault or a power cut on one of its reads (the check after the phase
            // runs without).
            Ok(report)
                if report
                    .problems
                    .iter()
                    .any(|p| p.reason.contains("os error") || p.reason.contains("power cut")) =>
            {
                Ok(())
            }
            Ok(report) => Err(format!(
                "{what}: published snapshot {name} does not verify: {:?}",
                report.problems
            )),
            Err(Error::Io { .. }) => Ok(()),
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    fn restore(&mut self, which: u64) -> Outcome {
        if self.shared.restores_started.fetch_add(1, Ordering::Relaxed) >= RESTORES_MAX {
            return Ok(());
        }
        let Some((name, dir)) = self.published(which) else {
            return Ok(());
        };
        let vfs = self.shared.vfs();
        // New parents every time: restore must make them durable.
        let target = PathBuf::from(format!("/t/restored/r{}/store", self.shared.unique()));
        let what = format!("restore_on {} into {}", dir.display(), target.display());
        match self.call(&what, || deltasnap::restore_on(&vfs, &dir, &target))? {
            Ok(_) => {
                self.shared
                    .counters
                    .restores
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.restored.lock().unwrap().push(Restored {
                    dir: target,
                    snapshot: name,
                    checked: false,
                });
                Ok(())
            }
            Err(Error::Io { .. }) => Ok(()),
            // Its verification hit an injected fault or the power cut.
            Err(Error::InvalidSnapshot(reason))
                if reason.contains("os error") || reason.contains("power cut") =>
            {
                Ok(())
            }
            Err(error) => Err(format!("{what}: {error}")),
        }
    }

    fn bad_config(&mut self, which: usize) -> Outcome {
        let config = bad_config(which, &self.shared.config);
        let dir = format!("/t/bad/b{}", self.shared.unique());
        let what = format!("Engine::open_on with {}", BAD_CONFIGS[which]);
        let vfs = self.shared.vfs();
        match self.call(&what, || Engine::open_on(vfs, &dir, config))? {
            Ok(engine) => {
                let _ = self.call("close the engine opened with a bad value", || {
                    engine.close()
                });
                Err(format!(
                    "{what}: accepted; every option must be range-checked at open"
                ))
            }
            Err(_) => Ok(()),
        }
    }

    fn bad_snapshot_options(&mut self, which: usize) -> Outcome {
        let name = format!("bad{}", self.shared.unique());
        let options = bad_snapshot_options(which, self.snapshot_options(&name));
        let what = format!("snapshot with {}", BAD_SNAPSHOT_OPTIONS[which]);
        match self.call(&what, || self.engine.snapshot(options))? {
            Ok(handle) => {
                let _ = self.call("cancel the snapshot started with a bad value", || {
                    handle.cancel();
                    handle.wait()
                });
                Err(format!(
                    "{what}: accepted; every option must be range-checked up front"
                ))
            }
            Err(_) => Ok(()),
        }
    }
}

/// Waits for a snapshot taken out of the registry (cancelling a slow one first, so that the wait
/// is bounded); records a published one. A failed snapshot must leave nothing under its name.
fn wait_snapshot(shared: &Shared, slot: &Slot, mut taken: RunningSnapshot) -> Outcome {
    let watch = &shared.watch;
    if taken.slow && taken.cancelled.is_none() {
        taken.cancelled = Some(Instant::now());
        watch.call(
            slot,
            &format!("cancel slow snapshot {}", taken.name),
            || taken.handle.cancel(),
        )?;
    }
    // Other threads hold the handle only for the length of a cancel or progress call.
    let handle = watch.call(
        slot,
        &format!("own snapshot {}'s handle", taken.name),
        || {
            let mut handle = taken.handle;
            loop {
                match Arc::try_unwrap(handle) {
                    Ok(owned) => return owned,
                    Err(shared) => handle = shared,
                }
                std::thread::yield_now();
            }
        },
    )?;
    let what = format!(
        "SnapshotHandle::wait {}{}",
        taken.name,
        if taken.cancelled.is_some() {
            " (after cancel)"
        } else {
            ""
        }
    );
    // The merge's memory bound is read once the task ended, before `wait` consumes the handle.
    let (merge_peak, result) = watch.call(slot, &what, || {
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let peak = handle.progress().merge_buffer_bytes_peak;
        (peak, handle.wait())
    })?;
    if merge_peak > MERGE_BATCH_BYTES as u64 {
        return Err(format!(
            "{what}: the merge held {merge_peak} bytes of delta at once, over its bound of \
             {MERGE_BATCH_BYTES} (the whole delta in memory?)"
        ));
    }
    let published = shared.clock.tick();
    if let Some(cancelled) = taken.cancelled {
        let waited = cancelled.elapsed();
        if waited > CANCEL_WAIT_BOUND {
            return Err(format!(
                "{what} returned {:.1} s after cancel(), more than {CANCEL_WAIT_BOUND:?}",
                waited.as_secs_f64()
            ));
        }
    }
    match result {
        Ok(manifest) => {
            shared
                .counters
                .snapshots_published
                .fetch_add(1, Ordering::Relaxed);
            shared.published.lock().unwrap().push(Published {
                name: taken.name,
                dir: taken.final_dir,
                manifest,
                span: SnapshotSpan {
                    requested: taken.requested,
                    published,
                },
                restored: None,
            });
            Ok(())
        }
        Err(error) => {
            let counter = if matches!(error, Error::Cancelled) {
                &shared.counters.snapshots_cancelled
            } else {
                &shared.counters.snapshots_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if !snapshot_failure_expected(&error) {
                return Err(format!("{what}: {error}"));
            }
            if !shared.power_cut() && shared.sim.exists(&taken.final_dir).unwrap_or(false) {
                return Err(format!(
                    "{what} failed ({error}) but {} exists",
                    taken.final_dir.display()
                ));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The controller.

/// Reads every page and the metadata; `None` if a read failed (an I/O fault).
fn read_state(engine: &Engine) -> Result<StoreState, Error> {
    let mut state = StoreState::default();
    for (id, page_count) in engine.partitions() {
        let mut pages = Vec::new();
        for index in 0..page_count {
            pages.push(engine.read(PageId::new(id, index))?);
        }
        state.partitions.insert(id, pages);
    }
    state.metadata = engine.metadata()?;
    Ok(state)
}

struct Controller {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    rng: Rng,
    models: Vec<WorkerModel>,
    worker_rngs: Vec<Rng>,
    panicking_listener: bool,
    calls_per_phase: u64,
}

impl Controller {
    /// With `DELTASNAP_LIFECYCLE_TRACE` set, prints what the controller does (for replays).
    fn trace(&self, event: impl FnOnce() -> String) {
        if std::env::var_os("DELTASNAP_LIFECYCLE_TRACE").is_some() {
            eprintln!("lifecycle trace: seed {}: {}", self.shared.seed, event());
        }
    }

    fn call<T>(&self, what: &str, call: impl FnOnce() -> T) -> Result<T, String> {
        self.shared.watch.call(&self.slot, what, call)
    }

    /// Opens the store: sometimes with an I/O fault (a failed open is retried without it) or
    /// with the snapshot targets unreachable (the open must succeed anyway).
    fn open(&mut self) -> Result<Engine, String> {
        self.shared.counters.reopens.fetch_add(1, Ordering::Relaxed);
        let sim = self.shared.sim.clone();
        // The program's fault layer: rules armed by the phases (which name paths) reach the
        // engine opened here.
        let fs = self.shared.faults.clone();
        let opening = Arc::new(AtomicBool::new(true));
        let target_fault = self.rng.chance(1, 3);
        if target_fault {
            let opening = Arc::clone(&opening);
            fs.fail_nth(0, FaultError::Eio, move |op| {
                opening.load(Ordering::SeqCst) && op.path_contains("/t/snapshots")
            });
        } else if self.rng.chance(1, 8) {
            self.trace(|| "a fault armed for the open".into());
            let at = sim.op_count() + self.rng.below(200);
            sim.set_fault_plan(FaultPlan::fail_at(at, FaultError::Eio));
        }
        let config = self.shared.config.clone();
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        self.trace(|| {
            format!(
                "open (snapshot targets unreachable: {target_fault}, faults: {:?})",
                sim.power_cut_at()
            )
        });
        let first = self.call("Engine::open_on", || {
            Engine::open_on(Arc::clone(&vfs), STORE, config.clone())
        })?;
        opening.store(false, Ordering::SeqCst);
        sim.clear_faults();
        match first {
            Ok(engine) => Ok(engine),
            Err(error) if target_fault => Err(format!(
                "Engine::open_on failed when a snapshot target was unreachable ({:?} failed): \
                 {error}; cleaning up a temporary directory elsewhere must never stop the store \
                 from opening",
                fs.fired().first().map(|op| op.path.clone())
            )),
            Err(error) => self
                .call("Engine::open_on (again, without the fault)", || {
                    self.trace(|| format!("open failed ({error}); again without the fault"));
                    Engine::open_on(vfs, STORE, config)
                })?
                .map_err(|error| format!("the store does not reopen: {error}")),
        }
    }

    /// R1 against the models, then the models start over from what was found.
    fn check_recovered(&mut self, engine: &Engine) -> Outcome {
        let found = self
            .call("read the recovered store", || read_state(engine))?
            .map_err(|error| format!("reading the recovered store: {error}"))?;
        let durable = self.shared.clock.durable();
        model::check_recovered(&self.models, &found, durable)
            .map_err(|v| format!("{v}; recovery: {:?}", engine.recovery_report()))
            .map_err(|violation| format!("R1 after reopen: {violation}"))?;
        model::rebuild(&mut self.models, &found);
        check_memory(engine, false).map_err(|v| format!("after reopen: {v}"))
    }

    fn run(&mut self, phases: u64) -> Outcome {
        let mut engine: Option<Arc<Engine>> = None;
        for phase in 0..phases {
            self.shared.phase.store(phase, Ordering::Relaxed);
            let live = match engine.take() {
                Some(live) => live,
                None => {
                    let opened = Arc::new(self.open()?);
                    self.shared.listeners.lock().unwrap().clear();
                    if let Err(violation) = self.check_recovered(&opened) {
                        std::mem::forget(opened);
                        return Err(violation);
                    }
                    opened
                }
            };
            let end = match self.phase(&live) {
                Ok(end) => end,
                Err(violation) => {
                    // The engine may be wedged: leak it rather than hang in its drop.
                    std::mem::forget(live);
                    return Err(violation);
                }
            };
            if end == PhaseEnd::Continue {
                engine = Some(live);
            } else {
                self.end(live, end)?;
            }
            // The checks' own I/O runs without faults.
            self.shared.sim.clear_faults();
            self.check_snapshots()?;
            if self.shared.watch.stopped() {
                return Err(self.shared.watch.failure().unwrap_or_default());
            }
        }
        if let Some(live) = engine {
            self.end(live, PhaseEnd::Close)?;
        }
        let last = Arc::new(self.open()?);
        let outcome = self
            .check_recovered(&last)
            .and_then(|()| self.check_snapshots_survived());
        if outcome.is_err() {
            std::mem::forget(last);
            return outcome;
        }
        self.call("close", || last.close())?
            .map_err(|error| format!("the last close failed: {error}"))
    }

    /// One phase, up to how it ends.
    fn phase(&mut self, engine: &Arc<Engine>) -> Result<PhaseEnd, String> {
        let shared = Arc::clone(&self.shared);
        // A listener's panic in an earlier phase's close poisoned that engine, not this one.
        let listener_panics = watchdog::deliberate_panics();
        if self.rng.chance(1, 6) {
            self.second_open()?;
        }
        if self.rng.chance(1, 4) {
            let at = shared.sim.op_count() + self.rng.below(3000);
            let error = [FaultError::Eio, FaultError::Enospc][self.rng.below(2) as usize];
            let mut plan = FaultPlan::fail_at(at, error);
            match self.rng.below(4) {
                0 | 1 => {
                    plan = plan.only(&[
                        FaultKind::Write,
                        FaultKind::SyncFile,
                        FaultKind::SyncDir,
                        FaultKind::Rename,
                    ])
                }
                // Directory fsyncs only: the steps after a rename (a publish's, a control
                // file's), where a failure must take back what the rename showed.
                2 => plan = plan.only(&[FaultKind::SyncDir]),
                // The first directory fsync after a rename: the step that makes a publish (or
                // a control file) durable, after which a failure must take the rename back.
                _ if self.rng.chance(1, 2) => {
                    plan = plan.only(&[FaultKind::SyncDir]).after(&[FaultKind::Rename])
                }
                _ => {}
            }
            self.trace(|| format!("{error:?} at operation {at}"));
            shared.sim.set_fault_plan(plan);
            shared.counters.faults_armed.fetch_add(1, Ordering::Relaxed);
        }
        if self.rng.chance(1, 5) {
            // The directory fsync that makes a publish durable (the first fsync of a snapshot
            // target after a rename into it): when it fails, `wait` must fail and take the
            // final name back (issue 11 defect 10c; random faults rarely hit this one step).
            self.trace(|| "EIO at the first target fsync after a publish's rename".into());
            let renamed = Arc::new(AtomicBool::new(false));
            shared.faults.fail_nth(0, FaultError::Eio, move |op| {
                let published = |to: &Path| {
                    to.starts_with("/t/snapshots")
                        && to
                            .file_name()
                            .is_some_and(|name| !name.to_string_lossy().starts_with('.'))
                };
                if op.kind == FaultKind::Rename && op.to.as_deref().is_some_and(published) {
                    renamed.store(true, Ordering::SeqCst);
                    return false;
                }
                op.kind == FaultKind::SyncDir
                    && op.path.starts_with("/t/snapshots")
                    && renamed.load(Ordering::SeqCst)
            });
            shared.counters.faults_armed.fetch_add(1, Ordering::Relaxed);
        }
        let end = [
            PhaseEnd::Continue,
            PhaseEnd::Close,
            PhaseEnd::Drop,
            PhaseEnd::Crash,
            PhaseEnd::CrashUnderLoad,
            PhaseEnd::CloseUnderLoad,
        ][self.rng.below(6) as usize];
        self.trace(|| format!("phase ends with {end:?}"));
        let workers: Vec<_> = std::mem::take(&mut self.models)
            .into_iter()
            .zip(self.worker_rngs.iter_mut())
            .map(|(model, rng)| {
                let worker = Worker {
                    shared: Arc::clone(&shared),
                    engine: Arc::clone(engine),
                    slot: shared.watch.slot(format!("worker-{}", model.index)),
                    model,
                    rng: rng.fork(),
                };
                let (calls, panicking) = (self.calls_per_phase, self.panicking_listener);
                std::thread::Builder::new()
                    .name(format!("lifecycle-worker-{}", worker.model.index))
                    .spawn(move || worker.run(calls, panicking))
                    .expect("spawn a worker")
            })
            .collect();
        match end {
            PhaseEnd::CrashUnderLoad => {
                std::thread::sleep(Duration::from_millis(self.rng.below(30)));
                shared
                    .sim
                    .set_fault_plan(FaultPlan::crash_at(shared.sim.op_count()));
                shared.counters.power_cuts.fetch_add(1, Ordering::Relaxed);
            }
            PhaseEnd::CloseUnderLoad => {
                std::thread::sleep(Duration::from_millis(self.rng.below(30)));
                let start = shared.clock.tick();
                let result = self.call("close (under load)", || engine.close())?;
                self.trace(|| format!("close under load at tick {start}: {result:?}"));
                if result.is_ok() {
                    shared.clock.made_durable(start);
                }
            }
            _ => {}
        }
        for worker in workers {
            let model = worker
                .join()
                .map_err(|_| "a worker thread panicked outside an engine call".to_string())?;
            self.models.push(model);
        }
        if let Some(failure) = shared.watch.failure() {
            return Err(failure);
        }
        self.finish_snapshots()?;
        self.check_engine_threads(engine, listener_panics)?;
        let open = !matches!(end, PhaseEnd::CloseUnderLoad | PhaseEnd::CrashUnderLoad);
        if open && engine.poisoned().is_none() && !shared.power_cut() && self.rng.chance(1, 2) {
            let start = shared.clock.tick();
            match self.call("checkpoint (no writer)", || engine.checkpoint())? {
                Ok(_) => {
                    shared.clock.made_durable(start);
                    check_memory(engine, true).map_err(|v| {
                        format!(
                            "after a checkpoint with no writer: {v}; stats {:?}; jobs {:?}",
                            engine.stats(),
                            engine.jobs()
                        )
                    })?;
                }
                Err(error) if expected_failure(&error) => {}
                Err(error) => return Err(format!("checkpoint (no writer): {error}")),
            }
        }
        Ok(end)
    }

    /// A second open of the live store must be refused.
    fn second_open(&mut self) -> Outcome {
        let vfs = self.shared.vfs();
        let config = self.shared.config.clone();
        match self.call("a second Engine::open_on of the live store", || {
            Engine::open_on(vfs, STORE, config)
        })? {
            Err(Error::StoreLocked { .. }) | Err(Error::Io { .. }) => Ok(()),
            Err(error) => Err(format!(
                "a second open of the live store failed with {error}, not Error::StoreLocked"
            )),
            Ok(second) => {
                // Its recovery may have rewritten the store under the first: stop here.
                std::mem::forget(second);
                Err(
                    "a second open of the live store succeeded; it must be refused with \
                     Error::StoreLocked"
                        .into(),
                )
            }
        }
    }

    /// Cancels the slow snapshots (and some others) still running and waits for every one.
    fn finish_snapshots(&mut self) -> Outcome {
        let running: Vec<RunningSnapshot> =
            std::mem::take(&mut *self.shared.snapshots.lock().unwrap());
        for mut snapshot in running {
            if snapshot.cancelled.is_none() && self.rng.chance(1, 3) {
                snapshot.cancelled = Some(Instant::now());
                self.call(&format!("cancel snapshot {}", snapshot.name), || {
                    snapshot.handle.cancel()
                })?;
            }
            wait_snapshot(&self.shared, &self.slot, snapshot)?;
        }
        Ok(())
    }

    /// No panic on any thread; a listener that panicked poisoned the engine.
    fn check_engine_threads(&self, engine: &Engine, listener_panics_before: u64) -> Outcome {
        let (panics, first) = watchdog::panics();
        if panics > 0 {
            return Err(format!(
                "{panics} panic(s) on an engine thread; the first: {}",
                first.unwrap_or_default()
            ));
        }
        let deliberate = watchdog::deliberate_panics() - listener_panics_before;
        if deliberate > 0 {
            self.shared
                .counters
                .listener_panics
                .fetch_add(deliberate, Ordering::SeqCst);
            let poisoned = self.call("poisoned", || engine.poisoned())?;
            if poisoned.is_none() {
                return Err("a checkpoint listener panicked but the engine is not poisoned".into());
            }
        }
        Ok(())
    }

    /// Ends the phase as `end` says (not `Continue`).
    fn end(&mut self, engine: Arc<Engine>, end: PhaseEnd) -> Outcome {
        let shared = Arc::clone(&self.shared);
        let engine = Arc::try_unwrap(engine)
            .map_err(|_| "the engine is still shared after the workers stopped".to_string())?;
        match end {
            PhaseEnd::Continue => unreachable!("the engine stays open"),
            PhaseEnd::Close | PhaseEnd::CloseUnderLoad => {
                let start = shared.clock.tick();
                if self.call("close", || engine.close())?.is_ok() {
                    shared.clock.made_durable(start);
                }
                self.call("drop the closed engine", || drop(engine))?;
            }
            PhaseEnd::Drop => self.call("drop the engine (closes it)", || drop(engine))?,
            PhaseEnd::Crash | PhaseEnd::CrashUnderLoad => {
                shared
                    .sim
                    .set_fault_plan(FaultPlan::crash_at(shared.sim.op_count()));
                // Every operation fails from here: the close stops the engine's threads and
                // changes nothing durable.
                let _ = self.call("close after the power cut", || engine.close())?;
                self.call("drop the engine after the power cut", || drop(engine))?;
                shared.counters.power_cuts.fetch_add(1, Ordering::Relaxed);
                let seed = self.rng.next();
                let report = shared.sim.crash(seed);
                self.trace(|| format!("crash {seed}: {report:?}"));
                // What published before the power cut must have survived it.
                self.check_snapshots()?;
                self.check_snapshots_survived()?;
            }
        }
        shared.sim.clear_faults();
        Ok(())
    }

    /// S1 for every snapshot published since the last check, then every store restored from one.
    fn check_snapshots(&mut self) -> Outcome {
        let vfs = self.shared.vfs();
        let mut published = std::mem::take(&mut *self.shared.published.lock().unwrap());
        let outcome = (|| {
            for snapshot in published.iter_mut().filter(|p| p.restored.is_none()) {
                let found = self.restore_and_read(&vfs, &snapshot.dir, &snapshot.name)?;
                model::check_snapshot(
                    &self.models,
                    &found,
                    snapshot.manifest.cut_epoch,
                    snapshot.span,
                )
                .map_err(|v| format!("S1: snapshot {}: {v}", snapshot.name))?;
                snapshot.restored = Some(found);
                if self.rng.chance(1, 4) {
                    let tamper = TAMPERS[self.rng.below(TAMPERS.len() as u64) as usize];
                    self.check_tampered_manifest(snapshot, tamper)?;
                }
            }
            self.check_restored(&published, false)
        })();
        *self.shared.published.lock().unwrap() = published;
        outcome
    }

    /// A manifest changed after the snapshot published must fail `verify` and `restore` (never
    /// panic); the original bytes are put back and synced afterwards.
    fn check_tampered_manifest(&self, snapshot: &Published, tamper: &str) -> Outcome {
        let path = snapshot.dir.join("manifest.json");
        let sim = &self.shared.sim;
        let original = sim
            .read_current(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut json: serde_json::Value = serde_json::from_slice(&original)
            .map_err(|e| format!("{} is no JSON: {e}", path.display()))?;
        match tamper {
            "cut_epoch + 1" => {
                json["cut_epoch"] = (snapshot.manifest.cut_epoch + 1).into();
            }
            "cut_epoch = u64::MAX" => json["cut_epoch"] = u64::MAX.into(),
            "a metadata entry added" => json["metadata"]
                .as_array_mut()
                .ok_or("the manifest has no metadata list")?
                .push(serde_json::json!({"key_hex": "7a7a", "value_hex": "01"})),
            other => unreachable!("{other}"),
        }
        let tampered = serde_json::to_vec_pretty(&json).expect("a JSON value serializes");
        let write = |bytes: &[u8]| -> std::io::Result<()> {
            let file = sim.open(&path, deltasnap::vfs::OpenMode::ReadWrite)?;
            file.set_len(0)?;
            file.write_all_at(bytes, 0)?;
            file.sync_all()
        };
        write(&tampered).map_err(|e| format!("tampering {}: {e}", path.display()))?;
        let vfs = self.shared.vfs();
        let what = format!("snapshot {} with its manifest's {tamper}", snapshot.name);
        let verified = self.call(&format!("verify_snapshot_on {what}"), || {
            deltasnap::verify_snapshot_on(&vfs, &snapshot.dir)
        })?;
        let target = PathBuf::from(format!("/t/checks/c{}/store", self.shared.unique()));
        let restored = self.call(&format!("restore_on {what}"), || {
            deltasnap::restore_on(&vfs, &snapshot.dir, &target)
        })?;
        write(&original).map_err(|e| format!("restoring {}: {e}", path.display()))?;
        if verified.is_ok_and(|report| report.is_ok()) {
            return Err(format!("{what} verifies; the manifest must be checksummed"));
        }
        if restored.is_ok() {
            return Err(format!("{what} restores; restore must check the manifest"));
        }
        Ok(())
    }

    /// After a power cut: every published snapshot and every restored store is still there.
    fn check_snapshots_survived(&mut self) -> Outcome {
        let vfs = self.shared.vfs();
        let published = std::mem::take(&mut *self.shared.published.lock().unwrap());
        let outcome = (|| {
            for snapshot in &published {
                let found = self.restore_and_read(&vfs, &snapshot.dir, &snapshot.name)?;
                if Some(&found) != snapshot.restored.as_ref() {
                    return Err(format!(
                        "published snapshot {} changed: {}",
                        snapshot.name,
                        found.first_difference(snapshot.restored.as_ref().unwrap())
                    ));
                }
            }
            self.check_restored(&published, true)
        })();
        *self.shared.published.lock().unwrap() = published;
        outcome
    }

    /// Every restored store opens and holds its snapshot (`again`: also those checked before).
    fn check_restored(&mut self, published: &[Published], again: bool) -> Outcome {
        let vfs = self.shared.vfs();
        let mut restored = std::mem::take(&mut *self.shared.restored.lock().unwrap());
        let outcome = (|| {
            for store in restored.iter_mut().filter(|r| again || !r.checked) {
                let expected = published
                    .iter()
                    .find(|p| p.name == store.snapshot)
                    .and_then(|p| p.restored.as_ref())
                    .expect("a restored snapshot was published and checked");
                let found = self.open_and_read(&vfs, &store.dir)?;
                if found != *expected {
                    return Err(format!(
                        "the store restored from {} into {} is not the snapshot: {}",
                        store.snapshot,
                        store.dir.display(),
                        found.first_difference(expected)
                    ));
                }
                store.checked = true;
            }
            Ok(())
        })();
        *self.shared.restored.lock().unwrap() = restored;
        outcome
    }

    fn restore_and_read(
        &self,
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        name: &str,
    ) -> Result<StoreState, String> {
        let report = self
            .call(&format!("verify_snapshot_on {}", dir.display()), || {
                deltasnap::verify_snapshot_on(vfs, dir)
            })?
            .map_err(|e| format!("published snapshot {name} is gone or unreadable: {e}"))?;
        if !report.is_ok() {
            return Err(format!(
                "published snapshot {name} does not verify: {:?}",
                report.problems
            ));
        }
        let target = PathBuf::from(format!("/t/checks/c{}/store", self.shared.unique()));
        self.call(&format!("restore_on {}", dir.display()), || {
            deltasnap::restore_on(vfs, dir, &target)
        })?
        .map_err(|e| format!("restoring published snapshot {name}: {e}"))?;
        self.open_and_read(vfs, &target)
    }

    fn open_and_read(&self, vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<StoreState, String> {
        // A restored store exists: never create an empty one in its place.
        let config = Config {
            background_checkpointer: false,
            create_if_missing: false,
            ..self.shared.config.clone()
        };
        let engine = self
            .call(&format!("open restored store {}", dir.display()), || {
                Engine::open_on(Arc::clone(vfs), dir, config)
            })?
            .map_err(|e| format!("opening restored store {}: {e}", dir.display()))?;
        let found = self
            .call("read the restored store", || read_state(&engine))?
            .map_err(|e| format!("reading restored store {}: {e}", dir.display()))?;
        self.call("close the restored store", || engine.close())?
            .map_err(|e| format!("closing restored store {}: {e}", dir.display()))?;
        Ok(found)
    }
}

/// The memory budget holds at most the live pages, and (`checkpointed`) no dirty bytes.
fn check_memory(engine: &Engine, checkpointed: bool) -> Outcome {
    let (resident, dirty) = engine.memory_usage();
    let pages: u64 = engine
        .partitions()
        .iter()
        .map(|(_, count)| *count as u64)
        .sum();
    let live_bytes = pages * engine.page_size() as u64;
    if checkpointed && dirty != 0 {
        return Err(format!(
            "{dirty} dirty bytes in the memory budget (resident {resident}, live pages {live_bytes} bytes)"
        ));
    }
    if resident > live_bytes {
        return Err(format!(
            "{resident} resident bytes in the memory budget, more than the {pages} live pages ({live_bytes} bytes; dirty {dirty})"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running programs.

/// One program; `Err` with the violation.
fn program(seed: u64, watch: Arc<Watch>, counters: Arc<Counters>) -> Outcome {
    let mut rng = Rng(seed);
    let config = program_config(&mut rng);
    let workers = 2 + rng.below(3) as u32;
    let phases = 3 + rng.below(4);
    let calls_per_phase = 20 + rng.below(100);
    let panicking_listener = rng.chance(1, 10);
    // The application's root, durable before the program starts; everything under it is made
    // by the engine (which must make durable every directory it creates).
    let sim = SimFs::new();
    sim.create_dir_all(Path::new("/t"))
        .and_then(|()| sim.sync_dir(Path::new("/")))
        .map_err(|e| format!("creating /t: {e}"))?;
    let payload_size = deltasnap::format::payload_size(config.page_size as usize);
    let faults = FaultFs::new(Arc::new(sim.clone()));
    let shared = Arc::new(Shared {
        seed,
        sim,
        faults,
        watch: Arc::clone(&watch),
        clock: Clock::default(),
        page_size: config.page_size,
        config,
        payload_size,
        snapshots: Mutex::default(),
        published: Mutex::default(),
        restored: Mutex::default(),
        listeners: Mutex::default(),
        panicking_listener_added: AtomicBool::new(false),
        names: AtomicU64::new(0),
        phase: AtomicU64::new(0),
        snapshots_started: AtomicU64::new(0),
        restores_started: AtomicU64::new(0),
        counters,
    });
    let mut controller = Controller {
        slot: watch.slot("controller"),
        shared: Arc::clone(&shared),
        models: (0..workers).map(WorkerModel::new).collect(),
        worker_rngs: (0..workers).map(|_| rng.fork()).collect(),
        rng,
        panicking_listener,
        calls_per_phase,
    };
    controller.run(phases)
}

/// Runs program `seed` on its own thread under the watchdog; panics with the seed on a violation
/// or a hang (leaking the stuck threads). Returns the calls it made.
fn run_seed(seed: u64, bound: Duration, counters: &Arc<Counters>) -> u64 {
    deltasnap_verification::kill::iteration();
    watchdog::install_panic_hook();
    let watch = Arc::new(Watch::new(bound));
    let (done, finished) = mpsc::channel();
    let thread_watch = Arc::clone(&watch);
    let thread_counters = Arc::clone(counters);
    std::thread::Builder::new()
        .name("lifecycle-controller".into())
        .spawn(move || {
            let outcome = program(seed, thread_watch, thread_counters);
            let _ = done.send(outcome);
        })
        .expect("spawn the controller");
    loop {
        match finished.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(())) => return watch.calls(),
            Ok(Err(violation)) => {
                panic!("lifecycle sim: {violation}\n  replay: DELTASNAP_LIFECYCLE_SEED={seed}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "lifecycle sim: the controller panicked (message above)\n  replay: \
                 DELTASNAP_LIFECYCLE_SEED={seed}"
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(report) = watch.stuck() {
                    panic!("lifecycle sim: {report}\n  replay: DELTASNAP_LIFECYCLE_SEED={seed}");
                }
            }
        }
    }
}

fn call_bound() -> Duration {
    Duration::from_millis(env_u64("DELTASNAP_LIFECYCLE_CALL_BOUND_MS").unwrap_or(10_000))
}

/// The seeds of this run: the one to replay, or the first `DELTASNAP_LIFECYCLE_SEEDS`.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("DELTASNAP_LIFECYCLE_SEED") {
        let repeat = env_u64("DELTASNAP_LIFECYCLE_REPEAT").unwrap_or(1);
        return vec![seed; repeat as usize];
    }
    let count = env_u64("DELTASNAP_LIFECYCLE_SEEDS").unwrap_or(SEEDS_DEFAULT);
    (0..count).map(program_seed).collect()
}

fn run_all() {
    // A few entries per merge batch, so that these small stores' deltas span several batches
    // and a merge that loads a whole delta is seen (issue 11 defect 7).
    deltasnap::bugs::set_merge_buffer_bytes_max(MERGE_BATCH_BYTES as u64);
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let bound = call_bound();
    let seeds = seeds();
    let mut calls = 0;
    for seed in &seeds {
        calls += run_seed(*seed, bound, &counters);
    }
    let seconds = started.elapsed().as_secs_f64();
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "lifecycle sim: {} seeds, {calls} calls in {seconds:.1} s ({:.0} calls/s); snapshots: {} \
         started, {} published, {} cancelled, {} failed; {} restores, {} power cuts, {} faults \
         armed, {} opens, {} listener panics",
        seeds.len(),
        calls as f64 / seconds,
        get(&c.snapshots_started),
        get(&c.snapshots_published),
        get(&c.snapshots_cancelled),
        get(&c.snapshots_failed),
        get(&c.restores),
        get(&c.power_cuts),
        get(&c.faults_armed),
        get(&c.reopens),
        get(&c.listener_panics),
    );
}

#[test]
fn lifecycle_programs_hold_every_check() {
    if deltasnap_verification::kill::requested().is_some() {
        return;
    }
    run_all();
}

/// Kill mode (see `deltasnap::bugs::kill`): run alone, `--exact kill_matrix`.
#[test]
fn kill_matrix() {
    deltasnap_verification::kill::run_requested("lifecycle", run_all);
}
