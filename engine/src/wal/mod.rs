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

mod record;
mod segment;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::format::validate_page_size;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};
use crate::types::Lsn;
use crate::vfs::{OpenMode, Vfs, VfsFile};

pub use record::{Record, RECORD_BODY_BYTES_MAX};

use segment::{
    encode_header, header_first_lsn, parse_segment_file_name, segment_file_name, spare_file_name,
    verify_header, Frame, FrameReader, SegmentName, SEGMENT_HEADER_SIZE,
};

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
    /// Opens the log in `dir`, or creates it with a first segment at `first_lsn_if_empty` if `dir`
    /// holds no segment. Validates every segment's name and header, checks the segments are
    /// contiguous, scans the last one for its valid end and truncates a torn or corrupt tail there
    /// (reported in [`WalOpenReport::tail_cut`] and as a `tracing` warning). The log is then ready
    /// to append at its end, and everything in it is durable.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: WalConfig,
        first_lsn_if_empty: Lsn,
    ) -> Result<(Wal, WalOpenReport)> {
        validate_page_size(config.page_size)?;
        if config.segment_bytes_max <= HEADER_BYTES {
            return Err(Error::InvalidArgument(format!(
                "segment_bytes_max {} leaves no room after the {HEADER_BYTES}-byte segment header",
                config.segment_bytes_max
            )));
        }
        let dir_existed = vfs.is_dir(dir).ctx("stat redo log directory", dir)?;
        if !dir_existed {
            vfs.create_dir_all(dir)
                .ctx("create redo log directory", dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                vfs.sync_dir(parent)
                    .ctx("fsync parent of redo log directory", parent)?;
            }
        }
        let (mut sealed, spares) = list_segments(vfs.as_ref(), dir)?;
        let Some(mut last) = sealed.pop() else {
            // No segment was ever named here, so no spare can continue one.
            remove_spares(vfs.as_ref(), &spares)?;
            let segment = create_segment(vfs.as_ref(), dir, config.page_size, first_lsn_if_empty)?;
            tracing::info!(dir = %dir.display(), first_lsn = first_lsn_if_empty, "created redo log");
            let wal = Wal::from_parts(
                vfs,
                dir,
                config,
                VecDeque::from([segment]),
                first_lsn_if_empty,
            );
            let report = WalOpenReport {
                end_lsn: first_lsn_if_empty,
                tail_cut: None,
                segments: 1,
            };
            return Ok((wal, report));
        };
        check_sealed_segments(vfs.as_ref(), &sealed, &last, config.page_size)?;
        let (mut file, mut end_lsn, mut tail_cut) =
            recover_last_segment(vfs.as_ref(), &last, config.page_size)?;
        // Rolled segments that were never named (module docs, "Recovery").
        let mut spares = read_spare_headers(vfs.as_ref(), spares, config.page_size);
        while tail_cut.is_none() {
            let Some(position) = spares
                .iter()
                .position(|(_, first_lsn)| *first_lsn == Some(end_lsn))
            else {
                break;
            };
            let (spare_path, _) = spares.swap_remove(position);
            // The same order as a sync leader's: the segment before is durable, then the name.
            fsync(file.as_ref(), &last.path)?;
            let path = dir.join(segment_file_name(end_lsn));
            vfs.rename(&spare_path, &path)
                .ctx("name redo segment", &path)?;
            vfs.sync_dir(dir).ctx("fsync redo log directory", dir)?;
            tracing::info!(segment = %path.display(), "adopted a rolled redo segment that was never named");
            metrics::counter!("deltasnap_wal_segments_adopted_total").increment(1);
            sealed.push(last);
            last = Segment {
                first_lsn: end_lsn,
                path,
                spare_path: None,
                file: None,
            };
            (file, end_lsn, tail_cut) =
                recover_last_segment(vfs.as_ref(), &last, config.page_size)?;
        }
        let spare_paths: Vec<PathBuf> = spares.into_iter().map(|(path, _)| path).collect();
        remove_spares(vfs.as_ref(), &spare_paths)?;
        // Bytes a crashed process wrote may sit unsynced in the page cache, and the last
        // segment's name may not be durable yet: make both durable before reporting them.
        fsync(file.as_ref(), &last.path)?;
        vfs.sync_dir(dir).ctx("fsync redo log directory", dir)?;
        if let Some(cut) = &tail_cut {
            tracing::warn!(
                segment = %cut.segment.display(),
                lsn = cut.lsn,
                bytes_dropped = cut.bytes_dropped,
                reason = %cut.reason,
                "cut torn tail off the redo log"
            );
            metrics::counter!("deltasnap_wal_tail_cuts_total").increment(1);
        }
        last.file = Some(file);
        let mut segments: VecDeque<Segment> = sealed.into();
        segments.push_back(last);
        let report = WalOpenReport {
            end_lsn,
            tail_cut,
            segments: segments.len(),
        };
        tracing::info!(dir = %dir.display(), end_lsn, segments = segments.len(), "opened redo log");
        Ok((Wal::from_parts(vfs, dir, config, segments, end_lsn), report))
    }

    /// `segments.back()` is the active segment and has its file.
    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: WalConfig,
        segments: VecDeque<Segment>,
        end_lsn: Lsn,
    ) -> Wal {
        let active = Arc::clone(
            segments
                .back()
                .and_then(|segment| segment.file.as_ref())
                .expect("the active segment is open"),
        );
        Wal {
            vfs,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                active,
                spare: None,
                spare_next: 0,
                buffer: Vec::with_capacity(config.buffer_bytes_max),
                recycled: Vec::with_capacity(config.buffer_bytes_max),
                written_lsn: end_lsn,
                writing: false,
                write_behind: false,
                write_behind_stop: false,
                end_lsn,
                durable_lsn: end_lsn,
                sync_leader_active: false,
                failed: None,
            }),
            config,
            sync_done: Condvar::new(),
            write_done: Condvar::new(),
            buffer_full: Condvar::new(),
            purge_lock: Mutex::new(()),
        }
    }

    /// Calls `apply` for each record with LSN `>= from`, in LSN order, and returns how many it
    /// applied. `from` must be a record boundary (an end LSN the log reported) no earlier than the
    /// first retained segment; records appended before the call are included.
    ///
    /// Any frame that does not verify is [`Error::Corrupted`] naming the segment and the LSN: the
    /// torn tail was cut at open, so what remains must be whole.
    pub fn replay(
        &self,
        from: Lsn,
        mut apply: impl FnMut(Lsn, Record) -> Result<()>,
    ) -> Result<u64> {
        let (segments, end_lsn) = {
            let mut state = self.wait_for_write(self.state.lock());
            if !state.buffer.is_empty() {
                // Make buffered records visible to the file reads below (a write, not an fsync).
                state.check_not_failed()?;
                if let Err(error) = state.write_buffer() {
                    return Err(state.fail(error));
                }
            }
            (Vec::from(state.segments.clone()), state.end_lsn)
        };
        let oldest = segments.first().expect("the log always has a segment");
        if from < oldest.first_lsn {
            return Err(corrupted(
                &self.dir,
                format!(
                    "redo log missing: replay must start at LSN {from}, but the oldest retained \
                     segment starts at LSN {}",
                    oldest.first_lsn
                ),
            ));
        }
        if from > end_lsn {
            return Err(Error::InvalidArgument(format!(
                "replay from LSN {from} is past the end of the redo log at LSN {end_lsn}"
            )));
        }
        let start = segments.partition_point(|segment| segment.first_lsn <= from) - 1;
        let mut applied = 0u64;
        for (index, segment) in segments.iter().enumerate().skip(start) {
            let segment_end_lsn = segments
                .get(index + 1)
                .map_or(end_lsn, |next| next.first_lsn);
            let end_offset = HEADER_BYTES + (segment_end_lsn - segment.first_lsn);
            let file = match &segment.file {
                Some(file) => Arc::clone(file),
                None => self
                    .vfs
                    .open(&segment.path, OpenMode::Read)
                    .ctx("open redo segment for replay", &segment.path)?,
            };
            let len = file.len().ctx("stat redo segment", segment.location())?;
            let is_last = index + 1 == segments.len();
            // A sealed segment ends exactly where the next begins; the active one may have grown
            // since the snapshot of `end_lsn` above.
            if len < end_offset || (!is_last && len != end_offset) {
                return Err(corrupted(
                    &segment.path,
                    format!(
                        "segment is {len} bytes, but its records must end at LSN {segment_end_lsn} \
                         (file offset {end_offset})"
                    ),
                ));
            }
            let mut reader = FrameReader::new(
                file.as_ref(),
                segment.location(),
                segment.first_lsn,
                self.config.page_size,
                end_offset,
            );
            loop {
                match reader.next_frame()? {
                    Frame::End => break,
                    Frame::Invalid { lsn, reason } => {
                        return Err(corrupted(
                            &segment.path,
                            format!("record at LSN {lsn}: {reason}"),
                        ))
                    }
                    Frame::Record {
                        lsn,
                        record,
                        frame_bytes,
                    } => {
                        if lsn >= from {
                            apply(lsn, record)?;
                            applied += 1;
                        } else if lsn + frame_bytes > from {
                            return Err(Error::InvalidArgument(format!(
                                "replay from LSN {from}: not a record boundary (the record at LSN \
                                 {lsn} spans it)"
                            )));
                        }
                    }
                }
            }
        }
        Ok(applied)
    }

    /// Appends `record` and returns its LSN. Never fsyncs, except before a roll that would leave
    /// more than [`UNNAMED_SEGMENTS_MAX`] unnamed segments (module docs, "Segment roll"). An I/O
    /// error fails the log (see the module docs); a record whose append failed was not written.
    pub fn append(&self, record: &Record) -> Result<Lsn> {
        record.validate(self.config.page_size)?;
        // Encode and checksum outside the lock.
        let mut frame = Vec::with_capacity(record.encoded_len());
        record.encode_into(&mut frame);
        let frame_bytes = frame.len() as u64;

        let mut state = self.state.lock();
        state.check_not_failed()?;
        let mut synced_for_bound = false;
        loop {
            let active_first_lsn = state.active_segment().first_lsn;
            let active_bytes = HEADER_BYTES + (state.end_lsn - active_first_lsn);
            if state.end_lsn == active_first_lsn
                || active_bytes + frame_bytes <= self.config.segment_bytes_max
            {
                break;
            }
            // This record opens the next segment.
            if state.writing {
                // The roll writes the rest of the old segment: after the write in flight. Then
                // look again (another appender may have rolled meanwhile).
                state = self.wait_for_write(state);
                state.check_not_failed()?;
                continue;
            }
            if state.unnamed_segments() >= UNNAMED_SEGMENTS_MAX && !synced_for_bound {
                // Nobody named the rolled segments (no maintenance ran): bound the unnamed tail
                // first, then look again (another appender may have rolled meanwhile; once is
                // enough to bound the tail by the number of appenders).
                drop(state);
                self.sync()?;
                synced_for_bound = true;
                state = self.state.lock();
                state.check_not_failed()?;
                continue;
            }
            if let Err(error) = self.roll(&mut state) {
                return Err(state.fail(error));
            }
            break;
        }
        let lsn = state.end_lsn;
        state.buffer.extend_from_slice(&frame);
        state.end_lsn += frame_bytes;
        // Full: the write-behind thread writes it out; without one, or with the thread too far
        // behind, this appender does, unless a write is in flight (then the appender after it
        // will). Past WRITE_BEHIND_SLACK buffers, appenders wait for the write in flight, so
        // the buffer stays bounded however long the disk holds a write (a stalled disk stalls
        // the writers, as it did when the write ran under the lock).
        if state.writing && state.buffer.len() >= WRITE_BEHIND_SLACK * self.config.buffer_bytes_max
        {
            state = self.wait_for_write(state);
            // If the write before ours failed, ours will never be written.
            state.check_not_failed()?;
        }
        let full = state.buffer.len() >= self.config.buffer_bytes_max;
        let leave_to_thread = state.write_behind
            && state.buffer.len() < WRITE_BEHIND_SLACK * self.config.buffer_bytes_max;
        if full && !state.writing && !leave_to_thread {
            let (state, result) = self.write_out(state);
            drop(state);
            result?;
        } else {
            let wake = full && state.write_behind;
            drop(state);
            if wake {
                self.buffer_full.notify_one();
            }
        }
        metrics::counter!("deltasnap_wal_records_appended_total").increment(1);
        metrics::counter!("deltasnap_wal_bytes_appended_total").increment(frame_bytes);
        Ok(lsn)
    }

    /// The write-behind thread's loop (module docs, "Appending"): writes the buffer out whenever
    /// it is full, until [`Wal::stop_write_behind`]. Run it on a thread of its own; appenders
    /// leave full buffers to it from the moment it starts. An I/O error fails the log (appenders
    /// and syncs see it) and the loop goes on waiting for the stop.
    pub fn run_write_behind(&self) {
        let mut state = self.state.lock();
        state.write_behind = true;
        loop {
            if state.write_behind_stop {
                break;
            }
            if state.buffer.len() >= self.config.buffer_bytes_max
                && !state.writing
                && state.failed.is_none()
            {
                // An error is kept in the log's state: appenders and syncs report it.
                state = self.write_out(state).0;
                continue;
            }
            state = self.buffer_full.wait(state);
        }
        state.write_behind = false;
        state.write_behind_stop = false;
    }

    /// Makes [`Wal::run_write_behind`] return (soon; join its thread to wait). Appenders write
    /// full buffers themselves again once it has. Call it only for a thread that was spawned
    /// (it may not have started yet: it then returns at once); the request is consumed by the
    /// thread that returns.
    pub fn stop_write_behind(&self) {
        self.state.lock().write_behind_stop = true;
        self.buffer_full.notify_all();
    }

    /// Waits until no buffer write is in flight outside the lock (module docs, "Appending").
    fn wait_for_write<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        while state.writing {
            state = self.write_done.wait(state);
        }
        state
    }

    /// Writes the buffer at its place in the active segment *outside* the lock (module docs,
    /// "Appending") and returns the lock retaken. The caller holds the lock with no write in
    /// flight. An I/O error fails the log. Never fsyncs.
    fn write_out<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, Result<()>) {
        if let Err(error) = state.check_not_failed() {
            return (state, Err(error));
        }
        if state.buffer.is_empty() {
            return (state, Ok(()));
        }
        // Without the seeded bug, callers wait first; with it, this write may race the one in
        // flight, as the bug means.
        debug_assert!(
            !state.writing || crate::bugs::active(crate::bugs::Bug::SyncIgnoresWriteInFlight)
        );
        let recycled = std::mem::take(&mut state.recycled);
        let mut bytes = std::mem::replace(&mut state.buffer, recycled);
        let segment = state.active_segment();
        debug_assert!(state.written_lsn >= segment.first_lsn);
        let offset = HEADER_BYTES + (state.written_lsn - segment.first_lsn);
        let location = segment.location().to_path_buf();
        let file = Arc::clone(&state.active);
        state.writing = true;
        drop(state);

        // If the write panics (a file system implementation's bug), the mark must not outlive
        // it: every later sync, roll and close would wait for it forever.
        let in_flight = InFlight { wal: self };
        let result = file
            .write_all_at(&bytes, offset)
            .ctx("write redo segment", &location);
        std::mem::forget(in_flight);

        let mut state = self.state.lock();
        state.writing = false;
        let result = match result {
            Ok(()) => {
                metrics::counter!("deltasnap_wal_bytes_written_total")
                    .increment(bytes.len() as u64);
                state.written_lsn += bytes.len() as u64;
                // One oversized record must not pin a huge buffer for the life of the log.
                if bytes.capacity() <= 2 * self.config.buffer_bytes_max {
                    bytes.clear();
                    state.recycled = bytes;
                }
                Ok(())
            }
            Err(error) => Err(state.fail(error)),
        };
        self.write_done.notify_all();
        // Appenders that filled the buffer during this write found a write in flight and left
        // it; if this was not the thread's own write, the thread may be asleep.
        if state.write_behind && state.buffer.len() >= self.config.buffer_bytes_max {
            self.buffer_full.notify_one();
        }
        (state, result)
    }

    /// Switches to a new segment at the end of the active one, under the lock and without an
    /// fsync (module docs, "Segment roll"): the old segment is written out, the spare gets the
    /// header and becomes the active segment, unnamed until a sync leader names it.
    fn roll(&self, state: &mut State) -> Result<()> {
        debug_assert!(!state.writing, "a roll waits for the write in flight");
        state.write_buffer()?;
        let first_lsn = state.written_lsn;
        let (spare_path, file) = match state.spare.take() {
            Some(spare) => spare,
            None => {
                // No maintenance made one ahead of this roll: a create without fsync.
                let path = state.next_spare_path(&self.dir);
                let file = create_spare(self.vfs.as_ref(), &path)?;
                (path, file)
            }
        };
        file.write_all_at(&encode_header(self.config.page_size, first_lsn), 0)
            .ctx("write redo segment header", &spare_path)?;
        let path = self.dir.join(segment_file_name(first_lsn));
        tracing::debug!(
            sealed = %state.active_segment().location().display(),
            next = %path.display(),
            spare = %spare_path.display(),
            "rolled redo segment"
        );
        metrics::counter!("deltasnap_wal_segments_created_total").increment(1);
        state.segments.push_back(Segment {
            first_lsn,
            path,
            spare_path: Some(spare_path),
            file: Some(Arc::clone(&file)),
        });
        state.active = file;
        Ok(())
    }

    /// Whether [`Wal::maintain`] has work: no spare is ready for the next roll, or a rolled
    /// segment is still unnamed.
    pub fn maintenance_due(&self) -> bool {
        let state = self.state.lock();
        state.failed.is_none() && (state.spare.is_none() || state.unnamed_segments() > 0)
    }

    /// The log's work that is kept off the appenders' path (module docs, "Segment roll"):
    /// creates the spare the next roll switches to, and, if a rolled segment is still unnamed,
    /// syncs (which makes it durable and names it). The engine's checkpointer thread calls it.
    pub fn maintain(&self) -> Result<()> {
        let (spare_path, unnamed) = {
            let mut state = self.state.lock();
            state.check_not_failed()?;
            let spare_path = state
                .spare
                .is_none()
                .then(|| state.next_spare_path(&self.dir));
            (spare_path, state.unnamed_segments() > 0)
        };
        if let Some(path) = spare_path {
            // A failed create leaves the log as it was: the next roll creates the spare itself.
            let file = create_spare(self.vfs.as_ref(), &path)?;
            let mut state = self.state.lock();
            if state.spare.is_none() {
                state.spare = Some((path, file));
            } else {
                // Another maintainer was quicker; ours would only be deleted at the next open.
                drop(state);
                drop(file);
                self.vfs
                    .remove_file(&path)
                    .ctx("remove spare redo segment", &path)?;
            }
        }
        if unnamed {
            self.sync()?;
        }
        Ok(())
    }

    /// The LSN just past the last appended record.
    pub fn end_lsn(&self) -> Lsn {
        self.state.lock().end_lsn
    }

    /// Every record ending at or before this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.state.lock().durable_lsn
    }

    /// Makes every record appended before the call durable and returns the durable LSN.
    /// Concurrent callers share fsyncs (group commit, see the module docs).
    pub fn sync(&self) -> Result<Lsn> {
        metrics::counter!("deltasnap_wal_sync_calls_total").increment(1);
        let mut state = self.state.lock();
        state.check_not_failed()?;
        let target_lsn = state.end_lsn;
        loop {
            if state.durable_lsn >= target_lsn {
                return Ok(state.durable_lsn);
            }
            state.check_not_failed()?;
            if !state.sync_leader_active {
                break;
            }
            if crate::bugs::active(crate::bugs::Bug::SyncSkipsWaitForLeader) {
                return Ok(state.durable_lsn);
            }
            state = self.sync_done.wait(state);
        }

        // Leader. Write the buffer out (after any write in flight) before the fsyncs below, so
        // that every byte up to `covered_lsn` precedes them.
        state.sync_leader_active = true;
        if !crate::bugs::active(crate::bugs::Bug::SyncIgnoresWriteInFlight) {
            state = self.wait_for_write(state);
        }
        let (returned, result) = self.write_out(state);
        state = returned;
        if let Err(error) = result {
            state.sync_leader_active = false;
            drop(state);
            self.sync_done.notify_all();
            return Err(error);
        }
        // What this leader wrote reaches `written_lsn`; appends that came during its write are
        // left to the next sync.
        let covered_lsn = state.written_lsn;
        let mut segments = state.not_durable(covered_lsn);
        if crate::bugs::active(crate::bugs::Bug::SyncSkipsRolledSegments) {
            segments.drain(..segments.len().saturating_sub(1));
            if let Some(active) = segments.last_mut() {
                active.spare_path = None;
            }
        }
        drop(state);

        let result = self.make_durable(&segments);

        let mut state = self.state.lock();
        state.sync_leader_active = false;
        let outcome = match result {
            Err(error) => Err(state.fail(error)),
            // Another path may have failed the log meanwhile; its error may have concerned the
            // same pages, so our success proves nothing.
            Ok(()) => state.check_not_failed().map(|()| {
                state.durable_lsn = state.durable_lsn.max(covered_lsn);
                state.durable_lsn
            }),
        };
        drop(state);
        self.sync_done.notify_all();
        outcome
    }

    /// The sync leader's I/O (module docs): oldest first, fsync each segment, and name an unnamed
    /// one (rename, fsync the directory) once it and every segment before it are durable.
    fn make_durable(&self, segments: &[Segment]) -> Result<()> {
        for segment in segments {
            let file = segment
                .file
                .as_ref()
                .expect("a segment that is not durable was written by this process");
            fsync(file.as_ref(), segment.location())?;
            let Some(spare_path) = &segment.spare_path else {
                continue;
            };
            self.vfs
                .rename(spare_path, &segment.path)
                .ctx("name redo segment", &segment.path)?;
            self.vfs
                .sync_dir(&self.dir)
                .ctx("fsync redo log directory", &self.dir)?;
            let mut state = self.state.lock();
            if let Some(named) = state
                .segments
                .iter_mut()
                .find(|s| s.first_lsn == segment.first_lsn)
            {
                named.spare_path = None;
            }
            tracing::debug!(segment = %segment.path.display(), "named redo segment");
        }
        Ok(())
    }

    /// Deletes the segments that lie wholly before `lsn` (never the one holding `lsn`, never the
    /// active one), oldest first, fsyncing the directory after each. Returns how many it deleted.
    /// The caller guarantees C3: a durable control file already names a replay-start `>= lsn`.
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        let _purging = self.purge_lock.lock();
        let mut victims = {
            let mut state = self.state.lock();
            let mut victims = VecDeque::new();
            // Never the last named segment: recovery starts from it (module docs).
            while state.segments.len() > 1
                && state.segments[1].first_lsn <= lsn
                && state.segments[1].is_named()
            {
                victims.extend(state.segments.pop_front());
            }
            victims
        };
        let mut deleted = 0;
        // On an error, keep memory in step with the directory: the segments not removed yet are
        // still there, and still the oldest, so the next purge retries them (a gap in the log
        // would make the next open refuse the store).
        let restore = |victims: VecDeque<Segment>| {
            let mut state = self.state.lock();
            for later in victims.into_iter().rev() {
                state.segments.push_front(later);
            }
        };
        while let Some(segment) = victims.pop_front() {
            if let Err(source) = self.vfs.remove_file(&segment.path) {
                let error = Error::io("remove purged redo segment", &segment.path, source);
                victims.push_front(segment);
                restore(victims);
                return Err(error);
            }
            if let Err(source) = self.vfs.sync_dir(&self.dir) {
                restore(victims);
                return Err(Error::io("fsync redo log directory", &self.dir, source));
            }
            tracing::debug!(segment = %segment.path.display(), "purged redo segment");
            deleted += 1;
        }
        metrics::counter!("deltasnap_wal_segments_purged_total").increment(deleted as u64);
        Ok(deleted)
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

/// The segments in `dir`, by first LSN, and the spare files (module docs). Other files are
/// ignored; a `.log` file that is not named like a segment is an error (it would be a segment
/// this code cannot place).
fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<(Vec<Segment>, Vec<PathBuf>)> {
    let mut segments = Vec::new();
    let mut spares = Vec::new();
    for name in vfs.read_dir(dir).ctx("list redo log directory", dir)? {
        match parse_segment_file_name(&name) {
            SegmentName::Segment(first_lsn) => segments.push(Segment {
                first_lsn,
                path: dir.join(name),
                spare_path: None,
                file: None,
            }),
            SegmentName::Spare => spares.push(dir.join(name)),
            SegmentName::Malformed => {
                return Err(corrupted(
                    &dir.join(&name),
                    "a redo segment is named by 20 decimal digits (its first LSN) and `.log`"
                        .into(),
                ))
            }
            SegmentName::NotASegment => {
                tracing::debug!(dir = %dir.display(), name, "ignoring non-segment file in redo log directory");
            }
        }
    }
    // `read_dir` sorts names, and fixed-width names sort like their LSNs; sort anyway so that
    // correctness does not rest on a `Vfs` detail.
    segments.sort_by_key(|segment| segment.first_lsn);
    Ok((segments, spares))
}

/// Each spare with the first LSN its header names, if the header is whole and valid (the spare
/// was rolled to); `None` for an empty spare or any other content, which cannot be adopted.
fn read_spare_headers(
    vfs: &dyn Vfs,
    spares: Vec<PathBuf>,
    page_size: u32,
) -> Vec<(PathBuf, Option<Lsn>)> {
    spares
        .into_iter()
        .map(|path| {
            let first_lsn = (|| -> Result<Option<Lsn>> {
                let file = vfs
                    .open(&path, OpenMode::Read)
                    .ctx("open spare redo segment", &path)?;
                if file.len().ctx("stat spare redo segment", &path)? < HEADER_BYTES {
                    return Ok(None);
                }
                let mut header = [0u8; SEGMENT_HEADER_SIZE];
                file.read_exact_at(&mut header, 0)
                    .ctx("read spare redo segment header", &path)?;
                let first_lsn = header_first_lsn(&header);
                Ok(verify_header(&header, &path, first_lsn, page_size)
                    .is_ok()
                    .then_some(first_lsn))
            })();
            let first_lsn = first_lsn.unwrap_or_else(|error| {
                tracing::warn!(spare = %path.display(), %error, "unreadable spare redo segment");
                None
            });
            (path, first_lsn)
        })
        .collect()
}

/// Deletes spares that recovery did not adopt: they hold no record a `sync` reported durable.
fn remove_spares(vfs: &dyn Vfs, spares: &[PathBuf]) -> Result<()> {
    for path in spares {
        vfs.remove_file(path)
            .ctx("remove spare redo segment", path)?;
        tracing::debug!(spare = %path.display(), "removed spare redo segment");
    }
    Ok(())
}

/// Checks the header of every sealed segment and that each ends where the next begins. Their
/// records are checked when `replay` reads them.
fn check_sealed_segments(
    vfs: &dyn Vfs,
    sealed: &[Segment],
    last: &Segment,
    page_size: u32,
) -> Result<()> {
    for (index, segment) in sealed.iter().enumerate() {
        let file = vfs
            .open(&segment.path, OpenMode::Read)
            .ctx("open redo segment", &segment.path)?;
        let len = file.len().ctx("stat redo segment", &segment.path)?;
        if len < HEADER_BYTES {
            return Err(corrupted(
                &segment.path,
                format!(
                    "sealed segment is {len} bytes, shorter than its {HEADER_BYTES}-byte header"
                ),
            ));
        }
        let mut header = [0u8; SEGMENT_HEADER_SIZE];
        file.read_exact_at(&mut header, 0)
            .ctx("read redo segment header", &segment.path)?;
        verify_header(&header, &segment.path, segment.first_lsn, page_size)?;
        check_contiguous(segment, len, sealed.get(index + 1).unwrap_or(last))?;
    }
    Ok(())
}

/// Opens the last segment for appending, finds its valid end and truncates anything after it.
/// Returns the file, the log's end LSN and the cut, if one was made.
fn recover_last_segment(
    vfs: &dyn Vfs,
    last: &Segment,
    page_size: u32,
) -> Result<(Arc<dyn VfsFile>, Lsn, Option<TailCut>)> {
    let file = vfs
        .open(&last.path, OpenMode::ReadWrite)
        .ctx("open redo segment", &last.path)?;
    let len = file.len().ctx("stat redo segment", &last.path)?;
    let (valid_len, tail_cut) = match read_header_of_last(file.as_ref(), last, len)? {
        Some(header) => {
            verify_header(&header, &last.path, last.first_lsn, page_size)?;
            let mut reader =
                FrameReader::new(file.as_ref(), &last.path, last.first_lsn, page_size, len);
            // Each valid frame moves the reader forward by at least one frame header, so this
            // loop ends within `len / FRAME_HEADER_SIZE` rounds.
            let cut = loop {
                match reader.next_frame()? {
                    Frame::Record { .. } => {}
                    Frame::End => break None,
                    Frame::Invalid { lsn, reason } => {
                        break Some(TailCut {
                            segment: last.path.clone(),
                            lsn,
                            bytes_dropped: len - reader.offset(),
                            reason,
                        })
                    }
                }
            };
            (reader.offset(), cut)
        }
        None => {
            // A crash between creating the segment and its header's fsync (roll step 3): no
            // record can have been synced into it, so it restarts empty.
            file.write_all_at(&encode_header(page_size, last.first_lsn), 0)
                .ctx("rewrite redo segment header", &last.path)?;
            let cut = TailCut {
                segment: last.path.clone(),
                lsn: last.first_lsn,
                bytes_dropped: len,
                reason: format!(
                    "segment header never became durable ({len} bytes): a crash while the \
                     segment was being created"
                ),
            };
            (HEADER_BYTES, Some(cut))
        }
    };
    if valid_len != len {
        file.set_len(valid_len)
            .ctx("truncate torn redo tail", &last.path)?;
    }
    debug_assert!(valid_len >= HEADER_BYTES);
    Ok((file, last.first_lsn + (valid_len - HEADER_BYTES), tail_cut))
}

/// A sealed segment must end exactly where the next one begins (format.md §3).
fn check_contiguous(segment: &Segment, len: u64, next: &Segment) -> Result<()> {
    let end_lsn = segment.first_lsn + (len - HEADER_BYTES);
    if end_lsn != next.first_lsn {
        return Err(corrupted(
            &next.path,
            format!(
                "redo segments are not contiguous: the previous segment {} ends at LSN {end_lsn}, \
                 this one starts at LSN {}",
                segment.path.display(),
                next.first_lsn
            ),
        ));
    }
    Ok(())
}

/// Reads the last segment's header; `None` if it never became durable, which a crash before the
/// header's fsync (roll step 3) leaves as a file shorter than a header, or as exactly a header of
/// zeros. No record is appended before that fsync, so a longer file's header was durable, and any
/// damage to it is corruption that [`verify_header`] reports: resetting the segment would drop
/// records that may have been synced.
fn read_header_of_last(
    file: &dyn VfsFile,
    segment: &Segment,
    len: u64,
) -> Result<Option<[u8; SEGMENT_HEADER_SIZE]>> {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    let readable = len.min(HEADER_BYTES) as usize;
    file.read_exact_at(&mut header[..readable], 0)
        .ctx("read redo segment header", &segment.path)?;
    if len < HEADER_BYTES || (len == HEADER_BYTES && header.iter().all(|&b| b == 0)) {
        return Ok(None);
    }
    Ok(Some(header))
}
