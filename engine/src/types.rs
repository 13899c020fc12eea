//! Identifiers and small value types shared by every module.

use std::fmt;

/// A partition: one file `partitions/part-<id>.dat` of fixed-size pages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A page address: partition and page index within it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PageId {
    /// The partition the page belongs to.
    pub partition: PartitionId,
    /// The page's index in its partition, from 0; valid below the partition's page count.
    pub index: u32,
}

impl PageId {
    /// Page `index` of `partition`. Builds the address only: a page that was not allocated is
    /// refused when used (`Error::PageOutOfRange`).
    pub const fn new(partition: PartitionId, index: u32) -> Self {
        PageId { partition, index }
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition.0, self.index)
    }
}

/// A log sequence number: the byte position of a record in the redo log stream.
pub type Lsn = u64;

/// A checkpoint epoch. Every write belongs to exactly one epoch; the checkpoint of epoch `E`
/// holds exactly the writes of epochs `<= E` (K2). Epoch 0 is "before any write of this process".
pub type Epoch = u64;

/// What a write returns: where it went in the redo log and which epoch it belongs to.
///
/// The receipt contract: a write is in snapshot `S` if and only if `receipt.epoch <= S`'s cut
/// epoch; it is durable once a `sync` that started after it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct WriteReceipt {
    /// Where the write's redo record starts in the log: the write is durable once
    /// `Engine::sync` returned an LSN above it.
    pub lsn: Lsn,
    /// The epoch the write belongs to: the checkpoint of `epoch` (and every later one) holds it
    /// (K2), and so does a snapshot whose cut epoch is `>= epoch` (S1).
    pub epoch: Epoch,
}
