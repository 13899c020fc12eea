//! The delta file (format.md §5.1): page images the write hook captured, appended in capture
//! order, each with its page index and a crc binding the index to the page's own footer.
//!
//! The hook runs in the checkpointer, once for every page a checkpoint writes while the snapshot
//! captures, so an append must be cheap (BENCHMARKS.md, hot spot 3: one `pwrite` per captured page,
//! each extending the file, plus a second crc32c over the already sealed page and a fresh `Vec`,
//! cost about as much as the checkpoint's own page write). Appends therefore go to an in-memory
//! buffer of whole entries, at most [`BUFFER_BYTES_MAX`] (at least one entry), which is written
//! with one positional write at its place in the file:
//! - by [`DeltaFile::append`] when the buffer is full,
//! - by [`DeltaFile::flush`], which the snapshot listener calls at the end of every checkpoint (in
//!   the checkpointer, so that a write error fails the snapshot at the same point as before the
//!   buffering, never the checkpoint), and which also frees the buffer between checkpoints,
//! - by [`DeltaFile::reader`] before the merge reads the file back (the merge, S4: the hook is
//!   closed, so nothing is appended meanwhile).
//!
//! The merge reads a delta back the same way it was written: in batches of whole entries of at
//! most [`BUFFER_BYTES_MAX`] bytes, handed over in capture order. So neither side ever holds more
//! than one buffer of a partition's delta, however large the delta grows (under
//! `DeltaPolicy::Full` it can approach the partition's size).
//!
//! A failed write keeps the buffer and the count of entries in the file unchanged: the file's
//! bytes past that count are unknown, and a retry writes the same bytes at the same offset. The
//! caller fails the snapshot on any error anyway. Nothing fsyncs a delta: it lives in the
//! snapshot's temporary directory and is read back by the same process.

use std::path::{Path, PathBuf};

use crate::bugs::{self, Bug};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, Reader};
use crate::sync::Arc;
use crate::types::{Epoch, PartitionId};
use crate::vfs::{OpenMode, Vfs, VfsFile};

const MAGIC: [u8; 8] = *b"DSDELTA\x01";
const VERSION: u32 = 2;
const HEADER_CRC_OFFSET: usize = 28;
pub(crate) const HEADER_SIZE: usize = HEADER_CRC_OFFSET + 4;
const ENTRY_INDEX_SIZE: usize = 4;
const ENTRY_CRC_SIZE: usize = 4;
const ENTRY_HEADER_SIZE: usize = ENTRY_INDEX_SIZE + ENTRY_CRC_SIZE;
/// The last bytes of a sealed page: its footer crc (format.md §2).
const PAGE_CRC_SIZE: usize = format::FOOTER_CRC_SIZE;

/// Bytes of entries buffered in memory per delta file before they are written (rounded down to
/// whole entries, at least one). Bounds the hook's memory to this much per partition that has
/// captures in the running checkpoint.
pub(crate) const BUFFER_BYTES_MAX: usize = 1 << 20;

/// The bound in force: [`BUFFER_BYTES_MAX`], or in test and checker builds a smaller one a
/// checker set (`bugs::set_merge_buffer_bytes_max`), so that its small stores fill batches.
pub(crate) fn buffer_bytes_max() -> usize {
    #[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
    if let Some(bytes) = crate::bugs::merge_buffer_bytes_max() {
        return usize::try_from(bytes).unwrap_or(BUFFER_BYTES_MAX);
    }
    BUFFER_BYTES_MAX
}

/// An open delta file being appended to by the write hook.
#[derive(Debug)]
pub(crate) struct DeltaFile {
    pub(crate) path: PathBuf,
    file: Arc<dyn VfsFile>,
    page_size: usize,
    /// Entries written to the file; the buffered ones follow them.
    entries_written: u64,
    /// Whole entries not written yet, back to back as in the file; at most
    /// `buffer_entries_max` of them.
    buffer: Vec<u8>,
    buffer_entries_max: usize,
}

/// The entry crc of format.md §5.1: over the index and the sealed page's footer crc.
fn entry_crc(index: u32, page: &[u8]) -> u32 {
    let page_crc = &page[page.len() - PAGE_CRC_SIZE..];
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), page_crc)
}

impl DeltaFile {
    /// Creates an empty delta file for `partition` of a snapshot cut at `cut_epoch`.
    pub(crate) fn create(
        vfs: &Arc<dyn Vfs>,
        path: &Path,
        page_size: u32,
        partition: PartitionId,
        cut_epoch: Epoch,
    ) -> Result<DeltaFile> {
        let file = vfs
            .open(path, OpenMode::CreateNew)
            .ctx("create delta file", path)?;
        let mut header = Vec::with_capacity(HEADER_SIZE);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&page_size.to_le_bytes());
        header.extend_from_slice(&partition.0.to_le_bytes());
        header.extend_from_slice(&cut_epoch.to_le_bytes());
        let crc = crc32c::crc32c(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(header.len(), HEADER_SIZE);
        file.write_all_at(&header, 0)
            .ctx("write delta header", path)?;
        let entry_size = ENTRY_HEADER_SIZE + page_size as usize;
        Ok(DeltaFile {
            path: path.to_path_buf(),
            file,
            page_size: page_size as usize,
            entries_written: 0,
            buffer: Vec::new(),
            buffer_entries_max: (buffer_bytes_max() / entry_size).max(1),
        })
    }

    fn entry_size(&self) -> usize {
        ENTRY_HEADER_SIZE + self.page_size
    }

    fn entries_buffered(&self) -> usize {
        self.buffer.len() / self.entry_size()
    }

    /// Entries appended so far, written or buffered.
    #[cfg(test)]
    fn entries(&self) -> u64 {
        self.entries_written + self.entries_buffered() as u64
    }

    /// Appends the sealed `page` (its footer verifies as page `index`) as page `index`. Writes
    /// the buffered entries first if the buffer is full; an error of that write is returned and
    /// `page` is not appended.
    pub(crate) fn append(&mut self, index: u32, page: &[u8]) -> Result<()> {
        debug_assert_eq!(page.len(), self.page_size);
        debug_assert!(
            format::verify_page(page, index, &self.path).is_ok(),
            "page {index} appended to {} unsealed",
            self.path.display()
        );
        if self.entries_buffered() == self.buffer_entries_max {
            self.write_buffer()?;
        }
        if self.buffer.capacity() == 0 {
            self.buffer
                .reserve_exact(self.buffer_entries_max * self.entry_size());
        }
        self.buffer.extend_from_slice(&index.to_le_bytes());
        self.buffer
            .extend_from_slice(&entry_crc(index, page).to_le_bytes());
        self.buffer.extend_from_slice(page);
        debug_assert!(self.entries_buffered() <= self.buffer_entries_max);
        Ok(())
    }

    /// Writes the buffered entries at their place in the file (no fsync) and frees the buffer.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.write_buffer()?;
        self.buffer = Vec::new();
        Ok(())
    }

    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let offset = HEADER_SIZE as u64 + self.entries_written * self.entry_size() as u64;
        self.file
            .write_all_at(&self.buffer, offset)
            .ctx("append to delta file", &self.path)?;
        self.entries_written += self.entries_buffered() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is buffered and returns a reader of the entries appended so far (the merge,
    /// S4: the hook is closed, so nothing is appended after this). The reader shares the file
    /// handle: it needs no lock of the caller's.
    pub(crate) fn reader(&mut self) -> Result<DeltaReader> {
        self.flush()?;
        Ok(DeltaReader {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            page_size: self.page_size,
            entries: self.entries_written,
        })
    }

    /// Every entry, sorted by page index; a page index appearing twice is corruption.
    #[cfg(test)]
    pub(crate) fn read_sorted(&mut self) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut out = Vec::new();
        self.reader()?.for_each_entry(|index, page| {
            out.push((index, page.to_vec()));
            Ok(())
        })?;
        out.sort_by_key(|(index, _)| *index);
        if let Some(pair) = out.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Corrupted {
                file: self.path.clone(),
                page: Some(pair[0].0 as u64),
                reason: "page captured twice".into(),
            });
        }
        Ok(out)
    }
}

/// What reading a delta back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeltaScan {
    pub(crate) entries: u64,
    /// The largest read buffer held at once, in bytes.
    pub(crate) buffer_bytes_peak: u64,
}

/// The entries of a delta file, to be read back once appending ended.
#[derive(Debug)]
pub(crate) struct DeltaReader {
    file: Arc<dyn VfsFile>,
    path: PathBuf,
    page_size: usize,
    entries: u64,
}

impl DeltaReader {
    /// Reads every entry back in file (capture) order, in batches of at most
    /// [`BUFFER_BYTES_MAX`] bytes (at least one entry), checks each and hands it to `visit` as
    /// `(page index, sealed page)`. Only one batch is in memory at a time, so a delta of any
    /// size is read in bounded memory.
    pub(crate) fn for_each_entry(
        &self,
        visit: impl FnMut(u32, &[u8]) -> Result<()>,
    ) -> Result<DeltaScan> {
        for_each_entry(
            self.file.as_ref(),
            &self.path,
            self.page_size,
            self.entries,
            visit,
        )
    }
}

fn for_each_entry(
    file: &dyn VfsFile,
    path: &Path,
    page_size: usize,
    entries: u64,
    mut visit: impl FnMut(u32, &[u8]) -> Result<()>,
) -> Result<DeltaScan> {
    let corrupted = |page: Option<u64>, reason: String| Error::Corrupted {
        file: path.to_path_buf(),
        page,
        reason,
    };
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut header, 0)
        .ctx("read delta header", path)?;
    if header[..8] != MAGIC {
        return Err(corrupted(None, "bad delta magic".into()));
    }
    let stored = u32::from_le_bytes(header[HEADER_CRC_OFFSET..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[..HEADER_CRC_OFFSET]) != stored {
        return Err(corrupted(None, "delta header crc mismatch".into()));
    }
    let mut fields = Reader::new(&header[8..HEADER_CRC_OFFSET]);
    let version = fields.u32().map_err(|e| corrupted(None, e))?;
    let header_page_size = fields.u32().map_err(|e| corrupted(None, e))? as usize;
    if version != VERSION || header_page_size != page_size {
        return Err(corrupted(
            None,
            format!("delta version {version} page size {header_page_size}, expected {VERSION} and {page_size}"),
        ));
    }
    let entry_size = ENTRY_HEADER_SIZE + page_size;
    // Read in chunks of whole entries, as many as the append buffer holds: one read per entry
    // was a measurable part of the merge, and one read of the whole delta is unbounded memory.
    let entries_per_read = if bugs::active(Bug::MergeLoadsWholeDelta) {
        entries.max(1)
    } else {
        (buffer_bytes_max() / entry_size).max(1) as u64
    };
    let buffer_bytes = usize::try_from(entries_per_read.min(entries))
        .ok()
        .and_then(|n| n.checked_mul(entry_size))
        .ok_or_else(|| {
            corrupted(
                None,
                format!("{entries} delta entries do not fit in memory"),
            )
        })?;
    let mut chunk = vec![0u8; buffer_bytes];
    let mut first = 0u64;
    while first < entries {
        let count = entries_per_read.min(entries - first);
        let bytes = &mut chunk[..count as usize * entry_size];
        file.read_exact_at(bytes, HEADER_SIZE as u64 + first * entry_size as u64)
            .ctx("read delta entry", path)?;
        for (offset, entry) in bytes.chunks_exact(entry_size).enumerate() {
            let n = first + offset as u64;
            let index = u32::from_le_bytes(entry[..ENTRY_INDEX_SIZE].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(
                entry[ENTRY_INDEX_SIZE..ENTRY_HEADER_SIZE]
                    .try_into()
                    .expect("4 bytes"),
            );
            let page = &entry[ENTRY_HEADER_SIZE..];
            if entry_crc(index, page) != crc {
                return Err(corrupted(
                    Some(index as u64),
                    format!("delta entry {n} crc mismatch"),
                ));
            }
            // The entry crc does not cover the page's bytes; its footer does.
            format::verify_page(page, index, path).map_err(|error| {
                corrupted(
                    Some(index as u64),
                    format!("delta entry {n} holds a bad page: {error}"),
                )
            })?;
            visit(index, page)?;
        }
        first += count;
    }
    Ok(DeltaScan {
        entries,
        buffer_bytes_peak: chunk.capacity() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{FaultError, FaultKind, FaultPlan, SimFs};

    const PAGE_SIZE: u32 = 512;

    fn sealed(index: u32) -> Vec<u8> {
        let mut page = vec![index as u8; PAGE_SIZE as usize];
        format::seal_page(&mut page, index, 9);
        page
    }

    fn create(vfs: &Arc<dyn Vfs>) -> DeltaFile {
        vfs.create_dir_all(Path::new("/d")).unwrap();
        DeltaFile::create(vfs, Path::new("/d/x.delta"), PAGE_SIZE, PartitionId(1), 3).unwrap()
    }

    fn file_len(sim: &SimFs) -> u64 {
        sim.read_current(Path::new("/d/x.delta")).unwrap().len() as u64
    }

    #[test]
    fn entries_come_back_sorted_and_checked() {
        let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
        let mut delta = create(&vfs);
        for index in [5u32, 1, 3] {
            delta.append(index, &sealed(index)).unwrap();
        }
        let entries = delta.read_sorted().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(entries[2].1, sealed(5));
    }

    #[test]
    fn appends_reach_the_file_when_the_buffer_is_full_or_flushed() {
        let sim = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
        let mut delta = create(&vfs);
        let entry_size = (ENTRY_HEADER_SIZE + PAGE_SIZE as usize) as u64;
        let full = (BUFFER_BYTES_MAX as u64 / entry_size) as u32;
        for index in 0..full {
            delta.append(index, &sealed(index)).unwrap();
        }
        assert!(delta.buffer.len() <= BUFFER_BYTES_MAX);
        assert_eq!(
            file_len(&sim),
            HEADER_SIZE as u64,
            "a full buffer is not written yet"
        );
        delta.append(full, &sealed(full)).unwrap();
        assert_eq!(
            file_len(&sim),
            HEADER_SIZE as u64 + full as u64 * entry_size
        );
        assert_eq!(delta.entries(), full as u64 + 1);
        delta.flush().unwrap();
        assert_eq!(delta.buffer.capacity(), 0, "flush frees the buffer");
        assert_eq!(
            file_len(&sim),
            HEADER_SIZE as u64 + (full as u64 + 1) * entry_size
        );
        let entries = delta.read_sorted().unwrap();
        assert_eq!(entries.len(), full as usize + 1);
        assert!(entries
            .iter()
            .enumerate()
            .all(|(n, (index, page))| *index == n as u32 && *page == sealed(*index)));
    }

    #[test]
    fn a_failed_buffer_write_fails_the_append_and_loses_nothing_on_retry() {
        let sim = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
        let mut delta = create(&vfs);
        delta.append(0, &sealed(0)).unwrap();
        delta.append(1, &sealed(1)).unwrap();
        sim.set_fault_plan(
            FaultPlan::fail_at(sim.op_count(), FaultError::Enospc).only(&[FaultKind::Write]),
        );
        let error = delta.flush().unwrap_err();
        assert!(
            error.to_string().contains("append to delta file"),
            "{error}"
        );
        assert_eq!(delta.entries(), 2, "the buffered entries are kept");
        delta.append(2, &sealed(2)).unwrap();
        let entries = delta.read_sorted().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn a_flipped_bit_in_an_entry_is_corruption() {
        let sim = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
        // In the page's payload (covered by its footer crc), in the entry's index and in its crc.
        for offset in [100u64, 0, 5] {
            vfs.remove_dir_all(Path::new("/d")).ok();
            let mut delta = create(&vfs);
            delta.append(0, &sealed(0)).unwrap();
            delta.flush().unwrap();
            sim.flip_bit(Path::new("/d/x.delta"), HEADER_SIZE as u64 + offset, 2)
                .unwrap();
            assert!(
                matches!(delta.read_sorted(), Err(Error::Corrupted { .. })),
                "flip at entry byte {offset}"
            );
        }
    }
}
