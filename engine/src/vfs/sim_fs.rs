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
//! last successful [`VfsFile::sync_all`]), and the list of changes since then (writes and
//! `set_len`s, in order). Each **directory** inode holds its *current* entries and its *durable*
//! entries (as of its last successful [`Vfs::sync_dir`]). So:
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
//! Every call of a [`Vfs`] or [`VfsFile`] method except `as_any` is one **operation** and gets the
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

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{copy_through_buffer, OpenMode, Vfs, VfsFile};
use crate::sync::{Arc, Mutex};

/// The unit a torn write is cut at: a crash keeps a prefix of a write that ends on a multiple of
/// this many bytes from the start of the file.
pub const SECTOR_BYTES: u64 = 512;

/// The largest file `SimFs` holds; writes and `set_len` beyond it fail with `EFBIG`.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

type InodeId = u64;

/// The root of absolute paths, `/`.
const ROOT_ABSOLUTE: InodeId = 0;
/// The root of relative paths, `""` or `.`.
const ROOT_RELATIVE: InodeId = 1;

/// The kinds of operation a [`FaultPlan`] rule can be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`Vfs::open`].
    Open,
    /// [`VfsFile::read_at`].
    Read,
    /// [`VfsFile::write_all_at`].
    Write,
    /// [`VfsFile::set_len`].
    SetLen,
    /// [`VfsFile::sync_all`].
    SyncFile,
    /// [`Vfs::sync_dir`].
    SyncDir,
    /// [`VfsFile::len`], [`Vfs::exists`], [`Vfs::is_dir`].
    Stat,
    /// [`Vfs::read_dir`].
    ReadDir,
    /// [`Vfs::create_dir_all`].
    CreateDir,
    /// [`Vfs::remove_file`], [`Vfs::remove_dir_all`].
    Remove,
    /// [`Vfs::rename`].
    Rename,
    /// [`VfsFile::copy_to`] itself (its reads and writes count as `Read` and `Write`).
    Copy,
    /// [`VfsFile::try_lock_exclusive`], [`VfsFile::is_locked_by_other`].
    Lock,
}

impl FaultKind {
    /// Every kind, for rules that should match all operations but one or two.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Open,
        FaultKind::Read,
        FaultKind::Write,
        FaultKind::SetLen,
        FaultKind::SyncFile,
        FaultKind::SyncDir,
        FaultKind::Stat,
        FaultKind::ReadDir,
        FaultKind::CreateDir,
        FaultKind::Remove,
        FaultKind::Rename,
        FaultKind::Copy,
        FaultKind::Lock,
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The error an injected fault returns, as a raw OS error (`raw_os_error()` is the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl FaultError {
    /// The errno this error carries.
    pub fn errno(self) -> i32 {
        match self {
            FaultError::Eio => libc::EIO,
            FaultError::Enospc => libc::ENOSPC,
        }
    }

    fn to_io_error(self) -> io::Error {
        io::Error::from_raw_os_error(self.errno())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultAction {
    Fail { error: FaultError, sticky: bool },
    PowerCut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FaultRule {
    op_index_min: u64,
    kinds: u16,
    action: FaultAction,
    fired: bool,
}

/// Which operations fail, and how. Build one rule with [`FaultPlan::fail_at`] or
/// [`FaultPlan::crash_at`], refine it with [`FaultPlan::only`] and [`FaultPlan::sticky`], and
/// combine rules with [`FaultPlan::and`]. Rules are checked in order; the first that fires
/// decides the operation's error. Operation indices are absolute (see [`SimFs::op_count`]).
///
/// ```
/// use deltasnap::vfs::{FaultError, FaultKind, FaultPlan};
/// // Every write or sync from operation 40 on fails with ENOSPC.
/// let plan = FaultPlan::fail_at(40, FaultError::Enospc)
///     .only(&[FaultKind::Write, FaultKind::SyncFile])
///     .sticky();
/// # let _ = plan;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// The first operation with index `>= op_index` fails with `error` (once, unless
    /// [`sticky`](FaultPlan::sticky)).
    pub fn fail_at(op_index: u64, error: FaultError) -> Self {
        FaultPlan::with_rule(
            op_index,
            FaultAction::Fail {
                error,
                sticky: false,
            },
        )
    }

    /// Power cut: the first operation with index `>= op_index` and every later operation fail
    /// (an EIO-like error that [`SimFs::is_power_cut`] recognises) until [`SimFs::crash`].
    pub fn crash_at(op_index: u64) -> Self {
        FaultPlan::with_rule(op_index, FaultAction::PowerCut)
    }

    /// Limits the last rule to operations of `kinds` (e.g. fail the first sync at or after
    /// index `n`). A rule limited to no kind never fires. Once a power cut has happened it stops
    /// every operation, whatever its kinds.
    pub fn only(mut self, kinds: &[FaultKind]) -> Self {
        if let Some(rule) = self.rules.last_mut() {
            rule.kinds = kinds.iter().fold(0, |bits, kind| bits | kind.bit());
        }
        self
    }

    /// Makes the last `fail_at` rule fail every matching operation from its index on instead of
    /// only the first. No effect on a `crash_at` rule (a power cut lasts anyway).
    pub fn sticky(mut self) -> Self {
        if let Some(FaultRule {
            action: FaultAction::Fail { sticky, .. },
            ..
        }) = self.rules.last_mut()
        {
            *sticky = true;
        }
        self
    }

    /// This plan's rules followed by `other`'s.
    pub fn and(mut self, other: FaultPlan) -> Self {
        self.rules.extend(other.rules);
        self
    }

    /// Whether the plan has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn with_rule(op_index_min: u64, action: FaultAction) -> Self {
        let kinds = FaultKind::ALL
            .iter()
            .fold(0, |bits, kind| bits | kind.bit());
        FaultPlan {
            rules: vec![FaultRule {
                op_index_min,
                kinds,
                action,
                fired: false,
            }],
        }
    }
}

/// What [`SimFs::crash`] did to the changes that were not durable.
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

/// The in-memory, crash-simulating file system. Clones share one state, so a test keeps a
/// handle while the engine owns another. The model (what is durable when, what a
/// crash does, how faults count) is the module doc of `vfs/sim_fs.rs`.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs {
            state: Arc::new(Mutex::new(State::default())),
        }
    }
}

impl fmt::Debug for SimFs {
    // Printing takes no lock: under the checkers a lock in `Debug` would be a scheduling point
    // in the middle of a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").finish_non_exhaustive()
    }
}

/// A change to a file since its last `sync_all`, replayed or not by a crash.
#[derive(Debug, Clone)]
enum UnsyncedChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen { len: u64 },
}

#[derive(Debug, Default)]
struct FileInode {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<UnsyncedChange>,
    handles_open: u32,
    /// The handle holding the exclusive lock ([`VfsFile::try_lock_exclusive`]), if one does.
    locked_by: Option<u64>,
}

#[derive(Debug, Default)]
struct DirInode {
    entries: BTreeMap<String, InodeId>,
    durable_entries: BTreeMap<String, InodeId>,
}

#[derive(Debug)]
enum Inode {
    File(FileInode),
    Dir(DirInode),
}

#[derive(Debug)]
struct State {
    inodes: BTreeMap<InodeId, Inode>,
    inode_next: InodeId,
    /// Bumped by every crash; handles from an older generation fail.
    generation: u64,
    /// The id the next handle gets (handle ids name lock holders).
    handle_next: u64,
    op_count: u64,
    rules: Vec<FaultRule>,
    /// The index of the operation at which the power was cut, until `crash`.
    power_cut_at: Option<u64>,
}

impl Default for State {
    fn default() -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT_ABSOLUTE, Inode::Dir(DirInode::default()));
        inodes.insert(ROOT_RELATIVE, Inode::Dir(DirInode::default()));
        State {
            inodes,
            inode_next: ROOT_RELATIVE + 1,
            generation: 0,
            handle_next: 0,
            op_count: 0,
            rules: Vec::new(),
            power_cut_at: None,
        }
    }
}

/// A normalised path: a root and the names under it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimPath {
    root: InodeId,
    names: Vec<String>,
}

impl SimPath {
    fn parse(path: &Path) -> io::Result<SimPath> {
        let mut root = ROOT_RELATIVE;
        let mut names: Vec<String> = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir => {
                    root = ROOT_ABSOLUTE;
                    names.clear();
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    // `/..` is `/`; a relative path cannot climb above its root because the
                    // relative root has no parent in this file system.
                    if names.pop().is_none() && root == ROOT_RELATIVE {
                        return Err(invalid_input(path, "`..` climbs above the relative root"));
                    }
                }
                Component::Normal(name) => match name.to_str() {
                    Some(name) => names.push(name.to_owned()),
                    None => return Err(invalid_input(path, "names must be UTF-8")),
                },
                Component::Prefix(_) => {
                    return Err(invalid_input(path, "path prefixes are not supported"))
                }
            }
        }
        Ok(SimPath { root, names })
    }

    fn split_last(&self) -> Option<(&[String], &str)> {
        self.names
            .split_last()
            .map(|(last, parents)| (parents, last.as_str()))
    }

    fn is_ancestor_of(&self, other: &SimPath) -> bool {
        self.root == other.root
            && self.names.len() < other.names.len()
            && other.names.starts_with(&self.names)
    }
}

fn error(kind: io::ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("simfs: {}: {what}", path.display()))
}

fn invalid_input(path: &Path, what: &str) -> io::Error {
    error(io::ErrorKind::InvalidInput, path, what)
}

fn not_found(path: &Path) -> io::Error {
    error(io::ErrorKind::NotFound, path, "no such file or directory")
}

fn not_a_directory(path: &Path) -> io::Error {
    error(io::ErrorKind::NotADirectory, path, "not a directory")
}

fn is_a_directory(path: &Path) -> io::Error {
    error(io::ErrorKind::IsADirectory, path, "is a directory")
}

fn too_large(path: &Path, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "simfs: {}: length {len} exceeds the simulated maximum of {FILE_BYTES_MAX} bytes (EFBIG)",
            path.display()
        ),
    )
}

/// The payload of a power-cut error, so that [`SimFs::is_power_cut`] can recognise it.
#[derive(Debug)]
struct PowerCut {
    op_index: u64,
}

impl fmt::Display for PowerCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulated power cut at operation {} (EIO)",
            self.op_index
        )
    }
}

impl std::error::Error for PowerCut {}

impl State {
    /// Counts an operation and applies the fault plan to it.
    fn begin_op(&mut self, kind: FaultKind) -> io::Result<u64> {
        let op_index = self.op_count;
        self.op_count += 1;
        if let Some(cut_at) = self.power_cut_at {
            return Err(io::Error::other(PowerCut { op_index: cut_at }));
        }
        for rule in &mut self.rules {
            if rule.fired && !matches!(rule.action, FaultAction::Fail { sticky: true, .. }) {
                continue;
            }
            if op_index < rule.op_index_min || rule.kinds & kind.bit() == 0 {
                continue;
            }
            rule.fired = true;
            tracing::debug!(op_index, ?kind, action = ?rule.action, "simfs: injected fault");
            return Err(match rule.action {
                FaultAction::Fail { error, .. } => error.to_io_error(),
                FaultAction::PowerCut => {
                    self.power_cut_at = Some(op_index);
                    io::Error::other(PowerCut { op_index })
                }
            });
        }
        Ok(op_index)
    }

    fn allocate(&mut self, inode: Inode) -> InodeId {
        let id = self.inode_next;
        self.inode_next += 1;
        self.inodes.insert(id, inode);
        id
    }

    fn dir(&self, id: InodeId) -> Option<&DirInode> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, id: InodeId) -> &mut DirInode {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(dir)) => dir,
            _ => panic!("simfs: inode {id} should be a live directory"),
        }
    }

    fn file_mut(&mut self, id: InodeId) -> &mut FileInode {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => file,
            _ => panic!("simfs: inode {id} should be a live file"),
        }
    }

    /// The directory that `names` lead to from `root`, through current entries.
    fn resolve_dir(&self, root: InodeId, names: &[String], path: &Path) -> io::Result<InodeId> {
        let mut id = root;
        for name in names {
            let dir = self.dir(id).ok_or_else(|| not_a_directory(path))?;
            id = *dir.entries.get(name).ok_or_else(|| not_found(path))?;
        }
        match self.inodes.get(&id) {
            Some(Inode::Dir(_)) => Ok(id),
            _ => Err(not_a_directory(path)),
        }
    }

    /// The inode `path` names, through current entries.
    fn resolve(&self, path: &SimPath, display: &Path) -> io::Result<InodeId> {
        match path.split_last() {
            None => Ok(path.root),
            Some((parents, name)) => {
                let parent = self.resolve_dir(path.root, parents, display)?;
                self.dir(parent)
                    .and_then(|dir| dir.entries.get(name).copied())
                    .ok_or_else(|| not_found(display))
            }
        }
    }

    /// The parent directory of `path` and its last name; `None` for a root.
    fn resolve_parent<'p>(
        &self,
        path: &'p SimPath,
        display: &Path,
    ) -> io::Result<Option<(InodeId, &'p str)>> {
        match path.split_last() {
            None => Ok(None),
            Some((parents, name)) => {
                let parent = self.resolve_dir(path.root, parents, display)?;
                Ok(Some((parent, name)))
            }
        }
    }

    fn file_at(&mut self, path: &Path) -> io::Result<&mut FileInode> {
        let id = self.resolve(&SimPath::parse(path)?, path)?;
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => Ok(file),
            _ => Err(is_a_directory(path)),
        }
    }

    /// Empties the current entries of a removed directory and of every directory under it, as
    /// `remove_dir_all` unlinks them one by one. Durable entries stay: those unlinks are not
    /// durable until the directories are synced, which nobody can do once they are unlinked.
    fn clear_subtree(&mut self, top: InodeId) {
        let mut stack = vec![top];
        while let Some(id) = stack.pop() {
            if let Some(Inode::Dir(dir)) = self.inodes.get_mut(&id) {
                let entries = std::mem::take(&mut dir.entries);
                stack.extend(entries.into_values());
            }
        }
    }

    /// Frees every inode that no current entry, durable entry or open handle reaches. Runs in
    /// O(inodes) after each operation that can orphan one; the trees are small.
    fn collect_garbage(&mut self) -> u64 {
        let mut reached: BTreeSet<InodeId> = BTreeSet::new();
        let mut stack = vec![ROOT_ABSOLUTE, ROOT_RELATIVE];
        for (id, inode) in &self.inodes {
            if let Inode::File(file) = inode {
                if file.handles_open > 0 {
                    stack.push(*id);
                }
            }
        }
        while let Some(id) = stack.pop() {
            if !reached.insert(id) {
                continue;
            }
            if let Some(Inode::Dir(dir)) = self.inodes.get(&id) {
                stack.extend(dir.entries.values().copied());
                stack.extend(dir.durable_entries.values().copied());
            }
        }
        let before = self.inodes.len();
        self.inodes.retain(|id, _| reached.contains(id));
        (before - self.inodes.len()) as u64
    }

    /// Paths of every file reachable from the roots, through current or durable entries.
    fn file_paths(&self, durable: bool) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        let mut stack = vec![
            (ROOT_ABSOLUTE, PathBuf::from("/")),
            (ROOT_RELATIVE, PathBuf::new()),
        ];
        let mut visited: BTreeSet<InodeId> = BTreeSet::new();
        while let Some((id, path)) = stack.pop() {
            match self.inodes.get(&id) {
                Some(Inode::File(_)) => paths.push(path),
                Some(Inode::Dir(dir)) => {
                    // A directory reached twice (a half-durable rename) is listed once.
                    if !visited.insert(id) {
                        continue;
                    }
                    let entries = if durable {
                        &dir.durable_entries
                    } else {
                        &dir.entries
                    };
                    for (name, child) in entries {
                        stack.push((*child, path.join(name)));
                    }
                }
                None => {}
            }
        }
        paths.sort();
        paths
    }
}

/// An inode to visit in the crash walk: its id, its path, and the entry (parent, name) that
/// reached it (`None` for a root).
type CrashVisit = (InodeId, PathBuf, Option<(InodeId, String)>);

/// splitmix64: a tiny, well-mixed, seedable generator, so a crash is reproducible from its seed
/// without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` is small, so the modulo bias is negligible.
    fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }
}

fn write_bytes(target: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if target.len() < end {
        target.resize(end, 0);
    }
    target[start..end].copy_from_slice(bytes);
}

/// Replays a file's unsynced changes over its durable bytes, each dropped, kept or torn by `rng`.
fn settle_file(file: &mut FileInode, path: &Path, rng: &mut SplitMix64, report: &mut CrashReport) {
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

impl SimFs {
    /// An empty file system: just the roots `/` and `""`.
    pub fn new() -> Self {
        SimFs::default()
    }

    /// The index the next operation gets: the number of operations so far. Run a workload once
    /// to learn its operation count, then re-run it with a fault or crash at each index.
    pub fn op_count(&self) -> u64 {
        self.state.lock().op_count
    }

    /// Replaces the fault plan. A power cut that already happened stays until [`SimFs::crash`].
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.state.lock().rules = plan.rules;
    }

    /// Removes every fault rule (same power-cut caveat as [`SimFs::set_fault_plan`]).
    pub fn clear_faults(&self) {
        self.state.lock().rules.clear();
    }

    /// The index of the operation at which a `crash_at` rule cut the power, if it has and no
    /// [`SimFs::crash`] has restarted since.
    pub fn power_cut_at(&self) -> Option<u64> {
        self.state.lock().power_cut_at
    }

    /// Whether `err` is the error of an operation refused because of a simulated power cut.
    pub fn is_power_cut(err: &io::Error) -> bool {
        err.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<PowerCut>().is_some())
    }

    /// A power cut and restart; see "Crash" in the module doc. Unsynced writes are dropped,
    /// kept or torn by `seed`; directories revert to their durable entries; handles opened
    /// before fail; the fault plan is cleared.
    pub fn crash(&self, seed: u64) -> CrashReport {
        let mut state = self.state.lock();
        let state = &mut *state;
        state.generation += 1;
        state.rules.clear();
        state.power_cut_at = None;
        for inode in state.inodes.values_mut() {
            if let Inode::File(file) = inode {
                file.handles_open = 0;
                file.locked_by = None; // a restart ends every process, and its locks
            }
        }
        let mut rng = SplitMix64(seed);
        let mut report = CrashReport::default();
        // Walk the durable tree in path order (depth first, names sorted) so that the random
        // choices land on the same files for the same seed.
        let mut visited: BTreeSet<InodeId> = BTreeSet::new();
        // A directory moved between two parents with only one of them synced is reachable twice;
        // a directory cannot have two names, so it keeps the first in path order.
        let mut duplicate_dir_names: Vec<(InodeId, String)> = Vec::new();
        let mut stack: Vec<CrashVisit> = vec![
            (ROOT_RELATIVE, PathBuf::new(), None),
            (ROOT_ABSOLUTE, PathBuf::from("/"), None),
        ];
        while let Some((id, path, entry)) = stack.pop() {
            let first_visit = visited.insert(id);
            match state.inodes.get_mut(&id) {
                Some(Inode::File(file)) if first_visit => {
                    settle_file(file, &path, &mut rng, &mut report)
                }
                Some(Inode::File(_)) => {} // a file under two names is settled once
                Some(Inode::Dir(_)) if !first_visit => duplicate_dir_names.extend(entry),
                Some(Inode::Dir(dir)) => {
                    dir.entries = dir.durable_entries.clone();
                    for (name, child) in dir.entries.iter().rev() {
                        stack.push((*child, path.join(name), Some((id, name.clone()))));
                    }
                }
                None => panic!(
                    "simfs: durable entry {} names no inode {id}",
                    path.display()
                ),
            }
        }
        for (parent, name) in duplicate_dir_names {
            let dir = state.dir_mut(parent);
            dir.entries.remove(&name);
            dir.durable_entries.remove(&name);
        }
        report.inodes_freed = state.collect_garbage();
        tracing::debug!(seed, ?report, "simfs: crash");
        report
    }

    /// The durable bytes of the file at `path` (resolved through current entries): what a crash
    /// would leave if no unsynced change survived and the file's name did.
    pub fn read_durable(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.state.lock().file_at(path)?.durable.clone())
    }

    /// The length of [`SimFs::read_durable`].
    pub fn durable_len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.state.lock().file_at(path)?.durable.len() as u64)
    }

    /// The current bytes of the file at `path`, without an operation (no fault applies).
    pub fn read_current(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.state.lock().file_at(path)?.current.clone())
    }

    /// The paths of every file in the current namespace, sorted. Absolute paths start with `/`,
    /// relative ones do not.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.state.lock().file_paths(false)
    }

    /// The paths of every file a crash would keep (those reached through durable entries).
    pub fn durable_file_names(&self) -> Vec<PathBuf> {
        self.state.lock().file_paths(true)
    }

    /// Flips bit `bit` (0 = least significant) of byte `offset` of the file at `path`, in its
    /// current bytes and, if the durable bytes reach that far, in them too. Not an operation. An
    /// unsynced write over that byte that a crash keeps still overwrites the flip, as on a disk.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        if bit >= 8 {
            return Err(invalid_input(path, "a byte has bits 0..8"));
        }
        let mut state = self.state.lock();
        let file = state.file_at(path)?;
        if offset >= file.current.len() as u64 {
            return Err(invalid_input(path, "offset is past the end of the file"));
        }
        file.current[offset as usize] ^= 1 << bit;
        if let Some(byte) = file.durable.get_mut(offset as usize) {
            *byte ^= 1 << bit;
        }
        Ok(())
    }

    /// Cuts (or zero-extends) the file at `path` to `len` bytes, in its current and its durable
    /// bytes. Not an operation; pending unsynced changes stay pending.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        if len > FILE_BYTES_MAX {
            return Err(too_large(path, len));
        }
        let mut state = self.state.lock();
        let file = state.file_at(path)?;
        file.current.resize(len as usize, 0);
        file.durable.resize(len as usize, 0);
        Ok(())
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Open)?;
        let sim_path = SimPath::parse(path)?;
        let (parent, name) = state
            .resolve_parent(&sim_path, path)?
            .ok_or_else(|| is_a_directory(path))?;
        let existing = state
            .dir(parent)
            .and_then(|dir| dir.entries.get(name).copied());
        let inode = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(error(io::ErrorKind::AlreadyExists, path, "file exists"))
            }
            (Some(id), _) => match state.inodes.get(&id) {
                Some(Inode::File(_)) => id,
                _ => return Err(is_a_directory(path)),
            },
            (None, OpenMode::Read | OpenMode::ReadWrite) => return Err(not_found(path)),
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                let id = state.allocate(Inode::File(FileInode::default()));
                state.dir_mut(parent).entries.insert(name.to_owned(), id);
                id
            }
        };
        state.file_mut(inode).handles_open += 1;
        let handle = state.handle_next;
        state.handle_next += 1;
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
            handle,
            generation: state.generation,
            writable: mode != OpenMode::Read,
            path: path.to_path_buf(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::CreateDir)?;
        let sim_path = SimPath::parse(path)?;
        let mut id = sim_path.root;
        let last = sim_path.names.len();
        for (position, name) in sim_path.names.iter().enumerate() {
            let existing = state.dir(id).and_then(|dir| dir.entries.get(name).copied());
            id = match existing {
                Some(child) => match state.inodes.get(&child) {
                    Some(Inode::Dir(_)) => child,
                    _ if position + 1 == last => {
                        return Err(error(io::ErrorKind::AlreadyExists, path, "file exists"))
                    }
                    _ => return Err(not_a_directory(path)),
                },
                None => {
                    let child = state.allocate(Inode::Dir(DirInode::default()));
                    state.dir_mut(id).entries.insert(name.clone(), child);
                    child
                }
            };
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::ReadDir)?;
        let id = state.resolve(&SimPath::parse(path)?, path)?;
        let dir = state.dir(id).ok_or_else(|| not_a_directory(path))?;
        // BTreeMap keys come sorted, as the trait asks.
        Ok(dir.entries.keys().cloned().collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Stat)?;
        match state.resolve(&SimPath::parse(path)?, path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Stat)?;
        match state.resolve(&SimPath::parse(path)?, path) {
            Ok(id) => Ok(state.dir(id).is_some()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Remove)?;
        let sim_path = SimPath::parse(path)?;
        let (parent, name) = state
            .resolve_parent(&sim_path, path)?
            .ok_or_else(|| is_a_directory(path))?;
        let id = state
            .dir(parent)
            .and_then(|dir| dir.entries.get(name).copied())
            .ok_or_else(|| not_found(path))?;
        if state.dir(id).is_some() {
            return Err(is_a_directory(path));
        }
        state.dir_mut(parent).entries.remove(name);
        state.collect_garbage();
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Remove)?;
        let sim_path = SimPath::parse(path)?;
        let (parent, name) = state
            .resolve_parent(&sim_path, path)?
            .ok_or_else(|| invalid_input(path, "refusing to remove a root"))?;
        let id = state
            .dir(parent)
            .and_then(|dir| dir.entries.get(name).copied())
            .ok_or_else(|| not_found(path))?;
        if state.dir(id).is_none() {
            return Err(not_a_directory(path));
        }
        state.dir_mut(parent).entries.remove(name);
        state.clear_subtree(id);
        state.collect_garbage();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::Rename)?;
        let from_path = SimPath::parse(from)?;
        let to_path = SimPath::parse(to)?;
        let (from_parent, from_name) = state
            .resolve_parent(&from_path, from)?
            .ok_or_else(|| invalid_input(from, "cannot rename a root"))?;
        let moving = state
            .dir(from_parent)
            .and_then(|dir| dir.entries.get(from_name).copied())
            .ok_or_else(|| not_found(from))?;
        let (to_parent, to_name) = state
            .resolve_parent(&to_path, to)?
            .ok_or_else(|| invalid_input(to, "cannot rename onto a root"))?;
        let replaced = state
            .dir(to_parent)
            .and_then(|dir| dir.entries.get(to_name).copied());
        if replaced == Some(moving) {
            // Same inode under both names: POSIX says do nothing.
            return Ok(());
        }
        let moving_is_dir = state.dir(moving).is_some();
        if moving_is_dir && from_path.is_ancestor_of(&to_path) {
            return Err(invalid_input(to, "cannot move a directory into itself"));
        }
        if let Some(target) = replaced {
            match (moving_is_dir, state.dir(target)) {
                (false, Some(_)) => return Err(is_a_directory(to)),
                (true, None) => return Err(not_a_directory(to)),
                (true, Some(dir)) if !dir.entries.is_empty() => {
                    return Err(error(
                        io::ErrorKind::DirectoryNotEmpty,
                        to,
                        "directory not empty",
                    ))
                }
                _ => {}
            }
        }
        state.dir_mut(from_parent).entries.remove(from_name);
        state
            .dir_mut(to_parent)
            .entries
            .insert(to_name.to_owned(), moving);
        if replaced.is_some() {
            state.collect_garbage();
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin_op(FaultKind::SyncDir)?;
        let id = state.resolve(&SimPath::parse(path)?, path)?;
        if state.dir(id).is_none() {
            return Err(not_a_directory(path));
        }
        let dir = state.dir_mut(id);
        dir.durable_entries = dir.entries.clone();
        state.collect_garbage();
        Ok(())
    }
}

/// A handle to a `SimFs` file. It names the inode, so it follows renames and keeps a removed file
/// readable, and it dies with the generation it was opened in.
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: InodeId,
    /// Unique among every handle this file system opened.
    handle: u64,
    generation: u64,
    writable: bool,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("inode", &self.inode)
            .field("generation", &self.generation)
            .field("writable", &self.writable)
            .finish()
    }
}

impl SimFile {
    /// Locks the state, counts the operation, applies the fault plan and checks that the handle
    /// outlived no crash; then runs `body` on the file.
    fn with_file<T>(
        &self,
        kind: FaultKind,
        body: impl FnOnce(&mut FileInode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.state.lock();
        state.begin_op(kind)?;
        if state.generation != self.generation {
            return Err(io::Error::other(format!(
                "simfs: {}: handle opened before a simulated crash",
                self.path.display()
            )));
        }
        body(state.file_mut(self.inode))
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.generation != self.generation {
            // The crash already forgot every handle of that generation.
            return;
        }
        let file = state.file_mut(self.inode);
        debug_assert!(file.handles_open > 0, "simfs: handle count underflow");
        file.handles_open -= 1;
        if file.locked_by == Some(self.handle) {
            file.locked_by = None;
        }
        if file.handles_open == 0 {
            state.collect_garbage();
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_file(FaultKind::Read, |file| {
            let len = file.current.len() as u64;
            if offset >= len {
                return Ok(0);
            }
            let start = offset as usize;
            let count = buf.len().min(file.current.len() - start);
            buf[..count].copy_from_slice(&file.current[start..start + count]);
            Ok(count)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_file(FaultKind::Write, |file| {
            self.check_writable()?;
            let end = offset
                .checked_add(buf.len() as u64)
                .filter(|end| *end <= FILE_BYTES_MAX)
                .ok_or_else(|| too_large(&self.path, offset.saturating_add(buf.len() as u64)))?;
            if buf.is_empty() {
                return Ok(());
            }
            write_bytes(&mut file.current, offset, buf);
            debug_assert!(file.current.len() as u64 >= end);
            file.unsynced.push(UnsyncedChange::Write {
                offset,
                bytes: buf.to_vec(),
            });
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(FaultKind::Stat, |file| Ok(file.current.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(FaultKind::SetLen, |file| {
            self.check_writable()?;
            if len > FILE_BYTES_MAX {
                return Err(too_large(&self.path, len));
            }
            file.current.resize(len as usize, 0);
            file.unsynced.push(UnsyncedChange::SetLen { len });
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.with_file(FaultKind::SyncFile, |file| {
            if !file.unsynced.is_empty() {
                file.durable = file.current.clone();
                file.unsynced.clear();
            }
            debug_assert_eq!(file.durable.len(), file.current.len());
            Ok(())
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn try_lock_exclusive(&self) -> io::Result<bool> {
        self.with_file(FaultKind::Lock, |file| match file.locked_by {
            Some(holder) if holder != self.handle => Ok(false),
            _ => {
                file.locked_by = Some(self.handle);
                Ok(true)
            }
        })
    }

    fn is_locked_by_other(&self) -> io::Result<bool> {
        self.with_file(FaultKind::Lock, |file| {
            Ok(file.locked_by.is_some_and(|holder| holder != self.handle))
        })
    }

    fn copy_to(
        &self,
        src_offset: u64,
        dst: &dyn VfsFile,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        self.with_file(FaultKind::Copy, |_| Ok(()))?;
        // The lock is released: the copy's own reads and writes are operations of their own.
        copy_through_buffer(self, src_offset, dst, dst_offset, len)
    }
}

#[cfg(test)]
mod tests {
    //! Each test names the behaviour of the model it pins; the crash-enumeration test also shows
    //! that a checker built on SimFs finds a missing fsync (STYLE rule 2).

    use super::*;

    const SEEDS: u64 = 64;

    fn path(text: &str) -> &Path {
        Path::new(text)
    }

    /// A durable directory `store` holding a durable, synced file `store/data` of `len` bytes of
    /// `fill`.
    fn store_with_synced_file(fs: &SimFs, fill: u8, len: usize) -> Arc<dyn VfsFile> {
        fs.create_dir_all(path("store")).unwrap();
        fs.sync_dir(path("")).unwrap();
        let file = fs.open(path("store/data"), OpenMode::CreateNew).unwrap();
        file.write_all_at(&vec![fill; len], 0).unwrap();
        file.sync_all().unwrap();
        fs.sync_dir(path("store")).unwrap();
        file
    }

    fn read_all(fs: &SimFs, name: &str) -> io::Result<Vec<u8>> {
        let file = fs.open(path(name), OpenMode::Read)?;
        let mut bytes = vec![0u8; file.len()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    fn errno(result: io::Result<impl fmt::Debug>) -> Option<i32> {
        result.expect_err("operation should fail").raw_os_error()
    }

    fn kind(result: io::Result<impl fmt::Debug>) -> io::ErrorKind {
        result.expect_err("operation should fail").kind()
    }

    #[test]
    fn synced_write_survives_every_crash() {
        for seed in 0..SEEDS {
            let fs = SimFs::new();
            drop(store_with_synced_file(&fs, 0xAA, 3000));
            fs.crash(seed);
            assert_eq!(
                read_all(&fs, "store/data").unwrap(),
                vec![0xAA; 3000],
                "seed {seed}"
            );
        }
    }

    #[test]
    fn unsynced_write_is_dropped_kept_or_torn_at_a_sector_boundary_by_seed() {
        // Bytes [700, 2200) span the sector boundaries 1024, 1536 and 2048.
        const OFFSET: usize = 700;
        const LEN: usize = 1500;
        let mut outcomes = [0u32; 3]; // dropped, kept, torn
        for seed in 0..SEEDS {
            let fs = SimFs::new();
            let file = store_with_synced_file(&fs, 0xAA, 4096);
            file.write_all_at(&[0xBB; LEN], OFFSET as u64).unwrap();
            let report = fs.crash(seed);
            let bytes = read_all(&fs, "store/data").unwrap();
            assert_eq!(bytes.len(), 4096, "seed {seed}");
            let kept = bytes[OFFSET..]
                .iter()
                .take_while(|b| **b == 0xBB)
                .count()
                .min(LEN);
            let mut expected = vec![0xAA; 4096];
            expected[OFFSET..OFFSET + kept].fill(0xBB);
            assert_eq!(bytes, expected, "seed {seed}: not a prefix of the write");
            let outcome = match kept {
                0 => 0,
                LEN => 1,
                _ => {
                    assert_eq!((OFFSET + kept) % SECTOR_BYTES as usize, 0, "seed {seed}");
                    2
                }
            };
            let reported = [
                report.writes_dropped,
                report.writes_kept,
                report.writes_torn,
            ];
            assert_eq!(reported.iter().sum::<u64>(), 1, "seed {seed}");
            assert_eq!(
                reported[outcome], 1,
                "seed {seed}: report disagrees with bytes"
            );
            outcomes[outcome] += 1;
        }
        assert!(
            outcomes.iter().all(|count| *count > 0),
            "every outcome must happen for some seed: dropped/kept/torn = {outcomes:?}"
        );
    }

    #[test]
    fn write_inside_one_sector_is_never_torn() {
        let mut kept_count = 0;
        for seed in 0..SEEDS {
            let fs = SimFs::new();
            let file = store_with_synced_file(&fs, 0xAA, 512);
            file.write_all_at(&[0xBB; 100], 10).unwrap();
            fs.crash(seed);
            let bytes = read_all(&fs, "store/data").unwrap();
            let bb_count = bytes.iter().filter(|b| **b == 0xBB).count();
            assert!(
                bb_count == 0 || bb_count == 100,
                "seed {seed}: {bb_count} bytes kept"
            );
            kept_count += usize::from(bb_count == 100);
        }
        assert!(kept_count > 0 && kept_count < SEEDS as usize);
    }

    #[test]
    fn unsynced_create_vanishes_and_dir_synced_create_survives() {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0, 0));
        let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"content", 0).unwrap();
        file.sync_all().unwrap(); // the bytes are durable, the name is not
        assert_eq!(fs.durable_file_names(), vec![PathBuf::from("store/data")]);
        fs.crash(1);
        assert!(!fs.exists(path("store/new")).unwrap());
        assert_eq!(fs.file_names(), vec![PathBuf::from("store/data")]);

        let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"content", 0).unwrap();
        file.sync_all().unwrap();
        fs.sync_dir(path("store")).unwrap();
        fs.crash(1);
        assert_eq!(read_all(&fs, "store/new").unwrap(), b"content");
    }

    #[test]
    fn dir_synced_create_without_sync_all_is_empty_or_a_torn_prefix() {
        let mut empty_count = 0;
        for seed in 0..SEEDS {
            let fs = SimFs::new();
            drop(store_with_synced_file(&fs, 0, 0));
            let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
            fs.sync_dir(path("store")).unwrap();
            file.write_all_at(&[0xCC; 2048], 0).unwrap();
            fs.crash(seed);
            let bytes = read_all(&fs, "store/new").unwrap();
            assert_eq!(bytes.len() % SECTOR_BYTES as usize, 0, "seed {seed}");
            assert!(bytes.iter().all(|b| *b == 0xCC), "seed {seed}");
            empty_count += usize::from(bytes.is_empty());
        }
        assert!(empty_count > 0);
    }

    #[test]
    fn unsynced_remove_reappears_after_crash() {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0x11, 10));
        fs.remove_file(path("store/data")).unwrap();
        assert!(fs.file_names().is_empty());
        fs.crash(3);
        assert_eq!(read_all(&fs, "store/data").unwrap(), vec![0x11; 10]);

        fs.remove_file(path("store/data")).unwrap();
        fs.sync_dir(path("store")).unwrap();
        fs.crash(3);
        assert!(!fs.exists(path("store/data")).unwrap());
    }

    #[test]
    fn directories_are_durable_only_after_sync_dir_of_their_parent() {
        let fs = SimFs::new();
        fs.create_dir_all(path("store/wal")).unwrap();
        fs.sync_dir(path("store")).unwrap(); // `wal` is in `store`, `store` is not in ""
        fs.crash(0);
        assert!(!fs.exists(path("store")).unwrap());

        fs.create_dir_all(path("store/wal")).unwrap();
        fs.sync_dir(path("")).unwrap();
        fs.sync_dir(path("store")).unwrap();
        fs.crash(0);
        assert!(fs.is_dir(path("store/wal")).unwrap());
    }

    /// Replaces `store/CONTROL` by writing `store/CONTROL.tmp` and renaming it over, the way the
    /// engine does; `sync_tmp: false` is the classic bug that renames bytes that are not durable.
    fn replace_control(fs: &SimFs, contents: &[u8], sync_tmp: bool) -> io::Result<()> {
        let tmp = fs.open(path("store/CONTROL.tmp"), OpenMode::Create)?;
        tmp.set_len(0)?;
        tmp.write_all_at(contents, 0)?;
        if sync_tmp {
            tmp.sync_all()?;
        }
        fs.rename(path("store/CONTROL.tmp"), path("store/CONTROL"))?;
        fs.sync_dir(path("store"))
    }

    const OLD: [u8; 1500] = [0x0D; 1500];
    const NEW: [u8; 1500] = [0x0E; 1500];

    fn store_with_old_control() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(path("store")).unwrap();
        fs.sync_dir(path("")).unwrap();
        replace_control(&fs, &OLD, true).unwrap();
        fs
    }

    #[test]
    fn rename_is_atomic_old_or_new_never_mixed() {
        for seed in 0..SEEDS {
            // Without the directory sync the rename is undone.
            let fs = store_with_old_control();
            let tmp = fs
                .open(path("store/CONTROL.tmp"), OpenMode::CreateNew)
                .unwrap();
            tmp.write_all_at(&NEW, 0).unwrap();
            tmp.sync_all().unwrap();
            fs.rename(path("store/CONTROL.tmp"), path("store/CONTROL"))
                .unwrap();
            assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), NEW);
            fs.crash(seed);
            assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), OLD, "seed {seed}");
            assert!(!fs.exists(path("store/CONTROL.tmp")).unwrap());

            // With it, the new file is in place.
            replace_control(&fs, &NEW, true).unwrap();
            fs.crash(seed);
            assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), NEW, "seed {seed}");
        }
    }

    #[test]
    fn half_synced_move_between_directories_keeps_the_file_under_some_name() {
        let fs = SimFs::new();
        fs.create_dir_all(path("a")).unwrap();
        fs.create_dir_all(path("b")).unwrap();
        fs.sync_dir(path("")).unwrap();
        let file = fs.open(path("a/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"f", 0).unwrap();
        file.sync_all().unwrap();
        fs.sync_dir(path("a")).unwrap();
        fs.rename(path("a/f"), path("b/f")).unwrap();
        fs.sync_dir(path("b")).unwrap(); // `a` still lists `f` durably
        fs.crash(0);
        assert_eq!(
            fs.file_names(),
            vec![PathBuf::from("a/f"), PathBuf::from("b/f")]
        );
        assert_eq!(read_all(&fs, "b/f").unwrap(), b"f");
    }

    /// Runs `replace_control` with a power cut at every operation and a crash under several seeds;
    /// after each restart CONTROL must hold OLD or NEW exactly. Returns the first counterexample.
    fn check_replace_control(sync_tmp: bool) -> Result<(), String> {
        let dry_run = store_with_old_control();
        let setup_ops = dry_run.op_count();
        replace_control(&dry_run, &NEW, sync_tmp).unwrap();
        let workload_ops = dry_run.op_count() - setup_ops;
        for cut in 0..=workload_ops {
            for seed in 0..8 {
                let fs = store_with_old_control();
                fs.set_fault_plan(FaultPlan::crash_at(setup_ops + cut));
                let outcome = replace_control(&fs, &NEW, sync_tmp);
                assert_eq!(outcome.is_ok(), cut == workload_ops, "cut {cut}");
                fs.crash(seed);
                let control = read_all(&fs, "store/CONTROL").map_err(|e| e.to_string());
                if control != Ok(OLD.to_vec()) && control != Ok(NEW.to_vec()) {
                    return Err(format!(
                        "replay with cut {cut} seed {seed}: CONTROL is {:?}",
                        control.map(|bytes| (bytes.len(), bytes.first().copied()))
                    ));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn crash_enumeration_accepts_write_fsync_rename_fsync_dir() {
        assert_eq!(check_replace_control(true), Ok(()));
    }

    #[test]
    fn crash_enumeration_finds_a_rename_of_unsynced_bytes() {
        let found = check_replace_control(false);
        assert!(found.is_err(), "the missing fsync must be found");
    }

    #[test]
    fn fail_at_fails_the_nth_operation_once_with_its_errno() {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 16);
        let next = fs.op_count();
        fs.set_fault_plan(FaultPlan::fail_at(next + 1, FaultError::Enospc));
        file.write_all_at(&[1], 0).unwrap(); // operation `next`
        assert_eq!(errno(file.write_all_at(&[2; 64], 0)), Some(libc::ENOSPC));
        assert_eq!(fs.read_current(path("store/data")).unwrap()[..2], [1, 0xAA]);
        assert_eq!(fs.read_current(path("store/data")).unwrap().len(), 16);
        file.write_all_at(&[3], 0).unwrap(); // one-shot: spent
        assert_eq!(fs.op_count(), next + 3);

        fs.set_fault_plan(FaultPlan::fail_at(fs.op_count(), FaultError::Eio));
        assert_eq!(errno(fs.exists(path("store"))), Some(libc::EIO));
        assert!(fs.exists(path("store")).unwrap());
    }

    #[test]
    fn sticky_fault_limited_to_kinds_fails_every_later_matching_operation() {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 16);
        fs.set_fault_plan(
            FaultPlan::fail_at(fs.op_count(), FaultError::Eio)
                .only(&[FaultKind::Write, FaultKind::SyncFile])
                .sticky(),
        );
        for _ in 0..3 {
            assert_eq!(errno(file.write_all_at(&[0], 0)), Some(libc::EIO));
            assert_eq!(errno(file.sync_all()), Some(libc::EIO));
            assert_eq!(file.len().unwrap(), 16);
            assert_eq!(file.read_at(&mut [0u8; 4], 0).unwrap(), 4);
        }
        fs.clear_faults();
        file.write_all_at(&[0], 0).unwrap();
        file.sync_all().unwrap();
    }

    #[test]
    fn one_shot_fault_limited_to_syncs_waits_for_the_first_sync() {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 16);
        fs.set_fault_plan(FaultPlan::fail_at(0, FaultError::Eio).only(&[FaultKind::SyncFile]));
        file.write_all_at(&[0xBB], 0).unwrap();
        assert_eq!(errno(file.sync_all()), Some(libc::EIO));
        assert_eq!(fs.read_durable(path("store/data")).unwrap()[0], 0xAA);
        file.sync_all().unwrap();
        assert_eq!(fs.read_durable(path("store/data")).unwrap()[0], 0xBB);
    }

    #[test]
    fn crash_at_fails_that_operation_and_every_later_one_until_crash() {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 16);
        let cut = fs.op_count() + 2;
        fs.set_fault_plan(
            FaultPlan::crash_at(cut).and(
                FaultPlan::fail_at(0, FaultError::Eio)
                    .only(&[FaultKind::ReadDir])
                    .sticky(),
            ),
        );
        file.write_all_at(&[1], 0).unwrap();
        file.sync_all().unwrap();
        let err = file.write_all_at(&[2], 0).unwrap_err();
        assert!(SimFs::is_power_cut(&err));
        assert!(
            err.to_string()
                .contains(&format!("simulated power cut at operation {cut}")),
            "{err}"
        );
        assert_eq!(fs.power_cut_at(), Some(cut));
        assert!(SimFs::is_power_cut(&fs.exists(path("store")).unwrap_err()));
        assert!(SimFs::is_power_cut(
            &fs.open(path("x"), OpenMode::Create).unwrap_err()
        ));
        assert!(SimFs::is_power_cut(
            &fs.sync_dir(path("store")).unwrap_err()
        ));
        assert!(SimFs::is_power_cut(&file.read_at(&mut [0], 0).unwrap_err()));
        fs.set_fault_plan(FaultPlan::none()); // does not restore power
        assert!(fs.exists(path("store")).is_err());

        fs.crash(0);
        assert_eq!(fs.power_cut_at(), None);
        assert_eq!(fs.read_dir(path("store")).unwrap(), vec!["data".to_owned()]);
        assert_eq!(read_all(&fs, "store/data").unwrap()[0], 1);
    }

    #[test]
    fn handles_opened_before_a_crash_fail_after_it() {
        let fs = SimFs::new();
        let old = store_with_synced_file(&fs, 0xAA, 16);
        fs.crash(0);
        assert!(old.read_at(&mut [0u8; 4], 0).is_err());
        assert!(old.write_all_at(&[0], 0).is_err());
        assert!(old.sync_all().is_err());
        assert!(old.len().is_err());
        let new = fs.open(path("store/data"), OpenMode::ReadWrite).unwrap();
        new.write_all_at(&[0], 0).unwrap();
        drop(old); // must not disturb the new generation's handle count
        new.sync_all().unwrap();
        let mut state = fs.state.lock();
        let inode = state
            .resolve(&SimPath::parse(path("store/data")).unwrap(), path(""))
            .unwrap();
        assert_eq!(state.file_mut(inode).handles_open, 1);
    }

    /// A workload with several files and unsynced writes, crashed with `seed`; returns every file
    /// with its bytes.
    fn crashed_state(seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
        let fs = SimFs::new();
        fs.create_dir_all(path("/db/wal")).unwrap();
        fs.sync_dir(path("/")).unwrap();
        fs.sync_dir(path("/db")).unwrap();
        for (index, name) in ["/db/a", "/db/b", "/db/wal/1", "/db/wal/2"]
            .iter()
            .enumerate()
        {
            let file = fs.open(path(name), OpenMode::Create).unwrap();
            file.write_all_at(&vec![index as u8; 1000 + 300 * index], 0)
                .unwrap();
            if index % 2 == 0 {
                file.sync_all().unwrap();
            }
            for write in 0..4u8 {
                let offset = u64::from(write) * 777;
                file.write_all_at(&[0xF0 | write; 900], offset).unwrap();
            }
            file.set_len(2500).unwrap();
        }
        fs.sync_dir(path("/db")).unwrap();
        fs.sync_dir(path("/db/wal")).unwrap();
        fs.crash(seed);
        fs.file_names()
            .into_iter()
            .map(|name| {
                let bytes = fs.read_current(&name).unwrap();
                (name, bytes)
            })
            .collect()
    }

    #[test]
    fn same_seed_gives_the_same_post_crash_state() {
        let mut distinct = BTreeSet::new();
        for seed in 0..16 {
            let state = crashed_state(seed);
            assert_eq!(state.len(), 4);
            assert_eq!(state, crashed_state(seed), "seed {seed}");
            distinct.insert(state);
        }
        assert!(
            distinct.len() > 8,
            "the seed must matter: {} states",
            distinct.len()
        );
    }

    #[test]
    fn bad_paths_and_modes_are_errors_not_panics() {
        use io::ErrorKind::*;
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0xAA, 16));
        assert_eq!(
            kind(fs.open(path("store/missing"), OpenMode::Read)),
            NotFound
        );
        assert_eq!(kind(fs.open(path("nodir/x"), OpenMode::Create)), NotFound);
        assert_eq!(
            kind(fs.open(path("store"), OpenMode::ReadWrite)),
            IsADirectory
        );
        assert_eq!(kind(fs.open(path("/"), OpenMode::Read)), IsADirectory);
        assert_eq!(
            kind(fs.open(path("store/data"), OpenMode::CreateNew)),
            AlreadyExists
        );
        assert_eq!(
            kind(fs.open(path("store/data/x"), OpenMode::Create)),
            NotADirectory
        );
        assert_eq!(kind(fs.open(path(".."), OpenMode::Read)), InvalidInput);
        assert_eq!(kind(fs.create_dir_all(path("store/data"))), AlreadyExists);
        assert_eq!(kind(fs.create_dir_all(path("store/data/x"))), NotADirectory);
        assert_eq!(kind(fs.read_dir(path("store/data"))), NotADirectory);
        assert_eq!(kind(fs.remove_file(path("store"))), IsADirectory);
        assert_eq!(kind(fs.remove_file(path("store/missing"))), NotFound);
        assert_eq!(kind(fs.remove_dir_all(path("store/data"))), NotADirectory);
        assert_eq!(kind(fs.remove_dir_all(path("."))), InvalidInput);
        assert_eq!(kind(fs.sync_dir(path("store/data"))), NotADirectory);
        assert_eq!(
            kind(fs.rename(path("store"), path("store/inner"))),
            InvalidInput
        );
        assert_eq!(
            kind(fs.rename(path("store/data"), path("store"))),
            IsADirectory
        );
        assert_eq!(kind(fs.rename(path("store/missing"), path("x"))), NotFound);
        assert_eq!(kind(fs.is_dir(path("store/data/x"))), NotADirectory);
        assert!(!fs.exists(path("store/missing")).unwrap());
        assert_eq!(kind(fs.flip_bit(path("store/data"), 16, 0)), InvalidInput);
        assert_eq!(kind(fs.flip_bit(path("store/data"), 0, 8)), InvalidInput);

        let read_only = fs
            .open(path("./store/../store/data"), OpenMode::Read)
            .unwrap();
        assert_eq!(errno(read_only.write_all_at(&[0], 0)), Some(libc::EBADF));
        assert_eq!(errno(read_only.set_len(0)), Some(libc::EBADF));
        let file = fs.open(path("store/data"), OpenMode::ReadWrite).unwrap();
        assert_eq!(kind(file.write_all_at(&[0], FILE_BYTES_MAX)), FileTooLarge);
        assert_eq!(kind(file.write_all_at(&[0], u64::MAX)), FileTooLarge);
        assert_eq!(kind(file.set_len(FILE_BYTES_MAX + 1)), FileTooLarge);
        assert_eq!(file.read_at(&mut [0u8; 8], u64::MAX).unwrap(), 0);
        assert_eq!(fs.read_current(path("store/data")).unwrap(), vec![0xAA; 16]);
    }

    #[test]
    fn removed_open_file_stays_readable_and_is_freed_once_closed_and_unlinked_durably() {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 16);
        let inodes_with_file = fs.state.lock().inodes.len();
        fs.remove_file(path("store/data")).unwrap();
        fs.sync_dir(path("store")).unwrap();
        let mut buf = [0u8; 16];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0xAA; 16]);
        assert_eq!(fs.state.lock().inodes.len(), inodes_with_file);
        drop(file);
        assert_eq!(fs.state.lock().inodes.len(), inodes_with_file - 1);
    }

    #[test]
    fn remove_dir_all_then_crash_brings_back_the_durable_tree() {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0xAA, 16));
        fs.remove_dir_all(path("store")).unwrap();
        assert!(!fs.exists(path("store")).unwrap());
        fs.crash(0);
        assert_eq!(fs.read_durable(path("store/data")).unwrap(), vec![0xAA; 16]);
        fs.remove_dir_all(path("store")).unwrap();
        fs.sync_dir(path("")).unwrap();
        assert!(fs.durable_file_names().is_empty());
        assert_eq!(fs.state.lock().inodes.len(), 2, "only the roots are left");
    }

    #[test]
    fn copy_to_copies_a_range_through_counted_reads_and_writes() {
        let fs = SimFs::new();
        let source = store_with_synced_file(&fs, 0xAA, 3000);
        source.write_all_at(&[0x55; 100], 1000).unwrap();
        let target = fs.open(path("store/copy"), OpenMode::Create).unwrap();
        let before = fs.op_count();
        assert_eq!(source.copy_to(950, target.as_ref(), 10, 200).unwrap(), 200);
        assert_eq!(fs.op_count() - before, 3, "copy + read + write");
        let copied = fs.read_current(path("store/copy")).unwrap();
        assert_eq!(copied.len(), 210);
        assert_eq!(copied[10..60], [0xAA; 50]);
        assert_eq!(copied[60..160], [0x55; 100]);
        assert_eq!(source.copy_to(2900, target.as_ref(), 0, 500).unwrap(), 100);

        fs.set_fault_plan(FaultPlan::fail_at(0, FaultError::Enospc).only(&[FaultKind::Write]));
        assert_eq!(
            errno(source.copy_to(0, target.as_ref(), 0, 10)),
            Some(libc::ENOSPC)
        );
    }

    #[test]
    fn flip_bit_and_truncate_reach_volatile_and_durable_bytes() {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0, 1024));
        fs.flip_bit(path("store/data"), 513, 3).unwrap();
        fs.truncate(path("store/data"), 600).unwrap();
        for bytes in [
            fs.read_current(path("store/data")).unwrap(),
            fs.read_durable(path("store/data")).unwrap(),
        ] {
            assert_eq!(bytes.len(), 600);
            assert_eq!(bytes[513], 0b1000);
        }
        assert_eq!(fs.durable_len(path("store/data")).unwrap(), 600);
        fs.crash(9);
        assert_eq!(read_all(&fs, "store/data").unwrap()[513], 0b1000);
    }
}
