//! The demo's phases, one function each, in the order `demo::run` calls them: [`build`],
//! [`load`], [`close_and_reopen`], [`verify_pages`]. Each shows its own progress bar and returns
//! what the report needs; none prints.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use deltasnap::{
    CheckpointOutcome, Engine, EngineStats, JobKind, JobStatus, PageId, RecoveryReport,
    WriteReceipt,
};
use hdrhistogram::Histogram;
use indicatif::{MultiProgress, ProgressBar};

use super::reference::Reference;
use super::{Plan, PLAN_KEY};
use crate::content::{self, Header, SplitMix64, Version};
use crate::failure::{Context, Failure, Result};
use crate::progress;
use crate::units::{format_bytes, format_count};

/// Largest write latency the histograms track (longer ones are clamped to it).
const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Writers publish their write count in batches of this many (one shared atomic, rarely touched).
const WRITES_PER_PUBLISH: u64 = 64;
/// How often the load phase's monitor samples the counters and the engine's jobs.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);
/// Mismatching pages described in the report (all are counted).
const MISMATCH_EXAMPLES_MAX: usize = 10;

/// Joins a scoped thread. A panic in it has already ended the process through the panic hook
/// (`failure::install_panic_hook`) unless `RUST_BACKTRACE` is set; then it is passed on.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What [`build`] did.
#[derive(Debug)]
pub struct BuildOutcome {
    /// Creating partitions, allocating and filling every page.
    pub fill_duration: Duration,
    /// The checkpoint that made the built store durable.
    pub checkpoint: CheckpointOutcome,
}

/// Phase (a): creates the partitions, stores the plan in the metadata, allocates every page and
/// writes its initial content (one thread per `--writers`, each owning whole partitions), then
/// checkpoints so that the load starts from a durable store.
pub fn build(engine: &Engine, plan: &Plan, reference: &Reference) -> Result<BuildOutcome> {
    let started = Instant::now();
    for &(partition, _) in plan.layout.partitions() {
        engine
            .create_partition(partition)
            .context(|| format!("build: create partition {partition}"))?;
    }
    engine
        .metadata_put(PLAN_KEY, &plan.metadata_value())
        .context(|| "build: store the plan in the metadata".into())?;
    let bar = progress::bytes("build", plan.store_bytes());
    let threads = (plan.writers as usize).min(plan.layout.partitions().len());
    let failed = AtomicBool::new(false);
    let results: Vec<Result<()>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread_index| {
                let (bar, failed) = (&bar, &failed);
                scope.spawn(move || {
                    let result = fill_partitions(
                        engine,
                        plan,
                        reference,
                        bar,
                        thread_index,
                        threads,
                        failed,
                    );
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    bar.finish_and_clear();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let fill_duration = started.elapsed();

    let spinner = progress::spinner("build", "checkpoint of the built store");
    let checkpoint = engine
        .sync()
        .and_then(|_| engine.checkpoint())
        .context(|| "build: checkpoint the built store".into());
    spinner.finish_and_clear();
    Ok(BuildOutcome {
        fill_duration,
        checkpoint: checkpoint?,
    })
}

/// Allocates and fills the partitions `thread_index, thread_index + threads, …`.
fn fill_partitions(
    engine: &Engine,
    plan: &Plan,
    reference: &Reference,
    bar: &ProgressBar,
    thread_index: usize,
    threads: usize,
    failed: &AtomicBool,
) -> Result<()> {
    let mut payload = vec![0u8; engine.payload_size()];
    let partitions = plan
        .layout
        .partitions()
        .iter()
        .skip(thread_index)
        .step_by(threads);
    for &(partition, page_count) in partitions {
        for index in 0..page_count {
            if failed.load(Ordering::Relaxed) {
                return Ok(()); // another thread failed; its error is the one reported
            }
            let page = engine
                .allocate_page(partition)
                .context(|| format!("build: allocate page {index} of partition {partition}"))?;
            if page != PageId::new(partition, index) {
                return Err(Failure::error(
                    "build",
                    format!("allocate_page returned page {page}, expected {partition}:{index}"),
                ));
            }
            content::fill(page, Version::INITIAL, &mut payload);
            let receipt = engine
                .write(page, 0, &payload)
                .context(|| format!("build: write page {page}"))?;
            reference.record(plan.layout.slot(page), receipt, Version::INITIAL);
            bar.inc(plan.page_size as u64);
        }
    }
    Ok(())
}

/// Where the load is relative to the snapshot, as the writers see it: every write is counted and
/// timed under the phase it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPhase {
    /// From the start of the load until the snapshot is requested.
    Before,
    /// From the request until the snapshot is published (or failed).
    During,
    /// From then until the writers stop.
    After,
}

impl SnapshotPhase {
    pub const ALL: [SnapshotPhase; 3] = [
        SnapshotPhase::Before,
        SnapshotPhase::During,
        SnapshotPhase::After,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(index: u8) -> SnapshotPhase {
        SnapshotPhase::ALL[index as usize]
    }
}

/// What the writers did in one [`SnapshotPhase`].
#[derive(Debug)]
pub struct PhaseOutcome {
    /// How long the phase lasted (zero if the load never reached it).
    pub duration: Duration,
    pub writes: u64,
    /// Latency of every write of the phase, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// The longest single write (a writer's stall), exact (the histogram rounds).
    pub longest_write: Duration,
    /// When the longest write started, from the start of the load.
    pub longest_write_at: Duration,
}

impl PhaseOutcome {
    fn new() -> PhaseOutcome {
        PhaseOutcome {
            duration: Duration::ZERO,
            writes: 0,
            latency_ns: new_histogram(),
            longest_write: Duration::ZERO,
            longest_write_at: Duration::ZERO,
        }
    }

    fn add(&mut self, other: &PhaseOutcome) -> Result<()> {
        self.writes += other.writes;
        self.latency_ns
            .add(&other.latency_ns)
            .map_err(|e| Failure::error("load: merge latency histograms", e))?;
        if other.longest_write > self.longest_write {
            self.longest_write = other.longest_write;
            self.longest_write_at = other.longest_write_at;
        }
        Ok(())
    }
}

/// What [`load`] measured.
#[derive(Debug)]
pub struct LoadOutcome {
    pub duration: Duration,
    pub writes: u64,
    /// Latency of every write, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// The writes of each [`SnapshotPhase`], by `SnapshotPhase as usize`.
    pub phases: [PhaseOutcome; 3],
    /// Writes whose receipt had an older epoch than the same writer's previous write (K1 broken).
    pub epoch_regressions: u64,
    /// Checkpoint jobs that ended while the writers ran, by job id.
    pub checkpoints: Vec<JobStatus>,
    /// Resident and dirty page-image bytes when the writers stopped.
    pub memory_at_end: (u64, u64),
}

impl LoadOutcome {
    pub fn phase(&self, phase: SnapshotPhase) -> &PhaseOutcome {
        &self.phases[phase.index()]
    }
}

/// The load while it runs, for work that happens under it (the snapshot phase).
#[derive(Debug)]
pub struct Running<'a> {
    started: Instant,
    writes: &'a AtomicU64,
    stop: &'a AtomicBool,
    /// The current [`SnapshotPhase`], read by the writers before every write.
    phase: AtomicU8,
    /// When each phase began, from the start of the load.
    phase_started: Mutex<[Option<Duration>; 3]>,
    bars: &'a MultiProgress,
}

impl Running<'_> {
    /// Time since the writers started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Writes done so far (published in batches, so it may lag by a few per writer).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Whether the writers were told to stop (the time is up or one of them failed).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Moves the writers to `phase` (phases only go forward): writes that start from now on are
    /// counted under it.
    pub fn enter(&self, phase: SnapshotPhase) {
        let previous = self.phase.swap(phase as u8, Ordering::Relaxed);
        assert!(
            previous <= phase as u8,
            "load phases go forward, not from {:?} to {phase:?}",
            SnapshotPhase::from_index(previous)
        );
        let mut started = self
            .phase_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        started[phase.index()].get_or_insert(self.elapsed());
    }

    fn phase(&self) -> SnapshotPhase {
        SnapshotPhase::from_index(self.phase.load(Ordering::Relaxed))
    }

    /// Shows `bar` below the load's own bar (two bars drawn independently would overwrite each
    /// other).
    pub fn add_bar(&self, bar: ProgressBar) -> ProgressBar {
        self.bars.add(bar)
    }

    /// How long each phase lasted, the load having lasted `total`.
    fn phase_durations(&self, total: Duration) -> [Duration; 3] {
        let started = *self
            .phase_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut durations = [Duration::ZERO; 3];
        for (index, start) in started.iter().enumerate() {
            let Some(start) = start else { continue };
            let end = started[index + 1..]
                .iter()
                .find_map(|later| *later)
                .unwrap_or(total);
            durations[index] = end.saturating_sub(*start);
        }
        durations
    }
}

/// What one writer thread did.
struct WriterOutcome {
    phases: [PhaseOutcome; 3],
    epoch_regressions: u64,
}

/// Phase (b): `plan.writers` threads write random pages for `plan.load_duration()` while the
/// background checkpointer runs; a monitor thread shows writes/s and checkpoints live. `during`
/// runs on the calling thread while the writers write (the snapshot phase's hook, which moves the
/// writers through the [`SnapshotPhase`]s); the writers stop when both the time is up and `during`
/// returned.
pub fn load<T>(
    engine: &Engine,
    plan: &Plan,
    reference: &Reference,
    during: impl FnOnce(&Running<'_>) -> Result<T>,
) -> Result<(LoadOutcome, T)> {
    let writes = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let ended_before: BTreeSet<u64> = engine
        .jobs()
        .iter()
        .filter(|job| job.duration.is_some())
        .map(|job| job.id)
        .collect();
    let bars = MultiProgress::new();
    let running = Running {
        started: Instant::now(),
        writes: &writes,
        stop: &stop,
        phase: AtomicU8::new(SnapshotPhase::Before as u8),
        phase_started: Mutex::new([Some(Duration::ZERO), None, None]),
        bars: &bars,
    };
    let bar = bars.add(progress::timed("load", plan.load_duration()));
    let (writer_results, checkpoints, during_result) = thread::scope(|scope| {
        let writers: Vec<_> = (0..plan.writers)
            .map(|writer| {
                let running = &running;
                scope.spawn(move || {
                    let result = write_loop(engine, plan, reference, writer, running);
                    if result.is_err() {
                        running.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let monitor = scope.spawn(|| monitor(engine, &running, &bar, &ended_before));
        let during_result = during(&running);
        let deadline = running.started + plan.load_duration();
        while !running.stopping() && during_result.is_ok() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            thread::sleep((deadline - now).min(MONITOR_INTERVAL));
        }
        stop.store(true, Ordering::Relaxed);
        let writer_results: Vec<Result<WriterOutcome>> = writers.into_iter().map(join).collect();
        (writer_results, join(monitor), during_result)
    });
    let duration = running.elapsed();
    let memory_at_end = engine.memory_usage();
    bar.finish_and_clear();
    let mut phases = [
        PhaseOutcome::new(),
        PhaseOutcome::new(),
        PhaseOutcome::new(),
    ];
    let mut epoch_regressions = 0;
    for result in writer_results {
        let outcome = result?;
        for (phase, writer_phase) in phases.iter_mut().zip(&outcome.phases) {
            phase.add(writer_phase)?;
        }
        epoch_regressions += outcome.epoch_regressions;
    }
    for (phase, duration) in phases.iter_mut().zip(running.phase_durations(duration)) {
        phase.duration = duration;
    }
    let mut all = PhaseOutcome::new();
    for phase in &phases {
        all.add(phase)?;
    }
    let during_value = during_result?;
    assert_eq!(
        all.writes,
        writes.load(Ordering::Relaxed),
        "every write is counted in one phase"
    );
    Ok((
        LoadOutcome {
            duration,
            writes: all.writes,
            latency_ns: all.latency_ns,
            phases,
            epoch_regressions,
            checkpoints: checkpoints.into_values().collect(),
            memory_at_end,
        },
        during_value,
    ))
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("constant histogram bounds are valid")
}

/// One writer: random pages, each write stamped with its version, timed under the load phase it
/// started in, and recorded in the reference under its receipt.
fn write_loop(
    engine: &Engine,
    plan: &Plan,
    reference: &Reference,
    writer: u16,
    running: &Running<'_>,
) -> Result<WriterOutcome> {
    let mut rng =
        SplitMix64::new(plan.seed ^ (writer as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut phases = [
        PhaseOutcome::new(),
        PhaseOutcome::new(),
        PhaseOutcome::new(),
    ];
    let mut bytes = vec![0u8; plan.write_bytes];
    let mut last_epoch = 0;
    let mut epoch_regressions = 0;
    let mut seq = 0u64;
    while !running.stopping() {
        let slot = rng.below(plan.pages as u64) as usize;
        let page = plan.layout.page(slot);
        let version = Version::new(writer, seq);
        content::fill(page, version, &mut bytes);
        let phase = &mut phases[running.phase().index()];
        let started = Instant::now();
        let receipt: WriteReceipt = engine
            .write(page, 0, &bytes)
            .context(|| format!("load: writer {writer} write #{seq} to page {page}"))?;
        let latency = started.elapsed();
        phase
            .latency_ns
            .saturating_record(latency.as_nanos() as u64);
        phase.writes += 1;
        if latency > phase.longest_write {
            phase.longest_write = latency;
            phase.longest_write_at = started.saturating_duration_since(running.started);
        }
        reference.record(slot, receipt, version);
        if receipt.epoch < last_epoch {
            epoch_regressions += 1;
        }
        last_epoch = last_epoch.max(receipt.epoch);
        seq += 1;
        if seq.is_multiple_of(WRITES_PER_PUBLISH) {
            running
                .writes
                .fetch_add(WRITES_PER_PUBLISH, Ordering::Relaxed);
        }
    }
    running
        .writes
        .fetch_add(seq % WRITES_PER_PUBLISH, Ordering::Relaxed);
    Ok(WriterOutcome {
        phases,
        epoch_regressions,
    })
}

/// Updates the load bar with writes/s over the last second, checkpoints done and dirty memory,
/// and collects every checkpoint job that ends (the engine remembers only the last few).
fn monitor(
    engine: &Engine,
    running: &Running<'_>,
    bar: &ProgressBar,
    ended_before: &BTreeSet<u64>,
) -> BTreeMap<u64, JobStatus> {
    let mut checkpoints = BTreeMap::new();
    let mut samples: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        let stopping = running.stopping();
        for job in engine.jobs() {
            if job.kind == JobKind::Checkpoint
                && job.duration.is_some()
                && !ended_before.contains(&job.id)
            {
                checkpoints.entry(job.id).or_insert(job);
            }
        }
        if stopping {
            return checkpoints;
        }
        let now = Instant::now();
        let writes = running.writes();
        samples.push_back((now, writes));
        while samples.len() > 2 && now - samples[0].0 > Duration::from_secs(1) {
            samples.pop_front();
        }
        let (then, writes_then) = samples[0];
        let window = (now - then).as_secs_f64();
        let rate = if window > 0.0 {
            ((writes - writes_then) as f64 / window) as u64
        } else {
            0
        };
        let (_, dirty_bytes) = engine.memory_usage();
        bar.set_position(running.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{} writes {}/s, {} ckpt, {} dirty",
            format_count(writes),
            format_count(rate),
            checkpoints.len(),
            format_bytes(dirty_bytes)
        ));
        thread::sleep(MONITOR_INTERVAL);
    }
}

/// What [`close_and_reopen`] did.
#[derive(Debug)]
pub struct ReopenOutcome {
    /// The reopened store.
    pub engine: Engine,
    /// The first engine's counters, just before it closed.
    pub stats: EngineStats,
    pub close_duration: Duration,
    /// The checkpoint `close` ran, if it ran one.
    pub close_checkpoint: Option<JobStatus>,
    /// How long `Engine::open` took (recovery included).
    pub open_duration: Duration,
    pub recovery: RecoveryReport,
}

/// Phase (c), first half: closes the store (stopping the checkpointer and writing a final
/// checkpoint) and opens it again, timing both.
pub fn close_and_reopen(engine: Engine, plan: &Plan, dir: &Path) -> Result<ReopenOutcome> {
    let spinner = progress::spinner("close", "final checkpoint");
    let stats = engine.stats();
    let ended_before: BTreeSet<u64> = engine
        .jobs()
        .iter()
        .filter(|job| job.duration.is_some())
        .map(|job| job.id)
        .collect();
    let started = Instant::now();
    let closed = engine.close();
    let close_duration = started.elapsed();
    spinner.finish_and_clear();
    closed.context(|| format!("close store {}", dir.display()))?;
    let close_checkpoint = engine
        .jobs()
        .into_iter()
        .filter(|job| job.kind == JobKind::Checkpoint && !ended_before.contains(&job.id))
        .max_by_key(|job| job.id);
    drop(engine);

    let spinner = progress::spinner("reopen", "recovery");
    let started = Instant::now();
    let reopened = Engine::open(dir, plan.config.clone());
    let open_duration = started.elapsed();
    spinner.finish_and_clear();
    let engine = reopened.context(|| format!("reopen store {}", dir.display()))?;
    let recovery = engine.recovery_report().clone();
    Ok(ReopenOutcome {
        engine,
        stats,
        close_duration,
        close_checkpoint,
        open_duration,
        recovery,
    })
}

/// One page that does not hold what the reference says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mismatch {
    pub page: String,
    pub expected: String,
    pub found: String,
}

/// What [`verify_pages`] found.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub pages_checked: u64,
    pub duration: Duration,
    /// Pages whose content differs from the reference, or that could not be read.
    pub mismatches: u64,
    pub examples: Vec<Mismatch>,
    /// Differences in the store's shape: partitions, page counts, the plan in the metadata.
    pub shape_problems: Vec<String>,
}

/// Phase (c), second half (and the snapshot phase's check of a restored store): reads every page
/// and compares it with the content of the version `expected[slot]`; also checks the partitions,
/// page counts and the plan stored in the metadata.
pub fn verify_pages(engine: &Engine, plan: &Plan, expected: &[Version]) -> Result<VerifyOutcome> {
    assert_eq!(expected.len(), plan.pages, "one expected version per page");
    let started = Instant::now();
    let mut shape_problems = Vec::new();
    let partitions = engine.partitions();
    if partitions != plan.layout.partitions() {
        shape_problems.push(format!(
            "the store has partitions (id, pages) {partitions:?}, the demo made {:?}",
            plan.layout.partitions()
        ));
    }
    match engine.metadata_get(PLAN_KEY) {
        Ok(Some(value)) if value == plan.metadata_value() => {}
        Ok(other) => shape_problems.push(format!(
            "metadata {:?} holds {:?}, not the plan",
            String::from_utf8_lossy(PLAN_KEY),
            other.map(|v| String::from_utf8_lossy(&v).into_owned())
        )),
        Err(error) => shape_problems.push(format!("metadata read failed: {error}")),
    }
    if !shape_problems.is_empty() {
        // Pages of a store with another shape cannot be compared one by one.
        return Ok(VerifyOutcome {
            pages_checked: 0,
            duration: started.elapsed(),
            mismatches: 0,
            examples: Vec::new(),
            shape_problems,
        });
    }

    let bar = progress::items("verify", plan.pages as u64, "pages");
    let threads = (plan.writers as usize).clamp(1, plan.pages);
    let chunk = plan.pages.div_ceil(threads);
    let results: Vec<(u64, Vec<Mismatch>)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let slots = t * chunk..((t + 1) * chunk).min(plan.pages);
                let bar = &bar;
                scope.spawn(move || verify_slots(engine, plan, expected, slots, bar))
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    bar.finish_and_clear();
    let mut mismatches = 0;
    let mut examples = Vec::new();
    for (count, some) in results {
        mismatches += count;
        examples.extend(some);
    }
    examples.truncate(MISMATCH_EXAMPLES_MAX);
    Ok(VerifyOutcome {
        pages_checked: plan.pages as u64,
        duration: started.elapsed(),
        mismatches,
        examples,
        shape_problems,
    })
}

fn verify_slots(
    engine: &Engine,
    plan: &Plan,
    expected: &[Version],
    slots: std::ops::Range<usize>,
    bar: &ProgressBar,
) -> (u64, Vec<Mismatch>) {
    let mut want = vec![0u8; engine.payload_size()];
    let mut mismatches = 0;
    let mut examples = Vec::new();
    let mut unreported = 0;
    for slot in slots {
        let page = plan.layout.page(slot);
        let version = expected[slot];
        let found = match engine.read(page) {
            Ok(payload) => {
                content::expected(page, version, plan.write_bytes, &mut want);
                if payload == want {
                    None
                } else {
                    Some(describe_difference(&payload, &want))
                }
            }
            Err(error) => Some(format!("read failed: {error}")),
        };
        if let Some(found) = found {
            mismatches += 1;
            if examples.len() < MISMATCH_EXAMPLES_MAX {
                examples.push(Mismatch {
                    page: page.to_string(),
                    expected: version.to_string(),
                    found,
                });
            }
        }
        unreported += 1;
        if unreported == 1024 {
            bar.inc(unreported);
            unreported = 0;
        }
    }
    bar.inc(unreported);
    (mismatches, examples)
}

/// What a page holds instead of the expected content, as far as its header tells.
fn describe_difference(found: &[u8], want: &[u8]) -> String {
    let first = found
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(found.len().min(want.len()));
    match Header::decode(found) {
        Some(header) if Header::decode(want).is_some_and(|w| w == header) => {
            format!("the expected header, but different bytes from offset {first}")
        }
        Some(header) => format!(
            "page {}'s {} (differs from offset {first})",
            header.page, header.version
        ),
        None if found.iter().all(|&b| b == 0) => "zeros".into(),
        None => format!("no demo header (differs from offset {first})"),
    }
}
