//! Fault plans (module doc, "Operations and faults"): which operations fail, and how.

use std::io;

/// The kinds of operation a [`FaultPlan`] rule can be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`Vfs::open`](crate::vfs::Vfs::open).
    Open,
    /// [`VfsFile::read_at`](crate::vfs::VfsFile::read_at).
    Read,
    /// [`VfsFile::write_all_at`](crate::vfs::VfsFile::write_all_at).
    Write,
    /// [`VfsFile::set_len`](crate::vfs::VfsFile::set_len).
    SetLen,
    /// [`VfsFile::sync_all`](crate::vfs::VfsFile::sync_all).
    SyncFile,
    /// [`Vfs::sync_dir`](crate::vfs::Vfs::sync_dir).
    SyncDir,
    /// [`VfsFile::len`](crate::vfs::VfsFile::len), [`Vfs::exists`](crate::vfs::Vfs::exists), [`Vfs::is_dir`](crate::vfs::Vfs::is_dir).
    Stat,
    /// [`Vfs::read_dir`](crate::vfs::Vfs::read_dir).
    ReadDir,
    /// [`Vfs::create_dir_all`](crate::vfs::Vfs::create_dir_all).
    CreateDir,
    /// [`Vfs::remove_file`](crate::vfs::Vfs::remove_file), [`Vfs::remove_dir_all`](crate::vfs::Vfs::remove_dir_all).
    Remove,
    /// [`Vfs::rename`](crate::vfs::Vfs::rename).
    Rename,
    /// [`VfsFile::copy_to`](crate::vfs::VfsFile::copy_to) itself (its reads and writes count as `Read` and `Write`).
    Copy,
    /// [`VfsFile::try_lock_exclusive`](crate::vfs::VfsFile::try_lock_exclusive), [`VfsFile::is_locked_by_other`](crate::vfs::VfsFile::is_locked_by_other).
    Lock,
}

impl FaultKind {
    /// Every kind, for rules that should match all operations but one or two.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Open,
        FaultKind::Read,
        FaultKind::Write,
        FaultKind::SetLen,
        FaultKind::SyncFile,
        FaultKind::SyncDir,
        FaultKind::Stat,
        FaultKind::ReadDir,
        FaultKind::CreateDir,
        FaultKind::Remove,
        FaultKind::Rename,
        FaultKind::Copy,
        FaultKind::Lock,
    ];

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The error an injected fault returns, as a raw OS error (`raw_os_error()` is the errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl FaultError {
    /// The errno this error carries.
    pub fn errno(self) -> i32 {
        match self {
            FaultError::Eio => libc::EIO,
            FaultError::Enospc => libc::ENOSPC,
        }
    }

    pub(super) fn to_io_error(self) -> io::Error {
        io::Error::from_raw_os_error(self.errno())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FaultAction {
    Fail { error: FaultError, sticky: bool },
    PowerCut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FaultRule {
    pub(super) op_index_min: u64,
    pub(super) kinds: u16,
    pub(super) action: FaultAction,
    pub(super) fired: bool,
    /// Kinds of which one operation (at or after `op_index_min`) must come first: the rule
    /// matches only operations after it ([`FaultPlan::after`]; 0: no such condition).
    pub(super) after_kinds: u16,
    /// Whether that operation came.
    pub(super) armed: bool,
}

/// Which operations fail, and how. Build one rule with [`FaultPlan::fail_at`] or
/// [`FaultPlan::crash_at`], refine it with [`FaultPlan::only`] and [`FaultPlan::sticky`], and
/// combine rules with [`FaultPlan::and`]. Rules are checked in order; the first that fires
/// decides the operation's error. Operation indices are absolute (see [`SimFs::op_count`](crate::vfs::SimFs::op_count)).
///
/// ```
/// use deltasnap::vfs::{FaultError, FaultKind, FaultPlan};
/// // Every write or sync from operation 40 on fails with ENOSPC.
/// let plan = FaultPlan::fail_at(40, FaultError::Enospc)
///     .only(&[FaultKind::Write, FaultKind::SyncFile])
///     .sticky();
/// # let _ = plan;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub(super) rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// The first operation with index `>= op_index` fails with `error` (once, unless
    /// [`sticky`](FaultPlan::sticky)).
    pub fn fail_at(op_index: u64, error: FaultError) -> Self {
        FaultPlan::with_rule(
            op_index,
            FaultAction::Fail {
                error,
                sticky: false,
            },
        )
    }

    /// Power cut: the first operation with index `>= op_index` and every later operation fail
    /// (an EIO-like error that [`SimFs::is_power_cut`](crate::vfs::SimFs::is_power_cut) recognises) until [`SimFs::crash`](crate::vfs::SimFs::crash).
    pub fn crash_at(op_index: u64) -> Self {
        FaultPlan::with_rule(op_index, FaultAction::PowerCut)
    }

    /// Limits the last rule to operations of `kinds` (e.g. fail the first sync at or after
    /// index `n`). A rule limited to no kind never fires. Once a power cut has happened it stops
    /// every operation, whatever its kinds.
    pub fn only(mut self, kinds: &[FaultKind]) -> Self {
        if let Some(rule) = self.rules.last_mut() {
            rule.kinds = kinds.iter().fold(0, |bits, kind| bits | kind.bit());
        }
        self
    }

    /// Makes the last `fail_at` rule fail every matching operation from its index on instead of
    /// only the first. No effect on a `crash_at` rule (a power cut lasts anyway).
    pub fn sticky(mut self) -> Self {
        if let Some(FaultRule {
            action: FaultAction::Fail { sticky, .. },
            ..
        }) = self.rules.last_mut()
        {
            *sticky = true;
        }
        self
    }

    /// Makes the last rule match only operations that come after one of `kinds` (at or after its
    /// index): e.g. fail the first directory fsync after a rename, the step that makes a rename
    /// durable. The operation that arms the rule is not failed by it.
    pub fn after(mut self, kinds: &[FaultKind]) -> Self {
        if let Some(rule) = self.rules.last_mut() {
            rule.after_kinds = kinds.iter().fold(0, |bits, kind| bits | kind.bit());
        }
        self
    }

    /// This plan's rules followed by `other`'s.
    pub fn and(mut self, other: FaultPlan) -> Self {
        self.rules.extend(other.rules);
        self
    }

    /// Whether the plan has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(super) fn with_rule(op_index_min: u64, action: FaultAction) -> Self {
        let kinds = FaultKind::ALL
            .iter()
            .fold(0, |bits, kind| bits | kind.bit());
        FaultPlan {
            rules: vec![FaultRule {
                op_index_min,
                kinds,
                action,
                fired: false,
                after_kinds: 0,
                armed: false,
            }],
        }
    }
}
