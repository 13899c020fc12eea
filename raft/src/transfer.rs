//! Streaming a snapshot: the manifest, then each partition file in chunks of whole pages, every
//! page checked on arrival against the manifest's page crcs, never the whole snapshot in memory
//! on either side.
//!
//! # Protocol
//!
//! 1. The sender reads `manifest.json` and sends its bytes with the snapshot id (the manifest's
//!    name). The receiver parses it (`Manifest::parse` checks its crc32c and every range) and
//!    creates `incoming/.<id>.receiving/partitions/`.
//! 2. For each partition file in manifest order, the sender reads and sends chunks of at most
//!    `chunk_bytes` (whole pages) in offset order. The receiver refuses a chunk for a file that
//!    is not the one expected, at an offset that is not where the previous one ended, not whole
//!    pages, or past the file's `page_count` (`Error::ChunkRefused`); it checks every page's
//!    footer (crc over the page, its index) and that its crc equals the manifest's
//!    `page_crcs[i]` (`Error::ChunkCrcMismatch`), then writes the chunk at its offset.
//! 3. `finish` refuses a transfer with a file short of its length (`Error::SnapshotTruncated`),
//!    fsyncs the files, writes `manifest.json` last, fsyncs it and the directory, and renames
//!    the directory to `incoming/<id>`: a snapshot directory `verify_snapshot` accepts.
//!
//! A receiver dropped before `finish` (a refused chunk, a cancelled or failed transfer) removes
//! its directory; nothing of the live state machine is touched until the install, so the
//! follower keeps its state.
//!
//! # Memory per transfer
//!
//! Sender: one chunk buffer (`chunk_bytes`, default [`CHUNK_BYTES_DEFAULT`] = 1 MiB) plus the
//! manifest's bytes. Receiver: the chunk it is given plus the manifest's bytes and its parsed
//! form. The manifest is `O(pages)`: 4 bytes of crc per page (about 10 bytes of JSON), plus the
//! metadata. So one transfer holds at most `2 * chunk_bytes + 3 * manifest_bytes` at a time, in
//! flight included (the in-process network hands each chunk over by value, one at a time).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltasnap::vfs::{OpenMode, Vfs, VfsFile};
use deltasnap::Manifest;

use crate::error::{Error, IoContext, Result};

/// Bytes of a chunk by default: 1 MiB (rounded down to whole pages).
pub const CHUNK_BYTES_DEFAULT: u64 = 1 << 20;
/// The largest chunk a receiver accepts: 64 MiB.
pub const CHUNK_BYTES_MAX: u64 = 64 << 20;
/// The largest manifest a receiver accepts: 256 MiB (a store of about 25 million pages).
pub const MANIFEST_BYTES_MAX: u64 = 256 << 20;

const PAGE_CRC_XOR: u32 = 0x5041_4745;

/// One piece of a partition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The file, as the manifest names it (`partitions/part-<id>.dat`).
    pub file: String,
    /// Byte offset in the file.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Reads `manifest.json` of the snapshot in `dir`.
pub fn manifest_bytes(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join("manifest.json");
    let file = vfs
        .open(&path, OpenMode::Read)
        .ctx("open manifest", &path)?;
    let len = file.len().ctx("stat manifest", &path)?;
    if len > MANIFEST_BYTES_MAX {
        return Err(Error::Corrupted {
            path,
            reason: format!("{len} bytes, over MANIFEST_BYTES_MAX"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read manifest", &path)?;
    Ok(bytes)
}

/// The sending side: reads a published snapshot chunk by chunk.
#[derive(Debug)]
pub struct SnapshotSender {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    chunk_bytes: u64,
    /// Position: the manifest's partition index, the offset in its file.
    partition: usize,
    offset: u64,
    open: Option<Arc<dyn VfsFile>>,
}

impl SnapshotSender {
    /// Opens the snapshot in `dir` for sending in chunks of `chunk_bytes` (whole pages, at least
    /// one, at most [`CHUNK_BYTES_MAX`]).
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path, chunk_bytes: u64) -> Result<SnapshotSender> {
        let manifest_bytes = manifest_bytes(&vfs, dir)?;
        let manifest = Manifest::parse(&manifest_bytes, &dir.join("manifest.json"))?;
        let page = u64::from(manifest.page_size);
        if !(page..=CHUNK_BYTES_MAX).contains(&chunk_bytes) {
            return Err(Error::InvalidArgument(format!(
                "chunk_bytes = {chunk_bytes} is out of range {page}..={CHUNK_BYTES_MAX}"
            )));
        }
        Ok(SnapshotSender {
            vfs,
            dir: dir.to_path_buf(),
            manifest,
            manifest_bytes,
            chunk_bytes: chunk_bytes / page * page,
            partition: 0,
            offset: 0,
            open: None,
        })
    }

    /// The snapshot id (the manifest's name).
    pub fn snapshot_id(&self) -> &str {
        &self.manifest.name
    }

    /// The manifest's bytes, sent first.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The next chunk, or `None` when every file has been sent.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        loop {
            let Some(partition) = self.manifest.partitions.get(self.partition) else {
                return Ok(None);
            };
            let len = u64::from(partition.page_count) * u64::from(self.manifest.page_size);
            if self.offset >= len {
                self.partition += 1;
                self.offset = 0;
                self.open = None;
                continue;
            }
            let path = self.dir.join(&partition.file);
            let file = match &self.open {
                Some(file) => Arc::clone(file),
                None => {
                    let file = self
                        .vfs
                        .open(&path, OpenMode::Read)
                        .ctx("open snapshot file", &path)?;
                    self.open = Some(Arc::clone(&file));
                    file
                }
            };
            let take = self.chunk_bytes.min(len - self.offset);
            let mut bytes = vec![0u8; take as usize];
            file.read_exact_at(&mut bytes, self.offset)
                .ctx("read snapshot file", &path)?;
            let chunk = Chunk {
                file: partition.file.clone(),
                offset: self.offset,
                bytes,
            };
            self.offset += take;
            return Ok(Some(chunk));
        }
    }
}

/// The receiving side: writes the chunks into `incoming/`, checking each page on arrival.
#[derive(Debug)]
pub struct SnapshotReceiver {
    vfs: Arc<dyn Vfs>,
    snapshot_id: String,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    incoming: PathBuf,
    tmp_dir: PathBuf,
    /// The manifest's partition index being received, its file and the bytes received of it.
    partition: usize,
    received: u64,
    open: Option<Arc<dyn VfsFile>>,
    finished: bool,
}

fn valid_snapshot_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl SnapshotReceiver {
    /// Starts receiving snapshot `snapshot_id` whose manifest is `manifest_bytes` into
    /// `incoming` (step 1 of the module doc).
    pub fn begin(
        vfs: Arc<dyn Vfs>,
        incoming: &Path,
        snapshot_id: &str,
        manifest_bytes: &[u8],
    ) -> Result<SnapshotReceiver> {
        let refused = |reason: String| Error::ChunkRefused {
            snapshot_id: snapshot_id.to_string(),
            reason,
        };
        if !valid_snapshot_id(snapshot_id) {
            return Err(refused(
                "the snapshot id is not a valid snapshot name".into(),
            ));
        }
        if manifest_bytes.len() as u64 > MANIFEST_BYTES_MAX {
            return Err(refused(format!(
                "a manifest of {} bytes",
                manifest_bytes.len()
            )));
        }
        let tmp_dir = incoming.join(format!(".{snapshot_id}.receiving"));
        let manifest = Manifest::parse(manifest_bytes, &tmp_dir.join("manifest.json"))?;
        if manifest.name != snapshot_id {
            return Err(refused(format!("the manifest names {:?}", manifest.name)));
        }
        if vfs.exists(&tmp_dir).ctx("stat", &tmp_dir)? {
            vfs.remove_dir_all(&tmp_dir)
                .ctx("remove stale transfer", &tmp_dir)?;
        }
        let partitions = tmp_dir.join("partitions");
        vfs.create_dir_all(&partitions)
            .ctx("create transfer directory", &partitions)?;
        Ok(SnapshotReceiver {
            vfs,
            snapshot_id: snapshot_id.to_string(),
            manifest,
            manifest_bytes: manifest_bytes.to_vec(),
            incoming: incoming.to_path_buf(),
            tmp_dir,
            partition: 0,
            received: 0,
            open: None,
            finished: false,
        })
    }

    fn refused(&self, reason: String) -> Error {
        Error::ChunkRefused {
            snapshot_id: self.snapshot_id.clone(),
            reason,
        }
    }

    /// Takes one chunk (step 2 of the module doc).
    pub fn receive(&mut self, chunk: &Chunk) -> Result<()> {
        let page_size = u64::from(self.manifest.page_size);
        // A file that is complete moves the expectation to the next one (empty files included).
        while let Some(partition) = self.manifest.partitions.get(self.partition) {
            let len = u64::from(partition.page_count) * page_size;
            if self.received < len || partition.file == chunk.file {
                break;
            }
            self.partition += 1;
            self.received = 0;
            self.open = None;
        }
        let Some(partition) = self.manifest.partitions.get(self.partition) else {
            return Err(self.refused(format!("{} after the last file", chunk.file)));
        };
        if partition.file != chunk.file {
            return Err(self.refused(format!(
                "{} while {} is expected",
                chunk.file, partition.file
            )));
        }
        if chunk.offset != self.received {
            return Err(self.refused(format!(
                "{} at offset {}, expected {}",
                chunk.file, chunk.offset, self.received
            )));
        }
        let len = u64::from(partition.page_count) * page_size;
        let chunk_len = chunk.bytes.len() as u64;
        if chunk_len == 0 || !chunk_len.is_multiple_of(page_size) || chunk_len > CHUNK_BYTES_MAX {
            return Err(self.refused(format!(
                "{chunk_len} bytes is not 1 ..= 64 MiB of whole pages"
            )));
        }
        if chunk.offset + chunk_len > len {
            return Err(self.refused(format!(
                "{} bytes at {} run past the file's {len} bytes",
                chunk_len, chunk.offset
            )));
        }
        let first_page = (chunk.offset / page_size) as u32;
        for (i, page) in chunk.bytes.chunks_exact(page_size as usize).enumerate() {
            let index = first_page + i as u32;
            let expected = partition.page_crcs[index as usize];
            let actual = page_footer_crc(page, index);
            if actual != Some(expected) {
                return Err(Error::ChunkCrcMismatch {
                    snapshot_id: self.snapshot_id.clone(),
                    file: chunk.file.clone(),
                    page: index,
                    expected,
                    actual: actual.unwrap_or_else(|| computed_crc(page)),
                });
            }
        }
        let path = self.tmp_dir.join(&partition.file);
        let file = match &self.open {
            Some(file) => Arc::clone(file),
            None => {
                let file = self
                    .vfs
                    .open(&path, OpenMode::CreateNew)
                    .ctx("create received file", &path)?;
                self.open = Some(Arc::clone(&file));
                file
            }
        };
        file.write_all_at(&chunk.bytes, chunk.offset)
            .ctx("write received chunk", &path)?;
        self.received += chunk_len;
        Ok(())
    }

    /// Ends the transfer (step 3 of the module doc); returns the snapshot's directory.
    pub fn finish(mut self) -> Result<PathBuf> {
        let page_size = u64::from(self.manifest.page_size);
        let partitions_dir = self.tmp_dir.join("partitions");
        for (position, partition) in self.manifest.partitions.iter().enumerate() {
            let len = u64::from(partition.page_count) * page_size;
            let received = match position.cmp(&self.partition) {
                std::cmp::Ordering::Less => len,
                std::cmp::Ordering::Equal => self.received,
                std::cmp::Ordering::Greater => 0,
            };
            if received != len {
                return Err(Error::SnapshotTruncated {
                    snapshot_id: self.snapshot_id.clone(),
                    file: partition.file.clone(),
                    expected_bytes: len,
                    received_bytes: received,
                });
            }
            let path = self.tmp_dir.join(&partition.file);
            let file = self
                .vfs
                .open(&path, OpenMode::Create)
                .ctx("open received file", &path)?;
            file.sync_all().ctx("fsync received file", &path)?;
        }
        self.vfs
            .sync_dir(&partitions_dir)
            .ctx("fsync", &partitions_dir)?;
        let manifest_path = self.tmp_dir.join("manifest.json");
        let file = self
            .vfs
            .open(&manifest_path, OpenMode::CreateNew)
            .ctx("create received manifest", &manifest_path)?;
        file.write_all_at(&self.manifest_bytes, 0)
            .ctx("write received manifest", &manifest_path)?;
        file.sync_all()
            .ctx("fsync received manifest", &manifest_path)?;
        self.vfs
            .sync_dir(&self.tmp_dir)
            .ctx("fsync", &self.tmp_dir)?;
        let final_dir = self.incoming.join(&self.snapshot_id);
        if self.vfs.exists(&final_dir).ctx("stat", &final_dir)? {
            self.vfs
                .remove_dir_all(&final_dir)
                .ctx("remove older copy", &final_dir)?;
        }
        self.vfs
            .rename(&self.tmp_dir, &final_dir)
            .ctx("publish received snapshot", &final_dir)?;
        self.vfs
            .sync_dir(&self.incoming)
            .ctx("fsync", &self.incoming)?;
        self.finished = true;
        Ok(final_dir)
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(error) = self.vfs.remove_dir_all(&self.tmp_dir) {
                tracing::warn!(%error, dir = %self.tmp_dir.display(), "removing an abandoned transfer");
            }
        }
    }
}

fn computed_crc(page: &[u8]) -> u32 {
    crc32c::crc32c(&page[..page.len() - 4]) ^ PAGE_CRC_XOR
}

/// The page's footer crc if the footer verifies as page `index` (format.md §2), else `None`.
fn page_footer_crc(page: &[u8], index: u32) -> Option<u32> {
    let p = page.len();
    let stored = u32::from_le_bytes(page[p - 4..].try_into().ok()?);
    let page_index = u32::from_le_bytes(page[p - 16..p - 12].try_into().ok()?);
    (computed_crc(page) == stored && page_index == index).then_some(stored)
}

/// Streams the snapshot in `dir` on `vfs` into `receiver` (a local transfer: the same code as
/// the network's, without the network). Returns the received directory.
pub fn copy_snapshot(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    mut receiver: SnapshotReceiver,
    chunk_bytes: u64,
) -> Result<PathBuf> {
    let mut sender = SnapshotSender::open(Arc::clone(vfs), dir, chunk_bytes)?;
    while let Some(chunk) = sender.next_chunk()? {
        receiver.receive(&chunk)?;
    }
    receiver.finish()
}
