//! The online snapshot (DESIGN §4) as a stateright model that drives the engine's own decision
//! logic, [`deltasnap::snapshot::protocol`], for both delta policies.
//!
//! # What is modelled
//!
//! A few partitions of a few pages. A page's content is a small version number (the number of
//! writes it has seen), so any two images of a page are told apart. The parties:
//!
//! - **writers** bump a page's version in memory or allocate a page; each write belongs to the
//!   current epoch and marks the page dirty (an allocated page is dirty in its epoch);
//! - the **checkpointer**: the first cut is the snapshot checkpoint `S` (the snapshot's cut: the
//!   per-page versions at that moment are the ground truth, and [`PartitionSnapshot::at_cut`]
//!   creates the protocol state per partition); then, per dirty page in (partition, index) order,
//!   three *separate* steps: the hook decision ([`PartitionSnapshot::before_page_write`], which
//!   also takes the partition's hook lock), the delta append, and the partition-file write (which
//!   releases the hook lock with [`PartitionSnapshot::page_write_done`]); then the end of the
//!   checkpoint. Later checkpoints (`S+1`, `S+2`, …) write what was written after the cut, so the
//!   order "`S` ends before the copy is done" exercises the old-image capture;
//! - one **copier**, partition by partition: announce a chunk (under the hook lock), read its pages
//!   one by one from the live file (no lock), report the chunk copied (under the hook lock), done;
//! - one **merge**, partition by partition: close the hook once the copy is done and `S` has
//!   ended (waiting for the hook lock), then apply the delta over the copy, last capture winning.
//!
//! The hook lock *is* the protocol's hook-in-flight state: the copier and the merge are enabled
//! only when the partition has no hook in flight. The writers' grace period at the cut is implicit
//! (a write is one atomic step). Once every partition is merged the model stops (terminal state).
//!
//! # Properties
//!
//! `always`: the merged snapshot equals the state at the cut (S1); the delta does not grow after
//! close (S4); nothing at or beyond `pages_at_cut` is captured. `eventually`: the snapshot
//! completes (the model is acyclic: versions, pages and checkpoints only grow and are bounded by
//! `within_boundary`). `sometimes`: the copy is done before `S` ends, and `S` ends before the copy
//! is done (S5, both orders); a capture during `S` and a capture after `S`.
//!
//! # Seeded bugs
//!
//! [`SnapshotBug`] lists variants of how the engine *uses* the protocol (the protocol code itself
//! is never changed; a bug that lives in a decision is seeded by overriding the decision the model
//! receives). Each must produce a counterexample; see the tests.

use std::fmt::Write as _;

use deltasnap::snapshot::protocol::{Capture, DeltaPolicy, PartitionSnapshot, Skip};
use stateright::{Model, Path, Property};

/// The page size the model hands to the protocol (the model counts pages, not bytes).
const PAGE_SIZE: u32 = 4096;

/// Names of the model's properties, for `discovery(...)`.
pub mod property {
    pub const MERGED_EQUALS_CUT: &str = "S1 merged snapshot equals the state at the cut";
    pub const NO_DELTA_GROWTH_AFTER_CLOSE: &str = "S4 no delta growth after close";
    pub const NO_CAPTURE_BEYOND_CUT: &str = "no capture at or beyond pages_at_cut";
    pub const COMPLETE: &str = "snapshot completes";
    pub const COPY_DONE_BEFORE_CUT_ENDS: &str = "S5 copy done before the cut checkpoint ends";
    pub const CUT_ENDS_BEFORE_COPY_DONE: &str = "S5 cut checkpoint ends before copy done";
    pub const CAPTURE_DURING_CUT: &str = "capture during the cut checkpoint";
    pub const CAPTURE_AFTER_CUT: &str = "capture after the cut checkpoint";

    /// The `always` and `eventually` properties: a discovery for one of them is a failure.
    pub const FAILURES: [&str; 4] = [
        MERGED_EQUALS_CUT,
        NO_DELTA_GROWTH_AFTER_CLOSE,
        NO_CAPTURE_BEYOND_CUT,
        COMPLETE,
    ];
}

/// The bounds of the state space.
///
/// Measured with `cargo test --release -p deltasnap-models --test snapshot_model measure --
/// --ignored --nocapture` (BFS, one thread, 2-core machine shared with other jobs, so seconds are
/// rough): unique states and seconds, full / cursor-aware. Throughput is about 100k unique states
/// per second; peak memory was about 140 bytes per unique state in the largest run.
///
/// | bounds | full | cursor-aware |
/// |---|---|---|
/// | [`default`](SnapshotBounds::default): 1 partition, 2 pages on disk, at most 3, 2 writes per page, 2 checkpoints after `S`, chunks of 2 | 479,136 / 2.7 s | 721,408 / 3.4 s |
/// | default with chunks of 1 | 566,064 / 6.0 s | 841,494 / 10.2 s |
/// | default with 3 checkpoints after `S` | 665,672 / 6.2 s | 992,340 / 7.3 s |
/// | default with 3 writes per page | 5,902,160 / 64 s | 10,060,180 / 87 s |
/// | default with 3 pages on disk, at most 4 | 15,252,348 / 433 s | 26,964,040 / 546 s (3.8 GB) |
/// | [`two_partitions`](SnapshotBounds::two_partitions) | 322,072 / 4.5 s | 403,926 / 4.9 s |
/// | `two_partitions` with 2 writes per page | 12,149,224 / 446 s | 18,421,544 / 581 s (3.5 GB) |
///
/// All properties hold at every bound above. The default is chosen so that every seeded bug is
/// found, and kept small otherwise: the bitset bug needs two overwrites of a page after `S` in two later
/// checkpoints, and the cursor bug beyond `copy_end` needs a page allocated before the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotBounds {
    /// Partitions in the store.
    pub partitions: u8,
    /// Pages of each partition in its file before the snapshot's epoch.
    pub pages_on_disk: u8,
    /// Logical pages per partition at most (allocations beyond `pages_on_disk` up to this).
    pub pages_max: u8,
    /// Writes to one page over the whole run at most.
    pub writes_per_page: u8,
    /// Checkpoints after `S` at most.
    pub checkpoints_after_cut: u8,
    /// Pages per copier chunk.
    pub chunk_pages: u8,
}

impl SnapshotBounds {
    /// Two partitions, one page on disk and one allocated each, one write per page, one
    /// checkpoint after `S`, one-page chunks: every `always`, `eventually` and `sometimes`
    /// property holds (but the bugs needing a second overwrite are out of reach).
    pub fn two_partitions() -> Self {
        SnapshotBounds {
            partitions: 2,
            pages_on_disk: 1,
            pages_max: 2,
            writes_per_page: 1,
            checkpoints_after_cut: 1,
            chunk_pages: 1,
        }
    }
}

impl Default for SnapshotBounds {
    fn default() -> Self {
        SnapshotBounds {
            partitions: 1,
            pages_on_disk: 2,
            pages_max: 3,
            writes_per_page: 2,
            checkpoints_after_cut: 2,
            chunk_pages: 2,
        }
    }
}

/// A seeded bug: a wrong way for the engine to use the protocol. Each one must be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapshotBug {
    /// The hook is installed after the cut: `S`'s first page write bypasses it (breaks S2).
    HookAfterCut,
    /// The hook decides `NewImage` while `S` writes but the image is not appended.
    PhaseASkipped,
    /// Copy-on-write after `S` without the bitset: every overwrite until the copy is done captures
    /// the file's content, so a later capture (post-`S` content) overrides the `S` image.
    CaptureWithoutBitset,
    /// The merge starts when the copy is done without waiting for `S` to end.
    MergeBeforeCutEnds,
    /// The hook lock is released between the decision and its append, so `close` does not wait
    /// for the append: it lands after the merge read the delta (breaks S4).
    CloseIgnoresHookInFlight,
    /// Cursor-aware: the hook lock is released after the append, before the file write, so the
    /// copier can announce and read the page's old bytes before the write the decision relied on.
    CursorDecisionNotAtomic,
    /// Cursor-aware: while `S` writes, pages at or beyond the copier's window are skipped even
    /// beyond `copy_end`, where the copier never reads (pages allocated before the cut).
    CursorSkipsBeyondCopyEnd,
}

impl SnapshotBug {
    pub const ALL: [SnapshotBug; 7] = [
        SnapshotBug::HookAfterCut,
        SnapshotBug::PhaseASkipped,
        SnapshotBug::CaptureWithoutBitset,
        SnapshotBug::MergeBeforeCutEnds,
        SnapshotBug::CloseIgnoresHookInFlight,
        SnapshotBug::CursorDecisionNotAtomic,
        SnapshotBug::CursorSkipsBeyondCopyEnd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SnapshotBug::HookAfterCut => "hook-after-cut",
            SnapshotBug::PhaseASkipped => "phase-a-skipped",
            SnapshotBug::CaptureWithoutBitset => "capture-without-bitset",
            SnapshotBug::MergeBeforeCutEnds => "merge-before-cut-ends",
            SnapshotBug::CloseIgnoresHookInFlight => "close-ignores-hook-in-flight",
            SnapshotBug::CursorDecisionNotAtomic => "cursor-decision-not-atomic",
            SnapshotBug::CursorSkipsBeyondCopyEnd => "cursor-skips-beyond-copy-end",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            SnapshotBug::HookAfterCut => {
                "the write hook is installed after the cut: the snapshot checkpoint's first page \
                 write is not seen by it"
            }
            SnapshotBug::PhaseASkipped => {
                "while the snapshot checkpoint writes, the hook decides to capture the new image \
                 but the image is never appended to the delta"
            }
            SnapshotBug::CaptureWithoutBitset => {
                "after the snapshot checkpoint, every overwrite captures the old image (no \
                 bitset), so a later capture of post-cut content overrides the cut image"
            }
            SnapshotBug::MergeBeforeCutEnds => {
                "the merge starts as soon as the copy is done, before the snapshot checkpoint ends"
            }
            SnapshotBug::CloseIgnoresHookInFlight => {
                "the hook lock is released between the decision and the delta append, so close \
                 returns while a decided capture has not reached the delta"
            }
            SnapshotBug::CursorDecisionNotAtomic => {
                "cursor-aware: the hook lock is released before the partition-file write, so the \
                 copier can read the page's old bytes after a decision that relied on it reading \
                 the new ones"
            }
            SnapshotBug::CursorSkipsBeyondCopyEnd => {
                "cursor-aware: pages beyond the copier's window are skipped even at or beyond \
                 copy_end, where the copier never reads (pages allocated before the cut)"
            }
        }
    }

    /// Whether the bug exists under `policy` (the cursor bugs need the cursor-aware rule; under
    /// the full rule the same change is harmless, which a test shows).
    pub fn applies_to(self, policy: DeltaPolicy) -> bool {
        match self {
            SnapshotBug::CursorDecisionNotAtomic | SnapshotBug::CursorSkipsBeyondCopyEnd => {
                policy == DeltaPolicy::CursorAware
            }
            _ => true,
        }
    }

    /// The property whose counterexample shows the bug.
    pub fn violates(self) -> &'static str {
        match self {
            SnapshotBug::CloseIgnoresHookInFlight => property::NO_DELTA_GROWTH_AFTER_CLOSE,
            _ => property::MERGED_EQUALS_CUT,
        }
    }
}

/// The model: bounds, delta policy, and at most one seeded bug.
#[derive(Debug, Clone)]
pub struct SnapshotModel {
    pub bounds: SnapshotBounds,
    pub policy: DeltaPolicy,
    pub bug: Option<SnapshotBug>,
}

impl SnapshotModel {
    pub fn new(bounds: SnapshotBounds, policy: DeltaPolicy, bug: Option<SnapshotBug>) -> Self {
        SnapshotModel {
            bounds,
            policy,
            bug,
        }
    }

    fn has_bug(&self, bug: SnapshotBug) -> bool {
        self.bug == Some(bug)
    }
}

/// The whole system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotState {
    pub partitions: Vec<PartitionState>,
    pub checkpointer: Checkpointer,
    /// Checkpoints begun so far; the first one is `S`.
    pub checkpoints: u8,
    /// Whether the write hooks are installed (at `S`'s cut, or later with
    /// [`SnapshotBug::HookAfterCut`]).
    pub hooks_installed: bool,
}

/// One partition: memory, file, the running checkpoint's share, the snapshot's share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionState {
    /// Latest version of each logical page.
    pub memory: Vec<u8>,
    /// Dirty in the current epoch.
    pub dirty: Vec<bool>,
    /// Versions in the partition file.
    pub file: Vec<u8>,
    /// The running checkpoint's pages still to write, `(index, version at its cut)`, in order.
    pub pending: Vec<(u8, u8)>,
    /// Created at `S`'s cut.
    pub snapshot: Option<PartitionSnapshotState>,
}

/// The snapshot of one partition: protocol state and the snapshot's files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionSnapshotState {
    /// The engine's protocol, driven as is.
    pub protocol: PartitionSnapshot,
    /// Ground truth: the versions at the cut.
    pub cut: Vec<u8>,
    /// The snapshot copy of `[0, copy_end)`.
    pub copy: Vec<Option<u8>>,
    /// The copier's next page to read in the announced window.
    pub read_next: u8,
    /// The delta file: `(index, image)`; `None` is an image read past the end of the file.
    pub delta: Vec<(u8, Option<u8>)>,
    /// Set when the merge closes the hook.
    pub delta_len_at_close: Option<u8>,
    /// The merged snapshot partition.
    pub merged: Option<Vec<Option<u8>>>,
}

/// The checkpointer's program counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checkpointer {
    Idle,
    /// Writing the pending pages, then ending.
    Writing,
    /// Between the hook decision for a page and its file write.
    InHook(HookCall),
}

/// A page write in progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HookCall {
    pub partition: u8,
    pub page: u8,
    pub version: u8,
    /// The image still to append, if the decision asked for one.
    pub append: Option<Option<u8>>,
    /// Whether the protocol has this hook in flight (the partition's hook lock is held).
    pub lock_held: bool,
}

/// The steps of the parties, named after the engine's events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SnapshotAction {
    /// A writer writes a page (bumps its version).
    Write { partition: u8, page: u8 },
    /// A writer allocates a page.
    Allocate { partition: u8 },
    /// The checkpointer begins a checkpoint (the first is `S`, the snapshot's cut).
    Cut,
    /// The checkpointer takes the hook lock and decision for its next page.
    Hook { partition: u8, page: u8 },
    /// The checkpointer appends the decided image to the delta.
    AppendDelta { partition: u8, page: u8 },
    /// The checkpointer writes the page to the partition file and releases the hook lock.
    WritePage { partition: u8, page: u8 },
    /// The checkpointer ends the checkpoint.
    EndCheckpoint,
    /// The copier announces its next chunk.
    Announce { partition: u8 },
    /// The copier reads one page of the announced chunk from the live file.
    ReadPage { partition: u8, page: u8 },
    /// The copier reports the chunk copied.
    ChunkCopied { partition: u8 },
    /// The copier is done with the partition.
    CopyDone { partition: u8 },
    /// The merge closes the partition's hook.
    Close { partition: u8 },
    /// The merge applies the delta over the copy.
    Apply { partition: u8 },
}

impl SnapshotState {
    fn snapshot(&self, partition: u8) -> Option<&PartitionSnapshotState> {
        self.partitions[usize::from(partition)].snapshot.as_ref()
    }

    fn snapshot_mut(&mut self, partition: u8) -> Option<&mut PartitionSnapshotState> {
        self.partitions[usize::from(partition)].snapshot.as_mut()
    }

    /// Every partition merged.
    pub fn is_complete(&self) -> bool {
        self.partitions
            .iter()
            .all(|p| p.snapshot.as_ref().is_some_and(|s| s.merged.is_some()))
    }

    /// The checkpointer's next page: lowest partition, lowest index.
    fn next_pending(&self) -> Option<(u8, (u8, u8))> {
        self.partitions
            .iter()
            .enumerate()
            .find_map(|(p, part)| part.pending.first().map(|&page| (p as u8, page)))
    }

    /// The partition the copier works on: the first one whose copy is not done.
    fn copier_partition(&self) -> Option<u8> {
        self.partitions
            .iter()
            .position(|p| {
                p.snapshot
                    .as_ref()
                    .is_some_and(|s| !s.protocol.is_copy_done())
            })
            .map(|p| p as u8)
    }

    /// The partition the merge works on: the first one not merged.
    fn merge_partition(&self) -> Option<u8> {
        self.partitions
            .iter()
            .position(|p| p.snapshot.as_ref().is_some_and(|s| s.merged.is_none()))
            .map(|p| p as u8)
    }

    fn epoch_label(&self) -> String {
        match self.checkpoints {
            0 => "S".to_string(),
            n => format!("S+{n}"),
        }
    }
}

fn checkpoint_label(checkpoint: u8) -> String {
    match checkpoint {
        0 | 1 => "S".to_string(),
        n => format!("S+{}", n - 1),
    }
}

impl SnapshotModel {
    /// The decision as the (possibly buggy) engine acts on it: the image to append, if any.
    /// `None` if the protocol refused (a model error, never expected).
    fn decide(
        &self,
        part: &mut PartitionState,
        page: u8,
        version: u8,
    ) -> Option<(Capture, Option<Option<u8>>)> {
        let file_image = part.file.get(usize::from(page)).copied();
        let snapshot = part.snapshot.as_mut()?;
        let capture = snapshot.protocol.before_page_write(u32::from(page)).ok()?;
        let protocol = &snapshot.protocol;
        let append = match capture {
            Capture::NewImage if self.has_bug(SnapshotBug::PhaseASkipped) => None,
            Capture::NewImage
                if self.has_bug(SnapshotBug::CursorSkipsBeyondCopyEnd)
                    && self.policy == DeltaPolicy::CursorAware
                    && !protocol.is_copy_done()
                    && u32::from(page) >= protocol.copy_end() =>
            {
                None
            }
            Capture::NewImage => Some(Some(version)),
            Capture::OldImageFromFile => Some(file_image),
            Capture::Nothing(Skip::AlreadyCaptured)
                if self.has_bug(SnapshotBug::CaptureWithoutBitset)
                    && protocol.is_checkpoint_ended()
                    && !protocol.is_copy_done()
                    && (self.policy == DeltaPolicy::Full
                        || u32::from(page) >= protocol.window().copied_end) =>
            {
                Some(file_image)
            }
            Capture::Nothing(_) | Capture::Closed => None,
        };
        Some((capture, append))
    }

    /// Renders a path (e.g. a counterexample) as engine events, one line per step.
    pub fn render_path(&self, path: &Path<SnapshotState, SnapshotAction>) -> Vec<String> {
        path.clone()
            .into_vec()
            .into_iter()
            .filter_map(|(state, action)| action.map(|a| self.describe_step(&state, &a)))
            .collect()
    }

    /// One step as an engine event, given the state before it.
    pub fn describe_step(&self, state: &SnapshotState, action: &SnapshotAction) -> String {
        use SnapshotAction::*;
        match *action {
            Write { partition, page } => {
                let version = state.partitions[usize::from(partition)].memory[usize::from(page)];
                format!(
                    "writer: p{partition} page {page} v{} -> v{} (epoch {})",
                    version,
                    version + 1,
                    state.epoch_label()
                )
            }
            Allocate { partition } => format!(
                "writer: p{partition} allocates page {} (epoch {})",
                state.partitions[usize::from(partition)].memory.len(),
                state.epoch_label()
            ),
            Cut => {
                let label = checkpoint_label(state.checkpoints + 1);
                let mut line = format!("checkpoint {label} cut:");
                for (p, part) in state.partitions.iter().enumerate() {
                    let dirty: Vec<String> = (0..part.memory.len())
                        .filter(|&i| part.dirty[i])
                        .map(|i| format!("{i}=v{}", part.memory[i]))
                        .collect();
                    let _ = write!(line, " p{p} dirty [{}]", dirty.join(", "));
                    if state.checkpoints == 0 {
                        let _ = write!(
                            line,
                            " pages_at_cut {} copy_end {}",
                            part.memory.len(),
                            part.file.len()
                        );
                    }
                    line.push(';');
                }
                line.pop();
                line
            }
            Hook { partition, page } => {
                let checkpoint = checkpoint_label(state.checkpoints);
                if !state.hooks_installed {
                    return format!(
                        "checkpoint {checkpoint} writes p{partition} page {page} before the hook is installed"
                    );
                }
                let mut scratch = state.partitions[usize::from(partition)].clone();
                let version = scratch.pending.first().map_or(0, |&(_, v)| v);
                let Some((capture, append)) = self.decide(&mut scratch, page, version) else {
                    return format!("hook p{partition} page {page}: refused by the protocol");
                };
                let what = match (capture, append) {
                    (Capture::NewImage, Some(_)) => format!("capture new image v{version}"),
                    (Capture::OldImageFromFile, Some(image)) => {
                        format!("capture old image {} from the file", show(image))
                    }
                    (Capture::Nothing(Skip::AlreadyCaptured), Some(image)) => format!(
                        "capture old image {} from the file (no bitset)",
                        show(image)
                    ),
                    (Capture::NewImage, None) if self.has_bug(SnapshotBug::PhaseASkipped) => {
                        "capture new image decided, but not appended".to_string()
                    }
                    (Capture::NewImage, None) => {
                        "nothing (as if the copier would read it, but it is beyond copy_end)"
                            .to_string()
                    }
                    (Capture::Nothing(skip), _) => format!("nothing ({})", skip_text(skip)),
                    (Capture::Closed, _) => "hook closed".to_string(),
                    (Capture::OldImageFromFile, None) => "old image not appended".to_string(),
                };
                let lock = if self.releases_lock_at_decision(append.is_some()) {
                    "; hook lock released"
                } else {
                    ""
                };
                format!("hook p{partition} page {page} (checkpoint {checkpoint}): {what}{lock}")
            }
            AppendDelta { partition, page } => {
                let image = match &state.checkpointer {
                    Checkpointer::InHook(call) => call.append.flatten(),
                    _ => None,
                };
                let lock = if self.has_bug(SnapshotBug::CursorDecisionNotAtomic) {
                    "; hook lock released"
                } else {
                    ""
                };
                format!(
                    "delta p{partition}: append page {page} {}{lock}",
                    show(image)
                )
            }
            WritePage { partition, page } => {
                let (version, lock_held) = match &state.checkpointer {
                    Checkpointer::InHook(call) => (call.version, call.lock_held),
                    _ => (0, false),
                };
                format!(
                    "checkpoint {} writes p{partition} page {page} v{version} to the file{}",
                    checkpoint_label(state.checkpoints),
                    if lock_held {
                        "; hook lock released"
                    } else {
                        ""
                    }
                )
            }
            EndCheckpoint => format!("checkpoint {} ends", checkpoint_label(state.checkpoints)),
            Announce { partition } => {
                let snapshot = state.snapshot(partition);
                let window = snapshot.map(|s| s.protocol.window());
                let (start, end) = window.map_or((0, 0), |w| {
                    (
                        w.copied_end,
                        (w.copied_end + u32::from(self.bounds.chunk_pages)).min(w.copy_end),
                    )
                });
                format!("copier announces p{partition} pages {start}..{end}")
            }
            ReadPage { partition, page } => format!(
                "copier reads p{partition} page {page}: {}",
                show(
                    state.partitions[usize::from(partition)]
                        .file
                        .get(usize::from(page))
                        .copied()
                )
            ),
            ChunkCopied { partition } => {
                let end = state
                    .snapshot(partition)
                    .map_or(0, |s| s.protocol.window().reading_end);
                format!("copier: p{partition} copied up to page {end}")
            }
            CopyDone { partition } => format!("copier: p{partition} copy done"),
            Close { partition } => {
                let snapshot = state.snapshot(partition);
                let ready = snapshot.is_some_and(|s| s.protocol.merge_ready());
                let delta_pages = snapshot.map_or(0, |s| s.delta.len());
                if ready {
                    format!("merge closes p{partition} hook (delta {delta_pages} pages)")
                } else {
                    format!(
                        "merge starts on p{partition} before checkpoint S ended, hook left open \
                         (delta {delta_pages} pages)"
                    )
                }
            }
            Apply { partition } => {
                let snapshot = state.snapshot(partition);
                let delta: Vec<String> = snapshot
                    .map(|s| {
                        s.delta
                            .iter()
                            .map(|&(page, image)| format!("{page}={}", show(image)))
                            .collect()
                    })
                    .unwrap_or_default();
                let cut: Vec<String> = snapshot
                    .map(|s| s.cut.iter().map(|v| format!("v{v}")).collect())
                    .unwrap_or_default();
                let copy: Vec<String> = snapshot
                    .map(|s| s.copy.iter().map(|&v| show(v)).collect())
                    .unwrap_or_default();
                format!(
                    "merge p{partition}: copy [{}] + delta [{}] (state at the cut [{}])",
                    copy.join(", "),
                    delta.join(", "),
                    cut.join(", ")
                )
            }
        }
    }

    /// Whether the (buggy) engine releases the hook lock right at the decision.
    fn releases_lock_at_decision(&self, appends: bool) -> bool {
        self.has_bug(SnapshotBug::CloseIgnoresHookInFlight)
            || (self.has_bug(SnapshotBug::CursorDecisionNotAtomic) && !appends)
    }
}

fn show(image: Option<u8>) -> String {
    image.map_or("(past end of file)".to_string(), |v| format!("v{v}"))
}

fn skip_text(skip: Skip) -> &'static str {
    match skip {
        Skip::BeyondCut => "allocated after the cut",
        Skip::AlreadyCaptured => "already captured",
        Skip::CopierWillRead => "copier will read it",
        Skip::AlreadyCopied => "already copied",
        Skip::Complete => "copy done and cut checkpoint ended",
    }
}

impl Model for SnapshotModel {
    type State = SnapshotState;
    type Action = SnapshotAction;

    fn init_states(&self) -> Vec<SnapshotState> {
        let pages = usize::from(self.bounds.pages_on_disk);
        let partition = PartitionState {
            memory: vec![0; pages],
            dirty: vec![false; pages],
            file: vec![0; pages],
            pending: Vec::new(),
            snapshot: None,
        };
        vec![SnapshotState {
            partitions: vec![partition; usize::from(self.bounds.partitions)],
            checkpointer: Checkpointer::Idle,
            checkpoints: 0,
            hooks_installed: false,
        }]
    }

    fn actions(&self, state: &SnapshotState, actions: &mut Vec<SnapshotAction>) {
        use SnapshotAction::*;
        if state.is_complete() {
            return;
        }
        // Writers. Only actions that stay within the bounds are offered (the checker would prune
        // the others by `within_boundary`, but the Explorer lists every action `actions` gives).
        let bounds = &self.bounds;
        for (p, part) in state.partitions.iter().enumerate() {
            let partition = p as u8;
            for page in 0..part.memory.len() as u8 {
                if part.memory[usize::from(page)] < bounds.writes_per_page {
                    actions.push(Write { partition, page });
                }
            }
            if part.memory.len() < usize::from(bounds.pages_max) {
                actions.push(Allocate { partition });
            }
        }
        // The checkpointer.
        match &state.checkpointer {
            Checkpointer::Idle => {
                let anything_dirty = state.partitions.iter().any(|p| p.dirty.contains(&true));
                let cut_allowed = state.checkpoints <= bounds.checkpoints_after_cut;
                if cut_allowed && (state.checkpoints == 0 || anything_dirty) {
                    actions.push(Cut);
                }
            }
            Checkpointer::Writing => match state.next_pending() {
                Some((partition, (page, _))) => actions.push(Hook { partition, page }),
                None => actions.push(EndCheckpoint),
            },
            Checkpointer::InHook(call) => {
                let (partition, page) = (call.partition, call.page);
                if call.append.is_some() {
                    actions.push(AppendDelta { partition, page });
                } else {
                    actions.push(WritePage { partition, page });
                }
            }
        }
        // The copier.
        if let Some(partition) = state.copier_partition() {
            let snapshot = state
                .snapshot(partition)
                .expect("copier partition has a snapshot");
            let window = snapshot.protocol.window();
            let lock_free = snapshot.protocol.hook_in_flight().is_none();
            if u32::from(snapshot.read_next) < window.reading_end {
                actions.push(ReadPage {
                    partition,
                    page: snapshot.read_next,
                });
            } else if !lock_free {
                // Waiting for the hook lock.
            } else if window.copied_end < window.reading_end {
                actions.push(ChunkCopied { partition });
            } else if window.copied_end < window.copy_end {
                actions.push(Announce { partition });
            } else {
                actions.push(CopyDone { partition });
            }
        }
        // The merge.
        if let Some(partition) = state.merge_partition() {
            let snapshot = state
                .snapshot(partition)
                .expect("merge partition has a snapshot");
            let protocol = &snapshot.protocol;
            if snapshot.delta_len_at_close.is_some() {
                actions.push(Apply { partition });
            } else if protocol.hook_in_flight().is_none()
                && (protocol.merge_ready()
                    || (self.has_bug(SnapshotBug::MergeBeforeCutEnds) && protocol.is_copy_done()))
            {
                actions.push(Close { partition });
            }
        }
    }

    fn next_state(&self, last: &SnapshotState, action: SnapshotAction) -> Option<SnapshotState> {
        use SnapshotAction::*;
        let mut state = last.clone();
        match action {
            Write { partition, page } => {
                let part = &mut state.partitions[usize::from(partition)];
                let page = usize::from(page);
                part.memory[page] = part.memory[page].checked_add(1)?;
                part.dirty[page] = true;
            }
            Allocate { partition } => {
                let part = &mut state.partitions[usize::from(partition)];
                if part.memory.len() >= usize::from(u8::MAX) {
                    return None;
                }
                part.memory.push(0);
                part.dirty.push(true);
            }
            Cut => {
                state.checkpoints = state.checkpoints.checked_add(1)?;
                let is_snapshot_cut = state.checkpoints == 1;
                for part in &mut state.partitions {
                    part.pending = (0..part.memory.len())
                        .filter(|&i| part.dirty[i])
                        .map(|i| (i as u8, part.memory[i]))
                        .collect();
                    part.dirty.iter_mut().for_each(|d| *d = false);
                    if is_snapshot_cut {
                        let protocol = PartitionSnapshot::at_cut(
                            self.policy,
                            part.memory.len() as u32,
                            part.file.len() as u64 * u64::from(PAGE_SIZE),
                            PAGE_SIZE,
                        )
                        .ok()?;
                        part.snapshot = Some(PartitionSnapshotState {
                            protocol,
                            cut: part.memory.clone(),
                            copy: vec![None; part.file.len()],
                            read_next: 0,
                            delta: Vec::new(),
                            delta_len_at_close: None,
                            merged: None,
                        });
                    }
                }
                if is_snapshot_cut {
                    state.hooks_installed = !self.has_bug(SnapshotBug::HookAfterCut);
                }
                state.checkpointer = Checkpointer::Writing;
            }
            Hook { partition, page } => {
                let part = &mut state.partitions[usize::from(partition)];
                let (pending_page, version) = part.pending.remove(0);
                debug_assert_eq!(pending_page, page);
                let call = if !state.hooks_installed {
                    // SnapshotBug::HookAfterCut: this write bypasses the hook, which is installed
                    // right after it.
                    state.hooks_installed = true;
                    HookCall {
                        partition,
                        page,
                        version,
                        append: None,
                        lock_held: false,
                    }
                } else {
                    let (_capture, append) = self.decide(part, page, version)?;
                    let mut lock_held = true;
                    if self.releases_lock_at_decision(append.is_some()) {
                        part.snapshot
                            .as_mut()?
                            .protocol
                            .page_write_done(u32::from(page))
                            .ok()?;
                        lock_held = false;
                    }
                    HookCall {
                        partition,
                        page,
                        version,
                        append,
                        lock_held,
                    }
                };
                state.checkpointer = Checkpointer::InHook(call);
            }
            AppendDelta { partition, page } => {
                let Checkpointer::InHook(call) = &mut state.checkpointer else {
                    return None;
                };
                let image = call.append.take()?;
                let release = call.lock_held && self.has_bug(SnapshotBug::CursorDecisionNotAtomic);
                if release {
                    call.lock_held = false;
                }
                let snapshot = state.partitions[usize::from(partition)].snapshot.as_mut()?;
                snapshot.delta.push((page, image));
                if release {
                    snapshot.protocol.page_write_done(u32::from(page)).ok()?;
                }
            }
            WritePage { partition, page } => {
                let Checkpointer::InHook(call) = &state.checkpointer else {
                    return None;
                };
                let (version, lock_held) = (call.version, call.lock_held);
                let part = &mut state.partitions[usize::from(partition)];
                let index = usize::from(page);
                match index.cmp(&part.file.len()) {
                    std::cmp::Ordering::Less => part.file[index] = version,
                    std::cmp::Ordering::Equal => part.file.push(version),
                    // A hole: allocation always dirties the page, so this is unreachable.
                    std::cmp::Ordering::Greater => return None,
                }
                if lock_held {
                    part.snapshot
                        .as_mut()?
                        .protocol
                        .page_write_done(u32::from(page))
                        .ok()?;
                }
                state.checkpointer = Checkpointer::Writing;
            }
            EndCheckpoint => {
                if state.checkpoints == 1 {
                    for part in &mut state.partitions {
                        part.snapshot.as_mut()?.protocol.checkpoint_ended().ok()?;
                    }
                }
                state.checkpointer = Checkpointer::Idle;
            }
            Announce { partition } => {
                let snapshot = state.snapshot_mut(partition)?;
                let window = snapshot.protocol.window();
                let reading_end =
                    (window.copied_end + u32::from(self.bounds.chunk_pages)).min(window.copy_end);
                snapshot.protocol.announce(reading_end).ok()?;
            }
            ReadPage { partition, page } => {
                let image = state.partitions[usize::from(partition)]
                    .file
                    .get(usize::from(page))
                    .copied();
                let snapshot = state.snapshot_mut(partition)?;
                snapshot.copy[usize::from(page)] = image;
                snapshot.read_next += 1;
            }
            ChunkCopied { partition } => {
                let snapshot = state.snapshot_mut(partition)?;
                let reading_end = snapshot.protocol.window().reading_end;
                snapshot.protocol.chunk_copied(reading_end).ok()?;
            }
            CopyDone { partition } => {
                state.snapshot_mut(partition)?.protocol.copy_done().ok()?;
            }
            Close { partition } => {
                let snapshot = state.snapshot_mut(partition)?;
                if snapshot.protocol.merge_ready() {
                    let _sealed = snapshot.protocol.close().ok()?;
                } else if !self.has_bug(SnapshotBug::MergeBeforeCutEnds) {
                    return None;
                }
                snapshot.delta_len_at_close = Some(snapshot.delta.len() as u8);
            }
            Apply { partition } => {
                let snapshot = state.snapshot_mut(partition)?;
                let mut merged = snapshot.copy.clone();
                merged.resize(snapshot.protocol.pages_at_cut() as usize, None);
                for &(page, image) in &snapshot.delta {
                    *merged.get_mut(usize::from(page))? = image;
                }
                snapshot.merged = Some(merged);
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                property::MERGED_EQUALS_CUT,
                |_: &SnapshotModel, state: &SnapshotState| {
                    state.partitions.iter().all(|part| {
                        part.snapshot.as_ref().is_none_or(|s| {
                            s.merged.as_ref().is_none_or(|merged| {
                                merged.len() == s.cut.len()
                                    && merged.iter().zip(&s.cut).all(|(m, c)| *m == Some(*c))
                            })
                        })
                    })
                },
            ),
            Property::always(
                property::NO_DELTA_GROWTH_AFTER_CLOSE,
                |_: &SnapshotModel, state: &SnapshotState| {
                    state.partitions.iter().all(|part| {
                        part.snapshot.as_ref().is_none_or(|s| {
                            s.delta_len_at_close
                                .is_none_or(|len| usize::from(len) == s.delta.len())
                        })
                    })
                },
            ),
            Property::always(
                property::NO_CAPTURE_BEYOND_CUT,
                |_: &SnapshotModel, state: &SnapshotState| {
                    state.partitions.iter().all(|part| {
                        part.snapshot.as_ref().is_none_or(|s| {
                            s.delta
                                .iter()
                                .all(|&(page, _)| u32::from(page) < s.protocol.pages_at_cut())
                        })
                    })
                },
            ),
            Property::eventually(
                property::COMPLETE,
                |_: &SnapshotModel, state: &SnapshotState| state.is_complete(),
            ),
            Property::sometimes(
                property::COPY_DONE_BEFORE_CUT_ENDS,
                |_: &SnapshotModel, state: &SnapshotState| {
                    any_protocol(state, |p| p.is_copy_done() && !p.is_checkpoint_ended())
                },
            ),
            Property::sometimes(
                property::CUT_ENDS_BEFORE_COPY_DONE,
                |_: &SnapshotModel, state: &SnapshotState| {
                    any_protocol(state, |p| p.is_checkpoint_ended() && !p.is_copy_done())
                },
            ),
            Property::sometimes(
                property::CAPTURE_DURING_CUT,
                |_: &SnapshotModel, state: &SnapshotState| {
                    any_protocol(state, |p| p.captures().new_images > 0)
                },
            ),
            Property::sometimes(
                property::CAPTURE_AFTER_CUT,
                |_: &SnapshotModel, state: &SnapshotState| {
                    any_protocol(state, |p| p.captures().old_images > 0)
                },
            ),
        ]
    }

    fn within_boundary(&self, state: &SnapshotState) -> bool {
        let bounds = &self.bounds;
        state.checkpoints <= bounds.checkpoints_after_cut + 1
            && state.partitions.iter().all(|part| {
                part.memory.len() <= usize::from(bounds.pages_max)
                    && part.memory.iter().all(|&v| v <= bounds.writes_per_page)
            })
    }

    fn format_action(&self, action: &SnapshotAction) -> String {
        format!("{action:?}")
    }
}

fn any_protocol(state: &SnapshotState, f: impl Fn(&PartitionSnapshot) -> bool) -> bool {
    state
        .partitions
        .iter()
        .any(|part| part.snapshot.as_ref().is_some_and(|s| f(&s.protocol)))
}

// ---- registry entries (the `deltasnap-models` binary) ------------------------------------------

/// Bounds of the snapshot model as the binary exposes them (defaults from
/// [`SnapshotBounds::default`]).
pub const BOUNDS: &[crate::spec::BoundSpec] = &[
    crate::spec::BoundSpec {
        name: "partitions",
        default: 1,
        min: 1,
        max: 3,
        description: "partitions in the store",
    },
    crate::spec::BoundSpec {
        name: "pages_on_disk",
        default: 2,
        min: 0,
        max: 6,
        description: "pages of each partition in its file before the snapshot's epoch",
    },
    crate::spec::BoundSpec {
        name: "pages_max",
        default: 3,
        min: 1,
        max: 8,
        description: "logical pages per partition at most (allocations up to this)",
    },
    crate::spec::BoundSpec {
        name: "writes_per_page",
        default: 2,
        min: 1,
        max: 4,
        description: "writes to one page over the whole run",
    },
    crate::spec::BoundSpec {
        name: "checkpoints_after_cut",
        default: 2,
        min: 0,
        max: 4,
        description: "checkpoints after the snapshot's checkpoint S",
    },
    crate::spec::BoundSpec {
        name: "chunk_pages",
        default: 2,
        min: 1,
        max: 8,
        description: "pages per copier chunk",
    },
];

/// The registry entry for `policy`: `snapshot` (Ignite's full rule) or `snapshot-cursor-aware`.
pub fn entry(policy: DeltaPolicy) -> crate::spec::Entry<SnapshotModel> {
    use crate::spec::{parse_bug, BoundValues, BugSpec, Entry};
    fn bounds_from(values: &BoundValues) -> SnapshotBounds {
        let get = |name| values.get(name) as u8;
        SnapshotBounds {
            partitions: get("partitions"),
            pages_on_disk: get("pages_on_disk"),
            pages_max: get("pages_max"),
            writes_per_page: get("writes_per_page"),
            checkpoints_after_cut: get("checkpoints_after_cut"),
            chunk_pages: get("chunk_pages"),
        }
    }
    fn bugs_for(policy: DeltaPolicy) -> Vec<BugSpec> {
        SnapshotBug::ALL
            .iter()
            .filter(|b| b.applies_to(policy))
            .map(|b| BugSpec {
                name: b.name(),
                description: b.description(),
                needs: &[],
            })
            .collect()
    }
    fn build(
        policy: DeltaPolicy,
        values: &BoundValues,
        bug: Option<&str>,
    ) -> Result<SnapshotModel, String> {
        let bug = parse_bug(&SnapshotBug::ALL, |b: &SnapshotBug| b.name(), bug)?;
        if let Some(bug) = bug.filter(|b| !b.applies_to(policy)) {
            return Err(format!(
                "bug `{}` only exists under the cursor-aware policy: check `snapshot-cursor-aware`",
                bug.name()
            ));
        }
        let bounds = bounds_from(values);
        if bounds.pages_on_disk > bounds.pages_max {
            return Err("pages_on_disk must be <= pages_max".into());
        }
        Ok(SnapshotModel::new(bounds, policy, bug))
    }
    match policy {
        DeltaPolicy::Full => Entry {
            name: "snapshot",
            summary:
                "online snapshot, full delta policy: cut, write hook, copier, delta, merge (S1-S5)",
            bounds: BOUNDS,
            bugs: || bugs_for(DeltaPolicy::Full),
            build: |values, bug| build(DeltaPolicy::Full, values, bug),
            describe: |model, state, action| model.describe_step(state, action),
        },
        DeltaPolicy::CursorAware => Entry {
            name: "snapshot-cursor-aware",
            summary: "online snapshot, cursor-aware delta policy (S1-S5)",
            bounds: BOUNDS,
            bugs: || bugs_for(DeltaPolicy::CursorAware),
            build: |values, bug| build(DeltaPolicy::CursorAware, values, bug),
            describe: |model, state, action| model.describe_step(state, action),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_engine_events() {
        let model = SnapshotModel::new(SnapshotBounds::default(), DeltaPolicy::Full, None);
        let init = model.init_states().remove(0);
        let actions = vec![
            SnapshotAction::Write {
                partition: 0,
                page: 1,
            },
            SnapshotAction::Cut,
            SnapshotAction::Announce { partition: 0 },
            SnapshotAction::Hook {
                partition: 0,
                page: 1,
            },
        ];
        let path = Path::from_actions(&model, init, &actions).expect("a behaviour of the model");
        let lines = model.render_path(&path);
        assert_eq!(
            lines,
            [
                "writer: p0 page 1 v0 -> v1 (epoch S)",
                "checkpoint S cut: p0 dirty [1=v1] pages_at_cut 2 copy_end 2",
                "copier announces p0 pages 0..2",
                "hook p0 page 1 (checkpoint S): capture new image v1",
            ]
        );
    }
}
