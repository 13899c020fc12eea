//! Trace conformance: an engine run's recorded snapshot events ([`deltasnap::snapshot::trace`])
//! must be a behaviour of the [snapshot model](crate::snapshot) (DESIGN §6, trace validation).
//!
//! [`check`] maps the engine's events to a sequence of [`SnapshotAction`]s and steps the model
//! through it: at every step the mapped action must be one the model offers in that state
//! (`Model::actions`) and `Model::next_state` must accept it. This is what stateright's
//! `Path::from_actions` does, with the engine event that failed named in the error; the model's
//! `always` properties are checked at every state of the path as well, and the observable facts
//! the events carry (decisions, page images appended, copied and merged) must be the ones the
//! model produces. A snapshot that succeeded must also leave the model complete (every partition
//! merged).
//!
//! # The abstraction
//!
//! **Page contents → versions.** The model numbers a page's contents `v0, v1, …`; the engine's
//! events carry page images (footer LSN and crc). For each page, the image in the file at S's cut
//! is `v0`, and every further image a checkpoint writes gets the next version, in the order the
//! checkpoints write them (a page allocated at or after the cut has no image on disk: its first
//! written image is `v0`, the version the model's `Allocate` gives it). Any other image the
//! engine reports for the page (copied, captured, merged) must be one of these, or the trace is
//! rejected.
//!
//! **Writers.** Writers are not recorded: the model only sees them through what the checkpoints
//! write. Before each checkpoint's cut, the mapping emits the writers' steps that make the model
//! write the same versions: `Allocate` up to the highest page the checkpoint writes (for S: up to
//! `pages_at_cut`, all of which S must write), and `Write`s that bring each page it writes to the
//! version it writes. In the model those writes happen just before the cut; in the engine they
//! happened any time in the epoch, which the model cannot tell apart (a write is one atomic step,
//! and only the checkpoint's page writes reach the file).
//!
//! **Granularity.** One engine event is one model step, except:
//! - a checkpoint's begin is the writers' steps above, then `Cut`;
//! - the copier copies a chunk with one call outside the hook lock; the model reads it page by
//!   page (`ReadPage`). Each page's read is placed at the first point between the chunk's
//!   `Announce` and its `ChunkCopied`, not before the previous page's read, where the model's file
//!   holds the version the engine copied (the copy runs without the hook lock, so it may overlap
//!   a checkpoint's write of a page it copies); if there is no such point, the copied image was
//!   never in the file while the copier read: rejected;
//! - the merge's read of the delta after `close` is the model's `Apply`, and the delta must hold
//!   the model's delta, page for page and version for version;
//! - the engine's file write happens before `page_write_done`; the model's `WritePage` is both, at
//!   `page_write_done` (a read of the copier that saw the new image is placed after it, which the
//!   placement above does);
//! - the end of S reaches the partitions' protocols one by one in the engine; the model's
//!   `EndCheckpoint` is one step, at `on_checkpoint_end`. In between, nothing in the engine can
//!   depend on it: the checkpointer is busy, and the copier's steps do not look at it;
//! - a later checkpoint that writes no page of the snapshot's partitions has no model step (the
//!   model's `Cut` needs a dirty page); it touches nothing the snapshot sees.
//!
//! **What the model cannot express**, and what the mapping does about it:
//! - bounds: [`SnapshotBounds`] are taken from the trace (partitions, pages, versions per page,
//!   checkpoints after S, chunk size); the model counts in `u8`, so a trace beyond 255 pages,
//!   versions or pages per chunk is reported as unsupported (a [`Mismatch`] naming the bound);
//! - partitions with different file lengths: the model's initial state gives every partition
//!   `pages_on_disk` pages; the mapping starts from the same state with each partition's own
//!   `copy_end` ([`initial_state`]; for equal lengths it *is* the model's initial state, and then
//!   the actions also pass `Path::from_actions`, which the tests show);
//! - cancellation and failures: the model has none. The check stops at the first
//!   [`Event::Cancelled`] and reports where ([`Conformance::stopped_at_cancel`]);
//! - after the model's snapshot is complete the model stops; the engine's later checkpoints may
//!   still call the (closed) hooks: each such decision must be `Closed`, with nothing appended.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use deltasnap::snapshot::protocol::{Capture, DeltaPolicy};
use deltasnap::snapshot::trace::{Event, PageImage};
use deltasnap::{Epoch, PartitionId};
use stateright::{Expectation, Model, Property};

use crate::snapshot::{
    Checkpointer, PartitionState, SnapshotAction, SnapshotBounds, SnapshotModel, SnapshotState,
};

/// A trace the model accepts.
#[derive(Debug, Clone)]
pub struct Conformance {
    /// The model with the bounds taken from the trace.
    pub model: SnapshotModel,
    /// The state the actions start from (see [`initial_state`]).
    pub init: SnapshotState,
    /// The model's behaviour the trace maps to.
    pub actions: Vec<SnapshotAction>,
    pub final_state: SnapshotState,
    /// The index of the [`Event::Cancelled`] the check stopped at, if any.
    pub stopped_at_cancel: Option<usize>,
}

/// A trace the model does not accept: the first event that has no counterpart.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// Index of the event in the trace (the trace's length if the trace ended too early).
    pub event: usize,
    pub reason: String,
    /// The model's steps up to the mismatch, as engine events (the last ones).
    pub model_steps: Vec<String>,
    /// The whole trace, one line per event.
    pub trace: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "engine event {} is not a behaviour of the snapshot model: {}",
            self.event, self.reason
        )?;
        writeln!(f, "the model's last steps before it:")?;
        for line in &self.model_steps {
            writeln!(f, "    {line}")?;
        }
        writeln!(f, "the engine's trace:")?;
        for (index, line) in self.trace.iter().enumerate() {
            let mark = if index == self.event { ">>" } else { "  " };
            writeln!(f, "{mark}{index:4} {line}")?;
        }
        if self.event >= self.trace.len() {
            writeln!(f, ">> (end of trace)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// How many of the model's steps a [`Mismatch`] shows.
const MODEL_STEPS_SHOWN: usize = 40;

/// The model's initial state with `copy_end[p]` pages on disk in partition `p`, all at `v0`
/// (equal to `SnapshotModel::init_states()` when every partition has `pages_on_disk` pages).
pub fn initial_state(copy_end: &[u8]) -> SnapshotState {
    SnapshotState {
        partitions: copy_end
            .iter()
            .map(|&pages| {
                let pages = usize::from(pages);
                PartitionState {
                    memory: vec![0; pages],
                    dirty: vec![false; pages],
                    file: vec![0; pages],
                    pending: Vec::new(),
                    snapshot: None,
                }
            })
            .collect(),
        checkpointer: Checkpointer::Idle,
        checkpoints: 0,
        hooks_installed: false,
    }
}

/// Checks that `trace` (recorded from one snapshot under `policy`) is a behaviour of the snapshot
/// model. See the module docs for the mapping.
pub fn check(trace: &[Event], policy: DeltaPolicy) -> Result<Conformance, Mismatch> {
    let plan =
        Plan::of(trace).map_err(|(event, reason)| mismatch_without_model(trace, event, reason))?;
    let mut walker = Walker::new(trace, policy, plan);
    match walker.run() {
        Ok(stopped_at_cancel) => Ok(Conformance {
            model: walker.model.clone(),
            init: walker.init.clone(),
            actions: walker.actions.clone(),
            final_state: walker.state.clone(),
            stopped_at_cancel,
        }),
        Err(reason) => Err(walker.mismatch(reason)),
    }
}

fn mismatch_without_model(trace: &[Event], event: usize, reason: String) -> Mismatch {
    Mismatch {
        event,
        reason,
        model_steps: Vec::new(),
        trace: trace.iter().map(render_event).collect(),
    }
}

/// One engine event, one line.
pub fn render_event(event: &Event) -> String {
    let image = |image: &Option<PageImage>| {
        image.map_or("(unreadable)".to_string(), |i| {
            format!("lsn {} crc {:08x}", i.lsn, i.crc)
        })
    };
    match event {
        Event::Cut { epoch, partitions } => {
            let parts: Vec<String> = partitions
                .iter()
                .map(|p| {
                    format!(
                        "{} pages_at_cut {} copy_end {} file [{}]",
                        p.id,
                        p.pages_at_cut,
                        p.copy_end,
                        p.file
                            .iter()
                            .map(|i| i.map_or("?".to_string(), |i| format!("lsn {}", i.lsn)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            format!("cut of S = checkpoint {epoch}: {}", parts.join("; "))
        }
        Event::CheckpointBegin { epoch } => format!("checkpoint {epoch} begins"),
        Event::HookDecided {
            page,
            capture,
            image: written,
        } => format!("hook {page}: {capture:?} (writing {})", image(written)),
        Event::DeltaAppended { page, image: i } => {
            format!("delta append {page}: {}", image(i))
        }
        Event::PageWriteDone { index } => format!("page {index} written, hook call ends"),
        Event::CheckpointEnd { epoch } => format!("checkpoint {epoch} ends"),
        Event::Announce {
            partition,
            reading_end,
        } => format!("copier announces {partition} up to page {reading_end}"),
        Event::ChunkRead {
            partition,
            first,
            images,
        } => format!(
            "copier copied {partition} pages {first}..: [{}]",
            images.iter().map(image).collect::<Vec<_>>().join(", ")
        ),
        Event::ChunkCopied {
            partition,
            copied_end,
        } => format!("copier: {partition} copied up to page {copied_end}"),
        Event::CopyDone { partition } => format!("copier: {partition} copy done"),
        Event::Close { partition } => format!("merge closes {partition}"),
        Event::Merge { partition, delta } => format!(
            "merge reads the delta of {partition}: [{}]",
            delta
                .iter()
                .map(|(index, i)| format!("{index}: {}", image(i)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::Cancelled => "a hook is cancelled".to_string(),
    }
}

// ---- planning: checkpoints, page versions, bounds ----------------------------------------------

/// One checkpoint of the trace, from S's cut on.
#[derive(Debug)]
struct CheckpointPlan {
    epoch: Epoch,
    /// The pages it writes (partition, index, version), in order.
    writes: Vec<(PartitionId, u32, u8)>,
}

/// What the mapping learns from the whole trace before stepping the model.
#[derive(Debug)]
struct Plan {
    cut: usize,
    /// Model partition index of each partition at the cut.
    partitions: BTreeMap<PartitionId, u8>,
    /// Per page, its images in version order.
    versions: HashMap<(PartitionId, u32), Vec<Option<PageImage>>>,
    checkpoints: Vec<CheckpointPlan>,
    bounds: SnapshotBounds,
    copy_end: Vec<u8>,
}

type PlanError = (usize, String);

fn to_u8(value: u32, what: &str, event: usize) -> Result<u8, PlanError> {
    u8::try_from(value).map_err(|_| {
        (
            event,
            format!("unsupported: {what} {value} is beyond the model's u8 bounds"),
        )
    })
}

impl Plan {
    fn of(trace: &[Event]) -> Result<Plan, PlanError> {
        let Some(cut) = trace.iter().position(|e| matches!(e, Event::Cut { .. })) else {
            return Err((trace.len(), "the trace has no cut".to_string()));
        };
        if cut > 0 {
            return Err((0, "an event before the snapshot's cut".to_string()));
        }
        let Event::Cut {
            partitions: at_cut, ..
        } = &trace[cut]
        else {
            unreachable!("found above");
        };
        let mut partitions = BTreeMap::new();
        let mut versions: HashMap<(PartitionId, u32), Vec<Option<PageImage>>> = HashMap::new();
        let mut copy_end = Vec::new();
        let mut pages_max = 0u32;
        for (n, p) in at_cut.iter().enumerate() {
            partitions.insert(p.id, to_u8(n as u32, "partition count", cut)?);
            copy_end.push(to_u8(p.copy_end, "copy_end", cut)?);
            to_u8(p.pages_at_cut, "pages_at_cut", cut)?;
            pages_max = pages_max.max(p.pages_at_cut);
            if p.file.len() != p.copy_end as usize {
                return Err((
                    cut,
                    format!(
                        "{}: {} file images for copy_end {}",
                        p.id,
                        p.file.len(),
                        p.copy_end
                    ),
                ));
            }
            for (index, image) in p.file.iter().enumerate() {
                versions.insert((p.id, index as u32), vec![*image]);
            }
        }

        // The checkpoints and the images they write, in order.
        let mut checkpoints: Vec<CheckpointPlan> = Vec::new();
        let mut open: Option<Epoch> = None;
        let mut last_copied: HashMap<PartitionId, u32> = HashMap::new();
        let mut chunk_pages = 1u32;
        for (n, event) in trace.iter().enumerate() {
            match event {
                Event::Cut { epoch, .. } | Event::CheckpointBegin { epoch } => {
                    if n != cut && matches!(event, Event::Cut { .. }) {
                        return Err((n, "a second cut".to_string()));
                    }
                    if let Some(running) = open {
                        return Err((n, format!("checkpoint {epoch} begins while {running} runs")));
                    }
                    open = Some(*epoch);
                    checkpoints.push(CheckpointPlan {
                        epoch: *epoch,
                        writes: Vec::new(),
                    });
                }
                Event::CheckpointEnd { epoch } => {
                    if open != Some(*epoch) {
                        return Err((n, format!("checkpoint {epoch} ends but {open:?} runs")));
                    }
                    open = None;
                }
                Event::HookDecided { page, image, .. } => {
                    let Some(checkpoint) = checkpoints.last_mut().filter(|_| open.is_some()) else {
                        return Err((n, "a page write outside a checkpoint".to_string()));
                    };
                    if !partitions.contains_key(&page.partition) {
                        return Err((n, format!("a hook for {}, not in the cut", page.partition)));
                    }
                    pages_max = pages_max.max(page.index + 1);
                    let known = versions.entry((page.partition, page.index)).or_default();
                    if known.last() != Some(image) {
                        known.push(*image);
                    }
                    let version = known.iter().position(|i| i == image).expect("pushed") as u32;
                    let version = to_u8(version, "versions of a page", n)?;
                    checkpoint
                        .writes
                        .push((page.partition, page.index, version));
                }
                Event::Announce {
                    partition,
                    reading_end,
                } => {
                    let from = last_copied.get(partition).copied().unwrap_or(0);
                    chunk_pages = chunk_pages.max(reading_end.saturating_sub(from));
                }
                Event::ChunkCopied {
                    partition,
                    copied_end,
                } => {
                    last_copied.insert(*partition, *copied_end);
                }
                _ => {}
            }
        }
        let writes_per_page = versions.values().map(|v| v.len() - 1).max().unwrap_or(0);
        let bounds = SnapshotBounds {
            partitions: partitions.len() as u8,
            pages_on_disk: copy_end.first().copied().unwrap_or(0),
            pages_max: to_u8(pages_max, "pages of a partition", cut)?,
            writes_per_page: to_u8(writes_per_page as u32, "versions of a page", cut)?,
            checkpoints_after_cut: to_u8(
                checkpoints.len().saturating_sub(1) as u32,
                "checkpoints after S",
                cut,
            )?,
            chunk_pages: to_u8(chunk_pages, "pages per chunk", cut)?,
        };
        Ok(Plan {
            cut,
            partitions,
            versions,
            checkpoints,
            bounds,
            copy_end,
        })
    }
}

// ---- stepping the model ------------------------------------------------------------------------

/// The copier's chunk being read: the versions it copied, from the model's `read_next` on.
struct Reads {
    partition: u8,
    versions: Vec<u8>,
    /// The `ChunkRead` event they came from.
    event: usize,
}

struct Walker<'a> {
    trace: &'a [Event],
    plan: Plan,
    model: SnapshotModel,
    always: Vec<Property<SnapshotModel>>,
    init: SnapshotState,
    state: SnapshotState,
    actions: Vec<SnapshotAction>,
    /// Scratch for `Model::actions`.
    enabled: Vec<SnapshotAction>,
    next_checkpoint: usize,
    /// The running checkpoint has no model step (it writes nothing the snapshot sees).
    checkpoint_skipped: bool,
    /// The hook call in flight: model partition and page.
    in_flight: Option<(u8, u32)>,
    reads: Option<Reads>,
    consumed_reads: Vec<usize>,
    event: usize,
}

type StepResult = Result<(), String>;

impl<'a> Walker<'a> {
    fn new(trace: &'a [Event], policy: DeltaPolicy, plan: Plan) -> Self {
        let model = SnapshotModel::new(plan.bounds, policy, None);
        let always = model
            .properties()
            .into_iter()
            .filter(|p| p.expectation == Expectation::Always)
            .collect();
        let init = initial_state(&plan.copy_end);
        Walker {
            trace,
            event: plan.cut,
            plan,
            model,
            always,
            state: init.clone(),
            init,
            actions: Vec::new(),
            enabled: Vec::new(),
            next_checkpoint: 0,
            checkpoint_skipped: false,
            in_flight: None,
            reads: None,
            consumed_reads: Vec::new(),
        }
    }

    fn mismatch(&self, reason: String) -> Mismatch {
        let mut state = self.init.clone();
        let mut model_steps = Vec::new();
        for action in &self.actions {
            model_steps.push(self.model.describe_step(&state, action));
            match self.model.next_state(&state, action.clone()) {
                Some(next) => state = next,
                None => break,
            }
        }
        let skip = model_steps.len().saturating_sub(MODEL_STEPS_SHOWN);
        Mismatch {
            event: self.event,
            reason,
            model_steps: model_steps.split_off(skip),
            trace: self.trace.iter().map(render_event).collect(),
        }
    }

    /// Walks the trace; `Ok(Some(n))` if it stopped at a cancel at event `n`.
    fn run(&mut self) -> Result<Option<usize>, String> {
        for n in self.plan.cut..self.trace.len() {
            self.event = n;
            if matches!(self.trace[n], Event::Cancelled) {
                return Ok(Some(n));
            }
            if self.state.is_complete() {
                self.after_completion(n)?;
            } else {
                self.on_event(n)?;
            }
        }
        self.event = self.trace.len();
        if !self.state.is_complete() {
            return Err("the trace ends before every partition is merged".to_string());
        }
        Ok(None)
    }

    fn partition(&self, id: PartitionId) -> Result<u8, String> {
        self.plan
            .partitions
            .get(&id)
            .copied()
            .ok_or_else(|| format!("{id} is not in the cut"))
    }

    fn version(
        &self,
        partition: PartitionId,
        index: u32,
        image: &Option<PageImage>,
    ) -> Result<u8, String> {
        self.plan
            .versions
            .get(&(partition, index))
            .and_then(|known| known.iter().position(|i| i == image))
            .map(|v| v as u8)
            .ok_or_else(|| {
                format!(
                    "page {index} of {partition}: image {image:?} was neither in the file at the cut \
                     nor written by a checkpoint"
                )
            })
    }

    fn step(&mut self, action: SnapshotAction) -> StepResult {
        self.enabled.clear();
        self.model.actions(&self.state, &mut self.enabled);
        if !self.enabled.contains(&action) {
            // The writers may always write or allocate: leave them out of the message.
            let others: Vec<&SnapshotAction> = self
                .enabled
                .iter()
                .filter(|a| {
                    !matches!(
                        a,
                        SnapshotAction::Write { .. } | SnapshotAction::Allocate { .. }
                    )
                })
                .collect();
            return Err(format!(
                "the model does not allow {action:?} here (besides writers' steps it allows \
                 {others:?})"
            ));
        }
        let Some(next) = self.model.next_state(&self.state, action.clone()) else {
            return Err(format!("the model refuses {action:?} here"));
        };
        if let Some(property) = self
            .always
            .iter()
            .find(|p| !(p.condition)(&self.model, &next))
        {
            return Err(format!(
                "after {action:?} the model's property \"{}\" fails",
                property.name
            ));
        }
        self.state = next;
        self.actions.push(action);
        Ok(())
    }

    /// Places the copier's pending page reads that the model's file allows now.
    fn drain_reads(&mut self) -> StepResult {
        while let Some(reads) = &self.reads {
            let partition = reads.partition;
            let Some(snapshot) = self.state.partitions[usize::from(partition)]
                .snapshot
                .as_ref()
            else {
                return Ok(());
            };
            let page = snapshot.read_next;
            let offset = usize::from(page) - (snapshot.protocol.window().copied_end as usize);
            let Some(&wanted) = reads.versions.get(offset) else {
                self.reads = None;
                return Ok(());
            };
            let in_file = self.state.partitions[usize::from(partition)]
                .file
                .get(usize::from(page))
                .copied();
            if in_file != Some(wanted) {
                return Ok(());
            }
            self.step(SnapshotAction::ReadPage { partition, page })?;
        }
        Ok(())
    }

    fn step_and_read(&mut self, action: SnapshotAction) -> StepResult {
        self.step(action)?;
        self.drain_reads()
    }

    fn on_event(&mut self, n: usize) -> StepResult {
        use SnapshotAction as A;
        match &self.trace[n] {
            Event::Cut { partitions, .. } => {
                for p in partitions {
                    let partition = self.partition(p.id)?;
                    while self.state.partitions[usize::from(partition)].memory.len()
                        < p.pages_at_cut as usize
                    {
                        self.step_and_read(A::Allocate { partition })?;
                    }
                }
                self.begin_checkpoint()?;
                for p in partitions {
                    let partition = self.partition(p.id)?;
                    let snapshot = self.state.partitions[usize::from(partition)]
                        .snapshot
                        .as_ref()
                        .ok_or("no snapshot state after the cut")?;
                    let (pages_at_cut, copy_end) = (
                        snapshot.protocol.pages_at_cut(),
                        snapshot.protocol.copy_end(),
                    );
                    if (pages_at_cut, copy_end) != (p.pages_at_cut, p.copy_end) {
                        return Err(format!(
                            "{}: the model's cut has pages_at_cut {pages_at_cut} copy_end {copy_end}",
                            p.id
                        ));
                    }
                }
            }
            Event::CheckpointBegin { .. } => self.begin_checkpoint()?,
            Event::CheckpointEnd { .. } => {
                if std::mem::take(&mut self.checkpoint_skipped) {
                    return Ok(());
                }
                self.step_and_read(A::EndCheckpoint)?;
            }
            Event::HookDecided {
                page,
                capture,
                image,
            } => {
                let partition = self.partition(page.partition)?;
                let part = &self.state.partitions[usize::from(partition)];
                let Some(&(pending_page, pending_version)) = part.pending.first() else {
                    return Err(format!(
                        "the model's checkpoint has no write of {page} pending"
                    ));
                };
                let version = self.version(page.partition, page.index, image)?;
                if (u32::from(pending_page), pending_version) != (page.index, version) {
                    return Err(format!(
                        "the engine writes {page} v{version}, the model's checkpoint writes page \
                         {pending_page} v{pending_version} next"
                    ));
                }
                if let Some(snapshot) = &part.snapshot {
                    let mut protocol = snapshot.protocol.clone();
                    match protocol.before_page_write(page.index) {
                        Ok(expected) if expected == *capture => {}
                        Ok(expected) => {
                            return Err(format!(
                                "the engine's hook decided {capture:?}, the model's {expected:?}"
                            ))
                        }
                        Err(error) => return Err(format!("the model's protocol refuses: {error}")),
                    }
                }
                self.in_flight = Some((partition, page.index));
                self.step_and_read(A::Hook {
                    partition,
                    page: page.index as u8,
                })?;
            }
            Event::DeltaAppended { page, image } => {
                let partition = self.partition(page.partition)?;
                let appended = self.version(page.partition, page.index, image)?;
                let expected = match &self.state.checkpointer {
                    Checkpointer::InHook(call)
                        if (call.partition, u32::from(call.page)) == (partition, page.index) =>
                    {
                        call.append
                    }
                    _ => None,
                };
                match expected {
                    Some(Some(v)) if v == appended => {}
                    Some(image) => {
                        return Err(format!(
                            "the engine appends {page} v{appended}, the model appends {image:?}"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "the engine appends {page} v{appended}; the model's hook call appends nothing"
                        ))
                    }
                }
                self.step_and_read(A::AppendDelta {
                    partition,
                    page: page.index as u8,
                })?;
            }
            Event::PageWriteDone { index } => {
                let Some((partition, page)) = self.in_flight.take() else {
                    return Err(format!(
                        "page_write_done({index}) without a hook call in flight"
                    ));
                };
                if page != *index {
                    return Err(format!(
                        "page_write_done({index}) ends the hook call of page {page}"
                    ));
                }
                self.step_and_read(A::WritePage {
                    partition,
                    page: page as u8,
                })?;
            }
            Event::Announce {
                partition: id,
                reading_end,
            } => {
                let partition = self.partition(*id)?;
                let copied_end = self.window(partition)?.copied_end;
                let read = self.trace[n + 1..].iter().position(|e| {
                    matches!(e, Event::ChunkRead { partition: p, first, .. } if p == id && *first == copied_end)
                });
                self.reads = match read {
                    Some(offset) => {
                        let event = n + 1 + offset;
                        let Event::ChunkRead { images, .. } = &self.trace[event] else {
                            unreachable!("matched above");
                        };
                        let versions = images
                            .iter()
                            .enumerate()
                            .map(|(k, image)| self.version(*id, copied_end + k as u32, image))
                            .collect::<Result<Vec<u8>, String>>()?;
                        if versions.len() as u32 != reading_end - copied_end {
                            return Err(format!(
                                "the copier announced pages {copied_end}..{reading_end} but copied {}",
                                versions.len()
                            ));
                        }
                        self.consumed_reads.push(event);
                        Some(Reads {
                            partition,
                            versions,
                            event,
                        })
                    }
                    None => None,
                };
                self.step(A::Announce { partition })?;
                let announced = self.window(partition)?.reading_end;
                if announced != *reading_end {
                    return Err(format!(
                        "the engine announced up to page {reading_end}, the model up to {announced}"
                    ));
                }
                self.drain_reads()?;
            }
            Event::ChunkRead { .. } => {
                if !self.consumed_reads.contains(&n) {
                    return Err("a copied chunk that was not announced".to_string());
                }
            }
            Event::ChunkCopied {
                partition: id,
                copied_end,
            } => {
                let partition = self.partition(*id)?;
                self.drain_reads()?;
                let window = self.window(partition)?;
                if window.read_next < window.reading_end {
                    let page = window.read_next;
                    return Err(match &self.reads {
                        Some(reads) => format!(
                            "the copier copied page {page} of {id} as v{} (event {}), a version the \
                             model's file did not hold while the copier read (after its previous page)",
                            reads.versions[(page - window.copied_end) as usize],
                            reads.event
                        ),
                        None => format!(
                            "no copied images were recorded for pages {page}..{} of {id}",
                            window.reading_end
                        ),
                    });
                }
                if window.reading_end != *copied_end {
                    return Err(format!(
                        "the engine copied up to page {copied_end}, the model's chunk ends at {}",
                        window.reading_end
                    ));
                }
                self.step_and_read(A::ChunkCopied { partition })?;
            }
            Event::CopyDone { partition } => {
                let partition = self.partition(*partition)?;
                self.step_and_read(A::CopyDone { partition })?;
            }
            Event::Close { partition } => {
                let partition = self.partition(*partition)?;
                self.step_and_read(A::Close { partition })?;
            }
            Event::Merge {
                partition: id,
                delta,
            } => {
                let partition = self.partition(*id)?;
                let engine: Vec<(u32, u8)> = delta
                    .iter()
                    .map(|(index, image)| Ok((*index, self.version(*id, *index, image)?)))
                    .collect::<Result<_, String>>()?;
                let mut model: Vec<(u32, Option<u8>)> = self.state.partitions
                    [usize::from(partition)]
                .snapshot
                .as_ref()
                .ok_or("no snapshot state")?
                .delta
                .iter()
                .map(|&(page, image)| (u32::from(page), image))
                .collect();
                model.sort_by_key(|&(page, _)| page);
                let engine_as_model: Vec<(u32, Option<u8>)> =
                    engine.iter().map(|&(page, v)| (page, Some(v))).collect();
                if engine_as_model != model {
                    return Err(format!(
                        "the merge of {id} reads the delta {engine:?}, the model's delta is {model:?}"
                    ));
                }
                self.step_and_read(A::Apply { partition })?;
            }
            Event::Cancelled => unreachable!("handled by run"),
        }
        Ok(())
    }

    fn window(&self, partition: u8) -> Result<Window, String> {
        let snapshot = self.state.partitions[usize::from(partition)]
            .snapshot
            .as_ref()
            .ok_or("no snapshot state")?;
        let window = snapshot.protocol.window();
        Ok(Window {
            copied_end: window.copied_end,
            reading_end: window.reading_end,
            read_next: u32::from(snapshot.read_next),
        })
    }

    /// The writers' steps for the next checkpoint's page writes, then its cut (or nothing, for a
    /// checkpoint after S that writes nothing the snapshot sees).
    fn begin_checkpoint(&mut self) -> StepResult {
        use SnapshotAction as A;
        let index = self.next_checkpoint;
        self.next_checkpoint += 1;
        let writes = std::mem::take(&mut self.plan.checkpoints[index].writes);
        if index > 0 && writes.is_empty() {
            self.checkpoint_skipped = true;
            return Ok(());
        }
        for &(id, page, version) in &writes {
            let partition = self.partition(id)?;
            while self.state.partitions[usize::from(partition)].memory.len() <= page as usize {
                self.step_and_read(A::Allocate { partition })?;
            }
            let memory = self.state.partitions[usize::from(partition)].memory[page as usize];
            if memory > version {
                return Err(format!(
                    "checkpoint {} writes page {page} of {id} as v{version}, older than v{memory} \
                     an earlier checkpoint wrote",
                    self.plan.checkpoints[index].epoch
                ));
            }
            for _ in memory..version {
                self.step_and_read(A::Write {
                    partition,
                    page: page as u8,
                })?;
            }
        }
        self.step_and_read(A::Cut)
    }

    /// After the model's snapshot is complete: only closed hook calls and checkpoint bounds.
    fn after_completion(&mut self, n: usize) -> StepResult {
        match &self.trace[n] {
            Event::HookDecided {
                capture: Capture::Closed,
                ..
            }
            | Event::PageWriteDone { .. }
            | Event::CheckpointBegin { .. }
            | Event::CheckpointEnd { .. } => Ok(()),
            Event::HookDecided { page, capture, .. } => Err(format!(
                "the hook of {page} decided {capture:?} after every partition was merged"
            )),
            other => Err(format!(
                "{} after every partition was merged",
                render_event(other)
            )),
        }
    }
}

/// The model's copier position in one partition.
#[derive(Debug, Clone, Copy)]
struct Window {
    copied_end: u32,
    reading_end: u32,
    read_next: u32,
}
