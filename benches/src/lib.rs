//! Shared pieces of the deltasnap benches and of the `compare` binary (BENCHMARKS.md).
//!
//! - [`workload`]: sizes, the record layout every system stores (1000-byte records, four to a
//!   deltasnap page), and building a populated deltasnap store;
//! - [`load`]: the open-loop writer harness: writes are scheduled by their *intended* start time,
//!   so a write that waits behind a stall is charged the wait (no coordinated omission);
//! - [`io`]: the physical floor (`copy_file_range` + fsync), per-thread I/O counters, sizes;
//! - [`svg`]: the hand-written chart of the comparison.
//!
//! Timings are measured and reported, never asserted (STYLE.md rule 10).

pub mod io;
pub mod load;
pub mod svg;
pub mod workload;

/// The error type of the harness: any error, with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;
