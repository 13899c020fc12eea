//! The store lock: one engine per store (`format.md` §1).
//!
//! `Engine::open` takes an exclusive advisory lock on `<store>/LOCK` before recovery reads a byte
//! and holds it until `close` has written its last checkpoint. A second open, in this process or
//! another, is refused with [`Error::StoreLocked`]; the lock dies with the holder's handle (close,
//! drop) or its process (a crash, `kill -9`), so a dead holder never keeps a store locked.
//!
//! The lock is the open file description's ([`VfsFile::try_lock_exclusive`]: `F_OFD_SETLK` on
//! Linux), not the process's: two engines in one process conflict exactly as two processes do.
//! The holder writes its pid into the file for error messages; the file's bytes carry nothing
//! else and are never fsynced (the lock, not the content, is the truth).
//!
//! [`lock_holder`] tells whether a store is in use without taking the lock and without writing
//! a byte, for tools that only read (`deltasnap inspect`).

use std::path::{Path, PathBuf};

use crate::bugs::{self, Bug};
use crate::error::{Error, IoContext, Result};
use crate::layout::{self, CONTROL_FILE_NAME, LOCK_FILE_NAME};
use crate::snapshot::dirs::create_dir_all_durable;
use crate::sync::Arc;
use crate::vfs::{OpenMode, StdFs, Vfs, VfsFile};

/// The held lock on one store; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct StoreLock {
    // Held only for its lock: closing the handle releases it.
    _file: Arc<dyn VfsFile>,
}

/// Who holds a store's lock, as far as the lock file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's process id, if its lock file could be read.
    pub pid: Option<u32>,
}

impl StoreLock {
    /// Takes the lock of the store in `dir`, creating the directory if the configuration allows
    /// a new store there. A directory that holds neither a store nor nothing is left untouched
    /// (no lock file is created in it): recovery then refuses it as not a store.
    pub(crate) fn acquire(
        vfs: &Arc<dyn Vfs>,
        dir: &Path,
        create_if_missing: bool,
    ) -> Result<Option<StoreLock>> {
        if !vfs.exists(dir).ctx("stat store directory", dir)? {
            if !create_if_missing {
                return Ok(None); // recovery reports the missing store
            }
            // Durably: a store whose directory a power cut can take must not be reported open.
            create_dir_all_durable(vfs, dir)?;
        } else if !holds_store_or_nothing(vfs, dir)? {
            return Ok(None);
        }
        let path = dir.join(LOCK_FILE_NAME);
        let file = vfs
            .open(&path, OpenMode::Create)
            .ctx("open store lock file", &path)?;
        let locked = file
            .try_lock_exclusive()
            .ctx("lock store lock file", &path)?;
        if !locked && !bugs::active(Bug::NoStoreLock) {
            return Err(Error::StoreLocked {
                dir: dir.to_path_buf(),
                holder_pid: read_pid(file.as_ref()),
            });
        }
        let pid = format!("{}\n", std::process::id());
        // Best effort: the pid only makes the refusal's message more useful.
        if let Err(error) = file
            .set_len(0)
            .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
        {
            tracing::debug!(path = %path.display(), %error, "could not record the pid in the store lock file");
        }
        Ok(Some(StoreLock { _file: file }))
    }
}

/// Whether `dir` holds a store (a control file) or nothing the engine would refuse to create a
/// store over.
fn holds_store_or_nothing(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<bool> {
    let control = dir.join(CONTROL_FILE_NAME);
    Ok(vfs.exists(&control).ctx("stat control file", &control)?
        || layout::is_new_store_dir(vfs, dir).ctx("list store directory", dir)?)
}

fn read_pid(file: &dyn VfsFile) -> Option<u32> {
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Whether an engine holds the store in `dir` (on the real file system), without taking the
/// lock and without writing a byte. `None`: nobody holds it (or it is no store).
///
/// ```
/// use deltasnap::{lock_holder, Config, Engine};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path(), Config::default())?;
/// let holder = lock_holder(dir.path())?.expect("the engine holds its store");
/// assert_eq!(holder.pid, Some(std::process::id()));
/// engine.close()?;
/// assert_eq!(lock_holder(dir.path())?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lock_holder(dir: impl AsRef<Path>) -> Result<Option<LockHolder>> {
    lock_holder_on(&(Arc::new(StdFs::new()) as Arc<dyn Vfs>), dir.as_ref())
}

/// [`lock_holder`] on any [`Vfs`].
pub fn lock_holder_on(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<LockHolder>> {
    let path: PathBuf = dir.join(LOCK_FILE_NAME);
    if !vfs.exists(&path).ctx("stat store lock file", &path)? {
        return Ok(None);
    }
    let file = vfs
        .open(&path, OpenMode::Read)
        .ctx("open store lock file", &path)?;
    if !file
        .is_locked_by_other()
        .ctx("test store lock file", &path)?
    {
        return Ok(None);
    }
    Ok(Some(LockHolder {
        pid: read_pid(file.as_ref()),
    }))
}
