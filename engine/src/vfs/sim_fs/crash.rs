//! A power cut and restart (module doc, "Crash"): unsynced changes dropped, kept or torn.

use std::path::{Path, PathBuf};

use super::state::{write_bytes, FileInode, InodeId, UnsyncedChange, SECTOR_BYTES};

/// What [`SimFs::crash`](crate::vfs::SimFs::crash) did to the changes that were not durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced writes that vanished.
    pub writes_dropped: u64,
    /// Unsynced writes that reached the disk whole.
    pub writes_kept: u64,
    /// Unsynced writes of which a sector-aligned prefix reached the disk.
    pub writes_torn: u64,
    /// Unsynced `set_len`s that vanished.
    pub set_lens_dropped: u64,
    /// Unsynced `set_len`s that reached the disk.
    pub set_lens_kept: u64,
    /// Inodes (files and directories) freed because no durable entry reached them.
    pub inodes_freed: u64,
}

/// An inode to visit in the crash walk: its id, its path, and the entry (parent, name) that
/// reached it (`None` for a root).
pub(super) type CrashVisit = (InodeId, PathBuf, Option<(InodeId, String)>);

/// splitmix64: a tiny, well-mixed, seedable generator, so a crash is reproducible from its seed
/// without a dependency.
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` is small, so the modulo bias is negligible.
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }
}

/// Replays a file's unsynced changes over its durable bytes, each dropped, kept or torn by `rng`.
pub(super) fn settle_file(
    file: &mut FileInode,
    path: &Path,
    rng: &mut SplitMix64,
    report: &mut CrashReport,
) {
    let mut bytes = std::mem::take(&mut file.durable);
    for change in file.unsynced.drain(..) {
        match change {
            UnsyncedChange::Write {
                offset,
                bytes: data,
            } => {
                let end = offset + data.len() as u64;
                // Sector boundaries strictly inside the write: the places it can tear.
                let boundary_first = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
                let boundary_count = if boundary_first < end {
                    (end - 1 - boundary_first) / SECTOR_BYTES + 1
                } else {
                    0
                };
                let choices = if boundary_count > 0 { 3 } else { 2 };
                let kept_bytes = match rng.below(choices) {
                    0 => {
                        report.writes_dropped += 1;
                        0
                    }
                    1 => {
                        report.writes_kept += 1;
                        data.len() as u64
                    }
                    _ => {
                        report.writes_torn += 1;
                        boundary_first + rng.below(boundary_count) * SECTOR_BYTES - offset
                    }
                };
                tracing::debug!(
                    path = %path.display(),
                    offset,
                    len = data.len(),
                    kept_bytes,
                    "simfs: crash settles an unsynced write"
                );
                write_bytes(&mut bytes, offset, &data[..kept_bytes as usize]);
            }
            UnsyncedChange::SetLen { len } => {
                let kept = rng.below(2) == 1;
                if kept {
                    report.set_lens_kept += 1;
                    bytes.resize(len as usize, 0);
                } else {
                    report.set_lens_dropped += 1;
                }
                tracing::debug!(path = %path.display(), len, kept, "simfs: crash settles an unsynced set_len");
            }
        }
    }
    file.durable = bytes.clone();
    file.current = bytes;
}
