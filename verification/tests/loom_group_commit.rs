//! Loom over the redo log's group commit (engine `wal/mod.rs`, on SimFs): if a `sync` could
//! return before an fsync covered the record its caller appended (also when the record sits in a
//! segment that a roll left unnamed, and the other thread leads or rolls meanwhile; or while an
//! appender's buffer write runs outside the lock), a write whose `sync` returned could be lost at a
//! crash (R1).
#![cfg(deltasnap_loom)]

use std::path::Path;

use deltasnap::bugs::{self, Bug};
use deltasnap::sync::Arc;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::wal::{Record, Wal, WalConfig};
use deltasnap::PartitionId;
use deltasnap_verification::kill;

const SEGMENT: &str = "/wal/00000000000000000000.log";
/// format.md §3: the segment header before the first record.
const SEGMENT_HEADER_BYTES: u64 = 32;

fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        // Two appenders, each append + sync: bound 2 covers a leader preempted between its
        // buffer write and its fsync while the other caller arrives, in about a second.
        builder.preemption_bound = Some(2);
    }
    // A plain std counter: test bookkeeping outside the model, not synchronization to explore.
    #[allow(clippy::disallowed_types)]
    static EXECUTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    EXECUTIONS.store(0, std::sync::atomic::Ordering::Relaxed);
    builder.check(move || {
        EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        kill::iteration();
        f()
    });
    eprintln!(
        "loom explored {} executions (preemption bound {:?})",
        EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// Two threads append one record each and sync; when `sync` returns, the durable bytes of the
/// segment must reach past the caller's record.
fn two_appenders_sync() {
    two_appenders_sync_with(WalConfig::new(512), false);
}

/// The same with a one-record buffer: every append fills it and writes its record out, outside
/// the lock, so a sync leader can find an appender's write in flight (wal module docs,
/// "Appending"). One record, not one byte: the other appender's record must stay below
/// `WRITE_BEHIND_SLACK` buffers, or it waits for the write instead of leading a sync.
fn two_appenders_writing_out_sync() {
    two_appenders_sync_with(one_record_buffers(), false);
}

/// Two appenders and a write-behind thread (`Wal::run_write_behind`): each record fills the
/// buffer, the appenders leave it to the thread, and a sync may find the thread's write in
/// flight. Every `sync` must still cover its caller's record, and the thread must stop.
fn two_appenders_sync_with_write_behind() {
    two_appenders_sync_with(one_record_buffers(), true);
}

fn record(t: u32) -> Record {
    Record::CreatePartition {
        epoch: 1,
        partition: PartitionId(t),
    }
}

fn one_record_buffers() -> WalConfig {
    WalConfig {
        buffer_bytes_max: record(0).encoded_len(),
        ..WalConfig::new(512)
    }
}

fn two_appenders_sync_with(config: WalConfig, write_behind: bool) {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    vfs.create_dir_all(Path::new("/wal")).unwrap();
    vfs.sync_dir(Path::new("/")).unwrap();
    let (wal, _) = Wal::open(Arc::clone(&vfs), Path::new("/wal"), config, 0).unwrap();
    let wal = Arc::new(wal);
    let writer = write_behind.then(|| {
        let wal = Arc::clone(&wal);
        loom::thread::spawn(move || wal.run_write_behind())
    });
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (wal, sim) = (Arc::clone(&wal), sim.clone());
            loom::thread::spawn(move || {
                let lsn = wal.append(&record(t)).unwrap();
                let end = lsn + record(t).encoded_len() as u64;
                wal.sync().unwrap();
                let durable = sim.durable_len(Path::new(SEGMENT)).unwrap();
                assert!(
                    durable >= SEGMENT_HEADER_BYTES + end,
                    "R1: sync returned but the record ending at LSN {end} is not durable ({durable} durable bytes)"
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    if let Some(writer) = writer {
        wal.stop_write_behind();
        writer.join().unwrap();
    }
}

/// Two threads append one record each and sync, in segments that hold one record each, so
/// that every append rolls (to a new, unnamed segment) while the other thread may be leading a
/// sync: when `sync` returns, the caller's record must be durable in a segment whose name is
/// durable (format.md §3).
fn two_appenders_sync_across_rolls() {
    let sim = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(sim.clone());
    vfs.create_dir_all(Path::new("/wal")).unwrap();
    vfs.sync_dir(Path::new("/")).unwrap();
    let config = WalConfig {
        segment_bytes_max: SEGMENT_HEADER_BYTES + record(0).encoded_len() as u64,
        ..WalConfig::new(512)
    };
    let (wal, _) = Wal::open(Arc::clone(&vfs), Path::new("/wal"), config, 0).unwrap();
    wal.append(&record(9)).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let (wal, sim) = (Arc::clone(&wal), sim.clone());
            loom::thread::spawn(move || {
                let lsn = wal.append(&record(t)).unwrap();
                let end = lsn + record(t).encoded_len() as u64;
                wal.sync().unwrap();
                let durable = durable_segment_bytes(&sim, lsn);
                assert!(
                    durable.is_some_and(|(first, len)| len >= SEGMENT_HEADER_BYTES + end - first),
                    "R1: sync returned but the record at LSN {lsn} is not durable in a durably named segment ({durable:?})"
                );
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// The durably named segment that holds `lsn` (the one with the greatest first LSN at or below
/// it): its first LSN and its durable length.
fn durable_segment_bytes(sim: &SimFs, lsn: u64) -> Option<(u64, u64)> {
    let first = sim
        .durable_file_names()
        .iter()
        .filter_map(|path| {
            let name = path.strip_prefix("/wal").ok()?.to_str()?;
            name.strip_suffix(".log")?.parse::<u64>().ok()
        })
        .filter(|&first| first <= lsn)
        .max()?;
    let len = sim
        .durable_len(&Path::new("/wal").join(format!("{first:020}.log")))
        .ok()?;
    Some((first, len))
}

/// Switches every seeded bug off, then `bug` on.
fn only(bug: Option<Bug>) {
    for other in Bug::ALL {
        bugs::set(other, false);
    }
    if let Some(bug) = bug {
        bugs::set(bug, true);
    }
}

#[test]
fn a_returned_sync_covers_the_callers_record() {
    only(None);
    model(two_appenders_sync);
}

#[test]
#[should_panic(expected = "R1")]
fn seeded_bug_sync_not_waiting_for_the_leader_is_caught() {
    only(Some(Bug::SyncSkipsWaitForLeader));
    model(two_appenders_sync);
}

#[test]
fn a_returned_sync_covers_the_callers_record_written_out_by_appenders() {
    only(None);
    model(two_appenders_writing_out_sync);
}

#[test]
#[should_panic(expected = "R1")]
fn seeded_bug_sync_ignoring_a_write_in_flight_is_caught() {
    only(Some(Bug::SyncIgnoresWriteInFlight));
    model(two_appenders_writing_out_sync);
}

#[test]
fn a_returned_sync_covers_the_callers_record_with_a_write_behind_thread() {
    only(None);
    model(two_appenders_sync_with_write_behind);
}

#[test]
#[should_panic(expected = "R1")]
fn seeded_bug_sync_ignoring_the_write_behind_threads_write_is_caught() {
    only(Some(Bug::SyncIgnoresWriteInFlight));
    model(two_appenders_sync_with_write_behind);
}

#[test]
fn a_returned_sync_covers_the_callers_record_across_rolls() {
    only(None);
    model(two_appenders_sync_across_rolls);
}

#[test]
#[should_panic(expected = "R1")]
fn seeded_bug_sync_skipping_rolled_segments_is_caught() {
    only(Some(Bug::SyncSkipsRolledSegments));
    model(two_appenders_sync_across_rolls);
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`. Every scenario.
#[test]
fn kill_matrix() {
    kill::run_requested("loom", || {
        model(two_appenders_sync);
        model(two_appenders_writing_out_sync);
        model(two_appenders_sync_with_write_behind);
        model(two_appenders_sync_across_rolls);
    });
}
