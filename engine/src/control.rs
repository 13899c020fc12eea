//! The control file (`CONTROL`, format.md §4): the last completed checkpoint, its replay-start LSN,
//! the partitions and their page counts, and the metadata map, all as of the checkpoint's cut.
//!
//! Durability (C3 and R1 rest on this order):
//! 1. write `CONTROL.tmp` and fsync it;
//! 2. rename it over `CONTROL`;
//! 3. fsync the store directory.
//!
//! Only after step 3 may redo segments before the new replay-start LSN be deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::Reader;
use crate::layout::{CONTROL_FILE_NAME, CONTROL_TMP_FILE_NAME};
use crate::sync::Arc;
use crate::types::{Epoch, Lsn, PartitionId};
use crate::vfs::{OpenMode, Vfs};

const MAGIC: [u8; 8] = *b"DSCTRL\0\x01";
const VERSION: u32 = 1;
const MAGIC_SIZE: usize = 8;
const VERSION_OFFSET: usize = MAGIC_SIZE;
const PAGE_SIZE_OFFSET: usize = VERSION_OFFSET + 4;
const BODY_LEN_OFFSET: usize = PAGE_SIZE_OFFSET + 4;
const BODY_OFFSET: usize = BODY_LEN_OFFSET + 8;
const CRC_SIZE: usize = 4;
/// No legitimate control file comes near this; a larger length is corruption, not an allocation.
const BODY_LEN_MAX: u64 = 1 << 30;

/// The content of a control file: the store as of its last completed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlData {
    /// The store's page size in bytes.
    pub page_size: u32,
    /// The last completed checkpoint (0: the empty store).
    pub checkpoint_epoch: Epoch,
    /// Recovery replays the redo log from this LSN.
    pub replay_start_lsn: Lsn,
    /// Partition ids and their logical page counts at the cut.
    pub partitions: BTreeMap<PartitionId, u32>,
    /// The metadata map at the cut.
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ControlData {
    /// The bytes of a control file holding `self` (format.md §4): magic, version, page size, body
    /// length, body, and a crc32c over everything before it. [`ControlData::decode`] reads them
    /// back unchanged.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.checkpoint_epoch.to_le_bytes());
        body.extend_from_slice(&self.replay_start_lsn.to_le_bytes());
        body.extend_from_slice(&(self.partitions.len() as u32).to_le_bytes());
        for (id, page_count) in &self.partitions {
            body.extend_from_slice(&id.0.to_le_bytes());
            body.extend_from_slice(&page_count.to_le_bytes());
        }
        body.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (key, value) in &self.metadata {
            body.extend_from_slice(&(key.len() as u32).to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        let mut out = Vec::with_capacity(BODY_OFFSET + body.len() + CRC_SIZE);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the bytes of a control file; `file` only names it in errors. Never panics on any
    /// input: a wrong magic or version, a length that disagrees with the file, a duplicate
    /// partition or trailing bytes is `Error::Corrupted`, a bad crc `Error::ChecksumMismatch`.
    ///
    /// ```
    /// use std::path::Path;
    /// use deltasnap::ControlData;
    ///
    /// let data = ControlData { page_size: 4096, ..ControlData::default() };
    /// let bytes = data.encode();
    /// assert_eq!(ControlData::decode(&bytes, Path::new("CONTROL"))?, data);
    /// assert!(ControlData::decode(&bytes[..bytes.len() - 1], Path::new("CONTROL")).is_err());
    /// # Ok::<(), deltasnap::Error>(())
    /// ```
    pub fn decode(bytes: &[u8], file: &Path) -> Result<ControlData> {
        let corrupted = |reason: String| Error::Corrupted {
            file: file.to_path_buf(),
            page: None,
            reason,
        };
        if bytes.len() < BODY_OFFSET + CRC_SIZE {
            return Err(corrupted(format!("{} bytes is too short", bytes.len())));
        }
        if bytes[..MAGIC_SIZE] != MAGIC {
            return Err(corrupted("bad magic".into()));
        }
        let mut header = Reader::new(&bytes[VERSION_OFFSET..BODY_OFFSET]);
        let version = header.u32().map_err(corrupted)?;
        let page_size = header.u32().map_err(corrupted)?;
        let body_len = header.u64().map_err(corrupted)?;
        if version != VERSION {
            return Err(corrupted(format!("unsupported version {version}")));
        }
        if body_len > BODY_LEN_MAX
            || BODY_OFFSET as u64 + body_len + CRC_SIZE as u64 != bytes.len() as u64
        {
            return Err(corrupted(format!(
                "body length {body_len} does not match file length {}",
                bytes.len()
            )));
        }
        let crc_offset = BODY_OFFSET + body_len as usize;
        let expected = u32::from_le_bytes(bytes[crc_offset..].try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(&bytes[..crc_offset]);
        if expected != actual {
            return Err(Error::ChecksumMismatch {
                file: file.to_path_buf(),
                page: None,
                expected,
                actual,
            });
        }
        let mut body = Reader::new(&bytes[BODY_OFFSET..crc_offset]);
        let mut decode_body = || -> std::result::Result<ControlData, String> {
            let checkpoint_epoch = body.u64()?;
            let replay_start_lsn = body.u64()?;
            let partition_count = body.u32()?;
            let mut partitions = BTreeMap::new();
            for _ in 0..partition_count {
                let id = PartitionId(body.u32()?);
                let page_count = body.u32()?;
                if partitions.insert(id, page_count).is_some() {
                    return Err(format!("partition {id} listed twice"));
                }
            }
            let metadata_count = body.u32()?;
            let mut metadata = BTreeMap::new();
            for _ in 0..metadata_count {
                let key_len = body.u32()? as usize;
                let key = body.take(key_len)?.to_vec();
                let value_len = body.u32()? as usize;
                let value = body.take(value_len)?.to_vec();
                metadata.insert(key, value);
            }
            if body.remaining() != 0 {
                return Err(format!("{} trailing bytes", body.remaining()));
            }
            Ok(ControlData {
                page_size,
                checkpoint_epoch,
                replay_start_lsn,
                partitions,
                metadata,
            })
        };
        decode_body().map_err(corrupted)
    }
}

/// The last completed checkpoint of the store in `dir`, as its control file records it: read
/// without recovery, without the store lock and without writing a byte, so a tool may look at a
/// store another engine holds (the redo written since that checkpoint is not replayed).
/// `Ok(None)` if `dir` holds no control file.
///
/// ```
/// use deltasnap::{last_checkpoint, Config, Engine, PartitionId};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path(), Config::default())?;
/// engine.create_partition(PartitionId(3))?;
/// engine.checkpoint()?;
/// let control = last_checkpoint(dir.path())?.expect("a store");
/// assert!(control.partitions.contains_key(&PartitionId(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn last_checkpoint(dir: impl AsRef<Path>) -> Result<Option<ControlData>> {
    read(
        &(Arc::new(crate::vfs::StdFs::new()) as Arc<dyn Vfs>),
        dir.as_ref(),
    )
}

/// [`last_checkpoint`] on any [`Vfs`].
pub fn last_checkpoint_on(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<ControlData>> {
    read(vfs, dir)
}

/// Reads `<dir>/CONTROL`; `Ok(None)` if it does not exist.
pub(crate) fn read(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<ControlData>> {
    let path = dir.join(CONTROL_FILE_NAME);
    if !vfs.exists(&path).ctx("stat control file", &path)? {
        return Ok(None);
    }
    let file = vfs
        .open(&path, OpenMode::Read)
        .ctx("open control file", &path)?;
    let len = file.len().ctx("stat control file", &path)?;
    if len > BODY_LEN_MAX {
        return Err(Error::Corrupted {
            file: path,
            page: None,
            reason: format!("{len} bytes is too long for a control file"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read control file", &path)?;
    ControlData::decode(&bytes, &path).map(Some)
}

/// Replaces `<dir>/CONTROL` atomically and durably (the numbered steps of the module doc).
pub(crate) fn write(vfs: &Arc<dyn Vfs>, dir: &Path, data: &ControlData) -> Result<()> {
    let tmp: PathBuf = dir.join(CONTROL_TMP_FILE_NAME);
    let path = dir.join(CONTROL_FILE_NAME);
    let bytes = data.encode();
    // 1. write the temporary file and fsync it.
    let file = vfs
        .open(&tmp, OpenMode::Create)
        .ctx("create control file", &tmp)?;
    file.set_len(0).ctx("truncate control file", &tmp)?;
    file.write_all_at(&bytes, 0)
        .ctx("write control file", &tmp)?;
    file.sync_all().ctx("fsync control file", &tmp)?;
    drop(file);
    // 2. rename it over the old one.
    vfs.rename(&tmp, &path).ctx("rename control file", &path)?;
    // 3. fsync the directory, so that the rename is durable.
    vfs.sync_dir(dir).ctx("fsync store directory", dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlData {
        ControlData {
            page_size: 4096,
            checkpoint_epoch: 9,
            replay_start_lsn: 1234,
            partitions: [(PartitionId(1), 10), (PartitionId(4), 0)].into(),
            metadata: [(b"schema".to_vec(), b"v1".to_vec())].into(),
        }
    }

    #[test]
    fn roundtrip() {
        let data = sample();
        let decoded = ControlData::decode(&data.encode(), Path::new("CONTROL")).unwrap();
        assert_eq!(decoded, data);
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_an_error() {
        let bytes = sample().encode();
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                ControlData::decode(&bad, Path::new("CONTROL")).is_err(),
                "bit {i}"
            );
        }
        for len in 0..bytes.len() {
            assert!(ControlData::decode(&bytes[..len], Path::new("CONTROL")).is_err());
        }
    }
}
