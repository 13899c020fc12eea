//! An in-process network: each node's `RaftNetwork` calls the target's `Raft` directly (no
//! serialization), and a snapshot is streamed chunk by chunk from the leader's snapshot
//! directory into the target's `incoming/` ([`crate::transfer`]), one chunk in flight at a time.
//! Tests can cut a node off ([`Router::set_down`]) and tamper with or drop chunks
//! ([`Router::set_chunk_filter`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};

use crate::error::{blocking, Error};
use crate::log_store::lock;
use crate::transfer::{Chunk, SnapshotSender, CHUNK_BYTES_DEFAULT};
use crate::{NodeId, Raft, SnapshotDir, StateMachineStore, TypeConfig};

/// Decides a chunk's fate on its way to `target`: `true` delivers it (possibly modified),
/// `false` drops it.
pub type ChunkFilter = Arc<dyn Fn(NodeId, &mut Chunk) -> bool + Send + Sync>;

/// What one snapshot transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub target: NodeId,
    pub snapshot_id: String,
    pub chunks: u64,
    pub bytes: u64,
    /// The largest chunk sent, in bytes (the per-transfer memory bound's chunk term).
    pub chunk_bytes_max: u64,
    /// `Ok` once installed, else the error's text.
    pub result: std::result::Result<(), String>,
}

#[derive(Clone)]
struct Peer {
    raft: Raft,
    state_machine: StateMachineStore,
}

#[derive(Default)]
struct RouterInner {
    peers: BTreeMap<NodeId, Peer>,
    down: BTreeSet<NodeId>,
    filter: Option<ChunkFilter>,
    transfers: Vec<TransferRecord>,
}

/// The in-process network shared by the nodes of a test cluster.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Mutex<RouterInner>>,
    chunk_bytes: u64,
}

impl Default for Router {
    fn default() -> Self {
        Router::new(CHUNK_BYTES_DEFAULT)
    }
}

impl Router {
    /// A network that streams snapshots in chunks of `chunk_bytes`.
    pub fn new(chunk_bytes: u64) -> Self {
        Router {
            inner: Arc::new(Mutex::new(RouterInner::default())),
            chunk_bytes,
        }
    }

    /// Makes node `id` reachable (replacing an earlier registration).
    pub fn add(&self, id: NodeId, raft: Raft, state_machine: StateMachineStore) {
        let mut inner = lock(&self.inner);
        inner.peers.insert(
            id,
            Peer {
                raft,
                state_machine,
            },
        );
        inner.down.remove(&id);
    }

    /// Forgets node `id` (it was stopped).
    pub fn remove(&self, id: NodeId) {
        lock(&self.inner).peers.remove(&id);
    }

    /// Cuts node `id` off (`true`) or reconnects it (`false`): every message to or from it fails
    /// as unreachable.
    pub fn set_down(&self, id: NodeId, down: bool) {
        let mut inner = lock(&self.inner);
        if down {
            inner.down.insert(id);
        } else {
            inner.down.remove(&id);
        }
    }

    /// Installs (or removes) the chunk filter.
    pub fn set_chunk_filter(&self, filter: Option<ChunkFilter>) {
        lock(&self.inner).filter = filter;
    }

    /// Every snapshot transfer so far.
    pub fn transfers(&self) -> Vec<TransferRecord> {
        lock(&self.inner).transfers.clone()
    }

    fn peer(&self, from: NodeId, to: NodeId) -> Result<Peer, Unreachable> {
        let inner = lock(&self.inner);
        if inner.down.contains(&from) || inner.down.contains(&to) {
            return Err(Unreachable::new(&Error::Unreachable(to)));
        }
        inner
            .peers
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&Error::Unreachable(to)))
    }
}

/// The network factory of one node.
#[derive(Clone)]
pub struct NodeNetwork {
    pub router: Router,
    pub from: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NodeNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            router: self.router.clone(),
            from: self.from,
            target,
        }
    }
}

/// A connection from one node to another.
pub struct Connection {
    router: Router,
    from: NodeId,
    target: NodeId,
}

type RpcError = RPCError<NodeId, BasicNode, RaftError<NodeId>>;

impl Connection {
    /// Streams `snapshot` to the target and has it installed; returns chunks and bytes sent.
    async fn stream(
        &self,
        peer: &Peer,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        record: &mut TransferRecord,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let network = |e: Error| StreamingError::Network(NetworkError::new(&e));
        let SnapshotDir { vfs, dir } = *snapshot.snapshot;
        let chunk_bytes = self.router.chunk_bytes;
        let mut sender = blocking(move || SnapshotSender::open(vfs, &dir, chunk_bytes))
            .await
            .map_err(network)?;
        let receiver_sm = peer.state_machine.clone();
        let id = sender.snapshot_id().to_string();
        let manifest = sender.manifest_bytes().to_vec();
        let mut receiver = blocking(move || receiver_sm.begin_receive(&id, &manifest))
            .await
            .map_err(network)?;
        loop {
            let (next, back) = blocking(move || {
                let next = sender.next_chunk();
                Ok((next, sender))
            })
            .await
            .map_err(network)?;
            sender = back;
            let Some(mut chunk) = next.map_err(network)? else {
                break;
            };
            // The target may have gone away mid-transfer.
            self.router
                .peer(self.from, self.target)
                .map_err(StreamingError::Unreachable)?;
            record.chunks += 1;
            record.bytes += chunk.bytes.len() as u64;
            record.chunk_bytes_max = record.chunk_bytes_max.max(chunk.bytes.len() as u64);
            let filter = lock(&self.router.inner).filter.clone();
            if let Some(filter) = filter {
                if !filter(self.target, &mut chunk) {
                    continue;
                }
            }
            receiver = blocking(move || receiver.receive(&chunk).map(|()| receiver))
                .await
                .map_err(network)?;
        }
        let dir = blocking(move || receiver.finish()).await.map_err(network)?;
        let installed = Snapshot {
            meta: snapshot.meta,
            snapshot: Box::new(SnapshotDir {
                vfs: Arc::clone(peer.state_machine.vfs()),
                dir,
            }),
        };
        peer.raft
            .install_full_snapshot(vote, installed)
            .await
            .map_err(|fatal| StreamingError::RemoteError(RemoteError::new(self.target, fatal)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let peer = self.router.peer(self.from, self.target)?;
        peer.raft
            .append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        let peer = self.router.peer(self.from, self.target)?;
        peer.raft
            .vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let peer = self.router.peer(self.from, self.target)?;
        let mut record = TransferRecord {
            target: self.target,
            snapshot_id: snapshot.meta.snapshot_id.clone(),
            chunks: 0,
            bytes: 0,
            chunk_bytes_max: 0,
            result: Ok(()),
        };
        // A cancel drops the stream future, and with it the receiver, which removes its
        // directory: the target keeps its state.
        let result = tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.stream(&peer, vote, snapshot, &mut record) => result,
        };
        record.result = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        lock(&self.router.inner).transfers.push(record);
        result
    }
}
