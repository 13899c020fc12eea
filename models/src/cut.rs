//! The epoch cut: writers, the cut and the checkpoint's page images (DESIGN §3, **K1**, **K2**).
//!
//! Threads are program counters, as in stateright's `increment_lock` example. A writer follows the
//! write path of DESIGN §3 step by step:
//!
//! 1. `LoadEpoch`: start a write to a page and load the current epoch `E`;
//!    `Register`: increment the active-writer count of `E`;
//!    `Recheck`: (after a SeqCst fence) re-load the current epoch; if it moved, the cut may already
//!    have drained `E` without seeing this writer, so leave `E` and retry. Without this step a
//!    writer that loaded `E` before the cut and registered after the drain writes in a closed epoch.
//! 2. (steps 2–4) `Write`: latch the page; if its latest image belongs to an epoch newer than
//!    `E`, unlatch, leave and retry in the current epoch; else, if the latest image belongs to the
//!    epoch whose checkpoint is running, that checkpoint has not written the page yet and this
//!    writer is in a newer epoch, keep the image as the page's checkpoint image; append redo,
//!    publish the new image tagged `E`, mark the page dirty in `E`, unlatch. This is one step:
//!    everything it reads or writes about the page is guarded by the page latch, which the
//!    checkpointer also takes to take an image (see *Assumptions*).
//! 3. (step 5) `Leave`: leave `E`; the receipt `{epoch: E}` is returned.
//!
//! The checkpointer runs `Cut` (publish `E+1`), `Drain` (enabled once no writer is active in `E`;
//! freezes the dirty set of `E`), `WritePage` for each dirty page in index order (the kept
//! checkpoint image if any, else the latest), and `EndCheckpoint`.
//!
//! An image is a prefix of the page's write history (writes to one page are ordered by its latch),
//! so it is stored as a length; the history stores the epoch of each write. **K2** then reads: for
//! every page, the partition file's image is exactly the writes of epochs `≤ F`, where `F` is the
//! checkpoint that last wrote the page (the running one once it wrote the page, else the last ended
//! one): the image is a prefix whose writes are all `≤ F` and every later write is `> F`. Checked in
//! every state, it also catches a write of epoch `≤ F` that lands after the checkpoint of `F` wrote
//! the page (or froze its dirty set). **K1**: every writer's receipts have non-decreasing epochs,
//! and so does every page's history (a write that follows another under the page latch causally
//! follows it).
//!
//! Assumptions (each is something the engine must do for the model to describe it):
//! - the checkpointer takes "the kept image, else the latest" and marks the page written under the
//!   page latch: otherwise a writer can keep and publish between the two reads;
//! - "the checkpoint of `C` is running" is true from the moment `C+1` is published (the drain is
//!   part of it), and a writer keeps an image only when its own epoch is newer than `C`: a straggler
//!   of `C` itself must not (seeded bug `keep-image-in-own-epoch`, the literal reading of DESIGN §3
//!   step 3).

use stateright::{Model, Property};

use crate::spec::{parse_bug, BoundSpec, BoundValues, BugSpec, Entry};

pub type Epoch = u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutBounds {
    pub writers: usize,
    pub pages: usize,
    pub writes_per_writer: usize,
    /// Number of cuts (checkpoints) the checkpointer takes.
    pub checkpoints: usize,
}

impl Default for CutBounds {
    fn default() -> Self {
        CutBounds {
            writers: 2,
            pages: 2,
            writes_per_writer: 2,
            checkpoints: 2,
        }
    }
}

pub const BOUNDS: &[BoundSpec] = &[
    BoundSpec {
        name: "writers",
        default: 2,
        min: 1,
        max: 4,
        description: "writer threads",
    },
    BoundSpec {
        name: "pages",
        default: 2,
        min: 1,
        max: 8,
        description: "pages (all in one partition)",
    },
    BoundSpec {
        name: "writes_per_writer",
        default: 2,
        min: 1,
        max: 6,
        description: "writes each writer performs",
    },
    BoundSpec {
        name: "checkpoints",
        default: 2,
        min: 1,
        max: 6,
        description: "cuts the checkpointer takes",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutBug {
    /// The writer applies its write even though the page's latest image is from a newer epoch.
    NoRetryAfterCut,
    /// The writer never keeps a checkpoint image.
    NoCheckpointImage,
    /// The writer registers without re-checking the epoch (the registration race).
    RegisterWithoutRecheck,
    /// The drain does not wait for the active writers of the closed epoch.
    DrainWithoutWait,
    /// DESIGN §3 step 3 read literally: a writer keeps the checkpoint image even when it writes in
    /// the checkpoint's own epoch (a straggler being drained).
    KeepImageInOwnEpoch,
}

impl CutBug {
    pub const ALL: [CutBug; 5] = [
        CutBug::NoRetryAfterCut,
        CutBug::NoCheckpointImage,
        CutBug::RegisterWithoutRecheck,
        CutBug::DrainWithoutWait,
        CutBug::KeepImageInOwnEpoch,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            CutBug::NoRetryAfterCut => "no-retry-after-cut",
            CutBug::NoCheckpointImage => "no-checkpoint-image",
            CutBug::RegisterWithoutRecheck => "register-without-recheck",
            CutBug::DrainWithoutWait => "drain-without-wait",
            CutBug::KeepImageInOwnEpoch => "keep-image-in-own-epoch",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            CutBug::NoRetryAfterCut => {
                "a writer whose page already holds an image of a newer epoch writes anyway \
                 (the cut passed it and it does not retry)"
            }
            CutBug::NoCheckpointImage => {
                "a writer of epoch E+1 overwrites a page the checkpoint of E has not written yet \
                 without keeping its checkpoint image"
            }
            CutBug::RegisterWithoutRecheck => {
                "a writer registers in the epoch it loaded without re-checking it: the drain can \
                 miss a writer that loaded E before the cut and registered after it"
            }
            CutBug::DrainWithoutWait => {
                "the cut freezes the dirty set of E without waiting for E's active writers"
            }
            CutBug::KeepImageInOwnEpoch => {
                "DESIGN §3 step 3 read literally: a straggler writing in the checkpoint's own epoch \
                 keeps the checkpoint image too, so the checkpoint misses the straggler's write"
            }
        }
    }

    /// The property whose counterexample proves the bug.
    /// Bounds the bug needs to show (raised when it is seeded).
    pub fn needs(&self) -> &'static [(&'static str, usize)] {
        &[]
    }

    pub fn violates(&self) -> &'static str {
        match self {
            CutBug::NoRetryAfterCut => PROPERTY_K1,
            _ => PROPERTY_K2,
        }
    }
}

pub const PROPERTY_K1: &str = "K1: receipts and page histories have non-decreasing epochs";
pub const PROPERTY_K2: &str = "K2: the checkpoint of E writes exactly the writes of epochs <= E";
pub const PROPERTY_RETRY: &str = "a writer retries because the cut passed it";
pub const PROPERTY_RECHECK: &str = "a writer re-registers after the epoch re-check";
pub const PROPERTY_KEPT: &str = "a checkpoint image is kept";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriterStep {
    /// Between writes (or done, when no writes are left).
    Idle,
    /// Step 1: loaded epoch `epoch`, not registered yet.
    Loaded { page: u8, epoch: Epoch },
    /// Step 1: counted as an active writer of `epoch`, epoch not re-checked yet.
    Registered { page: u8, epoch: Epoch },
    /// Step 1 done: registered and the re-check saw the same epoch.
    Admitted { page: u8, epoch: Epoch },
    /// Steps 2–4 done (page unlatched); still active in `epoch`.
    Applied { page: u8, epoch: Epoch },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Writer {
    pub step: WriterStep,
    pub writes_left: u8,
    /// Epochs of the receipts returned so far, in order.
    pub receipts: Vec<Epoch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Page {
    /// Epoch of every write applied to the page, in latch order. The latest image is all of it.
    pub history: Vec<Epoch>,
    /// The checkpoint image kept for the running checkpoint (a prefix length of `history`).
    pub checkpoint_image: Option<u8>,
    /// The running checkpoint has written this page.
    pub written_by_checkpoint: bool,
    /// The image in the partition file (a prefix length of `history`).
    pub file_image: u8,
}

impl Page {
    fn latest_epoch(&self) -> Epoch {
        self.history.last().copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Checkpointer {
    Idle,
    /// `epoch + 1` is published; waiting for the active writers of `epoch`.
    Draining {
        epoch: Epoch,
    },
    /// The dirty set of `epoch` is frozen; `pages_left` is the bit mask of pages still to write.
    Writing {
        epoch: Epoch,
        pages_left: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CutState {
    /// The published (current) epoch.
    pub epoch: Epoch,
    /// Active-writer count per epoch (index = epoch).
    pub active: Vec<u8>,
    /// Dirty-page bit mask per epoch (index = epoch).
    pub dirty: Vec<u8>,
    pub writers: Vec<Writer>,
    pub pages: Vec<Page>,
    pub checkpointer: Checkpointer,
    pub cuts_taken: u8,
    /// The last checkpoint that ended (0: none; the partition file holds no writes).
    pub last_ended: Epoch,
    pub writer_retried: bool,
    pub writer_rechecked: bool,
    pub image_kept: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CutAction {
    LoadEpoch { writer: u8, page: u8 },
    Register { writer: u8 },
    Recheck { writer: u8 },
    Write { writer: u8 },
    Leave { writer: u8 },
    Cut,
    Drain,
    WritePage { page: u8 },
    EndCheckpoint,
}

#[derive(Clone, Debug)]
pub struct CutModel {
    pub bounds: CutBounds,
    pub bug: Option<CutBug>,
}

impl CutModel {
    pub fn new(bounds: CutBounds, bug: Option<CutBug>) -> Self {
        assert!(bounds.pages <= 8, "dirty sets are u8 bit masks");
        assert!(bounds.checkpoints < 200 && bounds.writes_per_writer < 200);
        CutModel { bounds, bug }
    }

    fn has(&self, bug: CutBug) -> bool {
        self.bug == Some(bug)
    }

    /// The epoch whose checkpoint is running (from its cut to its end), if any.
    fn running_checkpoint(state: &CutState) -> Option<Epoch> {
        match state.checkpointer {
            Checkpointer::Idle => None,
            Checkpointer::Draining { epoch } | Checkpointer::Writing { epoch, .. } => Some(epoch),
        }
    }

    /// The checkpoint whose image of `page` the partition file holds.
    fn file_epoch(state: &CutState, page: &Page) -> Epoch {
        match state.checkpointer {
            Checkpointer::Writing { epoch, .. } if page.written_by_checkpoint => epoch,
            _ => state.last_ended,
        }
    }
}

fn lowest_bit(mask: u8) -> Option<u8> {
    (mask != 0).then(|| mask.trailing_zeros() as u8)
}

impl Model for CutModel {
    type State = CutState;
    type Action = CutAction;

    fn init_states(&self) -> Vec<CutState> {
        let epochs = self.bounds.checkpoints + 2;
        vec![CutState {
            epoch: 1,
            active: vec![0; epochs],
            dirty: vec![0; epochs],
            writers: (0..self.bounds.writers)
                .map(|_| Writer {
                    step: WriterStep::Idle,
                    writes_left: self.bounds.writes_per_writer as u8,
                    receipts: Vec::new(),
                })
                .collect(),
            pages: (0..self.bounds.pages)
                .map(|_| Page {
                    history: Vec::new(),
                    checkpoint_image: None,
                    written_by_checkpoint: false,
                    file_image: 0,
                })
                .collect(),
            checkpointer: Checkpointer::Idle,
            cuts_taken: 0,
            last_ended: 0,
            writer_retried: false,
            writer_rechecked: false,
            image_kept: false,
        }]
    }

    fn actions(&self, state: &CutState, actions: &mut Vec<CutAction>) {
        for (index, writer) in state.writers.iter().enumerate() {
            let writer_id = index as u8;
            match writer.step {
                WriterStep::Idle if writer.writes_left > 0 => {
                    for page in 0..self.bounds.pages as u8 {
                        actions.push(CutAction::LoadEpoch {
                            writer: writer_id,
                            page,
                        });
                    }
                }
                WriterStep::Idle => {}
                WriterStep::Loaded { .. } => {
                    actions.push(CutAction::Register { writer: writer_id })
                }
                WriterStep::Registered { .. } => {
                    actions.push(CutAction::Recheck { writer: writer_id })
                }
                WriterStep::Admitted { .. } => actions.push(CutAction::Write { writer: writer_id }),
                WriterStep::Applied { .. } => actions.push(CutAction::Leave { writer: writer_id }),
            }
        }
        match state.checkpointer {
            Checkpointer::Idle => {
                if (state.cuts_taken as usize) < self.bounds.checkpoints {
                    actions.push(CutAction::Cut);
                }
            }
            Checkpointer::Draining { epoch } => {
                if state.active[epoch as usize] == 0 || self.has(CutBug::DrainWithoutWait) {
                    actions.push(CutAction::Drain);
                }
            }
            Checkpointer::Writing { pages_left, .. } => match lowest_bit(pages_left) {
                Some(page) => actions.push(CutAction::WritePage { page }),
                None => actions.push(CutAction::EndCheckpoint),
            },
        }
    }

    fn next_state(&self, last: &CutState, action: CutAction) -> Option<CutState> {
        let mut state = last.clone();
        match action {
            CutAction::LoadEpoch { writer, page } => {
                state.writers[writer as usize].step = WriterStep::Loaded {
                    page,
                    epoch: state.epoch,
                };
            }
            CutAction::Register { writer } => {
                let WriterStep::Loaded { page, epoch } = state.writers[writer as usize].step else {
                    unreachable!("register from {:?}", state.writers[writer as usize].step)
                };
                state.active[epoch as usize] += 1;
                state.writers[writer as usize].step = if self.has(CutBug::RegisterWithoutRecheck) {
                    WriterStep::Admitted { page, epoch }
                } else {
                    WriterStep::Registered { page, epoch }
                };
            }
            CutAction::Recheck { writer } => {
                let WriterStep::Registered { page, epoch } = state.writers[writer as usize].step
                else {
                    unreachable!("recheck from {:?}", state.writers[writer as usize].step)
                };
                state.writers[writer as usize].step = if state.epoch == epoch {
                    WriterStep::Admitted { page, epoch }
                } else {
                    state.active[epoch as usize] -= 1;
                    state.writer_rechecked = true;
                    WriterStep::Loaded {
                        page,
                        epoch: state.epoch,
                    }
                };
            }
            CutAction::Write { writer } => {
                let WriterStep::Admitted { page, epoch } = state.writers[writer as usize].step
                else {
                    unreachable!("write from {:?}", state.writers[writer as usize].step)
                };
                let running = Self::running_checkpoint(&state);
                let current_epoch = state.epoch;
                let entry = &mut state.pages[page as usize];
                let latest = entry.latest_epoch();
                if latest > epoch && !self.has(CutBug::NoRetryAfterCut) {
                    // The cut passed this writer: nothing was logged yet, retry in the current
                    // epoch (through registration and re-check again).
                    state.active[epoch as usize] -= 1;
                    state.writer_retried = true;
                    state.writers[writer as usize].step = WriterStep::Loaded {
                        page,
                        epoch: current_epoch,
                    };
                    return Some(state);
                }
                if let Some(checkpoint) = running {
                    let newer_writer = checkpoint < epoch || self.has(CutBug::KeepImageInOwnEpoch);
                    if latest == checkpoint
                        && !entry.written_by_checkpoint
                        && entry.checkpoint_image.is_none()
                        && newer_writer
                        && !self.has(CutBug::NoCheckpointImage)
                    {
                        entry.checkpoint_image = Some(entry.history.len() as u8);
                        state.image_kept = true;
                    }
                }
                entry.history.push(epoch);
                state.dirty[epoch as usize] |= 1 << page;
                state.writers[writer as usize].step = WriterStep::Applied { page, epoch };
            }
            CutAction::Leave { writer } => {
                let WriterStep::Applied { epoch, .. } = state.writers[writer as usize].step else {
                    unreachable!("leave from {:?}", state.writers[writer as usize].step)
                };
                state.active[epoch as usize] -= 1;
                let w = &mut state.writers[writer as usize];
                w.step = WriterStep::Idle;
                w.writes_left -= 1;
                w.receipts.push(epoch);
            }
            CutAction::Cut => {
                let closing = state.epoch;
                state.epoch += 1;
                state.cuts_taken += 1;
                state.checkpointer = Checkpointer::Draining { epoch: closing };
            }
            CutAction::Drain => {
                let Checkpointer::Draining { epoch } = state.checkpointer else {
                    unreachable!()
                };
                state.checkpointer = Checkpointer::Writing {
                    epoch,
                    pages_left: state.dirty[epoch as usize],
                };
            }
            CutAction::WritePage { page } => {
                let Checkpointer::Writing { epoch, pages_left } = state.checkpointer else {
                    unreachable!()
                };
                let entry = &mut state.pages[page as usize];
                entry.file_image = entry
                    .checkpoint_image
                    .take()
                    .unwrap_or(entry.history.len() as u8);
                entry.written_by_checkpoint = true;
                state.checkpointer = Checkpointer::Writing {
                    epoch,
                    pages_left: pages_left & !(1 << page),
                };
            }
            CutAction::EndCheckpoint => {
                let Checkpointer::Writing { epoch, .. } = state.checkpointer else {
                    unreachable!()
                };
                state.last_ended = epoch;
                for page in state.pages.iter_mut() {
                    page.written_by_checkpoint = false;
                    // Only a page outside the frozen dirty set can still hold one (seeded bugs).
                    page.checkpoint_image = None;
                }
                state.checkpointer = Checkpointer::Idle;
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(PROPERTY_K1, |_, state: &CutState| {
                let sorted = |epochs: &[Epoch]| epochs.windows(2).all(|w| w[0] <= w[1]);
                state.writers.iter().all(|w| sorted(&w.receipts))
                    && state.pages.iter().all(|p| sorted(&p.history))
            }),
            Property::always(PROPERTY_K2, |_, state: &CutState| {
                state.pages.iter().all(|page| {
                    let file_epoch = CutModel::file_epoch(state, page);
                    let (image, later) = page.history.split_at(page.file_image as usize);
                    image.iter().all(|&e| e <= file_epoch) && later.iter().all(|&e| e > file_epoch)
                })
            }),
            Property::sometimes(PROPERTY_RETRY, |_, state: &CutState| state.writer_retried),
            Property::sometimes(PROPERTY_RECHECK, |_, state: &CutState| {
                state.writer_rechecked
            }),
            Property::sometimes(PROPERTY_KEPT, |_, state: &CutState| state.image_kept),
        ]
    }

    /// The Explorer shows each step in the engine's words.
    fn format_step(&self, last: &CutState, action: CutAction) -> Option<String> {
        Some(describe(self, last, &action))
    }
}

/// `action`, taken from `state`, in the engine's words.
pub fn describe(model: &CutModel, state: &CutState, action: &CutAction) -> String {
    match *action {
        CutAction::LoadEpoch { writer, page } => {
            format!(
                "writer {writer} starts a write to page {page} and loads epoch {}",
                state.epoch
            )
        }
        CutAction::Register { writer } => {
            let WriterStep::Loaded { epoch, .. } = state.writers[writer as usize].step else {
                return format!("{action:?}");
            };
            if model.has(CutBug::RegisterWithoutRecheck) {
                format!("writer {writer} registers in epoch {epoch} (no re-check)")
            } else {
                format!("writer {writer} registers in epoch {epoch}")
            }
        }
        CutAction::Recheck { writer } => {
            let WriterStep::Registered { epoch, .. } = state.writers[writer as usize].step else {
                return format!("{action:?}");
            };
            if state.epoch == epoch {
                format!("writer {writer} re-checks the epoch: still {epoch}")
            } else {
                format!(
                    "writer {writer} re-checks the epoch: now {}, leaves epoch {epoch} and retries",
                    state.epoch
                )
            }
        }
        CutAction::Write { writer } => {
            let next = model
                .next_state(state, *action)
                .expect("write is always enabled");
            let WriterStep::Admitted { page, epoch } = state.writers[writer as usize].step else {
                return format!("{action:?}");
            };
            let before = &state.pages[page as usize];
            let after = &next.pages[page as usize];
            if after.history.len() == before.history.len() {
                return format!(
                    "writer {writer} latches page {page}: its latest image is from epoch {}, the \
                     cut passed epoch {epoch}; unlatches, leaves epoch {epoch} and retries",
                    before.latest_epoch()
                );
            }
            let kept = if after.checkpoint_image != before.checkpoint_image {
                format!(
                    ", keeps its epoch-{} image for the checkpoint",
                    before.latest_epoch()
                )
            } else {
                String::new()
            };
            format!(
                "writer {writer} latches page {page}{kept}, appends redo, publishes the image \
                 tagged epoch {epoch}, marks the page dirty in {epoch}, unlatches"
            )
        }
        CutAction::Leave { writer } => {
            let WriterStep::Applied { epoch, .. } = state.writers[writer as usize].step else {
                return format!("{action:?}");
            };
            format!("writer {writer} leaves epoch {epoch} (receipt epoch {epoch})")
        }
        CutAction::Cut => format!(
            "cut publishes epoch {} (checkpoint {} begins)",
            state.epoch + 1,
            state.epoch
        ),
        CutAction::Drain => {
            let Checkpointer::Draining { epoch } = state.checkpointer else {
                return format!("{action:?}");
            };
            format!(
                "checkpoint {epoch} drains ({} writer(s) still active in {epoch}); dirty pages {} \
                 frozen",
                state.active[epoch as usize],
                mask_to_string(state.dirty[epoch as usize])
            )
        }
        CutAction::WritePage { page } => {
            let Checkpointer::Writing { epoch, .. } = state.checkpointer else {
                return format!("{action:?}");
            };
            let entry = &state.pages[page as usize];
            match entry.checkpoint_image {
                Some(len) => format!(
                    "checkpoint {epoch} writes page {page}: its kept checkpoint image ({len} of {} \
                     writes)",
                    entry.history.len()
                ),
                None => format!(
                    "checkpoint {epoch} writes page {page}: its latest image ({} writes, epochs {:?})",
                    entry.history.len(),
                    entry.history
                ),
            }
        }
        CutAction::EndCheckpoint => {
            let Checkpointer::Writing { epoch, .. } = state.checkpointer else {
                return format!("{action:?}");
            };
            format!("checkpoint {epoch} ends")
        }
    }
}

fn mask_to_string(mask: u8) -> String {
    let pages: Vec<String> = (0..8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| i.to_string())
        .collect();
    format!("{{{}}}", pages.join(", "))
}

pub fn entry() -> Entry<CutModel> {
    Entry {
        name: "cut",
        summary: "writers, epoch cut and checkpoint images (DESIGN §3: K1, K2)",
        bounds: BOUNDS,
        bugs: || {
            CutBug::ALL
                .iter()
                .map(|b| BugSpec {
                    name: b.name(),
                    description: b.description(),
                    needs: b.needs(),
                })
                .collect()
        },
        build: |bounds: &BoundValues, bug| {
            let bug = parse_bug(&CutBug::ALL, CutBug::name, bug)?;
            Ok(CutModel::new(
                CutBounds {
                    writers: bounds.get("writers"),
                    pages: bounds.get("pages"),
                    writes_per_writer: bounds.get("writes_per_writer"),
                    checkpoints: bounds.get("checkpoints"),
                },
                bug,
            ))
        },
        describe,
    }
}
