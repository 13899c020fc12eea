//! The [`Vfs`] and [`VfsFile`] operations of [`SimFs`] (module doc, "Operations and faults").

use std::any::Any;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::fault::FaultKind;
use super::fs::SimFs;
use super::state::{
    error, invalid_input, is_a_directory, not_a_directory, not_found, too_large, write_bytes,
    DirInode, FileInode, Inode, InodeId, SimPath, State, UnsyncedChange, FILE_BYTES_MAX,
};
use crate::sync::{Arc, Mutex};
use crate::vfs::{copy_through_buffer, OpenMode, Vfs, VfsFile};

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
    pub(super) fn with_file<T>(
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

    pub(super) fn check_writable(&self) -> io::Result<()> {
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
