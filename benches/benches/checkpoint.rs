//! Checkpoint time against the number of dirty pages (one record overwritten per page, no
//! snapshot, checkpoints run on the bench thread: no background checkpointer).

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use deltasnap::Config;
use deltasnap_benches::workload::{self, StoreShape};

const STORE_BYTES: u64 = 64 << 20;

pub fn manual_config() -> Config {
    Config {
        background_checkpointer: false,
        memory_budget_bytes: 1 << 30,
        checkpoint_interval_ms: None,
        ..workload::engine_config()
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = StoreShape::for_bytes(STORE_BYTES, 4);
    let engine = workload::populate_store(dir.path(), shape, manual_config()).expect("populate");
    let mut group = c.benchmark_group("checkpoint");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    let mut next_page = 0u64;
    for dirty in [256u64, 1024, 4096, 16384] {
        group.throughput(Throughput::Elements(dirty));
        group.bench_function(BenchmarkId::new("dirty_pages", dirty), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    workload::dirty_pages(&engine, shape, next_page, dirty).expect("dirty");
                    next_page += dirty;
                    let started = Instant::now();
                    let outcome = engine.checkpoint().expect("checkpoint");
                    total += started.elapsed();
                    assert_eq!(outcome.pages_written, dirty);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
