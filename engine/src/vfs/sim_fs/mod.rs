//! [`SimFs`]: an in-memory file system that knows which bytes would survive a power cut, can
//! simulate one ([`SimFs::crash`]) and injects I/O faults on a plan ([`FaultPlan`]). It is the disk
//! under the crash, fault and shuttle tiers (DESIGN §6), so it enforces the durability contract of
//! the [module doc](super) and nothing more generous.
//!
//! # The model
//!
//! The namespace is a tree of inodes. Paths are normalised lexically (`.` dropped, `..` popped) and
//! are keys: a relative path and an absolute one never name the same file, and there are two
//! roots, `/` and the relative root (`""`, also spelled `.`). Both roots always exist and are
//! durable.
//!
//! Each **file** inode holds its *current* bytes (what reads see), its *durable* bytes (as of its
//! last successful [`VfsFile::sync_all`](crate::vfs::VfsFile::sync_all)), and the list of changes since then (writes and
//! `set_len`s, in order). Each **directory** inode holds its *current* entries and its *durable*
//! entries (as of its last successful [`Vfs::sync_dir`](crate::vfs::Vfs::sync_dir)). So:
//!
//! 1. a write or `set_len` is durable once `sync_all` of the file returns;
//! 2. a create, rename or remove is durable once `sync_dir` of the parent directory returns (for
//!    a rename between directories: of both parents; until both are synced a crash can leave
//!    the file under both names, never under neither);
//! 3. **directories are entries too**: `create_dir_all(a/b/c)` that creates `b` and `c` is durable
//!    once `sync_dir(a)` and `sync_dir(a/b)` returned. This is the stricter of the two choices
//!    (a real file system may persist a `mkdir` without it) and engine code can meet it by
//!    syncing the parent of every directory it may have created. If a directory's entry is lost,
//!    everything under it is lost with it, synced or not;
//! 4. `rename` is atomic: the target names the old inode or the new one, never a mix;
//! 5. an open handle keeps its file alive after `remove_file` or a replacing `rename` (POSIX
//!    unlink semantics); the inode is reclaimed once no name, durable name or handle refers to it.
//!
//! # Crash
//!
//! [`SimFs::crash`]`(seed)` is a power cut followed by a restart. Every directory's entries revert
//! to its durable entries (an unsynced create vanishes, an unsynced rename is undone, an unsynced
//! remove reappears); inodes no durable entry reaches are freed. Every surviving file starts from
//! its durable bytes, and each change since its last `sync_all` is replayed in order with a
//! choice drawn from a splitmix64 stream seeded by `seed`:
//! - a write is **dropped**, **kept**, or **torn**: a prefix of it that ends on a 512-byte sector
//!   boundary of the file is kept ([`SECTOR_BYTES`]). A write inside one sector is never torn
//!   (sector writes are atomic), so it is dropped or kept;
//! - a `set_len` is dropped or kept.
//!
//! The choices are independent, so a later write may survive an earlier one (the disk reorders).
//! Directory entries have no such choice: they are exactly the durable ones (a real file system
//! may also persist an unsynced create or rename; this model never does). A directory moved
//! between two parents of which only one was synced would have two names; it keeps the first
//! in path order.
//! Files are visited in path order of the durable tree, so the same seed on the same state gives
//! the same result. After the crash every handle opened before it fails (a generation counter),
//! the fault plan is cleared and the file system powers back on. Each choice is a `tracing`
//! event at debug level, and the totals come back as a [`CrashReport`].
//!
//! # Operations and faults
//!
//! Every call of a [`Vfs`](crate::vfs::Vfs) or [`VfsFile`](crate::vfs::VfsFile) method except `as_any` is one **operation** and gets the
//! next index of a global counter (from 0 at [`SimFs::new`], never reset; [`SimFs::op_count`] is
//! the index the next operation gets). Calls that fail count too, whatever the reason, so indices
//! are stable across re-runs of a deterministic workload. `read_exact_at` is not an operation of
//! its own: each `read_at` it makes is. `copy_to` is one operation ([`FaultKind::Copy`]) and each
//! `read_at` / `write_all_at` it makes is another. The test helpers on [`SimFs`] (`crash`,
//! `flip_bit`, `read_durable` …) are not operations and never fail by plan.
//!
//! A [`FaultPlan`] is a list of rules checked, in order, before an operation touches any state:
//! - `fail_at(n, error)`: the first operation with index `>= n` (of the kinds given by
//!   [`FaultPlan::only`], all kinds by default) fails with EIO or ENOSPC as an OS error; once,
//!   or every later matching operation too if the rule is [`FaultPlan::sticky`];
//! - `crash_at(n)`: the first matching operation with index `>= n` and every operation after it
//!   fail ("simulated power cut at operation n (EIO)") until `crash(seed)` restarts. This error
//!   carries a message, so it cannot also carry a raw errno: its kind is `Other`,
//!   `raw_os_error()` is `None`, and [`SimFs::is_power_cut`] recognises it.
//!
//! A failed operation changes nothing: a failed write leaves the bytes as they were, a failed
//! `sync_all` leaves the durable bytes and the pending changes as they were. (Linux may instead
//! drop the dirty pages of a failed fsync and report success on the retry; the engine must treat
//! a failed fsync as fatal for that file, so this difference does not hide bugs.)
//!
//! # Concurrency
//!
//! All state sits behind one [`crate::sync::Mutex`], held for the length of one operation and never
//! across another lock or real I/O, so under shuttle or loom every operation is one scheduling
//! point and the checkers explore the order of file operations.
//!
//! # Limits
//!
//! A file holds at most [`FILE_BYTES_MAX`] bytes (writes or `set_len` beyond fail with `EFBIG`), so
//! a wild offset is an error and not an allocation failure. Pending changes keep a copy of every
//! byte written since the last `sync_all`, so memory grows with unsynced data.

mod crash;
mod fault;
mod fs;
mod ops;
mod state;
#[cfg(test)]
mod tests;

pub use crash::CrashReport;
pub use fault::{FaultError, FaultKind, FaultPlan};
pub use fs::SimFs;
pub use state::{FILE_BYTES_MAX, SECTOR_BYTES};
