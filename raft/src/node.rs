//! One node: its log store, its state machine and its `Raft`, in `<root>/log` and `<root>/sm`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltasnap::vfs::Vfs;
use deltasnap::Config;

use crate::error::{blocking, Error, Result};
use crate::log_store::{LogStore, PurgeGuard};
use crate::network::{NodeNetwork, Router};
use crate::{NodeId, Raft, StateMachineStore};

/// A running node of the in-process network.
pub struct Node {
    pub id: NodeId,
    pub root: PathBuf,
    pub raft: Raft,
    pub state_machine: StateMachineStore,
    pub log: LogStore,
    router: Router,
}

impl Node {
    /// Opens (or creates) the node's files under `root` and starts its `Raft` on `router`.
    pub async fn start(
        id: NodeId,
        vfs: Arc<dyn Vfs>,
        root: &Path,
        engine_config: Config,
        raft_config: Arc<openraft::Config>,
        router: &Router,
    ) -> Result<Node> {
        let root = root.to_path_buf();
        let (log, state_machine) = {
            let root = root.clone();
            blocking(move || {
                let guard = PurgeGuard::new();
                let state_machine = StateMachineStore::open(
                    Arc::clone(&vfs),
                    &root.join("sm"),
                    engine_config,
                    guard.clone(),
                )?;
                let log = LogStore::open(vfs, &root.join("log"), guard)?;
                Ok((log, state_machine))
            })
            .await?
        };
        let network = NodeNetwork {
            router: router.clone(),
            from: id,
        };
        let raft = Raft::new(id, raft_config, network, log.clone(), state_machine.clone())
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        router.add(id, raft.clone(), state_machine.clone());
        Ok(Node {
            id,
            root,
            raft,
            state_machine,
            log,
            router: router.clone(),
        })
    }

    /// Stops the node: off the network, raft shut down, engine closed.
    pub async fn stop(self) -> Result<()> {
        self.router.remove(self.id);
        self.raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let state_machine = self.state_machine.clone();
        blocking(move || state_machine.close()).await
    }
}
