//! Helpers shared by the `wal_*` integration tests: the real file system under a `FaultFs` (which
//! counts fsyncs and writes, remembers how many bytes of each file an fsync covered, and injects
//! I/O errors, panics and delays), a record stream, and segment file helpers.

#![allow(dead_code)]
// each test file uses a different part
// Test harness code: it runs on std only, never under loom or shuttle.
#![allow(clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltasnap::vfs::{FaultKind, StdFs};
use deltasnap::wal::{Record, Wal, WalConfig, WalOpenReport};
use deltasnap::{Lsn, PageId, PartitionId};
pub use deltasnap_verification::fault_fs::FaultFs;

pub const PAGE_SIZE: u32 = 512;
pub const PAYLOAD_BYTES: usize = PAGE_SIZE as usize - 16;

/// A [`FaultFs`] over the real file system that remembers how many bytes of each file an fsync
/// covered ([`FaultFs::durable_len`]).
pub fn std_fs() -> FaultFs {
    let fs = FaultFs::new(Arc::new(StdFs));
    fs.track_durable_len();
    fs
}

/// The file fsyncs `fs` let through that succeeded.
pub fn file_fsyncs(fs: &FaultFs) -> u64 {
    fs.completed(FaultKind::SyncFile)
}

pub fn small_config(segment_bytes_max: u64) -> WalConfig {
    WalConfig {
        page_size: PAGE_SIZE,
        segment_bytes_max,
        buffer_bytes_max: 4096,
    }
}

pub fn open(vfs: &FaultFs, dir: &Path, config: &WalConfig) -> (Wal, WalOpenReport) {
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
