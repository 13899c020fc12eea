//! A flipped bit in a partition file is reported as an error naming the file and the page.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use deltasnap::{Config, Engine, Error, PartitionId};

#[test]
fn flipped_bit_in_a_page_names_file_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        memory_budget_bytes: 1 << 20,
        ..Config::default()
    };
    let engine = Engine::open(dir.path(), config.clone()).unwrap();
    let p = PartitionId(2);
    engine.create_partition(p).unwrap();
    let pages: Vec<_> = (0..4).map(|_| engine.allocate_page(p).unwrap()).collect();
    for (i, page) in pages.iter().enumerate() {
        engine.write(*page, 0, &[i as u8 + 1; 64]).unwrap();
    }
    engine.close().unwrap();
    drop(engine);

    let path = dir.path().join("partitions").join("part-2.dat");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 2 * 4096 + 10).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], 2 * 4096 + 10).unwrap();
    drop(file);

    let engine = Engine::open(dir.path(), config).unwrap();
    assert_eq!(
        engine.read(pages[1]).unwrap()[0],
        2,
        "other pages still read"
    );
    let err = engine.read(pages[2]).unwrap_err();
    match &err {
        Error::ChecksumMismatch { file, page, .. } => {
            assert_eq!(file, &path);
            assert_eq!(*page, Some(2));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(
        err.to_string().contains("part-2.dat") && err.to_string().contains("page 2"),
        "{err}"
    );
    // A write to the corrupt page must not silently build on garbage either.
    assert!(engine.write(pages[2], 0, b"x").is_err());
}
