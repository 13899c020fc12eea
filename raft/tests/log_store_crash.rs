//! The raft log on `SimFs` with a crash at every I/O operation of a workload (votes, appends,
//! a truncate of a conflicting suffix, more appends, a purge): reopened, the log and the vote
//! are exactly what the operations acknowledged before the crash, plus at most the operation
//! in flight (an append: any prefix of its entries). Breaks if an append reports flushed before
//! its fsync, if a torn tail is not cut, if a truncate or purge can leave a hole, or if the
//! vote is not durable when `save_vote` returns.

use std::path::Path;
use std::sync::Arc;

use deltasnap::vfs::{FaultPlan, SimFs, Vfs};
use deltasnap_raft::{LogStore, PurgeGuard, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

const OPS_MAX: u64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    Vote(u64),
    Append(Vec<(u64, u64)>), // (term, index)
    Truncate(u64),
    Purge(u64, u64),
}

/// What the log holds: vote, entry ids (after the purge point), purge point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    vote: Option<Vote<u64>>,
    entries: Vec<LogId<u64>>,
    purged: Option<LogId<u64>>,
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn workload() -> Vec<Op> {
    let batch = |term: u64, range: std::ops::RangeInclusive<u64>| {
        Op::Append(range.map(|i| (term, i)).collect())
    };
    vec![
        Op::Vote(1),
        batch(1, 1..=5),
        batch(1, 6..=10),
        batch(1, 11..=20),
        Op::Truncate(16),
        Op::Vote(2),
        batch(2, 16..=25),
        Op::Purge(1, 8),
        batch(2, 26..=30),
    ]
}

fn apply_model(state: &State, op: &Op) -> State {
    let mut next = state.clone();
    match op {
        Op::Vote(term) => next.vote = Some(Vote::new(*term, 0)),
        Op::Append(ids) => next.entries.extend(ids.iter().map(|(t, i)| log_id(*t, *i))),
        Op::Truncate(since) => next.entries.retain(|id| id.index < *since),
        Op::Purge(term, upto) => {
            next.purged = Some(log_id(*term, *upto));
            next.entries.retain(|id| id.index > *upto);
        }
    }
    next
}

async fn run(log: &mut LogStore, op: &Op) -> Result<(), openraft::StorageError<u64>> {
    match op {
        Op::Vote(term) => log.save_vote(&Vote::new(*term, 0)).await,
        Op::Append(ids) => {
            let entries: Vec<Entry<TypeConfig>> = ids
                .iter()
                .map(|(t, i)| Entry {
                    log_id: log_id(*t, *i),
                    payload: EntryPayload::Blank,
                })
                .collect();
            log.blocking_append(entries).await
        }
        Op::Truncate(since) => log.truncate(log_id(1, *since)).await,
        Op::Purge(term, upto) => log.purge(log_id(*term, *upto)).await,
    }
}

async fn read(log: &mut LogStore) -> State {
    let state = log.get_log_state().await.expect("log state");
    let entries: Vec<LogId<u64>> = log
        .try_get_log_entries(0..)
        .await
        .expect("read entries")
        .into_iter()
        .map(|e| e.log_id)
        .collect();
    assert_eq!(entries, log.log_ids(), "the index and the files agree");
    State {
        vote: log.read_vote().await.expect("vote"),
        entries,
        purged: state.last_purged_log_id,
    }
}

fn open(vfs: &Arc<dyn Vfs>) -> LogStore {
    let guard = PurgeGuard::new();
    guard.snapshot_durable(8);
    LogStore::open(Arc::clone(vfs), Path::new("/node/log"), guard).expect("open the log")
}

#[test]
fn crash_at_every_io_leaves_the_acknowledged_log_plus_at_most_the_op_in_flight() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ops = workload();
    let mut crash_at = 0u64;
    let mut mid_op_states = 0;
    loop {
        assert!(
            crash_at < OPS_MAX,
            "the workload did not end within {OPS_MAX} operations"
        );
        let fs = SimFs::new();
        let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
        let (acknowledged, in_flight) = runtime.block_on(async {
            let mut log = open(&vfs);
            fs.set_fault_plan(FaultPlan::crash_at(fs.op_count() + crash_at));
            let mut state = State {
                vote: None,
                entries: vec![],
                purged: None,
            };
            for op in &ops {
                if run(&mut log, op).await.is_err() {
                    return (state, Some(op.clone()));
                }
                state = apply_model(&state, op);
            }
            (state, None)
        });
        let crashed = fs.power_cut_at().is_some();
        fs.crash(crash_at);
        let reopened = runtime.block_on(async { read(&mut open(&vfs)).await });
        // Allowed: the acknowledged state; or with the op in flight done (an append: any prefix).
        let mut allowed = vec![acknowledged.clone()];
        match &in_flight {
            Some(Op::Append(ids)) => {
                for len in 1..=ids.len() {
                    allowed.push(apply_model(&acknowledged, &Op::Append(ids[..len].to_vec())));
                }
            }
            Some(op) => allowed.push(apply_model(&acknowledged, op)),
            None => {}
        }
        assert!(
            allowed.contains(&reopened),
            "crash at op {crash_at} during {in_flight:?}:\n reopened {reopened:?}\n allowed {allowed:?}"
        );
        if reopened != acknowledged {
            mid_op_states += 1;
        }
        if !crashed {
            assert_eq!(
                reopened, acknowledged,
                "every operation done, every one kept"
            );
            assert_eq!(reopened.entries.len(), 22, "entries 9..=30 after the purge");
            break;
        }
        crash_at += 1;
    }
    println!("{crash_at} crash points, {mid_op_states} kept the operation in flight");
}
