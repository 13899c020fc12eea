//! The demo's snapshot phase: a snapshot taken under the load, restored, and compared with the
//! state at its cut (S1: the restored snapshot equals the engine state at the cut).
//!
//! 1. [`take`] runs as the load's `during` callback. The writers write alone for the first third
//!    of the load ([`SnapshotPhase::Before`]); then the snapshot is requested
//!    ([`SnapshotPhase::During`]) into `<store>/snapshots/<name>`, and as soon as its cut epoch
//!    `S` shows, the reference is pinned at `S`; once it is published the writers go on
//!    ([`SnapshotPhase::After`]) until the load's time is up, and at least a sixth of it, so
//!    that the checkpoints after `S` overwrite what the snapshot holds.
//! 2. [`check`], after the load (every write recorded, late ones included): `verify_snapshot`,
//!    `restore` into `<store>/restored`, open it, and compare every page with
//!    `Reference::expected_at_pin`, by the receipt contract: a write is in snapshot `S` iff its
//!    receipt epoch is `<= S`. [`phases::verify_pages`] also checks the partitions and the plan
//!    in the restored metadata (the metadata as of the cut).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use deltasnap::{Config, Engine, SnapshotOptions};

use super::phases::{self, Running, SnapshotPhase, VerifyOutcome};
use super::reference::Reference;
use super::Plan;
use crate::failure::{Context, Failure, Result};
use crate::progress;
use crate::snapshot::{follow, Followed};

/// The demo's snapshot name.
pub const SNAPSHOT_NAME: &str = "demo-under-load";
/// Verification problems of the snapshot listed in the report (all are counted).
const PROBLEMS_LISTED_MAX: usize = 10;
/// How often [`take`] checks the time and the writers while it waits.
const WAIT_INTERVAL: Duration = Duration::from_millis(20);

/// What [`take`] did.
#[derive(Debug)]
pub struct Taken {
    /// The published snapshot.
    pub dir: PathBuf,
    /// When the snapshot was requested, from the start of the load.
    pub requested_at: Duration,
    pub followed: Followed,
}

/// Sleeps until the load has run for `until`; false if the writers were stopped first.
fn wait_for_load(running: &Running<'_>, until: Duration) -> bool {
    loop {
        if running.stopping() {
            return false;
        }
        let elapsed = running.elapsed();
        if elapsed >= until {
            return true;
        }
        thread::sleep((until - elapsed).min(WAIT_INTERVAL));
    }
}

/// Step 1 (see the module doc): the snapshot under the load, into `target_dir/SNAPSHOT_NAME`.
pub fn take(
    engine: &Engine,
    plan: &Plan,
    reference: &Reference,
    running: &Running<'_>,
    target_dir: &Path,
) -> Result<Taken> {
    let load = plan.load_duration();
    if !wait_for_load(running, load / 3) {
        return Err(Failure::error(
            "demo: snapshot",
            "the writers stopped before the snapshot",
        ));
    }
    running.enter(SnapshotPhase::During);
    let requested_at = running.elapsed();
    let requested = Instant::now();
    let mut options = SnapshotOptions::new(target_dir, SNAPSHOT_NAME);
    options.delta_policy = plan.delta_policy.into();
    let handle = engine
        .snapshot(options)
        .context(|| "demo: start the snapshot".into())?;
    let bar = running.add_bar(progress::snapshot("snapshot"));
    // The pin must come before any page is written in two epochs after the cut, i.e. before
    // checkpoint `S + 1` begins: `follow` calls it at the first poll that shows the cut.
    let followed = follow(handle, requested, &bar, "demo: snapshot", |epoch| {
        reference.pin(epoch)
    });
    bar.finish_and_clear();
    running.enter(SnapshotPhase::After);
    let followed = followed?;
    // The writers go on; if they stopped already, the load reports why.
    wait_for_load(running, load.max(running.elapsed() + load / 6));
    Ok(Taken {
        dir: target_dir.join(SNAPSHOT_NAME),
        requested_at,
        followed,
    })
}

/// What [`check`] found.
#[derive(Debug)]
pub struct Checked {
    pub verify_duration: Duration,
    pub verify_pages_checked: u64,
    /// Problems `verify_snapshot` found (the first few), and their count.
    pub verify_problems: Vec<String>,
    pub verify_problem_count: usize,
    pub restore_duration: Option<Duration>,
    /// `Engine::open` of the restored store.
    pub open_duration: Option<Duration>,
    /// The restored store's pages against the state at the cut.
    pub pages: Option<VerifyOutcome>,
    /// Restore or open failures, and a restored store that does not open at the cut.
    pub problems: Vec<String>,
}

/// Step 2 (see the module doc): verify, restore into `restored_dir`, compare with the cut. Page
/// differences and failures of the engine's verify, restore and open are reported in
/// [`Checked`]; `Err` only when the check itself cannot run.
pub fn check(
    plan: &Plan,
    taken: &Taken,
    reference: &Reference,
    restored_dir: &Path,
) -> Result<Checked> {
    let manifest = &taken.followed.manifest;
    let expected = reference
        .expected_at_pin()
        .map_err(|e| Failure::error("demo: the state at the snapshot's cut", e))?;
    assert_eq!(
        reference.pinned(),
        Some(manifest.cut_epoch),
        "the reference is pinned at the cut the manifest names"
    );

    let spinner = progress::spinner("verify", "the snapshot against its manifest");
    let started = Instant::now();
    let verified = deltasnap::verify_snapshot(&taken.dir);
    let verify_duration = started.elapsed();
    spinner.finish_and_clear();
    let verified = verified.context(|| format!("demo: verify {}", taken.dir.display()))?;
    let mut checked = Checked {
        verify_duration,
        verify_pages_checked: verified.pages_checked,
        verify_problems: verified
            .problems
            .iter()
            .take(PROBLEMS_LISTED_MAX)
            .map(ToString::to_string)
            .collect(),
        verify_problem_count: verified.problems.len(),
        restore_duration: None,
        open_duration: None,
        pages: None,
        problems: Vec::new(),
    };
    if !verified.is_ok() {
        if verified.manifest.is_none() {
            checked
                .problems
                .push("the published snapshot has no readable manifest".into());
        }
        return Ok(checked); // restore would refuse it
    }

    let spinner = progress::spinner("restore", "the snapshot into a new store");
    let started = Instant::now();
    let restored = deltasnap::restore(&taken.dir, restored_dir);
    checked.restore_duration = Some(started.elapsed());
    spinner.finish_and_clear();
    if let Err(error) = restored {
        checked.problems.push(format!("restore failed: {error}"));
        return Ok(checked);
    }

    let config = Config {
        create_if_missing: false,
        background_checkpointer: false,
        ..plan.config.clone()
    };
    let spinner = progress::spinner("open", "the restored store");
    let started = Instant::now();
    let opened = Engine::open(restored_dir, config);
    checked.open_duration = Some(started.elapsed());
    spinner.finish_and_clear();
    let engine = match opened {
        Ok(engine) => engine,
        Err(error) => {
            checked
                .problems
                .push(format!("opening the restored store failed: {error}"));
            return Ok(checked);
        }
    };
    let recovery = engine.recovery_report();
    if recovery.checkpoint_epoch != manifest.cut_epoch || recovery.records_replayed != 0 {
        checked.problems.push(format!(
            "the restored store opened at checkpoint epoch {} with {} redo records replayed, \
             not at the cut epoch {} with none",
            recovery.checkpoint_epoch, recovery.records_replayed, manifest.cut_epoch
        ));
    }
    checked.pages = Some(phases::verify_pages(&engine, plan, &expected)?);
    engine
        .close()
        .context(|| format!("demo: close the restored store {}", restored_dir.display()))?;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::content::{self, Version};
    use clap::Parser;
    use deltasnap::{Lsn, WriteReceipt};
    use indicatif::ProgressBar;

    fn small_plan() -> Plan {
        let cli = Cli::try_parse_from([
            "deltasnap",
            "demo",
            "--size",
            "64KiB",
            "--partitions",
            "2",
            "--writers",
            "1",
            "--seed",
            "1",
        ])
        .unwrap();
        let Command::Demo(args) = cli.command else {
            panic!("not demo")
        };
        Plan::from_args(&args).unwrap()
    }

    /// A load write of `version` to the page at `slot`, recorded in the reference.
    fn write(engine: &Engine, plan: &Plan, reference: &Reference, slot: usize, version: Version) {
        let page = plan.layout.page(slot);
        let mut bytes = vec![0u8; plan.write_bytes];
        content::fill(page, version, &mut bytes);
        let receipt = engine.write(page, 0, &bytes).unwrap();
        reference.record(slot, receipt, version);
    }

    /// The check passes on a snapshot restored to its cut, and (the broken variant) fails when the
    /// reference holds a write of the cut that the snapshot does not.
    #[test]
    fn the_cut_check_passes_on_the_cut_and_fails_on_a_missing_write() {
        let root = tempfile::tempdir().unwrap();
        let plan = small_plan();
        let reference = Reference::new(plan.pages);
        let config = Config {
            background_checkpointer: false,
            ..plan.config.clone()
        };
        let engine = Engine::open(root.path().join("store"), config).unwrap();
        phases::build(&engine, &plan, &reference).unwrap();
        write(&engine, &plan, &reference, 0, Version::new(0, 0));
        let requested = Instant::now();
        let snapshots = root.path().join("snapshots");
        let handle = engine
            .snapshot(SnapshotOptions::new(&snapshots, "test"))
            .unwrap();
        let followed = follow(handle, requested, &ProgressBar::hidden(), "test", |epoch| {
            reference.pin(epoch)
        })
        .unwrap();
        write(&engine, &plan, &reference, 0, Version::new(0, 1)); // after the cut
        engine.close().unwrap();
        let cut_epoch = followed.manifest.cut_epoch;
        let taken = Taken {
            dir: snapshots.join("test"),
            requested_at: Duration::ZERO,
            followed,
        };

        let checked = check(&plan, &taken, &reference, &root.path().join("restored")).unwrap();
        assert!(checked.problems.is_empty(), "{:?}", checked.problems);
        assert_eq!(checked.verify_problem_count, 0);
        let pages = checked.pages.unwrap();
        assert_eq!(
            (pages.pages_checked, pages.mismatches),
            (plan.pages as u64, 0)
        );

        let claimed = WriteReceipt {
            lsn: Lsn::MAX,
            epoch: cut_epoch,
        };
        reference.record(1, claimed, Version::new(0, 2));
        let checked = check(&plan, &taken, &reference, &root.path().join("again")).unwrap();
        let pages = checked.pages.unwrap();
        assert_eq!(pages.mismatches, 1);
        assert_eq!(pages.examples[0].page, plan.layout.page(1).to_string());
    }
}
