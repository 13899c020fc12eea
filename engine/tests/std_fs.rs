//! `StdFs` against real files. `copy_to` (copy_file_range between two real files) copies exactly
//! the requested byte range to the requested offset: if it broke, snapshot copies would be
//! shifted, short or would clobber bytes around the target range.

use deltasnap::vfs::{OpenMode, StdFs, Vfs, VfsFile};

fn read_all(file: &dyn VfsFile) -> Vec<u8> {
    let mut bytes = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut bytes, 0).unwrap();
    bytes
}

#[test]
fn copy_to_copies_exactly_a_byte_range_between_real_files() {
    const SOURCE_BYTES: usize = 10_000;
    const TARGET_BYTES: usize = 8_000;
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let source_bytes: Vec<u8> = (0..SOURCE_BYTES).map(|i| (i % 251) as u8).collect();
    let source = fs
        .open(&dir.path().join("source"), OpenMode::CreateNew)
        .unwrap();
    source.write_all_at(&source_bytes, 0).unwrap();
    let target = fs
        .open(&dir.path().join("target"), OpenMode::CreateNew)
        .unwrap();
    target.write_all_at(&[0xEE; TARGET_BYTES], 0).unwrap();

    // An unaligned range from the middle of the source to an unaligned offset of the target.
    let copied_bytes = source
        .copy_to(1_001, target.as_ref(), 2_503, 3_000)
        .unwrap();

    assert_eq!(copied_bytes, 3_000);
    let mut expected = vec![0xEE; TARGET_BYTES];
    expected[2_503..5_503].copy_from_slice(&source_bytes[1_001..4_001]);
    assert_eq!(read_all(target.as_ref()), expected);

    // A range that runs past the end of the source copies only what the source has.
    let copied_bytes = source.copy_to(9_900, target.as_ref(), 0, 500).unwrap();
    assert_eq!(copied_bytes, 100);
    expected[..100].copy_from_slice(&source_bytes[9_900..]);
    assert_eq!(read_all(target.as_ref()), expected);
    assert_eq!(
        read_all(source.as_ref()),
        source_bytes,
        "the source is read, never written"
    );
}

/// The writeback hint changes nothing a reader sees and accepts any range: unaligned, empty,
/// past the end of the file (the snapshot copier calls it for every chunk it copied).
#[test]
fn start_writeback_is_a_hint_that_accepts_any_range_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let fs = StdFs::new();
    let file = fs
        .open(&dir.path().join("file"), OpenMode::CreateNew)
        .unwrap();
    let bytes: Vec<u8> = (0..20_000).map(|i| (i % 241) as u8).collect();
    file.write_all_at(&bytes, 0).unwrap();

    for (offset, len) in [
        (0, 20_000),
        (1_001, 3_000),
        (7, 0),
        (19_999, 1),
        (30_000, 4_096),
    ] {
        file.start_writeback(offset, len)
            .unwrap_or_else(|e| panic!("start_writeback({offset}, {len}): {e}"));
    }
    file.start_writeback(0, u64::MAX).unwrap();

    assert_eq!(read_all(file.as_ref()), bytes);
    file.sync_all().unwrap();
    drop(file);
    let reopened = fs
        .open(&dir.path().join("file"), OpenMode::ReadWrite)
        .unwrap();
    assert_eq!(read_all(reopened.as_ref()), bytes);
}
