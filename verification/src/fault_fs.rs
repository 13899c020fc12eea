//! [`FaultFs`]: a `Vfs` over another one (a `SimFs`, or the real file system through `StdFs`)
//! that injects faults, delays and panics, counts what went through, and can hold a thread.
//! The one fault layer for tests over any `Vfs`; `SimFs`'s own fault plans
//! ([`deltasnap::vfs::FaultPlan`]) stay the simulated disk's, for power cuts and faults by
//! global operation index. Both speak the same vocabulary: an operation is a
//! [`FaultKind`] and a fault a [`FaultError`] (EIO or ENOSPC).
//!
//! Faults are chosen by *what* an operation touches, not by its global index: `SimFs`'s plan
//! counts every operation of every thread and has no path filter, so "the second append to a
//! delta file" has no stable index there.
//!
//! - [`FaultFs::fail_nth`]: a rule, a predicate over the operation (kind, path, offset, thread)
//!   plus "let the first `n` matches through"; it fires once.
//! - [`FaultFs::fail_every`] and [`FaultFs::panic_every`]: a switch on one kind, every later
//!   operation of that kind fails (like a sticky `FaultPlan` rule) or panics (a broken file system
//!   implementation) until [`FaultFs::heal`]. [`FaultFs::delay_every`]: a slow disk.
//! - [`FaultFs::hold_thread`]: every operation of one named thread waits until
//!   [`FaultFs::release`], which turns the engine's threads into a deterministic sequence.
//!
//! Every fault that fired is recorded ([`FaultFs::fired`]), so a test can assert that its fault
//! did happen (a fault that never fires makes a failure test pass for nothing). Operations are
//! counted in the order rules see them ([`FaultFs::op_count`]) and can be recorded
//! ([`FaultFs::record_ops`]), so that a fault matrix can fail "the n-th operation from here" and
//! check it hit the same operation as in a clean run. Operations the inner `Vfs` completed are
//! counted by kind and thread ([`FaultFs::completed`], [`FaultFs::completed_by`]), and, once
//! asked ([`FaultFs::track_durable_len`]), how many bytes of each file an fsync covered
//! ([`FaultFs::durable_len`]).
//!
//! ```
//! use std::sync::Arc;
//! use deltasnap::vfs::{FaultError, FaultKind, OpenMode, StdFs, Vfs};
//! use deltasnap_verification::fault_fs::FaultFs;
//!
//! let dir = std::env::temp_dir().join(format!("fault-fs-doc-{}", std::process::id()));
//! let fs = FaultFs::new(Arc::new(StdFs));
//! fs.create_dir_all(&dir).unwrap();
//! let file = fs.open(&dir.join("f"), OpenMode::Create).unwrap();
//! fs.fail_every(FaultKind::SyncFile, FaultError::Eio);
//! assert_eq!(file.sync_all().unwrap_err().raw_os_error(), Some(FaultError::Eio.errno()));
//! fs.heal(FaultKind::SyncFile);
//! file.sync_all().unwrap();
//! assert_eq!((fs.completed(FaultKind::SyncFile), fs.fired().len()), (1, 1));
//! # drop(file);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use deltasnap::vfs::{FaultError, FaultKind, OpenMode, Vfs, VfsFile};

/// One operation, as a rule sees it.
#[derive(Debug, Clone)]
pub struct Op {
    /// What the operation does.
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

    /// Whether the operation was made by the thread named `name`.
    pub fn on_thread(&self, name: &str) -> bool {
        self.thread.as_deref() == Some(name)
    }
}

type Matcher = Box<dyn Fn(&Op) -> bool + Send + Sync>;

/// A [`FaultFs::fail_nth`] rule.
struct Rule {
    matches: Matcher,
    /// Matching operations still let through before the one that fails.
    skip: u64,
    error: FaultError,
    fired: bool,
}

/// The faults by kind, set and cleared by the test ([`FaultFs::fail_every`] and its siblings).
#[derive(Default)]
struct Switches {
    failing: HashMap<FaultKind, FaultError>,
    panicking: HashSet<FaultKind>,
    delays: HashMap<FaultKind, Duration>,
}

struct Shared {
    inner: Arc<dyn Vfs>,
    rules: Mutex<Vec<Rule>>,
    switches: Mutex<Switches>,
    /// Operations seen (after any hold), counted under the `rules` lock so that the count and
    /// the rule matching agree on the order.
    op_count: Mutex<u64>,
    /// Every operation seen since [`FaultFs::record_ops`], if recording.
    recorded: Mutex<Option<Vec<Op>>>,
    fired: Mutex<Vec<Op>>,
    /// Operations the inner `Vfs` completed, by kind and calling thread.
    completed: Mutex<HashMap<(FaultKind, Option<String>), u64>>,
    /// Bytes of each file known to be durable (its length when an fsync that succeeded started),
    /// if tracking ([`FaultFs::track_durable_len`]).
    durable_len: Mutex<Option<HashMap<PathBuf, u64>>>,
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
    /// `inner` with no fault yet.
    pub fn new(inner: Arc<dyn Vfs>) -> Self {
        FaultFs(Arc::new(Shared {
            inner,
            rules: Mutex::new(Vec::new()),
            switches: Mutex::new(Switches::default()),
            op_count: Mutex::new(0),
            recorded: Mutex::new(None),
            fired: Mutex::new(Vec::new()),
            completed: Mutex::new(HashMap::new()),
            durable_len: Mutex::new(None),
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

    /// Every operation of `kind` from now on fails with `error`, until [`FaultFs::heal`].
    pub fn fail_every(&self, kind: FaultKind, error: FaultError) {
        self.0.switches.lock().unwrap().failing.insert(kind, error);
    }

    /// Every operation of `kind` from now on panics, until [`FaultFs::heal`] (a broken file
    /// system implementation; the panic is not a fault that [`FaultFs::fired`] lists).
    pub fn panic_every(&self, kind: FaultKind) {
        self.0.switches.lock().unwrap().panicking.insert(kind);
    }

    /// Ends [`FaultFs::fail_every`] and [`FaultFs::panic_every`] for `kind`.
    pub fn heal(&self, kind: FaultKind) {
        let mut switches = self.0.switches.lock().unwrap();
        switches.failing.remove(&kind);
        switches.panicking.remove(&kind);
    }

    /// Every operation of `kind` from now on sleeps `delay` first (a slow disk, or one that holds
    /// writes); `Duration::ZERO` ends it.
    pub fn delay_every(&self, kind: FaultKind, delay: Duration) {
        let mut switches = self.0.switches.lock().unwrap();
        if delay.is_zero() {
            switches.delays.remove(&kind);
        } else {
            switches.delays.insert(kind, delay);
        }
    }

    /// The operations that failed by a fault, in order.
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

    /// How many operations of `kind` the inner `Vfs` completed successfully, on every thread.
    pub fn completed(&self, kind: FaultKind) -> u64 {
        let completed = self.0.completed.lock().unwrap();
        completed
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, count)| count)
            .sum()
    }

    /// How many operations of `kind` the inner `Vfs` completed successfully for the thread named
    /// `thread`.
    pub fn completed_by(&self, kind: FaultKind, thread: &str) -> u64 {
        let completed = self.0.completed.lock().unwrap();
        completed
            .get(&(kind, Some(thread.to_owned())))
            .copied()
            .unwrap_or(0)
    }

    /// From now on remembers, for each file, its length when an fsync that succeeded started
    /// ([`FaultFs::durable_len`]). Costs each file sync a `len` of the inner file, which is not
    /// an operation of this layer (no rule sees it) but is one of the inner `Vfs`.
    pub fn track_durable_len(&self) {
        self.0
            .durable_len
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new);
    }

    /// How many bytes of the file at `path` an fsync is known to have covered since
    /// [`FaultFs::track_durable_len`] (0 if none).
    pub fn durable_len(&self, path: &Path) -> u64 {
        let durable = self.0.durable_len.lock().unwrap();
        durable
            .as_ref()
            .and_then(|lens| lens.get(path))
            .copied()
            .unwrap_or(0)
    }

    /// From now on every operation of the thread named `name` waits until [`FaultFs::release`].
    pub fn hold_thread(&self, name: &str) {
        *self.0.held_thread.lock().unwrap() = Some(name.to_owned());
    }

    /// Lets the held thread's operations go.
    pub fn release(&self) {
        *self.0.held_thread.lock().unwrap() = None;
        self.0.held_changed.notify_all();
    }
}

impl Shared {
    /// Runs `operation` on the inner `Vfs` unless a fault stops it, and counts it if it succeeds.
    fn run<T>(&self, op: Op, operation: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let key = (op.kind, op.thread.clone());
        self.before(op)?;
        let value = operation()?;
        *self.completed.lock().unwrap().entry(key).or_insert(0) += 1;
        Ok(value)
    }

    fn before(&self, op: Op) -> io::Result<()> {
        let mut held = self.held_thread.lock().unwrap();
        while held.is_some() && held.as_deref() == op.thread.as_deref() {
            held = self.held_changed.wait(held).unwrap();
        }
        drop(held);
        let delay = self.switches.lock().unwrap().delays.get(&op.kind).copied();
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let mut rules = self.rules.lock().unwrap();
        *self.op_count.lock().unwrap() += 1;
        if let Some(recorded) = self.recorded.lock().unwrap().as_mut() {
            recorded.push(op.clone());
        }
        let (failing, panicking) = {
            let switches = self.switches.lock().unwrap();
            (
                switches.failing.get(&op.kind).copied(),
                switches.panicking.contains(&op.kind),
            )
        };
        let error = failing.or_else(|| {
            rules.iter_mut().filter(|r| !r.fired).find_map(|rule| {
                if !(rule.matches)(&op) {
                    return None;
                }
                if rule.skip > 0 {
                    rule.skip -= 1;
                    return None;
                }
                rule.fired = true;
                Some(rule.error)
            })
        });
        drop(rules);
        if let Some(error) = error {
            self.fired.lock().unwrap().push(op);
            return Err(io::Error::from_raw_os_error(error.errno()));
        }
        // With no lock held: a panic here must not poison the layer for the operations after it.
        if panicking {
            panic!(
                "FaultFs: {:?} on {} panics on request",
                op.kind,
                op.path.display()
            );
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
        let inner = self
            .0
            .run(op(FaultKind::Open, path), || self.0.inner.open(path, mode))?;
        Ok(Arc::new(FaultFile {
            shared: Arc::clone(&self.0),
            inner,
            path: path.to_path_buf(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.run(op(FaultKind::CreateDir, path), || {
            self.0.inner.create_dir_all(path)
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0
            .run(op(FaultKind::ReadDir, path), || self.0.inner.read_dir(path))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0
            .run(op(FaultKind::Stat, path), || self.0.inner.exists(path))
    }

    fn is_dir(&self, path: &Path) -> io::Result<bool> {
        self.0
            .run(op(FaultKind::Stat, path), || self.0.inner.is_dir(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.run(op(FaultKind::Remove, path), || {
            self.0.inner.remove_file(path)
        })
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.run(op(FaultKind::Remove, path), || {
            self.0.inner.remove_dir_all(path)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let op = Op {
            to: Some(to.to_path_buf()),
            ..op(FaultKind::Rename, from)
        };
        self.0.run(op, || self.0.inner.rename(from, to))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0
            .run(op(FaultKind::SyncDir, path), || self.0.inner.sync_dir(path))
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
    fn op(&self, kind: FaultKind, offset: Option<u64>) -> Op {
        Op {
            offset,
            ..op(kind, &self.path)
        }
    }
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let op = self.op(FaultKind::Read, Some(offset));
        self.shared.run(op, || self.inner.read_at(buf, offset))
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let op = self.op(FaultKind::Write, Some(offset));
        self.shared.run(op, || self.inner.write_all_at(buf, offset))
    }

    fn len(&self) -> io::Result<u64> {
        self.shared
            .run(self.op(FaultKind::Stat, None), || self.inner.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.shared
            .run(self.op(FaultKind::SetLen, None), || self.inner.set_len(len))
    }

    fn sync_all(&self) -> io::Result<()> {
        self.shared.run(self.op(FaultKind::SyncFile, None), || {
            let tracking = self.shared.durable_len.lock().unwrap().is_some();
            let len_before = if tracking {
                Some(self.inner.len()?)
            } else {
                None
            };
            self.inner.sync_all()?;
            if let (Some(len), Some(durable)) =
                (len_before, self.shared.durable_len.lock().unwrap().as_mut())
            {
                let entry = durable.entry(self.path.clone()).or_insert(0);
                *entry = (*entry).max(len);
            }
            Ok(())
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn try_lock_exclusive(&self) -> io::Result<bool> {
        self.shared.run(self.op(FaultKind::Lock, None), || {
            self.inner.try_lock_exclusive()
        })
    }

    fn is_locked_by_other(&self) -> io::Result<bool> {
        self.shared.run(self.op(FaultKind::Lock, None), || {
            self.inner.is_locked_by_other()
        })
    }

    /// Copies through `read_at` and `write_all_at` of the wrappers, so that faults see the
    /// copy's reads of the source and writes of the destination (the inner file's own `copy_to`
    /// would bypass them).
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
        let op = Op {
            to,
            ..self.op(FaultKind::Copy, Some(src_offset))
        };
        self.shared.run(op, || {
            deltasnap::vfs::copy_through_buffer(self, src_offset, dst, dst_offset, len)
        })
    }
}
