//! `compare`: deltasnap's online snapshot side by side with the physical floor, a stop-the-world
//! copy, SQLite's online backup and `VACUUM INTO`, and LMDB's environment copy, in one run, at
//! one data size and one open-loop write rate (BENCHMARKS.md has the method and a run).
//!
//! ```text
//! cargo run --release -p deltasnap-benches --bin compare -- --size 1GiB
//! ```
//!
//! Every scenario: the writers start at the target rate, run `--warmup` unmeasured and
//! `--before` measured, then the backup runs (the *during* window is the backup's duration),
//! then `--after`. The backup's clock stops when its output is fsynced. Prints a Markdown table,
//! writes `compare-<size>.{json,md,svg}` to `--out`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use deltasnap::{DeltaPolicy, Engine, JobStage, SnapshotOptions};
use deltasnap_benches::io::{self, ThreadIo, Writeback};
use deltasnap_benches::load::{self, LoadConfig, Window, WindowStats};
use deltasnap_benches::svg::{self, Panel, Scale, Series};
use deltasnap_benches::workload::{
    self, format_bytes, parse_bytes, parse_duration, record_value, StoreShape, PAGE_BYTES,
    RECORD_BYTES,
};
use deltasnap_benches::Result;
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    about = "deltasnap's online snapshot against the floor, a stop-the-world copy, SQLite and LMDB"
)]
struct Args {
    /// Bytes of data every system holds (deltasnap pages; the same records for SQLite and LMDB).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    size: u64,
    /// Writes per second over all writer threads (open loop).
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Writer threads sharing the rate.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// deltasnap partitions the data is spread over.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Unmeasured time the writers run before the `before` window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Length of the `before` window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    before: Duration,
    /// Time the writers run after the backup ended.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    after: Duration,
    /// How long SQLite's stepwise backup may run before it is called unfinished.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    bound: Duration,
    /// Pages per step of SQLite's stepwise backup.
    #[arg(long, default_value_t = 100)]
    step_pages: i32,
    /// Sleep between steps of SQLite's stepwise backup.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    step_sleep: Duration,
    /// Times the floor copy is repeated (the median is the floor).
    #[arg(long, default_value_t = 5)]
    floor_runs: usize,
    /// Times every scenario is repeated (the table shows medians) except SQLite's stepwise
    /// backup, which runs once because it is bounded by `--bound`.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run only these systems: deltasnap, stw, sqlite, lmdb (comma separated; default all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the stores and copies go (a temporary directory inside it).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Where the JSON, Markdown and SVG results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// Seed of the writers' record choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Args {
    fn runs(&self, system: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == system)
    }

    fn load(&self) -> LoadConfig {
        LoadConfig {
            threads: self.threads,
            rate_per_sec: self.rate,
            drain_max: Duration::from_secs(30),
        }
    }
}

/// One row of the comparison.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Scenario {
    system: String,
    method: String,
    /// The backup finished (within `--bound` for SQLite's stepwise backup).
    completed: bool,
    duration_s: f64,
    /// `duration_s` / the floor.
    x_floor: f64,
    /// `duration_s` / the floor copied with early writeback (as the snapshot copier does).
    x_floor_early_writeback: f64,
    before: WindowStats,
    during: WindowStats,
    after: WindowStats,
    /// Writes/s during / before.
    throughput_ratio: f64,
    /// p99 during / p99 before.
    p99_ratio: f64,
    /// Bytes the backup produced.
    output_bytes: u64,
    /// deltasnap: delta pages and their bytes (entry headers included), and bytes / data.
    delta_pages: Option<u64>,
    delta_bytes: Option<u64>,
    delta_fraction: Option<f64>,
    /// deltasnap: bytes the snapshot read and wrote beyond the floor's one read and one write of
    /// the data (syscall bytes of the snapshot and checkpointer threads).
    extra_read_bytes: Option<i64>,
    extra_written_bytes: Option<i64>,
    /// SQLite stepwise: times the backup started over.
    restarts: Option<u64>,
    /// Growth of the source files (SQLite WAL, LMDB data file) over the backup.
    source_growth_bytes: Option<i64>,
    /// deltasnap: seconds from the request at which each stage was first seen.
    stages: Vec<(String, f64)>,
    /// deltasnap: the checkpoints that ran during the snapshot (the first is its cut `S`).
    checkpoints: Vec<String>,
    /// deltasnap: the engine's counters over the whole scenario (writes, retries, throttles…).
    engine_stats: Option<deltasnap::EngineStats>,
    verified: Option<bool>,
    unissued_writes: u64,
    writer_errors: Vec<String>,
    load_average_1m: f64,
    notes: String,
    /// Every repeat's headline numbers (the fields above are medians over them).
    repeats: Vec<RepeatSummary>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct RepeatSummary {
    duration_s: f64,
    x_floor: f64,
    x_floor_early_writeback: f64,
    writes_per_sec_before: f64,
    writes_per_sec_during: f64,
    p99_before_us: f64,
    p99_during_us: f64,
    max_during_us: f64,
    max_in_call_during_us: f64,
    delta_pages: Option<u64>,
    load_average_1m: f64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    args: Args,
    data_bytes: u64,
    records: u64,
    /// The floor as the benchmark issue defines it: copy_file_range, then one fsync per file.
    floor_s: f64,
    floor_runs_s: Vec<f64>,
    /// The same copy handing each 1 MiB chunk to the device once copied (sync_file_range), as the
    /// snapshot copier does: the floor for a copier that uses that technique.
    floor_early_writeback_s: f64,
    floor_early_writeback_runs_s: Vec<f64>,
    cpus: usize,
    load_average_1m_start: f64,
    load_average_1m_end: f64,
    populate_s: Vec<(String, f64)>,
    scenarios: Vec<Scenario>,
    targets: Vec<Target>,
}

#[derive(Debug, serde::Serialize)]
struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
}

/// What a backup action returns to its scenario.
#[derive(Default)]
struct BackupOutcome {
    completed: bool,
    output_bytes: u64,
    delta_pages: Option<u64>,
    extra_read_bytes: Option<i64>,
    extra_written_bytes: Option<i64>,
    restarts: Option<u64>,
    source_growth_bytes: Option<i64>,
    stages: Vec<(String, f64)>,
    checkpoints: Vec<String>,
    notes: String,
}

/// Runs `backup` under the open-loop writers made by `make_writer`, and cuts the windows.
fn scenario<M, W, B>(
    args: &Args,
    system: &str,
    method: &str,
    floors: Floors,
    make_writer: M,
    backup: B,
) -> Result<Scenario>
where
    M: Fn(usize) -> Result<W> + Sync,
    W: FnMut(u64) -> Result<()>,
    B: FnOnce() -> Result<BackupOutcome>,
{
    // Start every scenario with no writeback pending from the previous one.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let (load_average, _) = io::load_average();
    eprintln!("== {system} / {method} (load {load_average:.2})");
    let run = load::run_open_loop(args.load(), make_writer, |clock| {
        std::thread::sleep(args.warmup);
        let before_from = clock.now_ns();
        std::thread::sleep(args.before);
        let during_from = clock.now_ns();
        let started = Instant::now();
        let outcome = backup();
        let duration = started.elapsed();
        let during_to = clock.now_ns();
        std::thread::sleep(args.after);
        let after_to = clock.now_ns();
        (
            outcome,
            duration,
            [before_from, during_from, during_to, after_to],
        )
    })?;
    let (outcome, duration, marks) = run.body;
    let outcome = outcome?;
    let window = |from: u64, to: u64| {
        load::window_stats(
            &run.samples,
            Window {
                from_ns: from,
                to_ns: to,
            },
        )
    };
    let before = window(marks[0], marks[1]);
    let during = window(marks[1], marks[2]);
    let after = window(marks[2], marks[3]);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let result = Scenario {
        system: system.into(),
        method: method.into(),
        completed: outcome.completed,
        duration_s: duration.as_secs_f64(),
        x_floor: duration.as_secs_f64() / floors.at_fsync_s,
        x_floor_early_writeback: duration.as_secs_f64() / floors.early_writeback_s,
        throughput_ratio: ratio(during.writes_per_sec, before.writes_per_sec),
        p99_ratio: ratio(during.latency.p99_us, before.latency.p99_us),
        before,
        during,
        after,
        output_bytes: outcome.output_bytes,
        delta_pages: outcome.delta_pages,
        delta_bytes: outcome
            .delta_pages
            .map(|p| p * (PAGE_BYTES + DELTA_ENTRY_HEADER_BYTES)),
        delta_fraction: None,
        extra_read_bytes: outcome.extra_read_bytes,
        extra_written_bytes: outcome.extra_written_bytes,
        restarts: outcome.restarts,
        source_growth_bytes: outcome.source_growth_bytes,
        stages: outcome.stages,
        checkpoints: outcome.checkpoints,
        engine_stats: None,
        verified: None,
        unissued_writes: run.unissued,
        writer_errors: run.errors,
        load_average_1m: load_average,
        notes: outcome.notes,
        repeats: Vec::new(),
    };
    eprintln!(
        "   {:.3} s ({:.2}x floor, {:.2}x early-writeback floor), writes/s {:.0} -> {:.0}, p99 {:.0} -> {:.0} us, max {:.0} -> {:.0} us (in call {:.0} -> {:.0} us)",
        result.duration_s,
        result.x_floor,
        result.x_floor_early_writeback,
        result.before.writes_per_sec,
        result.during.writes_per_sec,
        result.before.latency.p99_us,
        result.during.latency.p99_us,
        result.before.latency.max_us,
        result.during.latency.max_us,
        result.before.in_call.max_us,
        result.during.in_call.max_us
    );
    Ok(result)
}

/// Runs a scenario `repeats` times and keeps, for every number, the median over the repeats
/// (stage timelines and notes come from the repeat of median duration).
fn repeated(
    repeats: usize,
    mut run_once: impl FnMut(usize) -> Result<Scenario>,
) -> Result<Scenario> {
    let mut runs = Vec::new();
    for repeat in 0..repeats.max(1) {
        runs.push(run_once(repeat)?);
    }
    let med = |f: &dyn Fn(&Scenario) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let med_option = |f: &dyn Fn(&Scenario) -> Option<f64>| {
        let mut values: Vec<f64> = runs.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| median(&mut values))
    };
    let med_stats = |f: &dyn Fn(&Scenario) -> WindowStats| {
        let stat = |g: &dyn Fn(&WindowStats) -> f64| med(&|s| g(&f(s)));
        let latency = |l: &dyn Fn(&WindowStats) -> load::Latency| load::Latency {
            count: stat(&|w| l(w).count as f64) as u64,
            p50_us: stat(&|w| l(w).p50_us),
            p99_us: stat(&|w| l(w).p99_us),
            p999_us: stat(&|w| l(w).p999_us),
            max_us: stat(&|w| l(w).max_us),
        };
        WindowStats {
            seconds: stat(&|w| w.seconds),
            writes_per_sec: stat(&|w| w.writes_per_sec),
            latency: latency(&|w| w.latency),
            in_call: latency(&|w| w.in_call),
        }
    };
    let mut by_duration: Vec<&Scenario> = runs.iter().collect();
    by_duration.sort_by(|a, b| a.duration_s.total_cmp(&b.duration_s));
    let mut result = by_duration[by_duration.len() / 2].clone();
    result.duration_s = med(&|s| s.duration_s);
    result.x_floor = med(&|s| s.x_floor);
    result.x_floor_early_writeback = med(&|s| s.x_floor_early_writeback);
    result.throughput_ratio = med(&|s| s.throughput_ratio);
    result.p99_ratio = med(&|s| s.p99_ratio);
    result.before = med_stats(&|s| s.before);
    result.during = med_stats(&|s| s.during);
    result.after = med_stats(&|s| s.after);
    result.output_bytes = med(&|s| s.output_bytes as f64) as u64;
    result.delta_pages = med_option(&|s| s.delta_pages.map(|p| p as f64)).map(|p| p as u64);
    result.delta_bytes = med_option(&|s| s.delta_bytes.map(|p| p as f64)).map(|p| p as u64);
    result.delta_fraction = med_option(&|s| s.delta_fraction);
    result.extra_read_bytes =
        med_option(&|s| s.extra_read_bytes.map(|b| b as f64)).map(|b| b as i64);
    result.extra_written_bytes =
        med_option(&|s| s.extra_written_bytes.map(|b| b as f64)).map(|b| b as i64);
    result.restarts = med_option(&|s| s.restarts.map(|r| r as f64)).map(|r| r as u64);
    result.source_growth_bytes =
        med_option(&|s| s.source_growth_bytes.map(|b| b as f64)).map(|b| b as i64);
    result.load_average_1m = med(&|s| s.load_average_1m);
    result.completed = runs.iter().all(|s| s.completed);
    result.verified = runs
        .iter()
        .map(|s| s.verified)
        .collect::<Option<Vec<bool>>>()
        .map(|v| v.iter().all(|&ok| ok));
    result.unissued_writes = runs.iter().map(|s| s.unissued_writes).sum();
    result.writer_errors = runs.iter().flat_map(|s| s.writer_errors.clone()).collect();
    result.repeats = runs
        .iter()
        .map(|s| RepeatSummary {
            duration_s: s.duration_s,
            x_floor: s.x_floor,
            x_floor_early_writeback: s.x_floor_early_writeback,
            writes_per_sec_before: s.before.writes_per_sec,
            writes_per_sec_during: s.during.writes_per_sec,
            p99_before_us: s.before.latency.p99_us,
            p99_during_us: s.during.latency.p99_us,
            max_during_us: s.during.latency.max_us,
            max_in_call_during_us: s.during.in_call.max_us,
            delta_pages: s.delta_pages,
            load_average_1m: s.load_average_1m,
        })
        .collect();
    Ok(result)
}

/// The two reference copies of the quiesced partition files (median seconds).
#[derive(Debug, Clone, Copy)]
struct Floors {
    at_fsync_s: f64,
    early_writeback_s: f64,
}

/// A delta entry is the page plus its index and crc (format.md §5.1).
const DELTA_ENTRY_HEADER_BYTES: u64 = 8;

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let shape = StoreShape::for_bytes(args.size, args.partitions);
    let data_bytes = shape.data_bytes();
    let records = shape.records();
    let (load_start, cpus) = io::load_average();
    let work_root = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&work_root)?;
    let work = tempfile::Builder::new()
        .prefix("deltasnap-compare-")
        .tempdir_in(&work_root)?;
    eprintln!(
        "data {} ({} records of {RECORD_BYTES} B, {} pages in {} partitions), {} writes/s over {} threads, {} cpus, load {load_start:.2}, work dir {}",
        format_bytes(data_bytes),
        records,
        shape.pages(),
        shape.partitions,
        args.rate,
        args.threads,
        cpus,
        work.path().display()
    );
    let mut scenarios = Vec::new();
    let mut populate_s = Vec::new();

    // deltasnap: populate, the floor (engine closed), then the scenarios on the reopened store.
    let store = work.path().join("deltasnap");
    let started = Instant::now();
    let engine = workload::populate_store(&store, shape, workload::engine_config())?;
    engine.close()?;
    drop(engine);
    populate_s.push(("deltasnap".to_string(), started.elapsed().as_secs_f64()));
    // Both floors, interleaved so that a slow spell of the machine hits both alike.
    let mut floor_runs_s = Vec::new();
    let mut floor_early_writeback_runs_s = Vec::new();
    for run in 0..args.floor_runs.max(1) {
        for (writeback, runs) in [
            (Writeback::AtFsync, &mut floor_runs_s),
            (Writeback::Early, &mut floor_early_writeback_runs_s),
        ] {
            let target = work.path().join(format!("floor-{run}"));
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
            let (bytes, duration) =
                io::copy_dir_files_synced(&store.join("partitions"), &target, writeback)?;
            assert_eq!(bytes, data_bytes, "the partition files hold the data");
            runs.push(duration.as_secs_f64());
            fs::remove_dir_all(&target)?;
        }
    }
    let floors = Floors {
        at_fsync_s: median(&mut floor_runs_s.clone()),
        early_writeback_s: median(&mut floor_early_writeback_runs_s.clone()),
    };
    let floor_s = floors.at_fsync_s;
    eprintln!(
        "floor: copy_file_range + fsync of {} quiesced: {:?} s, median {floor_s:.3} s; \
         with early writeback: {:?} s, median {:.3} s",
        format_bytes(data_bytes),
        floor_runs_s,
        floor_early_writeback_runs_s,
        floors.early_writeback_s
    );

    if args.runs("deltasnap") || args.runs("stw") {
        let engine = Engine::open(&store, workload::engine_config())?;
        let snapshots = work.path().join("snapshots");
        fs::create_dir_all(&snapshots)?;
        if args.runs("deltasnap") {
            for policy in DeltaPolicy::ALL {
                let result = repeated(args.repeats, |repeat| {
                    engine.checkpoint()?;
                    let stats_before = engine.stats();
                    let name = format!("{}-{repeat}", policy.name());
                    let mut result = scenario(
                        &args,
                        "deltasnap",
                        &format!("online snapshot, {policy} delta"),
                        floors,
                        deltasnap_writer(&args, &engine, shape, None),
                        || deltasnap_snapshot(&engine, &snapshots, &name, policy, data_bytes),
                    )?;
                    result.engine_stats = Some(stats_since(stats_before, engine.stats()));
                    result.delta_fraction =
                        result.delta_bytes.map(|b| b as f64 / data_bytes as f64);
                    let dir = snapshots.join(&name);
                    result.verified = Some(deltasnap::verify_snapshot(&dir)?.is_ok());
                    fs::remove_dir_all(&dir)?;
                    Ok(result)
                })?;
                scenarios.push(result);
            }
        }
        if args.runs("stw") {
            let result = repeated(args.repeats, |_| {
                engine.checkpoint()?;
                let gate = RwLock::new(());
                let target = work.path().join("stop-the-world");
                let stats_before = engine.stats();
                let mut result = scenario(
                    &args,
                    "stop-the-world",
                    "writers blocked, checkpoint + copy_file_range",
                    floors,
                    deltasnap_writer(&args, &engine, shape, Some(&gate)),
                    || {
                        let _exclusive = gate.write().expect("gate poisoned");
                        engine.checkpoint()?;
                        let (bytes, _) = io::copy_dir_files_synced(
                            &store.join("partitions"),
                            &target,
                            Writeback::AtFsync,
                        )?;
                        io::copy_file_range_synced(
                            &store.join("CONTROL"),
                            &target.join("CONTROL"),
                            Writeback::AtFsync,
                        )?;
                        Ok(BackupOutcome {
                            completed: true,
                            output_bytes: bytes,
                            ..BackupOutcome::default()
                        })
                    },
                )?;
                result.engine_stats = Some(stats_since(stats_before, engine.stats()));
                fs::remove_dir_all(&target)?;
                Ok(result)
            })?;
            scenarios.push(result);
        }
        engine.close()?;
    }
    fs::remove_dir_all(&store)?;

    if args.runs("sqlite") {
        let started = Instant::now();
        let db = sqlite::populate(&work.path().join("sqlite"), records)?;
        populate_s.push(("sqlite".to_string(), started.elapsed().as_secs_f64()));
        scenarios.extend(sqlite::scenarios(&args, &db, records, floors)?);
        fs::remove_dir_all(work.path().join("sqlite"))?;
    }
    if args.runs("lmdb") {
        let started = Instant::now();
        let dir = work.path().join("lmdb");
        let env = lmdb::populate(&dir, records, data_bytes)?;
        populate_s.push(("lmdb".to_string(), started.elapsed().as_secs_f64()));
        scenarios.extend(lmdb::scenarios(&args, &env, &dir, records, floors)?);
        drop(env);
        fs::remove_dir_all(&dir)?;
    }

    let targets = evaluate_targets(&scenarios);
    let (load_end, _) = io::load_average();
    let report = Report {
        args: args.clone(),
        data_bytes,
        records,
        floor_s,
        floor_runs_s,
        floor_early_writeback_s: floors.early_writeback_s,
        floor_early_writeback_runs_s,
        cpus,
        load_average_1m_start: load_start,
        load_average_1m_end: load_end,
        populate_s,
        scenarios,
        targets,
    };
    let table = markdown(&report);
    println!("{table}");
    fs::create_dir_all(&args.out)?;
    let stem = format!("compare-{}", size_label(data_bytes));
    fs::write(
        args.out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&report)?,
    )?;
    fs::write(args.out.join(format!("{stem}.md")), &table)?;
    fs::write(args.out.join(format!("{stem}.svg")), chart(&report))?;
    eprintln!("wrote {}/{stem}.{{json,md,svg}}", args.out.display());
    Ok(())
}

fn stats_since(
    before: deltasnap::EngineStats,
    after: deltasnap::EngineStats,
) -> deltasnap::EngineStats {
    deltasnap::EngineStats {
        writes: after.writes - before.writes,
        write_retries: after.write_retries - before.write_retries,
        checkpoint_images_kept: after.checkpoint_images_kept - before.checkpoint_images_kept,
        pages_evicted: after.pages_evicted - before.pages_evicted,
        writer_throttles: after.writer_throttles - before.writer_throttles,
    }
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}GiB", bytes >> 30)
    } else {
        format!("{}MiB", bytes >> 20)
    }
}

/// A writer's write function (called with its write counter).
type Writer<'a> = Box<dyn FnMut(u64) -> Result<()> + 'a>;

/// A deltasnap writer: one random record per write; with `gate`, each write holds it shared.
fn deltasnap_writer<'a>(
    args: &Args,
    engine: &'a Engine,
    shape: StoreShape,
    gate: Option<&'a RwLock<()>>,
) -> impl Fn(usize) -> Result<Writer<'a>> + Sync + 'a {
    let seed = args.seed;
    move |thread| {
        let mut rng = StdRng::seed_from_u64(seed ^ (thread as u64) << 32);
        let mut value = [0u8; RECORD_BYTES];
        Ok(Box::new(move |k: u64| {
            let record = rng.gen_range(0..shape.records());
            let (page, offset) = shape.record(record);
            record_value(record, k + 1, &mut value);
            let _shared = gate.map(|g| g.read().expect("gate poisoned"));
            engine.write(page, offset, &value)?;
            Ok(())
        }))
    }
}

/// deltasnap's online snapshot: request, poll progress (stages, thread I/O), wait, account.
fn deltasnap_snapshot(
    engine: &Engine,
    target_dir: &Path,
    name: &str,
    policy: DeltaPolicy,
    data_bytes: u64,
) -> Result<BackupOutcome> {
    load::set_timer_slack_ns(1);
    let checkpointers = io::threads_named("deltasnap-check");
    let checkpointer_io = |tids: &[u32]| -> ThreadIo {
        tids.iter()
            .filter_map(|&t| io::thread_io(t))
            .fold(ThreadIo::default(), |a, b| ThreadIo {
                read_bytes: a.read_bytes + b.read_bytes,
                written_bytes: a.written_bytes + b.written_bytes,
            })
    };
    let checkpointer_before = checkpointer_io(&checkpointers);
    let started_at = std::time::SystemTime::now();
    let started = Instant::now();
    let handle = engine.snapshot(SnapshotOptions {
        delta_policy: policy,
        ..SnapshotOptions::new(target_dir, name)
    })?;
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut snapshot_tid = None;
    let mut snapshot_io = ThreadIo::default();
    let mut last_stage = None;
    while !handle.is_finished() {
        let stage = handle.progress().stage;
        if last_stage != Some(stage) {
            stages.push((
                format!("{stage:?}").to_lowercase(),
                started.elapsed().as_secs_f64(),
            ));
            last_stage = Some(stage);
        }
        if snapshot_tid.is_none() {
            snapshot_tid = io::threads_named("deltasnap-snap").first().copied();
        }
        if let Some(counters) = snapshot_tid.and_then(io::thread_io) {
            snapshot_io = counters;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let manifest = handle.wait()?;
    stages.push(("complete".into(), started.elapsed().as_secs_f64()));
    let checkpoints = engine
        .jobs()
        .into_iter()
        .filter(|job| job.kind == deltasnap::JobKind::Checkpoint && job.started_at >= started_at)
        .map(|job| {
            format!(
                "epoch {} at +{:.3}s: {} pages in {:.3}s",
                job.epoch.unwrap_or(0),
                job.started_at
                    .duration_since(started_at)
                    .unwrap_or_default()
                    .as_secs_f64(),
                job.pages_written,
                job.duration.unwrap_or_default().as_secs_f64()
            )
        })
        .collect();
    let checkpointer_after = checkpointer_io(&checkpointers);
    let hook_read = checkpointer_after.read_bytes - checkpointer_before.read_bytes;
    let delta_written = manifest.delta_pages * (PAGE_BYTES + DELTA_ENTRY_HEADER_BYTES);
    let notes = if stages.iter().any(|(s, _)| s == "merging") {
        String::new()
    } else {
        format!("{:?}", JobStage::Merging).to_lowercase() + " stage too short to observe"
    };
    Ok(BackupOutcome {
        completed: true,
        output_bytes: io::tree_bytes(&target_dir.join(name)),
        delta_pages: Some(manifest.delta_pages),
        extra_read_bytes: Some((snapshot_io.read_bytes + hook_read) as i64 - data_bytes as i64),
        extra_written_bytes: Some(
            (snapshot_io.written_bytes + delta_written) as i64 - data_bytes as i64,
        ),
        stages,
        checkpoints,
        notes,
        ..BackupOutcome::default()
    })
}

mod sqlite {
    //! SQLite in WAL mode, `synchronous=NORMAL` (no fsync per commit), 4 KiB pages, one table of
    //! `records` rows of 1000-byte blobs. Writers serialize on an application mutex (SQLite has
    //! one writer at a time; without it the busy handler's millisecond sleeps would dominate).

    use super::*;
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{params, Connection};

    fn open(path: &Path) -> Result<Connection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        Ok(conn)
    }

    pub fn populate(dir: &Path, records: u64) -> Result<PathBuf> {
        fs::create_dir_all(dir)?;
        let path = dir.join("data.db");
        let mut conn = Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )?;
        let mut value = [0u8; RECORD_BYTES];
        let mut record = 0;
        while record < records {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached("INSERT INTO t(id, v) VALUES (?1, ?2)")?;
                for r in record..(record + 10_000).min(records) {
                    record_value(r, 0, &mut value);
                    insert.execute(params![r as i64, &value[..]])?;
                }
            }
            tx.commit()?;
            record = (record + 10_000).min(records);
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(path)
    }

    fn source_bytes(db: &Path) -> u64 {
        io::tree_bytes(db) + io::tree_bytes(&db.with_extension("db-wal"))
    }

    pub fn scenarios(
        args: &Args,
        db: &Path,
        records: u64,
        floors: Floors,
    ) -> Result<Vec<Scenario>> {
        let writer_lock = Mutex::new(());
        let make_writer = |thread: usize| -> Result<Writer<'_>> {
            let conn = open(db)?;
            let mut rng = StdRng::seed_from_u64(args.seed ^ (thread as u64) << 32);
            let mut value = [0u8; RECORD_BYTES];
            let writer_lock = &writer_lock;
            Ok(Box::new(move |k: u64| {
                let record = rng.gen_range(0..records);
                record_value(record, k + 1, &mut value);
                let _one_writer = writer_lock.lock().expect("writer lock poisoned");
                conn.prepare_cached("UPDATE t SET v = ?1 WHERE id = ?2")?
                    .execute(params![&value[..], record as i64])?;
                Ok(())
            }))
        };
        let out_dir = db.parent().expect("in a directory").join("out");
        fs::create_dir_all(&out_dir)?;
        let mut results = Vec::new();

        for (method, pages, pause, repeats) in [
            (
                "online backup, step(-1)".to_string(),
                -1,
                Duration::ZERO,
                args.repeats,
            ),
            (
                format!(
                    "online backup, step({}) + {:?} sleep",
                    args.step_pages, args.step_sleep
                ),
                args.step_pages,
                args.step_sleep,
                1,
            ),
        ] {
            let out = out_dir.join(format!("backup{pages}.db"));
            let result = repeated(repeats, |_| {
                let result = scenario(args, "sqlite", &method, floors, make_writer, || {
                    let grown_from = source_bytes(db);
                    let source = open(db)?;
                    let mut target = Connection::open(&out)?;
                    let started = Instant::now();
                    let mut restarts = 0u64;
                    let mut completed = false;
                    {
                        let backup = Backup::new(&source, &mut target)?;
                        let mut remaining = i64::MAX;
                        while started.elapsed() < args.bound {
                            match backup.step(pages)? {
                                StepResult::Done => {
                                    completed = true;
                                    break;
                                }
                                StepResult::More => {
                                    let now = backup.progress().remaining as i64;
                                    if now > remaining {
                                        restarts += 1;
                                    }
                                    remaining = now;
                                    std::thread::sleep(pause);
                                }
                                _ => std::thread::sleep(Duration::from_millis(1)),
                            }
                        }
                    }
                    drop(target);
                    if completed {
                        io::fsync_path(&out)?;
                    }
                    Ok(BackupOutcome {
                        completed,
                        output_bytes: io::tree_bytes(&out),
                        restarts: Some(restarts),
                        source_growth_bytes: Some(source_bytes(db) as i64 - grown_from as i64),
                        notes: if completed {
                            String::new()
                        } else {
                            format!("not finished within {:?}", args.bound)
                        },
                        ..BackupOutcome::default()
                    })
                })?;
                fs::remove_file(&out).ok();
                Ok(result)
            })?;
            results.push(result);
        }

        let out = out_dir.join("vacuum.db");
        let result = repeated(args.repeats, |_| {
            let result = scenario(args, "sqlite", "VACUUM INTO", floors, make_writer, || {
                let grown_from = source_bytes(db);
                let source = open(db)?;
                source.execute("VACUUM INTO ?1", params![out.to_string_lossy()])?;
                io::fsync_path(&out)?;
                Ok(BackupOutcome {
                    completed: true,
                    output_bytes: io::tree_bytes(&out),
                    source_growth_bytes: Some(source_bytes(db) as i64 - grown_from as i64),
                    ..BackupOutcome::default()
                })
            })?;
            fs::remove_file(&out).ok();
            Ok(result)
        })?;
        results.push(result);
        Ok(results)
    }
}

mod lmdb {
    //! LMDB through heed: `NO_SYNC` (no fsync per commit), one `put` per write transaction,
    //! 8-byte big-endian keys, 1000-byte values. The copy is `mdb_env_copy2` to a path
    //! (`Env::copy_to_path`), fsynced before the clock stops.

    use super::*;
    use heed::byteorder::BigEndian;
    use heed::types::{Bytes, U64};
    use heed::{CommitOrAbort, CompactionOption, Database, Env, EnvFlags, EnvOpenOptions};

    type Db<'e> = Database<'e, U64<BigEndian>, Bytes>;

    pub fn populate(dir: &Path, records: u64, data_bytes: u64) -> Result<Env> {
        let env_dir = dir.join("env");
        fs::create_dir_all(&env_dir)?;
        let map_size = (data_bytes * 4 + (512 << 20)) as usize;
        // SAFETY: the environment is opened once in this process, and NO_SYNC only relaxes
        // durability (the benchmark's fsync policy: no system fsyncs per write).
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(map_size)
                .max_dbs(1)
                .flags(EnvFlags::NO_SYNC)
                .open(&env_dir)?
        };
        let db = database(&env)?;
        let mut value = [0u8; RECORD_BYTES];
        let mut record = 0;
        while record < records {
            let mut wtxn = env.write_txn()?;
            for r in record..(record + 10_000).min(records) {
                record_value(r, 0, &mut value);
                db.put(&mut wtxn, &r, &value)?;
            }
            wtxn.commit()?;
            record = (record + 10_000).min(records);
        }
        env.force_sync()?;
        Ok(env)
    }

    fn database(env: &Env) -> Result<Db<'_>> {
        let wtxn = env.write_txn()?;
        Ok(env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database(wtxn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit())
    }

    pub fn scenarios(
        args: &Args,
        env: &Env,
        dir: &Path,
        records: u64,
        floors: Floors,
    ) -> Result<Vec<Scenario>> {
        let db = database(env)?;
        let data_file = dir.join("env").join("data.mdb");
        let make_writer = |thread: usize| -> Result<Writer<'_>> {
            let mut rng = StdRng::seed_from_u64(args.seed ^ (thread as u64) << 32);
            let mut value = [0u8; RECORD_BYTES];
            Ok(Box::new(move |k: u64| {
                let record = rng.gen_range(0..records);
                record_value(record, k + 1, &mut value);
                let mut wtxn = env.write_txn()?;
                db.put(&mut wtxn, &record, &value)?;
                wtxn.commit()?;
                Ok(())
            }))
        };
        let mut results = Vec::new();
        for (method, option) in [
            ("env copy to path (plain)", CompactionOption::Disabled),
            ("env copy to path (compact)", CompactionOption::Enabled),
        ] {
            let out = dir.join("copy.mdb");
            let result = repeated(args.repeats, |_| {
                let result = scenario(args, "lmdb", method, floors, make_writer, || {
                    let grown_from = io::tree_bytes(&data_file);
                    let file = env.copy_to_path(&out, option)?;
                    file.sync_all()?;
                    Ok(BackupOutcome {
                        completed: true,
                        output_bytes: io::tree_bytes(&out),
                        source_growth_bytes: Some(
                            io::tree_bytes(&data_file) as i64 - grown_from as i64,
                        ),
                        ..BackupOutcome::default()
                    })
                })?;
                fs::remove_file(&out).ok();
                Ok(result)
            })?;
            results.push(result);
        }
        Ok(results)
    }
}

fn evaluate_targets(scenarios: &[Scenario]) -> Vec<Target> {
    let mut targets = Vec::new();
    let find = |system: &str, method: &str| {
        scenarios
            .iter()
            .find(|s| s.system == system && s.method.contains(method))
    };
    for policy in DeltaPolicy::ALL {
        let Some(s) = find("deltasnap", &format!("{policy} delta")) else {
            continue;
        };
        targets.push(Target {
            what: format!("{policy}: snapshot time <= 1.3x floor"),
            measured: format!("{:.2}x", s.x_floor),
            met: Some(s.x_floor <= 1.3),
        });
        targets.push(Target {
            what: format!(
                "{policy}: snapshot time against the floor copied with early writeback (as the \
                 copier does)"
            ),
            measured: format!("{:.2}x", s.x_floor_early_writeback),
            met: None,
        });
        targets.push(Target {
            what: format!("{policy}: writer throughput during >= 95% of before"),
            measured: format!("{:.1}%", s.throughput_ratio * 100.0),
            met: Some(s.throughput_ratio >= 0.95),
        });
        targets.push(Target {
            what: format!("{policy}: writer p99 during <= 1.5x before"),
            measured: format!(
                "{:.2}x ({:.0} -> {:.0} us)",
                s.p99_ratio, s.before.latency.p99_us, s.during.latency.p99_us
            ),
            met: Some(s.p99_ratio <= 1.5),
        });
        targets.push(Target {
            what: format!("{policy}: longest writer stall during <= 1 ms"),
            measured: format!(
                "{:.2} ms; the longest write call {:.2} ms (before: {:.2} ms)",
                s.during.latency.max_us / 1e3,
                s.during.in_call.max_us / 1e3,
                s.before.in_call.max_us / 1e3
            ),
            met: Some(s.during.latency.max_us <= 1000.0),
        });
        for (peer, method) in [("sqlite", "step("), ("lmdb", "plain")] {
            if let Some(p) = scenarios.iter().find(|x| {
                x.system == peer && x.method.contains(method) && !x.method.contains("(-1)")
            }) {
                // Ahead: lower p99 and lower worst stall while the backups run, and throughput no
                // more than one point lower (both sit at the offered rate when they keep up).
                let ahead = s.during.latency.p99_us < p.during.latency.p99_us
                    && s.during.latency.max_us < p.during.latency.max_us
                    && s.throughput_ratio >= p.throughput_ratio - 0.01;
                targets.push(Target {
                    what: format!("{policy}: writer impact below {peer} {}", p.method),
                    measured: format!(
                        "p99 during {:.1} vs {:.1} ms, max {:.1} vs {:.1} ms, throughput {:.1}% vs {:.1}%",
                        s.during.latency.p99_us / 1e3,
                        p.during.latency.p99_us / 1e3,
                        s.during.latency.max_us / 1e3,
                        p.during.latency.max_us / 1e3,
                        s.throughput_ratio * 100.0,
                        p.throughput_ratio * 100.0
                    ),
                    met: Some(ahead),
                });
            }
        }
    }
    if let (Some(full), Some(cursor)) = (
        find("deltasnap", "full delta"),
        find("deltasnap", "cursor-aware delta"),
    ) {
        targets.push(Target {
            what: "cursor-aware delta smaller than full".into(),
            measured: format!(
                "{} vs {} pages",
                cursor.delta_pages.unwrap_or(0),
                full.delta_pages.unwrap_or(0)
            ),
            met: Some(cursor.delta_pages < full.delta_pages),
        });
    }
    targets
}

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1e3)
    } else if us >= 1000.0 {
        format!("{:.1}", us / 1e3)
    } else {
        format!("{:.2}", us / 1e3)
    }
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let args = &report.args;
    out.push_str(&format!(
        "Data {} ({} records of {RECORD_BYTES} B); {} writes/s open loop over {} writer threads; \
         floor (copy_file_range + fsync of the quiesced partition files, median of {}) = {:.3} s; \
         the same copy with early writeback (sync_file_range per 1 MiB, as the snapshot copier \
         does) = {:.3} s; {} cpus, load average {:.2} at start, {:.2} at end. Every row: median of \
         {} repeats (SQLite's stepwise backup: one run, bounded). \"in call\": time inside the \
         write calls only (a writer that starts late is not counted).\n\n",
        format_bytes(report.data_bytes),
        report.records,
        args.rate,
        args.threads,
        report.floor_runs_s.len(),
        report.floor_s,
        report.floor_early_writeback_s,
        report.cpus,
        report.load_average_1m_start,
        report.load_average_1m_end,
        args.repeats
    ));
    out.push_str(
        "| system | method | done | time s | × floor (early-wb floor) | writes/s before → during | p50 ms before → during | p99 ms before → during | p99.9 ms during | max ms before → during | max in call ms before → during | delta / data | extra read / written | notes |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &report.scenarios {
        let delta = s
            .delta_fraction
            .map(|f| {
                let digits = if f < 0.01 { 3 } else { 1 };
                format!(
                    "{:.*}% ({} pages)",
                    digits,
                    f * 100.0,
                    s.delta_pages.unwrap_or(0)
                )
            })
            .unwrap_or_else(|| "–".into());
        let extra = match (s.extra_read_bytes, s.extra_written_bytes) {
            (Some(r), Some(w)) => format!("{} / {}", signed_bytes(r), signed_bytes(w)),
            _ => "–".into(),
        };
        let mut notes = Vec::new();
        if let Some(r) = s.restarts {
            notes.push(format!("{r} restarts"));
        }
        if let Some(g) = s.source_growth_bytes {
            notes.push(format!("source +{}", signed_bytes(g)));
        }
        if let Some(v) = s.verified {
            notes.push(if v {
                "verified".into()
            } else {
                "VERIFY FAILED".into()
            });
        }
        if s.unissued_writes > 0 {
            notes.push(format!("{} writes never issued", s.unissued_writes));
        }
        if !s.writer_errors.is_empty() {
            notes.push(format!("writer errors: {}", s.writer_errors.join("; ")));
        }
        if !s.notes.is_empty() {
            notes.push(s.notes.clone());
        }
        notes.push(format!("load {:.1}", s.load_average_1m));
        out.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.2} ({:.2}) | {:.0} → {:.0} ({:.1}%) | {} → {} | {} → {} | {} | {} → {} | {} → {} | {} | {} | {} |\n",
            s.system,
            s.method,
            if s.completed { "yes" } else { "**no**" },
            s.duration_s,
            s.x_floor,
            s.x_floor_early_writeback,
            s.before.writes_per_sec,
            s.during.writes_per_sec,
            s.throughput_ratio * 100.0,
            ms(s.before.latency.p50_us),
            ms(s.during.latency.p50_us),
            ms(s.before.latency.p99_us),
            ms(s.during.latency.p99_us),
            ms(s.during.latency.p999_us),
            ms(s.before.latency.max_us),
            ms(s.during.latency.max_us),
            ms(s.before.in_call.max_us),
            ms(s.during.in_call.max_us),
            delta,
            extra,
            notes.join("; ")
        ));
    }
    out.push_str("\nTargets:\n\n");
    for t in &report.targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "reference",
        };
        out.push_str(&format!("- {}: {} ({mark})\n", t.what, t.measured));
    }
    let stages: Vec<String> = report
        .scenarios
        .iter()
        .filter(|s| !s.stages.is_empty())
        .map(|s| {
            let timeline: Vec<String> = s
                .stages
                .iter()
                .map(|(stage, at)| format!("{stage} @{:.3}s", at))
                .collect();
            let mut line = format!("- {}: {}", s.method, timeline.join(", "));
            if !s.checkpoints.is_empty() {
                line.push_str(&format!("; checkpoints: {}", s.checkpoints.join("; ")));
            }
            if let Some(st) = s.engine_stats {
                line.push_str(&format!(
                    "; engine over the scenario: {} writes, {} retries, {} checkpoint images kept, {} evictions, {} throttles",
                    st.writes, st.write_retries, st.checkpoint_images_kept, st.pages_evicted, st.writer_throttles
                ));
            }
            line
        })
        .collect();
    if !stages.is_empty() {
        out.push_str("\ndeltasnap snapshot stages (first seen, from the request):\n\n");
        out.push_str(&stages.join("\n"));
        out.push('\n');
    }
    out
}

fn signed_bytes(bytes: i64) -> String {
    if bytes < 0 {
        format!("−{}", format_bytes(bytes.unsigned_abs()))
    } else {
        format_bytes(bytes as u64)
    }
}

fn chart(report: &Report) -> String {
    let label = |s: &Scenario| format!("{}: {}", s.system, s.method);
    let rows = |f: &dyn Fn(&Scenario) -> Vec<Option<f64>>| -> Vec<(String, Vec<Option<f64>>)> {
        report.scenarios.iter().map(|s| (label(s), f(s))).collect()
    };
    let colour = |name: &str, colour: &str| Series {
        name: name.into(),
        colour: colour.into(),
    };
    let max_x = report
        .scenarios
        .iter()
        .map(|s| s.x_floor)
        .fold(10.0f64, f64::max);
    let max_latency_ms = report
        .scenarios
        .iter()
        .map(|s| s.during.latency.max_us.max(s.before.latency.max_us) / 1e3)
        .fold(1.0f64, f64::max);
    let panels = [
        Panel {
            title: "Backup time as a multiple of the floor (log; unfinished: the bound)".into(),
            scale: Scale::Log {
                min: 0.5,
                max: max_x * 1.5,
            },
            series: vec![colour("time / floor", "#4878a8")],
            rows: rows(&|s| vec![Some(s.x_floor)]),
            references: vec![
                (1.0, "floor".into()),
                (
                    report.floor_early_writeback_s / report.floor_s,
                    "early-wb floor".into(),
                ),
                (1.3, "1.3× target".into()),
            ],
            unit: "×".into(),
        },
        Panel {
            title: "Writer throughput during the backup, % of before".into(),
            scale: Scale::Linear { max: 125.0 },
            series: vec![colour("during / before", "#6a9f58")],
            rows: rows(&|s| vec![Some(s.throughput_ratio * 100.0)]),
            references: vec![(95.0, "95% target".into())],
            unit: "%".into(),
        },
        Panel {
            title: "Writer latency, ms (log): p99 before, p99 during, max during".into(),
            scale: Scale::Log {
                min: 0.001,
                max: max_latency_ms * 1.5,
            },
            series: vec![
                colour("p99 before", "#bbbbbb"),
                colour("p99 during", "#e49444"),
                colour("max during", "#d1605e"),
            ],
            rows: rows(&|s| {
                vec![
                    Some(s.before.latency.p99_us / 1e3),
                    Some(s.during.latency.p99_us / 1e3),
                    Some(s.during.latency.max_us / 1e3),
                ]
            }),
            references: vec![(1.0, "1 ms".into())],
            unit: "".into(),
        },
    ];
    svg::render(
        &format!(
            "deltasnap online snapshot vs peers, {} of data, {} writes/s",
            format_bytes(report.data_bytes),
            report.args.rate
        ),
        &format!(
            "floor {:.3} s (copy_file_range + fsync); {} cpus, load {:.1}–{:.1}; one run of `compare`",
            report.floor_s, report.cpus, report.load_average_1m_start, report.load_average_1m_end
        ),
        &panels,
    )
}
