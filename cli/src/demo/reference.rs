//! The demo's reference: which version each page must hold, kept small.
//!
//! Page content is a function of `(partition, index, version)` (`crate::content`), so per page the
//! reference keeps only the last write's [`Version`], with the receipt's LSN and epoch: 48 bytes
//! a page (3 MiB for a 256 MiB store of 4 KiB pages), never page copies.
//!
//! **Which write is last.** Writers record a write after `Engine::write` returned, so two writers
//! of one page may record in either order. The receipt's LSN decides: the engine appends the redo
//! record under the page latch, so for one page, LSN order is apply order (DESIGN §3). The
//! receipt's epoch must follow the same order (a later write of a page never gets an older epoch);
//! a pair that disagrees is counted as an *order anomaly*, an engine bug the demo reports.
//!
//! **The state at a cut.** Besides the last write, each page keeps the last write of an *older*
//! epoch than the last write's. That is enough for [`Reference::expected_at`] to answer "what did
//! the store hold at the end of epoch `S`" for the snapshot phase, as long as it is asked before
//! any page was written in two epochs newer than `S` (in practice: while checkpoint `S + 1` has not
//! begun) and after every write of an epoch `<= S` was recorded; when the answer is lost it says
//! so instead of guessing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use deltasnap::{Epoch, Lsn, WriteReceipt};

use crate::content::Version;

/// Stripes of the per-page table: enough that writers on different pages rarely share a lock.
const STRIPES: usize = 256;

/// One recorded write; `epoch == 0` marks "none" (the engine numbers write epochs from 1).
#[derive(Debug, Clone, Copy, Default)]
struct Write {
    lsn: Lsn,
    epoch: Epoch,
    version: Version,
}

impl Write {
    fn is_none(&self) -> bool {
        self.epoch == 0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The write with the highest LSN.
    latest: Write,
    /// The write with the highest LSN among those of an older epoch than `latest`'s.
    previous: Write,
}

/// Per page (by slot, see `Layout`), the versions it must hold.
#[derive(Debug)]
pub struct Reference {
    /// Slot `s` lives in stripe `s % STRIPES` at position `s / STRIPES`.
    stripes: Box<[Mutex<Vec<Entry>>]>,
    pages: usize,
    order_anomalies: AtomicU64,
}

impl Reference {
    pub fn new(pages: usize) -> Self {
        let stripes = (0..STRIPES)
            .map(|stripe| {
                let len = pages / STRIPES + usize::from(stripe < pages % STRIPES);
                Mutex::new(vec![Entry::default(); len])
            })
            .collect();
        Reference {
            stripes,
            pages,
            order_anomalies: AtomicU64::new(0),
        }
    }

    /// Bytes the table takes.
    pub fn bytes(&self) -> usize {
        self.pages * std::mem::size_of::<Entry>()
    }

    /// Records that the write `receipt` put `version` into the page at `slot`.
    pub fn record(&self, slot: usize, receipt: WriteReceipt, version: Version) {
        assert!(receipt.epoch > 0, "write receipts have epochs from 1");
        let write = Write {
            lsn: receipt.lsn,
            epoch: receipt.epoch,
            version,
        };
        let mut stripe = self.stripes[slot % STRIPES]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = &mut stripe[slot / STRIPES];
        let latest = entry.latest;
        let consistent = if latest.is_none() {
            entry.latest = write;
            true
        } else if write.lsn > latest.lsn {
            if write.epoch > latest.epoch {
                entry.previous = latest;
            }
            entry.latest = write;
            write.epoch >= latest.epoch
        } else if write.lsn < latest.lsn {
            // An older write recorded late: it can only be the last one of an older epoch.
            if write.epoch < latest.epoch
                && (entry.previous.is_none() || write.lsn > entry.previous.lsn)
            {
                entry.previous = write;
            }
            write.epoch <= latest.epoch
        } else {
            false // two writes with one LSN
        };
        if !consistent {
            self.order_anomalies.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes to one page whose LSN order and epoch order disagreed (an engine bug if not 0).
    pub fn order_anomalies(&self) -> u64 {
        self.order_anomalies.load(Ordering::Relaxed)
    }

    /// The version every page held at the end of epoch `epoch`, by slot (`Epoch::MAX`: now).
    /// See the module doc for when the answer is still known.
    pub fn expected_at(&self, epoch: Epoch) -> Result<Vec<Version>, String> {
        let mut versions = vec![Version::INITIAL; self.pages];
        for (stripe_index, stripe) in self.stripes.iter().enumerate() {
            let stripe = stripe.lock().unwrap_or_else(|p| p.into_inner());
            for (position, entry) in stripe.iter().enumerate() {
                let slot = position * STRIPES + stripe_index;
                versions[slot] = if entry.latest.is_none() {
                    return Err(format!("page slot {slot} was never written"));
                } else if entry.latest.epoch <= epoch {
                    entry.latest.version
                } else if !entry.previous.is_none() && entry.previous.epoch <= epoch {
                    entry.previous.version
                } else {
                    return Err(format!(
                        "the content of page slot {slot} at epoch {epoch} is no longer known \
                         (its last writes are of epochs {} and {})",
                        entry.previous.epoch, entry.latest.epoch
                    ));
                };
            }
        }
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(lsn: Lsn, epoch: Epoch) -> WriteReceipt {
        WriteReceipt { lsn, epoch }
    }

    #[test]
    fn the_highest_lsn_wins_whatever_the_recording_order() {
        let reference = Reference::new(1000);
        reference.record(700, receipt(10, 1), Version::INITIAL);
        reference.record(700, receipt(30, 2), Version::new(1, 1));
        reference.record(700, receipt(20, 2), Version::new(0, 1)); // late
        assert_eq!(
            reference.expected_at(Epoch::MAX).unwrap_err(),
            "page slot 0 was never written"
        );
        for slot in 0..1000 {
            if slot != 700 {
                reference.record(slot, receipt(5, 1), Version::INITIAL);
            }
        }
        let now = reference.expected_at(Epoch::MAX).unwrap();
        assert_eq!(now[700], Version::new(1, 1));
        assert_eq!(now[699], Version::INITIAL);
        assert_eq!(reference.order_anomalies(), 0);
    }

    #[test]
    fn the_state_at_a_cut_is_known_until_two_newer_epochs_wrote() {
        let reference = Reference::new(2);
        reference.record(0, receipt(1, 1), Version::INITIAL);
        reference.record(1, receipt(2, 1), Version::INITIAL);
        reference.record(0, receipt(5, 3), Version::new(0, 1));
        assert_eq!(reference.expected_at(1).unwrap()[0], Version::INITIAL);
        assert_eq!(reference.expected_at(3).unwrap()[0], Version::new(0, 1));
        reference.record(0, receipt(4, 2), Version::new(0, 0)); // late, epoch 2
        assert_eq!(reference.expected_at(2).unwrap()[0], Version::new(0, 0));
        assert_eq!(reference.expected_at(3).unwrap()[0], Version::new(0, 1));
        assert!(
            reference.expected_at(1).is_err(),
            "epochs 2 and 3 wrote since"
        );
        reference.record(0, receipt(9, 4), Version::new(0, 2));
        assert_eq!(reference.expected_at(3).unwrap()[0], Version::new(0, 1));
        assert_eq!(reference.expected_at(4).unwrap()[1], Version::INITIAL);
        assert_eq!(reference.order_anomalies(), 0);
    }

    #[test]
    fn an_epoch_that_goes_back_in_log_order_is_an_anomaly() {
        let reference = Reference::new(1);
        reference.record(0, receipt(10, 3), Version::new(0, 0));
        reference.record(0, receipt(20, 2), Version::new(1, 0));
        assert_eq!(reference.order_anomalies(), 1);
        reference.record(0, receipt(20, 3), Version::new(2, 0));
        assert_eq!(reference.order_anomalies(), 2);
    }
}
