//! RA1: a snapshot built while entries keep applying holds, at its `last_applied = i`, exactly
//! the effects of the entries `<= i`. Breaks if the snapshot's cut can fall inside an applied
//! batch, or if the snapshot meta is taken from the live state machine instead of the snapshot.
//! `DELTASNAP_RAFT_SEEDED=cut-outside-apply-lock` switches the seeded bug on (the test must
//! then fail).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deltasnap::{Engine, PageId};
use deltasnap_raft::state_machine::{seeded, DATA_PARTITION, KEY_LAST_APPLIED};
use deltasnap_raft::{PurgeGuard, StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

const SNAPSHOTS: usize = 12;

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(support::command(index)),
    }
}

#[test]
fn snapshot_taken_during_applies_holds_exactly_the_entries_up_to_its_last_applied() {
    if std::env::var("DELTASNAP_RAFT_SEEDED").as_deref() == Ok("cut-outside-apply-lock") {
        seeded::CUT_OUTSIDE_APPLY_LOCK.store(true, Ordering::Relaxed);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let state_machine = StateMachineStore::open(
        support::std_fs(),
        &dir.path().join("sm"),
        support::engine_config(),
        PurgeGuard::new(),
    )
    .expect("open");
    // Widen the window between a batch's effects and its log id: a cut that can fall inside a
    // batch then almost surely does.
    state_machine.set_apply_hook(Some(Arc::new(|| {
        std::thread::sleep(std::time::Duration::from_millis(1))
    })));
    let done = Arc::new(AtomicBool::new(false));
    let mut applier = state_machine.clone();
    let applier_done = Arc::clone(&done);
    let applied = runtime.spawn(async move {
        // Batches of 1 ..= 24 entries, the sizes cycling deterministically.
        let mut next = 1u64;
        let mut batch = 0u64;
        while !applier_done.load(Ordering::Relaxed) {
            let size = 1 + (batch * 7) % 24;
            let entries: Vec<_> = (next..next + size).map(entry).collect();
            applier.apply(entries).await.expect("apply");
            next += size;
            batch += 1;
        }
        next - 1
    });
    let mut cuts = Vec::new();
    for round in 0..SNAPSHOTS {
        let mut builder = state_machine.clone();
        let snapshot = runtime
            .block_on(builder.build_snapshot())
            .expect("build a snapshot");
        let last = snapshot.meta.last_log_id.map_or(0, |id| id.index);
        // Restore it and compare with the model of the entries 1 ..= last.
        let store = dir.path().join(format!("restored-{round}"));
        deltasnap::restore(&snapshot.snapshot.dir, &store).expect("restore");
        let engine =
            Engine::open(&store, support::engine_config()).expect("open the restored store");
        let held: Option<LogId<u64>> = engine
            .metadata_get(KEY_LAST_APPLIED)
            .expect("metadata")
            .map(|json| serde_json::from_slice(&json).expect("a log id"))
            .unwrap_or(None);
        assert_eq!(
            held, snapshot.meta.last_log_id,
            "the meta is the snapshot's own"
        );
        let page_count = engine
            .partitions()
            .iter()
            .find(|(id, _)| *id == DATA_PARTITION)
            .map_or(0, |(_, count)| *count);
        let payloads: Vec<Vec<u8>> = (0..page_count)
            .map(|page| {
                engine
                    .read(PageId::new(DATA_PARTITION, page))
                    .expect("read")
            })
            .collect();
        assert_eq!(
            support::pages_of(&payloads),
            support::model(1..=last),
            "snapshot {round} at last_applied {last}: its pages are not exactly the effects of entries 1..={last}"
        );
        let expected_pages = if last == 0 {
            0
        } else {
            1 + last.min(u64::from(support::PAGES) - 1) as u32
        };
        assert_eq!(
            page_count, expected_pages,
            "snapshot {round}: pages allocated"
        );
        engine.close().expect("close");
        cuts.push(last);
    }
    done.store(true, Ordering::Relaxed);
    let applied_total = runtime.block_on(applied).expect("the applier");
    // Sometimes-property: the snapshots were cut while entries kept applying (distinct cuts,
    // none at the end).
    cuts.dedup();
    assert!(
        cuts.len() > SNAPSHOTS / 2,
        "cuts {cuts:?}: applies did not go on during the builds"
    );
    assert!(*cuts.last().expect("cuts") < applied_total);
    println!("cuts at {cuts:?}, {applied_total} entries applied");
}
