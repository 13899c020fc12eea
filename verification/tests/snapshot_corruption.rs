//! A damaged snapshot (a flipped bit, a short or missing partition file, an extra file, an edited
//! or unparsable manifest, a manifest naming a file outside the snapshot) is reported by
//! `verify_snapshot` naming the file and page, and refused by `restore` without leaving a store
//! behind; a good one restores to exactly its cut. If verify missed one of these, `restore` would
//! build a store from bad bytes (or from a file outside the snapshot) that `Engine::open` accepts.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use deltasnap::{Engine, Error, Manifest, PageId, PartitionId, SnapshotOptions};
use support::{config, copy_dir, History, State};

const PAGE_SIZE: u32 = 1024;
const PARTITIONS: u32 = 2;
const PAGES: u32 = 6;

/// A published snapshot of a store on the real file system, and the state at its cut.
struct Good {
    dir: tempfile::TempDir,
    snapshot: PathBuf,
    at_cut: State,
    manifest: Manifest,
}

fn good_snapshot() -> Good {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("store"), config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, PARTITIONS, PAGES);
    history.put(&engine, b"schema", b"v1").unwrap();
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine.checkpoint().unwrap();
    for page in history.pages().into_iter().filter(|p| p.index % 2 == 0) {
        history.write(&engine, page, 2).unwrap();
    }
    let manifest = engine
        .snapshot(SnapshotOptions::new(dir.path(), "good"))
        .unwrap()
        .wait()
        .unwrap();
    // Later writes must not be in it.
    history.put(&engine, b"schema", b"v2").unwrap();
    for page in history.pages() {
        history.write(&engine, page, 3).unwrap();
    }
    engine.close().unwrap();
    let at_cut = history.state_at_cut(Some(manifest.cut_epoch));
    assert_ne!(at_cut, history.state_at_cut(None), "the cut is not the end");
    Good {
        snapshot: dir.path().join("good"),
        dir,
        at_cut,
        manifest,
    }
}

/// Edits the manifest and writes it back with a crc that matches the edit (as a writer that
/// knows the format would), so that the checks behind the manifest's crc are the ones tested
/// (`snapshot_manifest_integrity.rs` tests the crc itself).
fn edit_manifest(snapshot: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = snapshot.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("crc32c");
    edit(&mut manifest);
    let resealed: Manifest = serde_json::from_value(manifest).unwrap();
    fs::write(&path, resealed.to_json()).unwrap();
}

fn partition_file(snapshot: &Path, id: u32) -> PathBuf {
    snapshot.join("partitions").join(format!("part-{id}.dat"))
}

/// Damages the copy of the snapshot in the given directory (the good one is there to point at).
type Corrupt = Box<dyn Fn(&Path, &Good)>;

/// One corruption and the problem `verify` must report for it.
struct Case {
    name: &'static str,
    corrupt: Corrupt,
    file: &'static str,
    page: Option<u32>,
    reason: &'static str,
}

fn case(
    name: &'static str,
    corrupt: impl Fn(&Path, &Good) + 'static,
    file: &'static str,
    page: Option<u32>,
    reason: &'static str,
) -> Case {
    Case {
        name,
        corrupt: Box::new(corrupt),
        file,
        page,
        reason,
    }
}

fn cases() -> Vec<Case> {
    let page_size = PAGE_SIZE as u64;
    vec![
        case(
            "a flipped bit in a page",
            |s, _| {
                let path = partition_file(s, 1);
                let mut bytes = fs::read(&path).unwrap();
                bytes[3 * PAGE_SIZE as usize + 100] ^= 0x10;
                fs::write(&path, bytes).unwrap();
            },
            "partitions/part-1.dat",
            Some(3),
            "checksum mismatch",
        ),
        case(
            "a truncated partition file",
            move |s, _| {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(partition_file(s, 0))
                    .unwrap();
                file.set_len(2 * page_size + page_size / 2).unwrap();
            },
            "partitions/part-0.dat",
            Some(2),
            "missing",
        ),
        case(
            "a missing partition file",
            |s, _| fs::remove_file(partition_file(s, 1)).unwrap(),
            "partitions/part-1.dat",
            None,
            "cannot open",
        ),
        case(
            "an extra partition file",
            |s, _| {
                fs::copy(partition_file(s, 0), partition_file(s, 7))
                    .map(drop)
                    .unwrap()
            },
            "partitions/part-7.dat",
            None,
            "not in the manifest",
        ),
        case(
            "an extra file next to the manifest",
            |s, _| fs::write(s.join("notes.txt"), b"hello").unwrap(),
            "notes.txt",
            None,
            "not in the manifest",
        ),
        case(
            "a page crc changed in the manifest",
            |s, _| {
                edit_manifest(s, |m| {
                    let crc = &mut m["partitions"][0]["page_crcs"][4];
                    *crc = (crc.as_u64().unwrap() ^ 1).into();
                })
            },
            "partitions/part-0.dat",
            Some(4),
            "differs from the manifest",
        ),
        case(
            "page_count changed in the manifest",
            |s, _| edit_manifest(s, |m| m["partitions"][1]["page_count"] = (PAGES + 1).into()),
            "manifest.json",
            None,
            "page crcs",
        ),
        case(
            "page_count and page crcs cut by one page in the manifest",
            |s, _| {
                edit_manifest(s, |m| {
                    let partition = &mut m["partitions"][1];
                    partition["page_count"] = (PAGES - 1).into();
                    partition["page_crcs"].as_array_mut().unwrap().pop();
                })
            },
            "partitions/part-1.dat",
            None,
            "the manifest says",
        ),
        case(
            "page_count and page crcs grown by one page in the manifest",
            |s, _| {
                edit_manifest(s, |m| {
                    let partition = &mut m["partitions"][1];
                    partition["page_count"] = (PAGES + 1).into();
                    partition["page_crcs"]
                        .as_array_mut()
                        .unwrap()
                        .push(0.into());
                })
            },
            "partitions/part-1.dat",
            Some(PAGES),
            "missing",
        ),
        case(
            "a manifest that is not JSON",
            |s, _| {
                let path = s.join("manifest.json");
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            },
            "manifest.json",
            None,
            "not a manifest",
        ),
        case(
            "a missing manifest",
            |s, _| fs::remove_file(s.join("manifest.json")).unwrap(),
            "manifest.json",
            None,
            "",
        ),
        case(
            "a manifest naming ../x",
            |s, _| {
                // A good partition file sits at `../x`: following the name would verify.
                fs::copy(partition_file(s, 0), s.parent().unwrap().join("x")).unwrap();
                edit_manifest(s, |m| m["partitions"][0]["file"] = "../x".into());
            },
            "manifest.json",
            None,
            "only",
        ),
        case(
            "a manifest naming an absolute path",
            |s, good| {
                // The good snapshot's own file: following the name would verify.
                let outside = partition_file(&good.snapshot, 0);
                edit_manifest(s, |m| {
                    m["partitions"][0]["file"] = outside.to_str().unwrap().into()
                });
            },
            "manifest.json",
            None,
            "only",
        ),
    ]
}

#[test]
fn every_corruption_is_reported_by_verify_and_refused_by_restore() {
    let good = good_snapshot();
    let report = deltasnap::verify_snapshot(&good.snapshot).unwrap();
    assert!(
        report.is_ok(),
        "the good snapshot verifies: {:?}",
        report.problems
    );
    let cases = cases();
    for (n, case) in cases.iter().enumerate() {
        let copy = good.dir.path().join(format!("case-{n}")).join("snap");
        copy_dir(&good.snapshot, &copy);
        (case.corrupt)(&copy, &good);

        let report = deltasnap::verify_snapshot(&copy).unwrap();
        assert!(!report.is_ok(), "{}: verify found nothing", case.name);
        assert!(
            report.problems.iter().any(|p| p.file == case.file
                && p.page == case.page
                && p.reason.contains(case.reason)),
            "{}: no problem names {} page {:?} ({:?}): {:?}",
            case.name,
            case.file,
            case.page,
            case.reason,
            report.problems
        );

        let target = good.dir.path().join(format!("case-{n}")).join("restored");
        let error = deltasnap::restore(&copy, &target)
            .map(|r| r.cut_epoch)
            .expect_err(case.name);
        assert!(
            matches!(error, Error::InvalidSnapshot(_)),
            "{}: {error}",
            case.name
        );
        assert!(
            !target.join("CONTROL").exists(),
            "{}: restore left a store behind",
            case.name
        );
        assert!(
            Engine::open(&target, config_without_create()).is_err(),
            "{}: the refused target opens as a store",
            case.name
        );
        eprintln!("{}: {} ({error})", case.name, report.problems[0]);
    }
    eprintln!("{} corruptions reported and refused", cases.len());
}

/// The configuration that opens an existing store only.
fn config_without_create() -> deltasnap::Config {
    deltasnap::Config {
        create_if_missing: false,
        ..config(PAGE_SIZE)
    }
}

#[test]
fn restore_into_a_non_empty_directory_is_refused() {
    let good = good_snapshot();
    let target = good.dir.path().join("busy");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("precious"), b"do not touch").unwrap();
    let error = deltasnap::restore(&good.snapshot, &target)
        .map(|r| r.cut_epoch)
        .expect_err("restore into a non-empty directory");
    assert!(
        matches!(&error, Error::InvalidArgument(reason) if reason.contains("not empty")),
        "{error}"
    );
    let entries: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["precious"], "the target is untouched");
    assert_eq!(fs::read(target.join("precious")).unwrap(), b"do not touch");
}

#[test]
fn a_good_snapshot_restores_to_its_cut_and_the_store_works() {
    let good = good_snapshot();
    let target = good.dir.path().join("restored");
    let report = deltasnap::restore(&good.snapshot, &target).unwrap();
    assert_eq!(report.cut_epoch, good.manifest.cut_epoch);
    assert_eq!(report.pages, (PARTITIONS * PAGES) as u64);

    let engine = Engine::open(&target, config(PAGE_SIZE)).unwrap();
    let restored = State::read(&engine);
    assert!(
        restored == good.at_cut,
        "the restored store is not the cut: {}",
        restored.first_difference(&good.at_cut)
    );
    // A store like any other: it takes writes and keeps them across a reopen.
    let page = PageId::new(PartitionId(1), 2);
    engine.write(page, 10, b"after the restore").unwrap();
    engine.sync().unwrap();
    drop(engine);
    let engine = Engine::open(&target, config(PAGE_SIZE)).unwrap();
    assert_eq!(&engine.read(page).unwrap()[10..27], b"after the restore");
    assert_eq!(
        engine.metadata_get(b"schema").unwrap().as_deref(),
        Some(&b"v1"[..])
    );
}
