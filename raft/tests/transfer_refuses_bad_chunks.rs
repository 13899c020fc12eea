//! A streamed snapshot whose chunk is tampered with, dropped or missing at the end is refused
//! (and one cancelled midway is abandoned)
//! with a named error, and the follower keeps its old state (nothing is left in `incoming/`).
//! Breaks if pages are not checked against the manifest's crcs on arrival, if a short transfer
//! is accepted, or if a refused transfer touches the live state.

mod support;

use std::path::Path;
use std::sync::Arc;

use deltasnap::vfs::Vfs;
use deltasnap_raft::transfer::{manifest_bytes, SnapshotSender};
use deltasnap_raft::{Error, PurgeGuard, SnapshotDir, StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot};

const PAGE: u64 = 4096;

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry<TypeConfig>> {
    range
        .map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(support::command(index)),
        })
        .collect()
}

fn open(vfs: &Arc<dyn Vfs>, dir: &Path) -> StateMachineStore {
    StateMachineStore::open(
        Arc::clone(vfs),
        dir,
        support::engine_config(),
        PurgeGuard::new(),
    )
    .expect("open")
}

/// Streams `snapshot` into `follower`, passing every chunk through `mangle` (which may drop
/// it by returning `None`).
fn stream(
    vfs: &Arc<dyn Vfs>,
    snapshot: &Snapshot<TypeConfig>,
    follower: &StateMachineStore,
    mut mangle: impl FnMut(usize, Vec<u8>) -> Option<Vec<u8>>,
) -> Result<std::path::PathBuf, Error> {
    let mut sender = SnapshotSender::open(Arc::clone(vfs), &snapshot.snapshot.dir, PAGE)?;
    let mut receiver = follower.begin_receive(sender.snapshot_id(), sender.manifest_bytes())?;
    let mut position = 0;
    while let Some(mut chunk) = sender.next_chunk()? {
        assert!(
            chunk.bytes.len() as u64 <= PAGE,
            "a chunk is at most chunk_bytes"
        );
        if let Some(bytes) = mangle(position, chunk.bytes) {
            chunk.bytes = bytes;
            receiver.receive(&chunk)?;
        }
        position += 1;
    }
    receiver.finish()
}

fn assert_old_state(follower: &StateMachineStore, incoming: &Path, vfs: &Arc<dyn Vfs>) {
    let (last, payloads) = follower.read_state().expect("read");
    assert_eq!(last.map(|id| id.index), Some(10));
    assert_eq!(support::pages_of(&payloads), support::model(1..=10));
    assert!(
        vfs.read_dir(incoming).expect("list incoming").is_empty(),
        "a refused transfer leaves nothing"
    );
}

#[test]
fn tampered_truncated_and_gapped_transfers_are_refused_and_the_follower_keeps_its_state() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let vfs = support::std_fs();
    let mut leader = open(&vfs, &dir.path().join("leader"));
    let mut follower = open(&vfs, &dir.path().join("follower"));
    let incoming = dir.path().join("follower/incoming");
    let snapshot = runtime.block_on(async {
        leader.apply(entries(1..=40)).await.expect("apply");
        follower.apply(entries(1..=10)).await.expect("apply");
        leader.build_snapshot().await.expect("build")
    });

    // A flipped byte in the third chunk's page.
    let tampered = stream(&vfs, &snapshot, &follower, |i, mut bytes| {
        if i == 2 {
            bytes[100] ^= 0x40;
        }
        Some(bytes)
    });
    assert!(
        matches!(tampered, Err(Error::ChunkCrcMismatch { page: 2, .. })),
        "{tampered:?}"
    );
    assert_old_state(&follower, &incoming, &vfs);

    // The last chunk never arrives.
    let chunks = {
        let mut sender =
            SnapshotSender::open(Arc::clone(&vfs), &snapshot.snapshot.dir, PAGE).expect("open");
        std::iter::from_fn(|| sender.next_chunk().expect("read")).count()
    };
    let truncated = stream(&vfs, &snapshot, &follower, |i, bytes| {
        (i + 1 < chunks).then_some(bytes)
    });
    assert!(
        matches!(truncated, Err(Error::SnapshotTruncated { .. })),
        "{truncated:?}"
    );
    assert_old_state(&follower, &incoming, &vfs);

    // A chunk in the middle is lost.
    let gapped = stream(&vfs, &snapshot, &follower, |i, bytes| {
        (i != 1).then_some(bytes)
    });
    assert!(
        matches!(gapped, Err(Error::ChunkRefused { .. })),
        "{gapped:?}"
    );
    assert_old_state(&follower, &incoming, &vfs);

    // A transfer cancelled midway (the receiver dropped after two chunks).
    {
        let mut sender =
            SnapshotSender::open(Arc::clone(&vfs), &snapshot.snapshot.dir, PAGE).expect("open");
        let mut receiver = follower
            .begin_receive(sender.snapshot_id(), sender.manifest_bytes())
            .expect("begin");
        for _ in 0..2 {
            let chunk = sender.next_chunk().expect("read").expect("a chunk");
            receiver.receive(&chunk).expect("a good chunk");
        }
    }
    assert_old_state(&follower, &incoming, &vfs);

    // A tampered manifest.
    let mut manifest = manifest_bytes(&vfs, &snapshot.snapshot.dir).expect("manifest");
    manifest[40] ^= 0x01;
    let refused = follower.begin_receive(&snapshot.meta.snapshot_id, &manifest);
    assert!(matches!(refused, Err(Error::Engine(_))), "{refused:?}");
    assert_old_state(&follower, &incoming, &vfs);

    // The same snapshot, untouched, goes through and installs.
    let received =
        stream(&vfs, &snapshot, &follower, |_, bytes| Some(bytes)).expect("a clean transfer");
    runtime
        .block_on(follower.install_snapshot(
            &snapshot.meta,
            Box::new(SnapshotDir {
                vfs: Arc::clone(&vfs),
                dir: received,
            }),
        ))
        .expect("install");
    let (last, payloads) = follower.read_state().expect("read");
    assert_eq!(last.map(|id| id.index), Some(40));
    assert_eq!(support::pages_of(&payloads), support::model(1..=40));
}
