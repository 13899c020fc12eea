//! Loom over `Published<T>` (engine `sync.rs`), the cell that publishes the current epoch
//! (`epoch.rs`): if a load could return a torn or never-published value, miss a publish that
//! happens-before it, or go back to an older value, a writer could register in an epoch the cut
//! already retired (K1, K2).
//!
//! What this checks, and what it cannot:
//! - Under loom `Published<T>` is the facade's `RwLock<Arc<T>>` of loom, the one the other loom
//!   and shuttle suites run on; arc-swap (the std build) is invisible to loom and is not checked
//!   here (DESIGN §6).
//! - There is no seeded bug for `Published` in `deltasnap::bugs`: its checker build has no memory
//!   ordering or split step to get wrong, and a bug added only to fail would test nothing. To show
//!   that the checks have teeth, they also run over [`SlotCell`], a hand-rolled publish through
//!   an index and per-slot fields: with `Release` publish it passes, with `Relaxed` publish loom
//!   finds a load of a value that was never whole.
#![cfg(deltasnap_loom)]

use std::time::Instant;

use deltasnap::sync::{thread, Arc, Published};
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A published value. `check` is derived from `version`, so a value assembled from two different
/// publishes (or from memory a publish had not written yet) shows.
#[derive(Debug)]
struct Value {
    version: u64,
    check: u64,
}

const VERSIONS: u64 = 3;

fn check_of(version: u64) -> u64 {
    version * 1000 + 7
}

fn value(version: u64) -> Arc<Value> {
    Arc::new(Value {
        version,
        check: check_of(version),
    })
}

fn assert_whole(value: &Value, what: &str) {
    assert!(
        value.version < VERSIONS && value.check == check_of(value.version),
        "whole: {what} returned {value:?}, which was never published"
    );
}

/// The cell's interface, so that the same checks run over the engine's `Published` and over the
/// test's own [`SlotCell`].
trait Cell: Send + Sync + 'static {
    fn new(initial: Arc<Value>) -> Self;
    fn load(&self) -> Arc<Value>;
    fn publish(&self, value: Arc<Value>) -> Arc<Value>;
}

impl Cell for Published<Value> {
    fn new(initial: Arc<Value>) -> Self {
        Published::new(initial)
    }

    fn load(&self) -> Arc<Value> {
        Published::load(self)
    }

    fn publish(&self, value: Arc<Value>) -> Arc<Value> {
        Published::publish(self, value)
    }
}

/// A publish by hand: version `v` lives in slot `v`, whose fields are written (relaxed) before
/// the slot index is published with `PUBLISH` ordering; a load reads the index with `Acquire`,
/// then the slot's fields. Correct with `Release` (the fields happen-before any load that sees
/// the index), broken with `Relaxed`.
struct SlotCell<const RELEASE: bool> {
    slots: [(AtomicU64, AtomicU64); VERSIONS as usize],
    current: AtomicUsize,
}

impl<const RELEASE: bool> SlotCell<RELEASE> {
    fn read(&self, slot: usize) -> Arc<Value> {
        let (version, check) = &self.slots[slot];
        Arc::new(Value {
            version: version.load(Ordering::Relaxed),
            check: check.load(Ordering::Relaxed),
        })
    }
}

impl<const RELEASE: bool> Cell for SlotCell<RELEASE> {
    fn new(initial: Arc<Value>) -> Self {
        let cell = SlotCell {
            slots: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            current: AtomicUsize::new(initial.version as usize),
        };
        let (version, check) = &cell.slots[initial.version as usize];
        version.store(initial.version, Ordering::Relaxed);
        check.store(initial.check, Ordering::Relaxed);
        cell
    }

    fn load(&self) -> Arc<Value> {
        self.read(self.current.load(Ordering::Acquire))
    }

    fn publish(&self, value: Arc<Value>) -> Arc<Value> {
        let slot = value.version as usize;
        let (version, check) = &self.slots[slot];
        version.store(value.version, Ordering::Relaxed);
        check.store(value.check, Ordering::Relaxed);
        let order = if RELEASE {
            Ordering::AcqRel
        } else {
            Ordering::Relaxed
        };
        self.read(self.current.swap(slot, order))
    }
}

fn model(name: &str, f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    // `LOOM_MAX_PREEMPTIONS` (set by `cargo xtask verify`) wins. Bound 3 by default: a publish or
    // load is one or two scheduling points, so three preemptions cover every interleaving of the
    // three threads' handful of steps that matters here, in well under a second.
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let bound = builder.preemption_bound;
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        deltasnap_verification::kill::iteration();
        f();
    });
    eprintln!(
        "loom {name}: {} executions in {:.2} s (preemption bound {})",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        bound.map_or("none".to_string(), |b| b.to_string())
    );
}

/// One publisher publishes versions 1 and 2, announcing each through a `Release` store after its
/// publish returned; `readers` readers each read the announcement, then load twice. A load is
/// whole, it is at least the version whose publish happens-before it, and a thread's loads never
/// go back.
fn publish_then_load<C: Cell>(readers: usize) {
    let cell = Arc::new(C::new(value(0)));
    let announced = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (cell, announced) = (Arc::clone(&cell), Arc::clone(&announced));
        thread::spawn(move || {
            for version in 1..VERSIONS {
                let replaced = cell.publish(value(version));
                assert_whole(&replaced, "publish");
                assert_eq!(
                    replaced.version,
                    version - 1,
                    "replaced: the only publisher's publish of {version} replaced another value"
                );
                announced.store(version, Ordering::Release);
            }
        })
    };
    let readers: Vec<_> = (0..readers)
        .map(|_| {
            let (cell, announced) = (Arc::clone(&cell), Arc::clone(&announced));
            thread::spawn(move || {
                let floor = announced.load(Ordering::Acquire);
                let first = cell.load();
                assert_whole(&first, "load");
                assert!(
                    first.version >= floor,
                    "happens-after: a load after the publish of {floor} returned {first:?}"
                );
                let second = cell.load();
                assert_whole(&second, "load");
                assert!(
                    second.version >= first.version,
                    "monotonic: a load returned {second:?} after {first:?}"
                );
            })
        })
        .collect();
    publisher.join().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    let last = cell.load();
    assert_eq!(
        last.version,
        VERSIONS - 1,
        "happens-after: the last publish joined, a load returned {last:?}"
    );
}

/// Two publishers race; each `publish` returns the value it replaced. The values replaced plus
/// the final one are exactly the three values ever published, each once.
fn racing_publishes<C: Cell>() {
    let cell = Arc::new(C::new(value(0)));
    let publishers: Vec<_> = (1..VERSIONS)
        .map(|version| {
            let cell = Arc::clone(&cell);
            thread::spawn(move || cell.publish(value(version)))
        })
        .collect();
    let mut versions: Vec<u64> = publishers
        .into_iter()
        .map(|publisher| {
            let replaced = publisher.join().unwrap();
            assert_whole(&replaced, "publish");
            replaced.version
        })
        .collect();
    let last = cell.load();
    assert_whole(&last, "load");
    versions.push(last.version);
    versions.sort_unstable();
    assert_eq!(
        versions,
        (0..VERSIONS).collect::<Vec<_>>(),
        "replaced: the replaced values and the final one are not each published value once"
    );
}

#[test]
fn published_loads_are_whole_and_see_every_earlier_publish() {
    model("Published publish/load, 2 readers", || {
        publish_then_load::<Published<Value>>(2)
    });
}

#[test]
fn published_racing_publishes_each_replace_one_value() {
    model(
        "Published racing publishes",
        racing_publishes::<Published<Value>>,
    );
}

/// The checks hold for a correct hand-rolled publish, so they do not reject a cell for being
/// lock-free ... (one reader: with two, the lock-free cell's every field access is a scheduling
/// point, and the control alone would take a minute at preemption bound 4)
#[test]
fn the_checks_accept_a_release_publish() {
    model("SlotCell Release publish/load, 1 reader", || {
        publish_then_load::<SlotCell<true>>(1)
    });
    model(
        "SlotCell Release racing publishes",
        racing_publishes::<SlotCell<true>>,
    );
}

/// ... and catch a relaxed one: a load can see the new index before the slot's fields.
#[test]
#[should_panic(expected = "whole")]
fn the_checks_catch_a_relaxed_publish() {
    model("SlotCell Relaxed publish/load, 1 reader", || {
        publish_then_load::<SlotCell<false>>(1)
    });
}

#[test]
#[should_panic(expected = "whole")]
fn the_checks_catch_a_relaxed_publish_between_racing_publishers() {
    model(
        "SlotCell Relaxed racing publishes",
        racing_publishes::<SlotCell<false>>,
    );
}

/// Kill mode (see `deltasnap_verification::kill`): run alone, `--exact kill_matrix`. `Published` itself
/// has no seeded bug (its controls are the relaxed `SlotCell`s above); the engine's bugs are run
/// against its scenarios all the same.
#[test]
fn kill_matrix() {
    deltasnap_verification::kill::run_requested("loom", || {
        model("Published publish/load, 2 readers", || {
            publish_then_load::<Published<Value>>(2)
        });
        model(
            "Published racing publishes",
            racing_publishes::<Published<Value>>,
        );
    });
}
