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

pub mod cluster {
    //! An in-process cluster on the in-process network.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use deltasnap::vfs::Vfs;
    use deltasnap_raft::network::Router;
    use deltasnap_raft::{Node, NodeId};
    use openraft::{BasicNode, SnapshotPolicy};

    /// How long any wait of a cluster test may take before the test fails.
    pub const WAIT: Duration = Duration::from_secs(10);

    /// Fast elections and heartbeats; snapshots only when a test asks; the log purged up to a
    /// snapshot at once, so a new node can catch up only by install.
    pub fn raft_config() -> Arc<openraft::Config> {
        let config = openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            install_snapshot_timeout: 5_000,
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        };
        Arc::new(config.validate().expect("a valid raft config"))
    }

    pub struct Cluster {
        pub router: Router,
        pub nodes: BTreeMap<NodeId, Node>,
        pub root: PathBuf,
        pub vfs: BTreeMap<NodeId, Arc<dyn Vfs>>,
    }

    impl Cluster {
        /// Nodes `1..=voters` started and initialized as the voters.
        pub async fn start(root: &Path, voters: u64, chunk_bytes: u64) -> Cluster {
            let mut cluster = Cluster {
                router: Router::new(chunk_bytes),
                nodes: BTreeMap::new(),
                root: root.to_path_buf(),
                vfs: BTreeMap::new(),
            };
            for id in 1..=voters {
                cluster.start_node(id, super::std_fs()).await;
            }
            let members: BTreeMap<NodeId, BasicNode> =
                (1..=voters).map(|id| (id, BasicNode::default())).collect();
            cluster.nodes[&1]
                .raft
                .initialize(members)
                .await
                .expect("initialize");
            cluster.leader().await;
            cluster
        }

        /// Starts (or restarts, from its files) node `id` on `vfs`.
        pub async fn start_node(&mut self, id: NodeId, vfs: Arc<dyn Vfs>) {
            let node = Node::start(
                id,
                Arc::clone(&vfs),
                &self.root.join(format!("node-{id}")),
                super::engine_config(),
                raft_config(),
                &self.router,
            )
            .await
            .expect("start a node");
            self.vfs.insert(id, vfs);
            self.nodes.insert(id, node);
        }

        /// Stops node `id` (shutdown, engine closed).
        pub async fn stop_node(&mut self, id: NodeId) {
            let node = self.nodes.remove(&id).expect("a running node");
            node.stop().await.expect("stop");
        }

        /// The leader, once every running node agrees on one that is running.
        pub async fn leader(&self) -> NodeId {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let leaders: BTreeSet<Option<NodeId>> = self
                    .nodes
                    .values()
                    .map(|n| n.raft.metrics().borrow().current_leader)
                    .collect();
                if let [Some(leader)] = leaders.iter().copied().collect::<Vec<_>>()[..] {
                    if self.nodes.contains_key(&leader) {
                        return leader;
                    }
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no leader: {leaders:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// Writes the commands of `indexes` through the leader; returns the last log index.
        pub async fn write(&self, indexes: impl IntoIterator<Item = u64>) -> u64 {
            let mut last = 0;
            for index in indexes {
                let leader = self.leader().await;
                let response = self.nodes[&leader]
                    .raft
                    .client_write(super::command(index))
                    .await
                    .expect("a write through the leader");
                assert_eq!(response.data.refused, None);
                last = response.log_id.index;
            }
            last
        }

        /// Waits until every running node has applied `index`.
        pub async fn wait_applied(&self, index: u64) {
            for (id, node) in &self.nodes {
                node.raft
                    .wait(Some(WAIT))
                    .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "node {id} did not apply {index}: {e}; its metrics: {:?}; transfers: {:?}",
                            node.raft.metrics().borrow().running_state,
                            self.router.transfers()
                        )
                    });
            }
        }

        /// Every running node's (last applied index, pages), which must all be equal.
        pub fn assert_replicas_equal(&self) -> (u64, BTreeMap<u32, u64>) {
            let states: BTreeMap<NodeId, (u64, BTreeMap<u32, u64>)> = self
                .nodes
                .iter()
                .map(|(id, node)| {
                    let (last, payloads) = node.state_machine.read_state().expect("read");
                    (
                        *id,
                        (last.map_or(0, |l| l.index), super::pages_of(&payloads)),
                    )
                })
                .collect();
            let first = states.values().next().expect("a node").clone();
            for (id, state) in &states {
                assert_eq!(state, &first, "node {id} differs from the first node");
            }
            first
        }

        /// Has the leader build a snapshot and waits for it; returns its last index.
        pub async fn snapshot(&self) -> u64 {
            let leader = self.leader().await;
            let raft = &self.nodes[&leader].raft;
            let applied = raft.metrics().borrow().last_applied.expect("applied").index;
            raft.trigger().snapshot().await.expect("trigger a snapshot");
            let metrics = raft
                .wait(Some(WAIT))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied),
                    "the snapshot is built",
                )
                .await
                .expect("a snapshot in time");
            metrics.snapshot.expect("a snapshot").index
        }

        pub async fn shutdown(mut self) {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.stop_node(id).await;
            }
        }
    }
}
