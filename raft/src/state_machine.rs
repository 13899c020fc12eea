//! The state machine: openraft's [`RaftStateMachine`] on a deltasnap [`Engine`].
//!
//! # Files (under the state machine's directory)
//!
//! ```text
//! CURRENT               which store is live: crc32c(json) u32 LE | {"generation": g}
//! CURRENT.tmp           CURRENT being replaced
//! store-<g>/            the live deltasnap store (partition 0 holds the replicated pages)
//! store-<other>/        a store being restored by an install, or an old one (removed at open)
//! snapshots/<id>/       published deltasnap snapshots (the latest two are kept)
//! incoming/<id>/        snapshots received by a transfer, waiting for their install
//! ```
//!
//! # RA1: an entry and its log id are in a snapshot together or not at all
//!
//! `apply` writes every entry's page writes, then the batch's last log id (metadata key
//! [`KEY_LAST_APPLIED`]) and, for a membership entry, the membership ([`KEY_MEMBERSHIP`]), all
//! while holding the *apply lock*. `build_snapshot` starts the engine's online snapshot under
//! the same lock and holds it until the snapshot's cut is taken (`SnapshotProgress::cut_epoch`):
//! the cut therefore falls between two batches, never inside one, and the snapshot holds
//! exactly the writes of the entries up to the `last_applied` it holds. The snapshot's meta
//! (last log id, membership) is then read **from the snapshot's manifest** (its metadata at the
//! cut), never from the live state machine, so meta and data cannot disagree. Applies go on
//! while the snapshot copies and merges; they wait only for the cut (the start of one
//! checkpoint). Tested by `tests/ra1_snapshot_cut.rs`.
//!
//! The engine has no call that groups writes into one epoch, so the lock stands in for it;
//! nothing of the engine's internals is used.
//!
//! # RA2: a crash during install leaves the old state or the new one
//!
//! `install_snapshot` numbered steps: 1. check the snapshot's manifest metadata equals the meta
//! the leader sent; 2. restore it (deltasnap's `restore_on`: verify every page, copy, fsync,
//! control file last) into `store-<g+1>`, a directory nothing names yet; 3. open it and check
//! its `last_applied` again; 4. **commit**: replace `CURRENT` (tmp, fsync, rename, fsync
//! directory) to name `store-<g+1>`; 5. swap the live engine, close the old one and remove its
//! store; 6. move the snapshot from `incoming/` to `snapshots/` and make it the current one
//! (only now: a snapshot newer than the live state must not be current after a crash). A crash before step 4 leaves `CURRENT`
//! naming the old store (the half-restored one is removed at open); after it, the new one.
//! A crash between steps 4 and 6 is finished by the next open (the snapshot in `incoming/`
//! whose last log id is the live store's is adopted). Tested at every I/O operation on
//! `SimFs` by `tests/ra2_install_crash.rs`.
//!
//! # RA3
//!
//! Once a snapshot is published (the engine fsyncs it and renames it into place) or installed,
//! its last index goes to the [`PurgeGuard`], which the log store asks before purging.
//!
//! # Durability of apply
//!
//! `apply` ends with `Engine::sync`: the state machine is persistent, so a restarted node
//! resumes from its store's `last_applied` and replays only the log after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deltasnap::vfs::{OpenMode, Vfs};
use deltasnap::{Config, Engine, Manifest, PageId, PartitionId, SnapshotOptions};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::error::{blocking, create_dir_all_durable, Error, IoContext, Result};
use crate::log_store::{lock, write_file_atomic, PurgeGuard};
use crate::transfer::{self, SnapshotReceiver};
use crate::{Command, NodeId, Response, SnapshotDir, TypeConfig};

/// Metadata key of the last applied log id (JSON of `Option<LogId>`).
pub const KEY_LAST_APPLIED: &[u8] = b"raft/last_applied";
/// Metadata key of the last applied membership (JSON of `StoredMembership`).
pub const KEY_MEMBERSHIP: &[u8] = b"raft/membership";
/// The partition that holds the replicated pages.
pub const DATA_PARTITION: PartitionId = PartitionId(0);
/// Pages a command may address: `0 .. PAGE_COUNT_MAX`.
pub const PAGE_COUNT_MAX: u32 = 1 << 16;
/// How long `build_snapshot` waits for the engine to take the snapshot's cut.
pub const CUT_WAIT_MAX: Duration = Duration::from_secs(60);
/// Published snapshots kept (the latest, and one that a transfer may still be reading).
pub const SNAPSHOTS_KEPT: usize = 2;

/// This crate's seeded bugs: switched on by a test to show that it fails without the fix.
#[doc(hidden)]
pub mod seeded {
    use std::sync::atomic::AtomicBool;

    /// `build_snapshot` releases the apply lock before the snapshot's cut (breaks RA1).
    pub static CUT_OUTSIDE_APPLY_LOCK: AtomicBool = AtomicBool::new(false);
    /// `install_snapshot` names the new store in `CURRENT` before restoring it (breaks RA2).
    pub static INSTALL_COMMITS_BEFORE_RESTORE: AtomicBool = AtomicBool::new(false);
}

const CURRENT_FILE: &str = "CURRENT";
const CURRENT_TMP_FILE: &str = "CURRENT.tmp";
const SNAPSHOTS_DIR: &str = "snapshots";
const INCOMING_DIR: &str = "incoming";

/// Called at the start of an install, before its first I/O (tests arm a crash there).
pub type InstallHook = Arc<dyn Fn() + Send + Sync>;

/// The state machine of one node. Cheap to clone: clones share one state machine.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

struct Shared {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    config: Config,
    /// The apply lock (module doc, RA1).
    live: Mutex<Live>,
    /// One build or install at a time.
    build: tokio::sync::Mutex<()>,
    current: Mutex<Option<SnapshotMeta<NodeId, BasicNode>>>,
    snapshot_seq: AtomicU64,
    guard: PurgeGuard,
    install_hook: Mutex<Option<InstallHook>>,
    apply_hook: Mutex<Option<InstallHook>>,
}

struct Live {
    engine: Arc<Engine>,
    generation: u64,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    page_count: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct CurrentFile {
    generation: u64,
}

fn store_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("store-{generation}"))
}

fn storage_error(error: Error) -> StorageError<NodeId> {
    StorageError::from(StorageIOError::write_state_machine(
        openraft::AnyError::new(&error),
    ))
}

/// The meta a snapshot holds at its cut (module doc, RA1).
pub fn meta_of(manifest: &Manifest) -> Result<SnapshotMeta<NodeId, BasicNode>> {
    let metadata = manifest.metadata_map();
    let (last_log_id, last_membership) = applied_from(&metadata, &manifest.name)?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id: manifest.name.clone(),
    })
}

type Applied = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// The last applied log id and every replicated page's payload (in page order).
pub type ReplicatedState = (Option<LogId<NodeId>>, Vec<Vec<u8>>);

fn applied_from(metadata: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) -> Result<Applied> {
    let decode = |key: &[u8]| -> Result<Option<serde_json::Value>> {
        metadata
            .get(key)
            .map(|bytes| serde_json::from_slice(bytes))
            .transpose()
            .map_err(|e| Error::Corrupted {
                path: PathBuf::from(what),
                reason: format!("metadata {}: {e}", String::from_utf8_lossy(key)),
            })
    };
    let corrupted = |e: serde_json::Error| Error::Corrupted {
        path: PathBuf::from(what),
        reason: e.to_string(),
    };
    let last_applied = match decode(KEY_LAST_APPLIED)? {
        Some(value) => serde_json::from_value(value).map_err(corrupted)?,
        None => None,
    };
    let membership = match decode(KEY_MEMBERSHIP)? {
        Some(value) => serde_json::from_value(value).map_err(corrupted)?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

fn read_manifest(vfs: &Arc<dyn Vfs>, snapshot_dir: &Path) -> Result<Manifest> {
    let path = snapshot_dir.join("manifest.json");
    let file = vfs
        .open(&path, OpenMode::Read)
        .ctx("open manifest", &path)?;
    let len = file.len().ctx("stat manifest", &path)?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .ctx("read manifest", &path)?;
    Ok(Manifest::parse(&bytes, &path)?)
}

impl StateMachineStore {
    /// Opens the state machine in `dir` (creating it if missing): the store `CURRENT` names,
    /// with every other store, unfinished transfer and old snapshot removed.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        config: Config,
        guard: PurgeGuard,
    ) -> Result<StateMachineStore> {
        config.validate()?;
        create_dir_all_durable(&vfs, dir)?;
        for sub in [SNAPSHOTS_DIR, INCOMING_DIR] {
            create_dir_all_durable(&vfs, &dir.join(sub))?;
        }
        let (engine, generation) = open_live_store(&vfs, dir, &config)?;
        remove_all_but(&vfs, dir, |name| {
            name.starts_with("store-") && name != format!("store-{generation}")
        })?;
        let (last_applied, membership) = applied_from(&engine.metadata()?, "the live store")?;
        finish_interrupted_install(&vfs, dir, last_applied)?;
        remove_all_but(&vfs, &dir.join(INCOMING_DIR), |_| true)?;
        let page_count = engine
            .partitions()
            .iter()
            .find(|(id, _)| *id == DATA_PARTITION)
            .map_or(0, |(_, count)| *count);
        let shared = Arc::new(Shared {
            vfs,
            dir: dir.to_path_buf(),
            config,
            live: Mutex::new(Live {
                engine: Arc::new(engine),
                generation,
                last_applied,
                membership,
                page_count,
            }),
            build: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            snapshot_seq: AtomicU64::new(0),
            guard,
            install_hook: Mutex::new(None),
            apply_hook: Mutex::new(None),
        });
        let store = StateMachineStore { shared };
        store.load_snapshots()?;
        Ok(store)
    }

    /// The directory snapshots are published in.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.shared.dir.join(SNAPSHOTS_DIR)
    }

    /// The file system the state machine lives on.
    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.shared.vfs
    }

    /// The live engine (for reads; writes go through raft).
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&lock(&self.shared.live).engine)
    }

    /// The last applied log id and membership, as the live store holds them.
    pub fn applied(&self) -> Applied {
        let live = lock(&self.shared.live);
        (live.last_applied, live.membership.clone())
    }

    /// The replicated pages' payloads and the last applied log id, read under the apply lock so
    /// that the two agree.
    pub fn read_state(&self) -> Result<ReplicatedState> {
        let live = lock(&self.shared.live);
        let pages = (0..live.page_count)
            .map(|index| live.engine.read(PageId::new(DATA_PARTITION, index)))
            .collect::<deltasnap::Result<Vec<_>>>()?;
        Ok((live.last_applied, pages))
    }

    /// Test hook: called at the start of every install.
    #[doc(hidden)]
    pub fn set_install_hook(&self, hook: Option<InstallHook>) {
        *lock(&self.shared.install_hook) = hook;
    }

    /// Test hook: called in every apply between the batch's effects and its log id (a test
    /// widens that window to make a cut inside a batch likely if the apply lock let it happen).
    #[doc(hidden)]
    pub fn set_apply_hook(&self, hook: Option<InstallHook>) {
        *lock(&self.shared.apply_hook) = hook;
    }

    /// Starts receiving a streamed snapshot into `incoming/` (see [`crate::transfer`]).
    pub fn begin_receive(
        &self,
        snapshot_id: &str,
        manifest_bytes: &[u8],
    ) -> Result<SnapshotReceiver> {
        SnapshotReceiver::begin(
            Arc::clone(&self.shared.vfs),
            &self.shared.dir.join(INCOMING_DIR),
            snapshot_id,
            manifest_bytes,
        )
    }

    /// Closes the live engine (a node being stopped).
    pub fn close(&self) -> Result<()> {
        let engine = self.engine();
        engine.close()?;
        Ok(())
    }

    fn load_snapshots(&self) -> Result<()> {
        let vfs = &self.shared.vfs;
        let snapshots = self.snapshots_dir();
        let mut found: Vec<(u64, SnapshotMeta<NodeId, BasicNode>)> = Vec::new();
        for name in vfs.read_dir(&snapshots).ctx("list snapshots", &snapshots)? {
            let path = snapshots.join(&name);
            let meta = if name.starts_with('.') {
                None
            } else {
                read_manifest(vfs, &path).and_then(|m| meta_of(&m)).ok()
            };
            match meta {
                Some(meta) => found.push((meta.last_log_id.map_or(0, |id| id.index), meta)),
                None => vfs
                    .remove_dir_all(&path)
                    .ctx("remove unfinished snapshot", &path)?,
            }
        }
        found.sort_by_key(|(index, meta)| (*index, meta.snapshot_id.clone()));
        self.shared
            .snapshot_seq
            .store(found.len() as u64, Ordering::Relaxed);
        if let Some((index, meta)) = found.last() {
            self.shared.guard.snapshot_durable(*index);
            *lock(&self.shared.current) = Some(meta.clone());
        }
        Ok(())
    }

    /// Removes all but the newest `SNAPSHOTS_KEPT` snapshots (by last index).
    fn prune_snapshots(&self) -> Result<()> {
        let vfs = &self.shared.vfs;
        let snapshots = self.snapshots_dir();
        let mut found: Vec<(u64, String)> = Vec::new();
        for name in vfs.read_dir(&snapshots).ctx("list snapshots", &snapshots)? {
            if name.starts_with('.') {
                continue; // a snapshot being made
            }
            if let Ok(meta) = read_manifest(vfs, &snapshots.join(&name)).and_then(|m| meta_of(&m)) {
                found.push((meta.last_log_id.map_or(0, |id| id.index), name));
            }
        }
        found.sort();
        let excess = found.len().saturating_sub(SNAPSHOTS_KEPT);
        for (_, name) in found.into_iter().take(excess) {
            let path = snapshots.join(&name);
            vfs.remove_dir_all(&path)
                .ctx("remove old snapshot", &path)?;
        }
        Ok(())
    }

    fn apply_blocking(&self, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<Response>> {
        let mut live = lock(&self.shared.live);
        let mut responses = Vec::with_capacity(entries.len());
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(responses);
        };
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(command) => apply_command(&mut live, command)?,
                EntryPayload::Membership(membership) => {
                    live.membership = StoredMembership::new(Some(entry.log_id), membership);
                    let json = serde_json::to_vec(&live.membership).expect("membership serializes");
                    live.engine.metadata_put(KEY_MEMBERSHIP, &json)?;
                    Response::default()
                }
            };
            responses.push(response.applied_at(entry.log_id.index));
        }
        if let Some(hook) = lock(&self.shared.apply_hook).clone() {
            hook();
        }
        // The batch's log id, after its effects, under the apply lock (RA1).
        live.last_applied = Some(last);
        let json = serde_json::to_vec(&live.last_applied).expect("a log id serializes");
        live.engine.metadata_put(KEY_LAST_APPLIED, &json)?;
        live.engine.sync()?;
        Ok(responses)
    }

    fn build_blocking(&self) -> Result<Snapshot<TypeConfig>> {
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("snap-{unix_ms:013}-{seq}");
        let handle = {
            let live = lock(&self.shared.live);
            let handle = live
                .engine
                .snapshot(SnapshotOptions::new(self.snapshots_dir(), &name))?;
            if seeded::CUT_OUTSIDE_APPLY_LOCK.load(Ordering::Relaxed) {
                drop(live);
            }
            // Hold the apply lock until the cut is taken: it falls between two batches (RA1).
            let started = Instant::now();
            while handle.progress().cut_epoch.is_none() && !handle.is_finished() {
                if started.elapsed() > CUT_WAIT_MAX {
                    handle.cancel();
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            handle
        };
        // The copy and the merge run while entries keep applying.
        let manifest = handle.wait()?;
        // The meta comes from the snapshot, not from the live state machine.
        let meta = meta_of(&manifest)?;
        self.publish_current(&meta)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotDir {
                vfs: Arc::clone(&self.shared.vfs),
                dir: self.snapshots_dir().join(&name),
            }),
        })
    }

    /// Makes `meta`'s snapshot (already durable under `snapshots/`) the current one.
    fn publish_current(&self, meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<()> {
        {
            let mut current = lock(&self.shared.current);
            let newer = current
                .as_ref()
                .is_none_or(|c| c.last_log_id <= meta.last_log_id);
            if newer {
                *current = Some(meta.clone());
            }
        }
        if let Some(id) = meta.last_log_id {
            self.shared.guard.snapshot_durable(id.index);
        }
        self.prune_snapshots()
    }

    fn install_blocking(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: SnapshotDir,
    ) -> Result<()> {
        if let Some(hook) = lock(&self.shared.install_hook).clone() {
            hook();
        }
        let vfs = &self.shared.vfs;
        let dir = &self.shared.dir;
        // 1. The snapshot's own meta must be the meta we were sent.
        let manifest = read_manifest(&data.vfs, &data.dir)?;
        let held = meta_of(&manifest)?;
        if held.last_log_id != meta.last_log_id || held.last_membership != meta.last_membership {
            return Err(Error::SnapshotMetaMismatch {
                snapshot_id: meta.snapshot_id.clone(),
                reason: format!(
                    "sent with last log id {:?}, holds {:?} at its cut",
                    meta.last_log_id, held.last_log_id
                ),
            });
        }
        // Onto our file system first if it is elsewhere (a snapshot that did not come through
        // our own transfer).
        let local = self.stage(&data, &meta.snapshot_id)?;
        let generation = lock(&self.shared.live).generation + 1;
        let new_dir = store_dir(dir, generation);
        // 2. Restore into a directory nothing names yet.
        if vfs.exists(&new_dir).ctx("stat", &new_dir)? {
            vfs.remove_dir_all(&new_dir)
                .ctx("remove stale store", &new_dir)?;
        }
        if seeded::INSTALL_COMMITS_BEFORE_RESTORE.load(Ordering::Relaxed) {
            write_current(vfs, dir, generation)?;
        }
        deltasnap::restore_on(vfs, &local, &new_dir)?;
        // 3. Open it and check it holds what the meta says.
        let engine = Engine::open_on(Arc::clone(vfs), &new_dir, self.shared.config.clone())?;
        let (last_applied, membership) = applied_from(&engine.metadata()?, "the restored store")?;
        if last_applied != meta.last_log_id {
            return Err(Error::SnapshotMetaMismatch {
                snapshot_id: meta.snapshot_id.clone(),
                reason: format!("restored store holds last applied {last_applied:?}"),
            });
        }
        let page_count = engine
            .partitions()
            .iter()
            .find(|(id, _)| *id == DATA_PARTITION)
            .map_or(0, |(_, count)| *count);
        // 4. Commit: CURRENT names the new store.
        write_current(vfs, dir, generation)?;
        // 5. Swap the live engine; the old store is garbage now.
        let old = {
            let mut live = lock(&self.shared.live);
            let old_generation = live.generation;
            let old_engine = std::mem::replace(&mut live.engine, Arc::new(engine));
            live.generation = generation;
            live.last_applied = last_applied;
            live.membership = membership;
            live.page_count = page_count;
            (old_engine, old_generation)
        };
        if let Err(error) = old.0.close() {
            tracing::warn!(%error, "closing the store replaced by an install");
        }
        drop(old.0);
        let old_dir = store_dir(dir, old.1);
        vfs.remove_dir_all(&old_dir)
            .ctx("remove replaced store", &old_dir)?;
        vfs.sync_dir(dir)
            .ctx("fsync state machine directory", dir)?;
        // 6. The installed snapshot is the current one.
        self.adopt(&local, &meta.snapshot_id)?;
        self.publish_current(meta)
    }

    /// Where to restore `data` from on our file system: where it is if it is ours already
    /// (received into `incoming/`, or one of our snapshots), else a streamed copy into
    /// `incoming/`. Nothing is moved into `snapshots/` before the install commits: a snapshot
    /// newer than the state it would be current for must not survive a crash.
    fn stage(&self, data: &SnapshotDir, snapshot_id: &str) -> Result<PathBuf> {
        let ours = Arc::ptr_eq(&data.vfs, &self.shared.vfs);
        let parent = data.dir.parent();
        let incoming = self.shared.dir.join(INCOMING_DIR);
        if ours && (parent == Some(incoming.as_path()) || parent == Some(&self.snapshots_dir())) {
            return Ok(data.dir.clone());
        }
        let manifest = transfer::manifest_bytes(&data.vfs, &data.dir)?;
        transfer::copy_snapshot(
            &data.vfs,
            &data.dir,
            self.begin_receive(snapshot_id, &manifest)?,
            transfer::CHUNK_BYTES_DEFAULT,
        )
    }

    /// After the commit: moves a staged snapshot from `incoming/` to `snapshots/<id>`.
    fn adopt(&self, staged: &Path, snapshot_id: &str) -> Result<()> {
        let vfs = &self.shared.vfs;
        let snapshots = self.snapshots_dir();
        let target = snapshots.join(snapshot_id);
        if staged == target {
            return Ok(());
        }
        if vfs.exists(&target).ctx("stat", &target)? {
            vfs.remove_dir_all(&target)
                .ctx("remove snapshot", &target)?;
        }
        vfs.rename(staged, &target)
            .ctx("adopt the installed snapshot", &target)?;
        let incoming = self.shared.dir.join(INCOMING_DIR);
        // The new entry durable first: a crash between the two fsyncs leaves the snapshot
        // under both names (open keeps one), never under none.
        vfs.sync_dir(&snapshots).ctx("fsync", &snapshots)?;
        vfs.sync_dir(&incoming).ctx("fsync", &incoming)
    }
}

fn apply_command(live: &mut Live, command: Command) -> Result<Response> {
    match command {
        Command::WritePage {
            page,
            offset,
            bytes,
        } => {
            let payload = live.engine.payload_size();
            if page >= PAGE_COUNT_MAX {
                return Ok(Response::refused(format!(
                    "page {page} is out of range 0..{PAGE_COUNT_MAX}"
                )));
            }
            if offset as usize + bytes.len() > payload {
                return Ok(Response::refused(format!(
                    "{} bytes at offset {offset} do not fit a payload of {payload} bytes",
                    bytes.len()
                )));
            }
            while live.page_count <= page {
                live.engine.allocate_page(DATA_PARTITION)?;
                live.page_count += 1;
            }
            live.engine
                .write(PageId::new(DATA_PARTITION, page), offset as usize, &bytes)?;
            Ok(Response::default())
        }
    }
}

fn write_current(vfs: &Arc<dyn Vfs>, dir: &Path, generation: u64) -> Result<()> {
    let json = serde_json::to_vec(&CurrentFile { generation }).expect("CURRENT serializes");
    let mut bytes = crc32c::crc32c(&json).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    write_file_atomic(vfs, dir, CURRENT_FILE, CURRENT_TMP_FILE, &bytes)
}

fn read_current(vfs: &Arc<dyn Vfs>, dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(CURRENT_FILE);
    if !vfs.exists(&path).ctx("stat", &path)? {
        return Ok(None);
    }
    let file = vfs.open(&path, OpenMode::Read).ctx("open", &path)?;
    let len = file.len().ctx("stat", &path)?;
    if !(4..=4096).contains(&len) {
        return Err(Error::Corrupted {
            path,
            reason: format!("{len} bytes"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0).ctx("read", &path)?;
    let crc = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(Error::Corrupted {
            path,
            reason: "crc mismatch".into(),
        });
    }
    let current: CurrentFile =
        serde_json::from_slice(&bytes[4..]).map_err(|e| Error::Corrupted {
            path,
            reason: e.to_string(),
        })?;
    Ok(Some(current.generation))
}

/// Opens the store `CURRENT` names, or creates store 1 and then `CURRENT` (a crash between
/// leaves a store nothing names, removed and made again at the next open).
fn open_live_store(vfs: &Arc<dyn Vfs>, dir: &Path, config: &Config) -> Result<(Engine, u64)> {
    if let Some(generation) = read_current(vfs, dir)? {
        let config = Config {
            create_if_missing: false,
            ..config.clone()
        };
        let engine = Engine::open_on(Arc::clone(vfs), store_dir(dir, generation), config)?;
        return Ok((engine, generation));
    }
    let generation = 1;
    let store = store_dir(dir, generation);
    if vfs.exists(&store).ctx("stat", &store)? {
        vfs.remove_dir_all(&store)
            .ctx("remove unnamed store", &store)?;
    }
    let config = Config {
        create_if_missing: true,
        ..config.clone()
    };
    let engine = Engine::open_on(Arc::clone(vfs), &store, config)?;
    engine.create_partition(DATA_PARTITION)?;
    engine.sync()?;
    engine.checkpoint()?;
    write_current(vfs, dir, generation)?;
    Ok((engine, generation))
}

/// An install that crashed after its commit (step 4) and before its step 6 left the installed
/// snapshot in `incoming/`: the live store is at that snapshot's last log id. Step 6 is done
/// now, so the node does not come up with a state whose log is purged and no snapshot covers it
/// (openraft purges a follower's log up to an installed snapshot). Everything else in
/// `incoming/` is an unfinished or uninstalled transfer, removed by the caller.
fn finish_interrupted_install(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    last_applied: Option<LogId<NodeId>>,
) -> Result<()> {
    let incoming = dir.join(INCOMING_DIR);
    let snapshots = dir.join(SNAPSHOTS_DIR);
    for name in vfs.read_dir(&incoming).ctx("list", &incoming)? {
        if name.starts_with('.') {
            continue;
        }
        let path = incoming.join(&name);
        let Ok(meta) = read_manifest(vfs, &path).and_then(|m| meta_of(&m)) else {
            continue;
        };
        if last_applied.is_some() && meta.last_log_id == last_applied {
            let target = snapshots.join(&name);
            if vfs.exists(&target).ctx("stat", &target)? {
                vfs.remove_dir_all(&target)
                    .ctx("remove snapshot", &target)?;
            }
            vfs.rename(&path, &target)
                .ctx("adopt the installed snapshot", &target)?;
            vfs.sync_dir(&snapshots).ctx("fsync", &snapshots)?;
            vfs.sync_dir(&incoming).ctx("fsync", &incoming)?;
        }
    }
    Ok(())
}

/// Removes every entry of `dir` whose name `doomed` selects, then fsyncs `dir`.
fn remove_all_but(vfs: &Arc<dyn Vfs>, dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<()> {
    let mut removed = false;
    for name in vfs.read_dir(dir).ctx("list", dir)? {
        if doomed(&name) {
            let path = dir.join(&name);
            if vfs.is_dir(&path).ctx("stat", &path)? {
                vfs.remove_dir_all(&path).ctx("remove", &path)?;
            } else {
                vfs.remove_file(&path).ctx("remove", &path)?;
            }
            removed = true;
        }
    }
    if removed {
        vfs.sync_dir(dir).ctx("fsync", dir)?;
    }
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let _one_at_a_time = self.shared.build.lock().await;
        let store = self.clone();
        blocking(move || store.build_blocking()).await.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                None,
                openraft::AnyError::new(&e),
            ))
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> std::result::Result<Applied, StorageError<NodeId>> {
        Ok(self.applied())
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let store = self.clone();
        blocking(move || store.apply_blocking(entries))
            .await
            .map_err(storage_error)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<SnapshotDir>, StorageError<NodeId>> {
        // Our transfer receives into `incoming/` itself (`begin_receive`); this handle is only
        // filled in by a caller that has a snapshot directory already (openraft's test suite).
        Ok(Box::new(SnapshotDir {
            vfs: Arc::clone(&self.shared.vfs),
            dir: self.shared.dir.join(INCOMING_DIR),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotDir>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        let _no_build = self.shared.build.lock().await;
        let store = self.clone();
        let meta = meta.clone();
        let result = blocking(move || store.install_blocking(&meta, *snapshot)).await;
        if result.is_err() {
            self.shared.guard.install_failed();
        }
        result.map_err(storage_error)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = lock(&self.shared.current).clone();
        Ok(current.map(|meta| Snapshot {
            snapshot: Box::new(SnapshotDir {
                vfs: Arc::clone(&self.shared.vfs),
                dir: self.snapshots_dir().join(&meta.snapshot_id),
            }),
            meta,
        }))
    }
}
