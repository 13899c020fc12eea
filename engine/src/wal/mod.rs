//! The redo log: a directory of segment files (`engine/docs/format.md` §3) holding length- and
//! crc-framed [`Record`]s, addressed by LSN (the byte position in the log stream).
//!
//! # Appending and group commit
//!
//! One mutex guards the log's state. [`Wal::append`] encodes and checksums the record *outside*
//! the lock, then, under it, assigns the LSN (the current end) and copies the frame into an
//! in-memory buffer. Appending never fsyncs.
//!
//! When the buffer reaches `buffer_bytes_max`, the appender that filled it writes it to the
//! active segment *outside* the lock: under the lock it swaps the buffer for an empty one, notes
//! the file and offset (`written_lsn`'s place) and marks a write *in flight*; it writes; it takes
//! the lock back, raises `written_lsn` and clears the mark. One write is in flight at most: an
//! appender that fills the new buffer meanwhile leaves it to the next one (up to a bound, below),
//! and everything else that writes or rolls (a sync leader, a roll, replay) first waits for the
//! write in flight to end. So the file still receives the bytes in LSN order and `written_lsn`
//! still means "every byte below is written", while the other appenders go on appending during
//! the write. (Before, the write ran under the lock: a 256 KiB write that the kernel held for
//! milliseconds held every writer for as long, BENCHMARKS.md.)
//!
//! With a *write-behind* thread ([`Wal::run_write_behind`]; the engine runs one beside its
//! checkpointer), appenders do not write at all: the one that fills the buffer wakes the thread,
//! which writes it out as above. An appender writes itself only when the thread has fallen
//! [`WRITE_BEHIND_SLACK`] buffers behind.
//!
//! Either way the buffer is bounded: an appender that finds [`WRITE_BEHIND_SLACK`] buffers
//! waiting behind a write in flight waits for that write, then writes them. So a disk that holds
//! a write stalls the appenders (as it did when the write ran under the lock), but memory stays
//! bounded however slow the disk is.
//!
//! [`Wal::sync`] is group commit. A caller notes the end LSN it must cover, then:
//! 1. if `durable_lsn` already covers it, returns;
//! 2. if another caller is the *leader* (an fsync is in flight), waits on the condvar and goes to 1;
//! 3. otherwise becomes the leader: waits for a write in flight, writes the buffer out (outside
//!    the lock, as above), notes the end it wrote (`covered`) and the segments holding bytes in
//!    `[durable_lsn, covered)`, releases the lock, makes them durable in log order (below),
//!    retakes the lock, raises `durable_lsn` to `covered`, and wakes every waiter.
//!
//! While the leader fsyncs, appends go on filling the buffer; callers that arrive meanwhile wait,
//! and the first to wake after the leader leads the next fsync for all of them. So `n` concurrent
//! `sync`s cost about two fsyncs, not `n`. This upholds R1's "every write whose `sync` returned is
//! durable": `durable_lsn` only moves past bytes that were written before an fsync that returned
//! `Ok`, in a segment whose name was durable (format.md §3).
//!
//! # Segment roll
//!
//! When a record would take the active segment past `segment_bytes_max` (and the segment holds
//! at least one record), [`Wal::append`] rolls, under the lock and without any fsync:
//! 1. write the buffer to the old segment (which is now complete, but not durable);
//! 2. take the *spare*, an empty file created ahead of time under a name recovery does not read
//!    as a segment (`wal/.spare-<n>`), write the segment header naming `first_lsn` (the old
//!    segment's end) into it, and make it the active segment, still under its spare name.
//!
//! The new segment is *unnamed*: a crash may have torn the old segment's tail, so the new one must
//! not be visible as `<first-lsn>.log` before the old one is durable, or recovery would find a torn
//! segment that is not the last (corruption). The next sync leader names it: for every segment
//! holding bytes in `[durable_lsn, covered)`, oldest first, it fsyncs the segment and, if it is
//! unnamed, renames it to `<first-lsn>.log` and fsyncs the directory. So a segment is named only
//! after every segment before it and its own header are durable, and `durable_lsn` enters it only
//! after its name is durable.
//!
//! The writer that rolls therefore waits for no fsync (before this, it waited for the fsync of up
//! to a whole segment, the creation of the next one and two more fsyncs: tens of milliseconds
//! under a random-write load, BENCHMARKS.md). [`Wal::maintain`] does the rest off the appenders'
//! path: it creates the next spare and, when a rolled segment is still unnamed, leads a sync. The
//! engine's checkpointer thread calls it whenever [`Wal::maintenance_due`]. Without it (no
//! background thread), a roll creates the spare itself (a create without fsync), and an appender
//! about to roll while [`UNNAMED_SEGMENTS_MAX`] segments are unnamed syncs first, so the unnamed
//! tail of the log stays bounded.
//!
//! # Failure
//!
//! An I/O error on the append, roll, flush or fsync path *fails* the log: that call returns the
//! I/O error, and every later `append` and `sync` returns [`Error::WalFailed`]. An fsync error may
//! have dropped dirty pages from the cache (and a retried fsync may then report success), so the
//! log never retries and pretends; the engine recovers by reopening, which re-reads what reached
//! the disk.
//!
//! # Recovery ([`Wal::open`])
//!
//! Every segment's name and header are validated and the segments must be contiguous (each one's
//! first LSN is the previous one's end). Only the last segment is scanned: the first frame that is
//! not whole or fails its crc is the torn tail, and the file is truncated there (format.md §3.1).
//! A last segment whose header never became durable (a crash while an older version of this code
//! created a segment) is reset to an empty segment.
//!
//! Then the spares: one whose header is valid and names exactly the log's end, when the last
//! segment ended cleanly (no tail cut), is a rolled segment that was never named; it is *adopted*:
//! the last segment is fsynced, the spare renamed to `<first-lsn>.log`, the directory fsynced, and
//! it is recovered as the new last segment (repeatedly, for a chain of them). This keeps every
//! record that reached the disk contiguously (after a clean shutdown without a final sync: all
//! of them). Every other spare holds no record that a `sync` reported durable and is deleted.
//! Open then fsyncs the last segment and the directory, because a previous process may have died
//! with written-but-unsynced bytes that are only in the page cache: after open, everything the
//! log reports is durable.
//!
//! # Purging (C3)
//!
//! [`Wal::purge_before`] deletes whole segments, oldest first, fsyncing the directory after each
//! removal: the surviving segments are then always a contiguous suffix of the log, whatever a crash
//! keeps of the removals. It never deletes the last named segment (so a crash always leaves one
//! for recovery to start from and spares to follow). The caller upholds C3 (the control file
//! naming a replay-start at or past the purge point is already durable).
//!
//! # Files
//!
//! This file holds the log's types and state; `append` the append path, the write-behind thread,
//! the roll and the maintenance; `commit` group commit and purging; `open` recovery and replay;
//! `record` the record encoding; `segment` the segment header, frames and file names.

mod append;
mod commit;
mod open;
mod record;
mod segment;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::sync::{Arc, Condvar, Mutex};
use crate::types::Lsn;
use crate::vfs::{OpenMode, Vfs, VfsFile};

pub use record::{Record, RECORD_BODY_BYTES_MAX};

use segment::{encode_header, segment_file_name, spare_file_name, SEGMENT_HEADER_SIZE};

const HEADER_BYTES: u64 = SEGMENT_HEADER_SIZE as u64;

/// With a write-behind thread running, appenders leave a full buffer to it until it holds this
/// many times `buffer_bytes_max` (module docs, "Appending").
pub const WRITE_BEHIND_SLACK: usize = 4;

/// An appender about to roll while this many segments are unnamed syncs first (module docs,
/// "Segment roll"): the bound on the part of the log that only [`Wal::maintain`] or a `sync` names.
pub const UNNAMED_SEGMENTS_MAX: usize = 4;

/// How the log is laid out and buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// The store's page size; every segment header must carry it.
    pub page_size: u32,
    /// A segment is rolled before it would grow past this many bytes (header included). A record
    /// larger than a whole segment gets a segment of its own.
    pub segment_bytes_max: u64,
    /// Appended bytes are kept in memory up to this many, then written (not fsynced).
    pub buffer_bytes_max: usize,
}

impl WalConfig {
    pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 << 20;
    pub const BUFFER_BYTES_MAX_DEFAULT: usize = 256 << 10;

    /// The default sizes for a store of `page_size`.
    pub fn new(page_size: u32) -> Self {
        WalConfig {
            page_size,
            segment_bytes_max: Self::SEGMENT_BYTES_MAX_DEFAULT,
            buffer_bytes_max: Self::BUFFER_BYTES_MAX_DEFAULT,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig::new(crate::format::PAGE_SIZE_DEFAULT)
    }
}

/// A torn or corrupt tail that [`Wal::open`] cut off the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    pub segment: PathBuf,
    /// The log now ends here: the LSN of the first byte dropped.
    pub lsn: Lsn,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOpenReport {
    /// The LSN just past the last valid record: the next append's LSN.
    pub end_lsn: Lsn,
    pub tail_cut: Option<TailCut>,
    /// Segments in the log after open.
    pub segments: usize,
}

/// The redo log. `Send + Sync`: share it behind an `Arc`.
pub struct Wal {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    config: WalConfig,
    state: Mutex<State>,
    /// Signalled when a sync leader finishes (or a write out panicked).
    sync_done: Condvar,
    /// Signalled when a buffer write in flight outside the lock ends.
    write_done: Condvar,
    /// Signalled when the buffer is full (or the write-behind thread should stop).
    buffer_full: Condvar,
    /// Serialises purges, so that a failed purge can put its segments back at the front.
    purge_lock: Mutex<()>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
};

#[derive(Debug, Clone)]
struct Segment {
    first_lsn: Lsn,
    /// `<first-lsn>.log`, where the segment lives once it is named.
    path: PathBuf,
    /// While `Some`, the segment still lives under this spare name (module docs, "Segment roll").
    spare_path: Option<PathBuf>,
    /// The open file, for the segments this process appended to (a sync leader fsyncs through
    /// it); `None` for segments recovered at open, which are durable.
    file: Option<Arc<dyn VfsFile>>,
}

impl Segment {
    /// Where the file is now.
    fn location(&self) -> &Path {
        self.spare_path.as_deref().unwrap_or(&self.path)
    }

    fn is_named(&self) -> bool {
        self.spare_path.is_none()
    }
}

struct State {
    /// Retained segments, oldest first; the last is the active one. Never empty. The unnamed ones
    /// are a suffix.
    segments: VecDeque<Segment>,
    active: Arc<dyn VfsFile>,
    /// An empty file under a spare name for the next roll to switch to.
    spare: Option<(PathBuf, Arc<dyn VfsFile>)>,
    /// The number in the next spare file's name.
    spare_next: u64,
    /// Appended bytes not yet written; `buffer[0]` has LSN `written_lsn`, or, while a write is in
    /// flight, the LSN just past the bytes in flight.
    buffer: Vec<u8>,
    /// An emptied buffer, kept for the next swap so that a write out allocates nothing.
    recycled: Vec<u8>,
    /// Every byte below this LSN has been written to a segment file.
    written_lsn: Lsn,
    /// An appender or sync leader is writing the bytes from `written_lsn` on outside the lock
    /// (module docs, "Appending"); nothing else writes the log or rolls until it ends.
    writing: bool,
    /// A write-behind thread is running: appenders leave full buffers to it.
    write_behind: bool,
    /// [`Wal::stop_write_behind`] asked the thread to return.
    write_behind_stop: bool,
    /// The LSN the next append gets.
    end_lsn: Lsn,
    /// Every byte below this LSN was written before an fsync that returned `Ok`, in a segment
    /// whose name is durable.
    durable_lsn: Lsn,
    /// A `sync` leader is fsyncing (and naming segments) outside the lock.
    sync_leader_active: bool,
    /// Why the log failed; once set, never cleared.
    failed: Option<String>,
}

impl State {
    fn active_segment(&self) -> &Segment {
        self.segments
            .back()
            .expect("the log always has an active segment")
    }

    fn check_not_failed(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(Error::WalFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the log failed by `error` (the first failure is the one kept) and returns `error`.
    fn fail(&mut self, error: Error) -> Error {
        if self.failed.is_none() {
            tracing::error!(%error, "redo log failed; appends and syncs are refused until reopen");
            metrics::counter!("deltasnap_wal_failures_total").increment(1);
            self.failed = Some(error.to_string());
        }
        error
    }

    fn unnamed_segments(&self) -> usize {
        self.segments
            .iter()
            .rev()
            .take_while(|s| !s.is_named())
            .count()
    }

    /// The segments holding bytes in `[durable_lsn, covered_lsn)`, oldest first: what a sync
    /// leader must make durable (and name) before `durable_lsn` may reach `covered_lsn`.
    fn not_durable(&self, covered_lsn: Lsn) -> Vec<Segment> {
        let ends = self
            .segments
            .iter()
            .skip(1)
            .map(|next| next.first_lsn)
            .chain([covered_lsn]);
        self.segments
            .iter()
            .zip(ends)
            .filter(|(segment, end_lsn)| {
                segment.first_lsn < covered_lsn && *end_lsn > self.durable_lsn
            })
            .map(|(segment, _)| segment.clone())
            .collect()
    }

    /// A path for a new spare file.
    fn next_spare_path(&mut self, dir: &Path) -> PathBuf {
        let path = dir.join(spare_file_name(self.spare_next));
        self.spare_next += 1;
        path
    }

    /// Writes the buffer at its place in the active segment, under the lock (a roll and replay:
    /// rare). No write may be in flight. Never fsyncs.
    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        debug_assert!(!self.writing, "one write at a time, in LSN order");
        let segment = self.active_segment();
        debug_assert!(self.written_lsn >= segment.first_lsn);
        let offset = HEADER_BYTES + (self.written_lsn - segment.first_lsn);
        self.active
            .write_all_at(&self.buffer, offset)
            .ctx("write redo segment", segment.location())?;
        metrics::counter!("deltasnap_wal_bytes_written_total").increment(self.buffer.len() as u64);
        self.written_lsn += self.buffer.len() as u64;
        debug_assert_eq!(self.written_lsn, self.end_lsn);
        self.buffer.clear();
        Ok(())
    }
}

/// Clears [`State::writing`] and fails the log if a write out unwinds (see [`Wal::write_out`]).
struct InFlight<'a> {
    wal: &'a Wal,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.wal.state.lock();
        state.writing = false;
        state.fail(Error::WalFailed(
            "a write of the redo buffer panicked; what it held may not be written".into(),
        ));
        drop(state);
        self.wal.write_done.notify_all();
        self.wal.sync_done.notify_all();
    }
}

/// fsyncs `file`, counting it and timing it.
fn fsync(file: &dyn VfsFile, path: &Path) -> Result<()> {
    let started = Instant::now();
    let result = file.sync_all().ctx("fsync redo segment", path);
    metrics::counter!("deltasnap_wal_fsync_total").increment(1);
    metrics::histogram!("deltasnap_wal_fsync_seconds").record(started.elapsed().as_secs_f64());
    result
}

/// Creates segment `first_lsn` in `dir`: create-new, header, fsync file, fsync directory. Only
/// for the first segment of a new log; later segments start as spares (module docs).
fn create_segment(vfs: &dyn Vfs, dir: &Path, page_size: u32, first_lsn: Lsn) -> Result<Segment> {
    let path = dir.join(segment_file_name(first_lsn));
    let file = vfs
        .open(&path, OpenMode::CreateNew)
        .ctx("create redo segment", &path)?;
    file.write_all_at(&encode_header(page_size, first_lsn), 0)
        .ctx("write redo segment header", &path)?;
    fsync(file.as_ref(), &path)?;
    vfs.sync_dir(dir).ctx("fsync redo log directory", dir)?;
    metrics::counter!("deltasnap_wal_segments_created_total").increment(1);
    tracing::debug!(segment = %path.display(), first_lsn, "created redo segment");
    Ok(Segment {
        first_lsn,
        path,
        spare_path: None,
        file: Some(file),
    })
}

/// Creates an empty spare file at `path` (no fsync: until a sync leader names it, a spare holds
/// nothing recovery needs, module docs).
fn create_spare(vfs: &dyn Vfs, path: &Path) -> Result<Arc<dyn VfsFile>> {
    let file = vfs
        .open(path, OpenMode::CreateNew)
        .ctx("create spare redo segment", path)?;
    metrics::counter!("deltasnap_wal_spares_created_total").increment(1);
    Ok(file)
}

fn corrupted(file: &Path, reason: String) -> Error {
    Error::Corrupted {
        file: file.to_path_buf(),
        page: None,
        reason,
    }
}

impl Wal {
    /// The LSN just past the last appended record.
    pub fn end_lsn(&self) -> Lsn {
        self.state.lock().end_lsn
    }

    /// Every record ending at or before this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.state.lock().durable_lsn
    }

    /// Whether a write-behind thread is running ([`Wal::run_write_behind`]).
    pub fn write_behind_running(&self) -> bool {
        self.state.lock().write_behind
    }

    /// Bytes written to segment files so far (not necessarily durable): the LSN below which every
    /// appended byte has left the buffer.
    pub fn written_lsn(&self) -> Lsn {
        self.state.lock().written_lsn
    }

    /// How many segments the log holds.
    pub fn segment_count(&self) -> usize {
        self.state.lock().segments.len()
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("segments", &state.segments.len())
            .field("end_lsn", &state.end_lsn)
            .field("durable_lsn", &state.durable_lsn)
            .field("failed", &state.failed)
            .finish()
    }
}
