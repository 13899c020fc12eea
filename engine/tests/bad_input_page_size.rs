//! A store opened with another page size than it was created with is refused, not misread.

use deltasnap::{Config, Engine, Error, PartitionId};

#[test]
fn opening_with_another_page_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(
        dir.path(),
        Config {
            page_size: 4096,
            ..Config::default()
        },
    )
    .unwrap();
    engine.create_partition(PartitionId(0)).unwrap();
    engine.close().unwrap();
    drop(engine);

    let err = Engine::open(
        dir.path(),
        Config {
            page_size: 8192,
            ..Config::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PageSizeMismatch {
                on_disk: 4096,
                configured: 8192,
                ..
            }
        ),
        "{err}"
    );
    let err = Engine::open(
        dir.path(),
        Config {
            page_size: 3000,
            ..Config::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    Engine::open(dir.path(), Config::default()).expect("the right page size still opens");
}
