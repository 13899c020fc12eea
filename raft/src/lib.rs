//! # deltasnap-raft
//!
//! A replicated page store: [openraft] 0.9 (the stable line) for consensus, a deltasnap
//! [`Engine`](deltasnap::Engine) for each node's state machine, and deltasnap's **online
//! snapshot** as openraft's snapshot. openraft's own examples build a snapshot by serializing the
//! whole state machine into memory under its lock; here a snapshot is taken while entries keep
//! applying, is a directory of page files with per-page crcs, and travels in chunks.
//!
//! - [`state_machine`]: `RaftStateMachine` on an `Engine`; the invariants **RA1** (a snapshot at
//!   log id `i` holds exactly the effects of the entries `<= i`) and **RA2** (a crash during
//!   install leaves the old state or the new one, never a mix) are stated and argued there.
//! - [`log_store`]: `RaftLogStorage` on segment files of crc'd records, why a log of our own,
//!   and **RA3** (the log is purged up to a snapshot only once that snapshot is durable).
//! - [`transfer`]: the snapshot stream (manifest, then each file in chunks of pages checked on
//!   arrival) and its memory bound per transfer.
//! - [`network`]: an in-process network (direct calls between nodes of one process) used by the
//!   tests; [`node`] puts a node together.
//!
//! openraft features used: `storage-v2` (the `RaftLogStorage` + `RaftStateMachine` split,
//! implemented directly, no `Adaptor`), `generic-snapshot-data` (the snapshot is a
//! [`SnapshotDir`], streamed by our `RaftNetwork::full_snapshot`), `serde` (entries on disk).
//!
//! ## Workarounds for what the engine's public API lacks
//!
//! - No call groups several writes into one epoch: the state machine's apply lock, held by
//!   `build_snapshot` until the engine's snapshot takes its cut, stands in (RA1).
//! - The manifest has no field for openraft's snapshot meta: the meta lives in two metadata keys
//!   ([`state_machine::KEY_LAST_APPLIED`], [`state_machine::KEY_MEMBERSHIP`]) written in the same
//!   batch as the entries, which the snapshot captures at its cut, so the manifest's metadata
//!   carries it.

//!
//! ## Tests (one behaviour per file under `tests/`)
//!
//! | invariant / behaviour | test |
//! |---|---|
//! | RA1, meta read from the snapshot | `ra1_snapshot_cut` (snapshots built while batches apply, each restored and compared with the model of entries `<= last_applied`; seeded bug `cut-outside-apply-lock`) |
//! | RA2 | `ra2_install_crash` (`SimFs`, a crash at every I/O operation of an install; seeded bug `install-commits-before-restore`) |
//! | log durability, RA3's purge order | `log_store_crash` (`SimFs`, a crash at every I/O operation of votes, appends, a truncate, a purge) |
//! | openraft's storage contract | `openraft_suite` (`openraft::testing::Suite`) |
//! | streaming refuses bad input | `transfer_refuses_bad_chunks`, `cluster_tampered_chunk` |
//! | the cluster | `cluster_lifecycle` (writes, snapshot, learner by install, leader killed, restart from store + log), `cluster_follower_crash_during_install` |
//!
//! Seeded bugs of this crate are switched on with `DELTASNAP_RAFT_SEEDED=<name>` for the test
//! that names them ([`state_machine::seeded`]); the engine's `Bug` enum is not touched.

pub mod error;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod transfer;

use std::path::PathBuf;
use std::sync::Arc;

use deltasnap::vfs::Vfs;
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use log_store::{LogStore, PurgeGuard};
pub use node::Node;
pub use state_machine::StateMachineStore;

/// A node's id.
pub type NodeId = u64;

/// A replicated command: what a client asks the cluster to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Writes `bytes` at `offset` of the payload of page `page` (pages up to `page` are
    /// allocated first). Refused (in the response, identically on every replica) if `page` is
    /// not below [`state_machine::PAGE_COUNT_MAX`] or the bytes do not fit the payload.
    WritePage {
        page: u32,
        offset: u32,
        bytes: Vec<u8>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index the command was applied at.
    pub applied_index: u64,
    /// Why the command changed nothing, if it did not.
    pub refused: Option<String>,
}

impl Response {
    fn refused(reason: String) -> Self {
        Response {
            applied_index: 0,
            refused: Some(reason),
        }
    }

    fn applied_at(mut self, index: u64) -> Self {
        self.applied_index = index;
        self
    }
}

/// openraft's snapshot data: a published deltasnap snapshot directory, on a file system.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    pub vfs: Arc<dyn Vfs>,
    pub dir: PathBuf,
}

openraft::declare_raft_types!(
    /// The type configuration of the replicated page store.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotDir,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's `Raft` for this type configuration.
pub type Raft = openraft::Raft<TypeConfig>;
