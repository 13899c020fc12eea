//! The store's write path: page writes, page allocation and metadata.
//!
//! Write path (DESIGN §3; the page latch is held from step 2 to step 4, so redo order = apply
//! order):
//! 1. throttle if dirty bytes are past the hard limit (before entering an epoch, so a throttled
//!    writer never holds up a cut), then register in the current epoch `E`;
//! 2. latch the page; if its latest image belongs to an epoch newer than `E`, the cut has passed
//!    this writer: unlatch, leave `E` and retry (nothing was logged yet);
//! 3. if the latest image belongs to an older epoch whose checkpoint has not written it yet, keep
//!    it as the page's checkpoint image (K2);
//! 4. append the redo record (a full page image on the page's first write in `E`, torn-page
//!    protection), publish the new image tagged `E`, mark the page dirty in `E`;
//! 5. unlatch and leave `E`.
//!
//! Drop: a writer holds its partition's write gate (the read side of the allocation lock) from
//! registration to publish, and checks there that the partition is not dropped; `drop_partition`
//! logs and marks the drop under the allocation lock, in an epoch `D` that is still current once
//! it holds it (else it retries). So a write either precedes the drop, with a receipt epoch
//! `<= D`, or fails with `NoSuchPartition` having logged nothing. The checkpoint of `D` writes
//! none of the partition's pages and returns their dirty bytes; deleting its file returns the
//! resident ones (L3).
//!
//! `Engine::write` runs step 1's throttle (`checkpoint::throttle`) between
//! [`Store::write_target`], which checks the write and finds its page, and [`Store::write`],
//! steps 1 (the epoch) to 5; `Engine::allocate_page` likewise around [`Store::allocate_page`].

use crate::bugs::{self, Bug};
use crate::config::METADATA_KEY_BYTES_MAX;
use crate::error::{Error, Result};
use crate::format;
use crate::memory::{PageImage, Partition, PartitionShape, Slot, Versioned};
use crate::store::Store;
use crate::sync::atomic::Ordering;
use crate::sync::{Arc, Mutex};
use crate::types::{Epoch, Lsn, PageId, WriteReceipt};
use crate::wal::Record;

/// A write that passed its checks: the page's partition and slot, found before the writer is
/// throttled and enters an epoch.
pub(crate) struct WriteTarget {
    page: PageId,
    offset: usize,
    partition: Arc<Partition>,
    slot: Arc<Mutex<Slot>>,
}

impl Store {
    /// Checks a write of `len` bytes at `offset` of `page`'s payload and finds the page.
    pub(crate) fn write_target(
        &self,
        page: PageId,
        offset: usize,
        len: usize,
    ) -> Result<WriteTarget> {
        let payload_size = format::payload_size(self.page_size);
        if offset.checked_add(len).is_none_or(|end| end > payload_size) {
            return Err(Error::OutOfPage {
                offset,
                len,
                payload_size,
            });
        }
        let partition = self.partition(page.partition)?;
        let slot = partition.slot(page.index)?;
        Ok(WriteTarget {
            page,
            offset,
            partition,
            slot,
        })
    }

    /// Steps 1 (the epoch) to 5 of the module doc for a write checked by [`Store::write_target`].
    pub(crate) fn write(&self, target: WriteTarget, bytes: &[u8]) -> Result<WriteReceipt> {
        let WriteTarget {
            page,
            offset,
            partition,
            slot,
        } = target;
        let mut grew_memory = false;
        let receipt = loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            // Held until the write is published: a drop orders wholly before it or after it.
            let _not_dropped = partition.write_gate()?;
            let mut latch = slot.lock();
            if latch.image_epoch > epoch && !bugs::active(Bug::NoRetryAfterCut) {
                // The cut passed this writer (step 2).
                drop(latch);
                drop(guard);
                self.counters.write_retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("deltasnap_write_retries_total").increment(1);
                continue;
            }
            let base = match &latch.image {
                Some(image) => Arc::clone(image),
                None => {
                    let image =
                        Arc::new(partition.read_page_from_file(page.index, self.page_size)?);
                    latch.image = Some(Arc::clone(&image));
                    self.budget.add_resident(1);
                    grew_memory = true;
                    image
                }
            };
            // Step 3: keep the image the running checkpoint still has to write.
            grew_memory |= self.keep_checkpoint_image(&mut latch, epoch, &base);
            // Step 4: log, then publish.
            let mut new_bytes = base.bytes.clone();
            new_bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
            let record = redo_record(&latch, epoch, page, offset, bytes, &new_bytes);
            let lsn = match self.wal.append(&record) {
                Ok(lsn) => lsn,
                Err(error) => {
                    self.poison(format!("redo log append failed: {error}"));
                    return Err(error);
                }
            };
            let first_in_epoch = self.publish(&mut latch, epoch, new_bytes, lsn);
            if first_in_epoch {
                guard.state().mark_dirty(page);
            }
            break WriteReceipt { lsn, epoch };
        };
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("deltasnap_writes_total").increment(1);
        if grew_memory {
            self.after_memory_growth();
        }
        Ok(receipt)
    }

    /// Step 3: if the latest image `base` belongs to an older epoch than `epoch` and the running
    /// checkpoint has not written it yet, keeps it as the page's checkpoint image (K2). Whether
    /// it did (memory grew).
    fn keep_checkpoint_image(&self, latch: &mut Slot, epoch: Epoch, base: &Arc<PageImage>) -> bool {
        if latch.unwritten
            && latch.image_epoch < epoch
            && latch.checkpoint_image.is_none()
            && !bugs::active(Bug::NoCheckpointImage)
        {
            latch.checkpoint_image = Some(Arc::clone(base));
            self.counters
                .checkpoint_images_kept
                .fetch_add(1, Ordering::Relaxed);
            self.budget.add_resident(1);
            self.budget.add_dirty(1);
            return true;
        }
        false
    }

    /// Step 4, after the redo record at `lsn`: publishes the new image tagged `epoch` and marks it
    /// unwritten. Whether it is the page's first write in `epoch` (the page is then dirty in it).
    fn publish(&self, latch: &mut Slot, epoch: Epoch, bytes: Box<[u8]>, lsn: Lsn) -> bool {
        let first_in_epoch = latch.image_epoch != epoch;
        latch.image = Some(Arc::new(PageImage { bytes, lsn }));
        latch.image_epoch = epoch;
        latch.logged_full_in = epoch;
        if !latch.unwritten {
            latch.unwritten = true;
            self.budget.add_dirty(1);
        }
        first_in_epoch
    }

    /// Evicts clean images if memory is over the budget.
    fn after_memory_growth(&self) {
        if self.budget.over_memory() {
            let partitions: Vec<_> = self.partitions.read().values().cloned().collect();
            let evicted = self.budget.evict(&partitions);
            self.counters
                .pages_evicted
                .fetch_add(evicted, Ordering::Relaxed);
            metrics::counter!("deltasnap_pages_evicted_total").increment(evicted);
        }
    }

    /// Allocates a zeroed page at the end of `partition` (found by [`Store::partition`] before
    /// the writer was throttled).
    pub(crate) fn allocate_page(&self, partition: &Partition) -> Result<PageId> {
        let id = partition.id;
        let page = loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            let mut slots = partition.allocation_lock();
            let mut shape = partition.shape.lock();
            if shape.latest_epoch() > epoch {
                continue;
            }
            if !shape.latest().exists {
                return Err(Error::NoSuchPartition(id));
            }
            let index = u32::try_from(slots.len())
                .ok()
                .filter(|&i| i < u32::MAX)
                .ok_or_else(|| Error::InvalidArgument(format!("partition {id} is full")))?;
            let lsn = self.wal.append(&Record::Allocate {
                epoch,
                partition: id,
                page_count: index + 1,
            })?;
            slots.push(Arc::new(Mutex::new(Slot {
                image: Some(Arc::new(PageImage::zeroed(self.page_size, lsn))),
                image_epoch: epoch,
                unwritten: true,
                logged_full_in: 0,
                checkpoint_image: None,
            })));
            shape.set(
                epoch,
                PartitionShape {
                    exists: true,
                    page_count: index + 1,
                },
            );
            self.budget.add_resident(1);
            self.budget.add_dirty(1);
            let page = PageId::new(id, index);
            guard.state().mark_dirty(page);
            break page;
        };
        self.after_memory_growth();
        Ok(page)
    }

    /// Sets metadata `key` to `value` (`None`: deletes it).
    pub(crate) fn metadata_set(&self, key: &[u8], value: Option<Vec<u8>>) -> Result<WriteReceipt> {
        if key.is_empty() || key.len() > METADATA_KEY_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "metadata key must be 1..={METADATA_KEY_BYTES_MAX} bytes, got {}",
                key.len()
            )));
        }
        loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            let mut metadata = self.metadata.lock();
            if metadata.get(key).is_some_and(|v| v.latest_epoch() > epoch) {
                continue;
            }
            let lsn = self.wal.append(&Record::MetadataPut {
                epoch,
                key: key.to_vec(),
                value: value.clone(),
            })?;
            match metadata.get_mut(key) {
                Some(versioned) => versioned.set(epoch, value),
                None => {
                    let mut versioned = Versioned::new(0, None);
                    versioned.set(epoch, value);
                    metadata.insert(key.to_vec(), versioned);
                }
            }
            guard.state().mark_changed();
            return Ok(WriteReceipt { lsn, epoch });
        }
    }
}

/// Step 4's redo record: a full page image on the page's first write in `epoch` (torn-page
/// protection), else the written bytes.
fn redo_record(
    latch: &Slot,
    epoch: Epoch,
    page: PageId,
    offset: usize,
    bytes: &[u8],
    new_bytes: &[u8],
) -> Record {
    if latch.logged_full_in != epoch {
        Record::PageImage {
            epoch,
            page,
            // `new_bytes` is the whole page: log its payload.
            payload: new_bytes[..format::payload_size(new_bytes.len())].to_vec(),
        }
    } else {
        Record::PageDelta {
            epoch,
            page,
            offset: offset as u32,
            bytes: bytes.to_vec(),
        }
    }
}
