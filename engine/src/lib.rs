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

#![deny(missing_docs)]

// The engine's modules, one job each (the map and the way imports run: engine/README.md). The
// contract is the `pub use` list below, with `snapshot` and `vfs` (the file layer `open_on` takes).
mod calls;
mod checkpoint;
mod config;
pub(crate) mod control;
mod engine;
mod jobs;
mod layout;
mod listener;
mod lock;
pub(crate) mod memory;
mod recovery;
pub mod snapshot;
mod store;
mod types;
pub mod vfs;

// Internals the workspace's tests, checkers, models and tools reach into: not part of the
// contract, hidden from its documentation.
#[doc(hidden)]
pub mod bugs;
#[doc(hidden)]
pub mod epoch;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod format;
#[doc(hidden)]
pub mod sync;
#[doc(hidden)]
pub mod wal;

pub use checkpoint::{
    CheckpointCut, CheckpointListener, CheckpointOutcome, CutPartition, WriteGuard,
};
pub use config::{
    Config, EngineStats, RecoveryReport, METADATA_KEY_BYTES_MAX, METADATA_VALUE_BYTES_MAX,
};
pub use control::{last_checkpoint, last_checkpoint_on, ControlData};
pub use engine::Engine;
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
pub use wal::TailCut;
