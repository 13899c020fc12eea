//! Breaks if a panicking `CheckpointListener` can leave the engine unpoisoned (issue 11 defect 9;
//! DESIGN §7 L2): the panic must poison the engine with its message, and every waiter
//! (`checkpoint()`, a throttled writer, a snapshot) must return, with the checkpointer thread and
//! with checkpoints on the caller's thread; `close()` must return after it.
//!
//! The checks also run with the seeded bug `listener-panic-not-poisoned` on and must each fail.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod lifecycle_core_support;

use std::sync::Arc;

use deltasnap::bugs::Bug;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{
    CheckpointCut, CheckpointListener, Config, Engine, Epoch, Error, PageId, PartitionId,
    SnapshotOptions, WriteGuard,
};
use lifecycle_core_support::{receive, serial, spawn_call, with_bug};

const PAGE_SIZE: u32 = 512;

fn config(background_checkpointer: bool) -> Config {
    Config {
        page_size: PAGE_SIZE,
        memory_budget_bytes: 64 * PAGE_SIZE as u64,
        dirty_checkpoint_percent: 25,
        dirty_throttle_percent: 50,
        checkpoint_interval_ms: None,
        background_checkpointer,
        ..Config::default()
    }
}

/// Panics in one of its callbacks.
struct PanicIn(&'static str);

impl PanicIn {
    fn maybe_panic(&self, callback: &str) {
        if self.0 == callback {
            panic!("boom in {callback}");
        }
    }
}

impl CheckpointListener for PanicIn {
    fn on_checkpoint_begin(&self, _cut: &CheckpointCut) {
        self.maybe_panic("on_checkpoint_begin");
    }

    fn before_page_write(&self, _epoch: Epoch, _page: PageId, _image: &[u8]) -> Option<WriteGuard> {
        self.maybe_panic("before_page_write");
        None
    }

    fn on_checkpoint_end(&self, _epoch: Epoch) {
        self.maybe_panic("on_checkpoint_end");
    }
}

/// An engine with one written page and a listener panicking in `callback`.
fn engine_with(callback: &'static str, background_checkpointer: bool) -> Arc<Engine> {
    let vfs: Arc<dyn Vfs> = Arc::new(SimFs::new());
    let engine = Engine::open_on(vfs, "/store", config(background_checkpointer)).unwrap();
    engine.create_partition(PartitionId(1)).unwrap();
    let page = engine.allocate_page(PartitionId(1)).unwrap();
    engine.write(page, 0, b"x").unwrap();
    engine.add_checkpoint_listener(Arc::new(PanicIn(callback)));
    Arc::new(engine)
}

/// The engine is poisoned with the listener's panic message, and `close()` returns.
fn expect_poisoned(engine: Arc<Engine>, callback: &str) -> Result<(), String> {
    let expected = format!("checkpoint listener panicked in {callback}: boom in {callback}");
    match engine.poisoned() {
        Some(reason) if reason.contains(&expected) => {}
        other => return Err(format!("poison reason {other:?}, expected {expected:?}")),
    }
    let close = spawn_call("close", move || engine.close());
    match receive("close after the panic", &close)? {
        Err(Error::Poisoned(_)) => Ok(()),
        other => Err(format!("close after the panic returned {other:?}")),
    }
}

/// `checkpoint()` returns `Poisoned` naming the panic.
fn checkpoint_after_panic(callback: &'static str, background: bool) -> Result<(), String> {
    let engine = engine_with(callback, background);
    let call = {
        let engine = Arc::clone(&engine);
        spawn_call("checkpoint", move || engine.checkpoint())
    };
    match receive("checkpoint", &call)? {
        Err(Error::Poisoned(reason)) if reason.contains("checkpoint listener panicked") => {}
        other => return Err(format!("checkpoint returned {other:?}")),
    }
    expect_poisoned(engine, callback)
}

/// Writers past the throttle limit return once the checkpoint they wait for panicked.
fn throttled_writer_after_panic() -> Result<(), String> {
    let engine = engine_with("on_checkpoint_begin", true);
    let partition = PartitionId(2);
    engine.create_partition(partition).unwrap();
    let writer = {
        let engine = Arc::clone(&engine);
        spawn_call("writer", move || -> Result<(), Error> {
            // Past the throttle limit (32 pages) the writer waits for a checkpoint.
            for _ in 0..64 {
                let page = engine.allocate_page(partition)?;
                engine.write(page, 0, b"dirty")?;
            }
            Ok(())
        })
    };
    match receive("throttled writer", &writer)? {
        Err(Error::Poisoned(_)) => {}
        other => return Err(format!("the throttled writer returned {other:?}")),
    }
    expect_poisoned(engine, "on_checkpoint_begin")
}

/// A snapshot whose forced checkpoint panicked fails.
fn snapshot_after_panic(background: bool) -> Result<(), String> {
    let engine = engine_with("before_page_write", background);
    let snapshot = engine
        .snapshot(SnapshotOptions::new("/snapshots", "panicking"))
        .map_err(|e| format!("snapshot did not start: {e}"))?;
    let wait = spawn_call("snapshot wait", move || snapshot.wait());
    if let Ok(manifest) = receive("snapshot wait", &wait)? {
        return Err(format!("the snapshot published cut {}", manifest.cut_epoch));
    }
    expect_poisoned(engine, "before_page_write")
}

type Check = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Every check, run at once (each on its own engine), each under the watchdog.
fn checks() -> Vec<(String, Result<(), String>)> {
    let mut checks: Vec<(String, Check)> = Vec::new();
    for callback in [
        "on_checkpoint_begin",
        "before_page_write",
        "on_checkpoint_end",
    ] {
        for background in [true, false] {
            checks.push((
                format!(
                    "checkpoint after a panic in {callback}, background checkpointer {background}"
                ),
                Box::new(move || checkpoint_after_panic(callback, background)),
            ));
        }
    }
    checks.push((
        "throttled writer".into(),
        Box::new(throttled_writer_after_panic),
    ));
    for background in [true, false] {
        checks.push((
            format!("snapshot, background checkpointer {background}"),
            Box::new(move || snapshot_after_panic(background)),
        ));
    }
    let running: Vec<_> = checks
        .into_iter()
        .map(|(what, check)| {
            let receiver = spawn_call(&what, check);
            (what, receiver)
        })
        .collect();
    running
        .into_iter()
        .map(|(what, receiver)| {
            let result = receive(&what, &receiver).and_then(|result| result);
            (what, result)
        })
        .collect()
}

#[test]
fn a_panicking_listener_poisons_the_engine_and_every_waiter_returns() {
    let _serial = serial();
    for (what, result) in checks() {
        if let Err(error) = result {
            panic!("{what}: {error}");
        }
    }
}

#[test]
fn seeded_listener_panic_not_poisoned_is_caught() {
    let _serial = serial();
    for (what, result) in with_bug(Bug::ListenerPanicNotPoisoned, checks) {
        let error = result.expect_err(&format!(
            "seeded bug listener-panic-not-poisoned must be caught by: {what}"
        ));
        eprintln!("seeded bug listener-panic-not-poisoned caught by {what}: {error}");
    }
}
