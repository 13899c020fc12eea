//! Partitions: finding one, creating and dropping one, and the life of their files (the
//! partitions directory's fsync, deletion after a drop, holds by a running snapshot).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::layout::{self, PARTITIONS_DIR};
use crate::memory::{Partition, PartitionShape};
use crate::store::Store;
use crate::sync::atomic::Ordering;
use crate::sync::Arc;
use crate::types::{Epoch, PartitionId};
use crate::vfs::OpenMode;
use crate::wal::Record;

impl Store {
    /// A partition that exists now.
    pub(crate) fn partition(&self, id: PartitionId) -> Result<Arc<Partition>> {
        match self.partitions.read().get(&id) {
            Some(p) if p.exists() => Ok(Arc::clone(p)),
            _ => Err(Error::NoSuchPartition(id)),
        }
    }

    pub(crate) fn partitions_including_dropped(&self) -> BTreeMap<PartitionId, Arc<Partition>> {
        self.partitions.read().clone()
    }

    fn partition_path(&self, id: PartitionId) -> PathBuf {
        layout::partition_path(&self.dir, id)
    }

    /// Creates an empty partition and its file.
    pub(crate) fn create_partition(&self, id: PartitionId) -> Result<()> {
        let guard = self.epochs.enter();
        let epoch = guard.epoch();
        let mut partitions = self.partitions.write();
        if let Some(existing) = partitions.get(&id) {
            if existing.exists() {
                return Err(Error::PartitionExists(id));
            }
            return Err(Error::InvalidArgument(format!(
                "partition {id} was dropped and its file is not deleted yet; checkpoint first"
            )));
        }
        let path = self.partition_path(id);
        let file = self
            .vfs
            .open(&path, OpenMode::Create)
            .ctx("create partition file", &path)?;
        // A file left by a create whose redo record never became durable holds nothing we owe.
        file.set_len(0).ctx("truncate partition file", &path)?;
        self.wal.append(&Record::CreatePartition {
            epoch,
            partition: id,
        })?;
        let partition = Partition::new(id, path, file, epoch, 0);
        partition.needs_dir_sync.store(true, Ordering::Release);
        partitions.insert(id, Arc::new(partition));
        guard.state().mark_changed();
        Ok(())
    }

    /// Drops a partition (its file goes after the checkpoint of the drop; module doc of `write`).
    pub(crate) fn drop_partition(&self, id: PartitionId) -> Result<()> {
        let partition = self.partition(id)?;
        loop {
            let guard = self.epochs.enter();
            let epoch = guard.epoch();
            // Waits for the writes in flight (`Partition::write_gate`) and keeps new ones out.
            let _slots = partition.allocation_lock();
            // A write that went before holds an epoch no newer than the current one. If a cut
            // passed this drop, such a write may belong to the next epoch: its receipt would
            // name an epoch in which the partition no longer exists. Retry in the new epoch,
            // like a writer whose page the cut passed (step 2).
            if self.epochs.current_epoch() != epoch {
                continue;
            }
            let mut shape = partition.shape.lock();
            if shape.latest_epoch() > epoch {
                continue;
            }
            if !shape.latest().exists {
                return Err(Error::NoSuchPartition(id));
            }
            self.wal.append(&Record::DropPartition {
                epoch,
                partition: id,
            })?;
            partition.mark_dropped();
            let page_count = shape.latest().page_count;
            shape.set(
                epoch,
                PartitionShape {
                    exists: false,
                    page_count,
                },
            );
            guard.state().mark_changed();
            return Ok(());
        }
    }

    /// fsyncs the partitions directory if a partition file was created since the last time.
    pub(crate) fn sync_partitions_dir(
        &self,
        partitions: &BTreeMap<PartitionId, Arc<Partition>>,
    ) -> Result<()> {
        let pending: Vec<_> = partitions
            .values()
            .filter(|p| p.needs_dir_sync.load(Ordering::Acquire))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join(PARTITIONS_DIR);
        self.vfs
            .sync_dir(&dir)
            .ctx("fsync partitions directory", &dir)?;
        for partition in pending {
            partition.needs_dir_sync.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Deletes the files of partitions dropped at or before `epoch` that no snapshot holds.
    pub(crate) fn delete_dropped_partitions(&self, epoch: Epoch) -> Result<()> {
        let held = self.held_partitions.lock().clone();
        let doomed: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .values()
            .filter(|p| {
                let shape = p.shape.lock();
                // Dropped at or before `epoch`: a partition created after `epoch` (no shape at
                // it) and already dropped again belongs to a later checkpoint, which must still
                // find it to return its pages' dirty bytes (L3).
                !shape.latest().exists
                    && shape.at(epoch).is_some_and(|s| !s.exists)
                    && !held.contains_key(&p.id)
            })
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for partition in &doomed {
            match self.vfs.remove_file(&partition.path) {
                Ok(()) => {}
                // An earlier cleanup removed the file (and released its memory) but failed
                // before forgetting the partition: only the steps below are left.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(Error::io(
                        "delete dropped partition file",
                        &partition.path,
                        error,
                    ))
                }
            }
            partition.release_resident(&self.budget);
        }
        let dir = self.dir.join(PARTITIONS_DIR);
        self.vfs
            .sync_dir(&dir)
            .ctx("fsync partitions directory", &dir)?;
        let mut partitions = self.partitions.write();
        for partition in doomed {
            partitions.remove(&partition.id);
        }
        Ok(())
    }

    /// Keeps the files of `ids` from being deleted by a drop until [`Store::release_partitions`].
    pub(crate) fn hold_partitions(&self, ids: &[PartitionId]) {
        let mut held = self.held_partitions.lock();
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
    }

    pub(crate) fn release_partitions(&self, ids: &[PartitionId]) {
        let mut held = self.held_partitions.lock();
        for id in ids {
            if let Some(count) = held.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    held.remove(id);
                }
            }
        }
    }
}
