//! [`SimFs`]: the handle, and its helpers for tests (crash, fault plans, durable reads).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::sync::{Arc, Mutex};

use super::crash::{settle_file, CrashReport, CrashVisit, SplitMix64};
use super::fault::FaultPlan;
use super::state::{
    invalid_input, too_large, Inode, InodeId, PowerCut, State, FILE_BYTES_MAX, ROOT_ABSOLUTE,
    ROOT_RELATIVE,
};

/// The in-memory, crash-simulating file system. Clones share one state, so a test keeps a
/// handle while the engine owns another. The model (what is durable when, what a
/// crash does, how faults count) is the module doc of `vfs/sim_fs/mod.rs`.
#[derive(Clone)]
pub struct SimFs {
    pub(super) state: Arc<Mutex<State>>,
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
