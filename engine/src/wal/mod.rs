//! The redo log: a directory of segment files (`engine/docs/format.md` §3) holding length- and
//! crc-framed [`Record`]s, addressed by LSN (the byte position in the log stream).
//!
//! # Appending and group commit
//!
//! One mutex guards the log's state. [`Wal::append`] encodes and checksums the record *outside*
//! the lock, then, under it, assigns the LSN (the current end) and copies the frame into an
//! in-memory buffer. When the buffer reaches `buffer_bytes_max` it is written to the active
//! segment (still under the lock, so file order = LSN order). Appending never fsyncs.
//!
//! [`Wal::sync`] is group commit. A caller notes the end LSN it must cover, then:
//! 1. if `durable_lsn` already covers it, returns;
//! 2. if another caller is the *leader* (an fsync is in flight), waits on the condvar and goes to 1;
//! 3. otherwise becomes the leader: writes the buffer out under the lock, notes the end it wrote
//!    (`covered`), releases the lock, fsyncs the active segment, retakes the lock, raises
//!    `durable_lsn` to `covered`, and wakes every waiter.
//!
//! While the leader fsyncs, appends go on filling the buffer; callers that arrive meanwhile wait,
//! and the first to wake after the leader leads the next fsync for all of them. So `n` concurrent
//! `sync`s cost about two fsyncs, not `n`. This upholds R1's "every write whose `sync` returned is
//! durable": `durable_lsn` only moves past bytes that were written before an fsync that returned
//! `Ok`.
//!
//! # Segment roll
//!
//! When a record would take the active segment past `segment_bytes_max` (and the segment holds
//! at least one record), [`Wal::append`] rolls:
//! 1. under the lock, write the buffer to the old segment and mark the log *rolling*; the record
//!    that triggered the roll, and every record appended until the roll ends, waits in the buffer
//!    (it belongs to the new segment), and `sync` waits for the roll;
//! 2. outside the lock, fsync the old segment (so only the last segment can ever have a torn
//!    tail, §3);
//! 3. outside the lock, create the new segment `<end-lsn>.log` (create-new), write its header,
//!    fsync it, and fsync the directory, so the new name is durable before any record in it can be;
//! 4. under the lock, make the new segment active.
//!
//! Only the appender that triggered the roll waits for its fsyncs; other appenders keep appending
//! to the buffer (before this, a roll held the lock through a fsync of up to a whole segment,
//! stalling every writer for hundreds of milliseconds under a random-write load).
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
//! A last segment whose header never became durable (a crash during step 3 of a roll) is reset to
//! an empty segment. Open then fsyncs the last segment and the directory, because a previous
//! process may have died with written-but-unsynced bytes that are only in the page cache: after
//! open, everything the log reports is durable.
//!
//! # Purging (C3)
//!
//! [`Wal::purge_before`] deletes whole segments, oldest first, fsyncing the directory after each
//! removal: the surviving segments are then always a contiguous suffix of the log, whatever a crash
//! keeps of the removals. The caller upholds C3 (the control file naming a replay-start at or past
//! the purge point is already durable).

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
    encode_header, parse_segment_file_name, segment_file_name, verify_header, Frame, FrameReader,
    SegmentName, SEGMENT_HEADER_SIZE,
};

const HEADER_BYTES: u64 = SEGMENT_HEADER_SIZE as u64;

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
    /// Signalled when a sync leader finishes or a roll raised `durable_lsn`.
    sync_done: Condvar,
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
    path: PathBuf,
}

struct State {
    /// Retained segments, oldest first; the last is the active one. Never empty.
    segments: VecDeque<Segment>,
    active: Arc<dyn VfsFile>,
    /// Appended bytes not yet written; `buffer[0]` has LSN `written_lsn`.
    buffer: Vec<u8>,
    /// Every byte below this LSN has been written to a segment file.
    written_lsn: Lsn,
    /// The LSN the next append gets.
    end_lsn: Lsn,
    /// Every byte below this LSN was written before an fsync that returned `Ok`.
    durable_lsn: Lsn,
    /// A `sync` leader is fsyncing outside the lock.
    sync_leader_active: bool,
    /// An appender is sealing the active segment and creating the next one outside the lock.
    /// Meanwhile appends only buffer (their bytes belong to the next segment) and `sync` waits.
    rolling: bool,
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

    /// Writes the buffer at its place in the active segment. Never fsyncs.
    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let segment = self.active_segment();
        debug_assert!(self.written_lsn >= segment.first_lsn);
        let offset = HEADER_BYTES + (self.written_lsn - segment.first_lsn);
        self.active
            .write_all_at(&self.buffer, offset)
            .ctx("write redo segment", &segment.path)?;
        metrics::counter!("deltasnap_wal_bytes_written_total").increment(self.buffer.len() as u64);
        self.written_lsn += self.buffer.len() as u64;
        debug_assert_eq!(self.written_lsn, self.end_lsn);
        self.buffer.clear();
        Ok(())
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

/// Creates segment `first_lsn` in `dir`: create-new, header, fsync file, fsync directory.
fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    page_size: u32,
    first_lsn: Lsn,
) -> Result<(Segment, Arc<dyn VfsFile>)> {
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
    Ok((Segment { first_lsn, path }, file))
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
        let mut sealed = list_segments(vfs.as_ref(), dir)?;
        let Some(last) = sealed.pop() else {
            let (segment, file) =
                create_segment(vfs.as_ref(), dir, config.page_size, first_lsn_if_empty)?;
            tracing::info!(dir = %dir.display(), first_lsn = first_lsn_if_empty, "created redo log");
            let wal = Wal::from_parts(
                vfs,
                dir,
                config,
                VecDeque::from([segment]),
                file,
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
        let (file, end_lsn, tail_cut) =
            recover_last_segment(vfs.as_ref(), &last, config.page_size)?;
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
        let mut segments: VecDeque<Segment> = sealed.into();
        segments.push_back(last);
        let report = WalOpenReport {
            end_lsn,
            tail_cut,
            segments: segments.len(),
        };
        tracing::info!(dir = %dir.display(), end_lsn, segments = segments.len(), "opened redo log");
        Ok((
            Wal::from_parts(vfs, dir, config, segments, file, end_lsn),
            report,
        ))
    }

    fn from_parts(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: WalConfig,
        segments: VecDeque<Segment>,
        active: Arc<dyn VfsFile>,
        end_lsn: Lsn,
    ) -> Wal {
        Wal {
            vfs,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                active,
                buffer: Vec::with_capacity(config.buffer_bytes_max),
                written_lsn: end_lsn,
                end_lsn,
                durable_lsn: end_lsn,
                sync_leader_active: false,
                rolling: false,
                failed: None,
            }),
            config,
            sync_done: Condvar::new(),
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
            let mut state = self.state.lock();
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
            let file = self
                .vfs
                .open(&segment.path, OpenMode::Read)
                .ctx("open redo segment for replay", &segment.path)?;
            let len = file.len().ctx("stat redo segment", &segment.path)?;
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
                &segment.path,
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

    /// Appends `record` and returns its LSN. Never fsyncs, except the old segment when the log
    /// rolls to a new one. An I/O error fails the log (see the module docs).
    pub fn append(&self, record: &Record) -> Result<Lsn> {
        record.validate(self.config.page_size)?;
        // Encode and checksum outside the lock.
        let mut frame = Vec::with_capacity(record.encoded_len());
        record.encode_into(&mut frame);
        let frame_bytes = frame.len() as u64;

        let mut state = self.state.lock();
        state.check_not_failed()?;
        let active_first_lsn = state.active_segment().first_lsn;
        let active_bytes = HEADER_BYTES + (state.end_lsn - active_first_lsn);
        let lsn = state.end_lsn;
        if !state.rolling
            && state.end_lsn > active_first_lsn
            && active_bytes + frame_bytes > self.config.segment_bytes_max
        {
            // This record opens the next segment: seal the active one first (module docs,
            // "Segment roll").
            if let Err(error) = state.write_buffer() {
                return Err(state.fail(error));
            }
            state.buffer.extend_from_slice(&frame);
            state.end_lsn += frame_bytes;
            self.roll(state)?;
        } else {
            state.buffer.extend_from_slice(&frame);
            state.end_lsn += frame_bytes;
            // While a roll is under way the bytes wait in the buffer for the next segment.
            if !state.rolling && state.buffer.len() >= self.config.buffer_bytes_max {
                if let Err(error) = state.write_buffer() {
                    return Err(state.fail(error));
                }
                // One oversized record must not pin a huge buffer for the life of the log.
                if state.buffer.capacity() > 2 * self.config.buffer_bytes_max {
                    state.buffer.shrink_to(self.config.buffer_bytes_max);
                }
            }
            drop(state);
        }
        metrics::counter!("deltasnap_wal_records_appended_total").increment(1);
        metrics::counter!("deltasnap_wal_bytes_appended_total").increment(frame_bytes);
        Ok(lsn)
    }

    /// Seals the active segment (already fully written) and starts a new one at `written_lsn`
    /// (module docs, "Segment roll"). The fsync of the sealed segment and the creation of the
    /// next one run outside the lock, so other appenders only buffer meanwhile instead of waiting
    /// for up to a whole segment's fsync; the on-disk order is unchanged (the sealed segment is
    /// durable before the next one exists).
    fn roll(&self, mut state: MutexGuard<'_, State>) -> Result<()> {
        let old = state.active_segment().clone();
        let old_file = Arc::clone(&state.active);
        let next_first_lsn = state.written_lsn;
        state.rolling = true;
        drop(state);

        let result = fsync(old_file.as_ref(), &old.path).and_then(|()| {
            create_segment(
                self.vfs.as_ref(),
                &self.dir,
                self.config.page_size,
                next_first_lsn,
            )
        });

        let mut state = self.state.lock();
        state.rolling = false;
        let outcome = match result {
            Ok((segment, file)) => {
                state.durable_lsn = state.durable_lsn.max(next_first_lsn);
                tracing::debug!(sealed = %old.path.display(), next = %segment.path.display(), "rolled redo segment");
                state.segments.push_back(segment);
                state.active = file;
                Ok(())
            }
            Err(error) => Err(state.fail(error)),
        };
        drop(state);
        // Waiting `sync` callers may now lead, or be covered by the sealing fsync.
        self.sync_done.notify_all();
        outcome
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
            if !state.sync_leader_active && !state.rolling {
                break;
            }
            if crate::bugs::active(crate::bugs::Bug::SyncSkipsWaitForLeader) {
                return Ok(state.durable_lsn);
            }
            state = self.sync_done.wait(state);
        }

        // Leader. Write under the lock so that the bytes precede the fsync below.
        state.sync_leader_active = true;
        if let Err(error) = state.write_buffer() {
            state.sync_leader_active = false;
            let error = state.fail(error);
            drop(state);
            self.sync_done.notify_all();
            return Err(error);
        }
        let covered_lsn = state.end_lsn;
        let file = Arc::clone(&state.active);
        let path = state.active_segment().path.clone();
        drop(state);

        let result = fsync(file.as_ref(), &path);

        let mut state = self.state.lock();
        state.sync_leader_active = false;
        let outcome = match result {
            Err(error) => Err(state.fail(error)),
            // Another path (a roll's fsync) may have failed the log meanwhile; its error may have
            // concerned the same pages, so our success proves nothing.
            Ok(()) => state.check_not_failed().map(|()| {
                state.durable_lsn = state.durable_lsn.max(covered_lsn);
                state.durable_lsn
            }),
        };
        drop(state);
        self.sync_done.notify_all();
        outcome
    }

    /// Deletes the segments that lie wholly before `lsn` (never the one holding `lsn`, never the
    /// active one), oldest first, fsyncing the directory after each. Returns how many it deleted.
    /// The caller guarantees C3: a durable control file already names a replay-start `>= lsn`.
    pub fn purge_before(&self, lsn: Lsn) -> Result<usize> {
        let _purging = self.purge_lock.lock();
        let mut victims = {
            let mut state = self.state.lock();
            let mut victims = VecDeque::new();
            while state.segments.len() > 1 && state.segments[1].first_lsn <= lsn {
                victims.extend(state.segments.pop_front());
            }
            victims
        };
        let mut deleted = 0;
        while let Some(segment) = victims.pop_front() {
            if let Err(source) = self.vfs.remove_file(&segment.path) {
                // Keep memory in step with the directory: this segment and the ones after it are
                // still there, and still the oldest.
                let error = Error::io("remove purged redo segment", &segment.path, source);
                let mut state = self.state.lock();
                for later in victims.into_iter().rev() {
                    state.segments.push_front(later);
                }
                state.segments.push_front(segment);
                return Err(error);
            }
            self.vfs
                .sync_dir(&self.dir)
                .ctx("fsync redo log directory", &self.dir)?;
            tracing::debug!(segment = %segment.path.display(), "purged redo segment");
            deleted += 1;
        }
        metrics::counter!("deltasnap_wal_segments_purged_total").increment(deleted as u64);
        Ok(deleted)
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

/// The segments in `dir`, by first LSN. Other files are ignored; a `.log` file that is not named
/// like a segment is an error (it would be a segment this code cannot place).
fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for name in vfs.read_dir(dir).ctx("list redo log directory", dir)? {
        match parse_segment_file_name(&name) {
            SegmentName::Segment(first_lsn) => segments.push(Segment {
                first_lsn,
                path: dir.join(name),
            }),
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
    Ok(segments)
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
