//! The open-loop writer harness.
//!
//! `threads` writers share a target rate: writer `t` issues its `k`-th write at the intended time
//! `start + (k + t / threads) × threads / rate`. A writer that is behind issues the next write at
//! once, and a write's latency is measured from its *intended* start to its completion, so time
//! spent queued behind a stall counts (the coordinated-omission correction of wrk2 and
//! HdrHistogram). Each writer records `(intended, started, done)` for every write; windows are cut
//! after the run:
//!
//! - latency of a window: the writes *intended* to start in it (what a caller issuing requests
//!   during a backup experiences, even if they complete after it);
//! - throughput of a window: the writes *completed* in it, per second;
//! - time inside the write call (`done - started`) of the writes intended in it: the part of a
//!   stall the system under test caused, as opposed to a writer thread that woke or ran late.
//!
//! Writers sleep with a 1 ns timer slack (`PR_SET_TIMERSLACK`) so that the scheduler's default
//! 50 µs slack does not show up as write latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::Result;

/// Nanoseconds since the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn at_ns(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.origin).as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One write: when it should have started, when the write call began and when it returned (ns
/// on the run's [`Clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub intended_ns: u64,
    pub started_ns: u64,
    pub done_ns: u64,
}

impl Sample {
    /// From the intended start to completion: what the caller sees.
    pub fn latency_ns(self) -> u64 {
        self.done_ns.saturating_sub(self.intended_ns)
    }

    /// Inside the write call only.
    pub fn in_call_ns(self) -> u64 {
        self.done_ns.saturating_sub(self.started_ns)
    }
}

/// How the writers run.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    pub threads: usize,
    /// Writes per second over all writers.
    pub rate_per_sec: f64,
    /// After the body returned, writers finish the writes intended before that moment; a writer
    /// still behind after this long gives up and counts the rest as unissued.
    pub drain_max: Duration,
}

/// What a run returns.
#[derive(Debug)]
pub struct LoadRun<R> {
    pub body: R,
    pub clock: Clock,
    /// Every write of every writer, sorted by intended start.
    pub samples: Vec<Sample>,
    /// Writes intended before the end that were never issued (the drain gave up).
    pub unissued: u64,
    /// Errors of writers (a writer stops at its first error).
    pub errors: Vec<String>,
}

/// Runs `body` on the calling thread while `config.threads` writers write at the target rate.
/// `make_writer(t)` runs on writer thread `t` and returns its write function, called with the
/// writer's write counter.
pub fn run_open_loop<M, W, B, R>(config: LoadConfig, make_writer: M, body: B) -> Result<LoadRun<R>>
where
    M: Fn(usize) -> Result<W> + Sync,
    W: FnMut(u64) -> Result<()>,
    B: FnOnce(&Clock) -> R,
{
    assert!(config.threads > 0 && config.rate_per_sec > 0.0);
    let clock = Clock::new();
    let deadline_ns = AtomicU64::new(u64::MAX);
    let interval_ns = 1e9 * config.threads as f64 / config.rate_per_sec;
    // Every writer starts at the same moment, after all had time to set up.
    let start_ns = 20_000_000u64;
    let (body, per_thread) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..config.threads)
            .map(|t| {
                let (clock, deadline_ns, make_writer) = (&clock, &deadline_ns, &make_writer);
                std::thread::Builder::new()
                    .name(format!("bench-writer-{t}"))
                    .spawn_scoped(scope, move || {
                        writer_loop(
                            t,
                            config,
                            interval_ns,
                            start_ns,
                            clock,
                            deadline_ns,
                            make_writer,
                        )
                    })
                    .expect("spawn writer thread")
            })
            .collect();
        let body = body(&clock);
        deadline_ns.store(clock.now_ns(), Ordering::Release);
        let per_thread: Vec<WriterOutcome> = writers
            .into_iter()
            .map(|w| w.join().expect("writer thread panicked"))
            .collect();
        (body, per_thread)
    });
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut unissued = 0;
    for outcome in per_thread {
        samples.extend(outcome.samples);
        unissued += outcome.unissued;
        errors.extend(outcome.error);
    }
    samples.sort_unstable_by_key(|s| s.intended_ns);
    Ok(LoadRun {
        body,
        clock,
        samples,
        unissued,
        errors,
    })
}

struct WriterOutcome {
    samples: Vec<Sample>,
    unissued: u64,
    error: Option<String>,
}

fn writer_loop<M, W>(
    thread: usize,
    config: LoadConfig,
    interval_ns: f64,
    start_ns: u64,
    clock: &Clock,
    deadline_ns: &AtomicU64,
    make_writer: &M,
) -> WriterOutcome
where
    M: Fn(usize) -> Result<W> + Sync,
    W: FnMut(u64) -> Result<()>,
{
    set_timer_slack_ns(1);
    let mut outcome = WriterOutcome {
        samples: Vec::with_capacity(1 << 20),
        unissued: 0,
        error: None,
    };
    let mut write = match make_writer(thread) {
        Ok(write) => write,
        Err(error) => {
            outcome.error = Some(format!("writer {thread} setup: {error}"));
            return outcome;
        }
    };
    let offset_ns = interval_ns * thread as f64 / config.threads as f64;
    let drain_max_ns = config.drain_max.as_nanos() as u64;
    for k in 0u64.. {
        let intended_ns = start_ns + (offset_ns + k as f64 * interval_ns) as u64;
        let deadline = deadline_ns.load(Ordering::Acquire);
        if intended_ns >= deadline {
            break;
        }
        let now = clock.now_ns();
        if deadline != u64::MAX && now > deadline + drain_max_ns {
            outcome.unissued = ((deadline - intended_ns) as f64 / interval_ns) as u64 + 1;
            break;
        }
        if now < intended_ns {
            std::thread::sleep(Duration::from_nanos(intended_ns - now));
        }
        let started_ns = clock.now_ns();
        if let Err(error) = write(k) {
            outcome.error = Some(format!("writer {thread}, write {k}: {error}"));
            break;
        }
        outcome.samples.push(Sample {
            intended_ns,
            started_ns,
            done_ns: clock.now_ns(),
        });
    }
    outcome
}

/// Lowers the calling thread's timer slack (Linux; elsewhere a no-op).
pub fn set_timer_slack_ns(ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

/// A time window of a run, `[from_ns, to_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Window {
    pub fn seconds(self) -> f64 {
        self.to_ns.saturating_sub(self.from_ns) as f64 / 1e9
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Throughput and latency of the writers over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WindowStats {
    pub seconds: f64,
    pub writes_per_sec: f64,
    /// From each write's intended start to its completion.
    pub latency: Latency,
    /// Inside each write call (same writes): what remains when late starts are taken out.
    pub in_call: Latency,
}

/// The writers' throughput and latency in `window` (see the module doc for which writes count).
pub fn window_stats(samples: &[Sample], window: Window) -> WindowStats {
    let histogram = || {
        Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
    };
    let (mut latency, mut in_call) = (histogram(), histogram());
    let mut completed = 0u64;
    for sample in samples {
        if (window.from_ns..window.to_ns).contains(&sample.intended_ns) {
            latency.saturating_record(sample.latency_ns().max(1));
            in_call.saturating_record(sample.in_call_ns().max(1));
        }
        if (window.from_ns..window.to_ns).contains(&sample.done_ns) {
            completed += 1;
        }
    }
    let seconds = window.seconds();
    WindowStats {
        seconds,
        writes_per_sec: if seconds > 0.0 {
            completed as f64 / seconds
        } else {
            0.0
        },
        latency: percentiles(&latency),
        in_call: percentiles(&in_call),
    }
}

fn percentiles(histogram: &Histogram<u64>) -> Latency {
    if histogram.is_empty() {
        return Latency::default();
    }
    let us = |ns: u64| ns as f64 / 1e3;
    Latency {
        count: histogram.len(),
        p50_us: us(histogram.value_at_quantile(0.50)),
        p99_us: us(histogram.value_at_quantile(0.99)),
        p999_us: us(histogram.value_at_quantile(0.999)),
        max_us: us(histogram.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_charged_to_the_writes_queued_behind_it() {
        let run = run_open_loop(
            LoadConfig {
                threads: 1,
                rate_per_sec: 1000.0,
                drain_max: Duration::from_secs(5),
            },
            |_| {
                Ok(|k: u64| {
                    if k == 50 {
                        std::thread::sleep(Duration::from_millis(30));
                    }
                    Ok(())
                })
            },
            |_| std::thread::sleep(Duration::from_millis(200)),
        )
        .unwrap();
        assert!(run.errors.is_empty());
        let all = window_stats(
            &run.samples,
            Window {
                from_ns: 0,
                to_ns: u64::MAX,
            },
        );
        // The stalled write and the ~30 writes queued behind it all see the stall.
        assert!(all.latency.max_us >= 30_000.0, "{all:?}");
        let late = run
            .samples
            .iter()
            .filter(|s| s.latency_ns() > 10_000_000)
            .count();
        assert!(late >= 10, "only {late} writes saw the stall");
        // Only the stalled write spent the stall inside its call; the ones queued behind it
        // started late.
        assert!(all.in_call.max_us >= 30_000.0, "{all:?}");
        let slow_calls = run
            .samples
            .iter()
            .filter(|s| s.in_call_ns() > 10_000_000)
            .count();
        assert_eq!(slow_calls, 1, "{all:?}");
    }
}
