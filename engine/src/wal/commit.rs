//! Group commit and purging (module doc, "Appending and group commit", "Segment roll" and
//! "Purging"): the sync leader makes the written bytes durable in log order, naming rolled
//! segments; `purge_before` deletes whole segments before an LSN.

use std::collections::VecDeque;

use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;

use super::{fsync, Segment, Wal};

impl Wal {
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
}
