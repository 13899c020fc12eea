//! `deltasnap demo`: the project's main job, end to end on a real store.
//!
//! 1. **build** a store of `--size` bytes: partitions, then every page allocated and filled with
//!    its initial content (`crate::content`), made durable by a checkpoint;
//! 2. **load**: `--writers` threads write random pages for `--seconds` while the background
//!    checkpointer runs; each write stamps the page with `(partition, index, writer, seq)` and
//!    records its receipt in the [`reference::Reference`] (per page the last version, not a copy).
//!    Under the load, the **snapshot** phase ([`snapshot::take`], from the `during` callback of
//!    [`phases::load`]): after a third of the load, an online snapshot into
//!    `<store>/snapshots/`, with the reference pinned at its cut epoch; the writers time their
//!    writes separately before, during and after the snapshot;
//! 3. **close** (final checkpoint), **reopen** (recovery), and **verify** every page against the
//!    reference;
//! 4. **check the snapshot** ([`snapshot::check`]): verify it, restore it into
//!    `<store>/restored`, and compare every page of the restored store with the reference's state
//!    at the pinned cut;
//! 5. **report** ([`report::DemoReport`]): sizes, write rate and latency percentiles (overall and
//!    by snapshot phase), checkpoints and their durations, the snapshot's timings, engine
//!    counters, recovery time, verification results.
//!
//! Besides page contents, the demo checks what it can see of the engine's promises: a writer's
//! receipts never go back in epoch (K1), one page's writes agree in LSN and epoch order (DESIGN §3),
//! the reopened store has the partitions, page counts and metadata that were written, and the
//! restored snapshot holds exactly the writes whose receipt epoch is `<=` its cut epoch (S1),
//! with the metadata of the cut. Any failed check makes the demo exit 1 (and keeps a temporary
//! store for inspection).

mod phases;
mod reference;
mod report;
mod snapshot;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use deltasnap::{Config, PageId, PartitionId};
use serde::Serialize;

use crate::args::{DeltaPolicyArg, DemoArgs};
use crate::content::HEADER_BYTES;
use crate::failure::{Context, Failure, Result};
use crate::output::print_json;

use self::reference::Reference;
use self::report::{DemoReport, Outcomes};

/// The metadata key under which the demo stores its plan (checked after reopening).
const PLAN_KEY: &[u8] = b"deltasnap-demo/plan";
/// Where the demo's snapshot is published, under the store directory.
const SNAPSHOTS_DIR: &str = "snapshots";
/// Where the demo restores its snapshot, under the store directory.
const RESTORED_DIR: &str = "restored";

/// How the pages are laid out: partition `k` holds pages with slots `starts[k] ..
/// starts[k + 1]`. A slot is a page's dense number `0 .. pages`, the index into the reference.
#[derive(Debug, Clone)]
pub struct Layout {
    partitions: Vec<(PartitionId, u32)>,
    starts: Vec<usize>,
    pages: usize,
}

impl Layout {
    /// `pages` spread as evenly as possible over partitions `0 .. partition_count`.
    pub fn new(pages: usize, partition_count: u32) -> Layout {
        let count = partition_count as usize;
        let mut partitions = Vec::with_capacity(count);
        let mut starts = Vec::with_capacity(count + 1);
        let mut start = 0;
        for k in 0..count {
            let size = pages / count + usize::from(k < pages % count);
            partitions.push((PartitionId(k as u32), size as u32));
            starts.push(start);
            start += size;
        }
        starts.push(start);
        Layout {
            partitions,
            starts,
            pages,
        }
    }

    pub fn partitions(&self) -> &[(PartitionId, u32)] {
        &self.partitions
    }

    pub fn page(&self, slot: usize) -> PageId {
        assert!(slot < self.pages, "slot {slot} out of {}", self.pages);
        let k = self.starts.partition_point(|&start| start <= slot) - 1;
        PageId::new(self.partitions[k].0, (slot - self.starts[k]) as u32)
    }

    pub fn slot(&self, page: PageId) -> usize {
        self.starts[page.partition.0 as usize] + page.index as usize
    }
}

/// Everything the phases need to know, fixed before the store is opened.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(skip)]
    pub config: Config,
    #[serde(skip)]
    pub layout: Layout,
    pub page_size: u32,
    pub partitions: u32,
    pub pages: usize,
    pub write_bytes: usize,
    pub writers: u16,
    pub load_seconds: f64,
    pub checkpoint_interval_ms: u64,
    pub seed: u64,
    /// The snapshot's delta policy (in the report's snapshot section, not in the stored plan).
    #[serde(skip)]
    pub delta_policy: DeltaPolicyArg,
}

impl Plan {
    fn from_args(args: &DemoArgs) -> Result<Plan> {
        let invalid = |reason: String| Failure::error("demo", reason);
        deltasnap::format::validate_page_size(args.page_size)
            .map_err(|e| invalid(format!("--page-size: {e}")))?;
        let pages = args.size / args.page_size as u64;
        if pages < args.partitions as u64 {
            return Err(invalid(format!(
                "--size {} holds {pages} pages of {} B, fewer than the {} partitions",
                args.size, args.page_size, args.partitions
            )));
        }
        let pages = usize::try_from(pages)
            .ok()
            .filter(|&p| p / args.partitions as usize <= u32::MAX as usize)
            .ok_or_else(|| invalid(format!("--size {} is too large", args.size)))?;
        let payload_bytes = deltasnap::format::payload_size(args.page_size as usize);
        if !(HEADER_BYTES..=payload_bytes).contains(&args.write_bytes) {
            return Err(invalid(format!(
                "--write-bytes must be in {HEADER_BYTES}..={payload_bytes} for pages of {} B",
                args.page_size
            )));
        }
        if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds < 1e6) {
            return Err(invalid(format!(
                "--seconds must be positive, not {}",
                args.seconds
            )));
        }
        let mut config = Config {
            page_size: args.page_size,
            checkpoint_interval_ms: Some(args.checkpoint_interval_ms.max(1)),
            ..Config::default()
        };
        if let Some(budget) = args.memory_budget {
            config.memory_budget_bytes = budget;
        }
        let seed = args.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Plan {
            layout: Layout::new(pages, args.partitions),
            config,
            page_size: args.page_size,
            partitions: args.partitions,
            pages,
            write_bytes: args.write_bytes,
            writers: args.writers,
            load_seconds: args.seconds,
            checkpoint_interval_ms: args.checkpoint_interval_ms,
            seed,
            delta_policy: args.delta_policy,
        })
    }

    pub fn load_duration(&self) -> Duration {
        Duration::from_secs_f64(self.load_seconds)
    }

    pub fn store_bytes(&self) -> u64 {
        self.pages as u64 * self.page_size as u64
    }

    /// The plan as stored in the store's metadata.
    pub fn metadata_value(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a plan always serializes")
    }
}

/// The store directory: the one given, or a temporary one removed at the end unless kept.
enum StoreDir {
    Given(PathBuf),
    Temporary(tempfile::TempDir),
}

impl StoreDir {
    fn new(args: &DemoArgs) -> Result<StoreDir> {
        match &args.dir {
            Some(dir) => {
                let occupied = dir.exists()
                    && std::fs::read_dir(dir)
                        .context(|| format!("demo: list {}", dir.display()))?
                        .next()
                        .is_some();
                if occupied {
                    return Err(Failure::error(
                        "demo",
                        format!(
                            "--dir {} is not empty (the demo builds a new store)",
                            dir.display()
                        ),
                    ));
                }
                Ok(StoreDir::Given(dir.clone()))
            }
            None => tempfile::Builder::new()
                .prefix("deltasnap-demo-")
                .tempdir()
                .map(StoreDir::Temporary)
                .context(|| "demo: create a temporary store directory".into()),
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            StoreDir::Given(dir) => dir.clone(),
            StoreDir::Temporary(dir) => dir.path().to_path_buf(),
        }
    }

    /// Ends the run: a temporary directory is removed unless `keep`. Returns whether the store
    /// is still there.
    fn finish(self, keep: bool) -> Result<bool> {
        match self {
            StoreDir::Given(_) => Ok(true),
            StoreDir::Temporary(dir) if keep => {
                let _ = dir.keep();
                Ok(true)
            }
            StoreDir::Temporary(dir) => {
                let path = dir.path().to_path_buf();
                dir.close()
                    .context(|| format!("demo: remove {}", path.display()))?;
                Ok(false)
            }
        }
    }
}

pub fn run(args: &DemoArgs, json: bool) -> Result<()> {
    let plan = Plan::from_args(args)?;
    let store_dir = StoreDir::new(args)?;
    let dir = store_dir.path();
    let reference = Reference::new(plan.pages);

    let engine = deltasnap::Engine::open(&dir, plan.config.clone())
        .context(|| format!("demo: create store {}", dir.display()))?;
    // (a) build
    let build = phases::build(&engine, &plan, &reference)?;
    // (b) load, and the snapshot under it.
    let snapshots_dir = dir.join(SNAPSHOTS_DIR);
    let (load, taken) = phases::load(&engine, &plan, &reference, |running| {
        snapshot::take(&engine, &plan, &reference, running, &snapshots_dir)
    })?;
    // (c) close, reopen, verify against the reference's final state.
    let reopen = phases::close_and_reopen(engine, &plan, &dir)?;
    let expected = reference
        .expected_at(deltasnap::Epoch::MAX)
        .map_err(|e| Failure::error("demo: reference", e))?;
    let verify = phases::verify_pages(&reopen.engine, &plan, &expected)?;
    reopen
        .engine
        .close()
        .context(|| format!("demo: close store {}", dir.display()))?;
    // (d) the snapshot: verify, restore, compare with the state at its cut.
    let checked = snapshot::check(&plan, &taken, &reference, &dir.join(RESTORED_DIR))?;

    // (e) report
    let report = DemoReport::new(
        &plan,
        &dir,
        &reference,
        &Outcomes {
            build: &build,
            load: &load,
            reopen: &reopen,
            verify: &verify,
            snapshot: &taken,
            snapshot_check: &checked,
        },
    );
    let failed = report.problems();
    let kept = store_dir.finish(args.keep || !failed.is_empty())?;
    let report = report.with_kept(kept);
    if json {
        print_json(&report)?;
    } else {
        report.print();
    }
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(Failure::problems(
            "demo",
            format!(
                "{} check(s) failed, the first: {first} (store kept at {})",
                failed.len(),
                dir.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_pages_correspond() {
        let layout = Layout::new(1003, 8);
        let sizes: Vec<u32> = layout.partitions().iter().map(|p| p.1).collect();
        assert_eq!(sizes, [126, 126, 126, 125, 125, 125, 125, 125]);
        for slot in 0..1003 {
            assert_eq!(layout.slot(layout.page(slot)), slot);
        }
        assert_eq!(layout.page(126), PageId::new(PartitionId(1), 0));
        assert_eq!(layout.page(1002), PageId::new(PartitionId(7), 124));
    }
}
