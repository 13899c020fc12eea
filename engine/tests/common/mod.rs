//! Helpers shared by the `wal_*` integration tests: a `Vfs` over `StdFs` that counts fsyncs,
//! remembers how many bytes of each file an fsync covered, and can inject I/O errors.

#![allow(dead_code)]
// each test file uses a different part
// Test harness code: it runs on std only, never under loom or shuttle.
#![allow(clippy::disallowed_types)]

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deltasnap::vfs::{OpenMode, StdFs, Vfs, VfsFile};
use deltasnap::wal::{Record, Wal, WalConfig, WalOpenReport};
use deltasnap::{Lsn, PageId, PartitionId};

pub const PAGE_SIZE: u32 = 512;
pub const PAYLOAD_BYTES: usize = PAGE_SIZE as usize - 16;

#[derive(Debug, Default)]
pub struct Counters {
    /// `VfsFile::sync_all` calls that returned.
    pub file_fsyncs: AtomicU64,
    /// Bytes of each file (by path) known to be durable: its length when an fsync started.
    pub durable_len: Mutex<HashMap<PathBuf, u64>>,
    /// When set, `sync_all` sleeps this long first (a slow disk, so that syncs overlap).
    pub fsync_delay_us: AtomicU64,
    /// When set, every later `sync_all` fails with EIO.
    pub fail_fsync: AtomicBool,
    /// When set, every later `write_all_at` fails with ENOSPC.
    pub fail_write: AtomicBool,
    /// When set, every later `write_all_at` panics (a broken file system implementation).
    pub panic_write: AtomicBool,
    /// `write_all_at` calls by the name of the thread that made them.
    pub writes_by_thread: Mutex<HashMap<String, u64>>,
    /// When set, `write_all_at` sleeps this long first (a disk that holds writes).
    pub write_delay_us: AtomicU64,
}

/// `StdFs` with counters and faults.
#[derive(Debug, Clone, Default)]
pub struct TestFs {
    pub counters: Arc<Counters>,
}

#[derive(Debug)]
struct TestFile {
    inner: Arc<dyn VfsFile>,
    path: PathBuf,
    counters: Arc<Counters>,
}

impl TestFs {
    pub fn new() -> Self {
        TestFs::default()
    }

    pub fn file_fsyncs(&self) -> u64 {
        self.counters.file_fsyncs.load(Ordering::SeqCst)
    }

    pub fn durable_len(&self, path: &Path) -> u64 {
        *self
            .counters
            .durable_len
            .lock()
            .unwrap()
            .get(path)
            .unwrap_or(&0)
    }
}

impl Vfs for TestFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(TestFile {
            inner: StdFs.open(path, mode)?,
            path: path.to_path_buf(),
            counters: Arc::clone(&self.counters),
        }))
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

impl VfsFile for TestFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.counters.fail_write.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc_enospc()));
        }
        if self.counters.panic_write.load(Ordering::SeqCst) {
            panic!("TestFs: write_all_at panics on request");
        }
        let delay = self.counters.write_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        *self
            .counters
            .writes_by_thread
            .lock()
            .unwrap()
            .entry(thread)
            .or_default() += 1;
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn try_lock_exclusive(&self) -> io::Result<bool> {
        self.inner.try_lock_exclusive()
    }
    fn is_locked_by_other(&self) -> io::Result<bool> {
        self.inner.is_locked_by_other()
    }
    fn sync_all(&self) -> io::Result<()> {
        let delay_us = self.counters.fsync_delay_us.load(Ordering::SeqCst);
        if delay_us > 0 {
            std::thread::sleep(Duration::from_micros(delay_us));
        }
        if self.counters.fail_fsync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        let len_before = self.inner.len()?;
        self.inner.sync_all()?;
        self.counters.file_fsyncs.fetch_add(1, Ordering::SeqCst);
        let mut durable = self.counters.durable_len.lock().unwrap();
        let entry = durable.entry(self.path.clone()).or_insert(0);
        *entry = (*entry).max(len_before);
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn libc_enospc() -> i32 {
    28
}

pub fn small_config(segment_bytes_max: u64) -> WalConfig {
    WalConfig {
        page_size: PAGE_SIZE,
        segment_bytes_max,
        buffer_bytes_max: 4096,
    }
}

pub fn open(vfs: &TestFs, dir: &Path, config: &WalConfig) -> (Wal, WalOpenReport) {
    Wal::open(Arc::new(vfs.clone()), dir, config.clone(), 0).expect("open wal")
}

/// A varied, deterministic record stream: `n` decides kind and contents.
pub fn record(n: u64) -> Record {
    let page = PageId::new(PartitionId((n % 3) as u32), (n % 17) as u32);
    match n % 6 {
        0 => Record::PageImage {
            epoch: n / 10,
            page,
            payload: (0..PAYLOAD_BYTES).map(|i| (i as u64 ^ n) as u8).collect(),
        },
        1 => Record::PageDelta {
            epoch: n / 10,
            page,
            offset: (n % 100) as u32,
            bytes: n.to_le_bytes().to_vec(),
        },
        2 => Record::Allocate {
            epoch: n / 10,
            partition: page.partition,
            page_count: n as u32,
        },
        3 => Record::CreatePartition {
            epoch: n / 10,
            partition: PartitionId(n as u32),
        },
        4 => Record::DropPartition {
            epoch: n / 10,
            partition: PartitionId(n as u32),
        },
        _ => Record::MetadataPut {
            epoch: n / 10,
            key: format!("key-{n}").into_bytes(),
            value: (!n.is_multiple_of(4)).then(|| vec![n as u8; (n % 50) as usize]),
        },
    }
}

/// Every record from `from`, with its LSN.
pub fn replay_all(wal: &Wal, from: Lsn) -> Vec<(Lsn, Record)> {
    let mut out = Vec::new();
    let count = wal
        .replay(from, |lsn, record| {
            out.push((lsn, record));
            Ok(())
        })
        .expect("replay");
    assert_eq!(count as usize, out.len());
    out
}

/// Appends records `0..n` and returns each one's LSN, plus the end LSN.
pub fn append_stream(wal: &Wal, n: u64) -> (Vec<Lsn>, Lsn) {
    let lsns = (0..n)
        .map(|i| wal.append(&record(i)).expect("append"))
        .collect();
    (lsns, wal.end_lsn())
}

/// Segment files in `dir`, sorted.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    paths
}

/// xors `mask` into the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= mask;
    file.write_all_at(&byte, offset).unwrap();
}

/// The file offset in its segment of the record at `lsn`, given the segment's first LSN.
pub fn file_offset(segment_first_lsn: Lsn, lsn: Lsn) -> u64 {
    32 + (lsn - segment_first_lsn)
}

/// The first LSN of a segment, from its file name.
pub fn first_lsn_of(path: &Path) -> Lsn {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}
