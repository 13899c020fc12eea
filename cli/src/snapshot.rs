//! `deltasnap snapshot STORE_DIR TARGET_DIR --name NAME`: open a store, take an online snapshot
//! into `TARGET_DIR/NAME` (`Engine::snapshot`) with a progress bar, print the manifest's summary
//! (`--json`: the manifest itself), close the store.
//!
//! [`follow`], the loop that watches a running snapshot, is shared with the demo's snapshot phase.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use deltasnap::{Epoch, Error, JobStage, Manifest, SnapshotHandle, SnapshotOptions};
use indicatif::ProgressBar;

use crate::args::SnapshotArgs;
use crate::failure::{Context, Failure, Result};
use crate::output::print_json;
use crate::progress;
use crate::units::{format_bytes, format_count, format_duration};

/// How often [`follow`] polls the snapshot. Short, because the demo pins its reference as soon as
/// the cut epoch shows, and because the copy's duration is measured between polls; a poll is a
/// lock and a few atomic loads.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often [`follow`] redraws the bar (a redraw costs more than a poll).
const BAR_INTERVAL: Duration = Duration::from_millis(50);

/// A snapshot that [`follow`] saw through to its manifest.
#[derive(Debug)]
pub struct Followed {
    pub manifest: Manifest,
    /// From the request to the published snapshot.
    pub duration: Duration,
    /// When the cut epoch first showed, from the request.
    pub cut_seen_after: Duration,
    /// Bytes the copier copied (the partition files' lengths at the cut).
    pub bytes_copied: u64,
    /// An upper bound of the copy's duration: from the last poll that saw the copy not started
    /// to the first that saw it done.
    pub copy_duration_max: Duration,
}

impl Followed {
    /// The copy rate, a lower bound (see `copy_duration_max`); 0 if nothing was copied.
    pub fn copy_bytes_per_second(&self) -> f64 {
        let seconds = self.copy_duration_max.as_secs_f64();
        if seconds > 0.0 {
            self.bytes_copied as f64 / seconds
        } else {
            0.0
        }
    }
}

/// A job stage as the bar and the reports print it.
pub fn stage_name(stage: JobStage) -> String {
    format!("{stage:?}").to_lowercase()
}

/// Watches `handle` (requested at `requested`) until it ends, showing bytes copied, stage, cut
/// epoch and delta pages on `bar`, and returns its manifest. `on_cut` is called once, with the
/// cut epoch, at the first poll that shows it; if it fails, the snapshot is cancelled and the
/// failure returned. `what` names the step in failures.
pub fn follow(
    handle: SnapshotHandle,
    requested: Instant,
    bar: &ProgressBar,
    what: &str,
    mut on_cut: impl FnMut(Epoch) -> std::result::Result<(), String>,
) -> Result<Followed> {
    let mut cut_seen_after = None;
    let mut copy_not_started_at = requested;
    let mut copy_done_at = None;
    let mut last_draw: Option<Instant> = None;
    let last = loop {
        // Read `finished` first: the progress read after it is then the final one.
        let finished = handle.is_finished();
        let progress = handle.progress();
        let now = Instant::now();
        if let (Some(epoch), None) = (progress.cut_epoch, cut_seen_after) {
            cut_seen_after = Some(now - requested);
            if let Err(reason) = on_cut(epoch) {
                handle.cancel();
                let _cancelled = handle.wait();
                return Err(Failure::error(what, reason));
            }
        }
        if progress.copy_done {
            copy_done_at.get_or_insert(now);
        } else if matches!(progress.stage, JobStage::Waiting | JobStage::Cut) {
            copy_not_started_at = now;
        }
        if finished || last_draw.is_none_or(|at| now - at >= BAR_INTERVAL) {
            last_draw = Some(now);
            bar.set_length(progress.bytes_total);
            bar.set_position(progress.bytes_copied);
            let cut = progress
                .cut_epoch
                .map_or_else(String::new, |epoch| format!(", cut epoch {epoch}"));
            bar.set_message(format!(
                "{}{cut}, {} delta pages",
                stage_name(progress.stage),
                format_count(progress.delta_pages)
            ));
        }
        if finished {
            break progress;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let manifest = handle.wait().context(|| what.to_string())?;
    let ended = Instant::now();
    let copy_done_at = copy_done_at.unwrap_or(ended);
    Ok(Followed {
        manifest,
        duration: ended - requested,
        cut_seen_after: cut_seen_after.unwrap_or(ended - requested),
        bytes_copied: last.bytes_copied,
        copy_duration_max: copy_done_at.saturating_duration_since(copy_not_started_at),
    })
}

/// Pages in all partitions of a manifest.
pub fn manifest_pages(manifest: &Manifest) -> u64 {
    manifest
        .partitions
        .iter()
        .map(|p| p.page_count as u64)
        .sum()
}

pub fn run(args: &SnapshotArgs, json: bool) -> Result<()> {
    let store = &args.store_dir;
    let what = format!("snapshot {}", store.display());
    let engine = match crate::inspect::open_existing(store) {
        Err(Error::StoreLocked { holder_pid, .. }) => {
            let holder =
                holder_pid.map_or("another engine".to_string(), |pid| format!("process {pid}"));
            return Err(Failure::error(
                what,
                format!(
                    "the store is in use by {holder}; this command opens the store itself, so it \
                     cannot snapshot a live one: take the snapshot inside the application that \
                     holds it (Engine::snapshot), or stop that application first"
                ),
            ));
        }
        other => other.context(|| what.clone())?,
    };
    let mut options = SnapshotOptions::new(&args.target_dir, &args.name);
    options.delta_policy = args.delta_policy.into();
    options.rate_limit_bytes_per_sec = args.rate_limit;
    let requested = Instant::now();
    let handle = engine.snapshot(options).context(|| what.clone())?;
    let bar = progress::snapshot("snapshot");
    let followed = follow(handle, requested, &bar, &what, |_| Ok(()));
    bar.finish_and_clear();
    let followed = followed?;
    engine
        .close()
        .context(|| format!("close store {}", store.display()))?;
    if json {
        return print_json(&followed.manifest);
    }
    print_summary(store, &args.target_dir.join(&args.name), &followed);
    Ok(())
}

fn print_summary(store: &Path, dir: &Path, followed: &Followed) {
    let manifest = &followed.manifest;
    let secs = |duration: Duration| format_duration(duration);
    let pages = manifest_pages(manifest);
    println!(
        "snapshot {:?} of {} published at {} in {}",
        manifest.name,
        store.display(),
        dir.display(),
        secs(followed.duration)
    );
    println!(
        "  cut          epoch {} (redo lsn {}), taken {} after the request",
        manifest.cut_epoch,
        manifest.cut_lsn,
        secs(followed.cut_seen_after)
    );
    println!(
        "  pages        {} in {} partitions, {} of {} B",
        format_count(pages),
        manifest.partitions.len(),
        format_bytes(pages * manifest.page_size as u64),
        manifest.page_size
    );
    println!(
        "  copy         {} at {}/s",
        format_bytes(followed.bytes_copied),
        format_bytes(followed.copy_bytes_per_second() as u64)
    );
    println!(
        "  delta        {} pages ({} policy)",
        format_count(manifest.delta_pages),
        delta_policy_name(manifest)
    );
    println!("  metadata     {} entries", manifest.metadata.len());
}

/// The manifest's delta policy as the command line spells it (`full`, `cursor-aware`).
pub fn delta_policy_name(manifest: &Manifest) -> &'static str {
    match manifest.delta_policy {
        deltasnap::DeltaPolicy::Full => "full",
        deltasnap::DeltaPolicy::CursorAware => "cursor-aware",
    }
}
