//! Unit tests of the decision table and of misuse, and a proptest that runs random interleavings of
//! writers, checkpoints, the copier and the merge against a reference: if it fails, the merged
//! snapshot differs from the partition at the cut, i.e. the protocol loses or mixes up a page.

use super::*;
use proptest::prelude::*;

const PAGE_SIZE: u32 = 4096;

fn snapshot(policy: DeltaPolicy, pages_at_cut: u32, pages_on_disk: u32) -> PartitionSnapshot {
    PartitionSnapshot::at_cut(
        policy,
        pages_at_cut,
        u64::from(pages_on_disk * PAGE_SIZE),
        PAGE_SIZE,
    )
    .expect("valid cut")
}

/// One hook call as the engine makes it: decide, (capture), (file write), done.
fn hook(s: &mut PartitionSnapshot, index: u32) -> Capture {
    let capture = s.before_page_write(index).expect("no hook in flight");
    s.page_write_done(index).expect("hook in flight");
    capture
}

fn copy_all(s: &mut PartitionSnapshot) {
    let end = s.copy_end();
    if end > 0 {
        s.announce(end).unwrap();
        s.chunk_copied(end).unwrap();
    }
    s.copy_done().unwrap();
}

#[test]
fn cut_records_page_counts() {
    let s = PartitionSnapshot::at_cut(DeltaPolicy::Full, 5, 3 * 4096 + 100, 4096).unwrap();
    assert_eq!(
        (s.pages_at_cut(), s.copy_end()),
        (5, 3),
        "a torn tail is not a page"
    );
    assert_eq!(
        s.window(),
        CopyWindow {
            copied_end: 0,
            reading_end: 0,
            copy_end: 3
        }
    );
    assert_eq!(
        PartitionSnapshot::at_cut(DeltaPolicy::Full, 2, 3 * 4096, 4096),
        Err(ProtocolError::FileLongerThanPartition {
            pages_on_disk: 3,
            pages_at_cut: 2
        })
    );
    assert_eq!(
        PartitionSnapshot::at_cut(DeltaPolicy::Full, 2, 0, 0),
        Err(ProtocolError::ZeroPageSize)
    );
}

#[test]
fn full_policy_follows_ignites_table() {
    let mut s = snapshot(DeltaPolicy::Full, 4, 3);
    // S writing: every page below pages_at_cut, whatever the copier does.
    assert_eq!(hook(&mut s, 0), Capture::NewImage);
    assert_eq!(
        hook(&mut s, 3),
        Capture::NewImage,
        "allocated before the cut, not on disk"
    );
    assert_eq!(hook(&mut s, 4), Capture::Nothing(Skip::BeyondCut));
    assert_eq!(hook(&mut s, 0), Capture::Nothing(Skip::AlreadyCaptured));
    s.checkpoint_ended().unwrap();
    // S ended, copy not done: the first overwrite of each uncaptured page, old image.
    assert_eq!(hook(&mut s, 1), Capture::OldImageFromFile);
    assert_eq!(hook(&mut s, 1), Capture::Nothing(Skip::AlreadyCaptured));
    assert_eq!(hook(&mut s, 0), Capture::Nothing(Skip::AlreadyCaptured));
    assert_eq!(hook(&mut s, 5), Capture::Nothing(Skip::BeyondCut));
    copy_all(&mut s);
    assert_eq!(hook(&mut s, 2), Capture::Nothing(Skip::Complete));
    assert!(s.merge_ready());
    let sealed = s.close().unwrap();
    assert_eq!(
        sealed,
        Sealed {
            pages_at_cut: 4,
            copy_end: 3,
            captures: CaptureCounts {
                new_images: 2,
                old_images: 1
            }
        }
    );
    assert_eq!(hook(&mut s, 2), Capture::Closed);
    assert_eq!(s.captures().delta_pages(), 3, "S4: no growth after close");
    assert_eq!(s.captured.count(), 3);
}

#[test]
fn cursor_aware_skips_what_the_window_proves() {
    let mut s = snapshot(DeltaPolicy::CursorAware, 6, 5);
    s.announce(2).unwrap(); // reading [0, 2)
    assert_eq!(
        hook(&mut s, 1),
        Capture::NewImage,
        "in the window: the read may miss it"
    );
    assert_eq!(hook(&mut s, 2), Capture::Nothing(Skip::CopierWillRead));
    assert_eq!(
        hook(&mut s, 5),
        Capture::NewImage,
        "beyond copy_end: the copier never reads it"
    );
    s.chunk_copied(2).unwrap();
    assert_eq!(
        hook(&mut s, 0),
        Capture::NewImage,
        "already copied: the copy is stale"
    );
    s.announce(4).unwrap(); // reading [2, 4)
    assert_eq!(hook(&mut s, 3), Capture::NewImage);
    assert_eq!(hook(&mut s, 4), Capture::Nothing(Skip::CopierWillRead));
    s.checkpoint_ended().unwrap();
    // After S: only pages at or above copied_end that are not captured yet.
    assert_eq!(hook(&mut s, 0), Capture::Nothing(Skip::AlreadyCaptured));
    assert_eq!(hook(&mut s, 2), Capture::OldImageFromFile, "in the window");
    assert_eq!(hook(&mut s, 4), Capture::OldImageFromFile, "not read yet");
    assert_eq!(hook(&mut s, 4), Capture::Nothing(Skip::AlreadyCaptured));
    s.chunk_copied(3).unwrap(); // partial progress inside the window
    s.chunk_copied(4).unwrap();
    s.announce(5).unwrap();
    s.chunk_copied(5).unwrap();
    s.copy_done().unwrap();
    assert_eq!(hook(&mut s, 3), Capture::Nothing(Skip::AlreadyCaptured));
    assert_eq!(hook(&mut s, 1), Capture::Nothing(Skip::AlreadyCaptured));
    assert_eq!(
        s.captures(),
        CaptureCounts {
            new_images: 4,
            old_images: 2
        }
    );
    assert_eq!(s.captured.count(), 6);
}

#[test]
fn cursor_aware_after_cut_skips_copied_pages() {
    let mut s = snapshot(DeltaPolicy::CursorAware, 3, 3);
    s.checkpoint_ended().unwrap(); // S wrote nothing
    s.announce(2).unwrap();
    s.chunk_copied(1).unwrap();
    assert_eq!(hook(&mut s, 0), Capture::Nothing(Skip::AlreadyCopied));
    assert_eq!(hook(&mut s, 1), Capture::OldImageFromFile);
    assert!(!s.is_captured(0));
    assert!(s.is_captured(1));
}

#[test]
fn copy_done_before_cut_checkpoint_ends_keeps_capturing() {
    // S5, first order: the copy finishes while S still writes; S's writes still go to the delta.
    for policy in DeltaPolicy::ALL {
        let mut s = snapshot(policy, 3, 3);
        copy_all(&mut s);
        assert!(!s.merge_ready());
        assert_eq!(
            s.close(),
            Err(ProtocolError::NotReady {
                checkpoint_ended: false,
                copy_done: true
            })
        );
        assert_eq!(hook(&mut s, 2), Capture::NewImage, "{policy}");
        s.checkpoint_ended().unwrap();
        assert_eq!(
            hook(&mut s, 1),
            Capture::Nothing(Skip::Complete),
            "{policy}"
        );
        assert!(s.close().is_ok());
    }
}

#[test]
fn hook_in_flight_blocks_every_other_transition() {
    let mut s = snapshot(DeltaPolicy::CursorAware, 3, 3);
    s.checkpoint_ended().unwrap();
    s.announce(1).unwrap();
    s.chunk_copied(1).unwrap();
    let capture = s.before_page_write(2).unwrap();
    assert_eq!(capture, Capture::OldImageFromFile);
    let before = s.clone();
    let in_flight = ProtocolError::HookInFlight { index: 2 };
    assert_eq!(s.before_page_write(1), Err(in_flight));
    assert_eq!(s.announce(3), Err(in_flight));
    assert_eq!(s.chunk_copied(1), Err(in_flight));
    assert_eq!(s.copy_done(), Err(in_flight));
    assert_eq!(s.close(), Err(in_flight));
    assert_eq!(
        s.page_write_done(1),
        Err(ProtocolError::NoHookInFlight { index: 1 })
    );
    assert_eq!(s, before, "refused transitions leave the state unchanged");
    s.page_write_done(2).unwrap();
    assert_eq!(s.hook_in_flight(), None);
    assert_eq!(
        s.page_write_done(2),
        Err(ProtocolError::NoHookInFlight { index: 2 })
    );
}

#[test]
fn copier_misuse_is_an_error() {
    let mut s = snapshot(DeltaPolicy::Full, 4, 4);
    let bad = |requested_end, copied_end, reading_end| ProtocolError::BadWindow {
        requested_end,
        copied_end,
        reading_end,
        copy_end: 4,
    };
    assert_eq!(s.announce(0), Err(bad(0, 0, 0)), "empty window");
    assert_eq!(s.announce(5), Err(bad(5, 0, 0)), "past copy_end");
    assert_eq!(s.chunk_copied(1), Err(bad(1, 0, 0)), "not announced");
    s.announce(2).unwrap();
    assert_eq!(s.announce(3), Err(bad(3, 0, 2)), "chunk still being read");
    assert_eq!(s.chunk_copied(3), Err(bad(3, 0, 2)), "beyond the window");
    assert_eq!(
        s.copy_done(),
        Err(ProtocolError::CopyIncomplete {
            copied_end: 0,
            copy_end: 4
        })
    );
    s.chunk_copied(2).unwrap();
    assert_eq!(s.chunk_copied(2), Err(bad(2, 2, 2)), "no progress");
    s.announce(4).unwrap();
    s.chunk_copied(4).unwrap();
    s.copy_done().unwrap();
    assert_eq!(s.copy_done(), Err(ProtocolError::CopyAlreadyDone));
    assert_eq!(s.announce(4), Err(ProtocolError::CopyAlreadyDone));
}

#[test]
fn empty_partition_copies_nothing() {
    let mut s = snapshot(DeltaPolicy::CursorAware, 0, 0);
    assert_eq!(hook(&mut s, 0), Capture::Nothing(Skip::BeyondCut));
    s.copy_done().unwrap();
    s.checkpoint_ended().unwrap();
    assert_eq!(
        s.checkpoint_ended(),
        Err(ProtocolError::CheckpointAlreadyEnded)
    );
    assert!(s.close().is_ok());
    assert_eq!(s.close(), Err(ProtocolError::Closed(CloseReason::Merged)));
    assert_eq!(s.cancel(), Err(ProtocolError::Closed(CloseReason::Merged)));
}

#[test]
fn cancel_closes_in_any_phase() {
    let mut s = snapshot(DeltaPolicy::Full, 3, 3);
    s.announce(1).unwrap();
    // An I/O error in the hook: cancel from inside the hook call, then finish the call.
    let _ = s.before_page_write(0).unwrap();
    s.cancel().unwrap();
    s.page_write_done(0).unwrap();
    assert_eq!(s.closed(), Some(CloseReason::Cancelled));
    assert_eq!(hook(&mut s, 1), Capture::Closed);
    let closed = ProtocolError::Closed(CloseReason::Cancelled);
    assert_eq!(
        s.chunk_copied(1),
        Err(closed),
        "the copier learns of the cancel"
    );
    assert_eq!(s.checkpoint_ended(), Err(closed));
    assert!(!s.merge_ready());
    assert_eq!(s.close(), Err(closed));
}

// ----- proptest: random interleavings against a reference -----

/// One step of one party. Parties pick their next step themselves; the op only says who moves.
#[derive(Debug, Clone)]
enum Op {
    /// A writer bumps page `n % page_count`.
    Write(u32),
    /// A writer allocates a page.
    Allocate,
    /// The checkpointer: cut, write one page (hook + capture + file write, atomic under the hook
    /// lock), or end.
    Checkpoint,
    /// The copier: announce, read one page, report progress (partial if the flag is set), done.
    Copier(bool),
    /// The merge: close when ready (trying too early must be refused), then apply.
    Merge,
    /// Misuse: a window transition to `n`; if refused, the state must be unchanged.
    ProbeWindow(u32),
}

// `prop_oneof!` wraps its strategies in a std `Arc` inside proptest; no engine concurrency here.
#[allow(clippy::disallowed_types)]
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..16).prop_map(Op::Write),
        1 => Just(Op::Allocate),
        4 => Just(Op::Checkpoint),
        4 => any::<bool>().prop_map(Op::Copier),
        1 => Just(Op::Merge),
        1 => (0u32..10).prop_map(Op::ProbeWindow),
    ]
}

/// A partition, its checkpointer, copier and merge, with the protocol in the middle. Versions
/// count writes, so every page image is told apart by its version.
struct Reference {
    chunk_pages: u32,
    memory: Vec<u32>,
    dirty: Vec<bool>,
    file: Vec<u32>,
    /// The running checkpoint's pages and versions, in index order; `None` when idle.
    checkpoint: Option<Vec<(u32, u32)>>,
    /// Whether the running checkpoint is `S`.
    running_is_cut: bool,
    snapshot: PartitionSnapshot,
    /// Ground truth: the versions at the cut.
    cut: Vec<u32>,
    copy: Vec<Option<u32>>,
    read_next: u32,
    delta: Vec<(u32, u32)>,
    delta_len_at_close: Option<usize>,
    merged: Option<Vec<Option<u32>>>,
}

impl Reference {
    /// `pages_on_disk` pages in the file, the pre-cut writes and allocations, then `S`'s cut.
    fn new(
        policy: DeltaPolicy,
        pages_on_disk: u32,
        writes_before_cut: &[u32],
        allocations_before_cut: u32,
        chunk_pages: u32,
    ) -> Self {
        let mut memory = vec![0; pages_on_disk as usize];
        let mut dirty = vec![false; pages_on_disk as usize];
        let file = memory.clone();
        for _ in 0..allocations_before_cut {
            memory.push(0);
            dirty.push(true);
        }
        for &n in writes_before_cut {
            if !memory.is_empty() {
                let page = n as usize % memory.len();
                memory[page] += 1;
                dirty[page] = true;
            }
        }
        let snapshot = PartitionSnapshot::at_cut(
            policy,
            memory.len() as u32,
            u64::from(pages_on_disk) * u64::from(PAGE_SIZE),
            PAGE_SIZE,
        )
        .unwrap();
        let mut reference = Reference {
            chunk_pages,
            cut: memory.clone(),
            memory,
            dirty,
            copy: vec![None; pages_on_disk as usize],
            file,
            checkpoint: None,
            running_is_cut: true,
            snapshot,
            read_next: 0,
            delta: Vec::new(),
            delta_len_at_close: None,
            merged: None,
        };
        reference.cut_checkpoint();
        reference
    }

    fn cut_checkpoint(&mut self) {
        let pages = (0..self.memory.len())
            .filter(|&i| self.dirty[i])
            .map(|i| (i as u32, self.memory[i]))
            .collect();
        self.dirty.iter_mut().for_each(|d| *d = false);
        self.checkpoint = Some(pages);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write(n) => {
                if !self.memory.is_empty() {
                    let page = n as usize % self.memory.len();
                    self.memory[page] += 1;
                    self.dirty[page] = true;
                }
            }
            Op::Allocate => {
                self.memory.push(0);
                self.dirty.push(true);
            }
            Op::Checkpoint => self.checkpoint_step(),
            Op::Copier(partial) => self.copier_step(partial),
            Op::Merge => self.merge_step(),
            Op::ProbeWindow(n) => {
                let mut announce = self.snapshot.clone();
                if announce.announce(n).is_err() {
                    assert_eq!(announce, self.snapshot);
                }
                let mut chunk_copied = self.snapshot.clone();
                if chunk_copied.chunk_copied(n).is_err() {
                    assert_eq!(chunk_copied, self.snapshot);
                }
            }
        }
    }

    fn checkpoint_step(&mut self) {
        let Some(pages) = &mut self.checkpoint else {
            if self.dirty.iter().any(|&d| d) {
                self.running_is_cut = false;
                self.cut_checkpoint();
            }
            return;
        };
        if pages.is_empty() {
            self.checkpoint = None;
            if self.running_is_cut {
                self.snapshot.checkpoint_ended().unwrap();
            }
            return;
        }
        let (index, version) = pages.remove(0);
        // Under the hook lock: decide, capture, write the file, done.
        let capture = self.snapshot.before_page_write(index).unwrap();
        let pages_at_cut = self.snapshot.pages_at_cut();
        match capture {
            Capture::NewImage => {
                assert!(self.running_is_cut, "new images come from S only");
                self.delta.push((index, version));
            }
            Capture::OldImageFromFile => {
                assert!(!self.running_is_cut);
                let old = *self
                    .file
                    .get(index as usize)
                    .expect("old image exists on disk");
                self.delta.push((index, old));
            }
            Capture::Nothing(_) => {}
            Capture::Closed => assert!(self.delta_len_at_close.is_some()),
        }
        if capture.appends() {
            assert!(index < pages_at_cut, "captured a page beyond the cut");
            assert!(
                self.delta_len_at_close.is_none(),
                "S4: delta grew after close"
            );
        }
        match (index as usize).cmp(&self.file.len()) {
            std::cmp::Ordering::Less => self.file[index as usize] = version,
            std::cmp::Ordering::Equal => self.file.push(version),
            std::cmp::Ordering::Greater => panic!("hole in the partition file"),
        }
        self.snapshot.page_write_done(index).unwrap();
    }

    fn copier_step(&mut self, partial: bool) {
        if self.snapshot.is_copy_done() {
            return;
        }
        let window = self.snapshot.window();
        if self.read_next < window.reading_end {
            // Outside the hook lock.
            self.copy[self.read_next as usize] = Some(self.file[self.read_next as usize]);
            self.read_next += 1;
        } else if window.copied_end < window.reading_end {
            let copied_end = if partial {
                window.copied_end + 1
            } else {
                window.reading_end
            };
            self.snapshot.chunk_copied(copied_end).unwrap();
        } else if window.copied_end < window.copy_end {
            let reading_end = (window.copied_end + self.chunk_pages).min(window.copy_end);
            self.snapshot.announce(reading_end).unwrap();
        } else {
            self.snapshot.copy_done().unwrap();
        }
    }

    fn merge_step(&mut self) {
        if self.delta_len_at_close.is_none() {
            if !self.snapshot.merge_ready() {
                let before = self.snapshot.clone();
                assert!(matches!(
                    self.snapshot.close(),
                    Err(ProtocolError::NotReady { .. })
                ));
                assert_eq!(self.snapshot, before);
                return;
            }
            let sealed = self.snapshot.close().unwrap();
            assert_eq!(sealed.captures.delta_pages() as usize, self.delta.len());
            self.delta_len_at_close = Some(self.delta.len());
        } else if self.merged.is_none() {
            let mut merged = self.copy.clone();
            merged.resize(self.snapshot.pages_at_cut() as usize, None);
            for &(index, version) in &self.delta {
                merged[index as usize] = Some(version);
            }
            self.merged = Some(merged);
        }
    }

    /// Drives every party to the end; returns the merged snapshot.
    fn finish(&mut self) -> Vec<Option<u32>> {
        for _ in 0..10_000 {
            if let Some(merged) = &self.merged {
                return merged.clone();
            }
            if self.checkpoint.is_some() {
                self.checkpoint_step();
            } else if !self.snapshot.is_copy_done() {
                self.copier_step(false);
            } else {
                self.merge_step();
            }
        }
        panic!("snapshot did not complete");
    }
}

fn run(
    policy: DeltaPolicy,
    pages_on_disk: u32,
    writes_before_cut: &[u32],
    allocations_before_cut: u32,
    chunk_pages: u32,
    ops: &[Op],
) -> Reference {
    let mut reference = Reference::new(
        policy,
        pages_on_disk,
        writes_before_cut,
        allocations_before_cut,
        chunk_pages,
    );
    for op in ops {
        reference.apply(op);
    }
    let merged = reference.finish();
    let expected: Vec<Option<u32>> = reference.cut.iter().copied().map(Some).collect();
    assert_eq!(
        merged, expected,
        "S1: merged snapshot != state at the cut ({policy})"
    );
    // Keep writing and checkpointing after the merge: the delta must not grow (S4).
    let delta_len = reference.delta.len();
    for n in 0..reference.memory.len() as u32 {
        reference.apply(&Op::Write(n));
    }
    for _ in 0..2 * reference.memory.len() + 4 {
        reference.apply(&Op::Checkpoint);
    }
    assert_eq!(reference.delta.len(), delta_len, "S4 ({policy})");
    reference
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn merged_snapshot_equals_the_cut(
        pages_on_disk in 0u32..6,
        writes_before_cut in proptest::collection::vec(0u32..8, 0..6),
        allocations_before_cut in 0u32..3,
        chunk_pages in 1u32..4,
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let full = run(DeltaPolicy::Full, pages_on_disk, &writes_before_cut, allocations_before_cut, chunk_pages, &ops);
        let cursor = run(DeltaPolicy::CursorAware, pages_on_disk, &writes_before_cut, allocations_before_cut, chunk_pages, &ops);
        // Same schedule: the cursor-aware delta is a subset of the full one.
        prop_assert!(cursor.delta.len() <= full.delta.len());
        for entry in &cursor.delta {
            prop_assert!(full.delta.contains(entry));
        }
    }
}
