//! The model registry: one entry per model, so that the `deltasnap-models` binary (and `cargo xtask
//! verify`) can list, check and explore every model the same way.
//!
//! A model plugs in with an [`Entry`](crate::spec::Entry); [`registry`] lists them. This
//! file holds only the list and what works on the whole list: it imports the models, which import
//! the vocabulary in `spec`, never this file.

use deltasnap::snapshot::protocol::DeltaPolicy;

use crate::check::{CheckOptions, Verdict};
use crate::spec::{BoundValues, ModelEntry};

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
