//! `verify_snapshot` and `restore`: recheck a published snapshot without the store it came from,
//! and turn it into a new store that `Engine::open` starts from at the cut.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::control::{self, ControlData};
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::layout::{self, PARTITIONS_DIR, WAL_DIR};
use crate::snapshot::dirs::create_dir_all_durable;
use crate::snapshot::manifest::{
    Manifest, ManifestPartition, MANIFEST_BYTES_MAX, MANIFEST_FILE_NAME,
};
use crate::sync::Arc;
use crate::types::PartitionId;
use crate::vfs::{OpenMode, StdFs, Vfs};

/// One thing wrong with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file concerned, relative to the snapshot directory.
    pub file: String,
    /// The page index within `file`, when the problem is one page's (a bad crc or index).
    pub page: Option<u32>,
    /// What is wrong, in words (expected and found values where there are any).
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.page {
            Some(page) => write!(f, "{} page {}: {}", self.file, page, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// What `verify_snapshot` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// The manifest, if it parsed.
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// Partition files the manifest lists that were checked.
    pub partitions_checked: usize,
    /// Pages read and checked, over all partitions.
    pub pages_checked: u64,
    /// Every problem found; empty means the snapshot verifies.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the snapshot verifies: its manifest parsed and no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.manifest.is_some()
    }
}

/// Verifies the snapshot in `dir` on the real file system. See [`verify_snapshot_on`]. Reads
/// only: it takes no lock and needs no engine, so it may run on a copy on another machine.
///
/// ```
/// use std::fs::OpenOptions;
/// use std::os::unix::fs::FileExt;
/// use deltasnap::{verify_snapshot, Config, Engine, PartitionId, SnapshotOptions};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path().join("store"), Config::default())?;
/// engine.create_partition(PartitionId(0))?;
/// let page = engine.allocate_page(PartitionId(0))?;
/// engine.write(page, 0, b"checked")?;
/// engine.snapshot(SnapshotOptions::new(dir.path(), "good"))?.wait()?;
///
/// let snapshot = dir.path().join("good");
/// let report = verify_snapshot(&snapshot)?;
/// assert!(report.is_ok());
/// assert_eq!((report.partitions_checked, report.pages_checked), (1, 1));
///
/// // Flip one byte of page 0: the report names the file and the page.
/// let file = OpenOptions::new().write(true).open(snapshot.join("partitions/part-0.dat"))?;
/// file.write_all_at(b"X", 0)?;
/// let report = verify_snapshot(&snapshot)?;
/// assert!(!report.is_ok());
/// assert_eq!(report.problems[0].file, "partitions/part-0.dat");
/// assert_eq!(report.problems[0].page, Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_snapshot(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_snapshot_on(&(Arc::new(StdFs::new()) as Arc<dyn Vfs>), dir.as_ref())
}

/// Rechecks the manifest (its crc32c and the range of every value, format.md §5.2), then every
/// page of the snapshot in `dir` against it: page crc, page index, the crc the manifest recorded,
/// file lengths, missing and unexpected files. Problems are listed in
/// the report (all of them, not just the first); `Err` only when `dir` itself cannot be read.
pub fn verify_snapshot_on(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let manifest_path = dir.join(MANIFEST_FILE_NAME);
    if !vfs.is_dir(dir).ctx("stat snapshot directory", dir)? {
        return Err(Error::InvalidArgument(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let manifest = match read_manifest(vfs, &manifest_path) {
        Ok(manifest) => manifest,
        Err(error) => {
            report.problems.push(Problem {
                file: MANIFEST_FILE_NAME.into(),
                page: None,
                reason: error.to_string(),
            });
            return Ok(report);
        }
    };
    let page_size = manifest.page_size as usize;
    let mut expected_files = BTreeSet::new();
    for partition in &manifest.partitions {
        expected_files.insert(partition.file.clone());
        verify_partition(vfs, dir, partition, page_size, &mut report)?;
    }
    unlisted_files(vfs, dir, &expected_files, &mut report)?;
    report.manifest = Some(manifest);
    Ok(report)
}

/// Checks one partition file of the snapshot in `dir` against its manifest entry, listing the
/// problems in `report`.
fn verify_partition(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    partition: &ManifestPartition,
    page_size: usize,
    report: &mut VerifyReport,
) -> Result<()> {
    let path = dir.join(&partition.file);
    let problem = |page: Option<u32>, reason: String| Problem {
        file: partition.file.clone(),
        page,
        reason,
    };
    let file = match vfs.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) => {
            report
                .problems
                .push(problem(None, format!("cannot open: {e}")));
            return Ok(());
        }
    };
    report.partitions_checked += 1;
    let len = file.len().ctx("stat snapshot file", &path)?;
    let expected_len = partition.page_count as u64 * page_size as u64;
    if len != expected_len {
        report.problems.push(problem(
            None,
            format!(
                "{len} bytes, the manifest says {} pages ({expected_len} bytes)",
                partition.page_count
            ),
        ));
    }
    let mut page = vec![0u8; page_size];
    for index in 0..partition.page_count {
        let offset = index as u64 * page_size as u64;
        if offset + page_size as u64 > len {
            report
                .problems
                .push(problem(Some(index), "missing (file too short)".into()));
            continue;
        }
        file.read_exact_at(&mut page, offset)
            .ctx("read snapshot page", &path)?;
        report.pages_checked += 1;
        match format::verify_page(&page, index, &path) {
            Ok(footer) if footer.crc != partition.page_crcs[index as usize] => {
                report.problems.push(problem(
                    Some(index),
                    format!(
                        "page crc {:#010x} differs from the manifest's {:#010x}",
                        footer.crc, partition.page_crcs[index as usize]
                    ),
                ));
            }
            Ok(_) => {}
            Err(error) => report
                .problems
                .push(problem(Some(index), error.to_string())),
        }
    }
    Ok(())
}

/// Lists the files of the snapshot in `dir` that its manifest does not name.
fn unlisted_files(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    expected_files: &BTreeSet<String>,
    report: &mut VerifyReport,
) -> Result<()> {
    // Files nobody listed.
    let partitions_dir = dir.join(PARTITIONS_DIR);
    if vfs.is_dir(&partitions_dir).ctx("stat", &partitions_dir)? {
        for name in vfs
            .read_dir(&partitions_dir)
            .ctx("list snapshot partitions", &partitions_dir)?
        {
            let relative = format!("{PARTITIONS_DIR}/{name}");
            if !expected_files.contains(&relative) {
                report.problems.push(Problem {
                    file: relative,
                    page: None,
                    reason: "file is not in the manifest".into(),
                });
            }
        }
    }
    for name in vfs.read_dir(dir).ctx("list snapshot directory", dir)? {
        if name != MANIFEST_FILE_NAME && name != PARTITIONS_DIR {
            report.problems.push(Problem {
                file: name,
                page: None,
                reason: "file is not in the manifest".into(),
            });
        }
    }
    Ok(())
}

fn read_manifest(vfs: &Arc<dyn Vfs>, path: &Path) -> Result<Manifest> {
    let file = vfs.open(path, OpenMode::Read).ctx("open manifest", path)?;
    let len = file.len().ctx("stat manifest", path)?;
    if len > MANIFEST_BYTES_MAX {
        return Err(Error::Corrupted {
            file: path.to_path_buf(),
            page: None,
            reason: format!("{len} bytes is too large for a manifest"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read manifest", path)?;
    Manifest::parse(&bytes, path)
}

/// What `restore` made.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The new store's directory, ready for `Engine::open`.
    pub store_dir: PathBuf,
    /// The snapshot's cut epoch: the restored store holds exactly the writes of epochs `<=
    /// cut_epoch` (S1), and its next write gets a later epoch.
    pub cut_epoch: u64,
    /// Partitions restored.
    pub partitions: usize,
    /// Pages restored, over all partitions.
    pub pages: u64,
}

/// Restores the snapshot in `snapshot_dir` into `new_store_dir` on the real file system. See
/// [`restore_on`] for the checks and the durability. Errors: `Error::InvalidSnapshot` if the
/// snapshot does not verify, `Error::InvalidArgument` if `new_store_dir` is not empty.
///
/// ```no_run
/// let report = deltasnap::restore("/backups/nightly", "/data/restored")?;
/// let engine = deltasnap::Engine::open(&report.store_dir, deltasnap::Config::default())?;
/// # Ok::<(), deltasnap::Error>(())
/// ```
///
/// A write after the cut is not in the restored store:
///
/// ```
/// use deltasnap::{restore, Config, Engine, Error, PartitionId, SnapshotOptions};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path().join("store"), Config::default())?;
/// engine.create_partition(PartitionId(0))?;
/// let page = engine.allocate_page(PartitionId(0))?;
/// engine.write(page, 0, b"before")?;
/// engine.metadata_put(b"version", b"1")?;
/// engine.snapshot(SnapshotOptions::new(dir.path(), "cut"))?.wait()?;
/// engine.write(page, 0, b"after!")?;
///
/// let report = restore(dir.path().join("cut"), dir.path().join("restored"))?;
/// assert_eq!((report.partitions, report.pages), (1, 1));
/// let restored = Engine::open(&report.store_dir, Config::default())?;
/// assert_eq!(&restored.read(page)?[..6], b"before");
/// assert_eq!(restored.metadata_get(b"version")?, Some(b"1".to_vec()));
/// assert!(restored.current_epoch() > report.cut_epoch);
///
/// // The target must be empty.
/// let again = restore(dir.path().join("cut"), dir.path().join("restored"));
/// assert!(matches!(again, Err(Error::InvalidArgument(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn restore(
    snapshot_dir: impl AsRef<Path>,
    new_store_dir: impl AsRef<Path>,
) -> Result<RestoreReport> {
    restore_on(
        &(Arc::new(StdFs::new()) as Arc<dyn Vfs>),
        snapshot_dir.as_ref(),
        new_store_dir.as_ref(),
    )
}

/// Verifies the snapshot (its manifest's crc and ranges included: a manifest that fails them is
/// refused, `Error::InvalidSnapshot`), refuses a non-empty target, then writes the partitions
/// and, last, a control file naming the cut, so that `Engine::open(new_store_dir)` starts at the
/// cut. Every directory it creates (the target and its missing parents) is fsynced in its parent.
/// A crash before the control file leaves a directory that `Engine::open` refuses (no control
/// file over data), never a store with half a snapshot.
pub fn restore_on(
    vfs: &Arc<dyn Vfs>,
    snapshot_dir: &Path,
    new_store_dir: &Path,
) -> Result<RestoreReport> {
    let report = verify_snapshot_on(vfs, snapshot_dir)?;
    if !report.is_ok() {
        let listed: Vec<String> = report
            .problems
            .iter()
            .take(5)
            .map(|p| p.to_string())
            .collect();
        return Err(Error::InvalidSnapshot(format!(
            "{} does not verify ({} problems): {}",
            snapshot_dir.display(),
            report.problems.len(),
            listed.join("; ")
        )));
    }
    let manifest = report.manifest.expect("a verified report has its manifest");
    if vfs
        .exists(new_store_dir)
        .ctx("stat restore target", new_store_dir)?
        && !vfs
            .read_dir(new_store_dir)
            .ctx("list restore target", new_store_dir)?
            .is_empty()
    {
        return Err(Error::InvalidArgument(format!(
            "restore target {} is not empty",
            new_store_dir.display()
        )));
    }
    // The target and its missing parents, each entry made durable: a restored store must not
    // vanish at a power cut with a directory nobody fsynced. (The entries inside the target are
    // made durable by the control file's write, which fsyncs it.)
    create_dir_all_durable(vfs, new_store_dir)?;
    let partitions_dir = new_store_dir.join(PARTITIONS_DIR);
    vfs.create_dir_all(&partitions_dir)
        .ctx("create restore target", &partitions_dir)?;
    let wal_dir = new_store_dir.join(WAL_DIR);
    vfs.create_dir_all(&wal_dir)
        .ctx("create restore target", &wal_dir)?;
    let mut pages = 0u64;
    for partition in &manifest.partitions {
        let from = snapshot_dir.join(&partition.file);
        let to = layout::partition_path_in(&partitions_dir, PartitionId(partition.id));
        let source = vfs
            .open(&from, OpenMode::Read)
            .ctx("open snapshot file", &from)?;
        let target = vfs
            .open(&to, OpenMode::CreateNew)
            .ctx("create partition file", &to)?;
        let len = partition.page_count as u64 * manifest.page_size as u64;
        let copied = source
            .copy_to(0, target.as_ref(), 0, len)
            .ctx("copy partition", &to)?;
        if copied != len {
            return Err(Error::Corrupted {
                file: from,
                page: None,
                reason: format!("copied {copied} of {len} bytes"),
            });
        }
        target.sync_all().ctx("fsync partition file", &to)?;
        pages += partition.page_count as u64;
    }
    vfs.sync_dir(&partitions_dir)
        .ctx("fsync partitions directory", &partitions_dir)?;
    vfs.sync_dir(&wal_dir)
        .ctx("fsync wal directory", &wal_dir)?;
    control::write(
        vfs,
        new_store_dir,
        &ControlData {
            page_size: manifest.page_size,
            checkpoint_epoch: manifest.cut_epoch,
            replay_start_lsn: manifest.cut_lsn,
            partitions: manifest
                .partitions
                .iter()
                .map(|p| (PartitionId(p.id), p.page_count))
                .collect(),
            metadata: manifest.metadata_map(),
        },
    )?;
    if let Some(parent) = new_store_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        vfs.sync_dir(parent).ctx("fsync parent directory", parent)?;
    }
    Ok(RestoreReport {
        store_dir: new_store_dir.to_path_buf(),
        cut_epoch: manifest.cut_epoch,
        partitions: manifest.partitions.len(),
        pages,
    })
}
