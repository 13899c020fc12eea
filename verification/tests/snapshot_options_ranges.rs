//! Breaks if `Engine::snapshot` accepts a `SnapshotOptions` value out of its documented range:
//! a `chunk_bytes` whose page count wraps to 0 (it failed the snapshot later with a protocol
//! error), larger than 1 GiB or smaller than a page, a rate limit of 0 or below the minimum, an
//! empty target or a bad name must each be refused up front with `Error::InvalidArgument` naming
//! the field and the value, before anything is created; the range's ends must be accepted.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltasnap::snapshot::{CHUNK_BYTES_MAX, RATE_LIMIT_BYTES_PER_SEC_MIN};
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Engine, Error, SnapshotOptions};
use support::{config, store_dir, History, ROOT};

const PAGE_SIZE: u32 = 4096;

fn target() -> PathBuf {
    Path::new(ROOT).join("snapshots")
}

fn engine(sim: &SimFs) -> Engine {
    let engine = Engine::open_on(Arc::new(sim.clone()), store_dir(), config(PAGE_SIZE)).unwrap();
    let mut history = History::create(&engine, 1, 4);
    for page in history.pages() {
        history.write(&engine, page, 1).unwrap();
    }
    engine
}

/// A change to the options.
type SetOption = Box<dyn Fn(&mut SnapshotOptions)>;

#[test]
fn every_out_of_range_option_is_refused_before_anything_is_created() {
    let sim = SimFs::new();
    let engine = engine(&sim);
    let page = PAGE_SIZE as u64;
    let cases: Vec<(&str, SetOption, &str)> = vec![
        (
            "a chunk of 2^32 pages (wrapped to 0 pages)",
            Box::new(move |o| o.chunk_bytes = page << 32),
            "chunk_bytes = 17592186044416",
        ),
        (
            "u64::MAX chunk",
            Box::new(|o| o.chunk_bytes = u64::MAX),
            "chunk_bytes = 18446744073709551615",
        ),
        (
            "chunk over 1 GiB",
            Box::new(|o| o.chunk_bytes = CHUNK_BYTES_MAX + 1),
            "chunk_bytes = 1073741825",
        ),
        (
            "chunk below a page",
            Box::new(move |o| o.chunk_bytes = page - 1),
            "chunk_bytes = 4095",
        ),
        (
            "chunk of 0",
            Box::new(|o| o.chunk_bytes = 0),
            "chunk_bytes = 0",
        ),
        (
            "rate 0",
            Box::new(|o| o.rate_limit_bytes_per_sec = Some(0)),
            "rate_limit_bytes_per_sec = Some(0)",
        ),
        (
            "rate below the minimum",
            Box::new(|o| o.rate_limit_bytes_per_sec = Some(RATE_LIMIT_BYTES_PER_SEC_MIN - 1)),
            "rate_limit_bytes_per_sec = Some(4095)",
        ),
        (
            "empty target",
            Box::new(|o| o.target_dir = PathBuf::new()),
            "target_dir is empty",
        ),
        (
            "name escaping the target",
            Box::new(|o| o.name = "../x".into()),
            "snapshot name \"../x\"",
        ),
    ];
    for (what, set, named) in cases {
        let mut options = SnapshotOptions::new(target(), "snap");
        set(&mut options);
        match engine.snapshot(options) {
            Err(Error::InvalidArgument(message)) => {
                assert!(
                    message.contains(named),
                    "{what}: {message:?} does not name {named:?}"
                );
                eprintln!("{what}: refused: {message}");
            }
            Err(other) => panic!("{what}: refused with the wrong error: {other}"),
            Ok(snapshot) => panic!(
                "{what}: accepted; the snapshot then ended with {:?}",
                snapshot.wait().map(|m| m.cut_epoch)
            ),
        }
        assert!(
            !Vfs::exists(&sim, &target()).unwrap(),
            "{what}: the target directory was created"
        );
        let markers = store_dir().join("snapshots-tmp");
        assert!(
            !Vfs::exists(&sim, &markers).unwrap()
                || Vfs::read_dir(&sim, &markers).unwrap().is_empty(),
            "{what}: a marker was written"
        );
    }
    engine.close().unwrap();
}

#[test]
fn the_ends_of_every_range_are_accepted() {
    let sim = SimFs::new();
    let engine = engine(&sim);
    for (n, chunk_bytes) in [PAGE_SIZE as u64, CHUNK_BYTES_MAX].into_iter().enumerate() {
        let mut options = SnapshotOptions::new(target(), format!("snap-{n}"));
        options.chunk_bytes = chunk_bytes;
        // 4 pages of 4 KiB at the lowest rate: a wait of at most 4 s.
        options.rate_limit_bytes_per_sec = Some(RATE_LIMIT_BYTES_PER_SEC_MIN);
        let manifest = engine.snapshot(options).unwrap().wait().unwrap();
        assert_eq!(manifest.partitions.len(), 1, "chunk_bytes {chunk_bytes}");
    }
    engine.close().unwrap();
}
