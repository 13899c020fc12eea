//! The model registry: one entry per model, so that the `deltasnap-models` binary (and `cargo xtask
//! verify`) can list, check and explore every model the same way.
//!
//! A model plugs in with an [`Entry`]: its name, its bounds (name, default, meaning), its seeded
//! bugs, a `build` function that turns bound values and an optional bug name into the model value,
//! and a `describe` function that renders one action in the engine's words ("writer 1 registers in
//! epoch 2"), which is how counterexamples are printed. [`Entry`] implements [`ModelEntry`], the
//! object-safe face the binary uses; [`registry`] lists them.

use deltasnap::snapshot::protocol::DeltaPolicy;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, CheckerBuilder, Expectation, HasDiscoveries, Model};

/// One bound of a model: a `usize` knob that sizes the state space (`--bound name=value`).
#[derive(Clone, Copy, Debug)]
pub struct BoundSpec {
    pub name: &'static str,
    pub default: usize,
    /// Inclusive range the model supports (bit masks and `u8` counters limit some bounds).
    pub min: usize,
    pub max: usize,
    pub description: &'static str,
}

/// One seeded bug: a named variant of the model that the checker must refute.
#[derive(Clone, Copy, Debug)]
pub struct BugSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Bounds the bug needs to show at all (`name`, minimum): seeding the bug raises them.
    pub needs: &'static [(&'static str, usize)],
}

/// Bound values after defaults and `--bound` overrides were applied and range-checked.
#[derive(Clone, Debug)]
pub struct BoundValues {
    values: Vec<(&'static str, usize)>,
}

impl BoundValues {
    /// The defaults of `specs`.
    pub fn defaults(specs: &[BoundSpec]) -> Self {
        BoundValues {
            values: specs.iter().map(|s| (s.name, s.default)).collect(),
        }
    }

    /// The defaults of `specs`, overridden by `overrides` (`name`, `value`); unknown names and
    /// values out of range are errors that name the allowed choices.
    pub fn resolve(specs: &[BoundSpec], overrides: &[(String, usize)]) -> Result<Self, String> {
        let mut values = Self::defaults(specs);
        for (name, value) in overrides {
            let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| {
                let known: Vec<_> = specs.iter().map(|s| s.name).collect();
                format!(
                    "unknown bound `{name}` (this model has: {})",
                    known.join(", ")
                )
            })?;
            if *value < spec.min || *value > spec.max {
                return Err(format!(
                    "bound `{name}` = {value} is out of range {}..={}",
                    spec.min, spec.max
                ));
            }
            for slot in values.values.iter_mut() {
                if slot.0 == spec.name {
                    slot.1 = *value;
                }
            }
        }
        Ok(values)
    }

    /// The value of bound `name`. Panics on a name the model did not declare: that is a bug in the
    /// model's `build`, not a user error (users go through [`BoundValues::resolve`]).
    pub fn get(&self, name: &str) -> usize {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("bound `{name}` is not declared by this model"))
    }

    /// Raises bound `name` to at least `minimum`; returns whether it changed.
    pub fn raise(&mut self, name: &str, minimum: usize) -> bool {
        let slot = self
            .values
            .iter_mut()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("bound `{name}` is not declared by this model"));
        let raised = slot.1 < minimum;
        slot.1 = slot.1.max(minimum);
        raised
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.values.iter().copied()
    }
}

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

/// The object-safe face of a registered model.
pub trait ModelEntry: Send + Sync {
    fn name(&self) -> &'static str;
    fn summary(&self) -> &'static str;
    fn bounds(&self) -> &'static [BoundSpec];
    fn bugs(&self) -> Vec<BugSpec>;
    /// `bounds` with the needs of `bug` applied (see [`BugSpec::needs`]).
    fn bounds_for(&self, bounds: &BoundValues, bug: Option<&str>) -> BoundValues {
        let mut bounds = bounds.clone();
        if let Some(spec) = bug.and_then(|name| self.bugs().into_iter().find(|b| b.name == name)) {
            for (name, minimum) in spec.needs {
                bounds.raise(name, *minimum);
            }
        }
        bounds
    }
    /// Builds the model at `bounds` (with `bug` seeded, if named) and checks it.
    fn check(
        &self,
        bounds: &BoundValues,
        bug: Option<&str>,
        options: CheckOptions,
    ) -> Result<CheckReport, String>;
    /// Serves the stateright Explorer for the model at `address`; blocks until the process ends.
    fn explore(
        &self,
        bounds: &BoundValues,
        bug: Option<&str>,
        address: &str,
        threads: usize,
    ) -> Result<(), String>;
}

/// A model plugged into the registry. See the module docs.
pub struct Entry<M: Model> {
    pub name: &'static str,
    pub summary: &'static str,
    pub bounds: &'static [BoundSpec],
    pub bugs: fn() -> Vec<BugSpec>,
    /// Builds the model; `bug` is a name from `bugs` (unknown names are an error).
    pub build: fn(&BoundValues, Option<&str>) -> Result<M, String>,
    /// One action, in the engine's words, given the state it is taken from.
    pub describe: fn(&M, &M::State, &M::Action) -> String,
}

impl<M> ModelEntry for Entry<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn bounds(&self) -> &'static [BoundSpec] {
        self.bounds
    }

    fn bugs(&self) -> Vec<BugSpec> {
        (self.bugs)()
    }

    fn check(
        &self,
        bounds: &BoundValues,
        bug: Option<&str>,
        options: CheckOptions,
    ) -> Result<CheckReport, String> {
        let bounds = &self.bounds_for(bounds, bug);
        let model = (self.build)(bounds, bug)?;
        let mut report = check_model(model, self.describe, options);
        report.model = self.name;
        report.bounds = bounds.iter().collect();
        report.bug = bug.map(str::to_owned);
        Ok(report)
    }

    fn explore(
        &self,
        bounds: &BoundValues,
        bug: Option<&str>,
        address: &str,
        threads: usize,
    ) -> Result<(), String> {
        let model = (self.build)(&self.bounds_for(bounds, bug), bug)?;
        // `serve` joins its HTTP thread: this returns only if the server fails to start.
        let _checker = model.checker().threads(threads.max(1)).serve(address);
        Ok(())
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

/// Every registered model, in the order `list` shows them.
pub fn registry() -> Vec<Box<dyn ModelEntry>> {
    vec![
        Box::new(crate::cut::entry()),
        Box::new(crate::recovery::entry()),
        Box::new(crate::cluster::entry()),
        Box::new(crate::snapshot::entry(DeltaPolicy::Full)),
        Box::new(crate::snapshot::entry(DeltaPolicy::CursorAware)),
    ]
}

/// The registered model called `name`.
pub fn find(name: &str) -> Option<Box<dyn ModelEntry>> {
    registry().into_iter().find(|entry| entry.name() == name)
}

/// Resolves a bug name against `names` for a model's `build` function.
pub fn parse_bug<B: Copy>(
    all: &[B],
    name_of: fn(&B) -> &'static str,
    name: Option<&str>,
) -> Result<Option<B>, String> {
    match name {
        None => Ok(None),
        Some(name) => all
            .iter()
            .copied()
            .find(|bug| name_of(bug) == name)
            .map(Some)
            .ok_or_else(|| {
                let known: Vec<_> = all.iter().map(name_of).collect();
                format!(
                    "unknown bug `{name}` (this model has: {})",
                    known.join(", ")
                )
            }),
    }
}

/// Checks model `model` with seeded bug `bug` at the default bounds raised by the bug's needs
/// (what `deltasnap-models check MODEL --bug BUG` does) and returns the counterexample to
/// `violates` as engine events. Panics (a test failure) if the model or bug is unknown or the bug
/// is not refuted: every seeded bug must be found (STYLE rule 2).
pub fn refute_seeded_bug(model: &str, bug: &str, violates: &str) -> Vec<String> {
    let entry = find(model).unwrap_or_else(|| panic!("unknown model `{model}`"));
    let bounds = entry.bounds_for(&BoundValues::defaults(entry.bounds()), Some(bug));
    let options = CheckOptions {
        stop_at_first_failure: true,
        ..CheckOptions::default()
    };
    let report = entry
        .check(&bounds, Some(bug), options)
        .unwrap_or_else(|e| panic!("{model} --bug {bug}: {e}"));
    let property = report
        .properties
        .iter()
        .find(|p| p.name == violates)
        .unwrap_or_else(|| panic!("{model} has no property {violates:?}"));
    assert_eq!(
        property.verdict,
        Verdict::Violated,
        "seeded bug `{bug}` of model `{model}` was not found"
    );
    println!(
        "{model} --bug {bug}: counterexample to \"{violates}\", {} steps",
        property.trace.len()
    );
    for line in &property.trace {
        println!("    {line}");
    }
    property.trace.clone()
}
