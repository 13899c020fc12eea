//! The raft log: openraft's [`RaftLogStorage`] on segment files of crc'd records.
//!
//! # Why a log of our own, and not deltasnap's redo log
//!
//! The engine's redo log is the engine's: it carries page images and metadata changes with the
//! engine's LSNs, it is purged by the engine's checkpoints, and its records cannot be truncated
//! from the tail (raft must drop a follower's conflicting suffix) nor read by entry index. Raft
//! needs an ordered, index-addressed, tail-truncatable, prefix-purgeable list of entries and a
//! durable vote; a few hundred lines of segment files do exactly that, and keep the engine's
//! public API untouched. The cost is that an entry is written twice (once here, once as the page
//! write it carries in the engine's redo log); an engine "external log" mode (reference §2(b)
//! condition 3) would remove it and is left for later.
//!
//! # Files (all under the log directory)
//!
//! ```text
//! <first-index, 20 digits>.seg   entries back to back, each record:
//!                                  len: u32 LE | crc32c(body): u32 LE | body: JSON of the Entry
//! STATE                          the vote and the last purged log id:
//!                                  crc32c(json): u32 LE | json
//! STATE.tmp                      STATE being replaced
//! ```
//!
//! # Durability, numbered as in the code
//!
//! - **append**: 1. write the records at the end of the last segment (a new segment, named by
//!   its first index, once the last one holds `SEGMENT_BYTES_ROLL`); 2. fsync every segment
//!   written; 3. fsync the directory if a segment was created; 4. only then report the entries
//!   flushed (openraft's `LogFlushed` callback).
//! - **vote, purge**: 1. write `STATE.tmp`; 2. fsync it; 3. rename it over `STATE`; 4. fsync the
//!   directory. A purge persists the new purge point before it deletes a segment, so a crash
//!   between leaves whole segments that open skips, never a hole.
//! - **truncate** (drop a conflicting suffix): cut the segment holding the first dropped entry,
//!   fsync it, delete later segments, fsync the directory.
//! - **open**: a record that fails its length or crc check in the *last* segment is the torn
//!   tail of an append that never reported flushed: the segment is cut there. The same in any
//!   earlier segment is `Error::Corrupted` (a flushed entry is gone).
//!
//! **RA3** (the log is purged up to a snapshot only once that snapshot is durable): `purge`
//! waits on the [`PurgeGuard`], which the state machine moves forward once a snapshot is
//! published (fsynced and renamed by the engine) or installed (after its commit), and refuses
//! with `Error::PurgePastDurableSnapshot` after `PURGE_WAIT_MAX`.
//!
//! # Memory
//!
//! The index keeps 40 bytes per entry between the purge point and the tail (openraft's
//! `snapshot_policy` and `max_in_snapshot_log_to_keep` bound how many); entries are read from
//! the segment files on demand. Opening reads one segment at a time (`SEGMENT_BYTES_ROLL` plus
//! at most one record, each at most `RECORD_BYTES_MAX`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use deltasnap::vfs::{OpenMode, Vfs, VfsFile};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::error::{blocking, create_dir_all_durable, Error, IoContext, Result};
use crate::{NodeId, TypeConfig};

/// A new segment is started once the last one holds this many bytes.
pub const SEGMENT_BYTES_ROLL: u64 = 8 << 20;
/// The largest record body accepted (an entry's JSON); a longer length on disk is corruption.
pub const RECORD_BYTES_MAX: u32 = 64 << 20;
const RECORD_HEADER_BYTES: u64 = 8;
/// How long a purge waits for the snapshot that covers it to become durable (RA3).
pub const PURGE_WAIT_MAX: Duration = Duration::from_secs(60);
const STATE_FILE: &str = "STATE";
const STATE_TMP_FILE: &str = "STATE.tmp";

/// What the log store may purge: nothing past the last durable snapshot (RA3). The state
/// machine moves it forward when a snapshot is published or installed; the log store checks it.
#[derive(Debug, Clone)]
pub struct PurgeGuard(Arc<(Mutex<GuardState>, Condvar)>);

#[derive(Debug, Clone, Copy, Default)]
struct GuardState {
    /// For openraft's storage suite, which purges with no snapshot at all.
    unguarded: bool,
    /// The last log index that a durable snapshot covers.
    durable: Option<u64>,
    /// Installs that failed: a purge waiting for one gives up.
    installs_failed: u64,
}

impl PurgeGuard {
    /// A guard with no durable snapshot yet: a purge waits until one covers it.
    pub fn new() -> Self {
        PurgeGuard(Arc::new((
            Mutex::new(GuardState::default()),
            Condvar::new(),
        )))
    }

    /// A guard that allows every purge. Only for running openraft's storage test suite, whose
    /// purge tests have no snapshot; a node never uses it.
    pub fn unguarded() -> Self {
        let state = GuardState {
            unguarded: true,
            ..GuardState::default()
        };
        PurgeGuard(Arc::new((Mutex::new(state), Condvar::new())))
    }

    /// Records that a snapshot covering entries `..= index` is durable.
    pub fn snapshot_durable(&self, index: u64) {
        let mut state = lock(&self.0 .0);
        state.durable = Some(state.durable.map_or(index, |d| d.max(index)));
        self.0 .1.notify_all();
    }

    /// Records that an install failed: a purge waiting for its snapshot gives up at once
    /// (the node is going down; it must not wait `PURGE_WAIT_MAX` to stop).
    pub fn install_failed(&self) {
        lock(&self.0 .0).installs_failed += 1;
        self.0 .1.notify_all();
    }

    /// The last index a durable snapshot covers (`None` if unguarded or none yet).
    pub fn durable_index(&self) -> Option<u64> {
        let state = lock(&self.0 .0);
        (!state.unguarded).then_some(state.durable).flatten()
    }

    /// Waits until a durable snapshot covers `upto`, for at most `wait`; refuses after.
    ///
    /// Why wait: on a follower, openraft 0.9 issues the purge of the log a snapshot covers
    /// right after it hands the install to the state machine, without waiting for the install
    /// to end (`following_handler::install_full_snapshot`). Purging then would leave a node
    /// that crashes mid-install with neither the entries nor the snapshot. The purge waits for
    /// the install's commit instead (RA3).
    fn wait_durable(&self, upto: u64, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut state = lock(&self.0 .0);
        let installs_failed = state.installs_failed;
        loop {
            if state.unguarded || state.durable.is_some_and(|d| upto <= d) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || state.installs_failed != installs_failed {
                return Err(Error::PurgePastDurableSnapshot {
                    requested: upto,
                    durable: state.durable,
                });
            }
            state = self
                .0
                 .1
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

impl Default for PurgeGuard {
    fn default() -> Self {
        PurgeGuard::new()
    }
}

/// Locks a std mutex; a poisoned one means a thread panicked while holding it, which is a bug
/// already reported by that panic, so its data is used as is.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct PersistedState {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<dyn VfsFile>,
    len: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    segment: u64,
    offset: u64,
    body_len: u32,
    log_id: LogId<NodeId>,
}

#[derive(Debug)]
struct LogInner {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    state: PersistedState,
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    /// By entry index, from the purge point (exclusive) to the tail.
    index: BTreeMap<u64, Slot>,
    guard: PurgeGuard,
}

/// The raft log and vote of one node. Cheap to clone: clones share one log (openraft's log
/// reader is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (creating it if missing) the log in `dir`, cutting a torn tail (module doc).
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path, guard: PurgeGuard) -> Result<LogStore> {
        create_dir_all_durable(&vfs, dir)?;
        let state = read_state(&vfs, dir)?;
        let mut inner = LogInner {
            vfs,
            dir: dir.to_path_buf(),
            state,
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            guard,
        };
        inner.load_segments()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogInner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&mut lock(&inner))).await
    }
}

fn read_state(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<PersistedState> {
    let path = dir.join(STATE_FILE);
    if !vfs.exists(&path).ctx("stat log state", &path)? {
        return Ok(PersistedState::default());
    }
    let file = vfs
        .open(&path, OpenMode::Read)
        .ctx("open log state", &path)?;
    let len = file.len().ctx("stat log state", &path)?;
    if !(4..=1 << 20).contains(&len) {
        return Err(Error::Corrupted {
            path,
            reason: format!("{len} bytes, expected 4 ..= 1 MiB"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read log state", &path)?;
    let crc = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let json = &bytes[4..];
    if crc32c::crc32c(json) != crc {
        return Err(Error::Corrupted {
            path,
            reason: "crc mismatch".into(),
        });
    }
    serde_json::from_slice(json).map_err(|e| Error::Corrupted {
        path,
        reason: e.to_string(),
    })
}

/// Replaces `<dir>/<name>` durably: tmp file, fsync, rename, fsync directory.
pub(crate) fn write_file_atomic(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    name: &str,
    tmp_name: &str,
    bytes: &[u8],
) -> Result<()> {
    let tmp = dir.join(tmp_name);
    let path = dir.join(name);
    // 1. write
    let file = vfs.open(&tmp, OpenMode::Create).ctx("create", &tmp)?;
    file.set_len(0).ctx("truncate", &tmp)?;
    file.write_all_at(bytes, 0).ctx("write", &tmp)?;
    // 2. fsync
    file.sync_all().ctx("fsync", &tmp)?;
    drop(file);
    // 3. rename
    vfs.rename(&tmp, &path).ctx("rename into place", &path)?;
    // 4. fsync the directory
    vfs.sync_dir(dir).ctx("fsync directory", dir)
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

impl LogInner {
    fn persist_state(&self) -> Result<()> {
        let json = serde_json::to_vec(&self.state).expect("the log state serializes");
        let mut bytes = crc32c::crc32c(&json).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        write_file_atomic(&self.vfs, &self.dir, STATE_FILE, STATE_TMP_FILE, &bytes)
    }

    fn load_segments(&mut self) -> Result<()> {
        let mut firsts: Vec<u64> = Vec::new();
        for name in self.vfs.read_dir(&self.dir).ctx("list log", &self.dir)? {
            if let Some(first) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = self.state.last_purged.map(|id| id.index);
        for (position, &first) in firsts.iter().enumerate() {
            let is_last = position + 1 == firsts.len();
            self.load_segment(first, is_last, purged)?;
        }
        Ok(())
    }

    fn load_segment(&mut self, first: u64, is_last: bool, purged: Option<u64>) -> Result<()> {
        let path = self.dir.join(segment_name(first));
        let file = self
            .vfs
            .open(&path, OpenMode::ReadWrite)
            .ctx("open log segment", &path)?;
        let len = file.len().ctx("stat log segment", &path)?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)
            .ctx("read log segment", &path)?;
        let mut offset = 0u64;
        let mut expected_index = first;
        while offset < len {
            match decode_record(&bytes[offset as usize..]) {
                Some((entry, body_len)) if entry.log_id.index == expected_index => {
                    if purged.is_none_or(|p| entry.log_id.index > p) {
                        self.index.insert(
                            entry.log_id.index,
                            Slot {
                                segment: first,
                                offset,
                                body_len,
                                log_id: entry.log_id,
                            },
                        );
                    }
                    expected_index += 1;
                    offset += RECORD_HEADER_BYTES + u64::from(body_len);
                }
                bad if is_last => {
                    // The torn tail of an append that never reported flushed.
                    tracing::warn!(path = %path.display(), offset, entry_index = ?bad.map(|(e, _)| e.log_id.index), "cutting the log's torn tail");
                    file.set_len(offset).ctx("cut torn log tail", &path)?;
                    file.sync_all().ctx("fsync log segment", &path)?;
                    break;
                }
                bad => {
                    return Err(Error::Corrupted {
                        path,
                        reason: format!(
                            "record at byte {offset} does not verify (entry index {:?}, expected {expected_index})",
                            bad.map(|(e, _)| e.log_id.index)
                        ),
                    })
                }
            }
        }
        let len = file.len().ctx("stat log segment", &path)?;
        self.segments.insert(first, Segment { path, file, len });
        Ok(())
    }

    fn read_entry(&self, slot: &Slot) -> Result<Entry<TypeConfig>> {
        let segment = &self.segments[&slot.segment];
        let mut bytes = vec![0u8; RECORD_HEADER_BYTES as usize + slot.body_len as usize];
        segment
            .file
            .read_exact_at(&mut bytes, slot.offset)
            .ctx("read log entry", &segment.path)?;
        match decode_record(&bytes) {
            Some((entry, _)) if entry.log_id == slot.log_id => Ok(entry),
            _ => Err(Error::Corrupted {
                path: segment.path.clone(),
                reason: format!(
                    "entry {} at byte {} does not verify",
                    slot.log_id, slot.offset
                ),
            }),
        }
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> Result<()> {
        let mut written: BTreeSet<u64> = BTreeSet::new();
        let mut created = false;
        for entry in entries {
            let body = serde_json::to_vec(&entry).expect("an entry serializes");
            let body_len = u32::try_from(body.len())
                .ok()
                .filter(|&l| l <= RECORD_BYTES_MAX)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "entry {} is {} bytes, over RECORD_BYTES_MAX = {RECORD_BYTES_MAX}",
                        entry.log_id,
                        body.len()
                    ))
                })?;
            let roll = self
                .segments
                .values()
                .next_back()
                .is_none_or(|s| s.len >= SEGMENT_BYTES_ROLL);
            if roll {
                let path = self.dir.join(segment_name(entry.log_id.index));
                let file = self
                    .vfs
                    .open(&path, OpenMode::Create)
                    .ctx("create log segment", &path)?;
                file.set_len(0).ctx("create log segment", &path)?;
                self.segments
                    .insert(entry.log_id.index, Segment { path, file, len: 0 });
                created = true;
            }
            let (&first, segment) = self.segments.iter_mut().next_back().expect("a segment");
            let mut record = Vec::with_capacity(RECORD_HEADER_BYTES as usize + body.len());
            record.extend_from_slice(&body_len.to_le_bytes());
            record.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            record.extend_from_slice(&body);
            // 1. write
            segment
                .file
                .write_all_at(&record, segment.len)
                .ctx("append to log segment", &segment.path)?;
            self.index.insert(
                entry.log_id.index,
                Slot {
                    segment: first,
                    offset: segment.len,
                    body_len,
                    log_id: entry.log_id,
                },
            );
            segment.len += record.len() as u64;
            written.insert(first);
        }
        // 2. fsync every segment written
        for first in written {
            let segment = &self.segments[&first];
            segment
                .file
                .sync_all()
                .ctx("fsync log segment", &segment.path)?;
        }
        // 3. fsync the directory for a new segment's entry
        if created {
            self.vfs
                .sync_dir(&self.dir)
                .ctx("fsync log directory", &self.dir)?;
        }
        Ok(())
    }

    fn truncate(&mut self, since: u64) -> Result<()> {
        let Some(slot) = self.index.get(&since).copied() else {
            return Ok(());
        };
        let later: Vec<u64> = self
            .segments
            .range(slot.segment + 1..)
            .map(|(f, _)| *f)
            .collect();
        let segment = self
            .segments
            .get_mut(&slot.segment)
            .expect("the slot's segment");
        segment
            .file
            .set_len(slot.offset)
            .ctx("truncate log segment", &segment.path)?;
        segment
            .file
            .sync_all()
            .ctx("fsync log segment", &segment.path)?;
        segment.len = slot.offset;
        for first in later {
            let segment = self.segments.remove(&first).expect("listed");
            self.vfs
                .remove_file(&segment.path)
                .ctx("remove log segment", &segment.path)?;
        }
        self.vfs
            .sync_dir(&self.dir)
            .ctx("fsync log directory", &self.dir)?;
        self.index.split_off(&since);
        Ok(())
    }

    fn purge(&mut self, upto: LogId<NodeId>) -> Result<()> {
        if self
            .state
            .last_purged
            .is_some_and(|p| p.index >= upto.index)
        {
            return Ok(());
        }
        // The purge point first (durably), then the segments: a crash between leaves segments
        // that open skips.
        self.state.last_purged = Some(upto);
        self.persist_state()?;
        self.index = self.index.split_off(&(upto.index + 1));
        // A segment goes when the next one starts at or before the first entry kept; the last
        // segment stays (appends go there).
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in firsts.windows(2) {
            if pair[1] <= upto.index + 1 {
                let segment = self.segments.remove(&pair[0]).expect("listed");
                self.vfs
                    .remove_file(&segment.path)
                    .ctx("remove log segment", &segment.path)?;
                removed = true;
            }
        }
        if removed {
            self.vfs
                .sync_dir(&self.dir)
                .ctx("fsync log directory", &self.dir)?;
        }
        Ok(())
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let last = self.index.values().next_back().map(|s| s.log_id);
        LogState {
            last_purged_log_id: self.state.last_purged,
            last_log_id: last.or(self.state.last_purged),
        }
    }
}

/// One record from the front of `bytes`: the entry and its body length, or `None` if the bytes
/// are short or do not verify.
fn decode_record(bytes: &[u8]) -> Option<(Entry<TypeConfig>, u32)> {
    let header = bytes.get(..RECORD_HEADER_BYTES as usize)?;
    let body_len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if body_len > RECORD_BYTES_MAX {
        return None;
    }
    let body = bytes
        .get(RECORD_HEADER_BYTES as usize..RECORD_HEADER_BYTES as usize + body_len as usize)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let entry: Entry<TypeConfig> = serde_json::from_slice(body).ok()?;
    Some((entry, body_len))
}

fn to_storage(error: Error, write: bool) -> StorageError<NodeId> {
    let io = if write {
        StorageIOError::write_logs(openraft::AnyError::new(&error))
    } else {
        StorageIOError::read_logs(openraft::AnyError::new(&error))
    };
    StorageError::from(io)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.with(move |inner| {
            let slots: Vec<Slot> = inner.index.range((start, end)).map(|(_, s)| *s).collect();
            slots.iter().map(|slot| inner.read_entry(slot)).collect()
        })
        .await
        .map_err(|e| to_storage(e, false))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, StorageError<NodeId>> {
        Ok(lock(&self.inner).log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(
        &mut self,
        vote: &Vote<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.with(move |inner| {
            let before = inner.state.vote;
            inner.state.vote = Some(vote);
            inner
                .persist_state()
                .inspect_err(|_| inner.state.vote = before)
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_vote(openraft::AnyError::new(&e))))
    }

    async fn read_vote(
        &mut self,
    ) -> std::result::Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.inner).state.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let result = self.with(move |inner| inner.append(entries)).await;
        match result {
            Ok(()) => {
                // 4. flushed
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(to_storage(error, true))
            }
        }
    }

    async fn truncate(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        self.with(move |inner| inner.truncate(log_id.index))
            .await
            .map_err(|e| to_storage(e, true))
    }

    async fn purge(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        // Wait for the snapshot outside the log's lock: replication keeps reading meanwhile.
        let guard = lock(&self.inner).guard.clone();
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            guard.wait_durable(log_id.index, PURGE_WAIT_MAX)?;
            lock(&inner).purge(log_id)
        })
        .await
        .map_err(|e| to_storage(e, true))
    }
}

impl LogStore {
    /// The entry ids in the log now (purge point exclusive to the tail), for tests and tools.
    pub fn log_ids(&self) -> Vec<LogId<NodeId>> {
        lock(&self.inner).index.values().map(|s| s.log_id).collect()
    }
}
