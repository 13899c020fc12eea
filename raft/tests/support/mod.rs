//! Shared by the integration tests: engine configuration, commands with a known effect, and a
//! model of the replicated pages.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::sync::Arc;

use deltasnap::vfs::{StdFs, Vfs};
use deltasnap::Config;
use deltasnap_raft::Command;

/// Pages the commands of the tests write to.
pub const PAGES: u32 = 16;

/// A small, deterministic engine: no background checkpointer, small redo segments.
pub fn engine_config() -> Config {
    Config {
        memory_budget_bytes: 16 << 20,
        checkpoint_interval_ms: None,
        checkpoint_redo_bytes: 4 << 20,
        wal_segment_bytes: 1 << 20,
        background_checkpointer: false,
        ..Config::default()
    }
}

pub fn std_fs() -> Arc<dyn Vfs> {
    Arc::new(StdFs::new())
}

/// The command of log index `index`: page `index % PAGES` gets `index` (8 bytes LE) at 0.
pub fn command(index: u64) -> Command {
    Command::WritePage {
        page: (index % u64::from(PAGES)) as u32,
        offset: 0,
        bytes: index.to_le_bytes().to_vec(),
    }
}

/// What every page holds after the commands with the given indexes: page -> last index.
pub fn model(indexes: impl IntoIterator<Item = u64>) -> BTreeMap<u32, u64> {
    let mut pages = BTreeMap::new();
    for index in indexes {
        pages.insert((index % u64::from(PAGES)) as u32, index);
    }
    pages
}

/// Page -> the index its first 8 bytes hold (0: never written), for the pages that exist.
pub fn pages_of(payloads: &[Vec<u8>]) -> BTreeMap<u32, u64> {
    payloads
        .iter()
        .enumerate()
        .filter_map(|(page, payload)| {
            let index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            (index != 0).then_some((page as u32, index))
        })
        .collect()
}
