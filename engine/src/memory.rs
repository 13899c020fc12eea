//! Page memory: the in-memory page table of immutable page images, the per-page latch, and the
//! byte budget.
//!
//! A page's [`Slot`] (behind its latch) holds the latest image (an `Arc`, replaced, never mutated,
//! by each write), the epoch of the write that made it, whether a checkpoint still has to write it,
//! and the *checkpoint image*: when a writer of epoch `E+1` overwrites a page whose latest image
//! belongs to epoch `E` while checkpoint `E` has not yet written it, the `E` image is kept for the
//! checkpoint (DESIGN §3 step 3; without it checkpoint `E` would write `E+1` content and break K2).
//!
//! Budget: every resident image counts `page_size` bytes. Clean images (written by a checkpoint,
//! no checkpoint image pending) may be evicted and are read back from the partition file on
//! demand. Dirty images can only be released by a checkpoint; past the dirty threshold the engine
//! requests one, past the hard limit writers are throttled before they enter an epoch (so a
//! throttled writer never holds up the cut: no deadlock). A dropped partition's pages are never
//! written: the checkpoint of the drop's epoch (or the redo replay of the drop) returns their
//! dirty bytes, and deleting the partition returns their resident bytes, so the budget always
//! counts exactly what the live pages hold (L3).

use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex, RwLock};
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::VfsFile;

/// One immutable page image: `page_size` bytes (payload, then footer space filled in when the
/// checkpoint seals it) and the LSN of the last write applied.
#[derive(Debug)]
pub(crate) struct PageImage {
    pub(crate) bytes: Box<[u8]>,
    pub(crate) lsn: Lsn,
}

impl PageImage {
    pub(crate) fn zeroed(page_size: usize, lsn: Lsn) -> Self {
        PageImage {
            bytes: vec![0u8; page_size].into_boxed_slice(),
            lsn,
        }
    }
}

/// The state of one page, behind its latch.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The latest image; `None` when evicted (the partition file holds it).
    pub(crate) image: Option<Arc<PageImage>>,
    /// The epoch of the write that made `image` (0: read from the file, not written since open).
    pub(crate) image_epoch: Epoch,
    /// `image` has not been written to the partition file yet.
    pub(crate) unwritten: bool,
    /// The epoch in which a full image of this page was last logged (0: none since open or
    /// allocation): the first write of an epoch logs a full image, later ones a delta.
    pub(crate) logged_full_in: Epoch,
    /// The image of the previous epoch, kept for its running checkpoint.
    pub(crate) checkpoint_image: Option<Arc<PageImage>>,
}

impl Slot {
    fn evictable(&self) -> bool {
        self.image.is_some() && !self.unwritten && self.checkpoint_image.is_none()
    }
}

/// A value as of the latest epoch that changed it, and the one before: enough to answer "as of
/// the cut" for the running checkpoint, because at most two epochs are live (the current one and
/// the one being checkpointed; the next cut waits for the running checkpoint to end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versioned<T> {
    latest: (Epoch, T),
    previous: Option<(Epoch, T)>,
}

impl<T: Clone> Versioned<T> {
    pub(crate) fn new(epoch: Epoch, value: T) -> Self {
        Versioned {
            latest: (epoch, value),
            previous: None,
        }
    }

    pub(crate) fn latest(&self) -> &T {
        &self.latest.1
    }

    pub(crate) fn latest_epoch(&self) -> Epoch {
        self.latest.0
    }

    /// Sets the value in `epoch` (which is never older than the latest change).
    pub(crate) fn set(&mut self, epoch: Epoch, value: T) {
        debug_assert!(epoch >= self.latest.0, "epochs never go backwards");
        if epoch > self.latest.0 {
            self.previous = Some(self.latest.clone());
        }
        self.latest = (epoch, value);
    }

    /// The value as of the end of `epoch`; `None` if it did not exist then.
    pub(crate) fn at(&self, epoch: Epoch) -> Option<&T> {
        if self.latest.0 <= epoch {
            Some(&self.latest.1)
        } else {
            match &self.previous {
                Some((e, value)) if *e <= epoch => Some(value),
                _ => None,
            }
        }
    }
}

/// What the partition looks like across epochs: whether it exists and its logical page count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionShape {
    pub(crate) exists: bool,
    pub(crate) page_count: u32,
}

/// A partition: its file, its page slots and its shape over epochs.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: PartitionId,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn VfsFile>,
    /// Slots by page index; the vector's length is the latest logical page count. Writers take
    /// the read lock to find a slot; allocation takes the write lock.
    slots: RwLock<Vec<Arc<Mutex<Slot>>>>,
    /// Creation, drop and page count over epochs.
    pub(crate) shape: Mutex<Versioned<PartitionShape>>,
    /// The partition file has been created but its directory entry is not yet durable.
    pub(crate) needs_dir_sync: AtomicBool,
    /// Dropped: set under the allocation lock, read by writers under [`Partition::write_gate`].
    dropped: AtomicBool,
}

impl Partition {
    pub(crate) fn new(
        id: PartitionId,
        path: PathBuf,
        file: Arc<dyn VfsFile>,
        created_epoch: Epoch,
        page_count: u32,
    ) -> Self {
        let slots = (0..page_count)
            .map(|_| Arc::new(Mutex::new(Slot::default())))
            .collect();
        Partition {
            id,
            path,
            file,
            slots: RwLock::new(slots),
            shape: Mutex::new(Versioned::new(
                created_epoch,
                PartitionShape {
                    exists: true,
                    page_count,
                },
            )),
            needs_dir_sync: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        }
    }

    /// The latest logical page count.
    pub(crate) fn page_count(&self) -> u32 {
        self.slots.read().len() as u32
    }

    pub(crate) fn exists(&self) -> bool {
        self.shape.lock().latest().exists
    }

    /// The slot of page `index`, or `PageOutOfRange`.
    pub(crate) fn slot(&self, index: u32) -> Result<Arc<Mutex<Slot>>> {
        let slots = self.slots.read();
        slots
            .get(index as usize)
            .cloned()
            .ok_or(Error::PageOutOfRange {
                page: PageId::new(self.id, index),
                page_count: slots.len() as u32,
            })
    }

    /// Appends a slot (allocation); the caller holds the allocation order by holding
    /// [`Partition::allocation_lock`].
    pub(crate) fn allocation_lock(
        &self,
    ) -> crate::sync::RwLockWriteGuard<'_, Vec<Arc<Mutex<Slot>>>> {
        self.slots.write()
    }

    /// Held by a writer from its check that the partition was not dropped until its write is
    /// published (or `NoSuchPartition`). A drop holds the allocation lock while it logs and
    /// marks itself ([`Partition::mark_dropped`]), so every write orders wholly before the drop
    /// (and is part of the store until it) or wholly after it (and fails): no write returns
    /// `Ok` for a page a drop already discarded.
    pub(crate) fn write_gate(
        &self,
    ) -> Result<crate::sync::RwLockReadGuard<'_, Vec<Arc<Mutex<Slot>>>>> {
        let slots = self.slots.read();
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::NoSuchPartition(self.id));
        }
        Ok(slots)
    }

    /// Marks the partition dropped; the caller holds [`Partition::allocation_lock`].
    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    /// Takes every image out of memory and returns their resident bytes to `budget`: the
    /// partition is gone for good (its file deleted, or dropped during recovery). Taking them,
    /// not only counting them, keeps a concurrent eviction sweep from returning them twice.
    /// Dirty bytes are not touched: the checkpoint of the drop returned them
    /// ([`Budget::release_dropped_page`]).
    pub(crate) fn release_resident(&self, budget: &Budget) {
        for slot in self.slots_snapshot() {
            let mut latch = slot.lock();
            let freed = latch.image.take().is_some() as i64
                + latch.checkpoint_image.take().is_some() as i64;
            budget.add_resident(-freed);
        }
    }

    /// Reads page `index` from the partition file and verifies it.
    pub(crate) fn read_page_from_file(&self, index: u32, page_size: usize) -> Result<PageImage> {
        let mut bytes = vec![0u8; page_size].into_boxed_slice();
        self.file
            .read_exact_at(&mut bytes, index as u64 * page_size as u64)
            .ctx("read page", &self.path)
            .map_err(|e| match e {
                Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Error::Corrupted {
                        file: self.path.clone(),
                        page: Some(index as u64),
                        reason: "partition file ends before this page".into(),
                    }
                }
                other => other,
            })?;
        let footer = format::verify_page(&bytes, index, &self.path)?;
        Ok(PageImage {
            bytes,
            lsn: footer.lsn,
        })
    }

    /// Every slot, for eviction sweeps and checkpoint bookkeeping.
    pub(crate) fn slots_snapshot(&self) -> Vec<Arc<Mutex<Slot>>> {
        self.slots.read().clone()
    }
}

/// Byte accounting of page memory.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) page_size: u64,
    pub(crate) memory_bytes_max: u64,
    pub(crate) dirty_checkpoint_bytes: u64,
    pub(crate) dirty_throttle_bytes: u64,
    /// Bytes of resident images (latest and checkpoint images).
    pub(crate) resident_bytes: AtomicU64,
    /// Bytes of images a checkpoint still has to write.
    pub(crate) dirty_bytes: AtomicU64,
    /// Serializes eviction sweeps and remembers where the last one stopped (a clock hand).
    sweep: Mutex<(u32, u32)>,
}

impl Budget {
    pub(crate) fn new(
        page_size: u32,
        memory_bytes_max: u64,
        dirty_checkpoint_percent: u8,
        dirty_throttle_percent: u8,
    ) -> Self {
        let memory_bytes_max = memory_bytes_max.max(16 * page_size as u64);
        Budget {
            page_size: page_size as u64,
            memory_bytes_max,
            dirty_checkpoint_bytes: memory_bytes_max / 100 * dirty_checkpoint_percent as u64,
            dirty_throttle_bytes: memory_bytes_max / 100 * dirty_throttle_percent as u64,
            resident_bytes: AtomicU64::new(0),
            dirty_bytes: AtomicU64::new(0),
            sweep: Mutex::new((0, 0)),
        }
    }

    pub(crate) fn add_resident(&self, pages: i64) {
        add_signed(&self.resident_bytes, pages * self.page_size as i64);
    }

    pub(crate) fn add_dirty(&self, pages: i64) {
        add_signed(&self.dirty_bytes, pages * self.page_size as i64);
    }

    pub(crate) fn dirty(&self) -> u64 {
        self.dirty_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn resident(&self) -> u64 {
        self.resident_bytes.load(Ordering::Relaxed)
    }

    /// Returns the dirty bytes of a page of a dropped partition: no checkpoint will write it,
    /// so none would ever release them (L3). Its checkpoint image, if a writer kept one, is
    /// freed with them; its latest image stays resident (clean now, so evictable) until the
    /// partition is gone for good ([`Partition::release_resident`]).
    pub(crate) fn release_dropped_page(&self, slot: &Mutex<Slot>) {
        let mut latch = slot.lock();
        if latch.checkpoint_image.take().is_some() {
            self.add_resident(-1);
            self.add_dirty(-1);
        }
        if latch.unwritten {
            latch.unwritten = false;
            self.add_dirty(-1);
        }
    }

    pub(crate) fn over_memory(&self) -> bool {
        self.resident() > self.memory_bytes_max
    }

    /// Evicts clean images until resident bytes are under 90% of the budget or a whole sweep
    /// found nothing to evict. Latched slots are skipped (never waited for), so a sweep can run
    /// while the caller holds no latch and never deadlocks with writers.
    pub(crate) fn evict(&self, partitions: &[Arc<Partition>]) -> u64 {
        let Some(mut hand) = self.sweep.try_lock() else {
            return 0;
        };
        let target = self.memory_bytes_max / 10 * 9;
        let mut evicted = 0u64;
        let total_slots: usize = partitions.iter().map(|p| p.page_count() as usize).sum();
        let mut visited = 0usize;
        if partitions.is_empty() {
            return 0;
        }
        let (mut part_ix, mut page_ix) = (hand.0 as usize % partitions.len(), hand.1 as usize);
        while self.resident() > target && visited < total_slots {
            let partition = &partitions[part_ix];
            let slots = partition.slots.read();
            if page_ix >= slots.len() {
                drop(slots);
                part_ix = (part_ix + 1) % partitions.len();
                page_ix = 0;
                continue;
            }
            let slot = Arc::clone(&slots[page_ix]);
            drop(slots);
            visited += 1;
            page_ix += 1;
            let evicted_one = match slot.try_lock() {
                Some(mut latch) if latch.evictable() => {
                    latch.image = None;
                    true
                }
                _ => false,
            };
            if evicted_one {
                self.add_resident(-1);
                evicted += 1;
            }
        }
        *hand = (part_ix as u32, page_ix as u32);
        evicted
    }
}

fn add_signed(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_answers_as_of_an_epoch() {
        let mut v = Versioned::new(3, 10u32);
        assert_eq!(v.at(2), None);
        assert_eq!(v.at(3), Some(&10));
        v.set(3, 11);
        v.set(5, 12);
        assert_eq!(v.at(4), Some(&11));
        assert_eq!(v.at(5), Some(&12));
        assert_eq!(v.latest(), &12);
    }
}
