//! What every system stores and how a write looks, so that the comparison holds the data size
//! and the write shape constant: `record_count` records of [`RECORD_BYTES`] bytes, a write
//! overwrites one whole record chosen uniformly at random.
//!
//! deltasnap keeps [`RECORDS_PER_PAGE`] records in the payload of a 4 KiB page (4080 bytes), so
//! a store of `data_bytes` has `data_bytes / 4096` pages and `4 × pages` records; SQLite gets
//! the same records as rows of a table, LMDB as values under 8-byte keys.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deltasnap::vfs::{OpenMode, StdFs, Vfs, VfsFile};
use deltasnap::{Config, Engine, JobKind, JobStage, PageId, PartitionId, SnapshotHandle};

use crate::Result;

/// Bytes of one record (a row, an LMDB value, a quarter of a deltasnap page).
pub const RECORD_BYTES: usize = 1000;
/// deltasnap page size used everywhere in the benches.
pub const PAGE_BYTES: u64 = 4096;
/// Records in one deltasnap page payload (4080 bytes).
pub const RECORDS_PER_PAGE: u64 = 4;

/// Parses `64MiB`, `1GiB`, `512KiB`, `4096` (bytes), also `MB`/`GB` as powers of 1024.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB or 1GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    Ok((number * scale as f64) as u64)
}

/// `1073741824` → `1.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Parses `5s`, `500ms`, `2.5s`, `60` (seconds).
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 5s or 500ms"))?;
    Ok(std::time::Duration::from_secs_f64(value * scale))
}

/// The value a write stores: the record number and a write counter up front (so every write
/// changes bytes), a fixed filler after.
pub fn record_value(record: u64, write: u64, out: &mut [u8; RECORD_BYTES]) {
    out[..8].copy_from_slice(&record.to_le_bytes());
    out[8..16].copy_from_slice(&write.to_le_bytes());
    for (i, byte) in out[16..].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31).wrapping_add(record as u8);
    }
}

/// The shape of a deltasnap store holding `data_bytes` of pages over `partitions` partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreShape {
    pub partitions: u32,
    pub pages_per_partition: u32,
}

impl StoreShape {
    pub fn for_bytes(data_bytes: u64, partitions: u32) -> StoreShape {
        let pages = (data_bytes / PAGE_BYTES).max(partitions as u64);
        StoreShape {
            partitions,
            pages_per_partition: (pages / partitions as u64) as u32,
        }
    }

    pub fn pages(self) -> u64 {
        self.partitions as u64 * self.pages_per_partition as u64
    }

    pub fn data_bytes(self) -> u64 {
        self.pages() * PAGE_BYTES
    }

    pub fn records(self) -> u64 {
        self.pages() * RECORDS_PER_PAGE
    }

    /// The page of the `global`-th page (partitions hold contiguous ranges).
    pub fn page(self, global: u64) -> PageId {
        PageId::new(
            PartitionId((global / self.pages_per_partition as u64) as u32),
            (global % self.pages_per_partition as u64) as u32,
        )
    }

    /// Where record `record` lives: its page and byte offset in the payload.
    pub fn record(self, record: u64) -> (PageId, usize) {
        let page = self.page(record / RECORDS_PER_PAGE);
        (page, (record % RECORDS_PER_PAGE) as usize * RECORD_BYTES)
    }
}

/// The engine configuration the benches use: the defaults (4 KiB pages, 256 MiB of page memory,
/// checkpoints at 50 % dirty, every 5 s or 256 MiB of redo) unless a bench says otherwise.
pub fn engine_config() -> Config {
    Config {
        page_size: PAGE_BYTES as u32,
        ..Config::default()
    }
}

/// Creates `shape`'s partitions and pages in a new store at `dir` and fills every record with
/// one 4000-byte write per page; returns the open engine after a checkpoint (all pages on disk).
pub fn populate_store(dir: &Path, shape: StoreShape, config: Config) -> Result<Engine> {
    populate_store_on(Arc::new(StdFs::new()), dir, shape, config)
}

/// [`populate_store`] on `vfs` (a [`HeldGate::vfs`]).
pub fn populate_store_on(
    vfs: Arc<dyn Vfs>,
    dir: &Path,
    shape: StoreShape,
    config: Config,
) -> Result<Engine> {
    let engine = Engine::open_on(vfs, dir, config)?;
    let mut page_bytes = vec![0u8; RECORD_BYTES * RECORDS_PER_PAGE as usize];
    let mut value = [0u8; RECORD_BYTES];
    for p in 0..shape.partitions {
        engine.create_partition(PartitionId(p))?;
    }
    for global in 0..shape.pages() {
        let page = engine.allocate_page(shape.page(global).partition)?;
        debug_assert_eq!(page, shape.page(global));
        for slot in 0..RECORDS_PER_PAGE {
            let record = global * RECORDS_PER_PAGE + slot;
            record_value(record, 0, &mut value);
            let at = slot as usize * RECORD_BYTES;
            page_bytes[at..at + RECORD_BYTES].copy_from_slice(&value);
        }
        engine.write(page, 0, &page_bytes)?;
    }
    engine.sync()?;
    engine.checkpoint()?;
    Ok(engine)
}

/// Overwrites one record of each of the pages `first_page .. first_page + count` (each page once,
/// so the next checkpoint writes exactly `count` pages).
pub fn dirty_pages(engine: &Engine, shape: StoreShape, first_page: u64, count: u64) -> Result<()> {
    let mut value = [0u8; RECORD_BYTES];
    for global in first_page..first_page + count {
        let page = shape.page(global % shape.pages());
        record_value(global, 1, &mut value);
        engine.write(page, 0, &value)?;
    }
    Ok(())
}

/// Holds a snapshot's copier before its first chunk until released, so a bench can place
/// checkpoints between the cut and the copy (DESIGN §4, race order "S ends before the copy is
/// done"). The engine has no such hook outside test builds, so this is a file layer over
/// [`StdFs`] (open the store with [`HeldGate::vfs`]): while the gate is held, the creation of a
/// snapshot's partition copy (a new `part-<id>.dat` outside the store's directory, the copier's
/// first step for each partition) waits for [`HeldGate::release`]. Every other call, and every
/// operation on an open file, goes straight to [`StdFs`]: the store's I/O costs what it costs
/// without the gate.
#[derive(Debug, Clone)]
pub struct HeldGate {
    store: PathBuf,
    held: Arc<(Mutex<bool>, Condvar)>,
}

impl HeldGate {
    /// A released gate for the store in `store`.
    pub fn new(store: &Path) -> HeldGate {
        HeldGate {
            store: store.to_path_buf(),
            held: Arc::default(),
        }
    }

    /// The file layer to open the store on.
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// Holds the copier of the next snapshots until [`HeldGate::release`].
    pub fn hold(&self) {
        *self.held.0.lock().expect("gate poisoned") = true;
    }

    pub fn release(&self) {
        let (lock, changed) = &*self.held;
        *lock.lock().expect("gate poisoned") = false;
        changed.notify_all();
    }

    fn is_partition_copy(&self, path: &Path, mode: OpenMode) -> bool {
        mode == OpenMode::CreateNew
            && !path.starts_with(&self.store)
            && path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("part-") && name.ends_with(".dat"))
    }
}

impl Vfs for HeldGate {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        if self.is_partition_copy(path, mode) {
            let (lock, changed) = &*self.held;
            let mut held = lock.lock().expect("gate poisoned");
            while *held {
                held = changed.wait(held).expect("gate poisoned");
            }
        }
        StdFs.open(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.read_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(path)
    }
    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        StdFs.is_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
}

/// Waits until the snapshot's cut is taken; returns the cut epoch.
pub fn wait_for_cut(handle: &SnapshotHandle) -> Result<u64> {
    loop {
        let progress = handle.progress();
        if let Some(epoch) = progress.cut_epoch {
            return Ok(epoch);
        }
        if handle.is_finished() {
            return Err("the snapshot ended before its cut".into());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Waits until `stage` (or a later one) is seen; returns when it was first seen.
pub fn wait_for_stage(handle: &SnapshotHandle, stage: JobStage) -> Instant {
    loop {
        let now = handle.progress().stage;
        if now == stage || stage_order(now) > stage_order(stage) || handle.is_finished() {
            return Instant::now();
        }
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

fn stage_order(stage: JobStage) -> u8 {
    match stage {
        JobStage::Waiting => 0,
        JobStage::Cut => 1,
        JobStage::Writing => 2,
        JobStage::Copying => 3,
        JobStage::Merging => 4,
        JobStage::Publishing => 5,
        JobStage::Cleanup => 6,
        JobStage::Complete => 7,
        JobStage::Failed => 8,
    }
}

/// The duration the engine measured for the checkpoint of `epoch`, once it ended.
pub fn checkpoint_duration(engine: &Engine, epoch: u64) -> Duration {
    loop {
        let done = engine.jobs().into_iter().find_map(|job| {
            (job.kind == JobKind::Checkpoint && job.epoch == Some(epoch))
                .then_some(job.duration)
                .flatten()
        });
        if let Some(duration) = done {
            return duration;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert!(parse_bytes("1 parsec").is_err());
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("2s"), Ok(std::time::Duration::from_secs(2)));
    }

    #[test]
    fn records_map_into_pages() {
        let shape = StoreShape::for_bytes(64 << 20, 4);
        assert_eq!(shape.pages(), 16384);
        assert_eq!(shape.records(), 65536);
        let (page, offset) = shape.record(shape.records() - 1);
        assert_eq!(page, PageId::new(PartitionId(3), 4095));
        assert_eq!(offset, 3000);
        assert!(offset + RECORD_BYTES <= deltasnap::format::payload_size(PAGE_BYTES as usize));
    }
}
