//! The demo's report: one value, printed for humans or as JSON (`--json`), plus the list of
//! failed checks that decides the exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deltasnap::{EngineStats, JobStatus};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::phases::{
    BuildOutcome, LoadOutcome, Mismatch, PhaseOutcome, ReopenOutcome, SnapshotPhase, VerifyOutcome,
};
use super::reference::Reference;
use super::snapshot::{Checked, Taken};
use super::Plan;
use crate::snapshot::{delta_policy_name, manifest_pages};
use crate::units::{format_bytes, format_count, format_duration};

/// Checkpoint durations listed one by one up to this many; past it, a summary.
const CHECKPOINTS_LISTED_MAX: usize = 10;

#[derive(Debug, Serialize)]
pub struct DemoReport {
    /// No check failed.
    pub ok: bool,
    /// Every failed check, one line each.
    pub problems: Vec<String>,
    pub store_dir: PathBuf,
    /// Whether the store directory still exists (a given `--dir`, `--keep`, or a failed check).
    pub store_kept: bool,
    pub plan: Plan,
    pub store: StoreSection,
    pub load: LoadSection,
    pub checkpoints: CheckpointsSection,
    pub snapshot: SnapshotSection,
    pub engine: EngineStats,
    pub recovery: RecoverySection,
    pub verification: VerificationSection,
    /// Memory the demo's reference takes (per page a version, not a copy).
    pub reference_bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct StoreSection {
    pub bytes: u64,
    pub pages: usize,
    pub partitions: u32,
    pub page_size: u32,
    pub build_seconds: f64,
    pub build_bytes_per_second: f64,
    pub build_checkpoint_seconds: f64,
    pub build_checkpoint_pages: u64,
}

#[derive(Debug, Serialize)]
pub struct LoadSection {
    pub writers: u16,
    pub seconds: f64,
    pub writes: u64,
    pub writes_per_second: f64,
    pub write_bytes: usize,
    pub latency_ns: Latency,
    /// The writes that started before the snapshot was requested.
    pub before_snapshot: PhaseSection,
    /// The writes that started while the snapshot ran (request to publish).
    pub during_snapshot: PhaseSection,
    /// The writes that started after the snapshot was published.
    pub after_snapshot: PhaseSection,
    /// Page-image memory when the writers stopped.
    pub memory_resident_bytes: u64,
    pub memory_dirty_bytes: u64,
}

/// The writers in one phase of the load.
#[derive(Debug, Serialize)]
pub struct PhaseSection {
    pub seconds: f64,
    pub writes: u64,
    pub writes_per_second: f64,
    pub latency_ns: Latency,
    /// The longest single write (a writer's stall), exact.
    pub longest_write_ns: u64,
    /// When it started, from the start of the load.
    pub longest_write_at_seconds: f64,
}

impl PhaseSection {
    fn new(phase: &PhaseOutcome) -> PhaseSection {
        PhaseSection {
            seconds: phase.duration.as_secs_f64(),
            writes: phase.writes,
            writes_per_second: per_second(phase.writes as f64, phase.duration),
            latency_ns: Latency::new(&phase.latency_ns),
            longest_write_ns: phase.longest_write.as_nanos() as u64,
            longest_write_at_seconds: phase.longest_write_at.as_secs_f64(),
        }
    }
}

/// The snapshot taken under the load, and the check of its restored copy.
#[derive(Debug, Serialize)]
pub struct SnapshotSection {
    pub name: String,
    pub dir: PathBuf,
    /// `full` or `cursor-aware`.
    pub delta_policy: &'static str,
    /// When it was requested, from the start of the load.
    pub requested_at_seconds: f64,
    /// From the request to the published snapshot.
    pub seconds: f64,
    /// When the cut epoch showed (and the reference was pinned), from the request.
    pub cut_seen_after_seconds: f64,
    pub cut_epoch: u64,
    pub cut_lsn: u64,
    pub pages: u64,
    pub delta_pages: u64,
    pub copy_bytes: u64,
    /// The copy's duration, an upper bound measured between polls a few milliseconds apart.
    pub copy_seconds_max: f64,
    /// The copy rate, a lower bound (from `copy_seconds_max`).
    pub copy_bytes_per_second: f64,
    /// `verify_snapshot` found nothing wrong.
    pub verified: bool,
    pub verify_seconds: f64,
    pub verify_pages_checked: u64,
    pub verify_problem_count: usize,
    pub verify_problems: Vec<String>,
    pub restored_dir: PathBuf,
    pub restore_seconds: Option<f64>,
    /// `Engine::open` of the restored store.
    pub restored_open_seconds: Option<f64>,
    /// Restore or open failures, a restored store that does not open at the cut.
    pub restore_problems: Vec<String>,
    pub restored_pages_checked: u64,
    /// Restored pages that differ from the state at the cut, or could not be read.
    pub restored_mismatches: u64,
    pub restored_mismatch_examples: Vec<Mismatch>,
    /// Partitions, page counts, or the plan in the restored metadata differ.
    pub restored_shape_problems: Vec<String>,
    /// Every page of the restored store holds exactly its last write of an epoch `<=` the cut.
    pub restored_equals_cut: bool,
}

impl SnapshotSection {
    /// The snapshot's failed checks.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.verified {
            problems.push(format!(
                "the snapshot does not verify: {} problem(s){}",
                self.verify_problem_count,
                self.verify_problems
                    .first()
                    .map(|p| format!(", the first: {p}"))
                    .unwrap_or_default()
            ));
        }
        problems.extend(self.restore_problems.iter().cloned());
        problems.extend(
            self.restored_shape_problems
                .iter()
                .map(|p| format!("restored snapshot: {p}")),
        );
        if self.restored_mismatches > 0 {
            let example = self
                .restored_mismatch_examples
                .first()
                .map(|m| {
                    format!(
                        ": page {} should hold {}, holds {}",
                        m.page, m.expected, m.found
                    )
                })
                .unwrap_or_default();
            problems.push(format!(
                "{} of {} restored pages differ from the state at the cut (epoch {}){example}",
                self.restored_mismatches, self.restored_pages_checked, self.cut_epoch
            ));
        }
        if problems.is_empty() && !self.restored_equals_cut {
            problems.push(format!(
                "the restored snapshot was checked on {} pages only",
                self.restored_pages_checked
            ));
        }
        problems
    }

    fn new(plan: &Plan, taken: &Taken, checked: &Checked, restored_dir: PathBuf) -> Self {
        let followed = &taken.followed;
        let manifest = &followed.manifest;
        let pages = checked.pages.as_ref();
        let restored_equals_cut = checked.verify_problem_count == 0
            && checked.problems.is_empty()
            && pages.is_some_and(|p| {
                p.mismatches == 0
                    && p.shape_problems.is_empty()
                    && p.pages_checked == plan.pages as u64
            });
        SnapshotSection {
            name: manifest.name.clone(),
            dir: taken.dir.clone(),
            delta_policy: delta_policy_name(manifest),
            requested_at_seconds: taken.requested_at.as_secs_f64(),
            seconds: followed.duration.as_secs_f64(),
            cut_seen_after_seconds: followed.cut_seen_after.as_secs_f64(),
            cut_epoch: manifest.cut_epoch,
            cut_lsn: manifest.cut_lsn,
            pages: manifest_pages(manifest),
            delta_pages: manifest.delta_pages,
            copy_bytes: followed.bytes_copied,
            copy_seconds_max: followed.copy_duration_max.as_secs_f64(),
            copy_bytes_per_second: followed.copy_bytes_per_second(),
            verified: checked.verify_problem_count == 0,
            verify_seconds: checked.verify_duration.as_secs_f64(),
            verify_pages_checked: checked.verify_pages_checked,
            verify_problem_count: checked.verify_problem_count,
            verify_problems: checked.verify_problems.clone(),
            restored_dir,
            restore_seconds: checked.restore_duration.map(|d| d.as_secs_f64()),
            restored_open_seconds: checked.open_duration.map(|d| d.as_secs_f64()),
            restore_problems: checked.problems.clone(),
            restored_pages_checked: pages.map_or(0, |p| p.pages_checked),
            restored_mismatches: pages.map_or(0, |p| p.mismatches),
            restored_mismatch_examples: pages.map_or_else(Vec::new, |p| p.examples.clone()),
            restored_shape_problems: pages.map_or_else(Vec::new, |p| p.shape_problems.clone()),
            restored_equals_cut,
        }
    }
}
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn new(histogram: &Histogram<u64>) -> Latency {
        Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CheckpointRecord {
    pub id: u64,
    pub epoch: Option<u64>,
    pub pages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

impl CheckpointRecord {
    fn new(job: &JobStatus) -> CheckpointRecord {
        CheckpointRecord {
            id: job.id,
            epoch: job.epoch,
            pages: job.pages_written,
            bytes: job.bytes_written,
            seconds: job.duration.unwrap_or_default().as_secs_f64(),
            error: job.error.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CheckpointsSection {
    /// Checkpoints that ended while the writers ran.
    pub during_load: Vec<CheckpointRecord>,
    /// The final checkpoint of `close`.
    pub close: Option<CheckpointRecord>,
}

#[derive(Debug, Serialize)]
pub struct RecoverySection {
    pub close_seconds: f64,
    /// `Engine::open` of the closed store, recovery included.
    pub open_seconds: f64,
    pub checkpoint_epoch: u64,
    pub records_replayed: u64,
    pub redo_tail_cut: bool,
}

#[derive(Debug, Serialize)]
pub struct VerificationSection {
    pub pages_checked: u64,
    pub seconds: f64,
    pub mismatches: u64,
    pub mismatch_examples: Vec<Mismatch>,
    pub shape_problems: Vec<String>,
    /// A writer's receipt epoch went back (K1).
    pub epoch_regressions: u64,
    /// One page's writes disagreed in LSN and epoch order.
    pub order_anomalies: u64,
}

fn per_second(count: f64, duration: Duration) -> f64 {
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

/// What the phases returned, for [`DemoReport::new`].
pub struct Outcomes<'a> {
    pub build: &'a BuildOutcome,
    pub load: &'a LoadOutcome,
    pub reopen: &'a ReopenOutcome,
    pub verify: &'a VerifyOutcome,
    pub snapshot: &'a Taken,
    pub snapshot_check: &'a Checked,
}

impl DemoReport {
    pub fn new(
        plan: &Plan,
        dir: &Path,
        reference: &Reference,
        outcomes: &Outcomes<'_>,
    ) -> DemoReport {
        let Outcomes {
            build,
            load,
            reopen,
            verify,
            snapshot,
            snapshot_check,
        } = *outcomes;
        let mut report = DemoReport {
            ok: false,
            problems: Vec::new(),
            store_dir: dir.to_path_buf(),
            store_kept: true,
            plan: plan.clone(),
            store: StoreSection {
                bytes: plan.store_bytes(),
                pages: plan.pages,
                partitions: plan.partitions,
                page_size: plan.page_size,
                build_seconds: build.fill_duration.as_secs_f64(),
                build_bytes_per_second: per_second(plan.store_bytes() as f64, build.fill_duration),
                build_checkpoint_seconds: build.checkpoint.duration.as_secs_f64(),
                build_checkpoint_pages: build.checkpoint.pages_written,
            },
            load: LoadSection {
                writers: plan.writers,
                seconds: load.duration.as_secs_f64(),
                writes: load.writes,
                writes_per_second: per_second(load.writes as f64, load.duration),
                write_bytes: plan.write_bytes,
                latency_ns: Latency::new(&load.latency_ns),
                before_snapshot: PhaseSection::new(load.phase(SnapshotPhase::Before)),
                during_snapshot: PhaseSection::new(load.phase(SnapshotPhase::During)),
                after_snapshot: PhaseSection::new(load.phase(SnapshotPhase::After)),
                memory_resident_bytes: load.memory_at_end.0,
                memory_dirty_bytes: load.memory_at_end.1,
            },
            checkpoints: CheckpointsSection {
                during_load: load.checkpoints.iter().map(CheckpointRecord::new).collect(),
                close: reopen.close_checkpoint.as_ref().map(CheckpointRecord::new),
            },
            snapshot: SnapshotSection::new(
                plan,
                snapshot,
                snapshot_check,
                dir.join(super::RESTORED_DIR),
            ),
            engine: reopen.stats,
            recovery: RecoverySection {
                close_seconds: reopen.close_duration.as_secs_f64(),
                open_seconds: reopen.open_duration.as_secs_f64(),
                checkpoint_epoch: reopen.recovery.checkpoint_epoch,
                records_replayed: reopen.recovery.records_replayed,
                redo_tail_cut: reopen.recovery.wal_tail_cut.is_some(),
            },
            verification: VerificationSection {
                pages_checked: verify.pages_checked,
                seconds: verify.duration.as_secs_f64(),
                mismatches: verify.mismatches,
                mismatch_examples: verify.examples.clone(),
                shape_problems: verify.shape_problems.clone(),
                epoch_regressions: load.epoch_regressions,
                order_anomalies: reference.order_anomalies(),
            },
            reference_bytes: reference.bytes(),
        };
        report.problems = report.find_problems();
        report.ok = report.problems.is_empty();
        report
    }

    fn find_problems(&self) -> Vec<String> {
        let v = &self.verification;
        let mut problems = v.shape_problems.clone();
        if v.mismatches > 0 {
            let example = v
                .mismatch_examples
                .first()
                .map(|m| {
                    format!(
                        ": page {} should hold {}, holds {}",
                        m.page, m.expected, m.found
                    )
                })
                .unwrap_or_default();
            problems.push(format!(
                "{} of {} pages differ from the reference{example}",
                v.mismatches, v.pages_checked
            ));
        }
        if v.epoch_regressions > 0 {
            problems.push(format!(
                "{} writes got an older epoch than the same writer's previous write (K1)",
                v.epoch_regressions
            ));
        }
        if v.order_anomalies > 0 {
            problems.push(format!(
                "{} writes to a page disagree in LSN and epoch order",
                v.order_anomalies
            ));
        }
        let checkpoints = &self.checkpoints;
        for record in checkpoints.during_load.iter().chain(&checkpoints.close) {
            if let Some(error) = &record.error {
                problems.push(format!("checkpoint #{} failed: {error}", record.id));
            }
        }
        if self.recovery.redo_tail_cut {
            problems.push("reopening after a clean close cut a redo tail".into());
        }
        problems.extend(self.snapshot.problems());
        problems
    }

    /// Every failed check (empty: the demo passed).
    pub fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }

    pub fn with_kept(mut self, kept: bool) -> DemoReport {
        self.store_kept = kept;
        self
    }

    /// The human report on stdout.
    pub fn print(&self) {
        let ns = |value: u64| format_duration(Duration::from_nanos(value));
        let secs = |value: f64| format_duration(Duration::from_secs_f64(value));
        let plan = &self.plan;
        println!(
            "deltasnap demo: seed {}, {} writer(s) for {}, store {} ({})",
            plan.seed,
            plan.writers,
            secs(plan.load_seconds),
            self.store_dir.display(),
            if self.store_kept { "kept" } else { "removed" }
        );
        let store = &self.store;
        println!(
            "  store        {}: {} pages of {} B in {} partitions; built in {} ({}/s), checkpointed in {}",
            format_bytes(store.bytes),
            format_count(store.pages as u64),
            store.page_size,
            store.partitions,
            secs(store.build_seconds),
            format_bytes(store.build_bytes_per_second as u64),
            secs(store.build_checkpoint_seconds)
        );
        let load = &self.load;
        println!(
            "  load         {} writes of {} B in {}: {} writes/s",
            format_count(load.writes),
            load.write_bytes,
            secs(load.seconds),
            format_count(load.writes_per_second as u64)
        );
        let latency = &load.latency_ns;
        println!(
            "  latency      p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
            ns(latency.p50),
            ns(latency.p90),
            ns(latency.p99),
            ns(latency.p999),
            ns(latency.max)
        );
        for (name, phase) in [
            ("before", &load.before_snapshot),
            ("during", &load.during_snapshot),
            ("after", &load.after_snapshot),
        ] {
            println!(
                "  {:<12} {name} the snapshot ({}): {} writes/s, p50 {}, p99 {}, longest write {} at {}",
                if name == "before" { "writers" } else { "" },
                secs(phase.seconds),
                format_count(phase.writes_per_second as u64),
                ns(phase.latency_ns.p50),
                ns(phase.latency_ns.p99),
                ns(phase.longest_write_ns),
                secs(phase.longest_write_at_seconds)
            );
        }
        println!("  checkpoints  {}", self.describe_checkpoints());
        self.print_snapshot();
        let engine = &self.engine;
        println!(
            "  engine       {} writes, {} evictions, {} writer throttles, {} write retries, {} checkpoint images kept",
            format_count(engine.writes),
            format_count(engine.pages_evicted),
            format_count(engine.writer_throttles),
            format_count(engine.write_retries),
            format_count(engine.checkpoint_images_kept)
        );
        println!(
            "  memory       when the writers stopped: {} of page images, {} dirty",
            format_bytes(load.memory_resident_bytes),
            format_bytes(load.memory_dirty_bytes)
        );
        let recovery = &self.recovery;
        println!(
            "  recovery     close {}, reopen {} (from checkpoint epoch {}, {} redo records replayed)",
            secs(recovery.close_seconds),
            secs(recovery.open_seconds),
            recovery.checkpoint_epoch,
            format_count(recovery.records_replayed)
        );
        let v = &self.verification;
        if v.mismatches == 0 && v.shape_problems.is_empty() {
            println!(
                "  verify       all {} pages match the reference (read in {})",
                format_count(v.pages_checked),
                secs(v.seconds)
            );
        } else {
            println!(
                "  verify       {} of {} pages differ from the reference",
                format_count(v.mismatches),
                format_count(v.pages_checked)
            );
            for m in &v.mismatch_examples {
                println!(
                    "    page {}: expected {}, found {}",
                    m.page, m.expected, m.found
                );
            }
        }
        println!(
            "  reference    {} in memory for {} pages; {} epoch regressions, {} order anomalies",
            format_bytes(self.reference_bytes as u64),
            format_count(store.pages as u64),
            v.epoch_regressions,
            v.order_anomalies
        );
        if self.problems.is_empty() {
            println!("result: OK");
        } else {
            println!("result: FAILED");
            for problem in &self.problems {
                println!("  {problem}");
            }
        }
    }

    fn print_snapshot(&self) {
        let secs = |value: f64| format_duration(Duration::from_secs_f64(value));
        let snapshot = &self.snapshot;
        println!(
            "  snapshot     {:?} requested at {}, published in {}: cut epoch {} (seen after {}), {} delta pages ({} policy)",
            snapshot.name,
            secs(snapshot.requested_at_seconds),
            secs(snapshot.seconds),
            snapshot.cut_epoch,
            secs(snapshot.cut_seen_after_seconds),
            format_count(snapshot.delta_pages),
            snapshot.delta_policy
        );
        println!(
            "  copy         {} of {} pages at {}/s (in at most {})",
            format_bytes(snapshot.copy_bytes),
            format_count(snapshot.pages),
            format_bytes(snapshot.copy_bytes_per_second as u64),
            secs(snapshot.copy_seconds_max)
        );
        if snapshot.verified {
            println!(
                "  restore      snapshot verified ({} pages in {}), restored in {}, opened in {}",
                format_count(snapshot.verify_pages_checked),
                secs(snapshot.verify_seconds),
                snapshot.restore_seconds.map_or_else(|| "-".into(), secs),
                snapshot
                    .restored_open_seconds
                    .map_or_else(|| "-".into(), secs)
            );
        } else {
            println!(
                "  restore      the snapshot does not verify: {} problem(s)",
                snapshot.verify_problem_count
            );
            for problem in &snapshot.verify_problems {
                println!("    {problem}");
            }
        }
        if snapshot.restored_equals_cut {
            println!(
                "  cut check    restored snapshot equals the cut: {} pages",
                format_count(snapshot.restored_pages_checked)
            );
        } else {
            println!(
                "  cut check    restored snapshot differs from the cut: {} of {} pages",
                format_count(snapshot.restored_mismatches),
                format_count(snapshot.restored_pages_checked)
            );
            for m in &snapshot.restored_mismatch_examples {
                println!(
                    "    page {}: expected {}, found {}",
                    m.page, m.expected, m.found
                );
            }
        }
    }

    fn describe_checkpoints(&self) -> String {
        let secs = |value: f64| format_duration(Duration::from_secs_f64(value));
        let during = &self.checkpoints.during_load;
        let mut text = format!("{} during the load", during.len());
        if !during.is_empty() && during.len() <= CHECKPOINTS_LISTED_MAX {
            let listed: Vec<String> = during
                .iter()
                .map(|c| format!("{} ({} pages)", secs(c.seconds), format_count(c.pages)))
                .collect();
            text += &format!(": {}", listed.join(", "));
        } else if !during.is_empty() {
            let seconds: Vec<f64> = during.iter().map(|c| c.seconds).collect();
            let max = seconds.iter().copied().fold(0.0, f64::max);
            let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
            text += &format!(": mean {}, max {}", secs(mean), secs(max));
        }
        match &self.checkpoints.close {
            Some(close) => {
                text += &format!(
                    "; at close: {} ({} pages)",
                    secs(close.seconds),
                    format_count(close.pages)
                )
            }
            None => text += "; none at close",
        }
        text
    }
}
