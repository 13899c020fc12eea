//! Snapshot time against store size, quiesced (no writers): request to published, verified
//! manifest. The comparison binary measures 64 MiB .. 1 GiB under writers.

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use deltasnap::{DeltaPolicy, SnapshotOptions};
use deltasnap_benches::workload::{self, StoreShape};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for mib in [16u64, 64, 128] {
        let dir = tempfile::tempdir().expect("tempdir");
        let shape = StoreShape::for_bytes(mib << 20, 4);
        let engine =
            workload::populate_store(&dir.path().join("store"), shape, workload::engine_config())
                .expect("populate");
        group.throughput(Throughput::Bytes(shape.data_bytes()));
        let mut made = 0u64;
        group.bench_function(BenchmarkId::new("store_mib", mib), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    made += 1;
                    let name = format!("s{made}");
                    let started = Instant::now();
                    let manifest = engine
                        .snapshot(SnapshotOptions {
                            delta_policy: DeltaPolicy::CursorAware,
                            ..SnapshotOptions::new(dir.path(), &name)
                        })
                        .expect("start snapshot")
                        .wait()
                        .expect("snapshot");
                    total += started.elapsed();
                    assert_eq!(manifest.delta_pages, 0, "nothing is written meanwhile");
                    std::fs::remove_dir_all(dir.path().join(&name)).expect("remove snapshot");
                }
                total
            })
        });
        engine.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
