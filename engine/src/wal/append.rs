//! Appending (module doc, "Appending and group commit" and "Segment roll"): the buffer, the write
//! in flight, the write-behind thread, the roll to the spare, and the maintenance that keeps the
//! next spare ready and the unnamed tail short.

use crate::error::{IoContext, Result};
use crate::sync::{Arc, MutexGuard};
use crate::types::Lsn;

use super::segment::{encode_header, segment_file_name};
use super::{
    create_spare, InFlight, Record, Segment, State, Wal, HEADER_BYTES, UNNAMED_SEGMENTS_MAX,
    WRITE_BEHIND_SLACK,
};

impl Wal {
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
    pub(super) fn wait_for_write<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        while state.writing {
            state = self.write_done.wait(state);
        }
        state
    }

    /// Writes the buffer at its place in the active segment *outside* the lock (module docs,
    /// "Appending") and returns the lock retaken. The caller holds the lock with no write in
    /// flight. An I/O error fails the log. Never fsyncs.
    pub(super) fn write_out<'a>(
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
}
