//! The per-partition snapshot protocol as a pure state machine: no I/O, no locks, no clocks.
//!
//! The engine owns one [`PartitionSnapshot`] per partition for the life of a snapshot, wraps it in
//! the partition's *hook lock* and performs the I/O the state machine asks for. The stateright
//! model (`deltasnap-models`, `snapshot` model) drives this same type with an abstract
//! environment, so the decision logic that is model-checked is the logic that ships (DESIGN §6).
//!
//! # The algorithm (DESIGN §4)
//!
//! A snapshot rides checkpoint `S`. At `S`'s cut (`on_checkpoint_begin`, after the writers' grace
//! period) the engine creates the state with [`PartitionSnapshot::at_cut`], recording
//! `pages_at_cut` (the logical page count) and `copy_end = bytes_on_disk / page_size` (the pages the
//! copier will copy). From then on three parties act on it:
//!
//! - the **checkpointer**, for every page write of every checkpoint (`S` and later ones), asks
//!   [`PartitionSnapshot::before_page_write`] what to capture into the delta before it overwrites
//!   the page in the partition file;
//! - the **copier** copies `[0, copy_end)` in chunks: [`announce`](PartitionSnapshot::announce)
//!   `reading_end` before reading a chunk, [`chunk_copied`](PartitionSnapshot::chunk_copied) after,
//!   [`copy_done`](PartitionSnapshot::copy_done) at the end;
//! - the **merge** waits until [`merge_ready`](PartitionSnapshot::merge_ready) (copy done *and* `S`
//!   ended, in either order: S5), [`close`](PartitionSnapshot::close)s the hook and writes the delta
//!   over the copy, last capture of a page winning.
//!
//! The hook's decision for a page `i` (`Capture`), for `i < pages_at_cut` (pages at or beyond
//! `pages_at_cut` were allocated after the cut and are never captured):
//!
//! | `S` | copy | [`DeltaPolicy::Full`] (Ignite's rule) | [`DeltaPolicy::CursorAware`] |
//! |---|---|---|---|
//! | writing | any | `NewImage`, set bit `i` | `NewImage`, set bit `i`, unless `reading_end <= i < copy_end` (the copier will read the page after this write lands) |
//! | ended | not done | bit `i` clear: set it, `OldImageFromFile` | bit `i` clear and `i >= copied_end`: set it, `OldImageFromFile` |
//! | ended | done | nothing | nothing |
//! | closed | | `Closed` | `Closed` |
//!
//! The bitset holds "the delta already has `S` content for page `i`", so a page is captured after
//! `S` at most once (a second capture would carry post-`S` content and win at the merge).
//!
//! # The locking contract (what the engine must do)
//!
//! One lock per partition, the **hook lock**, guards this state. Every method is called under it.
//! (The engine's hook lock is `snapshot::hook::HookCell`: a mutex for each transition, and the
//! *hook in flight* below to extend it across the checkpointer's file write.) In addition:
//!
//! 1. The checkpointer holds the hook lock from `before_page_write(i)` through the delta append the
//!    decision asks for **and the partition-file write of page `i`**, and calls
//!    [`page_write_done(i)`](PartitionSnapshot::page_write_done) before releasing it. Between the
//!    two calls the state records a *hook in flight* and refuses every other transition with
//!    [`ProtocolError::HookInFlight`], so a release in the middle shows up as an error instead of a
//!    silently wrong snapshot.
//!    - The append must be inside because `close` must not return while a decided capture has not
//!      reached the delta (S4: the merge reads a delta that can no longer grow).
//!    - The file write must be inside for [`DeltaPolicy::CursorAware`]: a decision "the copier will
//!      read page `i` later" is only true if the copier cannot announce the chunk holding `i`, and
//!      read its old bytes, before the write lands. [`DeltaPolicy::Full`] does not look at the
//!      window and would tolerate the file write outside the lock; we keep one contract for both.
//! 2. The copier's `announce`, `chunk_copied` and `copy_done` take the hook lock; the reads of the
//!    chunk itself happen outside it, after `announce` returned and before `chunk_copied`.
//! 3. The merge's `close` takes the hook lock, which waits for the hook in flight.
//! 4. Every `Ok` from `before_page_write` is followed by `page_write_done`, whatever the decision
//!    (also `Nothing` and `Closed`). On an I/O error of the capture the engine calls
//!    [`cancel`](PartitionSnapshot::cancel) (the snapshot fails, never the checkpoint; DESIGN §4
//!    "Errors and cancellation"), carries on with the checkpoint's file write and still calls
//!    `page_write_done`.
//!
//! # What the engine guarantees to the protocol
//!
//! - **S2**: the state is created at `S`'s cut, before `S` writes any page (C1: the checkpointer is
//!   the only writer of partition files, so the hook sees every write).
//! - Before `checkpoint_ended`, every write the hook sees carries `S` content (K2: the checkpoint of
//!   `S` writes exactly the writes of epochs `<= S`), and `checkpoint_ended` is called only after
//!   all of `S`'s writes returned and were fsynced (C2).
//! - A page allocated in epoch `S` is dirty in `S`, so `S` writes every page in
//!   `[copy_end, pages_at_cut)`. Hence `OldImageFromFile` is never asked for a page the file does
//!   not hold; if it ever is, the engine's read fails (past end of file) and fails the snapshot.
//!
//! # What the protocol upholds
//!
//! - **S3** copy + delta cover every page below `pages_at_cut`: before `S` ends the hook captures
//!   every write the copy may not see; after `S` ends, the first overwrite of every page the copy
//!   may not have read yet is preceded by capturing its old (= `S`) content, once (bitset).
//! - **S4** [`close`](PartitionSnapshot::close) is allowed only with no hook in flight, and every
//!   decision after it is [`Capture::Closed`]: the delta can no longer grow.
//! - **S5** `checkpoint_ended` and `copy_done` are accepted in either order; `close` needs both.
//! - Nothing at or beyond `pages_at_cut` is ever captured.
//!
//! Misuse by the engine (a transition in the wrong phase) returns a [`ProtocolError`] and leaves
//! the state unchanged; internal consistency is checked with debug assertions only, so nothing in
//! here panics in a release build.

use std::fmt;

/// Which pages the hook captures. Both produce the same merged snapshot; they differ in delta size.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeltaPolicy {
    /// Ignite's rule: every page `S` writes, and every first overwrite after `S` until the copy is
    /// done.
    Full,
    /// DESIGN §4 refinement: skip what the copier's window proves the copy will get right
    /// (requires the hook decision and its file write to be atomic w.r.t. the copier's announce).
    CursorAware,
}

impl DeltaPolicy {
    /// Every policy, for tests, models and benches that cover each one.
    pub const ALL: [DeltaPolicy; 2] = [DeltaPolicy::Full, DeltaPolicy::CursorAware];

    /// The policy's name in command lines and reports: `full` or `cursor-aware` (also its
    /// `Display`).
    pub fn name(self) -> &'static str {
        match self {
            DeltaPolicy::Full => "full",
            DeltaPolicy::CursorAware => "cursor-aware",
        }
    }
}

impl fmt::Display for DeltaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the checkpointer must do with the delta before it writes page `i` to the partition file.
#[must_use = "the checkpointer must perform the capture before writing the page"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capture {
    /// Append the image about to be written (it is the page's content at the cut).
    NewImage,
    /// Read the page's current content from the partition file (its content at the cut) and
    /// append it, then write the new image.
    OldImageFromFile,
    /// Append nothing; the reason says why the snapshot does not need this write.
    Nothing(Skip),
    /// The hook is closed (merged or cancelled): append nothing.
    Closed,
}

impl Capture {
    /// Whether this decision appends a page to the delta.
    pub fn appends(self) -> bool {
        matches!(self, Capture::NewImage | Capture::OldImageFromFile)
    }
}

/// Why a write needs no capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// The page was allocated after the cut (`index >= pages_at_cut`).
    BeyondCut,
    /// The delta already holds the page's content at the cut.
    AlreadyCaptured,
    /// Cursor-aware, `S` writing: the copier has not announced the page yet and will read it after
    /// this write (`reading_end <= index < copy_end`).
    CopierWillRead,
    /// Cursor-aware, after `S`: the copier has already copied the page (`index < copied_end`), and
    /// what it copied is the content at the cut or was captured.
    AlreadyCopied,
    /// `S` has ended and the copy is done: the snapshot needs nothing more from the hook.
    Complete,
}

/// How the hook was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// [`PartitionSnapshot::close`]: the merge may read the delta.
    Merged,
    /// [`PartitionSnapshot::cancel`]: the snapshot failed or was cancelled.
    Cancelled,
}

/// The copier's progress in pages: `[0, copied_end)` is copied, `[copied_end, reading_end)` is
/// being read, `[reading_end, copy_end)` will be read. `copied_end <= reading_end <= copy_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyWindow {
    /// Pages below this index are copied: the copy holds their content at the cut or later
    /// content the delta covers.
    pub copied_end: u32,
    /// End of the chunk the copier announced and is reading; equal to `copied_end` between
    /// chunks.
    pub reading_end: u32,
    /// End of the copy: the partition file's length at the cut, in pages (`bytes_on_disk / page
    /// size`, at most `pages_at_cut`).
    pub copy_end: u32,
}

/// How many pages the hook asked to capture, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CaptureCounts {
    /// Captures of the image being written by `S`.
    pub new_images: u32,
    /// Captures of the old image from the file, after `S` ended.
    pub old_images: u32,
}

impl CaptureCounts {
    /// Every page appended to the delta, new and old images together.
    pub fn delta_pages(self) -> u32 {
        self.new_images + self.old_images
    }
}

/// What [`PartitionSnapshot::close`] hands to the merge.
#[must_use = "the merge needs the page counts"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sealed {
    /// Length of the merged partition, in pages.
    pub pages_at_cut: u32,
    /// Pages the copy holds; `[copy_end, pages_at_cut)` come from the delta only.
    pub copy_end: u32,
    /// Pages appended to the delta (including duplicates of one index, if any).
    pub captures: CaptureCounts,
}

/// A transition asked for in a phase that does not allow it. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The partition file holds more pages than the partition has: the cut is inconsistent.
    #[error("partition file holds {pages_on_disk} pages but the partition has {pages_at_cut} at the cut")]
    FileLongerThanPartition {
        /// The partition file's length at the cut, in whole pages.
        pages_on_disk: u64,
        /// The partition's logical page count at the cut.
        pages_at_cut: u32,
    },
    /// `page_size` is zero.
    #[error("page size must not be zero")]
    ZeroPageSize,
    /// A hook decision for `index` has not been completed with `page_write_done`: the hook lock was
    /// released (or never held) between the decision and the file write.
    #[error("hook for page {index} is in flight (hook lock not held across decision and write)")]
    HookInFlight {
        /// The page whose decision is still waiting for its `page_write_done`.
        index: u32,
    },
    /// `page_write_done` without a matching `before_page_write`.
    #[error("page_write_done({index}) without a hook in flight for it")]
    NoHookInFlight {
        /// The page `page_write_done` named.
        index: u32,
    },
    /// The announced window is not a non-empty range after `copied_end` within the copy, or a
    /// chunk is still being read.
    #[error("bad copy window {requested_end} (copied {copied_end}, reading to {reading_end}, copy ends at {copy_end})")]
    BadWindow {
        /// The chunk end the copier asked to announce.
        requested_end: u32,
        /// [`CopyWindow::copied_end`] when it asked.
        copied_end: u32,
        /// [`CopyWindow::reading_end`] when it asked.
        reading_end: u32,
        /// [`CopyWindow::copy_end`].
        copy_end: u32,
    },
    /// `copy_done` before every page up to `copy_end` was copied.
    #[error("copy done at page {copied_end} of {copy_end}")]
    CopyIncomplete {
        /// Pages copied so far.
        copied_end: u32,
        /// Pages the copy must hold.
        copy_end: u32,
    },
    /// `copy_done` twice, or a window transition after it.
    #[error("copy already done")]
    CopyAlreadyDone,
    /// `checkpoint_ended` twice.
    #[error("snapshot checkpoint already ended")]
    CheckpointAlreadyEnded,
    /// `close` before both the copy is done and `S` has ended.
    #[error("merge not ready: checkpoint ended {checkpoint_ended}, copy done {copy_done}")]
    NotReady {
        /// Whether `S` had ended.
        checkpoint_ended: bool,
        /// Whether the copy was done.
        copy_done: bool,
    },
    /// A transition after `close` or `cancel`.
    #[error("snapshot hook already closed ({0:?})")]
    Closed(CloseReason),
}

/// One bit per page below `pages_at_cut`: "the delta holds this page's content at the cut".
#[derive(Clone, PartialEq, Eq, Hash)]
struct PageBitset {
    words: Vec<u64>,
}

impl PageBitset {
    fn new(page_count: u32) -> Self {
        PageBitset {
            words: vec![0; page_count.div_ceil(64) as usize],
        }
    }

    fn contains(&self, index: u32) -> bool {
        self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Sets the bit; returns whether it was clear.
    fn insert(&mut self, index: u32) -> bool {
        let word = &mut self.words[(index / 64) as usize];
        let bit = 1 << (index % 64);
        let was_clear = *word & bit == 0;
        *word |= bit;
        was_clear
    }

    #[cfg(test)]
    fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
}

impl fmt::Debug for PageBitset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.words.len() * 64;
        f.debug_set()
            .entries((0..bits as u32).filter(|&i| self.contains(i)))
            .finish()
    }
}

/// The snapshot state of one partition, from `S`'s cut to the merge. See the module docs for the
/// algorithm and the locking contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionSnapshot {
    policy: DeltaPolicy,
    pages_at_cut: u32,
    copy_end: u32,
    copied_end: u32,
    reading_end: u32,
    copy_done: bool,
    checkpoint_ended: bool,
    closed: Option<CloseReason>,
    hook_in_flight: Option<u32>,
    captured: PageBitset,
    captures: CaptureCounts,
}

impl PartitionSnapshot {
    /// The state at `S`'s cut: `pages_at_cut` is the partition's logical page count and
    /// `bytes_on_disk` its file length at the cut; the copy covers `bytes_on_disk / page_size`
    /// whole pages (a torn tail beyond the last whole page is not part of the partition).
    pub fn at_cut(
        policy: DeltaPolicy,
        pages_at_cut: u32,
        bytes_on_disk: u64,
        page_size: u32,
    ) -> Result<Self, ProtocolError> {
        if page_size == 0 {
            return Err(ProtocolError::ZeroPageSize);
        }
        let pages_on_disk = bytes_on_disk / u64::from(page_size);
        if pages_on_disk > u64::from(pages_at_cut) {
            return Err(ProtocolError::FileLongerThanPartition {
                pages_on_disk,
                pages_at_cut,
            });
        }
        // Cannot truncate: pages_on_disk <= pages_at_cut, a u32.
        let copy_end = pages_on_disk as u32;
        let state = PartitionSnapshot {
            policy,
            pages_at_cut,
            copy_end,
            copied_end: 0,
            reading_end: 0,
            copy_done: false,
            checkpoint_ended: false,
            closed: None,
            hook_in_flight: None,
            captured: PageBitset::new(pages_at_cut),
            captures: CaptureCounts::default(),
        };
        state.debug_check();
        Ok(state)
    }

    // ----- the write hook (checkpointer) -----

    /// The hook decision for a write of page `index` to the partition file, taken under the hook
    /// lock before the write. The caller performs the capture, writes the page, then calls
    /// [`page_write_done`](Self::page_write_done), all without releasing the lock.
    pub fn before_page_write(&mut self, index: u32) -> Result<Capture, ProtocolError> {
        if let Some(in_flight) = self.hook_in_flight {
            return Err(ProtocolError::HookInFlight { index: in_flight });
        }
        let capture = self.decide(index);
        match capture {
            Capture::NewImage => self.captures.new_images += 1,
            Capture::OldImageFromFile => self.captures.old_images += 1,
            Capture::Nothing(_) | Capture::Closed => {}
        }
        self.hook_in_flight = Some(index);
        self.debug_check();
        Ok(capture)
    }

    fn decide(&mut self, index: u32) -> Capture {
        if self.closed.is_some() {
            return Capture::Closed;
        }
        if index >= self.pages_at_cut {
            return Capture::Nothing(Skip::BeyondCut);
        }
        if self.captured.contains(index) {
            return Capture::Nothing(Skip::AlreadyCaptured);
        }
        if !self.checkpoint_ended {
            // S3, first half: this write carries S content. It is needed unless the copier is
            // certain to read the page after the write lands (cursor-aware only; certain because
            // the window cannot advance until `page_write_done`).
            let copier_will_read =
                !self.copy_done && self.reading_end <= index && index < self.copy_end;
            if self.policy == DeltaPolicy::CursorAware && copier_will_read {
                return Capture::Nothing(Skip::CopierWillRead);
            }
            let was_clear = self.captured.insert(index);
            debug_assert!(was_clear);
            return Capture::NewImage;
        }
        if self.copy_done {
            return Capture::Nothing(Skip::Complete);
        }
        // S3, second half: S has ended, so the file holds S content for this page until this
        // write; capture it once unless the copy already has it.
        if self.policy == DeltaPolicy::CursorAware && index < self.copied_end {
            return Capture::Nothing(Skip::AlreadyCopied);
        }
        let was_clear = self.captured.insert(index);
        debug_assert!(was_clear);
        Capture::OldImageFromFile
    }

    /// Ends the hook call for page `index`: its capture is in the delta and the page is written to
    /// the partition file. The caller releases the hook lock after this.
    pub fn page_write_done(&mut self, index: u32) -> Result<(), ProtocolError> {
        if self.hook_in_flight != Some(index) {
            return Err(ProtocolError::NoHookInFlight { index });
        }
        self.hook_in_flight = None;
        Ok(())
    }

    // ----- the copier -----

    /// The copier is about to read `[copied_end, reading_end)`. Allowed only when the previous
    /// chunk is fully copied.
    pub fn announce(&mut self, reading_end: u32) -> Result<(), ProtocolError> {
        self.check_copier_may_move()?;
        if self.reading_end != self.copied_end
            || reading_end <= self.copied_end
            || reading_end > self.copy_end
        {
            return Err(self.bad_window(reading_end));
        }
        self.reading_end = reading_end;
        self.debug_check();
        Ok(())
    }

    /// The copier has copied `[0, copied_end)`; `copied_end` may stop inside the announced window.
    pub fn chunk_copied(&mut self, copied_end: u32) -> Result<(), ProtocolError> {
        self.check_copier_may_move()?;
        if copied_end <= self.copied_end || copied_end > self.reading_end {
            return Err(self.bad_window(copied_end));
        }
        self.copied_end = copied_end;
        self.debug_check();
        Ok(())
    }

    /// The copier has copied `[0, copy_end)`.
    pub fn copy_done(&mut self) -> Result<(), ProtocolError> {
        self.check_copier_may_move()?;
        if self.copied_end != self.copy_end {
            return Err(ProtocolError::CopyIncomplete {
                copied_end: self.copied_end,
                copy_end: self.copy_end,
            });
        }
        self.copy_done = true;
        self.debug_check();
        Ok(())
    }

    fn check_copier_may_move(&self) -> Result<(), ProtocolError> {
        if let Some(reason) = self.closed {
            return Err(ProtocolError::Closed(reason));
        }
        if let Some(index) = self.hook_in_flight {
            return Err(ProtocolError::HookInFlight { index });
        }
        if self.copy_done {
            return Err(ProtocolError::CopyAlreadyDone);
        }
        Ok(())
    }

    fn bad_window(&self, requested_end: u32) -> ProtocolError {
        ProtocolError::BadWindow {
            requested_end,
            copied_end: self.copied_end,
            reading_end: self.reading_end,
            copy_end: self.copy_end,
        }
    }

    // ----- the checkpointer's end of S, the merge, cancellation -----

    /// `S` has ended: all its page writes returned and were fsynced and the control file names it
    /// (C2). From now on the hook captures old images instead of new ones.
    pub fn checkpoint_ended(&mut self) -> Result<(), ProtocolError> {
        if let Some(reason) = self.closed {
            return Err(ProtocolError::Closed(reason));
        }
        if let Some(index) = self.hook_in_flight {
            return Err(ProtocolError::HookInFlight { index });
        }
        if self.checkpoint_ended {
            return Err(ProtocolError::CheckpointAlreadyEnded);
        }
        self.checkpoint_ended = true;
        self.debug_check();
        Ok(())
    }

    /// Whether the merge may [`close`](Self::close): the copy is done and `S` has ended (S5).
    pub fn merge_ready(&self) -> bool {
        self.closed.is_none() && self.copy_done && self.checkpoint_ended
    }

    /// Closes the hook for the merge (S4): from now on every decision is [`Capture::Closed`], so
    /// the delta the merge reads can no longer grow.
    pub fn close(&mut self) -> Result<Sealed, ProtocolError> {
        if let Some(reason) = self.closed {
            return Err(ProtocolError::Closed(reason));
        }
        if let Some(index) = self.hook_in_flight {
            return Err(ProtocolError::HookInFlight { index });
        }
        if !self.merge_ready() {
            return Err(ProtocolError::NotReady {
                checkpoint_ended: self.checkpoint_ended,
                copy_done: self.copy_done,
            });
        }
        self.closed = Some(CloseReason::Merged);
        self.debug_check();
        Ok(Sealed {
            pages_at_cut: self.pages_at_cut,
            copy_end: self.copy_end,
            captures: self.captures,
        })
    }

    /// Fails or cancels the snapshot in any phase: closes the hook. The engine calls it from the
    /// hook itself on an I/O error (a hook in flight then still ends with `page_write_done`), or
    /// from the snapshot task under the hook lock. Err if already closed.
    pub fn cancel(&mut self) -> Result<(), ProtocolError> {
        if let Some(reason) = self.closed {
            return Err(ProtocolError::Closed(reason));
        }
        self.closed = Some(CloseReason::Cancelled);
        self.debug_check();
        Ok(())
    }

    // ----- observers -----

    /// The delta policy the hook decides by, fixed at the cut.
    pub fn policy(&self) -> DeltaPolicy {
        self.policy
    }

    /// The partition's logical page count at the cut: the merged partition's length.
    pub fn pages_at_cut(&self) -> u32 {
        self.pages_at_cut
    }

    /// Pages of the partition file the copier copies.
    pub fn copy_end(&self) -> u32 {
        self.copy_end
    }

    /// The copier's window now.
    pub fn window(&self) -> CopyWindow {
        CopyWindow {
            copied_end: self.copied_end,
            reading_end: self.reading_end,
            copy_end: self.copy_end,
        }
    }

    /// Whether [`copy_done`](PartitionSnapshot::copy_done) was accepted: every page below
    /// `copy_end` is copied.
    pub fn is_copy_done(&self) -> bool {
        self.copy_done
    }

    /// Whether [`checkpoint_ended`](PartitionSnapshot::checkpoint_ended) was accepted: `S` is
    /// durable and later checkpoints' writes need old images (S3).
    pub fn is_checkpoint_ended(&self) -> bool {
        self.checkpoint_ended
    }

    /// How the hook was closed, if it was; once closed every decision is [`Capture::Closed`]
    /// (S4).
    pub fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// The page whose hook call has not been completed with `page_write_done`, if any: the hook
    /// lock is (or should be) held.
    pub fn hook_in_flight(&self) -> Option<u32> {
        self.hook_in_flight
    }

    /// The captures the hook asked for so far.
    pub fn captures(&self) -> CaptureCounts {
        self.captures
    }

    /// Whether the delta holds page `index`'s content at the cut.
    pub fn is_captured(&self, index: u32) -> bool {
        index < self.pages_at_cut && self.captured.contains(index)
    }

    /// The internal invariants; a failure is a bug in this module, not engine misuse.
    fn debug_check(&self) {
        debug_assert!(self.copy_end <= self.pages_at_cut);
        debug_assert!(self.copied_end <= self.reading_end);
        debug_assert!(self.reading_end <= self.copy_end);
        debug_assert!(!self.copy_done || self.copied_end == self.copy_end);
        debug_assert!(
            self.closed != Some(CloseReason::Merged) || (self.copy_done && self.checkpoint_ended)
        );
    }
}

#[cfg(test)]
mod tests;
