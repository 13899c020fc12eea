//! One partition of a snapshot in memory, for the loom tests of the hook lock
//! (`deltasnap::snapshot::hook::HookCell`, used by `loom_snapshot_hook.rs` and
//! `loom_cursor_window.rs`).
//!
//! The engine's hook cell and protocol run unchanged; only the I/O is replaced: the partition file
//! is a vector of page *versions* behind a loom mutex (one lock per page read or write, so a
//! chunk's pages are read one at a time, as a real copy may interleave with a write), and the delta
//! is a vector of `(page, version)` inside the cell, like the engine's `DeltaFile`. Two threads
//! play the engine's two:
//!
//! - the **checkpointer**: the snapshot checkpoint `S` writes `cut_writes` (version 1) through the
//!   hook, each file write while the hook call is in flight (the guard is dropped right after it),
//!   then ends `S` (`checkpoint_ended`, then the task's "S ended" flag, in the engine's order), then
//!   the next checkpoint writes `later_writes` (version 2);
//! - the **task**: the copier announces, reads and marks each chunk of `[0, copy_end)` and marks the
//!   copy done; then the merge waits for `S` to end, closes the hook, reads the delta and writes it
//!   over the copy.
//!
//! After both threads joined, [`Scenario::run`] asserts, with the invariant's name first in the
//! message:
//!
//! - **S4**: nothing was appended to the delta after the merge read it, and the delta the merge
//!   read holds exactly the captures the hook decided (none lost, none extra);
//! - **S1** (through S3): the merged partition equals its content at the cut (version 1 for the
//!   pages `S` wrote, version 0 for the others), with no page missing.
//!
//! The hook lock's own contract, that the copier cannot announce a page's chunk between the hook's
//! decision for the page and its file write, is recorded rather than asserted
//! ([`Seen::AnnounceBetweenDecisionAndWrite`], from a copier read that finds the page decided,
//! not yet written, and not announced at the decision): the tests assert it never happens without
//! a seeded bug, and that it does happen with `cursor-decision-not-atomic`, which the full policy
//! tolerates.
//!
//! Loom explores every interleaving of the two threads within the preemption bound; each
//! scenario's test also asserts, through [`Coverage`], that the interesting cases happened at least
//! once (both race orders of S5, each kind of capture and skip it expects), so that a scenario that
//! stopped exercising the race would fail instead of passing for nothing.
// Each loom test file uses a different part.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use deltasnap::snapshot::hook::{HookCell, HookState};
use deltasnap::snapshot::protocol::{Capture, DeltaPolicy, PartitionSnapshot, Skip};
use deltasnap::sync::{thread, Arc, Condvar, Mutex};

/// Only the protocol's page arithmetic sees it.
const PAGE_SIZE: u32 = 4096;

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` is not set (`cargo xtask verify` sets 2, 3 or
/// 4). Every seeded bug of the hook lock needs one preemption: the checkpointer is switched out
/// between the early end of its hook call and its capture or file write, and the task thread runs
/// into the gap (its own blocking waits are not preemptions); both are caught at bound 1 and missed
/// at bound 0. The coverage the tests assert needs bound 2 (`cargo xtask verify --quick`). Bound 3
/// leaves room for the copier being preempted as well (inside its chunk, or between announce and
/// read) and costs about a thousand executions, under a second.
const DEFAULT_PREEMPTION_BOUND: usize = 3;

/// A page's content, named by the write that produced it: 0 was on disk before the cut, 1 was
/// written by the snapshot checkpoint `S` (the content at the cut), 2 by the checkpoint after `S`.
pub type Version = u8;

/// The partition file: one version per page; a write at the end grows it.
#[derive(Debug)]
struct MemFile {
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    pages: Vec<Version>,
    /// The page the checkpointer's hook has decided on and whose write has not landed yet, with
    /// the copier's `reading_end` at the decision. Bookkeeping only: it lets a copier read tell
    /// that the window it read through was announced after the decision (the slip the hook lock
    /// forbids).
    decided_not_written: Option<(u32, u32)>,
}

impl MemFile {
    /// The hook's read of an old image.
    fn read(&self, index: u32) -> Version {
        let state = self.state.lock();
        *state
            .pages
            .get(index as usize)
            .unwrap_or_else(|| panic!("read of page {index} past the end of the file"))
    }

    /// The copier's read; also tells whether the page's chunk was announced between the hook's
    /// decision for the page and its file write.
    fn read_for_copy(&self, index: u32) -> (Version, bool) {
        let state = self.state.lock();
        let slipped = state
            .decided_not_written
            .is_some_and(|(decided, reading_end)| decided == index && reading_end <= index);
        (state.pages[index as usize], slipped)
    }

    /// The hook decided on page `index` with the copier's window at `reading_end`.
    fn decided(&self, index: u32, reading_end: u32) {
        self.state.lock().decided_not_written = Some((index, reading_end));
    }

    fn write(&self, index: u32, version: Version) {
        let mut state = self.state.lock();
        let pages = &mut state.pages;
        let index = index as usize;
        assert!(index <= pages.len(), "write of page {index} leaves a hole");
        if index == pages.len() {
            pages.push(version);
        } else {
            pages[index] = version;
        }
        state.decided_not_written = None;
    }
}

/// What the hook lock guards besides the protocol state: the delta and the file the hook reads
/// old images from.
#[derive(Debug)]
pub struct MemIo {
    file: Arc<MemFile>,
    delta: Vec<(u32, Version)>,
    /// Set when the merge has read the delta.
    read_by_merge: bool,
    /// Appends that came after the merge read the delta (S4 forbids any).
    appended_after_merge_read: Vec<(u32, Version)>,
}

impl MemIo {
    fn append(&mut self, index: u32, version: Version) {
        if self.read_by_merge {
            self.appended_after_merge_read.push((index, version));
        }
        self.delta.push((index, version));
    }

    fn read_for_merge(&mut self) -> Vec<(u32, Version)> {
        self.read_by_merge = true;
        self.delta.clone()
    }
}

type Cell = HookCell<MemIo>;

/// Something a scenario expects to happen in at least one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Seen {
    /// S5: the copy was done before `S` ended (the merge waited for `S`).
    CopyDoneBeforeCheckpointEnded,
    /// S5: `S` ended before the copy was done (later checkpoints fed the delta).
    CheckpointEndedBeforeCopyDone,
    NewImage,
    OldImageFromFile,
    SkipCopierWillRead,
    SkipAlreadyCopied,
    SkipAlreadyCaptured,
    SkipComplete,
    SkipBeyondCut,
    /// A decision after the merge closed the hook.
    Closed,
    /// A copier or merge step found the checkpointer's hook call in flight and waited for it
    /// (the race the hook lock is for).
    StepWaitedForHookCall,
    /// The copier announced a page's chunk after the hook's decision for the page and read it
    /// before the file write: what the hook lock forbids (only a seeded bug gets here).
    AnnounceBetweenDecisionAndWrite,
}

impl Seen {
    const ALL: [Seen; 12] = [
        Seen::CopyDoneBeforeCheckpointEnded,
        Seen::CheckpointEndedBeforeCopyDone,
        Seen::NewImage,
        Seen::OldImageFromFile,
        Seen::SkipCopierWillRead,
        Seen::SkipAlreadyCopied,
        Seen::SkipAlreadyCaptured,
        Seen::SkipComplete,
        Seen::SkipBeyondCut,
        Seen::Closed,
        Seen::StepWaitedForHookCall,
        Seen::AnnounceBetweenDecisionAndWrite,
    ];

    fn of(capture: Capture) -> Seen {
        match capture {
            Capture::NewImage => Seen::NewImage,
            Capture::OldImageFromFile => Seen::OldImageFromFile,
            Capture::Nothing(Skip::CopierWillRead) => Seen::SkipCopierWillRead,
            Capture::Nothing(Skip::AlreadyCopied) => Seen::SkipAlreadyCopied,
            Capture::Nothing(Skip::AlreadyCaptured) => Seen::SkipAlreadyCaptured,
            Capture::Nothing(Skip::Complete) => Seen::SkipComplete,
            Capture::Nothing(Skip::BeyondCut) => Seen::SkipBeyondCut,
            Capture::Closed => Seen::Closed,
        }
    }
}

/// What happened across all executions of one `check` (std atomics: bookkeeping outside the
/// model, invisible to loom).
#[derive(Debug, Default)]
pub struct Coverage {
    executions: AtomicUsize,
    seen: AtomicU64,
}

impl Coverage {
    fn record(&self, seen: Seen) {
        self.seen.fetch_or(1 << seen as u8, StdOrdering::Relaxed);
    }

    pub fn saw(&self, seen: Seen) -> bool {
        self.seen.load(StdOrdering::Relaxed) & (1 << seen as u8) != 0
    }

    pub fn executions(&self) -> usize {
        self.executions.load(StdOrdering::Relaxed)
    }

    /// Panics if any of `forbidden` happened in some execution.
    pub fn assert_never(&self, forbidden: &[Seen]) {
        let happened: Vec<Seen> = forbidden.iter().copied().filter(|s| self.saw(*s)).collect();
        assert!(
            happened.is_empty(),
            "{happened:?} happened within {} executions",
            self.executions()
        );
    }

    /// Panics unless every one of `expected` happened in some execution.
    pub fn assert_saw(&self, expected: &[Seen]) {
        let missing: Vec<Seen> = expected.iter().copied().filter(|s| !self.saw(*s)).collect();
        assert!(
            missing.is_empty(),
            "vacuous scenario: {missing:?} never happened in {} executions",
            self.executions()
        );
    }

    fn summary(&self) -> String {
        let mut out = String::new();
        for seen in Seen::ALL.iter().filter(|s| self.saw(**s)) {
            let _ = write!(out, "{seen:?} ");
        }
        out
    }
}

/// One partition's snapshot: its shape at the cut, the checkpoints' writes, the copier's chunks.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub policy: DeltaPolicy,
    /// Whole pages in the file at the cut: the copy's end.
    pub pages_on_disk: u32,
    /// The partition's logical page count at the cut; pages `[pages_on_disk, pages_at_cut)` were
    /// allocated in `S` and must be in `cut_writes`.
    pub pages_at_cut: u32,
    /// Pages `S` writes (version 1), in index order.
    pub cut_writes: &'static [u32],
    /// Pages the checkpoint after `S` writes (version 2), in index order.
    pub later_writes: &'static [u32],
    /// Pages the copier announces and reads at a time.
    pub chunk_pages: u32,
}

impl Scenario {
    /// Explores every execution within the preemption bound; returns what happened.
    pub fn check(self) -> Arc<Coverage> {
        for index in self.pages_on_disk..self.pages_at_cut {
            assert!(
                self.cut_writes.contains(&index),
                "page {index} was allocated in S, so S writes it"
            );
        }
        let coverage = Arc::new(Coverage::default());
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(DEFAULT_PREEMPTION_BOUND);
        }
        let bound = builder.preemption_bound;
        let started = Instant::now();
        {
            let coverage = Arc::clone(&coverage);
            builder.check(move || {
                deltasnap_verification::kill::iteration();
                self.run(&coverage)
            });
        }
        report(self.name, bound, coverage.executions(), started.elapsed());
        eprintln!("  seen: {}", coverage.summary());
        coverage
    }

    /// One execution: the checkpointer and the task thread, then the checks.
    fn run(self, coverage: &Arc<Coverage>) {
        let execution = coverage.executions.fetch_add(1, StdOrdering::Relaxed) + 1;
        let file = Arc::new(MemFile {
            state: Mutex::new(FileState {
                pages: vec![0; self.pages_on_disk as usize],
                decided_not_written: None,
            }),
        });
        let protocol = PartitionSnapshot::at_cut(
            self.policy,
            self.pages_at_cut,
            u64::from(self.pages_on_disk) * u64::from(PAGE_SIZE),
            PAGE_SIZE,
        )
        .expect("a consistent cut");
        let cell = Arc::new(Cell::new(
            protocol,
            MemIo {
                file: Arc::clone(&file),
                delta: Vec::new(),
                read_by_merge: false,
                appended_after_merge_read: Vec::new(),
            },
        ));
        // The task's "S has ended" (the engine's `TaskState::checkpoint_ended`).
        let ended = Arc::new((Mutex::new(false), Condvar::new()));

        let checkpointer = {
            let (cell, file, ended, coverage) = (
                Arc::clone(&cell),
                Arc::clone(&file),
                Arc::clone(&ended),
                Arc::clone(coverage),
            );
            thread::spawn(move || {
                let mut decided = Vec::new();
                for &index in self.cut_writes {
                    write_through_hook(&cell, &file, index, 1, &mut decided, &coverage);
                }
                // The engine's `on_checkpoint_end`: the hook first, then the task.
                cell.update(|state| state.protocol.checkpoint_ended())
                    .expect("S ends once, with no hook call in flight");
                *ended.0.lock() = true;
                ended.1.notify_all();
                for &index in self.later_writes {
                    write_through_hook(&cell, &file, index, 2, &mut decided, &coverage);
                }
                decided
            })
        };

        let task = {
            let (cell, file, ended, coverage) = (
                Arc::clone(&cell),
                Arc::clone(&file),
                Arc::clone(&ended),
                Arc::clone(coverage),
            );
            thread::spawn(move || {
                // Copier.
                let copy_end = cell.lock().protocol.copy_end();
                let mut copy: Vec<Option<Version>> = vec![None; copy_end as usize];
                let mut copied_end = 0;
                while copied_end < copy_end {
                    let reading_end = (copied_end + self.chunk_pages).min(copy_end);
                    cell.when_idle(|state| state.protocol.announce(reading_end))
                        .expect("announce");
                    for index in copied_end..reading_end {
                        let (version, slipped) = file.read_for_copy(index);
                        if slipped {
                            coverage.record(Seen::AnnounceBetweenDecisionAndWrite);
                        }
                        copy[index as usize] = Some(version);
                    }
                    cell.when_idle(|state| state.protocol.chunk_copied(reading_end))
                        .expect("chunk_copied");
                    copied_end = reading_end;
                }
                cell.when_idle(|state| {
                    coverage.record(if state.protocol.is_checkpoint_ended() {
                        Seen::CheckpointEndedBeforeCopyDone
                    } else {
                        Seen::CopyDoneBeforeCheckpointEnded
                    });
                    state.protocol.copy_done()
                })
                .expect("copy_done");

                // Merge, once S has ended (S5).
                let mut has_ended = ended.0.lock();
                while !*has_ended {
                    has_ended = ended.1.wait(has_ended);
                }
                drop(has_ended);
                let sealed = cell
                    .when_idle(|state| state.protocol.close())
                    .expect("close");
                let delta = cell.lock().io.read_for_merge();
                let mut merged = copy;
                merged.resize(sealed.pages_at_cut as usize, None);
                let mut sorted = delta.clone();
                sorted.sort_by_key(|&(index, _)| index);
                for pair in sorted.windows(2) {
                    assert_ne!(
                        pair[0].0, pair[1].0,
                        "the delta holds page {} twice",
                        pair[0].0
                    );
                }
                for &(index, version) in &sorted {
                    merged[index as usize] = Some(version);
                }
                (delta, merged)
            })
        };

        let decided = checkpointer.join().expect("checkpointer");
        let (delta_read, merged) = task.join().expect("task");
        let (late, steps_waited) = {
            let state = cell.lock();
            (
                state.io.appended_after_merge_read.clone(),
                state.steps_waited(),
            )
        };
        if steps_waited > 0 {
            coverage.record(Seen::StepWaitedForHookCall);
        }

        let context = || {
            format!(
                "[{} {:?}, loom execution {execution}: delta read by the merge {delta_read:?}, \
                 captures decided {decided:?}, merged {merged:?}]",
                self.name, self.policy
            )
        };
        assert!(
            late.is_empty(),
            "S4: {late:?} appended to the delta after the merge read it {}",
            context()
        );
        assert_eq!(
            delta_read,
            decided,
            "S4: the delta the merge read is not the captures the hook decided {}",
            context()
        );
        let at_cut: Vec<Option<Version>> = (0..self.pages_at_cut)
            .map(|index| Some(Version::from(self.cut_writes.contains(&index))))
            .collect();
        assert_eq!(
            merged,
            at_cut,
            "S1: the merged partition is not its content at the cut {}",
            context()
        );
    }
}

/// The checkpointer's write of page `index`: the hook decides and captures, the file write happens
/// while the call is in flight, the call ends right after it (the engine's `WriteGuard`).
fn write_through_hook(
    cell: &Arc<Cell>,
    file: &MemFile,
    index: u32,
    version: Version,
    decided: &mut Vec<(u32, Version)>,
    coverage: &Coverage,
) {
    let capture = |capture: Capture, state: &mut HookState<MemIo>| {
        coverage.record(Seen::of(capture));
        state
            .io
            .file
            .decided(index, state.protocol.window().reading_end);
        let image = match capture {
            Capture::NewImage => Some(version),
            Capture::OldImageFromFile => Some(state.io.file.read(index)),
            Capture::Nothing(_) | Capture::Closed => None,
        };
        if let Some(image) = image {
            state.io.append(index, image);
        }
        image
    };
    let (call, captured) = cell
        .before_page_write(index, capture)
        .unwrap_or_else(|error| panic!("the hook refused page {index}: {error}"));
    file.write(index, version);
    drop(call);
    if let Some(image) = captured {
        decided.push((index, image));
    }
}

/// Prints what one exploration cost (the lead's budget for the loom tier).
pub fn report(name: &str, bound: Option<usize>, executions: usize, elapsed: Duration) {
    eprintln!(
        "loom {name}: {executions} executions in {:.2} s (preemption bound {})",
        elapsed.as_secs_f64(),
        bound.map_or("none".to_string(), |b| b.to_string())
    );
}
