//! Seeded bugs: deliberate breakages of one rule each, switched on at run time by the
//! verification tiers to show that every checker can fail (STYLE rule 2).
//!
//! The switch exists only in test and checker builds: `cfg(test)` (the engine's unit tests),
//! `--cfg deltasnap_testing` (the verification tiers and the kill matrix: `cargo xtask verify`,
//! or `RUSTFLAGS="--cfg deltasnap_testing"`), `--cfg deltasnap_loom` and `--cfg deltasnap_shuttle`.
//! It is a compiler flag and not a Cargo feature on purpose: a feature that any crate of the
//! workspace enables is on for every crate of a `cargo build`, the shipped binaries included
//! (feature unification); a `--cfg` is on only in the builds that pass it.
//!
//! In any other build [`active`] is a `const fn` returning `false`, so every guarded branch
//! `if bugs::active(Bug::X) { … }` is dead code that the compiler removes, and no bug can be
//! switched on. The catalogue below ([`Bug`], [`Bug::ALL`], [`Bug::name`]) is always compiled:
//! the guarded call sites name the variants, and `cargo xtask killmatrix` (a plain build) lists
//! the bugs from it; nothing in the engine calls [`Bug::name`], so no shipped binary links the
//! names (`cargo xtask verify`, step "shipped build holds no test machinery", checks it).
//!
//! Switching a bug on, counting a tier's iterations and printing a kill-matrix cell are the
//! verification crate's (`deltasnap_verification::kill`).

/// The engine-side seeded bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Bug {
    /// Writers register in an epoch without re-checking the current epoch (K2).
    SkipRegistrationRecheck = 0,
    /// The cut does not wait for the old epoch's writers (K2).
    DrainDoesNotWait = 1,
    /// A writer does not retry when the page's image belongs to a newer epoch (K1/K2).
    NoRetryAfterCut = 2,
    /// A writer overwrites a page the running checkpoint has not written, without keeping the
    /// checkpoint image (K2).
    NoCheckpointImage = 3,
    /// The control file is written before the partition files are fsynced (C2, R1).
    ControlBeforePageFsync = 4,
    /// Redo segments are purged before the control file is durable (C3, R1).
    PurgeBeforeControl = 5,
    /// The snapshot hook drops the captures it decides while the cut checkpoint is writing
    /// (phase A of DESIGN §4; S3).
    SkipNewImageCapture = 6,
    /// The snapshot hook drops the old-image captures after the cut checkpoint ended (S3).
    SkipOldImageCapture = 7,
    /// A `sync` that finds another caller's fsync under way returns without waiting for it, so
    /// its record may not be durable yet (R1).
    SyncSkipsWaitForLeader = 8,
    /// The snapshot hook call ends at the decision and the capture takes the hook lock again, so
    /// the merge's `close` does not wait for a decided capture: it can reach the delta after the
    /// merge read it (S4; `snapshot::hook`).
    CloseIgnoresHookInFlight = 9,
    /// The snapshot hook call ends before the checkpointer's file write, so the copier can
    /// announce and read a page before the write a cursor-aware decision relied on (S1/S3;
    /// `snapshot::hook`; harmless under `DeltaPolicy::Full`).
    CursorDecisionNotAtomic = 10,
    /// A `sync` leader fsyncs only the active redo segment and names no rolled one, as if a roll
    /// had made the segments before it durable (R1).
    SyncSkipsRolledSegments = 11,
    /// A `sync` leader writes and fsyncs without waiting for an appender's buffer write in flight
    /// outside the lock, so bytes before its own may not be written (or are overwritten) when it
    /// reports them durable (R1; `wal` module docs, "Appending").
    SyncIgnoresWriteInFlight = 12,
    /// A checkpoint (and the redo replay) skips the dirty pages of a partition dropped at or
    /// before its cut without returning their dirty bytes to the budget, so they leak: past the
    /// throttle limit every writer waits forever (L2, L3; issue 11 defect 2).
    DropLeaksDirtyBytes = 13,
    /// `checkpoint()` waits for a run the checkpointer will never start because the engine is
    /// shutting down (L2; issue 11 defect 3).
    CheckpointerIgnoresPendingOnShutdown = 14,
    /// A panic in a checkpoint listener (or the checkpoint) unwinds out of the checkpoint without
    /// poisoning the engine: the checkpointer thread dies and its waiters wait forever (L2;
    /// issue 11 defect 9).
    ListenerPanicNotPoisoned = 15,
    /// `Config::validate` checks only the rules older than the documented ranges (issue 11
    /// defect 6).
    ConfigUnchecked = 16,
    /// The directories a snapshot or a restore creates (the snapshot's target directory and its
    /// missing parents, the restore target and its missing parents) are not fsynced in their
    /// parents, so a power cut can take a published snapshot or a restored store with them.
    SnapshotDirsNotSynced = 17,
    /// The copier's rate limit sleeps without listening for `cancel`, which then waits out the
    /// whole sleep (`chunk_bytes / rate`) with the hooks still installed.
    CancelWaitsRateSleep = 18,
    /// The merge reads a partition's whole delta into memory at once, so its buffer grows with
    /// the delta instead of staying within `snapshot::MERGE_BUFFER_BYTES_MAX`.
    MergeLoadsWholeDelta = 19,
    /// The manifest's crc and the range checks of its numbers are skipped: a changed byte
    /// verifies and restores silently.
    ManifestUnchecked = 20,
    /// A failure to remove an unfinished snapshot's temporary directory (in the backup target,
    /// outside the store) fails `Engine::open` of the store.
    UnfinishedCleanupFailsOpen = 21,
    /// A publish that fails after its rename leaves the final name in place while `wait` errs.
    PublishLeavesFinalName = 22,
    /// `Engine::open` does not refuse a store another engine holds: a second engine's recovery
    /// and close rewrite the store under the first (`lock`).
    NoStoreLock = 23,
    /// `Engine::close` neither refuses new calls nor waits for the ones in flight, so a write,
    /// drop or sync racing it is logged after the final checkpoint and the lock's release
    /// (`calls`; found by the lifecycle simulation).
    CloseIgnoresCallsInFlight = 24,
}

impl Bug {
    /// Every seeded bug, in the order of their numbers.
    pub const ALL: [Bug; 25] = [
        Bug::SkipRegistrationRecheck,
        Bug::DrainDoesNotWait,
        Bug::NoRetryAfterCut,
        Bug::NoCheckpointImage,
        Bug::ControlBeforePageFsync,
        Bug::PurgeBeforeControl,
        Bug::SkipNewImageCapture,
        Bug::SkipOldImageCapture,
        Bug::SyncSkipsWaitForLeader,
        Bug::CloseIgnoresHookInFlight,
        Bug::CursorDecisionNotAtomic,
        Bug::SyncSkipsRolledSegments,
        Bug::SyncIgnoresWriteInFlight,
        Bug::DropLeaksDirtyBytes,
        Bug::CheckpointerIgnoresPendingOnShutdown,
        Bug::ListenerPanicNotPoisoned,
        Bug::ConfigUnchecked,
        Bug::SnapshotDirsNotSynced,
        Bug::CancelWaitsRateSleep,
        Bug::MergeLoadsWholeDelta,
        Bug::ManifestUnchecked,
        Bug::UnfinishedCleanupFailsOpen,
        Bug::PublishLeavesFinalName,
        Bug::NoStoreLock,
        Bug::CloseIgnoresCallsInFlight,
    ];

    /// The bug's name in the kill matrix and in `DELTASNAP_KILL_BUG`.
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipRegistrationRecheck => "skip-registration-recheck",
            Bug::DrainDoesNotWait => "drain-does-not-wait",
            Bug::NoRetryAfterCut => "no-retry-after-cut",
            Bug::NoCheckpointImage => "no-checkpoint-image",
            Bug::ControlBeforePageFsync => "control-before-page-fsync",
            Bug::PurgeBeforeControl => "purge-before-control",
            Bug::SkipNewImageCapture => "skip-new-image-capture",
            Bug::SkipOldImageCapture => "skip-old-image-capture",
            Bug::SyncSkipsWaitForLeader => "sync-skips-wait-for-leader",
            Bug::CloseIgnoresHookInFlight => "close-ignores-hook-in-flight",
            Bug::CursorDecisionNotAtomic => "cursor-decision-not-atomic",
            Bug::SyncSkipsRolledSegments => "sync-skips-rolled-segments",
            Bug::SyncIgnoresWriteInFlight => "sync-ignores-write-in-flight",
            Bug::DropLeaksDirtyBytes => "drop-leaks-dirty-bytes",
            Bug::CheckpointerIgnoresPendingOnShutdown => "checkpointer-ignores-pending-on-shutdown",
            Bug::ListenerPanicNotPoisoned => "listener-panic-not-poisoned",
            Bug::ConfigUnchecked => "config-unchecked",
            Bug::SnapshotDirsNotSynced => "snapshot-dirs-not-synced",
            Bug::CancelWaitsRateSleep => "cancel-waits-rate-sleep",
            Bug::MergeLoadsWholeDelta => "merge-loads-whole-delta",
            Bug::ManifestUnchecked => "manifest-unchecked",
            Bug::UnfinishedCleanupFailsOpen => "unfinished-cleanup-fails-open",
            Bug::PublishLeavesFinalName => "publish-leaves-final-name",
            Bug::NoStoreLock => "no-store-lock",
            Bug::CloseIgnoresCallsInFlight => "close-ignores-calls-in-flight",
        }
    }
}

#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
mod switch {
    #![allow(clippy::disallowed_types)]
    // A plain std atomic, not the facade's: this is test configuration set before a run, not
    // synchronization the checkers should explore (and loom atomics cannot live in a static).
    use std::sync::atomic::{AtomicU64, Ordering};

    static ACTIVE: AtomicU64 = AtomicU64::new(0);

    /// A checker's bound on the snapshot merge's batch, in bytes (0: the engine's own).
    static MERGE_BUFFER_BYTES_MAX: AtomicU64 = AtomicU64::new(0);

    /// Sets the merge batch bound for the whole process (`0`: back to the engine's own).
    pub fn set_merge_buffer_bytes_max(bytes: u64) {
        MERGE_BUFFER_BYTES_MAX.store(bytes, Ordering::Relaxed);
    }

    /// The bound a checker set, if one did.
    pub fn merge_buffer_bytes_max() -> Option<u64> {
        Some(MERGE_BUFFER_BYTES_MAX.load(Ordering::Relaxed)).filter(|&bytes| bytes != 0)
    }

    /// Whether `bug` is switched on.
    pub fn active(bug: super::Bug) -> bool {
        ACTIVE.load(Ordering::Relaxed) & (1 << bug as u8) != 0
    }

    /// Switches `bug` on or off for the whole process.
    pub fn set(bug: super::Bug, on: bool) {
        if on {
            ACTIVE.fetch_or(1 << bug as u8, Ordering::SeqCst);
        } else {
            ACTIVE.fetch_and(!(1 << bug as u8), Ordering::SeqCst);
        }
    }
}

#[cfg(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle))]
pub use switch::{active, merge_buffer_bytes_max, set, set_merge_buffer_bytes_max};

/// Builds without `cfg(test)`, `deltasnap_testing` or a checker cfg: no bug is ever active, and
/// a guarded branch is dead code.
#[cfg(not(any(test, deltasnap_testing, deltasnap_loom, deltasnap_shuttle)))]
#[inline(always)]
pub const fn active(_bug: Bug) -> bool {
    false
}
