//! The delta file (format.md §5.1): page images the write hook captured, appended in capture
//! order, each with its page index and a crc over both.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, Reader};
use crate::sync::Arc;
use crate::types::{Epoch, PartitionId};
use crate::vfs::{OpenMode, Vfs, VfsFile};

const MAGIC: [u8; 8] = *b"DSDELTA\x01";
const VERSION: u32 = 1;
const HEADER_CRC_OFFSET: usize = 28;
pub(crate) const HEADER_SIZE: usize = HEADER_CRC_OFFSET + 4;
const ENTRY_HEADER_SIZE: usize = 8;

/// An open delta file being appended to by the write hook.
#[derive(Debug)]
pub(crate) struct DeltaFile {
    pub(crate) path: PathBuf,
    file: Arc<dyn VfsFile>,
    page_size: usize,
    entries: u64,
}

fn entry_crc(index: u32, page: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), page)
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
        Ok(DeltaFile {
            path: path.to_path_buf(),
            file,
            page_size: page_size as usize,
            entries: 0,
        })
    }

    /// Appends the sealed `page` as page `index`.
    pub(crate) fn append(&mut self, index: u32, page: &[u8]) -> Result<()> {
        debug_assert_eq!(page.len(), self.page_size);
        let mut entry = Vec::with_capacity(ENTRY_HEADER_SIZE + page.len());
        entry.extend_from_slice(&index.to_le_bytes());
        entry.extend_from_slice(&entry_crc(index, page).to_le_bytes());
        entry.extend_from_slice(page);
        let offset =
            HEADER_SIZE as u64 + self.entries * (ENTRY_HEADER_SIZE + self.page_size) as u64;
        self.file
            .write_all_at(&entry, offset)
            .ctx("append to delta file", &self.path)?;
        self.entries += 1;
        Ok(())
    }

    /// Reads every entry back, checks each, and returns them sorted by page index. An index may
    /// appear once only (the protocol's bitset guarantees it); a second one is corruption.
    pub(crate) fn read_sorted(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        read_sorted(self.file.as_ref(), &self.path, self.page_size, self.entries)
    }
}

fn read_sorted(
    file: &dyn VfsFile,
    path: &Path,
    page_size: usize,
    entries: u64,
) -> Result<Vec<(u32, Vec<u8>)>> {
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
    let mut out = Vec::with_capacity(entries as usize);
    let mut buffer = vec![0u8; entry_size];
    for n in 0..entries {
        let offset = HEADER_SIZE as u64 + n * entry_size as u64;
        file.read_exact_at(&mut buffer, offset)
            .ctx("read delta entry", path)?;
        let index = u32::from_le_bytes(buffer[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(buffer[4..8].try_into().expect("4 bytes"));
        let page = &buffer[ENTRY_HEADER_SIZE..];
        if entry_crc(index, page) != crc {
            return Err(corrupted(
                Some(index as u64),
                format!("delta entry {n} crc mismatch"),
            ));
        }
        format::verify_page(page, index, path)?;
        out.push((index, page.to_vec()));
    }
    out.sort_by_key(|(index, _)| *index);
    if let Some(pair) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(corrupted(
            Some(pair[0].0 as u64),
            "page captured twice".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::SimFs;

    #[test]
    fn entries_come_back_sorted_and_checked() {
        let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
        vfs.create_dir_all(Path::new("/d")).unwrap();
        let mut delta =
            DeltaFile::create(&vfs, Path::new("/d/x.delta"), 512, PartitionId(1), 3).unwrap();
        for index in [5u32, 1, 3] {
            let mut page = vec![index as u8; 512];
            format::seal_page(&mut page, index, 9);
            delta.append(index, &page).unwrap();
        }
        let entries = delta.read_sorted().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert_eq!(entries[2].1[0], 5);
    }

    #[test]
    fn a_flipped_bit_in_an_entry_is_corruption() {
        let sim = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
        vfs.create_dir_all(Path::new("/d")).unwrap();
        let mut delta =
            DeltaFile::create(&vfs, Path::new("/d/x.delta"), 512, PartitionId(1), 3).unwrap();
        let mut page = vec![7u8; 512];
        format::seal_page(&mut page, 0, 1);
        delta.append(0, &page).unwrap();
        sim.flip_bit(Path::new("/d/x.delta"), HEADER_SIZE as u64 + 100, 2)
            .unwrap();
        assert!(matches!(delta.read_sorted(), Err(Error::Corrupted { .. })));
    }
}
