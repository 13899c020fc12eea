//! Breaks if a damaged or forged manifest verifies or restores: a change to any field (metadata,
//! cut epoch, page crcs, the crc itself …) must fail the manifest's crc32c, a manifest whose crc
//! matches but whose numbers are out of range (a `cut_epoch` of `u64::MAX` overflowed at the
//! restored store's open) must be refused by its range checks, a version-1 manifest (no crc) is
//! refused by name; and the largest values in range must restore to a store that opens and works.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use deltasnap::bugs::Bug;
use deltasnap::snapshot::manifest::{CUT_EPOCH_MAX, CUT_LSN_MAX};
use deltasnap::{Engine, Error, Manifest, PageId, SnapshotOptions};
use deltasnap_verification::kill;
use serde_json::Value;
use support::{config, copy_dir, History};

const PAGE_SIZE: u32 = 1024;
const PAGES: u32 = 4;

/// Tests that switch a seeded bug on run alone (the switch is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

/// A published snapshot of two partitions with two metadata entries, on the real file system.
fn good_snapshot(root: &Path) -> PathBuf {
    let engine = Engine::open(root.join("store"), config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, 2, PAGES);
    history.put(&engine, b"a-key", b"v1").unwrap();
    history.put(&engine, b"b-key", b"v2").unwrap();
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine
        .snapshot(SnapshotOptions::new(root, "good"))
        .unwrap()
        .wait()
        .unwrap();
    engine.close().unwrap();
    root.join("good")
}

fn read_json(snapshot: &Path) -> Value {
    serde_json::from_slice(&fs::read(snapshot.join("manifest.json")).unwrap()).unwrap()
}

/// Writes `json` as the manifest as is (its crc left as it was).
fn write_json(snapshot: &Path, json: &Value) {
    fs::write(
        snapshot.join("manifest.json"),
        serde_json::to_vec_pretty(json).unwrap(),
    )
    .unwrap();
}

/// Edits the manifest and writes it back with a matching crc (a forged but consistent one).
fn forge(snapshot: &Path, edit: impl FnOnce(&mut Value)) {
    let mut json = read_json(snapshot);
    json.as_object_mut().unwrap().remove("crc32c");
    edit(&mut json);
    let manifest: Manifest = serde_json::from_value(json).unwrap();
    fs::write(snapshot.join("manifest.json"), manifest.to_json()).unwrap();
}

/// `verify` reports a problem in `manifest.json` whose reason contains `reason`; `restore`
/// refuses with `InvalidSnapshot` and leaves no store.
fn assert_refused(root: &Path, case: &str, snapshot: &Path, reason: &str) {
    let report = deltasnap::verify_snapshot(snapshot).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == "manifest.json" && p.reason.contains(reason)),
        "{case}: verify does not report {reason:?} in manifest.json: {:?}",
        report.problems
    );
    let target = root.join(format!("restored-{}", case.replace(' ', "-")));
    let error = deltasnap::restore(snapshot, &target)
        .map(|r| r.cut_epoch)
        .expect_err(case);
    assert!(
        matches!(&error, Error::InvalidSnapshot(m) if m.contains(reason)),
        "{case}: restore: {error}"
    );
    assert!(!target.join("CONTROL").exists(), "{case}: a store was left");
    eprintln!("{case}: refused: {error}");
}

/// A change to the manifest's JSON.
type Edit = Box<dyn Fn(&mut Value)>;

/// One changed value per field, the crc left as written.
fn changed_fields() -> Vec<(&'static str, Edit)> {
    let bump = |pointer: &'static str| -> Edit {
        Box::new(move |m| {
            let field = m.pointer_mut(pointer).unwrap();
            *field = (field.as_u64().unwrap() ^ 1).into();
        })
    };
    vec![
        ("name", Box::new(|m| m["name"] = "goOd".into())),
        ("created_unix_ms", bump("/created_unix_ms")),
        ("cut_epoch", bump("/cut_epoch")),
        (
            "cut_epoch u64::MAX",
            Box::new(|m| m["cut_epoch"] = u64::MAX.into()),
        ),
        ("cut_lsn", bump("/cut_lsn")),
        ("page_size", Box::new(|m| m["page_size"] = 2048.into())),
        (
            "delta_policy",
            Box::new(|m| {
                m["delta_policy"] = if m["delta_policy"] == "full" {
                    "cursor_aware".into()
                } else {
                    "full".into()
                }
            }),
        ),
        ("delta_pages", bump("/delta_pages")),
        ("partition id", bump("/partitions/1/id")),
        ("page_count", bump("/partitions/0/page_count")),
        ("page crc", bump("/partitions/1/page_crcs/2")),
        (
            "metadata key",
            Box::new(|m| m["metadata"][0]["key_hex"] = "612d6b6579ff".into()),
        ),
        (
            "metadata value",
            Box::new(|m| m["metadata"][1]["value_hex"] = "7633".into()),
        ),
        ("crc32c", bump("/crc32c")),
    ]
}

fn a_changed_field_fails_the_crc() {
    let root = tempfile::tempdir().unwrap();
    let good = good_snapshot(root.path());
    assert!(deltasnap::verify_snapshot(&good).unwrap().is_ok());
    for (n, (field, change)) in changed_fields().into_iter().enumerate() {
        let copy = root.path().join(format!("case-{n}"));
        copy_dir(&good, &copy);
        let mut json = read_json(&copy);
        change(&mut json);
        write_json(&copy, &json);
        assert_refused(root.path(), field, &copy, "checksum mismatch");
    }
}

#[test]
fn a_change_to_any_field_is_refused_by_the_crc() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    a_changed_field_fails_the_crc();
}

#[test]
fn a_consistent_manifest_out_of_range_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let good = good_snapshot(root.path());
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "cut_epoch u64::MAX",
            Box::new(|m| m["cut_epoch"] = u64::MAX.into()),
            "cut_epoch 18446744073709551615 is out of range",
        ),
        (
            "cut_epoch past the max",
            Box::new(|m| m["cut_epoch"] = (CUT_EPOCH_MAX + 1).into()),
            "cut_epoch",
        ),
        (
            "cut_epoch 0",
            Box::new(|m| m["cut_epoch"] = 0.into()),
            "cut_epoch 0 is out of range",
        ),
        (
            "cut_lsn u64::MAX",
            Box::new(|m| m["cut_lsn"] = u64::MAX.into()),
            "cut_lsn",
        ),
        (
            "page_size 3",
            Box::new(|m| m["page_size"] = 3.into()),
            "page size",
        ),
        (
            "delta_pages over the pages",
            Box::new(|m| m["delta_pages"] = (2 * PAGES + 1).into()),
            "delta_pages",
        ),
        (
            "a bad name",
            Box::new(|m| m["name"] = ".hidden".into()),
            "snapshot name",
        ),
        (
            "partitions out of order",
            Box::new(|m| m["partitions"].as_array_mut().unwrap().reverse()),
            "strictly increasing",
        ),
        (
            "metadata out of order",
            Box::new(|m| m["metadata"].as_array_mut().unwrap().reverse()),
            "strictly increasing",
        ),
        (
            "an empty metadata key",
            Box::new(|m| m["metadata"][0]["key_hex"] = "".into()),
            "metadata key",
        ),
        (
            "a metadata key over the limit",
            Box::new(|m| m["metadata"][1]["key_hex"] = "62".repeat(1025).into()),
            "metadata key",
        ),
        (
            "bad hex",
            Box::new(|m| m["metadata"][0]["value_hex"] = "7".into()),
            "odd-length hex",
        ),
    ];
    for (n, (case, edit, reason)) in cases.into_iter().enumerate() {
        let copy = root.path().join(format!("case-{n}"));
        copy_dir(&good, &copy);
        forge(&copy, edit);
        assert_refused(root.path(), case, &copy, reason);
    }
}

#[test]
fn a_version_1_manifest_is_refused_by_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let good = good_snapshot(root.path());
    let mut json = read_json(&good);
    json.as_object_mut().unwrap().remove("crc32c");
    json["format_version"] = 1.into();
    write_json(&good, &json);
    assert_refused(root.path(), "version 1", &good, "version 1 has no checksum");
}

/// The largest cut epoch and LSN in range restore to a store that opens, takes writes,
/// checkpoints and reopens: nothing read from the manifest overflows.
#[test]
fn the_largest_values_in_range_restore_to_a_working_store() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let good = good_snapshot(root.path());
    forge(&good, |m| {
        m["cut_epoch"] = CUT_EPOCH_MAX.into();
        m["cut_lsn"] = CUT_LSN_MAX.into();
    });
    let report = deltasnap::verify_snapshot(&good).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let restored = root.path().join("restored");
    deltasnap::restore(&good, &restored).unwrap();
    let engine = Engine::open(&restored, config(PAGE_SIZE)).unwrap();
    let page = PageId::new(deltasnap::PartitionId(0), 1);
    let receipt = engine.write(page, 0, b"late").unwrap();
    assert!(receipt.epoch > CUT_EPOCH_MAX, "{receipt:?}");
    engine.sync().unwrap();
    engine.checkpoint().unwrap();
    engine.close().unwrap();
    let engine = Engine::open(&restored, config(PAGE_SIZE)).unwrap();
    assert_eq!(&engine.read(page).unwrap()[..4], b"late");
}

#[test]
fn seeded_manifest_unchecked_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kill::assert_caught(
        "snapshot-manifest",
        Bug::ManifestUnchecked,
        a_changed_field_fails_the_crc,
    );
}
