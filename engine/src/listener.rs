//! The seam between the checkpointer and whoever must see every partition write (the snapshot's
//! write hook, `snapshot::listener`): what a checkpoint's cut shows, and the calls a listener gets.
//! The store keeps the registered listeners and builds the cut; the checkpointer calls them.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Error;
use crate::sync::Arc;
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::VfsFile;

/// A partition as of a checkpoint's cut.
#[derive(Debug, Clone)]
pub struct CutPartition {
    /// Which partition.
    pub id: PartitionId,
    /// The logical page count at the cut.
    pub page_count: u32,
    /// The partition file and its path (the file stays open while the cut is referenced).
    pub file: Arc<dyn VfsFile>,
    /// Where [`CutPartition::file`] lives (`partitions/part-<id>.dat`, format.md §1).
    pub path: PathBuf,
}

/// What a listener learns at the cut of checkpoint `epoch`.
#[derive(Debug, Clone)]
pub struct CheckpointCut {
    /// The checkpoint's epoch: it will write exactly the writes of epochs `<= epoch` (K2).
    pub epoch: Epoch,
    /// The redo log's end when the cut was taken: the replay-start LSN the checkpoint's control
    /// file will name (C3).
    pub replay_start_lsn: Lsn,
    /// The store's page size in bytes.
    pub page_size: u32,
    /// Every partition that exists at the cut, in id order.
    pub partitions: Vec<CutPartition>,
    /// The metadata map at the cut (deleted keys absent).
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Held by the checkpointer across one page's file write; dropped right after it.
pub type WriteGuard = Box<dyn Any + Send>;

/// The seam between the checkpointer and whoever must see every partition write (the snapshot
/// task). Calls come from the checkpointer thread, in the order of the module doc. A listener's
/// own failures are its own: it must never fail or block the checkpoint for long.
pub trait CheckpointListener: Send + Sync {
    /// The cut of checkpoint `cut.epoch` was taken; no page of it has been written yet.
    fn on_checkpoint_begin(&self, _cut: &CheckpointCut) {}

    /// The checkpoint of `epoch` is about to write `image` (a sealed page) as page `page`.
    /// The returned guard is held until the write returned.
    fn before_page_write(&self, _epoch: Epoch, _page: PageId, _image: &[u8]) -> Option<WriteGuard> {
        None
    }

    /// The checkpoint of `epoch` is durable (its control file is).
    fn on_checkpoint_end(&self, _epoch: Epoch) {}

    /// The checkpoint of `epoch` failed; the engine is poisoned.
    fn on_checkpoint_failed(&self, _epoch: Epoch, _error: &Error) {}
}

/// The registered listeners, with the ids `add_checkpoint_listener` returned.
pub(crate) type Listeners = Vec<(u64, Arc<dyn CheckpointListener>)>;
