//! Redo replay: the records from the control file's replay-start LSN applied to the recovered
//! state. Every page a record touches is published as the recovered epoch's image and marked
//! dirty in it, so the first checkpoint after the open writes it (R1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::bugs::{self, Bug};
use crate::epoch::Epochs;
use crate::error::{Error, IoContext, Result};
use crate::format;
use crate::layout;
use crate::memory::{Budget, PageImage, Partition, PartitionShape, Slot, Versioned};
use crate::store::MetadataMap;
use crate::sync::atomic::Ordering;
use crate::sync::{Arc, Mutex};
use crate::types::{Epoch, Lsn, PageId, PartitionId};
use crate::vfs::{OpenMode, Vfs};
use crate::wal::{Record, Wal};

/// A page's partition and slot.
type SlotRef = (Arc<Partition>, Arc<Mutex<Slot>>);

/// Applies redo records to the recovered state.
pub(super) struct Replayer<'a> {
    vfs: &'a Arc<dyn Vfs>,
    partitions_dir: &'a Path,
    page_size: usize,
    epoch: Epoch,
    partitions: &'a mut BTreeMap<PartitionId, Arc<Partition>>,
    metadata: &'a mut MetadataMap,
    /// Pages torn on disk whose next record must be a full image.
    needs_full_image: BTreeSet<PageId>,
    budget: &'a Budget,
    dirty: BTreeSet<PageId>,
    changed: bool,
}

impl<'a> Replayer<'a> {
    /// A replayer of records into the state of `epoch`, the first after the checkpoint.
    pub(super) fn new(
        vfs: &'a Arc<dyn Vfs>,
        partitions_dir: &'a Path,
        page_size: usize,
        epoch: Epoch,
        partitions: &'a mut BTreeMap<PartitionId, Arc<Partition>>,
        metadata: &'a mut MetadataMap,
        budget: &'a Budget,
    ) -> Self {
        Replayer {
            vfs,
            partitions_dir,
            page_size,
            epoch,
            partitions,
            metadata,
            needs_full_image: BTreeSet::new(),
            budget,
            dirty: BTreeSet::new(),
            changed: false,
        }
    }

    /// Replays `wal` from `from`, then marks what it changed dirty in the current epoch of
    /// `epochs`. Returns the number of records replayed.
    pub(super) fn replay(mut self, wal: &Wal, from: Lsn, epochs: &Epochs) -> Result<u64> {
        let epoch_state = epochs.current();
        let records = wal.replay(from, |lsn, record| self.apply(lsn, record))?;
        if let Some(page) = self.needs_full_image.iter().next() {
            return Err(Error::Corrupted {
                file: self.partitions[&page.partition].path.clone(),
                page: Some(page.index as u64),
                reason: "page is torn on disk and the redo log holds no full image to repair it"
                    .into(),
            });
        }
        for page in std::mem::take(&mut self.dirty) {
            epoch_state.mark_dirty(page);
        }
        if self.changed {
            epoch_state.mark_changed();
        }
        Ok(records)
    }

    fn apply(&mut self, lsn: Lsn, record: Record) -> Result<()> {
        match record {
            Record::PageImage { page, payload, .. } => self.page_image(lsn, page, &payload),
            Record::PageDelta {
                page,
                offset,
                bytes,
                ..
            } => self.page_delta(lsn, page, offset, &bytes),
            Record::Allocate {
                partition,
                page_count,
                ..
            } => {
                self.allocate(lsn, partition, page_count);
                Ok(())
            }
            Record::CreatePartition { partition, .. } => self.create_partition(partition),
            Record::DropPartition { partition, .. } => {
                self.drop_partition(partition);
                Ok(())
            }
            Record::MetadataPut { key, value, .. } => {
                match self.metadata.get_mut(&key) {
                    Some(versioned) => {
                        versioned.set(self.epoch.max(versioned.latest_epoch()), value)
                    }
                    None => {
                        self.metadata.insert(key, Versioned::new(self.epoch, value));
                    }
                }
                self.changed = true;
                Ok(())
            }
        }
    }

    fn live_partition(&self, id: PartitionId) -> Option<Arc<Partition>> {
        self.partitions.get(&id).filter(|p| p.exists()).cloned()
    }

    fn slot_for(&self, page: PageId, lsn: Lsn) -> Result<Option<SlotRef>> {
        // Records for a dropped partition are skipped: the drop came later in the log.
        let Some(partition) = self.live_partition(page.partition) else {
            return Ok(None);
        };
        match partition.slot(page.index) {
            Ok(slot) => Ok(Some((partition, slot))),
            Err(_) => Err(Error::Corrupted {
                file: partition.path.clone(),
                page: Some(page.index as u64),
                reason: format!("redo record at LSN {lsn} writes a page that was never allocated"),
            }),
        }
    }

    fn publish(&mut self, page: PageId, slot: &Mutex<Slot>, image: PageImage) {
        let mut latch = slot.lock();
        if latch.image.is_none() {
            self.budget.add_resident(1);
        }
        if !latch.unwritten {
            self.budget.add_dirty(1);
        }
        latch.image = Some(Arc::new(image));
        latch.image_epoch = self.epoch;
        latch.unwritten = true;
        // The next write logs a full image again: torn-page protection across the restart.
        latch.logged_full_in = 0;
        self.dirty.insert(page);
    }

    fn page_image(&mut self, lsn: Lsn, page: PageId, payload: &[u8]) -> Result<()> {
        let payload_size = format::payload_size(self.page_size);
        let Some((_, slot)) = self.slot_for(page, lsn)? else {
            return Ok(());
        };
        if payload.len() != payload_size {
            return Err(Error::Corrupted {
                file: self.partitions_dir.to_path_buf(),
                page: Some(page.index as u64),
                reason: format!("redo page image at LSN {lsn} has {} bytes", payload.len()),
            });
        }
        let mut image = PageImage::zeroed(self.page_size, lsn);
        image.bytes[..payload_size].copy_from_slice(payload);
        self.needs_full_image.remove(&page);
        self.publish(page, &slot, image);
        Ok(())
    }

    fn page_delta(&mut self, lsn: Lsn, page: PageId, offset: u32, bytes: &[u8]) -> Result<()> {
        let payload_size = format::payload_size(self.page_size);
        let Some((partition, slot)) = self.slot_for(page, lsn)? else {
            return Ok(());
        };
        if self.needs_full_image.contains(&page) {
            return Ok(());
        }
        let end = offset as usize + bytes.len();
        if end > payload_size {
            return Err(Error::Corrupted {
                file: partition.path.clone(),
                page: Some(page.index as u64),
                reason: format!("redo delta at LSN {lsn} ends at byte {end}, past the payload"),
            });
        }
        let base = slot.lock().image.clone();
        let mut image = match base {
            Some(image) => PageImage {
                bytes: image.bytes.clone(),
                lsn,
            },
            None => match partition.read_page_from_file(page.index, self.page_size) {
                Ok(image) => image,
                Err(Error::Corrupted { .. } | Error::ChecksumMismatch { .. }) => {
                    // Torn by a checkpoint the crash interrupted; a full image of the same page
                    // follows in the log (that checkpoint's epoch logged one).
                    self.needs_full_image.insert(page);
                    return Ok(());
                }
                Err(other) => return Err(other),
            },
        };
        image.lsn = lsn;
        image.bytes[offset as usize..end].copy_from_slice(bytes);
        self.publish(page, &slot, image);
        Ok(())
    }

    fn allocate(&mut self, lsn: Lsn, id: PartitionId, page_count: u32) {
        let Some(partition) = self.live_partition(id) else {
            return;
        };
        let mut slots = partition.allocation_lock();
        while (slots.len() as u32) < page_count {
            let index = slots.len() as u32;
            let slot = Arc::new(Mutex::new(Slot::default()));
            slots.push(Arc::clone(&slot));
            self.publish(
                PageId::new(id, index),
                &slot,
                PageImage::zeroed(self.page_size, lsn),
            );
            self.needs_full_image.remove(&PageId::new(id, index));
        }
        partition.shape.lock().set(
            self.epoch,
            PartitionShape {
                exists: true,
                page_count: slots.len() as u32,
            },
        );
        self.changed = true;
    }

    fn create_partition(&mut self, id: PartitionId) -> Result<()> {
        if self.partitions.get(&id).is_some_and(|p| p.exists()) {
            return Ok(()); // already in the checkpoint
        }
        let path = layout::partition_path_in(self.partitions_dir, id);
        let file = self
            .vfs
            .open(&path, OpenMode::Create)
            .ctx("create partition file", &path)?;
        file.set_len(0).ctx("truncate partition file", &path)?;
        let partition = Partition::new(id, path, file, self.epoch, 0);
        partition.needs_dir_sync.store(true, Ordering::Release);
        self.partitions.insert(id, Arc::new(partition));
        self.changed = true;
        Ok(())
    }

    fn drop_partition(&mut self, id: PartitionId) {
        let Some(partition) = self.live_partition(id) else {
            return;
        };
        let mut shape = partition.shape.lock();
        let page_count = shape.latest().page_count;
        shape.set(
            self.epoch,
            PartitionShape {
                exists: false,
                page_count,
            },
        );
        drop(shape);
        partition.mark_dropped();
        self.dirty.retain(|p| p.partition != id);
        if !bugs::active(Bug::DropLeaksDirtyBytes) {
            // No checkpoint writes these pages: return their bytes now (L3).
            for slot in partition.slots_snapshot() {
                self.budget.release_dropped_page(&slot);
            }
            partition.release_resident(self.budget);
        }
        self.changed = true;
    }
}
