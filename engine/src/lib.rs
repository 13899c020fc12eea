//! # deltasnap
//!
//! An embeddable page-store engine whose headline feature is the **online, consistent
//! snapshot**. See `DESIGN.md` for the architecture and the invariants (C1–C3, K1–K2, R1, S1–S5)
//! that module docs refer to, and `engine/docs/format.md` for the file formats.

pub mod error;
pub mod format;
pub mod snapshot;
pub mod sync;
pub mod types;
pub mod vfs;

pub use error::{Error, Result};
pub use types::{Epoch, Lsn, PageId, PartitionId, WriteReceipt};
