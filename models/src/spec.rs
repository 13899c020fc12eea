//! What a model declares to plug into the [registry](crate::registry): its bounds ([`BoundSpec`]),
//! its seeded bugs ([`BugSpec`]) and an [`Entry`] that builds the model from [`BoundValues`] and
//! renders its actions in the engine's words. [`Entry`] implements [`ModelEntry`], the object-safe
//! face the binary uses; checking itself lives in [`check`](crate::check).
//!
//! Imports run one way: the registry lists the models, the models import this vocabulary, and this
//! vocabulary imports only the checker below it.

use std::fmt::Debug;
use std::hash::Hash;

use stateright::Model;

use crate::check::{check_model, CheckOptions, CheckReport};

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
