//! Reads: a page, the metadata and the partitions as they are now, and the store as of a
//! checkpoint's cut.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::format;
use crate::listener::{CheckpointCut, CutPartition};
use crate::store::Store;
use crate::sync::Arc;
use crate::types::{Epoch, Lsn, PageId, PartitionId};

impl Store {
    /// Reads the page's payload; caches its image unless memory is over the budget.
    pub(crate) fn read(&self, page: PageId) -> Result<Vec<u8>> {
        let partition = self.partition(page.partition)?;
        let slot = partition.slot(page.index)?;
        let payload_size = format::payload_size(self.page_size);
        let mut latch = slot.lock();
        if let Some(image) = &latch.image {
            return Ok(image.bytes[..payload_size].to_vec());
        }
        let image = partition.read_page_from_file(page.index, self.page_size)?;
        let payload = image.bytes[..payload_size].to_vec();
        if !self.budget.over_memory() {
            latch.image = Some(Arc::new(image));
            self.budget.add_resident(1);
        }
        Ok(payload)
    }

    /// The store as of the end of `epoch` (after its drain): partitions, page counts, metadata.
    pub(crate) fn cut_view(&self, epoch: Epoch, replay_start_lsn: Lsn) -> CheckpointCut {
        let partitions = self
            .partitions
            .read()
            .values()
            .filter_map(|p| {
                let shape = *p.shape.lock().at(epoch)?;
                shape.exists.then(|| CutPartition {
                    id: p.id,
                    page_count: shape.page_count,
                    file: Arc::clone(&p.file),
                    path: p.path.clone(),
                })
            })
            .collect();
        let metadata = self
            .metadata
            .lock()
            .iter()
            .filter_map(|(k, v)| {
                v.at(epoch)
                    .cloned()
                    .flatten()
                    .map(|value| (k.clone(), value))
            })
            .collect();
        CheckpointCut {
            epoch,
            replay_start_lsn,
            page_size: self.page_size as u32,
            partitions,
            metadata,
        }
    }

    /// The value of metadata `key` now.
    pub(crate) fn metadata_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.metadata
            .lock()
            .get(key)
            .and_then(|v| v.latest().clone())
    }

    /// The whole metadata map as it is now.
    pub(crate) fn metadata_now(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.metadata
            .lock()
            .iter()
            .filter_map(|(k, v)| v.latest().clone().map(|value| (k.clone(), value)))
            .collect()
    }

    /// The partitions that exist now, with their logical page counts.
    pub(crate) fn live_partitions(&self) -> Vec<(PartitionId, u32)> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.exists())
            .map(|p| (p.id, p.page_count()))
            .collect()
    }
}
