//! [`FaultFs`]: a `Vfs` over another one (usually a `SimFs`) that fails chosen operations by *what*
//! they touch, not by their global index. `SimFs`'s `FaultPlan` counts every operation of every
//! thread and has no path filter, so "the second append to a delta file" has no stable index;
//! here a rule is a predicate over the operation (kind, path, offset, thread) plus "let the first
//! `n` matches through". It can also hold every operation of one named thread until released,
//! which turns the engine's threads into a deterministic sequence for the crash suite.
//!
//! Every fault that fired is recorded, so a test can assert that its fault did happen (a fault
//! that never fires makes a failure test pass for nothing). Operations are counted in the order
//! rules see them ([`FaultFs::op_count`]), and can be recorded ([`FaultFs::record_ops`]), so that a
//! fault matrix can fail "the n-th operation from here" and check it hit the same operation as in
//! a clean run.

use std::any::Any;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use deltasnap::vfs::{FaultError, FaultKind, OpenMode, Vfs, VfsFile};

/// One operation, as a rule sees it.
#[derive(Debug, Clone)]
pub struct Op {
    pub kind: FaultKind,
    /// The file or directory operated on (for a rename: the source).
    pub path: PathBuf,
    /// The rename target, or the destination file of a copy.
    pub to: Option<PathBuf>,
    /// The file offset of a read, write or copy.
    pub offset: Option<u64>,
    /// The name of the calling thread (engine threads are named `deltasnap-…`).
    pub thread: Option<String>,
}

impl Op {
    /// Whether the operation's path contains `fragment` (as text).
    pub fn path_contains(&self, fragment: &str) -> bool {
        self.path.to_string_lossy().contains(fragment)
    }

    pub fn on_thread(&self, name: &str) -> bool {
        self.thread.as_deref() == Some(name)
    }
}

type Matcher = Box<dyn Fn(&Op) -> bool + Send + Sync>;

struct Rule {
    matches: Matcher,
    /// Matching operations still let through before the one that fails.
    skip: u64,
    error: FaultError,
    fired: bool,
}

struct Shared {
    inner: Arc<dyn Vfs>,
    rules: Mutex<Vec<Rule>>,
    /// Operations seen (after any hold), counted under the `rules` lock so that the count and
    /// the rule matching agree on the order.
    op_count: Mutex<u64>,
    /// Every operation seen since [`FaultFs::record_ops`], if recording.
    recorded: Mutex<Option<Vec<Op>>>,
    fired: Mutex<Vec<Op>>,
    /// The thread whose operations wait, if any.
    held_thread: Mutex<Option<String>>,
    held_changed: Condvar,
}

/// See the module doc. Clones share one state.
#[derive(Clone)]
pub struct FaultFs(Arc<Shared>);

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFs").finish_non_exhaustive()
    }
}

impl FaultFs {
    pub fn new(inner: Arc<dyn Vfs>) -> Self {
        FaultFs(Arc::new(Shared {
            inner,
            rules: Mutex::new(Vec::new()),
            op_count: Mutex::new(0),
            recorded: Mutex::new(None),
            fired: Mutex::new(Vec::new()),
            held_thread: Mutex::new(None),
            held_changed: Condvar::new(),
        }))
    }

    /// The `n`-th (from 0) operation from now on for which `matches` holds fails with `error`;
    /// once.
    pub fn fail_nth(
        &self,
        n: u64,
        error: FaultError,
        matches: impl Fn(&Op) -> bool + Send + Sync + 'static,
    ) {
        self.0.rules.lock().unwrap().push(Rule {
            matches: Box::new(matches),
            skip: n,
            error,
            fired: false,
        });
    }

    /// The operations that failed by a rule, in order.
    pub fn fired(&self) -> Vec<Op> {
        self.0.fired.lock().unwrap().clone()
    }

    /// How many operations went through so far (failed ones included; an operation held by
    /// [`FaultFs::hold_thread`] counts once it is let go).
    pub fn op_count(&self) -> u64 {
        let _rules = self.0.rules.lock().unwrap();
        *self.0.op_count.lock().unwrap()
    }

    /// Records every operation from now on, in the order of [`FaultFs::op_count`].
    pub fn record_ops(&self) {
        *self.0.recorded.lock().unwrap() = Some(Vec::new());
    }

    /// The operations recorded since [`FaultFs::record_ops`].
    pub fn recorded(&self) -> Vec<Op> {
        self.0.recorded.lock().unwrap().clone().unwrap_or_default()
    }

    /// From now on every operation of the thread named `name` waits until [`FaultFs::release`].
    pub fn hold_thread(&self, name: &str) {
        *self.0.held_thread.lock().unwrap() = Some(name.to_owned());
    }

    pub fn release(&self) {
        *self.0.held_thread.lock().unwrap() = None;
        self.0.held_changed.notify_all();
    }

    fn before(&self, op: Op) -> io::Result<()> {
        self.0.before(op)
    }
}

impl Shared {
    fn before(&self, op: Op) -> io::Result<()> {
        let mut held = self.held_thread.lock().unwrap();
        while held.is_some() && held.as_deref() == op.thread.as_deref() {
            held = self.held_changed.wait(held).unwrap();
        }
        drop(held);
        let mut rules = self.rules.lock().unwrap();
        *self.op_count.lock().unwrap() += 1;
        if let Some(recorded) = self.recorded.lock().unwrap().as_mut() {
            recorded.push(op.clone());
        }
        for rule in rules.iter_mut().filter(|r| !r.fired) {
            if !(rule.matches)(&op) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                continue;
            }
            rule.fired = true;
            let error = io::Error::from_raw_os_error(rule.error.errno());
            drop(rules);
            self.fired.lock().unwrap().push(op);
            return Err(error);
        }
        Ok(())
    }
}

fn op(kind: FaultKind, path: &Path) -> Op {
    Op {
        kind,
        path: path.to_path_buf(),
        to: None,
        offset: None,
        thread: std::thread::current().name().map(str::to_owned),
    }
}

impl Vfs for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        self.before(op(FaultKind::Open, path))?;
        let inner = self.0.inner.open(path, mode)?;
        Ok(Arc::new(FaultFile {
            shared: Arc::clone(&self.0),
            inner,
            path: path.to_path_buf(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.before(op(FaultKind::CreateDir, path))?;
        self.0.inner.create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.before(op(FaultKind::ReadDir, path))?;
        self.0.inner.read_dir(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.before(op(FaultKind::Stat, path))?;
        self.0.inner.exists(path)
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        self.before(op(FaultKind::Stat, path))?;
        self.0.inner.is_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.before(op(FaultKind::Remove, path))?;
        self.0.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.before(op(FaultKind::Remove, path))?;
        self.0.inner.remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.before(Op {
            to: Some(to.to_path_buf()),
            ..op(FaultKind::Rename, from)
        })?;
        self.0.inner.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.before(op(FaultKind::SyncDir, path))?;
        self.0.inner.sync_dir(path)
    }
}

struct FaultFile {
    shared: Arc<Shared>,
    inner: Arc<dyn VfsFile>,
    path: PathBuf,
}

impl fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FaultFile {
    fn before(&self, kind: FaultKind, offset: Option<u64>) -> io::Result<()> {
        self.shared.before(Op {
            offset,
            ..op(kind, &self.path)
        })
    }
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.before(FaultKind::Read, Some(offset))?;
        self.inner.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.before(FaultKind::Write, Some(offset))?;
        self.inner.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.before(FaultKind::Stat, None)?;
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.before(FaultKind::SetLen, None)?;
        self.inner.set_len(len)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.before(FaultKind::SyncFile, None)?;
        self.inner.sync_all()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn try_lock_exclusive(&self) -> io::Result<bool> {
        self.before(FaultKind::Lock, None)?;
        self.inner.try_lock_exclusive()
    }

    fn is_locked_by_other(&self) -> io::Result<bool> {
        self.before(FaultKind::Lock, None)?;
        self.inner.is_locked_by_other()
    }

    /// Copies through `read_at` and `write_all_at` of the wrappers, so that rules see the copy's
    /// reads of the source and writes of the destination (the inner file's own `copy_to` would
    /// bypass them).
    fn copy_to(
        &self,
        src_offset: u64,
        dst: &dyn VfsFile,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        let to = dst
            .as_any()
            .downcast_ref::<FaultFile>()
            .map(|f| f.path.clone());
        self.shared.before(Op {
            to,
            offset: Some(src_offset),
            ..op(FaultKind::Copy, &self.path)
        })?;
        deltasnap::vfs::copy_through_buffer(self, src_offset, dst, dst_offset, len)
    }
}
