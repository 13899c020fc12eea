//! The lifecycle tier's reference: what each worker did to the store, with enough about every
//! call to say which states the engine may show after a crash (R1) and in a snapshot (S1).
//!
//! Each worker owns its partitions (ids `worker * PARTITION_STRIDE + n`, never reused) and its
//! metadata keys, so that the calls on one page or key are ordered by one thread and a page's
//! history is a list. Calls on shared things (sync, checkpoint, snapshots, listeners) race freely.
//!
//! Time is a logical clock shared by all threads ([`Clock`]): a call takes a tick when it starts
//! (`start`) and one when it has returned (`done`). A `sync`, `checkpoint` or `close` that
//! returned `Ok` makes durable every call that returned before it started, so the durable point
//! is the largest start tick of such a call: an entry with `done < durable` must survive a crash.
//!
//! A call that failed with an error that may have come after its record was logged (I/O, a
//! failed log, a poisoned engine) is *uncertain*: it may or may not have happened. The worker
//! then freezes the page, key or partition (no more calls on it until the next reopen), so that
//! a history holds at most one uncertain entry, at its end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use deltasnap::{Epoch, PartitionId};

/// Partition ids of worker `w` are `w * PARTITION_STRIDE + n`.
pub const PARTITION_STRIDE: u32 = 1 << 20;

/// The logical clock and the durable point.
#[derive(Debug)]
pub struct Clock {
    now: AtomicU64,
    durable: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            now: AtomicU64::new(1),
            durable: AtomicU64::new(1),
        }
    }
}

impl Clock {
    pub fn tick(&self) -> u64 {
        self.now.fetch_add(1, Ordering::SeqCst)
    }

    /// A sync, checkpoint or close that started at `start` returned `Ok`.
    pub fn made_durable(&self, start: u64) {
        self.durable.fetch_max(start, Ordering::SeqCst);
    }

    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }
}

/// When a call happened and whether it surely did.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub start: u64,
    /// 0 for what recovery found (before everything of this session).
    pub done: u64,
    pub certain: bool,
}

impl Stamp {
    pub const RECOVERED: Stamp = Stamp {
        start: 0,
        done: 0,
        certain: true,
    };

    pub fn durable(&self, durable: u64) -> bool {
        self.certain && self.done < durable
    }
}

/// A page's or key's value after one call. `epoch` is the receipt's (0 for a recovered value,
/// which every later snapshot holds; unknown for an uncertain call).
#[derive(Debug, Clone)]
pub struct Entry<V> {
    pub value: V,
    pub stamp: Stamp,
    pub epoch: Option<Epoch>,
}

/// The values of one page or key, in the order its owner set them.
#[derive(Debug, Clone)]
pub struct History<V> {
    pub entries: Vec<Entry<V>>,
    /// An uncertain call happened: no more calls until the next reopen.
    pub frozen: bool,
}

impl<V: Clone + PartialEq + std::fmt::Debug> History<V> {
    pub fn recovered(value: V) -> Self {
        History {
            entries: vec![Entry {
                value,
                stamp: Stamp::RECOVERED,
                epoch: Some(0),
            }],
            frozen: false,
        }
    }

    pub fn latest(&self) -> &V {
        &self
            .entries
            .last()
            .expect("a history has its first value")
            .value
    }

    pub fn push(&mut self, value: V, stamp: Stamp, epoch: Option<Epoch>) {
        self.frozen |= !stamp.certain;
        self.entries.push(Entry {
            value,
            stamp,
            epoch,
        });
    }

    /// R1: the values a crash may leave, from the last durable one on.
    pub fn after_crash(&self, durable: u64) -> &[Entry<V>] {
        let first = self
            .entries
            .iter()
            .rposition(|e| e.stamp.durable(durable))
            .expect("the recovered value is durable");
        &self.entries[first..]
    }

    /// S1: the value at cut `cut` (the last certain entry of epoch `<= cut`), and any uncertain
    /// value.
    pub fn at_cut(&self, cut: Epoch) -> Vec<&V> {
        let mut allowed: Vec<&V> = self
            .entries
            .iter()
            .rev()
            .find(|e| e.stamp.certain && e.epoch.is_some_and(|epoch| epoch <= cut))
            .map(|e| &e.value)
            .into_iter()
            .collect();
        allowed.extend(
            self.entries
                .iter()
                .filter(|e| !e.stamp.certain)
                .map(|e| &e.value),
        );
        allowed
    }

    /// Whether a certain entry of epoch `<= cut` was set in this session.
    pub fn written_by_cut(&self, cut: Epoch) -> bool {
        self.entries
            .iter()
            .skip(1)
            .any(|e| e.stamp.certain && e.epoch.is_some_and(|epoch| epoch <= cut))
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub allocated: Stamp,
    pub history: History<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Partition {
    pub created: Stamp,
    pub dropped: Option<Stamp>,
    pub pages: Vec<Page>,
    /// An uncertain create, drop or allocate: no more calls until the next reopen.
    pub frozen: bool,
}

impl Partition {
    pub fn new(created: Stamp) -> Self {
        Partition {
            created,
            dropped: None,
            pages: Vec::new(),
            frozen: !created.certain,
        }
    }

    /// Exists as far as its owner knows (created, not dropped).
    pub fn live(&self) -> bool {
        self.dropped.is_none()
    }
}

/// What one worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerModel {
    pub index: u32,
    pub next_partition: u32,
    pub partitions: BTreeMap<PartitionId, Partition>,
    pub keys: BTreeMap<Vec<u8>, History<Option<Vec<u8>>>>,
}

impl WorkerModel {
    pub fn new(index: u32) -> Self {
        WorkerModel {
            index,
            ..WorkerModel::default()
        }
    }

    pub fn owns(&self, id: PartitionId) -> bool {
        id.0 / PARTITION_STRIDE == self.index
    }
}

pub fn key_prefix(worker: u32) -> Vec<u8> {
    format!("w{worker}/").into_bytes()
}

/// Every page's payload and the metadata, as read from an engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreState {
    pub partitions: BTreeMap<PartitionId, Vec<Vec<u8>>>,
    pub metadata: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StoreState {
    pub fn first_difference(&self, other: &StoreState) -> String {
        if self.metadata != other.metadata {
            return format!("metadata {:?} vs {:?}", self.metadata, other.metadata);
        }
        let shape = |s: &StoreState| -> Vec<(PartitionId, usize)> {
            s.partitions.iter().map(|(id, p)| (*id, p.len())).collect()
        };
        if shape(self) != shape(other) {
            return format!("partitions {:?} vs {:?}", shape(self), shape(other));
        }
        for (id, pages) in &self.partitions {
            for (index, page) in pages.iter().enumerate() {
                if other.partitions[id][index] != *page {
                    return format!("partition {id} page {index}");
                }
            }
        }
        "no difference".into()
    }
}

fn short(bytes: &[u8]) -> String {
    let nonzero: Vec<_> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0)
        .take(6)
        .collect();
    format!("{nonzero:?}")
}

/// R1 after a crash, a close or a drop: `found` must hold every durable call of every worker, and
/// nothing no worker did.
pub fn check_recovered(
    models: &[WorkerModel],
    found: &StoreState,
    durable: u64,
) -> Result<(), String> {
    let mut known = 0;
    for model in models {
        for (id, partition) in &model.partitions {
            let pages = found.partitions.get(id);
            known += pages.is_some() as usize;
            let dropped_durably = partition.dropped.is_some_and(|d| d.durable(durable));
            let must_exist = partition.created.durable(durable) && partition.dropped.is_none();
            match pages {
                Some(_) if dropped_durably => {
                    return Err(format!(
                        "partition {id} is back although its drop was synced"
                    ))
                }
                None if must_exist => {
                    return Err(format!(
                        "partition {id} is lost although its creation was synced (created {:?}, \
                         durable from {durable})",
                        partition.created
                    ))
                }
                None => continue,
                Some(pages) => check_recovered_pages(*id, partition, pages, durable)?,
            }
        }
    }
    if known != found.partitions.len() {
        let unknown: Vec<_> = found
            .partitions
            .keys()
            .filter(|id| !models.iter().any(|m| m.partitions.contains_key(id)))
            .collect();
        return Err(format!("partitions {unknown:?} were never created"));
    }
    for model in models {
        for (key, history) in &model.keys {
            let value = found.metadata.get(key).cloned();
            let allowed = history.after_crash(durable);
            if !allowed.iter().any(|e| e.value == value) {
                return Err(format!(
                    "metadata {:?} is {value:?}, not one of {:?} (the last synced value on)",
                    String::from_utf8_lossy(key),
                    allowed.iter().map(|e| &e.value).collect::<Vec<_>>()
                ));
            }
        }
    }
    if let Some(key) = found
        .metadata
        .keys()
        .find(|key| !models.iter().any(|m| m.keys.contains_key(*key)))
    {
        return Err(format!("metadata {key:?} was never written"));
    }
    Ok(())
}

fn check_recovered_pages(
    id: PartitionId,
    partition: &Partition,
    pages: &[Vec<u8>],
    durable: u64,
) -> Result<(), String> {
    let durable_pages = partition
        .pages
        .iter()
        .rposition(|p| p.allocated.durable(durable))
        .map_or(0, |last| last + 1);
    if pages.len() < durable_pages || pages.len() > partition.pages.len() {
        return Err(format!(
            "partition {id} has {} pages; {durable_pages} allocations were synced, {} made",
            pages.len(),
            partition.pages.len()
        ));
    }
    for (index, (found, page)) in pages.iter().zip(&partition.pages).enumerate() {
        let allowed = page.history.after_crash(durable);
        if !allowed.iter().any(|e| e.value == *found) {
            let synced = allowed[0].stamp.done;
            return Err(format!(
                "partition {id} page {index} holds {}, not one of the {} values from the last \
                 synced write (done at tick {synced}, durable point {durable}) on: lost a synced write",
                short(found),
                allowed.len()
            ));
        }
    }
    Ok(())
}

/// The models after recovery found `found`: every value is the new starting point.
pub fn rebuild(models: &mut [WorkerModel], found: &StoreState) {
    for model in models.iter_mut() {
        let mut partitions = BTreeMap::new();
        for (id, pages) in found.partitions.iter().filter(|(id, _)| model.owns(**id)) {
            let mut partition = Partition::new(Stamp::RECOVERED);
            partition.pages = pages
                .iter()
                .map(|page| Page {
                    allocated: Stamp::RECOVERED,
                    history: History::recovered(page.clone()),
                })
                .collect();
            partitions.insert(*id, partition);
        }
        model.partitions = partitions;
        let keys: Vec<Vec<u8>> = model.keys.keys().cloned().collect();
        model.keys = keys
            .into_iter()
            .map(|key| {
                let value = found.metadata.get(&key).cloned();
                (key, History::recovered(value))
            })
            .collect();
    }
}

/// When a snapshot was asked for and when its `wait` returned, on the clock.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSpan {
    pub requested: u64,
    pub published: u64,
}

/// S1: the restored snapshot `found` is the state at `cut`: every write of epoch `<= cut`, none
/// after. Partition creation and drops carry no epoch, so a partition is required only if it
/// existed before the snapshot was asked for (or has a write in the cut) and was not dropped
/// before the snapshot published, and refused only if dropped before the snapshot was asked for
/// or created after it published.
pub fn check_snapshot(
    models: &[WorkerModel],
    found: &StoreState,
    cut: Epoch,
    span: SnapshotSpan,
) -> Result<(), String> {
    for model in models {
        for (id, partition) in &model.partitions {
            let written = partition
                .pages
                .iter()
                .any(|p| p.history.written_by_cut(cut));
            let dropped_before = partition
                .dropped
                .is_some_and(|d| d.certain && d.done < span.requested);
            let created_after = partition.created.start > span.published;
            let kept = partition.dropped.is_none_or(|d| d.start > span.published);
            let existed = partition.created.certain && partition.created.done < span.requested;
            let pages = found.partitions.get(id);
            match pages {
                Some(_) if dropped_before || created_after => {
                    return Err(format!(
                        "partition {id} is in the snapshot of cut {cut} but was dropped before \
                         it or created after it"
                    ))
                }
                None if kept && (existed || written) => {
                    return Err(format!(
                        "partition {id} is missing from the snapshot of cut {cut}"
                    ))
                }
                None => continue,
                Some(pages) => {
                    let required = partition
                        .pages
                        .iter()
                        .rposition(|p| {
                            p.history.written_by_cut(cut)
                                || (p.allocated.certain && p.allocated.done < span.requested)
                        })
                        .map_or(0, |last| last + 1);
                    if pages.len() < required || pages.len() > partition.pages.len() {
                        return Err(format!(
                            "partition {id} has {} pages in the snapshot of cut {cut}; at least \
                             {required}, at most {} were allocated",
                            pages.len(),
                            partition.pages.len()
                        ));
                    }
                    for (index, (found, page)) in pages.iter().zip(&partition.pages).enumerate() {
                        let allowed = page.history.at_cut(cut);
                        if !allowed.contains(&found) {
                            return Err(format!(
                                "partition {id} page {index} in the snapshot of cut {cut} holds \
                                 {}, the state at the cut is {}",
                                short(found),
                                allowed.first().map_or("?".into(), |v| short(v))
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(id) = found
        .partitions
        .keys()
        .find(|id| !models.iter().any(|m| m.partitions.contains_key(id)))
    {
        return Err(format!("partition {id} in the snapshot was never created"));
    }
    for model in models {
        for (key, history) in &model.keys {
            let value = found.metadata.get(key).cloned();
            let allowed = history.at_cut(cut);
            if !allowed.contains(&&value) {
                return Err(format!(
                    "metadata {:?} is {value:?} in the snapshot of cut {cut}, the state at the \
                     cut is {:?}",
                    String::from_utf8_lossy(key),
                    allowed.first()
                ));
            }
        }
    }
    if let Some(key) = found
        .metadata
        .keys()
        .find(|key| !models.iter().any(|m| m.keys.contains_key(*key)))
    {
        return Err(format!(
            "metadata {key:?} in the snapshot was never written"
        ));
    }
    Ok(())
}
