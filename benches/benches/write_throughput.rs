//! Write throughput at 1, 2 and 4 threads, with no snapshot and with a snapshot running (its
//! copier rate-limited so that it spans the measured writes; a new one starts when it ends).
//! Closed loop: each thread writes its share of a batch of random 1000-byte records as fast as
//! it can. The open-loop, latency-aware comparison is the `compare` binary.

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use deltasnap::{DeltaPolicy, Engine, JobStage, SnapshotHandle, SnapshotOptions};
use deltasnap_benches::workload::{self, record_value, StoreShape, RECORD_BYTES};
use rand::{rngs::StdRng, Rng, SeedableRng};

const STORE_BYTES: u64 = 32 << 20;
const WRITES_PER_ITERATION: u64 = 8192;
/// The copier's rate: 32 MiB at 16 MiB/s keeps a snapshot running for about 2 s.
const COPY_BYTES_PER_SEC: u64 = 16 << 20;

/// Keeps one snapshot in its copy stage at the start of every iteration.
struct RunningSnapshot<'a> {
    engine: &'a Engine,
    dir: std::path::PathBuf,
    handle: Option<SnapshotHandle>,
    made: u64,
}

impl RunningSnapshot<'_> {
    fn ensure_running(&mut self) {
        if self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.finish();
        self.made += 1;
        let handle = self
            .engine
            .snapshot(SnapshotOptions {
                delta_policy: DeltaPolicy::Full,
                rate_limit_bytes_per_sec: Some(COPY_BYTES_PER_SEC),
                ..SnapshotOptions::new(&self.dir, format!("s{}", self.made))
            })
            .expect("start snapshot");
        workload::wait_for_stage(&handle, JobStage::Copying);
        self.handle = Some(handle);
    }

    fn finish(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.wait().expect("snapshot");
            std::fs::remove_dir_all(self.dir.join(format!("s{}", self.made))).ok();
        }
    }
}

fn write_batch(engine: &Engine, shape: StoreShape, threads: usize, seed: u64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed ^ (t as u64) << 32);
                let mut value = [0u8; RECORD_BYTES];
                for k in 0..WRITES_PER_ITERATION / threads as u64 {
                    let record = rng.gen_range(0..shape.records());
                    let (page, offset) = shape.record(record);
                    record_value(record, k, &mut value);
                    engine.write(page, offset, &value).expect("write");
                }
            });
        }
    });
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = StoreShape::for_bytes(STORE_BYTES, 4);
    let engine =
        workload::populate_store(&dir.path().join("store"), shape, workload::engine_config())
            .expect("populate");
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).expect("snapshots dir");
    let mut group = c.benchmark_group("write_throughput");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(WRITES_PER_ITERATION));
    for threads in [1usize, 2, 4] {
        group.bench_function(BenchmarkId::new("no_snapshot", threads), |b| {
            let mut seed = 0;
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        seed += 1;
                        write_batch(&engine, shape, threads, seed)
                    })
                    .sum()
            })
        });
        let mut running = RunningSnapshot {
            engine: &engine,
            dir: snapshots.clone(),
            handle: None,
            made: 0,
        };
        group.bench_function(BenchmarkId::new("snapshot_running", threads), |b| {
            let mut seed = 0;
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        running.ensure_running();
                        seed += 1;
                        write_batch(&engine, shape, threads, seed)
                    })
                    .sum()
            })
        });
        running.finish();
    }
    group.finish();
    engine.close().expect("close");
}

criterion_group!(benches, bench);
criterion_main!(benches);
