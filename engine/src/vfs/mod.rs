//! The file layer. Every byte the engine reads or writes goes through [`Vfs`] and [`VfsFile`], so
//! that the same engine runs on the real file system ([`StdFs`]) and on [`SimFs`], an in-memory
//! file system that tracks which bytes are durable, simulates crashes (dropping or tearing
//! unsynced writes) and injects faults (fail the Nth operation with EIO or ENOSPC).
//!
//! The contract the engine relies on, and which `SimFs` enforces:
//! - a file's bytes are durable only after [`VfsFile::sync_all`] returned;
//! - a directory entry (create, rename, remove) is durable only after [`Vfs::sync_dir`] of its
//!   parent returned;
//! - [`Vfs::rename`] is atomic: after a crash the target holds either the old or the new file.
//!
//! [`SimFs`] is public and in every build, unlike the engine's test machinery (seeded bugs, trace
//! recording: `crate::bugs`): it is not a hook into the engine but an ordinary [`Vfs`] that an
//! embedder can open a store on (`Engine::open_on`) to test their own application's crash safety
//! on a simulated disk, with the same power cuts and injected faults the verification tiers use.
//! Compiled in, it costs a store on [`StdFs`] nothing.

use std::any::Any;
use std::fmt;
use std::io;
use std::path::Path;

use crate::sync::Arc;

mod sim_fs;
mod std_fs;

pub use sim_fs::{
    CrashReport, FaultError, FaultKind, FaultPlan, SimFs, FILE_BYTES_MAX, SECTOR_BYTES,
};
pub use std_fs::StdFs;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Open for read and write, creating it empty if it does not exist.
    Create,
    /// Create for read and write; fail with `AlreadyExists` if it exists.
    CreateNew,
}

/// A file system: a namespace of directories and files.
pub trait Vfs: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of directory `path`, sorted.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` names a file or directory.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Whether `path` names a directory.
    fn is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes the directory `path` and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to` if it is a file or an empty directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file. Positioned reads and writes, so one handle is shared by many threads.
// `len` is a fallible I/O call (fstat), not a collection's size; an `is_empty` would only be a
// second way to spend an operation.
#[allow(clippy::len_without_is_empty)]
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's content and length durable (fsync).
    fn sync_all(&self) -> io::Result<()>;
    /// For [`VfsFile::copy_to`] implementations that need the concrete type of the destination.
    fn as_any(&self) -> &dyn Any;
    /// Takes an exclusive advisory lock on the whole file without waiting: `Ok(true)` if this
    /// handle now holds it, `Ok(false)` if another handle holds it, in this process or another.
    /// The lock lasts until this handle is dropped or its process exits. The store lock
    /// (`format.md` §1) rests on it; a wrapper must pass it through to the file it wraps.
    fn try_lock_exclusive(&self) -> io::Result<bool>;
    /// Whether a handle other than this one holds the exclusive lock, without taking any lock
    /// (so a reader can tell a store is in use without disturbing it).
    fn is_locked_by_other(&self) -> io::Result<bool>;

    /// Asks the OS to start writing the `len` bytes at `offset` to storage now, without waiting
    /// for them. A hint: it makes nothing durable (only [`VfsFile::sync_all`] does), but a later
    /// `sync_all` has less left to wait for, and the device works while the caller goes on.
    /// `StdFs` uses `sync_file_range(SYNC_FILE_RANGE_WRITE)`; the default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copies `len` bytes from `self` at `src_offset` to `dst` at `dst_offset`; returns the bytes
    /// copied (fewer only if `self` ends first). `StdFs` uses `copy_file_range`, so the bytes need
    /// not pass through user space.
    fn copy_to(
        &self,
        src_offset: u64,
        dst: &dyn VfsFile,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        copy_through_buffer(self, src_offset, dst, dst_offset, len)
    }
}

/// The portable copy: read into a buffer, write it out (through `src`'s and `dst`'s own
/// `read_at` and `write_all_at`, so wrappers that count or fail operations see each one).
pub fn copy_through_buffer<S: VfsFile + ?Sized>(
    src: &S,
    src_offset: u64,
    dst: &dyn VfsFile,
    dst_offset: u64,
    len: u64,
) -> io::Result<u64> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK_BYTES.min(len) as usize];
    let mut copied = 0u64;
    while copied < len {
        let want = (len - copied).min(CHUNK_BYTES) as usize;
        let n = src.read_at(&mut buf[..want], src_offset + copied)?;
        if n == 0 {
            break;
        }
        dst.write_all_at(&buf[..n], dst_offset + copied)?;
        copied += n as u64;
    }
    Ok(copied)
}
