//! Out-of-range pages, partitions and offsets are clear errors, never panics or silent writes.

use deltasnap::{Config, Engine, Error, PageId, PartitionId};

#[test]
fn out_of_range_arguments_are_rejected_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), Config::default()).unwrap();
    let p = PartitionId(3);
    engine.create_partition(p).unwrap();
    let page = engine.allocate_page(p).unwrap();

    let err = engine.write(PageId::new(p, 1), 0, b"x").unwrap_err();
    assert!(
        matches!(err, Error::PageOutOfRange { page_count: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("3:1"),
        "error names the page: {err}"
    );

    let err = engine
        .write(PageId::new(PartitionId(9), 0), 0, b"x")
        .unwrap_err();
    assert!(
        matches!(err, Error::NoSuchPartition(PartitionId(9))),
        "{err}"
    );

    let payload = engine.payload_size();
    let err = engine.write(page, payload - 1, b"xy").unwrap_err();
    assert!(matches!(err, Error::OutOfPage { .. }), "{err}");
    let err = engine.write(page, usize::MAX, b"x").unwrap_err();
    assert!(matches!(err, Error::OutOfPage { .. }), "{err}");
    engine
        .write(page, payload - 2, b"xy")
        .expect("a write ending exactly at the payload end fits");

    let err = engine.read(PageId::new(p, 7)).unwrap_err();
    assert!(matches!(err, Error::PageOutOfRange { .. }), "{err}");
    let err = engine.create_partition(p).unwrap_err();
    assert!(matches!(err, Error::PartitionExists(_)), "{err}");
    let err = engine.metadata_put(b"", b"v").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    // Nothing of the rejected writes reached the page.
    assert_eq!(&engine.read(page).unwrap()[..2], &[0, 0]);
}
