//! The demo's report: one value, printed for humans or as JSON (`--json`), plus the list of
//! failed checks that decides the exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use deltasnap::{EngineStats, JobStatus};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::phases::{BuildOutcome, LoadOutcome, Mismatch, ReopenOutcome, VerifyOutcome};
use super::reference::Reference;
use super::Plan;
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
    /// Page-image memory when the writers stopped.
    pub memory_resident_bytes: u64,
    pub memory_dirty_bytes: u64,
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

impl DemoReport {
    pub fn new(
        plan: &Plan,
        dir: &Path,
        reference: &Reference,
        build: &BuildOutcome,
        load: &LoadOutcome,
        reopen: &ReopenOutcome,
        verify: &VerifyOutcome,
    ) -> DemoReport {
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
                memory_resident_bytes: load.memory_at_end.0,
                memory_dirty_bytes: load.memory_at_end.1,
            },
            checkpoints: CheckpointsSection {
                during_load: load.checkpoints.iter().map(CheckpointRecord::new).collect(),
                close: reopen.close_checkpoint.as_ref().map(CheckpointRecord::new),
            },
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
        println!("  checkpoints  {}", self.describe_checkpoints());
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
