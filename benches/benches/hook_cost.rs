//! What the snapshot's write hook costs the checkpointer, per page written: a checkpoint of
//! `PAGES` dirty pages with no snapshot, as the snapshot's own checkpoint `S` (the hook appends
//! each new image to the delta; cursor-aware skips pages the held copier will still read), and as
//! the first checkpoint after `S` while the copy is held back (the hook reads each page's old
//! image from the partition file and appends it). Durations are the engine's own checkpoint
//! timings (`Engine::jobs`, `CheckpointOutcome::duration`): cut, redo fsync, writes, fsyncs,
//! control file.

use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use deltasnap::{Config, DeltaPolicy, Engine, SnapshotOptions};
use deltasnap_benches::workload::{self, HeldGate, StoreShape};

const STORE_BYTES: u64 = 64 << 20;
const PAGES: u64 = 4096;

#[derive(Clone, Copy)]
enum Variant {
    NoSnapshot,
    /// The snapshot's checkpoint `S` writes the dirty pages.
    DuringCut(DeltaPolicy),
    /// A checkpoint after `S`, before the copy, writes them.
    AfterCut,
}

fn one_checkpoint(
    engine: &Engine,
    shape: StoreShape,
    snapshots: &std::path::Path,
    gate: &HeldGate,
    variant: Variant,
    iteration: u64,
) -> Duration {
    let first_page = iteration * PAGES;
    if let Variant::NoSnapshot = variant {
        workload::dirty_pages(engine, shape, first_page, PAGES).expect("dirty");
        return engine.checkpoint().expect("checkpoint").duration;
    }
    let policy = match variant {
        Variant::DuringCut(policy) => policy,
        _ => DeltaPolicy::Full,
    };
    if let Variant::DuringCut(_) = variant {
        workload::dirty_pages(engine, shape, first_page, PAGES).expect("dirty");
    }
    gate.hold();
    let name = format!("s{iteration}");
    let handle = engine
        .snapshot(SnapshotOptions {
            delta_policy: policy,
            ..SnapshotOptions::new(snapshots, &name)
        })
        .expect("start snapshot");
    let cut = workload::wait_for_cut(&handle).expect("cut");
    let duration = match variant {
        Variant::AfterCut => {
            workload::dirty_pages(engine, shape, first_page, PAGES).expect("dirty");
            engine.checkpoint().expect("checkpoint").duration
        }
        _ => workload::checkpoint_duration(engine, cut),
    };
    gate.release();
    handle.wait().expect("snapshot");
    std::fs::remove_dir_all(snapshots.join(&name)).expect("remove snapshot");
    duration
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = StoreShape::for_bytes(STORE_BYTES, 4);
    let config = Config {
        background_checkpointer: false,
        memory_budget_bytes: 1 << 30,
        checkpoint_interval_ms: None,
        ..workload::engine_config()
    };
    let store = dir.path().join("store");
    let gate = HeldGate::new(&store);
    let engine = workload::populate_store_on(gate.vfs(), &store, shape, config).expect("populate");
    let mut group = c.benchmark_group("hook_cost");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(PAGES));
    let mut iteration = 0u64;
    for (name, variant) in [
        ("no_snapshot", Variant::NoSnapshot),
        ("cut_full", Variant::DuringCut(DeltaPolicy::Full)),
        (
            "cut_cursor_aware",
            Variant::DuringCut(DeltaPolicy::CursorAware),
        ),
        ("after_cut_old_images", Variant::AfterCut),
    ] {
        group.bench_function(BenchmarkId::new("checkpoint_4096_pages", name), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        iteration += 1;
                        one_checkpoint(&engine, shape, dir.path(), &gate, variant, iteration)
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
