//! Each test names the behaviour of the model it pins; the crash-enumeration test also shows
//! that a checker built on SimFs finds a missing fsync (STYLE rule 2).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::state::SimPath;
use super::*;
use crate::sync::Arc;
use crate::vfs::{OpenMode, Vfs, VfsFile};

const SEEDS: u64 = 64;

fn path(text: &str) -> &Path {
    Path::new(text)
}

/// A durable directory `store` holding a durable, synced file `store/data` of `len` bytes of
/// `fill`.
fn store_with_synced_file(fs: &SimFs, fill: u8, len: usize) -> Arc<dyn VfsFile> {
    fs.create_dir_all(path("store")).unwrap();
    fs.sync_dir(path("")).unwrap();
    let file = fs.open(path("store/data"), OpenMode::CreateNew).unwrap();
    file.write_all_at(&vec![fill; len], 0).unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(path("store")).unwrap();
    file
}

fn read_all(fs: &SimFs, name: &str) -> io::Result<Vec<u8>> {
    let file = fs.open(path(name), OpenMode::Read)?;
    let mut bytes = vec![0u8; file.len()? as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

fn errno(result: io::Result<impl fmt::Debug>) -> Option<i32> {
    result.expect_err("operation should fail").raw_os_error()
}

fn kind(result: io::Result<impl fmt::Debug>) -> io::ErrorKind {
    result.expect_err("operation should fail").kind()
}

#[test]
fn synced_write_survives_every_crash() {
    for seed in 0..SEEDS {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0xAA, 3000));
        fs.crash(seed);
        assert_eq!(
            read_all(&fs, "store/data").unwrap(),
            vec![0xAA; 3000],
            "seed {seed}"
        );
    }
}

#[test]
fn unsynced_write_is_dropped_kept_or_torn_at_a_sector_boundary_by_seed() {
    // Bytes [700, 2200) span the sector boundaries 1024, 1536 and 2048.
    const OFFSET: usize = 700;
    const LEN: usize = 1500;
    let mut outcomes = [0u32; 3]; // dropped, kept, torn
    for seed in 0..SEEDS {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 4096);
        file.write_all_at(&[0xBB; LEN], OFFSET as u64).unwrap();
        let report = fs.crash(seed);
        let bytes = read_all(&fs, "store/data").unwrap();
        assert_eq!(bytes.len(), 4096, "seed {seed}");
        let kept = bytes[OFFSET..]
            .iter()
            .take_while(|b| **b == 0xBB)
            .count()
            .min(LEN);
        let mut expected = vec![0xAA; 4096];
        expected[OFFSET..OFFSET + kept].fill(0xBB);
        assert_eq!(bytes, expected, "seed {seed}: not a prefix of the write");
        let outcome = match kept {
            0 => 0,
            LEN => 1,
            _ => {
                assert_eq!((OFFSET + kept) % SECTOR_BYTES as usize, 0, "seed {seed}");
                2
            }
        };
        let reported = [
            report.writes_dropped,
            report.writes_kept,
            report.writes_torn,
        ];
        assert_eq!(reported.iter().sum::<u64>(), 1, "seed {seed}");
        assert_eq!(
            reported[outcome], 1,
            "seed {seed}: report disagrees with bytes"
        );
        outcomes[outcome] += 1;
    }
    assert!(
        outcomes.iter().all(|count| *count > 0),
        "every outcome must happen for some seed: dropped/kept/torn = {outcomes:?}"
    );
}

#[test]
fn write_inside_one_sector_is_never_torn() {
    let mut kept_count = 0;
    for seed in 0..SEEDS {
        let fs = SimFs::new();
        let file = store_with_synced_file(&fs, 0xAA, 512);
        file.write_all_at(&[0xBB; 100], 10).unwrap();
        fs.crash(seed);
        let bytes = read_all(&fs, "store/data").unwrap();
        let bb_count = bytes.iter().filter(|b| **b == 0xBB).count();
        assert!(
            bb_count == 0 || bb_count == 100,
            "seed {seed}: {bb_count} bytes kept"
        );
        kept_count += usize::from(bb_count == 100);
    }
    assert!(kept_count > 0 && kept_count < SEEDS as usize);
}

#[test]
fn unsynced_create_vanishes_and_dir_synced_create_survives() {
    let fs = SimFs::new();
    drop(store_with_synced_file(&fs, 0, 0));
    let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"content", 0).unwrap();
    file.sync_all().unwrap(); // the bytes are durable, the name is not
    assert_eq!(fs.durable_file_names(), vec![PathBuf::from("store/data")]);
    fs.crash(1);
    assert!(!fs.exists(path("store/new")).unwrap());
    assert_eq!(fs.file_names(), vec![PathBuf::from("store/data")]);

    let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"content", 0).unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(path("store")).unwrap();
    fs.crash(1);
    assert_eq!(read_all(&fs, "store/new").unwrap(), b"content");
}

#[test]
fn dir_synced_create_without_sync_all_is_empty_or_a_torn_prefix() {
    let mut empty_count = 0;
    for seed in 0..SEEDS {
        let fs = SimFs::new();
        drop(store_with_synced_file(&fs, 0, 0));
        let file = fs.open(path("store/new"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(path("store")).unwrap();
        file.write_all_at(&[0xCC; 2048], 0).unwrap();
        fs.crash(seed);
        let bytes = read_all(&fs, "store/new").unwrap();
        assert_eq!(bytes.len() % SECTOR_BYTES as usize, 0, "seed {seed}");
        assert!(bytes.iter().all(|b| *b == 0xCC), "seed {seed}");
        empty_count += usize::from(bytes.is_empty());
    }
    assert!(empty_count > 0);
}

#[test]
fn unsynced_remove_reappears_after_crash() {
    let fs = SimFs::new();
    drop(store_with_synced_file(&fs, 0x11, 10));
    fs.remove_file(path("store/data")).unwrap();
    assert!(fs.file_names().is_empty());
    fs.crash(3);
    assert_eq!(read_all(&fs, "store/data").unwrap(), vec![0x11; 10]);

    fs.remove_file(path("store/data")).unwrap();
    fs.sync_dir(path("store")).unwrap();
    fs.crash(3);
    assert!(!fs.exists(path("store/data")).unwrap());
}

#[test]
fn directories_are_durable_only_after_sync_dir_of_their_parent() {
    let fs = SimFs::new();
    fs.create_dir_all(path("store/wal")).unwrap();
    fs.sync_dir(path("store")).unwrap(); // `wal` is in `store`, `store` is not in ""
    fs.crash(0);
    assert!(!fs.exists(path("store")).unwrap());

    fs.create_dir_all(path("store/wal")).unwrap();
    fs.sync_dir(path("")).unwrap();
    fs.sync_dir(path("store")).unwrap();
    fs.crash(0);
    assert!(fs.is_dir(path("store/wal")).unwrap());
}

/// Replaces `store/CONTROL` by writing `store/CONTROL.tmp` and renaming it over, the way the
/// engine does; `sync_tmp: false` is the classic bug that renames bytes that are not durable.
fn replace_control(fs: &SimFs, contents: &[u8], sync_tmp: bool) -> io::Result<()> {
    let tmp = fs.open(path("store/CONTROL.tmp"), OpenMode::Create)?;
    tmp.set_len(0)?;
    tmp.write_all_at(contents, 0)?;
    if sync_tmp {
        tmp.sync_all()?;
    }
    fs.rename(path("store/CONTROL.tmp"), path("store/CONTROL"))?;
    fs.sync_dir(path("store"))
}

const OLD: [u8; 1500] = [0x0D; 1500];
const NEW: [u8; 1500] = [0x0E; 1500];

fn store_with_old_control() -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(path("store")).unwrap();
    fs.sync_dir(path("")).unwrap();
    replace_control(&fs, &OLD, true).unwrap();
    fs
}

#[test]
fn rename_is_atomic_old_or_new_never_mixed() {
    for seed in 0..SEEDS {
        // Without the directory sync the rename is undone.
        let fs = store_with_old_control();
        let tmp = fs
            .open(path("store/CONTROL.tmp"), OpenMode::CreateNew)
            .unwrap();
        tmp.write_all_at(&NEW, 0).unwrap();
        tmp.sync_all().unwrap();
        fs.rename(path("store/CONTROL.tmp"), path("store/CONTROL"))
            .unwrap();
        assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), NEW);
        fs.crash(seed);
        assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), OLD, "seed {seed}");
        assert!(!fs.exists(path("store/CONTROL.tmp")).unwrap());

        // With it, the new file is in place.
        replace_control(&fs, &NEW, true).unwrap();
        fs.crash(seed);
        assert_eq!(read_all(&fs, "store/CONTROL").unwrap(), NEW, "seed {seed}");
    }
}

#[test]
fn half_synced_move_between_directories_keeps_the_file_under_some_name() {
    let fs = SimFs::new();
    fs.create_dir_all(path("a")).unwrap();
    fs.create_dir_all(path("b")).unwrap();
    fs.sync_dir(path("")).unwrap();
    let file = fs.open(path("a/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"f", 0).unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(path("a")).unwrap();
    fs.rename(path("a/f"), path("b/f")).unwrap();
    fs.sync_dir(path("b")).unwrap(); // `a` still lists `f` durably
    fs.crash(0);
    assert_eq!(
        fs.file_names(),
        vec![PathBuf::from("a/f"), PathBuf::from("b/f")]
    );
    assert_eq!(read_all(&fs, "b/f").unwrap(), b"f");
}

/// Runs `replace_control` with a power cut at every operation and a crash under several seeds;
/// after each restart CONTROL must hold OLD or NEW exactly. Returns the first counterexample.
fn check_replace_control(sync_tmp: bool) -> Result<(), String> {
    let dry_run = store_with_old_control();
    let setup_ops = dry_run.op_count();
    replace_control(&dry_run, &NEW, sync_tmp).unwrap();
    let workload_ops = dry_run.op_count() - setup_ops;
    for cut in 0..=workload_ops {
        for seed in 0..8 {
            let fs = store_with_old_control();
            fs.set_fault_plan(FaultPlan::crash_at(setup_ops + cut));
            let outcome = replace_control(&fs, &NEW, sync_tmp);
            assert_eq!(outcome.is_ok(), cut == workload_ops, "cut {cut}");
            fs.crash(seed);
            let control = read_all(&fs, "store/CONTROL").map_err(|e| e.to_string());
            if control != Ok(OLD.to_vec()) && control != Ok(NEW.to_vec()) {
                return Err(format!(
                    "replay with cut {cut} seed {seed}: CONTROL is {:?}",
                    control.map(|bytes| (bytes.len(), bytes.first().copied()))
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn crash_enumeration_accepts_write_fsync_rename_fsync_dir() {
    assert_eq!(check_replace_control(true), Ok(()));
}

#[test]
fn crash_enumeration_finds_a_rename_of_unsynced_bytes() {
    let found = check_replace_control(false);
    assert!(found.is_err(), "the missing fsync must be found");
}

#[test]
fn fail_at_fails_the_nth_operation_once_with_its_errno() {
    let fs = SimFs::new();
    let file = store_with_synced_file(&fs, 0xAA, 16);
    let next = fs.op_count();
    fs.set_fault_plan(FaultPlan::fail_at(next + 1, FaultError::Enospc));
    file.write_all_at(&[1], 0).unwrap(); // operation `next`
    assert_eq!(errno(file.write_all_at(&[2; 64], 0)), Some(libc::ENOSPC));
    assert_eq!(fs.read_current(path("store/data")).unwrap()[..2], [1, 0xAA]);
    assert_eq!(fs.read_current(path("store/data")).unwrap().len(), 16);
    file.write_all_at(&[3], 0).unwrap(); // one-shot: spent
    assert_eq!(fs.op_count(), next + 3);

    fs.set_fault_plan(FaultPlan::fail_at(fs.op_count(), FaultError::Eio));
    assert_eq!(errno(fs.exists(path("store"))), Some(libc::EIO));
    assert!(fs.exists(path("store")).unwrap());
}

#[test]
fn sticky_fault_limited_to_kinds_fails_every_later_matching_operation() {
    let fs = SimFs::new();
    let file = store_with_synced_file(&fs, 0xAA, 16);
    fs.set_fault_plan(
        FaultPlan::fail_at(fs.op_count(), FaultError::Eio)
            .only(&[FaultKind::Write, FaultKind::SyncFile])
            .sticky(),
    );
    for _ in 0..3 {
        assert_eq!(errno(file.write_all_at(&[0], 0)), Some(libc::EIO));
        assert_eq!(errno(file.sync_all()), Some(libc::EIO));
        assert_eq!(file.len().unwrap(), 16);
        assert_eq!(file.read_at(&mut [0u8; 4], 0).unwrap(), 4);
    }
    fs.clear_faults();
    file.write_all_at(&[0], 0).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn one_shot_fault_limited_to_syncs_waits_for_the_first_sync() {
    let fs = SimFs::new();
    let file = store_with_synced_file(&fs, 0xAA, 16);
    fs.set_fault_plan(FaultPlan::fail_at(0, FaultError::Eio).only(&[FaultKind::SyncFile]));
    file.write_all_at(&[0xBB], 0).unwrap();
    assert_eq!(errno(file.sync_all()), Some(libc::EIO));
    assert_eq!(fs.read_durable(path("store/data")).unwrap()[0], 0xAA);
    file.sync_all().unwrap();
    assert_eq!(fs.read_durable(path("store/data")).unwrap()[0], 0xBB);
}

#[test]
fn crash_at_fails_that_operation_and_every_later_one_until_crash() {
    let fs = SimFs::new();
    let file = store_with_synced_file(&fs, 0xAA, 16);
    let cut = fs.op_count() + 2;
    fs.set_fault_plan(
        FaultPlan::crash_at(cut).and(
            FaultPlan::fail_at(0, FaultError::Eio)
                .only(&[FaultKind::ReadDir])
                .sticky(),
        ),
    );
    file.write_all_at(&[1], 0).unwrap();
    file.sync_all().unwrap();
    let err = file.write_all_at(&[2], 0).unwrap_err();
    assert!(SimFs::is_power_cut(&err));
    assert!(
        err.to_string()
            .contains(&format!("simulated power cut at operation {cut}")),
        "{err}"
    );
    assert_eq!(fs.power_cut_at(), Some(cut));
    assert!(SimFs::is_power_cut(&fs.exists(path("store")).unwrap_err()));
    assert!(SimFs::is_power_cut(
        &fs.open(path("x"), OpenMode::Create).unwrap_err()
    ));
    assert!(SimFs::is_power_cut(
        &fs.sync_dir(path("store")).unwrap_err()
    ));
    assert!(SimFs::is_power_cut(&file.read_at(&mut [0], 0).unwrap_err()));
    fs.set_fault_plan(FaultPlan::none()); // does not restore power
    assert!(fs.exists(path("store")).is_err());

    fs.crash(0);
    assert_eq!(fs.power_cut_at(), None);
    assert_eq!(fs.read_dir(path("store")).unwrap(), vec!["data".to_owned()]);
    assert_eq!(read_all(&fs, "store/data").unwrap()[0], 1);
}

#[test]
fn handles_opened_before_a_crash_fail_after_it() {
    let fs = SimFs::new();
    let old = store_with_synced_file(&fs, 0xAA, 16);
    fs.crash(0);
    assert!(old.read_at(&mut [0u8; 4], 0).is_err());
    assert!(old.write_all_at(&[0], 0).is_err());
    assert!(old.sync_all().is_err());
    assert!(old.len().is_err());
    let new = fs.open(path("store/data"), OpenMode::ReadWrite).unwrap();
    new.write_all_at(&[0], 0).unwrap();
    drop(old); // must not disturb the new generation's handle count
    new.sync_all().unwrap();
    let mut state = fs.state.lock();
    let inode = state
        .resolve(&SimPath::parse(path("store/data")).unwrap(), path(""))
        .unwrap();
    assert_eq!(state.file_mut(inode).handles_open, 1);
}

/// A workload with several files and unsynced writes, crashed with `seed`; returns every file
/// with its bytes.
fn crashed_state(seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let fs = SimFs::new();
    fs.create_dir_all(path("/db/wal")).unwrap();
    fs.sync_dir(path("/")).unwrap();
    fs.sync_dir(path("/db")).unwrap();
    for (index, name) in ["/db/a", "/db/b", "/db/wal/1", "/db/wal/2"]
        .iter()
        .enumerate()
    {
        let file = fs.open(path(name), OpenMode::Create).unwrap();
        file.write_all_at(&vec![index as u8; 1000 + 300 * index], 0)
            .unwrap();
        if index % 2 == 0 {
            file.sync_all().unwrap();
        }
        for write in 0..4u8 {
            let offset = u64::from(write) * 777;
            file.write_all_at(&[0xF0 | write; 900], offset).unwrap();
        }
        file.set_len(2500).unwrap();
    }
    fs.sync_dir(path("/db")).unwrap();
    fs.sync_dir(path("/db/wal")).unwrap();
    fs.crash(seed);
    fs.file_names()
        .into_iter()
        .map(|name| {
            let bytes = fs.read_current(&name).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn same_seed_gives_the_same_post_crash_state() {
    let mut distinct = BTreeSet::new();
    for seed in 0..16 {
        let state = crashed_state(seed);
        assert_eq!(state.len(), 4);
        assert_eq!(state, crashed_state(seed), "seed {seed}");
        distinct.insert(state);
    }
    assert!(
        distinct.len() > 8,
        "the seed must matter: {} states",
        distinct.len()
    );
}

#[test]
fn bad_paths_and_modes_are_errors_not_panics() {
    use io::ErrorKind::*;
    let fs = SimFs::new();
    drop(store_with_synced_file(&fs, 0xAA, 16));
    assert_eq!(
        kind(fs.open(path("store/missing"), OpenMode::Read)),
        NotFound
    );
    assert_eq!(kind(fs.open(path("nodir/x"), OpenMode::Create)), NotFound);
    assert_eq!(
        kind(fs.open(path("store"), OpenMode::ReadWrite)),
        IsADirectory
    );
    assert_eq!(kind(fs.open(path("/"), OpenMode::Read)), IsADirectory);
    assert_eq!(
        kind(fs.open(path("store/data"), OpenMode::CreateNew)),
        AlreadyExists
    );
    assert_eq!(
        kind(fs.open(path("store/data/x"), OpenMode::Create)),
        NotADirectory
    );
    assert_eq!(kind(fs.open(path(".."), OpenMode::Read)), InvalidInput);
    assert_eq!(kind(fs.create_dir_all(path("store/data"))), AlreadyExists);
    assert_eq!(kind(fs.create_dir_all(path("store/data/x"))), NotADirectory);
    assert_eq!(kind(fs.read_dir(path("store/data"))), NotADirectory);
    assert_eq!(kind(fs.remove_file(path("store"))), IsADirectory);
    assert_eq!(kind(fs.remove_file(path("store/missing"))), NotFound);
    assert_eq!(kind(fs.remove_dir_all(path("store/data"))), NotADirectory);
    assert_eq!(kind(fs.remove_dir_all(path("."))), InvalidInput);
    assert_eq!(kind(fs.sync_dir(path("store/data"))), NotADirectory);
    assert_eq!(
        kind(fs.rename(path("store"), path("store/inner"))),
        InvalidInput
    );
    assert_eq!(
        kind(fs.rename(path("store/data"), path("store"))),
        IsADirectory
    );
    assert_eq!(kind(fs.rename(path("store/missing"), path("x"))), NotFound);
    assert_eq!(kind(fs.is_dir(path("store/data/x"))), NotADirectory);
    assert!(!fs.exists(path("store/missing")).unwrap());
    assert_eq!(kind(fs.flip_bit(path("store/data"), 16, 0)), InvalidInput);
    assert_eq!(kind(fs.flip_bit(path("store/data"), 0, 8)), InvalidInput);

    let read_only = fs
        .open(path("./store/../store/data"), OpenMode::Read)
        .unwrap();
    assert_eq!(errno(read_only.write_all_at(&[0], 0)), Some(libc::EBADF));
    assert_eq!(errno(read_only.set_len(0)), Some(libc::EBADF));
    let file = fs.open(path("store/data"), OpenMode::ReadWrite).unwrap();
    assert_eq!(kind(file.write_all_at(&[0], FILE_BYTES_MAX)), FileTooLarge);
    assert_eq!(kind(file.write_all_at(&[0], u64::MAX)), FileTooLarge);
    assert_eq!(kind(file.set_len(FILE_BYTES_MAX + 1)), FileTooLarge);
    assert_eq!(file.read_at(&mut [0u8; 8], u64::MAX).unwrap(), 0);
    assert_eq!(fs.read_current(path("store/data")).unwrap(), vec![0xAA; 16]);
}

#[test]
fn removed_open_file_stays_readable_and_is_freed_once_closed_and_unlinked_durably() {
    let fs = SimFs::new();
    let file = store_with_synced_file(&fs, 0xAA, 16);
    let inodes_with_file = fs.state.lock().inodes.len();
    fs.remove_file(path("store/data")).unwrap();
    fs.sync_dir(path("store")).unwrap();
    let mut buf = [0u8; 16];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0xAA; 16]);
    assert_eq!(fs.state.lock().inodes.len(), inodes_with_file);
    drop(file);
    assert_eq!(fs.state.lock().inodes.len(), inodes_with_file - 1);
}

#[test]
fn remove_dir_all_then_crash_brings_back_the_durable_tree() {
    let fs = SimFs::new();
    drop(store_with_synced_file(&fs, 0xAA, 16));
    fs.remove_dir_all(path("store")).unwrap();
    assert!(!fs.exists(path("store")).unwrap());
    fs.crash(0);
    assert_eq!(fs.read_durable(path("store/data")).unwrap(), vec![0xAA; 16]);
    fs.remove_dir_all(path("store")).unwrap();
    fs.sync_dir(path("")).unwrap();
    assert!(fs.durable_file_names().is_empty());
    assert_eq!(fs.state.lock().inodes.len(), 2, "only the roots are left");
}

#[test]
fn copy_to_copies_a_range_through_counted_reads_and_writes() {
    let fs = SimFs::new();
    let source = store_with_synced_file(&fs, 0xAA, 3000);
    source.write_all_at(&[0x55; 100], 1000).unwrap();
    let target = fs.open(path("store/copy"), OpenMode::Create).unwrap();
    let before = fs.op_count();
    assert_eq!(source.copy_to(950, target.as_ref(), 10, 200).unwrap(), 200);
    assert_eq!(fs.op_count() - before, 3, "copy + read + write");
    let copied = fs.read_current(path("store/copy")).unwrap();
    assert_eq!(copied.len(), 210);
    assert_eq!(copied[10..60], [0xAA; 50]);
    assert_eq!(copied[60..160], [0x55; 100]);
    assert_eq!(source.copy_to(2900, target.as_ref(), 0, 500).unwrap(), 100);

    fs.set_fault_plan(FaultPlan::fail_at(0, FaultError::Enospc).only(&[FaultKind::Write]));
    assert_eq!(
        errno(source.copy_to(0, target.as_ref(), 0, 10)),
        Some(libc::ENOSPC)
    );
}

#[test]
fn flip_bit_and_truncate_reach_volatile_and_durable_bytes() {
    let fs = SimFs::new();
    drop(store_with_synced_file(&fs, 0, 1024));
    fs.flip_bit(path("store/data"), 513, 3).unwrap();
    fs.truncate(path("store/data"), 600).unwrap();
    for bytes in [
        fs.read_current(path("store/data")).unwrap(),
        fs.read_durable(path("store/data")).unwrap(),
    ] {
        assert_eq!(bytes.len(), 600);
        assert_eq!(bytes[513], 0b1000);
    }
    assert_eq!(fs.durable_len(path("store/data")).unwrap(), 600);
    fs.crash(9);
    assert_eq!(read_all(&fs, "store/data").unwrap()[513], 0b1000);
}
