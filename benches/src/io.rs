//! File helpers: the physical floor (`copy_file_range` of quiesced files, then fsync), per-thread
//! I/O counters from `/proc`, directory sizes, and the machine's load.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Result;

/// When the copy's bytes are handed to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writeback {
    /// All at the final fsync (the floor as the benchmark issue defines it).
    AtFsync,
    /// Each 1 MiB chunk once copied (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), as the snapshot
    /// copier does; the fsync then waits for what is left.
    Early,
}

/// Copies `source` to a new file `target` with `copy_file_range` (in-kernel, no user-space
/// buffer), then fsyncs it. Returns the bytes copied.
pub fn copy_file_range_synced(source: &Path, target: &Path, writeback: Writeback) -> Result<u64> {
    let from = File::open(source)?;
    let to = File::options().write(true).create_new(true).open(target)?;
    let len = from.metadata()?.len();
    let max_chunk = match writeback {
        Writeback::AtFsync => 1 << 30,
        Writeback::Early => 1 << 20,
    };
    let mut copied = 0u64;
    while copied < len {
        let chunk = (len - copied).min(max_chunk) as usize;
        // SAFETY: both descriptors are open for the duration of the call; null offsets use and
        // advance the files' own positions.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                chunk,
                0,
            )
        };
        if n < 0 {
            return Err(format!(
                "copy_file_range {} -> {}: {}",
                source.display(),
                target.display(),
                std::io::Error::last_os_error()
            )
            .into());
        }
        if n == 0 {
            return Err(format!("{} ended during the copy", source.display()).into());
        }
        if writeback == Writeback::Early {
            // SAFETY: the descriptor is open for the duration of the call; no pointers.
            let started = unsafe {
                libc::sync_file_range(
                    to.as_raw_fd(),
                    copied as libc::off64_t,
                    n as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if started != 0 {
                return Err(format!(
                    "sync_file_range {}: {}",
                    target.display(),
                    std::io::Error::last_os_error()
                )
                .into());
            }
        }
        copied += n as u64;
    }
    to.sync_all()?;
    Ok(copied)
}

/// Copies every regular file of `source_dir` into `target_dir` (created) with
/// [`copy_file_range_synced`], then fsyncs `target_dir`. Returns (bytes, duration).
pub fn copy_dir_files_synced(
    source_dir: &Path,
    target_dir: &Path,
    writeback: Writeback,
) -> Result<(u64, Duration)> {
    let started = Instant::now();
    fs::create_dir_all(target_dir)?;
    let mut bytes = 0;
    for entry in sorted_files(source_dir)? {
        let target = target_dir.join(entry.file_name().unwrap());
        bytes += copy_file_range_synced(&entry, &target, writeback)?;
    }
    File::open(target_dir)?.sync_all()?;
    Ok((bytes, started.elapsed()))
}

/// The regular files directly in `dir`, sorted by name.
pub fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Bytes of all regular files under `path` (recursively); 0 if it does not exist.
pub fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| tree_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// fsyncs a file.
pub fn fsync_path(path: &Path) -> Result<()> {
    File::open(path)?.sync_all()?;
    Ok(())
}

/// A thread's syscall I/O counters (`/proc/self/task/<tid>/io`): bytes passed to read-like and
/// write-like calls, including `pread`/`pwrite` and `copy_file_range` (both sides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThreadIo {
    pub read_bytes: u64,
    pub written_bytes: u64,
}

/// The thread ids of this process whose name (`comm`, 15 bytes at most) starts with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .collect()
}

/// The I/O counters of thread `tid` of this process, if it still exists.
pub fn thread_io(tid: u32) -> Option<ThreadIo> {
    let text = fs::read_to_string(format!("/proc/self/task/{tid}/io")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(ThreadIo {
        read_bytes: field("rchar:")?,
        written_bytes: field("wchar:")?,
    })
}

/// The 1-minute load average and the number of online CPUs.
pub fn load_average() -> (f64, usize) {
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    (load, cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_floors_copy_every_byte() {
        // Over two and a half 1 MiB chunks, so the early-writeback copy takes several steps.
        let bytes: Vec<u8> = (0..2_621_447u32).map(|i| (i % 251) as u8).collect();
        for writeback in [Writeback::AtFsync, Writeback::Early] {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("a");
            fs::write(&source, &bytes).unwrap();
            let copied = copy_file_range_synced(&source, &dir.path().join("b"), writeback).unwrap();
            assert_eq!(copied, bytes.len() as u64, "{writeback:?}");
            assert!(
                fs::read(dir.path().join("b")).unwrap() == bytes,
                "{writeback:?}"
            );
            assert_eq!(tree_bytes(dir.path()), 2 * bytes.len() as u64);
        }
    }

    #[test]
    fn this_thread_has_io_counters() {
        let me = threads_named("").len();
        assert!(me >= 1);
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(thread_io(tid).is_some());
    }
}
