//! The model (module doc, "The model"): inodes, durable and current bytes and entries, paths,
//! and the state behind one lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::fault::{FaultAction, FaultKind, FaultRule};

/// The unit a torn write is cut at: a crash keeps a prefix of a write that ends on a multiple of
/// this many bytes from the start of the file.
pub const SECTOR_BYTES: u64 = 512;

/// The largest file `SimFs` holds; writes and `set_len` beyond it fail with `EFBIG`.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

pub(super) type InodeId = u64;

/// The root of absolute paths, `/`.
pub(super) const ROOT_ABSOLUTE: InodeId = 0;
/// The root of relative paths, `""` or `.`.
pub(super) const ROOT_RELATIVE: InodeId = 1;

/// A change to a file since its last `sync_all`, replayed or not by a crash.
#[derive(Debug, Clone)]
pub(super) enum UnsyncedChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen { len: u64 },
}

#[derive(Debug, Default)]
pub(super) struct FileInode {
    pub(super) current: Vec<u8>,
    pub(super) durable: Vec<u8>,
    pub(super) unsynced: Vec<UnsyncedChange>,
    pub(super) handles_open: u32,
    /// The handle holding the exclusive lock ([`VfsFile::try_lock_exclusive`](crate::vfs::VfsFile::try_lock_exclusive)), if one does.
    pub(super) locked_by: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct DirInode {
    pub(super) entries: BTreeMap<String, InodeId>,
    pub(super) durable_entries: BTreeMap<String, InodeId>,
}

#[derive(Debug)]
pub(super) enum Inode {
    File(FileInode),
    Dir(DirInode),
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) inodes: BTreeMap<InodeId, Inode>,
    pub(super) inode_next: InodeId,
    /// Bumped by every crash; handles from an older generation fail.
    pub(super) generation: u64,
    /// The id the next handle gets (handle ids name lock holders).
    pub(super) handle_next: u64,
    pub(super) op_count: u64,
    pub(super) rules: Vec<FaultRule>,
    /// The index of the operation at which the power was cut, until `crash`.
    pub(super) power_cut_at: Option<u64>,
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
pub(super) struct SimPath {
    pub(super) root: InodeId,
    pub(super) names: Vec<String>,
}

impl SimPath {
    pub(super) fn parse(path: &Path) -> io::Result<SimPath> {
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

    pub(super) fn split_last(&self) -> Option<(&[String], &str)> {
        self.names
            .split_last()
            .map(|(last, parents)| (parents, last.as_str()))
    }

    pub(super) fn is_ancestor_of(&self, other: &SimPath) -> bool {
        self.root == other.root
            && self.names.len() < other.names.len()
            && other.names.starts_with(&self.names)
    }
}

pub(super) fn error(kind: io::ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("simfs: {}: {what}", path.display()))
}

pub(super) fn invalid_input(path: &Path, what: &str) -> io::Error {
    error(io::ErrorKind::InvalidInput, path, what)
}

pub(super) fn not_found(path: &Path) -> io::Error {
    error(io::ErrorKind::NotFound, path, "no such file or directory")
}

pub(super) fn not_a_directory(path: &Path) -> io::Error {
    error(io::ErrorKind::NotADirectory, path, "not a directory")
}

pub(super) fn is_a_directory(path: &Path) -> io::Error {
    error(io::ErrorKind::IsADirectory, path, "is a directory")
}

pub(super) fn too_large(path: &Path, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "simfs: {}: length {len} exceeds the simulated maximum of {FILE_BYTES_MAX} bytes (EFBIG)",
            path.display()
        ),
    )
}

/// The payload of a power-cut error, so that [`SimFs::is_power_cut`](crate::vfs::SimFs::is_power_cut) can recognise it.
#[derive(Debug)]
pub(super) struct PowerCut {
    pub(super) op_index: u64,
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
    pub(super) fn begin_op(&mut self, kind: FaultKind) -> io::Result<u64> {
        let op_index = self.op_count;
        self.op_count += 1;
        if let Some(cut_at) = self.power_cut_at {
            return Err(io::Error::other(PowerCut { op_index: cut_at }));
        }
        for rule in &mut self.rules {
            if rule.fired && !matches!(rule.action, FaultAction::Fail { sticky: true, .. }) {
                continue;
            }
            if op_index < rule.op_index_min {
                continue;
            }
            if rule.after_kinds != 0 && !rule.armed {
                rule.armed = rule.after_kinds & kind.bit() != 0;
                continue;
            }
            if rule.kinds & kind.bit() == 0 {
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

    pub(super) fn allocate(&mut self, inode: Inode) -> InodeId {
        let id = self.inode_next;
        self.inode_next += 1;
        self.inodes.insert(id, inode);
        id
    }

    pub(super) fn dir(&self, id: InodeId) -> Option<&DirInode> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    pub(super) fn dir_mut(&mut self, id: InodeId) -> &mut DirInode {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(dir)) => dir,
            _ => panic!("simfs: inode {id} should be a live directory"),
        }
    }

    pub(super) fn file_mut(&mut self, id: InodeId) -> &mut FileInode {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => file,
            _ => panic!("simfs: inode {id} should be a live file"),
        }
    }

    /// The directory that `names` lead to from `root`, through current entries.
    pub(super) fn resolve_dir(
        &self,
        root: InodeId,
        names: &[String],
        path: &Path,
    ) -> io::Result<InodeId> {
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
    pub(super) fn resolve(&self, path: &SimPath, display: &Path) -> io::Result<InodeId> {
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
    pub(super) fn resolve_parent<'p>(
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

    pub(super) fn file_at(&mut self, path: &Path) -> io::Result<&mut FileInode> {
        let id = self.resolve(&SimPath::parse(path)?, path)?;
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => Ok(file),
            _ => Err(is_a_directory(path)),
        }
    }

    /// Empties the current entries of a removed directory and of every directory under it, as
    /// `remove_dir_all` unlinks them one by one. Durable entries stay: those unlinks are not
    /// durable until the directories are synced, which nobody can do once they are unlinked.
    pub(super) fn clear_subtree(&mut self, top: InodeId) {
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
    pub(super) fn collect_garbage(&mut self) -> u64 {
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
    pub(super) fn file_paths(&self, durable: bool) -> Vec<PathBuf> {
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

pub(super) fn write_bytes(target: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if target.len() < end {
        target.resize(end, 0);
    }
    target[start..end].copy_from_slice(bytes);
}
