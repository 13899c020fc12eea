//! The cluster snapshot: a coordinator and `N` nodes running Ignite's two-phase snapshot
//! (reference/ignite-snapshots.md §2) over a lossy, reordering network, with crashes and restarts.
//!
//! - The coordinator (actor 0) starts snapshot `s` at start-up and right after deciding `s-1`: it
//!   durably records `s` as pending, then sends `Start{s}` to every node.
//! - A node (actors 1..=N) that runs no other snapshot accepts `Start{s}`: it durably marks `s`
//!   accepted (Ignite's running-snapshot key in the metastorage), installs its write hooks at its
//!   cut, and runs its local task, which completes (part written durably, hooks released), fails
//!   (hooks released) or stalls (hooks held until cancelled): a random choice. It answers
//!   `Ack{s, completed}`. A node that runs another snapshot refuses (`Ack{s, false}`); a node that
//!   already answered answers again (retries are idempotent).
//! - The coordinator collects acks: all completed → durable decision *commit* (the snapshot is
//!   reported complete); any failure → *abort*. It then sends `End{s, commit}` until every node
//!   answered `EndAck{s}`, and may start the next snapshot meanwhile (a decided snapshot no longer
//!   needs the coordinator), so `Start{s+1}` can overtake `End{s}`.
//! - A node on `End{s, _}` cancels the task if it still runs (releasing the hooks), keeps or
//!   deletes its part, durably marks `s` ended (a late `Start{s}` is then ignored) and answers.
//! - `Retry` timer: resend `Start` to nodes that did not answer, at most `start_retries` times,
//!   then abort (a node may be gone); resend `End` to nodes that did not confirm, forever.
//! - Crash and restart: volatile state is lost. A node that restarts with `s` accepted, not ended,
//!   reports its part if it was completed, else a failure (its task died with the process, and its
//!   cut cannot be taken again). A coordinator that restarts re-collects a pending snapshot and
//!   resends `End` for decided ones that were not confirmed everywhere.
//!
//! Properties: a snapshot is committed (reported complete) only if every node completed its local
//! task for that snapshot (each node takes exactly one cut per snapshot id: the durable *accepted*
//! mark prevents a second); a node never runs two snapshots at once; `eventually` every snapshot
//! is decided and no node holds hooks (in particular an aborted snapshot's stalled tasks are
//! cancelled); `sometimes` a snapshot completes, `sometimes` one aborts.
//!
//! **`eventually` is incomplete here**: stateright checks it only on paths that end (a terminal
//! state or the boundary). Retries over a lossy network make cycles (resend, lose, resend …) on
//! which it reports nothing; and a path can be cut short by the message bound. The model keeps
//! terminal states reachable by bounding *total* restarts through the boundary (a crash that could
//! not be followed by a restart is outside it), so the property is checked on every quiescent run.

use std::borrow::Cow;

use stateright::actor::{
    Actor, ActorModel, ActorModelAction, ActorModelState, Id, LossyNetwork, Network, Out,
};
use stateright::{Expectation, Model};

use crate::spec::{parse_bug, BoundSpec, BoundValues, BugSpec, Entry};

pub type SnapshotId = u8;

pub const COORDINATOR: usize = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterBounds {
    pub nodes: usize,
    pub snapshots: usize,
    /// Times the coordinator resends `Start` before it gives up and aborts.
    pub start_retries: usize,
    /// Restarts (crash followed by recovery) over the whole run, any actor.
    pub crashes: usize,
    /// Messages in flight (the boundary); at least `2 * nodes`.
    pub messages_in_flight: usize,
}

impl Default for ClusterBounds {
    fn default() -> Self {
        ClusterBounds {
            nodes: 2,
            snapshots: 1,
            start_retries: 1,
            crashes: 1,
            messages_in_flight: 4,
        }
    }
}

pub const BOUNDS: &[BoundSpec] = &[
    BoundSpec {
        name: "nodes",
        default: 2,
        min: 1,
        max: 4,
        description: "data nodes (plus one coordinator)",
    },
    BoundSpec {
        name: "snapshots",
        default: 1,
        min: 1,
        max: 7,
        description: "snapshots the coordinator starts, one after the other",
    },
    BoundSpec {
        name: "start_retries",
        default: 1,
        min: 0,
        max: 4,
        description: "Start resends before the coordinator aborts",
    },
    BoundSpec {
        name: "crashes",
        default: 1,
        min: 0,
        max: 3,
        description: "crash-and-restart events in a run (any actor)",
    },
    BoundSpec {
        name: "messages_in_flight",
        default: 4,
        min: 2,
        max: 12,
        description: "messages in flight (state-space boundary, >= 2 * nodes)",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterBug {
    /// The coordinator commits once all but one node acked completion.
    CommitOnPartialAcks,
    /// A node accepts a second snapshot while one is still running (not ended) on it.
    NodeAcceptsSecondSnapshot,
    /// The coordinator sends `End` once and never resends it.
    EndWithoutRetry,
}

impl ClusterBug {
    pub const ALL: [ClusterBug; 3] = [
        ClusterBug::CommitOnPartialAcks,
        ClusterBug::NodeAcceptsSecondSnapshot,
        ClusterBug::EndWithoutRetry,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ClusterBug::CommitOnPartialAcks => "commit-on-partial-acks",
            ClusterBug::NodeAcceptsSecondSnapshot => "node-accepts-second-snapshot",
            ClusterBug::EndWithoutRetry => "end-without-retry",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            ClusterBug::CommitOnPartialAcks => {
                "the coordinator commits (reports complete) once all but one node acked completion"
            }
            ClusterBug::NodeAcceptsSecondSnapshot => {
                "a node accepts Start of a new snapshot while the previous one has not ended on it"
            }
            ClusterBug::EndWithoutRetry => {
                "the coordinator sends End once: if it is lost, a stalled task keeps its hooks \
                 forever (found by the `eventually` property)"
            }
        }
    }

    /// Bounds the bug needs to show (raised when it is seeded).
    pub fn needs(&self) -> &'static [(&'static str, usize)] {
        match self {
            // `Start{s+1}` can only overtake `End{s}` with a second snapshot.
            ClusterBug::NodeAcceptsSecondSnapshot => &[("snapshots", 2)],
            _ => &[],
        }
    }

    pub fn violates(&self) -> &'static str {
        match self {
            ClusterBug::CommitOnPartialAcks => PROPERTY_COMPLETE,
            ClusterBug::NodeAcceptsSecondSnapshot => PROPERTY_ONE_AT_A_TIME,
            ClusterBug::EndWithoutRetry => PROPERTY_RELEASED,
        }
    }
}

pub const PROPERTY_COMPLETE: &str =
    "a snapshot is reported complete only if every node completed its local task for it";
pub const PROPERTY_ONE_AT_A_TIME: &str = "no node runs two snapshots at once";
pub const PROPERTY_RELEASED: &str =
    "eventually every snapshot is decided and no node holds hooks (aborts release them)";
pub const PROPERTY_SOMETIMES_COMPLETE: &str = "a snapshot completes";
pub const PROPERTY_SOMETIMES_ABORT: &str = "a snapshot aborts";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterMsg {
    Start {
        snapshot: SnapshotId,
    },
    Ack {
        snapshot: SnapshotId,
        completed: bool,
    },
    End {
        snapshot: SnapshotId,
        commit: bool,
    },
    EndAck {
        snapshot: SnapshotId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterTimer {
    /// Resend what was not answered (and give up on `Start` after `start_retries`).
    Retry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskOutcome {
    Complete,
    Fail,
    Stall,
}

/// The random choice that resolves a node's local task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalTask {
    pub snapshot: SnapshotId,
    pub outcome: TaskOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Pending,
    Commit,
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecisionRecord {
    pub snapshot: SnapshotId,
    pub decision: Decision,
    /// Every node confirmed `End`.
    pub ended_everywhere: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinatorDisk {
    pub next_snapshot: SnapshotId,
    pub decisions: Vec<DecisionRecord>,
    pub restarts: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Collecting {
    pub snapshot: SnapshotId,
    /// Per node (index = node number - 1): its answer, if any.
    pub acks: Vec<Option<bool>>,
    pub retries: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ending {
    pub snapshot: SnapshotId,
    pub commit: bool,
    /// Bit mask of nodes (bit = node number - 1) that confirmed.
    pub confirmed: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinatorState {
    pub disk: CoordinatorDisk,
    pub collecting: Option<Collecting>,
    pub ending: Vec<Ending>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Hooks installed at the node's cut; the task is working.
    Running,
    /// Hooks installed; the task makes no progress until cancelled.
    Stalled,
    /// Part written durably; hooks released.
    Completed,
    /// Hooks released; the part is unusable.
    Failed,
}

impl TaskStatus {
    pub fn holds_hooks(&self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::Stalled)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    pub snapshot: SnapshotId,
    pub status: TaskStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeDisk {
    /// The snapshot accepted and not ended yet, and whether its part is complete on disk.
    pub accepted: Option<(SnapshotId, bool)>,
    /// Bit mask of snapshot ids that ended on this node.
    pub ended: u8,
    /// Ghost: bit mask of snapshot ids whose local task completed on this node.
    pub completed: u8,
    pub restarts: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeState {
    pub disk: NodeDisk,
    /// Snapshots running on this node (accepted, not ended). At most one unless a bug is seeded.
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClusterActorState {
    Coordinator(CoordinatorState),
    Node(NodeState),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClusterStorage {
    Coordinator(CoordinatorDisk),
    Node(NodeDisk),
}

#[derive(Clone, Debug)]
pub enum ClusterActor {
    Coordinator {
        nodes: usize,
        snapshots: usize,
        start_retries: usize,
        bug: Option<ClusterBug>,
    },
    Node {
        bug: Option<ClusterBug>,
    },
}

fn node_id(node_index: usize) -> Id {
    Id::from(node_index + 1)
}

fn snapshot_bit(snapshot: SnapshotId) -> u8 {
    1 << snapshot
}

impl ClusterActor {
    fn coordinator_start(
        &self,
        disk: Option<&ClusterStorage>,
        o: &mut Out<Self>,
    ) -> ClusterActorState {
        let ClusterActor::Coordinator {
            nodes, snapshots, ..
        } = *self
        else {
            unreachable!()
        };
        let disk = match disk {
            Some(ClusterStorage::Coordinator(disk)) => {
                let mut disk = disk.clone();
                disk.restarts = disk.restarts.saturating_add(1);
                disk
            }
            _ => CoordinatorDisk {
                next_snapshot: 1,
                decisions: Vec::new(),
                restarts: 0,
            },
        };
        o.save(ClusterStorage::Coordinator(disk.clone()));
        let mut state = CoordinatorState {
            disk,
            collecting: None,
            ending: Vec::new(),
        };
        // Resume after a restart: re-collect the pending snapshot, re-end the decided ones (only
        // the oldest is sent now, the `Retry` timer sends the others in turn).
        for record in &state.disk.decisions {
            match record.decision {
                Decision::Pending => {
                    state.collecting = Some(Collecting {
                        snapshot: record.snapshot,
                        acks: vec![None; nodes],
                        retries: 0,
                    });
                    for node in 0..nodes {
                        o.send(
                            node_id(node),
                            ClusterMsg::Start {
                                snapshot: record.snapshot,
                            },
                        );
                    }
                }
                Decision::Commit | Decision::Abort if !record.ended_everywhere => {
                    let commit = record.decision == Decision::Commit;
                    state.ending.push(Ending {
                        snapshot: record.snapshot,
                        commit,
                        confirmed: 0,
                    });
                    if state.ending.len() > 1 {
                        continue;
                    }
                    for node in 0..nodes {
                        o.send(
                            node_id(node),
                            ClusterMsg::End {
                                snapshot: record.snapshot,
                                commit,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
        self.begin_next(&mut state, snapshots, o);
        self.arm_timers(&state, o);
        ClusterActorState::Coordinator(state)
    }

    /// Starts the next snapshot if none is being collected: records it durably as pending, then
    /// sends `Start` to every node. A decided snapshot does not hold the next one back, so
    /// `Start{s+1}` races `End{s}` on the network.
    fn begin_next(&self, state: &mut CoordinatorState, snapshots: usize, o: &mut Out<Self>) {
        let ClusterActor::Coordinator { nodes, .. } = *self else {
            unreachable!()
        };
        if state.collecting.is_some() || state.disk.next_snapshot as usize > snapshots {
            return;
        }
        let snapshot = state.disk.next_snapshot;
        state.disk.next_snapshot += 1;
        state.disk.decisions.push(DecisionRecord {
            snapshot,
            decision: Decision::Pending,
            ended_everywhere: false,
        });
        o.save(ClusterStorage::Coordinator(state.disk.clone()));
        state.collecting = Some(Collecting {
            snapshot,
            acks: vec![None; nodes],
            retries: 0,
        });
        for node in 0..nodes {
            o.send(node_id(node), ClusterMsg::Start { snapshot });
        }
    }

    fn arm_timers(&self, state: &CoordinatorState, o: &mut Out<Self>) {
        let ClusterActor::Coordinator { bug, .. } = *self else {
            unreachable!()
        };
        let ending_needs_retry =
            !state.ending.is_empty() && bug != Some(ClusterBug::EndWithoutRetry);
        if state.collecting.is_some() || ending_needs_retry {
            o.set_timer(ClusterTimer::Retry, stateright::actor::model_timeout());
        } else {
            o.cancel_timer(ClusterTimer::Retry);
        }
    }

    /// Records the decision durably and sends `End` to every node.
    fn decide(&self, state: &mut CoordinatorState, commit: bool, o: &mut Out<Self>) {
        let ClusterActor::Coordinator { nodes, .. } = *self else {
            unreachable!()
        };
        let collecting = state
            .collecting
            .take()
            .expect("deciding a collected snapshot");
        let snapshot = collecting.snapshot;
        for record in state.disk.decisions.iter_mut() {
            if record.snapshot == snapshot {
                record.decision = if commit {
                    Decision::Commit
                } else {
                    Decision::Abort
                };
            }
        }
        o.save(ClusterStorage::Coordinator(state.disk.clone()));
        state.ending.push(Ending {
            snapshot,
            commit,
            confirmed: 0,
        });
        for node in 0..nodes {
            o.send(node_id(node), ClusterMsg::End { snapshot, commit });
        }
        let ClusterActor::Coordinator { snapshots, .. } = *self else {
            unreachable!()
        };
        self.begin_next(state, snapshots, o);
    }

    fn coordinator_on_msg(
        &self,
        state: &mut Cow<ClusterActorState>,
        src: Id,
        msg: ClusterMsg,
        o: &mut Out<Self>,
    ) {
        let ClusterActor::Coordinator { nodes, bug, .. } = *self else {
            unreachable!()
        };
        let ClusterActorState::Coordinator(current) = state.as_ref() else {
            unreachable!()
        };
        let node = usize::from(src) - 1;
        match msg {
            ClusterMsg::Ack {
                snapshot,
                completed,
            } => {
                let Some(collecting) = &current.collecting else {
                    return;
                };
                if collecting.snapshot != snapshot || collecting.acks[node].is_some() {
                    return;
                }
                let ClusterActorState::Coordinator(next) = state.to_mut() else {
                    unreachable!()
                };
                let collecting = next.collecting.as_mut().expect("checked above");
                collecting.acks[node] = Some(completed);
                let completed_count = collecting.acks.iter().filter(|a| **a == Some(true)).count();
                let failed = collecting.acks.contains(&Some(false));
                let commit_quorum = if bug == Some(ClusterBug::CommitOnPartialAcks) {
                    nodes.saturating_sub(1).max(1)
                } else {
                    nodes
                };
                if failed {
                    self.decide(next, false, o);
                } else if completed_count >= commit_quorum {
                    self.decide(next, true, o);
                }
                self.arm_timers(next, o);
            }
            ClusterMsg::EndAck { snapshot } => {
                let Some(index) = current.ending.iter().position(|e| e.snapshot == snapshot) else {
                    return;
                };
                if current.ending[index].confirmed & (1 << node) != 0 {
                    return;
                }
                let ClusterActorState::Coordinator(next) = state.to_mut() else {
                    unreachable!()
                };
                next.ending[index].confirmed |= 1 << node;
                if next.ending[index].confirmed.count_ones() as usize == nodes {
                    next.ending.remove(index);
                    for record in next.disk.decisions.iter_mut() {
                        if record.snapshot == snapshot {
                            record.ended_everywhere = true;
                        }
                    }
                    o.save(ClusterStorage::Coordinator(next.disk.clone()));
                }
                self.arm_timers(next, o);
            }
            ClusterMsg::Start { .. } | ClusterMsg::End { .. } => {}
        }
    }

    fn coordinator_on_timeout(
        &self,
        state: &mut Cow<ClusterActorState>,
        timer: &ClusterTimer,
        o: &mut Out<Self>,
    ) {
        let ClusterActor::Coordinator {
            nodes,
            start_retries,
            bug,
            ..
        } = *self
        else {
            unreachable!()
        };
        let ClusterActorState::Coordinator(next) = state.to_mut() else {
            unreachable!()
        };
        match timer {
            ClusterTimer::Retry => {
                // No timeout sends more than `2 * nodes` messages (the boundary must not end runs
                // on its own): an abort (End + the next Start) replaces the End resends.
                let mut resend_end = bug != Some(ClusterBug::EndWithoutRetry);
                if let Some(collecting) = next.collecting.as_mut() {
                    if (collecting.retries as usize) < start_retries {
                        collecting.retries += 1;
                        for (node, ack) in collecting.acks.iter().enumerate() {
                            if ack.is_none() {
                                o.send(
                                    node_id(node),
                                    ClusterMsg::Start {
                                        snapshot: collecting.snapshot,
                                    },
                                );
                            }
                        }
                    } else {
                        // A node did not answer in time: it may be gone. Abort.
                        self.decide(next, false, o);
                        resend_end = false;
                    }
                }
                // One decided snapshot at a time (the oldest).
                if resend_end {
                    if let Some(ending) = next.ending.first() {
                        for node in 0..nodes {
                            if ending.confirmed & (1 << node) == 0 {
                                o.send(
                                    node_id(node),
                                    ClusterMsg::End {
                                        snapshot: ending.snapshot,
                                        commit: ending.commit,
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
        let next = match state.as_ref() {
            ClusterActorState::Coordinator(next) => next.clone(),
            _ => unreachable!(),
        };
        self.arm_timers(&next, o);
    }

    fn node_start(&self, disk: Option<&ClusterStorage>, o: &mut Out<Self>) -> ClusterActorState {
        let disk = match disk {
            Some(ClusterStorage::Node(disk)) => {
                let mut disk = disk.clone();
                disk.restarts = disk.restarts.saturating_add(1);
                disk
            }
            _ => NodeDisk {
                accepted: None,
                ended: 0,
                completed: 0,
                restarts: 0,
            },
        };
        o.save(ClusterStorage::Node(disk.clone()));
        // The hooks died with the process; a part completed before the crash is on disk.
        let tasks = disk
            .accepted
            .map(|(snapshot, completed)| Task {
                snapshot,
                status: if completed {
                    TaskStatus::Completed
                } else {
                    TaskStatus::Failed
                },
            })
            .into_iter()
            .collect();
        ClusterActorState::Node(NodeState { disk, tasks })
    }

    fn node_on_msg(
        &self,
        state: &mut Cow<ClusterActorState>,
        src: Id,
        msg: ClusterMsg,
        o: &mut Out<Self>,
    ) {
        let ClusterActor::Node { bug } = *self else {
            unreachable!()
        };
        let ClusterActorState::Node(current) = state.as_ref() else {
            unreachable!()
        };
        match msg {
            ClusterMsg::Start { snapshot } => {
                if current.disk.ended & snapshot_bit(snapshot) != 0 {
                    return; // a late duplicate of an ended snapshot
                }
                if let Some(task) = current.tasks.iter().find(|t| t.snapshot == snapshot) {
                    match task.status {
                        TaskStatus::Completed => o.send(
                            src,
                            ClusterMsg::Ack {
                                snapshot,
                                completed: true,
                            },
                        ),
                        TaskStatus::Failed => o.send(
                            src,
                            ClusterMsg::Ack {
                                snapshot,
                                completed: false,
                            },
                        ),
                        TaskStatus::Running | TaskStatus::Stalled => {}
                    }
                    return;
                }
                if !current.tasks.is_empty() && bug != Some(ClusterBug::NodeAcceptsSecondSnapshot) {
                    // A snapshot is already running here: refuse the new one.
                    o.send(
                        src,
                        ClusterMsg::Ack {
                            snapshot,
                            completed: false,
                        },
                    );
                    return;
                }
                let ClusterActorState::Node(next) = state.to_mut() else {
                    unreachable!()
                };
                next.disk.accepted = Some((snapshot, false));
                o.save(ClusterStorage::Node(next.disk.clone()));
                next.tasks.push(Task {
                    snapshot,
                    status: TaskStatus::Running,
                });
                o.choose_random(
                    task_key(snapshot),
                    [TaskOutcome::Complete, TaskOutcome::Fail, TaskOutcome::Stall]
                        .into_iter()
                        .map(|outcome| LocalTask { snapshot, outcome })
                        .collect(),
                );
            }
            ClusterMsg::End { snapshot, .. } => {
                let ClusterActorState::Node(next) = state.to_mut() else {
                    unreachable!()
                };
                // Cancel the task if it still runs (hooks released), keep the part on commit and
                // delete it on abort (not modelled beyond the durable marks), end the snapshot.
                if next.tasks.iter().any(|t| t.snapshot == snapshot) {
                    o.remove_random(task_key(snapshot));
                }
                next.tasks.retain(|t| t.snapshot != snapshot);
                next.disk.ended |= snapshot_bit(snapshot);
                if next.disk.accepted.map(|(s, _)| s) == Some(snapshot) {
                    next.disk.accepted = None;
                }
                o.save(ClusterStorage::Node(next.disk.clone()));
                o.send(src, ClusterMsg::EndAck { snapshot });
            }
            ClusterMsg::Ack { .. } | ClusterMsg::EndAck { .. } => {}
        }
    }

    fn node_on_random(
        &self,
        state: &mut Cow<ClusterActorState>,
        random: &LocalTask,
        o: &mut Out<Self>,
    ) {
        let ClusterActorState::Node(next) = state.to_mut() else {
            unreachable!()
        };
        let Some(task) = next
            .tasks
            .iter_mut()
            .find(|t| t.snapshot == random.snapshot && t.status == TaskStatus::Running)
        else {
            return;
        };
        let snapshot = random.snapshot;
        match random.outcome {
            TaskOutcome::Complete => {
                task.status = TaskStatus::Completed;
                if next.disk.accepted.map(|(s, _)| s) == Some(snapshot) {
                    next.disk.accepted = Some((snapshot, true));
                }
                next.disk.completed |= snapshot_bit(snapshot);
                o.save(ClusterStorage::Node(next.disk.clone()));
                o.send(
                    Id::from(COORDINATOR),
                    ClusterMsg::Ack {
                        snapshot,
                        completed: true,
                    },
                );
            }
            TaskOutcome::Fail => {
                task.status = TaskStatus::Failed;
                o.send(
                    Id::from(COORDINATOR),
                    ClusterMsg::Ack {
                        snapshot,
                        completed: false,
                    },
                );
            }
            TaskOutcome::Stall => task.status = TaskStatus::Stalled,
        }
    }
}

fn task_key(snapshot: SnapshotId) -> String {
    format!("local-task-{snapshot}")
}

impl Actor for ClusterActor {
    type Msg = ClusterMsg;
    type State = ClusterActorState;
    type Timer = ClusterTimer;
    type Random = LocalTask;
    type Storage = ClusterStorage;

    fn on_start(
        &self,
        _id: Id,
        storage: &Option<ClusterStorage>,
        o: &mut Out<Self>,
    ) -> Self::State {
        match self {
            ClusterActor::Coordinator { .. } => self.coordinator_start(storage.as_ref(), o),
            ClusterActor::Node { .. } => self.node_start(storage.as_ref(), o),
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<Self::State>,
        src: Id,
        msg: Self::Msg,
        o: &mut Out<Self>,
    ) {
        match self {
            ClusterActor::Coordinator { .. } => self.coordinator_on_msg(state, src, msg, o),
            ClusterActor::Node { .. } => self.node_on_msg(state, src, msg, o),
        }
    }

    fn on_timeout(
        &self,
        _id: Id,
        state: &mut Cow<Self::State>,
        timer: &Self::Timer,
        o: &mut Out<Self>,
    ) {
        if let ClusterActor::Coordinator { .. } = self {
            self.coordinator_on_timeout(state, timer, o);
        }
    }

    fn on_random(
        &self,
        _id: Id,
        state: &mut Cow<Self::State>,
        random: &Self::Random,
        o: &mut Out<Self>,
    ) {
        if let ClusterActor::Node { .. } = self {
            self.node_on_random(state, random, o);
        }
    }

    fn name(&self) -> String {
        match self {
            ClusterActor::Coordinator { .. } => "coordinator".to_owned(),
            ClusterActor::Node { .. } => "node".to_owned(),
        }
    }
}

/// The model configuration (the actor model's `cfg`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub bounds: ClusterBounds,
    pub bug: Option<ClusterBug>,
}

pub type ClusterModel = ActorModel<ClusterActor, ClusterConfig, ()>;
pub type ClusterState = ActorModelState<ClusterActor, ()>;
pub type ClusterAction = ActorModelAction<ClusterMsg, ClusterTimer, LocalTask>;

fn coordinator_disk(state: &ClusterState) -> Option<&CoordinatorDisk> {
    match state.actor_storages.get(COORDINATOR)? {
        Some(ClusterStorage::Coordinator(disk)) => Some(disk),
        _ => None,
    }
}

fn node_disks(state: &ClusterState) -> impl Iterator<Item = Option<&NodeDisk>> {
    state
        .actor_storages
        .iter()
        .skip(1)
        .map(|storage| match storage {
            Some(ClusterStorage::Node(disk)) => Some(disk),
            _ => None,
        })
}

fn restarts(state: &ClusterState) -> usize {
    state
        .actor_storages
        .iter()
        .map(|storage| match storage {
            Some(ClusterStorage::Coordinator(disk)) => disk.restarts as usize,
            Some(ClusterStorage::Node(disk)) => disk.restarts as usize,
            None => 0,
        })
        .sum()
}

fn decided(state: &ClusterState, decision: Decision) -> bool {
    coordinator_disk(state)
        .is_some_and(|disk| disk.decisions.iter().any(|r| r.decision == decision))
}

/// Builds the cluster model.
pub fn cluster_model(bounds: ClusterBounds, bug: Option<ClusterBug>) -> ClusterModel {
    assert!(
        bounds.nodes >= 1 && bounds.nodes <= 7,
        "node sets are u8 bit masks"
    );
    assert!(bounds.snapshots <= 7, "snapshot sets are u8 bit masks");
    assert!(
        bounds.messages_in_flight >= 2 * bounds.nodes,
        "a restarting coordinator sends up to 2 * nodes messages at once"
    );
    let coordinator = ClusterActor::Coordinator {
        nodes: bounds.nodes,
        snapshots: bounds.snapshots,
        start_retries: bounds.start_retries,
        bug,
    };
    ActorModel::new(ClusterConfig { bounds, bug }, ())
        .actor(coordinator)
        .actors((0..bounds.nodes).map(|_| ClusterActor::Node { bug }))
        .init_network(Network::new_unordered_nonduplicating([]))
        .lossy_network(LossyNetwork::Yes)
        .max_crashes(if bounds.crashes > 0 { 1 } else { 0 })
        .within_boundary(|cfg, state| {
            let restarts = restarts(state);
            // A crash that could not be followed by a restart is outside the boundary, so that
            // runs end in quiescent (terminal) states where `eventually` is checked.
            let stuck_crash = restarts >= cfg.bounds.crashes && state.crashed.contains(&true);
            state.network.len() <= cfg.bounds.messages_in_flight
                && restarts <= cfg.bounds.crashes
                && !stuck_crash
        })
        .property(Expectation::Always, PROPERTY_COMPLETE, |_, state| {
            let Some(disk) = coordinator_disk(state) else {
                return true;
            };
            disk.decisions
                .iter()
                .filter(|r| r.decision == Decision::Commit)
                .all(|r| {
                    node_disks(state).all(|node| {
                        node.is_some_and(|node| node.completed & snapshot_bit(r.snapshot) != 0)
                    })
                })
        })
        .property(Expectation::Always, PROPERTY_ONE_AT_A_TIME, |_, state| {
            state.actor_states.iter().all(|actor| match actor.as_ref() {
                ClusterActorState::Node(node) => node.tasks.len() <= 1,
                ClusterActorState::Coordinator(_) => true,
            })
        })
        .property(
            Expectation::Eventually,
            PROPERTY_RELEASED,
            |model, state| {
                let all_decided = coordinator_disk(state).is_some_and(|disk| {
                    disk.decisions.len() == model.cfg.bounds.snapshots
                        && disk
                            .decisions
                            .iter()
                            .all(|r| r.decision != Decision::Pending)
                });
                let hooks_held = state.actor_states.iter().any(|actor| match actor.as_ref() {
                    ClusterActorState::Node(node) => {
                        node.tasks.iter().any(|t| t.status.holds_hooks())
                    }
                    ClusterActorState::Coordinator(_) => false,
                });
                all_decided && !hooks_held
            },
        )
        .property(
            Expectation::Sometimes,
            PROPERTY_SOMETIMES_COMPLETE,
            |_, state| decided(state, Decision::Commit),
        )
        .property(
            Expectation::Sometimes,
            PROPERTY_SOMETIMES_ABORT,
            |_, state| decided(state, Decision::Abort),
        )
}

fn actor_name(id: Id) -> String {
    match usize::from(id) {
        COORDINATOR => "coordinator".to_owned(),
        n => format!("node {n}"),
    }
}

fn message_words(msg: &ClusterMsg) -> String {
    match *msg {
        ClusterMsg::Start { snapshot } => format!("Start(snapshot {snapshot})"),
        ClusterMsg::Ack {
            snapshot,
            completed: true,
        } => format!("Ack(snapshot {snapshot}: local task completed)"),
        ClusterMsg::Ack {
            snapshot,
            completed: false,
        } => format!("Ack(snapshot {snapshot}: failed or refused)"),
        ClusterMsg::End {
            snapshot,
            commit: true,
        } => format!("End(snapshot {snapshot}: commit)"),
        ClusterMsg::End {
            snapshot,
            commit: false,
        } => format!("End(snapshot {snapshot}: abort)"),
        ClusterMsg::EndAck { snapshot } => format!("EndAck(snapshot {snapshot})"),
    }
}

/// `action`, taken from `state`, in the engine's words.
pub fn describe(model: &ClusterModel, state: &ClusterState, action: &ClusterAction) -> String {
    let next = model.next_state(state, action.clone());
    match action {
        ActorModelAction::Deliver { src, dst, msg } => {
            let mut line = format!(
                "{} receives {} from {}",
                actor_name(*dst),
                message_words(msg),
                actor_name(*src)
            );
            if let Some(next) = &next {
                let index = usize::from(*dst);
                match (
                    state.actor_states[index].as_ref(),
                    next.actor_states[index].as_ref(),
                ) {
                    (ClusterActorState::Node(before), ClusterActorState::Node(after)) => {
                        if after.tasks.len() > before.tasks.len() {
                            line.push_str(
                                ": installs its hooks at its cut and starts its local task",
                            );
                        } else if after.tasks.len() < before.tasks.len() {
                            line.push_str(": cancels/finishes its task, hooks released");
                        }
                    }
                    (
                        ClusterActorState::Coordinator(before),
                        ClusterActorState::Coordinator(after),
                    ) => {
                        let before_id = before.collecting.as_ref().map(|c| c.snapshot);
                        let after_id = after.collecting.as_ref().map(|c| c.snapshot);
                        if before_id.is_some() && before_id != after_id {
                            let commit = after.ending.last().is_some_and(|e| e.commit);
                            line.push_str(if commit {
                                ": decides COMMIT, snapshot reported complete"
                            } else {
                                ": decides ABORT"
                            });
                            if let Some(started) = &after.collecting {
                                line.push_str(&format!(
                                    "; starts snapshot {}, sends Start to every node",
                                    started.snapshot
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            line
        }
        ActorModelAction::Drop(envelope) => format!(
            "network loses {} from {} to {}",
            message_words(&envelope.msg),
            actor_name(envelope.src),
            actor_name(envelope.dst)
        ),
        ActorModelAction::Timeout(id, ClusterTimer::Retry) => {
            let aborts = match (state.actor_states[usize::from(*id)].as_ref(), next.as_ref()) {
                (ClusterActorState::Coordinator(before), Some(next)) => {
                    let ClusterActorState::Coordinator(after) =
                        next.actor_states[usize::from(*id)].as_ref()
                    else {
                        unreachable!()
                    };
                    let before_id = before.collecting.as_ref().map(|c| c.snapshot);
                    before_id.is_some()
                        && before_id != after.collecting.as_ref().map(|c| c.snapshot)
                }
                _ => false,
            };
            if aborts {
                "coordinator times out waiting for acks, decides ABORT (and starts the next \
                 snapshot, if any)"
                    .to_owned()
            } else {
                "coordinator times out and resends Start/End to nodes that did not answer"
                    .to_owned()
            }
        }
        ActorModelAction::Crash(id) => format!("{} crashes", actor_name(*id)),
        ActorModelAction::Recover(id) => {
            format!("{} restarts from its durable state", actor_name(*id))
        }
        ActorModelAction::SelectRandom { actor, random, .. } => {
            let what = match random.outcome {
                TaskOutcome::Complete => "completes (part durable, hooks released), sends Ack",
                TaskOutcome::Fail => "fails (hooks released), sends Ack",
                TaskOutcome::Stall => "stalls (hooks held until cancelled)",
            };
            format!(
                "{}'s local task of snapshot {} {what}",
                actor_name(*actor),
                random.snapshot
            )
        }
    }
}

pub fn entry() -> Entry<ClusterModel> {
    Entry {
        name: "cluster",
        summary: "two-phase cluster snapshot over a lossy network with crashes (actors)",
        bounds: BOUNDS,
        bugs: || {
            ClusterBug::ALL
                .iter()
                .map(|b| BugSpec {
                    name: b.name(),
                    description: b.description(),
                    needs: b.needs(),
                })
                .collect()
        },
        build: |bounds: &BoundValues, bug| {
            let bug = parse_bug(&ClusterBug::ALL, ClusterBug::name, bug)?;
            let bounds = ClusterBounds {
                nodes: bounds.get("nodes"),
                snapshots: bounds.get("snapshots"),
                start_retries: bounds.get("start_retries"),
                crashes: bounds.get("crashes"),
                messages_in_flight: bounds.get("messages_in_flight"),
            };
            if bounds.messages_in_flight < 2 * bounds.nodes {
                return Err(format!(
                    "messages_in_flight must be at least 2 * nodes = {}",
                    2 * bounds.nodes
                ));
            }
            Ok(cluster_model(bounds, bug))
        },
        describe,
    }
}
