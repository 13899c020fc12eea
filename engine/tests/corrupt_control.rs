//! A corrupt or missing control file makes open fail; the engine never starts empty over data.

use deltasnap::{Config, Engine, Error, PartitionId};

fn store_with_data(dir: &std::path::Path) {
    let engine = Engine::open(dir, Config::default()).unwrap();
    engine.create_partition(PartitionId(0)).unwrap();
    let page = engine.allocate_page(PartitionId(0)).unwrap();
    engine.write(page, 0, b"precious").unwrap();
    engine.close().unwrap();
}

#[test]
fn corrupt_control_file_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    store_with_data(dir.path());
    let control = dir.path().join("CONTROL");
    let mut bytes = std::fs::read(&control).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&control, &bytes).unwrap();

    let err = Engine::open(dir.path(), Config::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ChecksumMismatch { .. } | Error::Corrupted { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("CONTROL"),
        "error names the file: {err}"
    );
    // Nothing was overwritten: restoring the byte makes the store open with its data.
    bytes[middle] ^= 0xff;
    std::fs::write(&control, &bytes).unwrap();
    let engine = Engine::open(dir.path(), Config::default()).unwrap();
    assert_eq!(
        &engine
            .read(deltasnap::PageId::new(PartitionId(0), 0))
            .unwrap()[..8],
        b"precious"
    );
}

#[test]
fn missing_control_file_over_data_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    store_with_data(dir.path());
    std::fs::remove_file(dir.path().join("CONTROL")).unwrap();
    let err = Engine::open(dir.path(), Config::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(
        dir.path().join("partitions/part-0.dat").exists(),
        "data left alone"
    );
}
