//! The demo's reference: which version each page must hold, kept small.
//!
//! Page content is a function of `(partition, index, version)` (`crate::content`), so per page the
//! reference keeps the [`Version`]s of at most three writes (below), each with its receipt's LSN and
//! epoch: 80 bytes a page (5 MiB for a 256 MiB store of 4 KiB pages), never page copies.
//!
//! **Which write is last.** Writers record a write after `Engine::write` returned, so two writers
//! of one page may record in either order. The receipt's LSN decides: the engine appends the redo
//! record under the page latch, so for one page, LSN order is apply order (DESIGN §3). The
//! receipt's epoch must follow the same order (a later write of a page never gets an older epoch);
//! a pair that disagrees is counted as an *order anomaly*, an engine bug the demo reports.
//!
//! **The state at a cut.** Besides the last write, each page keeps the last write of an *older*
//! epoch than the last write's. That is enough for [`Reference::expected_at`] to answer "what did
//! the store hold at the end of epoch `S`", as long as it is asked before any page was written in
//! two epochs newer than `S` (in practice: while checkpoint `S + 1` has not begun) and after every
//! write of an epoch `<= S` was recorded; when the answer is lost it says so instead of guessing.
//!
//! **The pin.** A snapshot's cut epoch `S` is known as soon as its checkpoint began, but writes of
//! epoch `<= S` may still be on their way to [`Reference::record`] (a writer between
//! `Engine::write` returning and recording), and the writers go on long after checkpoint `S + 1`.
//! [`Reference::pin`]`(S)`, called as soon as `S` is known, starts keeping per page a third write:
//! the one with the highest LSN among the writes of epoch `<= S` (the receipt contract: a write is
//! in snapshot `S` iff its receipt epoch is `<= S`). It starts from `latest`/`previous` (exact,
//! since pinning comes before any page could be written in two epochs newer than `S`, and it says
//! so when that was missed), and every later `record`, late ones included, keeps it up to date, so
//! that once every writer stopped [`Reference::expected_at_pin`] is exact.

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

/// A page's last write of an epoch `<= ` the pinned epoch.
#[derive(Debug, Clone, Copy, Default)]
enum AtPin {
    /// [`Reference::pin`] was not called.
    #[default]
    Unpinned,
    /// The write with the highest LSN among those of epoch `<=` the pin recorded so far (none
    /// yet: `Write::is_none`).
    Known(Write),
    /// At pin time the page had been written in two epochs newer than the pin: its state at the
    /// pin is no longer known.
    Lost,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// The write with the highest LSN.
    latest: Write,
    /// The write with the highest LSN among those of an older epoch than `latest`'s.
    previous: Write,
    at_pin: AtPin,
}

impl Entry {
    /// The highest-LSN write of epoch `<= epoch` that `latest` and `previous` still know, or
    /// `None` if the page was written in two epochs newer than `epoch` (a never written page
    /// gives the none write). Exact only if no older write of the page is still to be recorded.
    fn last_at(&self, epoch: Epoch) -> Option<Write> {
        if self.latest.is_none() || self.latest.epoch <= epoch {
            Some(self.latest)
        } else if !self.previous.is_none() && self.previous.epoch <= epoch {
            Some(self.previous)
        } else {
            None
        }
    }
}

/// One stripe of the table, with the pin as this stripe saw it (set under the stripe's lock, so a
/// `record` either runs before the pin reached the stripe, and `pin` starts from its result, or
/// after, and keeps `at_pin` itself).
#[derive(Debug)]
struct Stripe {
    entries: Vec<Entry>,
    pin: Option<Epoch>,
}

/// Per page (by slot, see `Layout`), the versions it must hold.
#[derive(Debug)]
pub struct Reference {
    /// Slot `s` lives in stripe `s % STRIPES` at position `s / STRIPES`.
    stripes: Box<[Mutex<Stripe>]>,
    pages: usize,
    order_anomalies: AtomicU64,
    /// The pinned epoch (0: not pinned; write epochs start at 1).
    pinned: AtomicU64,
}

impl Reference {
    pub fn new(pages: usize) -> Self {
        let stripes = (0..STRIPES)
            .map(|stripe| {
                let len = pages / STRIPES + usize::from(stripe < pages % STRIPES);
                Mutex::new(Stripe {
                    entries: vec![Entry::default(); len],
                    pin: None,
                })
            })
            .collect();
        Reference {
            stripes,
            pages,
            order_anomalies: AtomicU64::new(0),
            pinned: AtomicU64::new(0),
        }
    }

    fn stripe(&self, index: usize) -> std::sync::MutexGuard<'_, Stripe> {
        self.stripes[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut stripe = self.stripe(slot % STRIPES);
        let pin = stripe.pin;
        let entry = &mut stripe.entries[slot / STRIPES];
        if let (Some(pin), AtPin::Known(at_pin)) = (pin, entry.at_pin) {
            if write.epoch <= pin && (at_pin.is_none() || write.lsn > at_pin.lsn) {
                entry.at_pin = AtPin::Known(write);
            }
        }
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
        self.collect(|slot, entry| match entry.last_at(epoch) {
            Some(write) if write.is_none() => Err(format!("page slot {slot} was never written")),
            Some(write) => Ok(write.version),
            None => Err(format!(
                "the content of page slot {slot} at epoch {epoch} is no longer known \
                 (its last writes are of epochs {} and {})",
                entry.previous.epoch, entry.latest.epoch
            )),
        })
    }

    /// Pins `epoch` (see the module doc): from now on every page keeps its last write of an
    /// epoch `<= epoch`. Call it once, as soon as the snapshot's cut epoch is known. Errs if it
    /// was pinned already, or if the state at `epoch` of some page is already lost (those pages
    /// stay unknown; the others are pinned all the same).
    pub fn pin(&self, epoch: Epoch) -> Result<(), String> {
        assert!(epoch > 0, "write epochs start at 1");
        if let Err(pinned) =
            self.pinned
                .compare_exchange(0, epoch, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(format!("the reference is pinned at epoch {pinned} already"));
        }
        let mut lost = 0u64;
        let mut first_lost = None;
        for stripe_index in 0..self.stripes.len() {
            let mut stripe = self.stripe(stripe_index);
            debug_assert!(stripe.pin.is_none(), "pinned twice");
            stripe.pin = Some(epoch);
            for (position, entry) in stripe.entries.iter_mut().enumerate() {
                entry.at_pin = match entry.last_at(epoch) {
                    Some(write) => AtPin::Known(write),
                    None => {
                        lost += 1;
                        first_lost.get_or_insert((position * STRIPES + stripe_index, *entry));
                        AtPin::Lost
                    }
                };
            }
        }
        match first_lost {
            None => Ok(()),
            Some((slot, entry)) => Err(format!(
                "pinned epoch {epoch} too late: the state at the pin of {lost} page(s) is lost \
                 (e.g. page slot {slot}, whose last writes are of epochs {} and {})",
                entry.previous.epoch, entry.latest.epoch
            )),
        }
    }

    /// The pinned epoch, if [`Reference::pin`] was called.
    pub fn pinned(&self) -> Option<Epoch> {
        Some(self.pinned.load(Ordering::Acquire)).filter(|&epoch| epoch != 0)
    }

    /// The version every page held at the end of the pinned epoch, by slot: for each page the
    /// recorded write of epoch `<=` the pin with the highest LSN. Exact once every write was
    /// recorded (the writers stopped).
    pub fn expected_at_pin(&self) -> Result<Vec<Version>, String> {
        let epoch = self
            .pinned()
            .ok_or_else(|| "the reference was never pinned".to_string())?;
        self.collect(|slot, entry| match entry.at_pin {
            AtPin::Known(write) if !write.is_none() => Ok(write.version),
            AtPin::Known(_) => Err(format!(
                "page slot {slot} has no write of an epoch <= the pinned {epoch}"
            )),
            AtPin::Lost => Err(format!(
                "the content of page slot {slot} at the pinned epoch {epoch} is not known"
            )),
            // Only while another thread is still in `pin`.
            AtPin::Unpinned => Err(format!("page slot {slot} is not pinned yet")),
        })
    }

    /// One version per slot, from `pick(slot, entry)`; the first error wins.
    fn collect(
        &self,
        pick: impl Fn(usize, &Entry) -> Result<Version, String>,
    ) -> Result<Vec<Version>, String> {
        let mut versions = vec![Version::INITIAL; self.pages];
        for stripe_index in 0..self.stripes.len() {
            let stripe = self.stripe(stripe_index);
            for (position, entry) in stripe.entries.iter().enumerate() {
                let slot = position * STRIPES + stripe_index;
                versions[slot] = pick(slot, entry)?;
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

    #[test]
    fn an_entry_takes_80_bytes() {
        // The module doc's memory figure.
        assert_eq!(std::mem::size_of::<Entry>(), 80);
    }

    #[test]
    fn the_pin_keeps_the_state_at_the_cut_through_later_epochs() {
        let reference = Reference::new(3);
        for slot in 0..3 {
            reference.record(slot, receipt(slot as Lsn + 1, 1), Version::INITIAL);
        }
        reference.record(0, receipt(10, 2), Version::new(0, 0)); // in the cut
        reference.record(1, receipt(11, 3), Version::new(0, 1)); // after the cut
        reference.pin(2).unwrap();
        assert_eq!(reference.pinned(), Some(2));
        // Epochs 3, 4, 5 write every page: `expected_at(2)` forgets, the pin does not.
        for (lsn, epoch) in [(20, 3), (30, 4), (40, 5)] {
            for slot in 0..3 {
                reference.record(
                    slot,
                    receipt(lsn + slot as Lsn, epoch),
                    Version::new(1, lsn),
                );
            }
        }
        assert!(reference.expected_at(2).is_err());
        let at_pin = reference.expected_at_pin().unwrap();
        assert_eq!(
            at_pin,
            [Version::new(0, 0), Version::INITIAL, Version::INITIAL]
        );
        assert_eq!(reference.order_anomalies(), 0);
    }

    #[test]
    fn a_write_of_the_cut_recorded_after_the_pin_counts() {
        let reference = Reference::new(2);
        reference.record(0, receipt(1, 1), Version::INITIAL);
        reference.record(1, receipt(2, 1), Version::INITIAL);
        reference.record(0, receipt(10, 3), Version::new(2, 0)); // epoch 3 is after the cut
        reference.pin(2).unwrap();
        assert_eq!(reference.expected_at_pin().unwrap()[0], Version::INITIAL);
        // Writes of epoch 2 that returned before the pin but are recorded after it, in either
        // order, and later epochs in between.
        reference.record(0, receipt(12, 4), Version::new(2, 1));
        reference.record(0, receipt(8, 2), Version::new(1, 1)); // late, the last of the cut
        reference.record(0, receipt(5, 2), Version::new(0, 1)); // late, older still
        reference.record(1, receipt(7, 2), Version::new(3, 0)); // late
        reference.record(1, receipt(15, 5), Version::new(3, 1));
        assert_eq!(
            reference.expected_at_pin().unwrap(),
            [Version::new(1, 1), Version::new(3, 0)]
        );
        assert_eq!(
            reference.expected_at(Epoch::MAX).unwrap()[0],
            Version::new(2, 1)
        );
        assert_eq!(reference.order_anomalies(), 0);
    }

    #[test]
    fn a_pin_after_two_newer_epochs_wrote_says_the_state_is_lost() {
        let reference = Reference::new(2);
        reference.record(0, receipt(1, 1), Version::INITIAL);
        reference.record(1, receipt(2, 1), Version::INITIAL);
        reference.record(0, receipt(5, 3), Version::new(0, 0));
        reference.record(0, receipt(9, 4), Version::new(0, 1));
        let error = reference.pin(2).unwrap_err();
        assert!(error.contains("1 page(s) is lost"), "{error}");
        assert!(error.contains("page slot 0"), "{error}");
        // A late write of the cut does not make the page known again: an older one may be lost.
        reference.record(0, receipt(3, 2), Version::new(1, 0));
        let error = reference.expected_at_pin().unwrap_err();
        assert!(error.contains("page slot 0"), "{error}");
        assert!(reference
            .pin(3)
            .unwrap_err()
            .contains("pinned at epoch 2 already"));
    }

    #[test]
    fn an_unpinned_reference_has_no_state_at_the_pin() {
        let reference = Reference::new(1);
        reference.record(0, receipt(1, 1), Version::INITIAL);
        assert_eq!(reference.pinned(), None);
        assert!(reference.expected_at_pin().is_err());
    }
}
