//! `deltasnap inspect PATH`: describe a snapshot or a store.
//!
//! - A directory holding `manifest.json` is a snapshot: its manifest is parsed and checked
//!   (`Manifest::parse`) but the pages are not read (that is `verify`'s job).
//! - A store another engine holds (`deltasnap::lock_holder`) is described from its control file
//!   alone: no recovery, no lock, not a byte written, and the output says which process uses it
//!   (the redo written since the last checkpoint is not replayed, so it is not counted).
//! - Any other store is opened, without creating one and without the background checkpointer,
//!   described, and closed. Opening runs recovery: it cuts a torn redo tail and replays the redo
//!   log, and closing writes a checkpoint if the replay changed anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deltasnap::snapshot::manifest::MANIFEST_FILE_NAME;
use deltasnap::{last_checkpoint, lock_holder, Config, Engine, Error, JobStatus, Manifest};
use serde::Serialize;

use crate::args::InspectArgs;
use crate::failure::{Context, Result};
use crate::output::{print_json, text_or_hex, utc_from_unix_ms};
use crate::units::{format_bytes, format_count, format_duration};

/// What `inspect` found, as printed with `--json`.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Inspected {
    Snapshot(SnapshotInfo),
    Store(StoreInfo),
}

#[derive(Debug, Serialize)]
struct SnapshotInfo {
    dir: PathBuf,
    name: String,
    format_version: u32,
    created_unix_ms: u64,
    cut_epoch: u64,
    cut_lsn: u64,
    page_size: u32,
    delta_policy: serde_json::Value,
    delta_pages: u64,
    partitions: Vec<PartitionInfo>,
    pages: u64,
    metadata: Vec<MetadataInfo>,
}

#[derive(Debug, Serialize)]
struct PartitionInfo {
    id: u32,
    pages: u32,
}

#[derive(Debug, Serialize)]
struct MetadataInfo {
    /// The key as text, or `0x` and hex if it is not printable UTF-8.
    key: String,
    value_bytes: usize,
}

#[derive(Debug, Serialize)]
struct StoreInfo {
    dir: PathBuf,
    page_size: u32,
    payload_bytes: usize,
    partitions: Vec<PartitionInfo>,
    pages: u64,
    /// Set when another engine holds the store: it was read without recovery.
    in_use: Option<InUse>,
    last_checkpoint: CheckpointInfo,
    /// What recovery found; `None` for a store in use (it was not recovered).
    redo: Option<RedoInfo>,
    stale_files_removed: Vec<PathBuf>,
    metadata: Vec<MetadataInfo>,
    /// Jobs of this process only: the engine keeps job history in memory.
    jobs: Vec<JobStatus>,
    bytes_on_disk: DiskUsage,
}

#[derive(Debug, Serialize)]
struct InUse {
    /// The holder's process id, where its lock file names it.
    pid: Option<u32>,
}

#[derive(Debug, Serialize)]
struct CheckpointInfo {
    epoch: u64,
    replay_start_lsn: u64,
}

#[derive(Debug, Serialize)]
struct RedoInfo {
    end_lsn: u64,
    records_replayed: u64,
    tail_cut: Option<TailCutInfo>,
}

#[derive(Debug, Serialize)]
struct TailCutInfo {
    segment: PathBuf,
    lsn: u64,
    bytes_dropped: u64,
    reason: String,
}

#[derive(Debug, Serialize)]
struct DiskUsage {
    partitions: u64,
    wal: u64,
    wal_segments: usize,
}

pub fn run(args: &InspectArgs, json: bool) -> Result<()> {
    let path = &args.path;
    let inspected = if path.join(MANIFEST_FILE_NAME).is_file() {
        Inspected::Snapshot(inspect_snapshot(path)?)
    } else {
        Inspected::Store(inspect_store(path)?)
    };
    if json {
        return print_json(&inspected);
    }
    match &inspected {
        Inspected::Snapshot(snapshot) => print_snapshot(snapshot),
        Inspected::Store(store) => print_store(store),
    }
    Ok(())
}

fn inspect_snapshot(dir: &Path) -> Result<SnapshotInfo> {
    let manifest_path = dir.join(MANIFEST_FILE_NAME);
    let what = || format!("inspect snapshot {}", dir.display());
    let bytes = std::fs::read(&manifest_path).context(what)?;
    let manifest = Manifest::parse(&bytes, &manifest_path).context(what)?;
    let partitions: Vec<PartitionInfo> = manifest
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            id: p.id,
            pages: p.page_count,
        })
        .collect();
    Ok(SnapshotInfo {
        dir: dir.to_path_buf(),
        pages: partitions.iter().map(|p| p.pages as u64).sum(),
        partitions,
        metadata: metadata_info(&manifest.metadata_map()),
        delta_policy: serde_json::to_value(manifest.delta_policy).context(what)?,
        name: manifest.name,
        format_version: manifest.format_version,
        created_unix_ms: manifest.created_unix_ms,
        cut_epoch: manifest.cut_epoch,
        cut_lsn: manifest.cut_lsn,
        page_size: manifest.page_size,
        delta_pages: manifest.delta_pages,
    })
}

fn inspect_store(dir: &Path) -> Result<StoreInfo> {
    let what = || format!("inspect store {}", dir.display());
    if let Some(holder) = lock_holder(dir).context(what)? {
        return inspect_store_in_use(dir, holder.pid);
    }
    let engine = match open_existing(dir) {
        // Taken between the look and the open: describe it as in use.
        Err(Error::StoreLocked { holder_pid, .. }) => return inspect_store_in_use(dir, holder_pid),
        other => other.context(what)?,
    };
    let report = engine.recovery_report().clone();
    let partitions: Vec<PartitionInfo> = engine
        .partitions()
        .into_iter()
        .map(|(id, pages)| PartitionInfo { id: id.0, pages })
        .collect();
    let metadata = engine.metadata().context(what)?;
    let info = StoreInfo {
        dir: dir.to_path_buf(),
        page_size: engine.page_size(),
        payload_bytes: engine.payload_size(),
        pages: partitions.iter().map(|p| p.pages as u64).sum(),
        partitions,
        last_checkpoint: CheckpointInfo {
            epoch: report.checkpoint_epoch,
            replay_start_lsn: report.replay_start_lsn,
        },
        in_use: None,
        redo: Some(RedoInfo {
            end_lsn: report.end_lsn,
            records_replayed: report.records_replayed,
            tail_cut: report.wal_tail_cut.map(|cut| TailCutInfo {
                segment: cut.segment,
                lsn: cut.lsn,
                bytes_dropped: cut.bytes_dropped,
                reason: cut.reason,
            }),
        }),
        stale_files_removed: report.stale_files_removed,
        metadata: metadata_info(&metadata),
        jobs: engine.jobs(),
        bytes_on_disk: disk_usage(dir).context(what)?,
    };
    engine.close().context(what)?;
    Ok(info)
}

/// A store another engine holds, from its control file only: no recovery, no lock, no write.
fn inspect_store_in_use(dir: &Path, pid: Option<u32>) -> Result<StoreInfo> {
    let what = || format!("inspect store {}", dir.display());
    let control = last_checkpoint(dir).context(what)?.ok_or_else(|| {
        crate::failure::Failure::error(what(), "the store is in use but has no control file")
    })?;
    let partitions: Vec<PartitionInfo> = control
        .partitions
        .iter()
        .map(|(id, pages)| PartitionInfo {
            id: id.0,
            pages: *pages,
        })
        .collect();
    Ok(StoreInfo {
        dir: dir.to_path_buf(),
        page_size: control.page_size,
        payload_bytes: deltasnap::format::payload_size(control.page_size as usize),
        pages: partitions.iter().map(|p| p.pages as u64).sum(),
        partitions,
        in_use: Some(InUse { pid }),
        last_checkpoint: CheckpointInfo {
            epoch: control.checkpoint_epoch,
            replay_start_lsn: control.replay_start_lsn,
        },
        redo: None,
        stale_files_removed: Vec::new(),
        metadata: metadata_info(&control.metadata),
        jobs: Vec::new(),
        bytes_on_disk: disk_usage(dir).context(what)?,
    })
}

/// Opens an existing store whatever its page size: the engine insists on the configured page
/// size, so a mismatch is retried once with the size the store has.
pub(crate) fn open_existing(dir: &Path) -> deltasnap::Result<Engine> {
    let config = Config {
        create_if_missing: false,
        background_checkpointer: false,
        ..Config::default()
    };
    match Engine::open(dir, config.clone()) {
        Err(Error::PageSizeMismatch { on_disk, .. }) => Engine::open(
            dir,
            Config {
                page_size: on_disk,
                ..config
            },
        ),
        other => other,
    }
}

fn metadata_info(metadata: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<MetadataInfo> {
    metadata
        .iter()
        .map(|(key, value)| MetadataInfo {
            key: text_or_hex(key),
            value_bytes: value.len(),
        })
        .collect()
}

fn disk_usage(dir: &Path) -> std::io::Result<DiskUsage> {
    let (partitions, _) = directory_bytes(&dir.join("partitions"))?;
    let (wal, wal_segments) = directory_bytes(&dir.join("wal"))?;
    Ok(DiskUsage {
        partitions,
        wal,
        wal_segments,
    })
}

/// Total bytes of the regular files directly in `dir`, and how many of them are named like a
/// file of that directory (`.dat`, `.log`; the redo log's spare files are not segments) (0 if it
/// does not exist).
fn directory_bytes(dir: &Path) -> std::io::Result<(u64, usize)> {
    if !dir.is_dir() {
        return Ok((0, 0));
    }
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            total.0 += metadata.len();
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log" || e == "dat") {
                total.1 += 1;
            }
        }
    }
    Ok(total)
}

fn print_partitions(partitions: &[PartitionInfo], pages: u64, page_size: u32) {
    println!(
        "  partitions   {} with {} pages ({})",
        partitions.len(),
        format_count(pages),
        format_bytes(pages * page_size as u64)
    );
    for partition in partitions {
        println!(
            "    {:>6}     {} pages",
            partition.id,
            format_count(partition.pages as u64)
        );
    }
}

fn print_metadata(metadata: &[MetadataInfo]) {
    println!("  metadata     {} key(s)", metadata.len());
    for entry in metadata {
        println!("    {} ({} B)", entry.key, entry.value_bytes);
    }
}

fn print_snapshot(snapshot: &SnapshotInfo) {
    println!("snapshot {:?} at {}", snapshot.name, snapshot.dir.display());
    println!(
        "  created      {} (format version {})",
        utc_from_unix_ms(snapshot.created_unix_ms),
        snapshot.format_version
    );
    println!(
        "  cut          epoch {}, redo LSN {}",
        snapshot.cut_epoch, snapshot.cut_lsn
    );
    println!("  page size    {} B", snapshot.page_size);
    let policy = snapshot.delta_policy.as_str().unwrap_or("?");
    println!(
        "  delta        {} pages merged (policy {policy})",
        format_count(snapshot.delta_pages)
    );
    print_partitions(&snapshot.partitions, snapshot.pages, snapshot.page_size);
    print_metadata(&snapshot.metadata);
}

fn print_store(store: &StoreInfo) {
    println!(
        "store {} (page size {} B, {} B payload)",
        store.dir.display(),
        store.page_size,
        store.payload_bytes
    );
    if let Some(in_use) = &store.in_use {
        let holder = match in_use.pid {
            Some(pid) => format!("process {pid}"),
            None => "another engine".to_string(),
        };
        println!("  in use       by {holder}: read from the last checkpoint without recovery or lock; writes since it are not shown");
    }
    print_partitions(&store.partitions, store.pages, store.page_size);
    println!(
        "  checkpoint   last completed: epoch {}, redo replay starts at LSN {}",
        store.last_checkpoint.epoch, store.last_checkpoint.replay_start_lsn
    );
    let Some(redo) = &store.redo else {
        println!(
            "  redo log     {} in {} segment file(s), not read (the store is in use)",
            format_bytes(store.bytes_on_disk.wal),
            store.bytes_on_disk.wal_segments
        );
        print_metadata(&store.metadata);
        return;
    };
    println!(
        "  redo log     ends at LSN {}; {} record(s) replayed at open; {} in {} segment file(s)",
        redo.end_lsn,
        format_count(redo.records_replayed),
        format_bytes(store.bytes_on_disk.wal),
        store.bytes_on_disk.wal_segments
    );
    match &redo.tail_cut {
        None => println!("  redo tail    intact"),
        Some(cut) => println!(
            "  redo tail    cut at LSN {} in {}: {} dropped ({})",
            cut.lsn,
            cut.segment.display(),
            format_bytes(cut.bytes_dropped),
            cut.reason
        ),
    }
    for file in &store.stale_files_removed {
        println!("  removed      stale file {}", file.display());
    }
    print_metadata(&store.metadata);
    if store.jobs.is_empty() {
        println!("  jobs         none in this process (job history is not persisted)");
    } else {
        println!("  jobs");
        for job in &store.jobs {
            println!("    {}", describe_job(job));
        }
    }
}

/// One line about a checkpoint or snapshot job.
pub fn describe_job(job: &JobStatus) -> String {
    let kind = serde_json::to_value(job.kind).ok();
    let stage = serde_json::to_value(job.stage).ok();
    let mut line = format!(
        "#{} {} {}",
        job.id,
        kind.as_ref().and_then(|v| v.as_str()).unwrap_or("?"),
        stage.as_ref().and_then(|v| v.as_str()).unwrap_or("?")
    );
    if let Some(epoch) = job.epoch {
        line += &format!(", epoch {epoch}");
    }
    line += &format!(
        ", {} pages ({})",
        format_count(job.pages_written),
        format_bytes(job.bytes_written)
    );
    if job.delta_pages > 0 {
        line += &format!(", {} delta pages", format_count(job.delta_pages));
    }
    if let Some(duration) = job.duration {
        line += &format!(", {}", format_duration(duration));
    }
    if let Some(error) = &job.error {
        line += &format!(", error: {error}");
    }
    line
}
