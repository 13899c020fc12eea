//! The snapshot's protocol events, recorded in test builds so that a run of the real engine can be
//! checked against the stateright model (`deltasnap-models`, `snapshot_trace`): every recorded
//! trace must be a behaviour of the model (the trace validation of DESIGN §6).
//!
//! # What is recorded, and where
//!
//! One [`Event`] per protocol step of [`PartitionSnapshot`](crate::snapshot::protocol::PartitionSnapshot), recorded by the snapshot
//! task *inside the critical section that performs the step* (the partition's hook state lock),
//! right after the protocol accepted it. Every event goes through one process-wide log, so the
//! log's order is a real-time order of the steps: two steps of one partition appear in the order
//! the hook lock serialized them, and a step that happened after another (through any lock or
//! join) appears after it.
//!
//! - the checkpointer: S's cut ([`Event::Cut`], with the partitions' page images on disk at the
//!   cut), the begin of every later checkpoint, each hook decision with the image about to be
//!   written, each delta append, each `page_write_done` (after the file write), each checkpoint's
//!   end;
//! - the copier: `announce`, the images it copied (read back from the snapshot copy, outside the
//!   hook lock, after the copy and before `chunk_copied`), `chunk_copied`, `copy_done`;
//! - the merge: `close`, and the delta it reads after it;
//! - a cancel of a hook (failure or cancellation: the model has no cancel, the check stops there).
//!
//! Page contents are recorded as [`PageImage`]s: the LSN and crc of the page footer. Two images of
//! one page are the same write iff both are equal (a page's LSN is its last write's), which is all
//! the model needs: it abstracts page contents to per-page versions.
//!
//! Writers are not recorded: the model only sees what they wrote through the checkpoints' page
//! writes, and the images carry it.
//!
//! # Cost
//!
//! Recording exists only in test builds (`cfg(test)`, `--cfg deltasnap_testing` or a checker cfg,
//! like the switch of [`crate::bugs`]) and is off until a test calls `start`. In any other build
//! the recorder (`start`, `take`, `exclusive`) does not exist, [`enabled`] is a `const fn`
//! returning `false` and every recording call compiles away. The event types stay: they are the
//! vocabulary the model's trace checker (`deltasnap-models`) reads. When on, it costs a footer parse per
//! event, a read of the on-disk pages' footers at the cut, and a read-back of each copied chunk.

use crate::checkpoint::CheckpointCut;
use crate::format;
use crate::snapshot::protocol::Capture;
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::VfsFile;

/// A page image as the trace identifies it: its footer's LSN and crc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageImage {
    /// The LSN of the page's last write (its footer's): which write the image holds.
    pub lsn: Lsn,
    /// The footer's crc32c of the page.
    pub crc: u32,
}

impl PageImage {
    /// The image of `page`, read as page `index`; `None` if its footer does not verify (a hole,
    /// a torn or foreign page).
    pub fn of(page: &[u8], index: u32) -> Option<PageImage> {
        format::verify_page(page, index, std::path::Path::new(""))
            .ok()
            .map(|footer| PageImage {
                lsn: footer.lsn,
                crc: footer.crc,
            })
    }
}

/// One partition at S's cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPartitionTrace {
    /// Which partition.
    pub id: PartitionId,
    /// The partition's logical page count.
    pub pages_at_cut: u32,
    /// Whole pages of the partition file (the copy's end).
    pub copy_end: u32,
    /// The image of each page in `[0, copy_end)` of the file.
    pub file: Vec<Option<PageImage>>,
}

/// One step of the snapshot protocol, in the terms of [`PartitionSnapshot`](crate::snapshot::protocol::PartitionSnapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// S's cut: the hooks of `partitions` are installed (`PartitionSnapshot::at_cut`).
    Cut {
        /// S's epoch.
        epoch: Epoch,
        /// Every partition at the cut, in id order.
        partitions: Vec<CutPartitionTrace>,
    },
    /// A checkpoint after S began (its dirty set is frozen; no page of it is written yet).
    CheckpointBegin {
        /// The later checkpoint's epoch.
        epoch: Epoch,
    },
    /// `before_page_write(page.index)` decided `capture`; `image` is about to be written.
    HookDecided {
        /// The page about to be written.
        page: PageId,
        /// What the protocol told the hook to capture.
        capture: Capture,
        /// The image about to be written (`None` if its footer does not verify).
        image: Option<PageImage>,
    },
    /// The hook appended `image` for `page` to the delta.
    DeltaAppended {
        /// The page captured.
        page: PageId,
        /// The captured image: the new one before S ended, the file's old one after.
        image: Option<PageImage>,
    },
    /// `page_write_done(index)`: the file write of the hook call in flight returned. (The hook
    /// call's partition is the one of the decision in flight: the checkpointer makes one hook call
    /// at a time.)
    PageWriteDone {
        /// The page index of the hook call in flight.
        index: u32,
    },
    /// The checkpoint of `epoch` ended (`on_checkpoint_end`; for S, before `checkpoint_ended`
    /// reaches the partitions' protocols).
    CheckpointEnd {
        /// The ended checkpoint's epoch.
        epoch: Epoch,
    },
    /// `announce(reading_end)`.
    Announce {
        /// The partition the copier works on.
        partition: PartitionId,
        /// The end of the chunk it is about to read, in pages.
        reading_end: u32,
    },
    /// The copier copied `images` as pages `first..first + images.len()` (read back from the copy).
    ChunkRead {
        /// The partition copied.
        partition: PartitionId,
        /// The chunk's first page.
        first: u32,
        /// The image of each page of the chunk, in order.
        images: Vec<Option<PageImage>>,
    },
    /// `chunk_copied(copied_end)`.
    ChunkCopied {
        /// The partition copied.
        partition: PartitionId,
        /// The copy's new end, in pages.
        copied_end: u32,
    },
    /// `copy_done()`.
    CopyDone {
        /// The partition whose copy is done.
        partition: PartitionId,
    },
    /// `close()`: the merge may read the delta.
    Close {
        /// The partition whose hook closed.
        partition: PartitionId,
    },
    /// The merge read the delta: one image per captured page, sorted by index.
    Merge {
        /// The partition merged.
        partition: PartitionId,
        /// `(page index, image)` of each delta entry.
        delta: Vec<(u32, Option<PageImage>)>,
    },
    /// A hook was cancelled (the snapshot failed or was cancelled).
    Cancelled,
}

// ---- recording calls (the snapshot task's call sites) ------------------------------------------

/// Records S's cut: the partitions' page counts and on-disk images, read from the files (the
/// checkpointer, the only writer of partition files, has not written any page of S yet).
pub(crate) fn cut(cut: &CheckpointCut) {
    record(|| {
        let page_size = u64::from(cut.page_size);
        let partitions = cut
            .partitions
            .iter()
            .map(|partition| {
                let bytes_on_disk = partition.file.len().unwrap_or(0);
                let copy_end = u32::try_from(bytes_on_disk / page_size).unwrap_or(u32::MAX);
                CutPartitionTrace {
                    id: partition.id,
                    pages_at_cut: partition.page_count,
                    copy_end,
                    file: read_images(partition.file.as_ref(), 0, copy_end, cut.page_size),
                }
            })
            .collect();
        Event::Cut {
            epoch: cut.epoch,
            partitions,
        }
    });
}

pub(crate) fn checkpoint_begin(epoch: Epoch) {
    record(|| Event::CheckpointBegin { epoch });
}

pub(crate) fn hook_decided(page: PageId, capture: Capture, image: &[u8]) {
    record(|| Event::HookDecided {
        page,
        capture,
        image: PageImage::of(image, page.index),
    });
}

pub(crate) fn delta_appended(page: PageId, image: &[u8]) {
    record(|| Event::DeltaAppended {
        page,
        image: PageImage::of(image, page.index),
    });
}

pub(crate) fn page_write_done(index: u32) {
    record(|| Event::PageWriteDone { index });
}

pub(crate) fn checkpoint_end(epoch: Epoch) {
    record(|| Event::CheckpointEnd { epoch });
}

pub(crate) fn announce(partition: PartitionId, reading_end: u32) {
    record(|| Event::Announce {
        partition,
        reading_end,
    });
}

/// Records the images the copier copied into `target` as pages `first..end`.
pub(crate) fn chunk_read(
    partition: PartitionId,
    target: &dyn VfsFile,
    first: u32,
    end: u32,
    page_size: u32,
) {
    record(|| Event::ChunkRead {
        partition,
        first,
        images: read_images(target, first, end, page_size),
    });
}

pub(crate) fn chunk_copied(partition: PartitionId, copied_end: u32) {
    record(|| Event::ChunkCopied {
        partition,
        copied_end,
    });
}

pub(crate) fn copy_done(partition: PartitionId) {
    record(|| Event::CopyDone { partition });
}

pub(crate) fn close(partition: PartitionId) {
    record(|| Event::Close { partition });
}

/// Records the delta the merge read, as `(page index, image)` in any order (sorted here).
pub(crate) fn merge(partition: PartitionId, mut delta: Vec<(u32, Option<PageImage>)>) {
    delta.sort_by_key(|(index, _)| *index);
    record(|| Event::Merge { partition, delta });
}

pub(crate) fn cancelled() {
    record(|| Event::Cancelled);
}

/// The images of pages `first..end` of `file`, read with one call (under a checker, every file
/// operation is a scheduling point: one per chunk keeps the recording from multiplying them).
fn read_images(file: &dyn VfsFile, first: u32, end: u32, page_size: u32) -> Vec<Option<PageImage>> {
    let page_size = page_size as usize;
    let mut pages = vec![0u8; end.saturating_sub(first) as usize * page_size];
    if file
        .read_exact_at(&mut pages, u64::from(first) * page_size as u64)
        .is_err()
    {
        return vec![None; pages.len() / page_size];
    }
    pages
        .chunks_exact(page_size)
        .zip(first..)
        .map(|(page, index)| PageImage::of(page, index))
        .collect()
}

// ---- the recorder ------------------------------------------------------------------------------

#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
mod recorder {
    #![allow(clippy::disallowed_types)]
    // Plain std types, not the facade's: this is test instrumentation that the checkers should
    // not explore (and loom or shuttle primitives cannot live in a static). The log lock is never
    // held across anything that blocks or yields, so it cannot deadlock a checker's scheduler.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::Event;

    static RECORDING: AtomicBool = AtomicBool::new(false);
    static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    static EXCLUSIVE: Mutex<()> = Mutex::new(());

    /// Whether events are being recorded: between [`start`] and [`take`].
    pub fn enabled() -> bool {
        RECORDING.load(Ordering::Relaxed)
    }

    pub(super) fn push(event: Event) {
        EVENTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Clears the log and starts recording, for the whole process.
    pub fn start() {
        EVENTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        RECORDING.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns the events recorded since [`start`].
    pub fn take() -> Vec<super::Event> {
        RECORDING.store(false, Ordering::SeqCst);
        std::mem::take(&mut *EVENTS.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The log is process-wide: a test that records holds this for its whole run, so that two
    /// recording tests of one test binary do not interleave their events.
    pub fn exclusive() -> MutexGuard<'static, ()> {
        EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub use recorder::{enabled, exclusive, start, take};

/// Builds without `cfg(test)`, `deltasnap_testing` or a checker cfg: nothing is ever recorded.
#[cfg(not(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle)))]
#[inline(always)]
pub const fn enabled() -> bool {
    false
}

/// Records the event `make` builds, if recording is on (it is built only then).
#[inline(always)]
fn record(make: impl FnOnce() -> Event) {
    #[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
    if recorder::enabled() {
        recorder::push(make());
    }
    #[cfg(not(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle)))]
    drop(make);
}
