//! Merge time against delta size. The delta size is forced: the copier is held before its first
//! chunk, `K` pages are overwritten after the cut and checkpointed (each first overwrite captures
//! the page's old image), then the copier is released. The merge is timed from the first
//! observation of the `merging` stage to the first of `publishing` (polled), so it includes the
//! read-back of every page that the merge does for the manifest's crcs.

use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use deltasnap::{Config, DeltaPolicy, JobStage, SnapshotOptions};
use deltasnap_benches::workload::{self, HeldGate, StoreShape};

const STORE_BYTES: u64 = 32 << 20;

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
    let mut group = c.benchmark_group("merge");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut made = 0u64;
    for delta_pages in [0u64, 512, 2048, shape.pages()] {
        group.throughput(Throughput::Elements(delta_pages.max(1)));
        group.bench_function(BenchmarkId::new("delta_pages", delta_pages), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    made += 1;
                    let name = format!("s{made}");
                    gate.hold();
                    let handle = engine
                        .snapshot(SnapshotOptions {
                            delta_policy: DeltaPolicy::Full,
                            ..SnapshotOptions::new(dir.path(), &name)
                        })
                        .expect("start snapshot");
                    workload::wait_for_cut(&handle).expect("cut");
                    workload::dirty_pages(&engine, shape, made * 7919, delta_pages).expect("dirty");
                    engine.checkpoint().expect("checkpoint after the cut");
                    gate.release();
                    let merging = workload::wait_for_stage(&handle, JobStage::Merging);
                    let publishing = workload::wait_for_stage(&handle, JobStage::Publishing);
                    total += publishing - merging;
                    let manifest = handle.wait().expect("snapshot");
                    assert_eq!(manifest.delta_pages, delta_pages);
                    std::fs::remove_dir_all(dir.path().join(&name)).expect("remove snapshot");
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
