//! Running the stateright checker on one model and reporting what it established about each
//! property: [`check_model`] with [`CheckOptions`] in, a [`CheckReport`] (verdict and trace as
//! engine events per property) out. Knows nothing of the registry or of any model.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, CheckerBuilder, Expectation, HasDiscoveries, Model};

/// How the state space is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Breadth first: shortest counterexamples when single-threaded.
    Bfs,
    /// Depth first: less memory, longer counterexamples.
    Dfs,
}

/// Live numbers of a running check, handed to the progress callback.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
}

impl Progress {
    pub fn states_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.states as f64 / secs
        } else {
            0.0
        }
    }
}

/// Called with live numbers about once per `progress_interval` while a check runs.
pub type ProgressCallback = Box<dyn FnMut(&Progress)>;

pub struct CheckOptions {
    pub threads: usize,
    pub strategy: Strategy,
    /// Stop at the first counterexample instead of also looking for every `sometimes` example.
    pub stop_at_first_failure: bool,
    pub progress_interval: Duration,
    pub progress: Option<ProgressCallback>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            threads: 1,
            strategy: Strategy::Bfs,
            stop_at_first_failure: false,
            progress_interval: Duration::from_secs(1),
            progress: None,
        }
    }
}

/// What the search established about one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `always`/`eventually`: no counterexample in the whole bounded space.
    Holds,
    /// `always`/`eventually`: counterexample found (the trace shows it).
    Violated,
    /// `sometimes`: an example was found (the trace shows it).
    Reached,
    /// `sometimes`: the whole bounded space was searched and no example exists (vacuity).
    Unreached,
    /// The search stopped early (first failure, timeout) before deciding this property.
    Undecided,
}

#[derive(Clone, Debug)]
pub struct PropertyReport {
    pub name: &'static str,
    pub expectation: Expectation,
    pub verdict: Verdict,
    /// The discovery path as engine events, one line per action (empty without a discovery).
    pub trace: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct CheckReport {
    pub model: &'static str,
    pub bounds: Vec<(&'static str, usize)>,
    pub bug: Option<String>,
    pub states: usize,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Every reachable state within the bounds was visited.
    pub complete: bool,
    pub properties: Vec<PropertyReport>,
}

impl CheckReport {
    pub fn violations(&self) -> impl Iterator<Item = &PropertyReport> {
        self.properties
            .iter()
            .filter(|p| p.verdict == Verdict::Violated)
    }

    pub fn unreached(&self) -> impl Iterator<Item = &PropertyReport> {
        self.properties
            .iter()
            .filter(|p| p.verdict == Verdict::Unreached)
    }
}

/// Checks `model` and renders every discovery with `describe`. Public so that tests and other
/// harnesses can check a model value directly, without going through bound names.
pub fn check_model<M>(
    model: M,
    describe: fn(&M, &M::State, &M::Action) -> String,
    mut options: CheckOptions,
) -> CheckReport
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    let builder: CheckerBuilder<M> = model.checker().threads(options.threads.max(1));
    let builder = if options.stop_at_first_failure {
        builder.finish_when(HasDiscoveries::AnyFailures)
    } else {
        builder
    };
    let started = Instant::now();
    match options.strategy {
        Strategy::Bfs => drive(builder.spawn_bfs(), describe, &mut options, started),
        Strategy::Dfs => drive(builder.spawn_dfs(), describe, &mut options, started),
    }
}

fn drive<M, C>(
    checker: C,
    describe: fn(&M, &M::State, &M::Action) -> String,
    options: &mut CheckOptions,
    started: Instant,
) -> CheckReport
where
    M: Model,
    M::State: Clone + Debug + PartialEq,
    M::Action: Clone + Debug + PartialEq,
    C: Checker<M>,
{
    let progress_of = |checker: &C| Progress {
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed: started.elapsed(),
    };
    // Poll in short naps so that a fast check does not wait a whole interval to finish.
    let nap = Duration::from_millis(20).min(options.progress_interval);
    let mut last_report = Instant::now();
    while !checker.is_done() {
        std::thread::sleep(nap);
        if last_report.elapsed() >= options.progress_interval {
            last_report = Instant::now();
            if let Some(progress) = options.progress.as_mut() {
                progress(&progress_of(&checker));
            }
        }
    }
    let checker = checker.join();
    let elapsed = started.elapsed();

    let discoveries = checker.discoveries();
    // The checker stops early only when every property has a discovery, or (with
    // `stop_at_first_failure`) at the first counterexample; otherwise it visited every state.
    let properties = checker.model().properties();
    let failure_found = properties
        .iter()
        .any(|p| p.expectation != Expectation::Sometimes && discoveries.contains_key(p.name));
    let all_discovered = properties.iter().all(|p| discoveries.contains_key(p.name));
    let stopped_at_failure = options.stop_at_first_failure && failure_found;
    let complete = !(all_discovered || stopped_at_failure);
    let model = checker.model();
    let properties = model
        .properties()
        .into_iter()
        .map(|property| {
            let path = discoveries.get(property.name);
            let verdict = match (&property.expectation, path.is_some()) {
                (Expectation::Sometimes, true) => Verdict::Reached,
                (Expectation::Sometimes, false) if complete => Verdict::Unreached,
                (_, true) => Verdict::Violated,
                (_, false) if complete => Verdict::Holds,
                (_, false) => Verdict::Undecided,
            };
            let trace = path
                .map(|path| {
                    let steps = path.clone().into_vec();
                    // Stop at the first state that decides the property: the checker may record a
                    // longer path to a later state (discoveries found in one block overwrite).
                    let decided_at =
                        steps
                            .iter()
                            .position(|(state, _)| match property.expectation {
                                Expectation::Always => !(property.condition)(model, state),
                                Expectation::Sometimes => (property.condition)(model, state),
                                Expectation::Eventually => false,
                            });
                    let length = decided_at.unwrap_or(steps.len());
                    steps
                        .into_iter()
                        .take(length)
                        .filter_map(|(state, action)| {
                            action.map(|action| describe(model, &state, &action))
                        })
                        .collect()
                })
                .unwrap_or_default();
            PropertyReport {
                name: property.name,
                expectation: property.expectation.clone(),
                verdict,
                trace,
            }
        })
        .collect();
    CheckReport {
        model: "",
        bounds: Vec::new(),
        bug: None,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        complete,
        properties,
    }
}
