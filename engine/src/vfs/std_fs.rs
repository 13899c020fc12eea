//! [`StdFs`]: the real file system, with positioned I/O, fsync, directory fsync and
//! `copy_file_range`.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{copy_through_buffer, OpenMode, Vfs, VfsFile};
use crate::sync::Arc;

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl StdFs {
    /// The real file system (a unit value: every `StdFs` is the same). `Engine::open` uses one.
    pub fn new() -> Self {
        StdFs
    }
}

#[derive(Debug)]
struct StdFile {
    file: File,
}

impl Vfs for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::Create => options.read(true).write(true).create(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        Ok(Arc::new(StdFile {
            file: options.open(path)?,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let name = entry?.file_name();
            names.push(name.to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        match fs::metadata(path) {
            Ok(meta) => Ok(meta.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A lock description covering the whole file, however long it grows.
fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value of every field.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0; // to the end of the file, wherever it is
    lock
}

impl StdFile {
    /// Open file description locks (`F_OFD_*`): owned by this handle's open file description, so
    /// two handles conflict even in one process (classic `F_SETLK` locks would not), released
    /// when the handle is closed or its process dies, and testable without taking them
    /// (`F_OFD_GETLK`, which `flock` lacks).
    fn fcntl_lock(&self, command: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
        loop {
            // SAFETY: the descriptor is open for the lifetime of `self`, and `lock` is a valid,
            // exclusively borrowed `flock` for the duration of the call.
            let result = unsafe { libc::fcntl(self.file.as_raw_fd(), command, lock as *mut _) };
            if result != -1 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }
}

impl VfsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn try_lock_exclusive(&self) -> io::Result<bool> {
        let mut lock = whole_file_lock(libc::F_WRLCK);
        match self.fcntl_lock(libc::F_OFD_SETLK, &mut lock) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn is_locked_by_other(&self) -> io::Result<bool> {
        let mut lock = whole_file_lock(libc::F_WRLCK);
        self.fcntl_lock(libc::F_OFD_GETLK, &mut lock)?;
        Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let Ok(offset) = libc::off64_t::try_from(offset) else {
            return Ok(()); // beyond any file this system can hold
        };
        // The syscall reads a length of 0 as "through the end of the file".
        let len = libc::off64_t::try_from(len).unwrap_or(0);
        loop {
            // SAFETY: the descriptor is open for the lifetime of `self`; the call takes no
            // pointers.
            let result = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if result == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Not supported here (old kernel, a file system or file type without it): the
                // hint is simply not taken; `sync_all` still does the whole job.
                Some(libc::ENOSYS)
                | Some(libc::EOPNOTSUPP)
                | Some(libc::EINVAL)
                | Some(libc::ESPIPE) => return Ok(()),
                _ => return Err(err),
            }
        }
    }

    fn copy_to(
        &self,
        src_offset: u64,
        dst: &dyn VfsFile,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        let Some(dst_file) = dst.as_any().downcast_ref::<StdFile>() else {
            return copy_through_buffer(self, src_offset, dst, dst_offset, len);
        };
        let mut copied = 0u64;
        while copied < len {
            let mut off_in = (src_offset + copied) as libc::loff_t;
            let mut off_out = (dst_offset + copied) as libc::loff_t;
            let want = (len - copied).min(1 << 30) as usize;
            // SAFETY: both descriptors are open for the lifetime of `self` and `dst_file`, and
            // the offset pointers point at live locals; the kernel does not keep them.
            let n = unsafe {
                libc::copy_file_range(
                    self.file.as_raw_fd(),
                    &mut off_in,
                    dst_file.file.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Cross-device, unsupported file system or old kernel: copy by hand.
                    Some(libc::EXDEV)
                    | Some(libc::ENOSYS)
                    | Some(libc::EOPNOTSUPP)
                    | Some(libc::EINVAL) => {
                        return copy_through_buffer(
                            self,
                            src_offset + copied,
                            dst,
                            dst_offset + copied,
                            len - copied,
                        )
                        .map(|rest| copied + rest)
                    }
                    _ => return Err(err),
                }
            }
            if n == 0 {
                break;
            }
            copied += n as u64;
        }
        Ok(copied)
    }
}
