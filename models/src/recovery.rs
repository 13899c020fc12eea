//! Crash recovery: redo log, checkpoint durability steps, control file and purge (DESIGN §2–3,
//! **R1**, **C3**).
//!
//! Writes append a redo record to the volatile log tail and update the in-memory page. `Sync`
//! makes the whole log durable and returns (the writes it covers are *acknowledged*). A checkpoint
//! runs as numbered steps, each one action:
//!
//! 1. `Cut`: the replay-start LSN is the log's end; the images to write are the pages as of the
//!    cut (the cut model shows the checkpoint writes exactly that, K2), the dirty set is handed over;
//! 2. `SyncLog`: make the log durable up to the replay-start (write-ahead rule: see below);
//! 3. `WritePage` for each dirty page, in index order: the partition file gets the image, volatile;
//! 4. `FsyncPartitions`;
//! 5. `WriteControl` (temp file), `FsyncControl`, `RenameControl` (the control file now durably
//!    names the checkpoint; the directory fsync is folded into the rename);
//! 6. `Purge`: delete redo before the replay-start of the checkpoint the durable control file names.
//!
//! A checkpoint with nothing dirty is skipped. `Crash` can happen in any state (bounded): the log's
//! volatile tail and the in-memory pages are lost, the temp control file is discarded, and every
//! unsynced page write is either lost or kept (one `Crash` action per subset). `Recover` loads the
//! partition files and replays the durable log from the control file's replay-start: a full-image
//! record sets the page, a delta record applies only on the version it was logged against, and a
//! record the page already contains is skipped (the page footer's LSN). A delta that finds the
//! wrong base, or a replay-start that was purged, is a failed recovery.
//!
//! Pages are versions (count of writes applied); the write history is the log itself (the record
//! at LSN `i` is write `i`). **R1**: the recovered pages equal the pages after some prefix of the
//! history that contains every acknowledged write. **C3**: the log still holds every record from
//! the durable control file's replay-start on. After a successful recovery the system goes on
//! (more writes, checkpoints, crashes) from the recovered prefix.
//!
//! Finding: DESIGN §3 does not say that the log must be durable up to a page's LSN before the
//! checkpoint writes that page (the write-ahead rule). Without step 2 an unsynced page write can
//! survive a crash that loses the redo of an earlier write to another page, and recovery yields a
//! state that is not a prefix (seeded bug `pages-before-log-sync`).

use stateright::{Model, Property};

use crate::spec::{parse_bug, BoundSpec, BoundValues, BugSpec, Entry};

/// Number of writes applied to a page.
pub type Version = u8;
/// Position in the redo log (write `i` is the record at LSN `i`).
pub type Lsn = u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryBounds {
    pub pages: usize,
    /// Records the log may hold (writes performed, counting only those that survive crashes).
    pub writes: usize,
    pub crashes: usize,
}

impl Default for RecoveryBounds {
    fn default() -> Self {
        RecoveryBounds {
            pages: 2,
            writes: 3,
            crashes: 1,
        }
    }
}

pub const BOUNDS: &[BoundSpec] = &[
    BoundSpec {
        name: "pages",
        default: 2,
        min: 1,
        max: 6,
        description: "pages (one partition)",
    },
    BoundSpec {
        name: "writes",
        default: 3,
        min: 1,
        max: 12,
        description: "redo records the log may hold",
    },
    BoundSpec {
        name: "crashes",
        default: 1,
        min: 0,
        max: 4,
        description: "crashes (each followed by recovery)",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryBug {
    /// Purge runs right after the page fsync, before the control file names the checkpoint.
    PurgeBeforeControlDurable,
    /// The control file is written, fsynced and renamed before the partition files are fsynced.
    ControlBeforePageFsync,
    /// DESIGN §3 as written: pages are written without first making the log durable up to them.
    PagesBeforeLogSync,
    /// Recovery does not mark the pages that replay changed as dirty.
    ReplayedPagesClean,
}

impl RecoveryBug {
    pub const ALL: [RecoveryBug; 4] = [
        RecoveryBug::PurgeBeforeControlDurable,
        RecoveryBug::ControlBeforePageFsync,
        RecoveryBug::PagesBeforeLogSync,
        RecoveryBug::ReplayedPagesClean,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            RecoveryBug::PurgeBeforeControlDurable => "purge-before-control-durable",
            RecoveryBug::ControlBeforePageFsync => "control-before-page-fsync",
            RecoveryBug::PagesBeforeLogSync => "pages-before-log-sync",
            RecoveryBug::ReplayedPagesClean => "replayed-pages-clean",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            RecoveryBug::PurgeBeforeControlDurable => {
                "redo before the new replay-start is deleted before the control file naming the \
                 new checkpoint is durable"
            }
            RecoveryBug::ControlBeforePageFsync => {
                "the control file moves to the new checkpoint before its page writes are fsynced"
            }
            RecoveryBug::PagesBeforeLogSync => {
                "DESIGN §3 as written: the checkpoint writes pages whose redo is not durable yet \
                 (no write-ahead log sync)"
            }
            RecoveryBug::ReplayedPagesClean => {
                "recovery leaves the pages that replay changed clean: the next checkpoint moves the \
                 replay-start past their redo without writing them"
            }
        }
    }

    /// Bounds the bug needs to show (raised when it is seeded).
    pub fn needs(&self) -> &'static [(&'static str, usize)] {
        match self {
            // Recover, checkpoint, then crash again to lose the replayed write.
            RecoveryBug::ReplayedPagesClean => &[("crashes", 2)],
            _ => &[],
        }
    }

    pub fn violates(&self) -> &'static str {
        match self {
            RecoveryBug::PurgeBeforeControlDurable => PROPERTY_C3,
            _ => PROPERTY_R1,
        }
    }

    fn steps(&self) -> &'static [Step] {
        use Step::*;
        match self {
            RecoveryBug::ReplayedPagesClean => CHECKPOINT_STEPS,
            RecoveryBug::PurgeBeforeControlDurable => &[
                SyncLog,
                WritePages,
                FsyncPartitions,
                Purge,
                WriteControl,
                FsyncControl,
                RenameControl,
            ],
            RecoveryBug::ControlBeforePageFsync => &[
                SyncLog,
                WritePages,
                WriteControl,
                FsyncControl,
                RenameControl,
                FsyncPartitions,
                Purge,
            ],
            RecoveryBug::PagesBeforeLogSync => &[
                WritePages,
                FsyncPartitions,
                WriteControl,
                FsyncControl,
                RenameControl,
                Purge,
            ],
        }
    }
}

/// The checkpoint's steps after the cut, in the order of DESIGN §3 (plus the log sync).
const CHECKPOINT_STEPS: &[Step] = &[
    Step::SyncLog,
    Step::WritePages,
    Step::FsyncPartitions,
    Step::WriteControl,
    Step::FsyncControl,
    Step::RenameControl,
    Step::Purge,
];

pub const PROPERTY_R1: &str =
    "R1: recovery yields a prefix of the write history holding every synced write";
pub const PROPERTY_C3: &str = "C3: redo needed by the durable control file is never purged";
pub const PROPERTY_MID_CHECKPOINT: &str = "a crash mid-checkpoint is followed by a good recovery";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    SyncLog,
    /// Repeated: one `WritePage` action per dirty page, then on to the next step.
    WritePages,
    FsyncPartitions,
    WriteControl,
    FsyncControl,
    RenameControl,
    Purge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub page: u8,
    /// The page's version after this write.
    pub version: Version,
    /// First write to the page since the last cut: the record holds the full image.
    pub full_image: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilePage {
    pub durable: Version,
    /// A page write that is not fsynced yet.
    pub unsynced: Option<Version>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Control {
    pub checkpoint: u8,
    pub replay_start: Lsn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlTemp {
    pub control: Control,
    pub fsynced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunningCheckpoint {
    pub control: Control,
    /// Page versions at the cut (the images this checkpoint writes).
    pub images: Vec<Version>,
    pub pages_left: u8,
    /// Index into the model's step list.
    pub step: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryOutcome {
    NotYet,
    /// The last recovery gave a prefix of `writes` writes.
    Prefix {
        writes: u8,
    },
    /// The last recovery failed (replay-start purged, or a delta met the wrong base) or gave a
    /// state that is not an acceptable prefix. Terminal.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryState {
    /// Every write of the current history; the record at LSN `i` is write `i`. After a crash it
    /// still holds the writes whose redo was lost (until recovery picks the surviving prefix).
    pub log: Vec<Record>,
    /// The log's end: records from here on are gone (crash) or not written yet.
    pub log_end: Lsn,
    /// Records before this LSN were purged.
    pub log_start: Lsn,
    /// Records before this LSN are durable.
    pub durable_end: Lsn,
    /// Writes before this LSN were covered by a `sync` that returned.
    pub acknowledged: Lsn,
    /// In-memory pages (meaningless while crashed).
    pub pages: Vec<Version>,
    /// Pages changed since the last cut (the next checkpoint's dirty set).
    pub dirty: u8,
    /// Pages whose full image was logged since the last cut.
    pub full_image_logged: u8,
    pub file: Vec<FilePage>,
    pub control: Control,
    pub control_temp: Option<ControlTemp>,
    pub checkpoint: Option<RunningCheckpoint>,
    pub crashed: bool,
    pub crashes: u8,
    pub crashed_mid_checkpoint: bool,
    pub recovery: RecoveryOutcome,
    pub recovered_after_mid_checkpoint_crash: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryAction {
    Write {
        page: u8,
    },
    Sync,
    Cut,
    SyncLog,
    WritePage {
        page: u8,
    },
    FsyncPartitions,
    WriteControl,
    FsyncControl,
    RenameControl,
    Purge,
    /// Crash; `kept` is the bit mask of unsynced page writes that reached the disk anyway.
    Crash {
        kept: u8,
    },
    Recover,
}

#[derive(Clone, Debug)]
pub struct RecoveryModel {
    pub bounds: RecoveryBounds,
    pub bug: Option<RecoveryBug>,
}

impl RecoveryModel {
    pub fn new(bounds: RecoveryBounds, bug: Option<RecoveryBug>) -> Self {
        assert!(bounds.pages <= 8, "page sets are u8 bit masks");
        assert!(bounds.writes < 200 && bounds.crashes < 200);
        RecoveryModel { bounds, bug }
    }

    fn steps(&self) -> &'static [Step] {
        self.bug.map_or(CHECKPOINT_STEPS, |bug| bug.steps())
    }

    fn current_step(&self, checkpoint: &RunningCheckpoint) -> Option<Step> {
        self.steps().get(checkpoint.step as usize).copied()
    }

    /// Page versions after the first `writes` writes of `log`.
    fn versions_after(&self, log: &[Record], writes: usize) -> Vec<Version> {
        let mut pages = vec![0; self.bounds.pages];
        for record in &log[..writes] {
            pages[record.page as usize] = record.version;
        }
        pages
    }

    /// Files + replay from the control file's replay-start over the durable log; `None` when the
    /// replay cannot be done (start purged, delta on the wrong base).
    fn replay(&self, state: &RecoveryState) -> Option<Vec<Version>> {
        let mut pages: Vec<Version> = state.file.iter().map(|f| f.durable).collect();
        let start = state.control.replay_start;
        if start < state.log_start {
            return None;
        }
        // A replay-start past the durable end (seeded bugs only) replays nothing.
        let end = state.durable_end.max(start) as usize;
        for record in &state.log[start as usize..end] {
            let page = &mut pages[record.page as usize];
            if *page >= record.version {
                continue;
            }
            if record.full_image || *page + 1 == record.version {
                *page = record.version;
            } else {
                return None;
            }
        }
        Some(pages)
    }

    fn advance(&self, checkpoint: &mut Option<RunningCheckpoint>) {
        let running = checkpoint.as_mut().expect("a checkpoint is running");
        running.step += 1;
        if running.step as usize == self.steps().len() {
            *checkpoint = None;
        }
    }
}

fn subsets(mask: u8) -> impl Iterator<Item = u8> {
    // Every subset of `mask`, from `mask` down to 0 (the standard sub-mask walk).
    let mut next = Some(mask);
    std::iter::from_fn(move || {
        let current = next?;
        next = (current != 0).then(|| (current - 1) & mask);
        Some(current)
    })
}

impl Model for RecoveryModel {
    type State = RecoveryState;
    type Action = RecoveryAction;

    fn init_states(&self) -> Vec<RecoveryState> {
        vec![RecoveryState {
            log: Vec::new(),
            log_end: 0,
            log_start: 0,
            durable_end: 0,
            acknowledged: 0,
            pages: vec![0; self.bounds.pages],
            dirty: 0,
            full_image_logged: 0,
            file: vec![
                FilePage {
                    durable: 0,
                    unsynced: None,
                };
                self.bounds.pages
            ],
            control: Control {
                checkpoint: 0,
                replay_start: 0,
            },
            control_temp: None,
            checkpoint: None,
            crashed: false,
            crashes: 0,
            crashed_mid_checkpoint: false,
            recovery: RecoveryOutcome::NotYet,
            recovered_after_mid_checkpoint_crash: false,
        }]
    }

    fn actions(&self, state: &RecoveryState, actions: &mut Vec<RecoveryAction>) {
        if state.recovery == RecoveryOutcome::Failed {
            return;
        }
        if state.crashed {
            actions.push(RecoveryAction::Recover);
            return;
        }
        if (state.log_end as usize) < self.bounds.writes {
            for page in 0..self.bounds.pages as u8 {
                actions.push(RecoveryAction::Write { page });
            }
        }
        if state.durable_end < state.log_end {
            actions.push(RecoveryAction::Sync);
        }
        match &state.checkpoint {
            None => {
                if state.dirty != 0 {
                    actions.push(RecoveryAction::Cut);
                }
            }
            Some(running) => match self.current_step(running) {
                Some(Step::SyncLog) => actions.push(RecoveryAction::SyncLog),
                Some(Step::WritePages) => {
                    let page = running.pages_left.trailing_zeros() as u8;
                    actions.push(RecoveryAction::WritePage { page });
                }
                Some(Step::FsyncPartitions) => actions.push(RecoveryAction::FsyncPartitions),
                Some(Step::WriteControl) => actions.push(RecoveryAction::WriteControl),
                Some(Step::FsyncControl) => actions.push(RecoveryAction::FsyncControl),
                Some(Step::RenameControl) => actions.push(RecoveryAction::RenameControl),
                Some(Step::Purge) => actions.push(RecoveryAction::Purge),
                None => unreachable!("finished checkpoints are cleared"),
            },
        }
        if (state.crashes as usize) < self.bounds.crashes {
            let unsynced = state
                .file
                .iter()
                .enumerate()
                .filter(|(_, f)| f.unsynced.is_some())
                .fold(0u8, |mask, (i, _)| mask | (1 << i));
            for kept in subsets(unsynced) {
                actions.push(RecoveryAction::Crash { kept });
            }
        }
    }

    fn next_state(&self, last: &RecoveryState, action: RecoveryAction) -> Option<RecoveryState> {
        let mut state = last.clone();
        match action {
            RecoveryAction::Write { page } => {
                let bit = 1 << page;
                let version = state.pages[page as usize] + 1;
                debug_assert_eq!(state.log.len(), state.log_end as usize);
                state.log.push(Record {
                    page,
                    version,
                    full_image: state.full_image_logged & bit == 0,
                });
                state.log_end += 1;
                state.pages[page as usize] = version;
                state.full_image_logged |= bit;
                state.dirty |= bit;
            }
            RecoveryAction::Sync => {
                state.durable_end = state.log_end;
                state.acknowledged = state.durable_end;
            }
            RecoveryAction::Cut => {
                state.checkpoint = Some(RunningCheckpoint {
                    control: Control {
                        checkpoint: state.control.checkpoint + 1,
                        replay_start: state.log_end,
                    },
                    images: state.pages.clone(),
                    pages_left: state.dirty,
                    step: 0,
                });
                state.dirty = 0;
                state.full_image_logged = 0;
            }
            RecoveryAction::SyncLog => {
                let running = state.checkpoint.as_ref().expect("running");
                state.durable_end = state.durable_end.max(running.control.replay_start);
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::WritePage { page } => {
                let running = state.checkpoint.as_mut().expect("running");
                state.file[page as usize].unsynced = Some(running.images[page as usize]);
                running.pages_left &= !(1 << page);
                if running.pages_left == 0 {
                    self.advance(&mut state.checkpoint);
                }
            }
            RecoveryAction::FsyncPartitions => {
                for file in state.file.iter_mut() {
                    if let Some(version) = file.unsynced.take() {
                        file.durable = version;
                    }
                }
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::WriteControl => {
                let running = state.checkpoint.as_ref().expect("running");
                state.control_temp = Some(ControlTemp {
                    control: running.control,
                    fsynced: false,
                });
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::FsyncControl => {
                if let Some(temp) = state.control_temp.as_mut() {
                    temp.fsynced = true;
                }
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::RenameControl => {
                let temp = state
                    .control_temp
                    .take()
                    .expect("the temp control file exists");
                debug_assert!(temp.fsynced, "renaming an unsynced control file");
                state.control = temp.control;
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::Purge => {
                let running = state.checkpoint.as_ref().expect("running");
                // The engine deletes redo before the replay-start of the checkpoint the control
                // file names; the seeded bug purges for the running checkpoint before that.
                let purge_before = if self.bug == Some(RecoveryBug::PurgeBeforeControlDurable) {
                    running.control.replay_start
                } else {
                    state.control.replay_start
                };
                state.log_start = state.log_start.max(purge_before);
                self.advance(&mut state.checkpoint);
            }
            RecoveryAction::Crash { kept } => {
                state.log_end = state.durable_end;
                for (index, file) in state.file.iter_mut().enumerate() {
                    if let Some(version) = file.unsynced.take() {
                        if kept & (1 << index) != 0 {
                            file.durable = version;
                        }
                    }
                }
                state.control_temp = None;
                state.crashed_mid_checkpoint = state.checkpoint.is_some();
                state.checkpoint = None;
                state.pages = vec![0; self.bounds.pages];
                state.dirty = 0;
                state.full_image_logged = 0;
                state.crashed = true;
                state.crashes += 1;
            }
            RecoveryAction::Recover => {
                state.crashed = false;
                let recovered = self.replay(&state).and_then(|pages| {
                    (state.acknowledged as usize..=state.log.len())
                        .find(|&writes| self.versions_after(&state.log, writes) == pages)
                        .map(|writes| (pages, writes))
                });
                match recovered {
                    None => state.recovery = RecoveryOutcome::Failed,
                    Some((pages, writes)) => {
                        // The engine goes on logging at the recovered position. With the correct
                        // protocol `writes` is the durable end; seeded bugs can recover pages whose
                        // redo was lost, and the model then goes on from that prefix.
                        state.log.truncate(writes);
                        state.log_end = writes as Lsn;
                        state.durable_end = writes as Lsn;
                        // Pages that replay changed are newer than their file image: the next
                        // checkpoint must write them, since its replay-start skips their redo.
                        state.dirty = if self.bug == Some(RecoveryBug::ReplayedPagesClean) {
                            0
                        } else {
                            pages
                                .iter()
                                .zip(&state.file)
                                .enumerate()
                                .filter(|(_, (page, file))| **page != file.durable)
                                .fold(0, |mask, (i, _)| mask | (1 << i))
                        };
                        state.pages = pages;
                        state.recovery = RecoveryOutcome::Prefix {
                            writes: writes as u8,
                        };
                        if state.crashed_mid_checkpoint {
                            state.recovered_after_mid_checkpoint_crash = true;
                        }
                    }
                }
                state.crashed_mid_checkpoint = false;
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(PROPERTY_R1, |_, state: &RecoveryState| {
                state.recovery != RecoveryOutcome::Failed
            }),
            Property::always(PROPERTY_C3, |_, state: &RecoveryState| {
                state.log_start <= state.control.replay_start
            }),
            Property::sometimes(PROPERTY_MID_CHECKPOINT, |_, state: &RecoveryState| {
                state.recovered_after_mid_checkpoint_crash
            }),
        ]
    }

    /// The Explorer shows each step in the engine's words.
    fn format_step(&self, last: &RecoveryState, action: RecoveryAction) -> Option<String> {
        Some(describe(self, last, &action))
    }
}

/// `action`, taken from `state`, in the engine's words.
pub fn describe(model: &RecoveryModel, state: &RecoveryState, action: &RecoveryAction) -> String {
    let checkpoint_id = state
        .checkpoint
        .as_ref()
        .map_or(0, |c| c.control.checkpoint);
    match *action {
        RecoveryAction::Write { page } => {
            let kind = if state.full_image_logged & (1 << page) == 0 {
                "full image"
            } else {
                "delta"
            };
            format!(
                "write to page {page} logs redo at LSN {} ({kind}, volatile)",
                state.log_end
            )
        }
        RecoveryAction::Sync => format!(
            "sync makes the log durable up to LSN {} and returns",
            state.log_end
        ),
        RecoveryAction::Cut => format!(
            "checkpoint {} begins: replay-start LSN {}, dirty pages {:?}",
            state.control.checkpoint + 1,
            state.log_end,
            (0..model.bounds.pages)
                .filter(|p| state.dirty & (1 << p) != 0)
                .collect::<Vec<_>>()
        ),
        RecoveryAction::SyncLog => format!(
            "checkpoint {checkpoint_id} syncs the log up to its replay-start LSN {}",
            state
                .checkpoint
                .as_ref()
                .map_or(0, |c| c.control.replay_start)
        ),
        RecoveryAction::WritePage { page } => format!(
            "checkpoint {checkpoint_id} writes page {page} (version {}) to the partition file \
             (not fsynced)",
            state
                .checkpoint
                .as_ref()
                .map_or(0, |c| c.images[page as usize])
        ),
        RecoveryAction::FsyncPartitions => {
            format!("checkpoint {checkpoint_id} fsyncs the partition files")
        }
        RecoveryAction::WriteControl => {
            format!("checkpoint {checkpoint_id} writes the temp control file")
        }
        RecoveryAction::FsyncControl => {
            format!("checkpoint {checkpoint_id} fsyncs the temp control file")
        }
        RecoveryAction::RenameControl => format!(
            "checkpoint {checkpoint_id} renames the control file: it durably names checkpoint \
             {checkpoint_id}"
        ),
        RecoveryAction::Purge => {
            let before = if model.bug == Some(RecoveryBug::PurgeBeforeControlDurable) {
                state
                    .checkpoint
                    .as_ref()
                    .map_or(0, |c| c.control.replay_start)
            } else {
                state.control.replay_start
            };
            format!("checkpoint {checkpoint_id} purges redo before LSN {before}")
        }
        RecoveryAction::Crash { kept } => {
            let pages: Vec<_> = (0..model.bounds.pages)
                .filter(|p| kept & (1 << p) != 0)
                .collect();
            format!(
                "crash: log after LSN {} lost, unsynced page writes kept for pages {pages:?}, \
                 others lost",
                state.durable_end
            )
        }
        RecoveryAction::Recover => {
            let next = model
                .next_state(state, *action)
                .expect("recover is enabled");
            match next.recovery {
                RecoveryOutcome::Prefix { writes } => format!(
                    "recovery: partition files + replay from LSN {} give the first {writes} \
                     write(s) ({} acknowledged)",
                    state.control.replay_start, state.acknowledged
                ),
                _ => match model.replay(state) {
                    None => format!(
                        "recovery from LSN {} FAILS: the redo it needs is purged (log starts at \
                         {}) or a delta meets the wrong page version",
                        state.control.replay_start, state.log_start
                    ),
                    Some(pages) => format!(
                        "recovery: files + replay from LSN {} give page versions {pages:?}, not a \
                         prefix of the history that holds the {} acknowledged write(s)",
                        state.control.replay_start, state.acknowledged
                    ),
                },
            }
        }
    }
}

pub fn entry() -> Entry<RecoveryModel> {
    Entry {
        name: "recovery",
        summary: "redo log, checkpoint durability steps, crash and recovery (R1, C3)",
        bounds: BOUNDS,
        bugs: || {
            RecoveryBug::ALL
                .iter()
                .map(|b| BugSpec {
                    name: b.name(),
                    description: b.description(),
                    needs: b.needs(),
                })
                .collect()
        },
        build: |bounds: &BoundValues, bug| {
            let bug = parse_bug(&RecoveryBug::ALL, RecoveryBug::name, bug)?;
            Ok(RecoveryModel::new(
                RecoveryBounds {
                    pages: bounds.get("pages"),
                    writes: bounds.get("writes"),
                    crashes: bounds.get("crashes"),
                },
                bug,
            ))
        },
        describe,
    }
}
