//! Breaks if any bytes in the last segment can panic recovery, or if open accepts a log that replay
//! then rejects (open must cut every invalid tail, so replay of what remains always succeeds).

mod common;

use common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_tails_open_to_a_replayable_prefix(
        records in 1u64..40,
        cut_back in 0u64..600,
        flips in proptest::collection::vec((any::<u64>(), 1u8..=255), 0..4),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let fs = std_fs();
        let config = small_config(1 << 20);
        let (wal, _) = open(&fs, &dir, &config);
        let (lsns, end_lsn) = append_stream(&wal, records);
        wal.sync().unwrap();
        drop(wal);

        let segment = segment_paths(&dir).pop().unwrap();
        let full_len = file_offset(0, end_lsn);
        let len = full_len.saturating_sub(cut_back).max(32);
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
            file.set_len(len).unwrap();
            file.write_all_at(&garbage, len).unwrap();
        }
        let damaged_len = len + garbage.len() as u64;
        for (position, mask) in flips {
            // Records only: a damaged header of a non-empty segment is a (tested) error.
            if damaged_len > 32 {
                flip_byte(&segment, 32 + position % (damaged_len - 32), mask);
            }
        }

        let (wal, report) = open(&fs, &dir, &config);
        let replayed = replay_all(&wal, 0);
        // What survives is a prefix of what was written, at the same LSNs.
        prop_assert!(replayed.len() <= lsns.len());
        for (i, (lsn, record)) in replayed.iter().enumerate() {
            prop_assert_eq!(*lsn, lsns[i]);
            prop_assert_eq!(record, &common::record(i as u64));
        }
        prop_assert_eq!(report.end_lsn, wal.end_lsn());
        if let Some(cut) = &report.tail_cut {
            prop_assert_eq!(cut.lsn, report.end_lsn);
        }
        let lsn = wal.append(&common::record(1000)).unwrap();
        prop_assert_eq!(lsn, report.end_lsn);
    }
}
