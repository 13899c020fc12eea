//! Four writers and the checkpointer on the real file system with a small memory budget (so
//! eviction and throttling happen): after close and reopen, every synced write is there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltasnap::{Config, Engine, PageId, PartitionId};

const WRITERS: u32 = 4;
const PAGES_PER_WRITER: u32 = 256;

fn seconds() -> u64 {
    std::env::var("DELTASNAP_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

#[test]
fn writers_and_checkpointer_under_a_small_budget_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        memory_budget_bytes: 512 * 1024, // 128 pages, for 1024 pages of data
        checkpoint_interval_ms: Some(50),
        ..Config::default()
    };
    let engine = Arc::new(Engine::open(dir.path(), config.clone()).unwrap());
    let partition = PartitionId(7);
    engine.create_partition(partition).unwrap();
    for _ in 0..WRITERS * PAGES_PER_WRITER {
        engine.allocate_page(partition).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds());
    let handles: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                // Page -> the last sequence number written to it, and the last one synced.
                let mut last: BTreeMap<u32, u64> = BTreeMap::new();
                let mut synced: BTreeMap<u32, u64> = BTreeMap::new();
                let mut seq = 0u64;
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ writer as u64;
                while Instant::now() < deadline {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let index = writer * PAGES_PER_WRITER + (rng % PAGES_PER_WRITER as u64) as u32;
                    seq += 1;
                    let offset = (rng >> 32) as usize % 500 * 8; // 8 + offset + 8 <= 4080
                    engine
                        .write(PageId::new(partition, index), 0, &seq.to_le_bytes())
                        .unwrap();
                    engine
                        .write(
                            PageId::new(partition, index),
                            8 + offset,
                            &seq.to_le_bytes(),
                        )
                        .unwrap();
                    last.insert(index, seq);
                    if seq % 64 == 0 {
                        engine.sync().unwrap();
                        synced.clone_from(&last);
                    }
                }
                (last, synced)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stats = engine.stats();
    let jobs = engine.jobs();
    engine.close().unwrap();
    drop(engine);

    let engine = Engine::open(dir.path(), config).unwrap();
    let mut checked = 0;
    for (last, synced) in &results {
        for (&index, &seq) in last {
            let payload = engine.read(PageId::new(partition, index)).unwrap();
            let found = u64::from_le_bytes(payload[..8].try_into().unwrap());
            assert_eq!(found, seq, "page {index}: close made every write durable");
            assert!(found >= synced.get(&index).copied().unwrap_or(0));
            checked += 1;
        }
    }
    eprintln!(
        "checked {checked} pages; {stats:?}; {} checkpoint jobs",
        jobs.len()
    );
    assert!(stats.writes > 1000, "the writers made progress: {stats:?}");
    assert!(
        stats.pages_evicted > 0,
        "the budget forced evictions: {stats:?}"
    );
    assert!(
        stats.writer_throttles > 0,
        "dirty pages hit the hard limit: {stats:?}"
    );
    assert!(
        jobs.iter()
            .filter(|j| j.kind == deltasnap::JobKind::Checkpoint)
            .count()
            > 2
    );
}
