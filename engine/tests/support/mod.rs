//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use deltasnap::{Engine, PageId, PartitionId};

/// A proptest config whose RNG seed is fixed and printed, so a failure can be replayed with
/// `PROPTEST_RNG_SEED=<seed>`. Shrunk failures are also persisted by proptest.
pub fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => s.parse().expect("PROPTEST_RNG_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("proptest seed {seed}: replay with PROPTEST_RNG_SEED={seed}");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Everything observable about a store: partitions with their page payloads, and metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreState {
    pub partitions: BTreeMap<PartitionId, Vec<Vec<u8>>>,
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StoreState {
    pub fn read(engine: &Engine) -> StoreState {
        let mut partitions = BTreeMap::new();
        for (id, page_count) in engine.partitions() {
            let pages = (0..page_count)
                .map(|i| engine.read(PageId::new(id, i)).expect("every page reads"))
                .collect();
            partitions.insert(id, pages);
        }
        StoreState {
            partitions,
            metadata: engine.metadata().unwrap(),
        }
    }
}
