//! Recovery (`Engine::open`): read the control file (refuse to open on any corruption, never
//! start empty over data), open the partitions it lists, open the redo log (cutting a torn tail
//! and reporting it), and replay every record from the control file's replay-start LSN. The
//! replayed state is dirty in the first epoch after the checkpoint, so the next checkpoint makes
//! it durable in the partition files (R1).
//!
//! - this file: the steps of [`recover`], and `create_store` for a new store;
//! - `replay`: the redo records applied to the recovered state (`Replayer`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{Config, RecoveryReport};
use crate::control::{self, ControlData};
use crate::epoch::Epochs;
use crate::error::{Error, IoContext, Result};
use crate::layout::{self, CONTROL_FILE_NAME, CONTROL_TMP_FILE_NAME, PARTITIONS_DIR, WAL_DIR};
use crate::memory::{Budget, Partition, Versioned};
use crate::snapshot::unfinished;
use crate::store::{MetadataMap, Recovered, Store};
use crate::sync::Arc;
use crate::types::PartitionId;
use crate::vfs::{OpenMode, Vfs};
use crate::wal::{Wal, WalConfig};

mod replay;

/// Opens or creates the store and replays the redo log (the module doc's recovery).
pub(crate) fn recover(
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    config: Config,
) -> Result<(Store, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let control = read_or_create_control(&vfs, &dir, &config, &mut report)?;
    let page_size = control.page_size as usize;
    remove_leftovers(&vfs, &dir, &mut report)?;
    let recovered_epoch = control.checkpoint_epoch + 1;
    let partitions_dir = dir.join(PARTITIONS_DIR);
    vfs.create_dir_all(&partitions_dir)
        .ctx("create partitions directory", &partitions_dir)?;
    let mut partitions = open_partitions(&vfs, &partitions_dir, &control)?;
    let mut metadata: MetadataMap = control
        .metadata
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Versioned::new(control.checkpoint_epoch, Some(v.clone())),
            )
        })
        .collect();
    let budget = Budget::new(
        control.page_size,
        config.memory_budget_bytes,
        config.dirty_checkpoint_percent,
        config.dirty_throttle_percent,
    );
    let epochs = Epochs::new(recovered_epoch);
    let wal = open_wal(&vfs, &dir, &config, &control, &mut report)?;

    // Replay.
    let replayer = replay::Replayer::new(
        &vfs,
        &partitions_dir,
        page_size,
        recovered_epoch,
        &mut partitions,
        &mut metadata,
        &budget,
    );
    report.records_replayed = replayer.replay(&wal, control.replay_start_lsn, &epochs)?;

    trim_partitions(&partitions, page_size)?;
    remove_stale_files(&vfs, &partitions_dir, &partitions, &mut report)?;

    report.checkpoint_epoch = control.checkpoint_epoch;
    report.replay_start_lsn = control.replay_start_lsn;
    report.end_lsn = wal.end_lsn();
    if let Some(cut) = &report.wal_tail_cut {
        tracing::warn!(segment = %cut.segment.display(), lsn = cut.lsn, bytes_dropped = cut.bytes_dropped, reason = %cut.reason, "cut torn redo tail");
    }
    tracing::info!(dir = %dir.display(), checkpoint = control.checkpoint_epoch, records = report.records_replayed, "store opened");

    let store = Store::new(Recovered {
        vfs,
        dir,
        config,
        page_size,
        wal,
        epochs,
        partitions,
        metadata,
        budget,
        replay_start_lsn: control.replay_start_lsn,
    });
    Ok((store, report))
}

/// The control file, creating a new store if there is none (and `create_if_missing` allows);
/// its page size must be the configured one.
fn read_or_create_control(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    config: &Config,
    report: &mut RecoveryReport,
) -> Result<ControlData> {
    let control = match control::read(vfs, dir)? {
        Some(control) => control,
        None => {
            create_store(vfs, dir, config)?;
            report.created = true;
            control::read(vfs, dir)?.ok_or_else(|| Error::NotAStore {
                dir: dir.to_path_buf(),
                reason: "control file vanished right after creation".into(),
            })?
        }
    };
    if control.page_size != config.page_size {
        return Err(Error::PageSizeMismatch {
            dir: dir.to_path_buf(),
            on_disk: control.page_size,
            configured: config.page_size,
        });
    }
    Ok(control)
}

/// Removes a control file whose write a crash interrupted, and the temporary directories of
/// snapshots that never published.
fn remove_leftovers(vfs: &Arc<dyn Vfs>, dir: &Path, report: &mut RecoveryReport) -> Result<()> {
    let tmp_control = dir.join(CONTROL_TMP_FILE_NAME);
    if vfs.exists(&tmp_control).ctx("stat", &tmp_control)? {
        vfs.remove_file(&tmp_control)
            .ctx("remove stale control file", &tmp_control)?;
    }
    let unfinished = unfinished::remove_unfinished(vfs, dir)?;
    report.unfinished_snapshots_removed = unfinished.removed;
    report.unfinished_snapshot_cleanups_failed = unfinished.failed;
    Ok(())
}

/// Opens the partitions the control file lists; each file must hold its page count.
fn open_partitions(
    vfs: &Arc<dyn Vfs>,
    partitions_dir: &Path,
    control: &ControlData,
) -> Result<BTreeMap<PartitionId, Arc<Partition>>> {
    let page_size = control.page_size as usize;
    let mut partitions: BTreeMap<PartitionId, Arc<Partition>> = BTreeMap::new();
    for (&id, &page_count) in &control.partitions {
        let path = layout::partition_path_in(partitions_dir, id);
        let file = vfs.open(&path, OpenMode::ReadWrite).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Corrupted {
                    file: path.clone(),
                    page: None,
                    reason: format!(
                        "partition {id} is in the control file but its file is missing"
                    ),
                }
            } else {
                Error::io("open partition file", &path, e)
            }
        })?;
        let len = file.len().ctx("stat partition file", &path)?;
        let needed = page_count as u64 * page_size as u64;
        if len < needed {
            return Err(Error::Corrupted {
                file: path,
                page: Some(len / page_size as u64),
                reason: format!("file has {len} bytes, the control file says {page_count} pages ({needed} bytes)"),
            });
        }
        let partition = Partition::new(id, path, file, control.checkpoint_epoch, page_count);
        partitions.insert(id, Arc::new(partition));
    }
    Ok(partitions)
}

/// Opens the redo log, cutting a torn tail; it must reach the control file's replay start.
fn open_wal(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    config: &Config,
    control: &ControlData,
    report: &mut RecoveryReport,
) -> Result<Wal> {
    let (wal, wal_report) = Wal::open(
        Arc::clone(vfs),
        &dir.join(WAL_DIR),
        WalConfig {
            page_size: control.page_size,
            segment_bytes_max: config.wal_segment_bytes,
            ..WalConfig::default()
        },
        control.replay_start_lsn,
    )?;
    report.wal_tail_cut = wal_report.tail_cut;
    if wal.end_lsn() < control.replay_start_lsn {
        // The control file only names a replay start the log had reached durably; a log ending
        // before it lost synced records (the tail cut could not tell them from a torn tail).
        return Err(Error::Corrupted {
            file: dir.join(WAL_DIR),
            page: None,
            reason: format!(
                "redo log ends at LSN {} but the checkpoint needs it up to {}",
                wal.end_lsn(),
                control.replay_start_lsn
            ),
        });
    }
    Ok(wal)
}

/// Trims pages past the recovered page counts off the partition files.
fn trim_partitions(
    partitions: &BTreeMap<PartitionId, Arc<Partition>>,
    page_size: usize,
) -> Result<()> {
    // Pages past the recovered page count were allocated by records that never became durable;
    // a checkpoint the crash interrupted may have written them. They are not part of the store.
    for partition in partitions.values() {
        let len = partition
            .file
            .len()
            .ctx("stat partition file", &partition.path)?;
        let needed = partition.page_count() as u64 * page_size as u64;
        if len > needed {
            partition
                .file
                .set_len(needed)
                .ctx("trim partition file", &partition.path)?;
            partition
                .file
                .sync_all()
                .ctx("fsync partition file", &partition.path)?;
            tracing::info!(file = %partition.path.display(), bytes = len - needed, "trimmed pages past the recovered page count");
        }
    }
    Ok(())
}

/// Removes the partition files that no durable state references.
fn remove_stale_files(
    vfs: &Arc<dyn Vfs>,
    partitions_dir: &Path,
    partitions: &BTreeMap<PartitionId, Arc<Partition>>,
    report: &mut RecoveryReport,
) -> Result<()> {
    // Files no durable state references: a create whose record was lost, or a drop whose
    // cleanup the crash interrupted.
    for name in vfs
        .read_dir(partitions_dir)
        .ctx("list partitions directory", partitions_dir)?
    {
        let owned =
            layout::parse_partition_file_name(&name).is_some_and(|id| partitions.contains_key(&id));
        if !owned {
            let path = partitions_dir.join(&name);
            vfs.remove_file(&path)
                .ctx("remove stale partition file", &path)?;
            report.stale_files_removed.push(path);
        }
    }
    Ok(())
}

/// Creates an empty store in `dir`, refusing a directory that holds anything else.
fn create_store(vfs: &Arc<dyn Vfs>, dir: &Path, config: &Config) -> Result<()> {
    if vfs.exists(dir).ctx("stat store directory", dir)? {
        if !layout::is_new_store_dir(vfs, dir).ctx("list store directory", dir)? {
            let entries = vfs.read_dir(dir).ctx("list store directory", dir)?;
            return Err(Error::NotAStore {
                dir: dir.to_path_buf(),
                reason: format!(
                    "no {CONTROL_FILE_NAME} file, but the directory holds other files than an interrupted creation leaves ({} entries, e.g. {:?}); refusing to create a store over it",
                    entries.len(),
                    entries.first()
                ),
            });
        }
    } else if !config.create_if_missing {
        return Err(Error::NotAStore {
            dir: dir.to_path_buf(),
            reason: "directory does not exist and create_if_missing is off".into(),
        });
    }
    if !config.create_if_missing {
        return Err(Error::NotAStore {
            dir: dir.to_path_buf(),
            reason: "no control file and create_if_missing is off".into(),
        });
    }
    vfs.create_dir_all(dir).ctx("create store directory", dir)?;
    for sub in [PARTITIONS_DIR, WAL_DIR] {
        let path = dir.join(sub);
        vfs.create_dir_all(&path)
            .ctx("create store directory", &path)?;
    }
    vfs.sync_dir(dir).ctx("fsync store directory", dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        vfs.sync_dir(parent).ctx("fsync parent directory", parent)?;
    }
    control::write(
        vfs,
        dir,
        &ControlData {
            page_size: config.page_size,
            ..ControlData::default()
        },
    )
}
