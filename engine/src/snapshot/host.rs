//! What a snapshot needs of the engine, as a narrow trait: the snapshot task reaches the store
//! only through [`SnapshotHost`], never through the store's own type, so the task depends on a
//! dozen calls rather than on the store's state.
//!
//! The store implements it here, with the checkpointer answering the one call that is not the
//! store's: the forced checkpoint that carries the snapshot's cut.

use std::path::Path;

use crate::checkpoint;
use crate::error::Result;
use crate::jobs::Jobs;
use crate::listener::CheckpointListener;
use crate::store::Store;
use crate::sync::{thread, Arc};
use crate::types::PartitionId;
use crate::vfs::Vfs;

/// The engine as a snapshot sees it.
pub(crate) trait SnapshotHost: Send + Sync {
    /// The store's file system.
    fn vfs(&self) -> Arc<dyn Vfs>;
    /// The store's directory (its marker directory is in it).
    fn store_dir(&self) -> &Path;
    /// The store's page size in bytes.
    fn page_size(&self) -> u32;
    /// The job list the snapshot reports its progress in.
    fn jobs(&self) -> &Jobs;
    /// Takes the store's one snapshot slot for snapshot `name` (`Error::SnapshotRunning` if
    /// another has it).
    fn claim_snapshot_slot(&self, name: &str) -> Result<()>;
    /// Frees the snapshot slot.
    fn release_snapshot_slot(&self);
    /// How `Engine::close` cancels the snapshot holding the slot.
    fn set_snapshot_cancel(&self, cancel: crate::store::SnapshotCancel);
    /// Registers the snapshot's write hook with the checkpointer; returns its id.
    fn add_listener(&self, listener: Arc<dyn CheckpointListener>) -> u64;
    /// Removes the write hook `id`.
    fn remove_listener(&self, id: u64);
    /// Keeps the files of `ids` from being deleted by a drop until released.
    fn hold_partitions(&self, ids: &[PartitionId]);
    /// Releases a hold of [`SnapshotHost::hold_partitions`].
    fn release_partitions(&self, ids: &[PartitionId]);
    /// Requests the checkpoint that carries the snapshot's cut (it runs even if nothing changed).
    /// Without a checkpointer thread, a thread of ours runs it: returned, to be joined.
    fn request_cut_checkpoint(self: Arc<Self>) -> Result<Option<thread::JoinHandle<()>>>;
    /// Why the engine is poisoned, if it is.
    fn poisoned(&self) -> Option<String>;
    /// Whether the engine is closed.
    fn is_closed(&self) -> bool;
}

impl SnapshotHost for Store {
    fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::clone(&self.vfs)
    }

    fn store_dir(&self) -> &Path {
        &self.dir
    }

    fn page_size(&self) -> u32 {
        self.page_size as u32
    }

    fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    fn claim_snapshot_slot(&self, name: &str) -> Result<()> {
        Store::claim_snapshot_slot(self, name)
    }

    fn release_snapshot_slot(&self) {
        Store::release_snapshot_slot(self)
    }

    fn set_snapshot_cancel(&self, cancel: crate::store::SnapshotCancel) {
        Store::set_snapshot_cancel(self, cancel)
    }

    fn add_listener(&self, listener: Arc<dyn CheckpointListener>) -> u64 {
        Store::add_listener(self, listener)
    }

    fn remove_listener(&self, id: u64) {
        Store::remove_listener(self, id)
    }

    fn hold_partitions(&self, ids: &[PartitionId]) {
        Store::hold_partitions(self, ids)
    }

    fn release_partitions(&self, ids: &[PartitionId]) {
        Store::release_partitions(self, ids)
    }

    fn request_cut_checkpoint(self: Arc<Self>) -> Result<Option<thread::JoinHandle<()>>> {
        checkpoint::request_forced(&self)
    }

    fn poisoned(&self) -> Option<String> {
        Store::poisoned(self)
    }

    fn is_closed(&self) -> bool {
        Store::is_closed(self)
    }
}
