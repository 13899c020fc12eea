//! # deltasnap
//!
//! An embeddable page-store engine whose headline feature is the **online, consistent
//! snapshot**. See `DESIGN.md` for the architecture and the invariants (C1–C3, K1–K2, R1, S1–S5)
//! that module docs refer to, and `engine/docs/format.md` for the file formats.
//!
//! ```
//! use deltasnap::{Config, Engine, PartitionId};
//!
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(dir.path(), Config::default())?;
//! engine.create_partition(PartitionId(0))?;
//! let page = engine.allocate_page(PartitionId(0))?;
//! engine.write(page, 0, b"schema v1")?;
//! engine.sync()?;
//! engine.checkpoint()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bugs;
pub mod checkpoint;
pub(crate) mod control;
mod engine;
#[doc(hidden)]
pub mod epoch;
pub mod error;
pub mod format;
pub mod jobs;
mod layout;
mod lock;
pub(crate) mod memory;
pub mod snapshot;
pub mod sync;
pub mod types;
pub mod vfs;
pub mod wal;

pub use checkpoint::{
    CheckpointCut, CheckpointListener, CheckpointOutcome, CutPartition, WriteGuard,
};
pub use control::{last_checkpoint, ControlData};
pub use engine::{
    Config, Engine, EngineStats, RecoveryReport, METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX,
};
pub use error::{Error, Result};
pub use jobs::{JobKind, JobStage, JobStatus};
pub use layout::LOCK_FILE_NAME;
pub use lock::{lock_holder, lock_holder_on, LockHolder};
pub use snapshot::manifest::Manifest;
pub use snapshot::protocol::DeltaPolicy;
pub use snapshot::verify::{
    restore, restore_on, verify_snapshot, verify_snapshot_on, Problem, RestoreReport, VerifyReport,
};
pub use snapshot::{SnapshotHandle, SnapshotOptions, SnapshotProgress};
pub use types::{Epoch, Lsn, PageId, PartitionId, WriteReceipt};
