//! The checkpointer: the only code that writes partition files (C1).
//!
//! Checkpoint `E` (DESIGN §3):
//! 1. **cut**: read the redo log's end (the replay-start LSN), publish epoch `E+1`, drain `E`'s
//!    writers. The dirty set of `E` is now frozen. Listeners' `on_checkpoint_begin` runs here, so
//!    a snapshot's hook exists before any page of `E` is written (S2).
//! 2. **log first**: fsync the redo log up to its end, so that no page reaches a partition file
//!    before the redo records that produced it are durable (without it, a crash could leave a
//!    file holding a write whose earlier writes were lost: not a prefix, R1).
//! 3. **write**: for each dirty page in (partition, index) order, take its checkpoint image if a
//!    writer of `E+1` kept one, else its latest image (K2); call every listener's
//!    `before_page_write`, holding the guards they return across the file write (the cursor-aware
//!    snapshot needs decide-and-write to be atomic), then write the sealed page.
//! 4. fsync every written partition file and the partitions directory if a file was created (C2).
//! 5. **end**: write the control file naming `E` durably; only then `on_checkpoint_end`.
//! 6. **cleanup**: purge redo segments wholly before the replay-start LSN (C3: after step 5), and
//!    delete the files of partitions dropped at or before `E`.
//!
//! A failure in step 6 fails nothing: it is logged, counted
//! (`deltasnap_checkpoint_cleanup_failures_total`) and retried by the next checkpoint's cleanup.
//! A failure in steps 2–5 poisons the engine (writes fail with `Error::Poisoned`): after a failed
//! write or fsync the page cache cannot be trusted, the redo log still holds every write, and
//! reopening recovers from it. Nothing synced is lost. A listener that panics fails the
//! checkpoint the same way, the poison naming the callback and the panic's message; any other
//! panic in a checkpoint poisons too (`checkpoint panicked: …`). Nothing unwinds out of a
//! checkpoint, so the checkpointer thread never dies silently and every waiter (`checkpoint()`,
//! throttled writers, a snapshot) sees the poison (L2).
//!
//! Shutdown (L2): `close` sets `Schedule::shutdown`; the thread starts no run after it sees it,
//! so a `checkpoint()` whose run has not started returns `Error::Closed` (close's final
//! checkpoint makes the writes durable). After that final checkpoint no other runs: a caller's
//! thread that raced `close` gets `Error::Closed` instead of writing the store.
//!
//! Dropped partitions: the dirty pages of a partition dropped at or before the cut are not
//! written, and their dirty bytes are returned in step 3 (nothing later would; L3). Their
//! resident bytes go in step 6, with the file.

//!
//! - `run`: one checkpoint, steps 1–6, on the calling thread;
//! - `worker`: the background checkpointer thread (when a checkpoint is due) and the forced
//!   checkpoint a snapshot's cut needs;
//! - `throttle`: writers wait (or, without a checkpointer thread, checkpoint) while dirty pages
//!   are past the hard limit, before they enter the store's write path.

mod run;
mod throttle;
mod worker;

pub use crate::listener::{CheckpointCut, CheckpointListener, CutPartition, WriteGuard};
pub use crate::store::CheckpointOutcome;
pub(crate) use run::{run, Trigger};
pub(crate) use throttle::throttle;
pub(crate) use worker::{request_forced, run_thread};
