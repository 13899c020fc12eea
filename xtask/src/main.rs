//! `cargo xtask verify [--quick | --deep]`: every verification tier, in the configuration each
//! needs (DESIGN §6). CI runs exactly `cargo xtask verify`.
//!
//! `cargo xtask killmatrix [--quick]`: every seeded bug against every tier ([`killmatrix`]).
//!
//! `cargo xtask layout`: no import cycle between files, no overlong file or function ([`layout`]).
//!
//! Each checker mode (testing, loom, shuttle) builds into its own target directory: changing
//! `RUSTFLAGS` invalidates the whole build cache, so sharing one directory would rebuild
//! everything at every switch. The std tiers (clippy and the tests, sharing `target-testing`)
//! build with `--cfg deltasnap_testing`, which compiles the seeded-bug switch, trace recording and
//! the copier's gate into the engine (`deltasnap::bugs`); `target/` keeps the plain build a
//! developer's `cargo build` makes, and the step "shipped build holds no test machinery" checks
//! that build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod killmatrix;
mod layout;

const USAGE: &str =
    "usage: cargo xtask verify [--quick | --deep] | cargo xtask killmatrix [--quick] \
     | cargo xtask layout";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Depth {
    Quick,
    Normal,
    Deep,
}

struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match command.as_str() {
        "verify" => {
            let depth = match args.get(1).map(String::as_str) {
                None => Depth::Normal,
                Some("--quick") => Depth::Quick,
                Some("--deep") => Depth::Deep,
                Some(other) => {
                    eprintln!(
                        "unknown option {other}; usage: cargo xtask verify [--quick | --deep]"
                    );
                    return ExitCode::from(2);
                }
            };
            verify(depth)
        }
        "killmatrix" => match args.get(1).map(String::as_str) {
            None => killmatrix::killmatrix(&workspace_root(), false),
            Some("--quick") => killmatrix::killmatrix(&workspace_root(), true),
            Some(other) => {
                eprintln!("unknown option {other}; {USAGE}");
                ExitCode::from(2)
            }
        },
        "layout" => match args.get(1) {
            None => layout::layout(&workspace_root()),
            Some(other) => {
                eprintln!("unknown option {other}; {USAGE}");
                ExitCode::from(2)
            }
        },
        other => {
            eprintln!("unknown command {other}; {USAGE}");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn steps(depth: Depth, root: &Path) -> Vec<Step> {
    let target = |mode: &str| root.join(format!("target-{mode}")).display().to_string();
    let testing = || {
        vec![
            ("RUSTFLAGS", "--cfg deltasnap_testing".to_string()),
            ("CARGO_TARGET_DIR", target("testing")),
        ]
    };
    let steps = vec![
        Step {
            name: "format",
            program: "cargo",
            args: cargo(&["fmt", "--all", "--check"]),
            env: vec![],
        },
        Step {
            name: "clippy",
            program: "cargo",
            args: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            env: testing(),
        },
        Step {
            name: "tests (unit, integration, proptest conformance, crash simulation, lifecycle simulation, doc)",
            program: "cargo",
            args: cargo(&["test", "--workspace", "--release"]),
            env: [
                testing(),
                vec![
                    (
                        "PROPTEST_CASES",
                        match depth {
                            Depth::Quick => "16",
                            Depth::Normal => "64",
                            Depth::Deep => "1024",
                        }
                        .to_string(),
                    ),
                    // Programs of the lifecycle simulation (`verification/tests/lifecycle_sim.rs`).
                    (
                        "DELTASNAP_LIFECYCLE_SEEDS",
                        match depth {
                            Depth::Quick => "300",
                            Depth::Normal => "2000",
                            Depth::Deep => "30000",
                        }
                        .to_string(),
                    ),
                ],
            ]
            .concat(),
        },
        Step {
            name: "stateright models at default bounds (every model; seeded bugs are in the tests)",
            program: "sh",
            args: vec![
                "-c".to_string(),
                "set -e; for model in $(cargo run --quiet --release -p deltasnap-models -- list --names); do \
                 cargo run --quiet --release -p deltasnap-models -- check \"$model\"; done"
                    .to_string(),
            ],
            env: vec![],
        },
        Step {
            // After the models step, whose plain release build of the engine this reuses.
            name: "shipped build holds no test machinery (plain release build: no seeded-bug name in the binary, switch constant off)",
            program: "sh",
            args: vec!["-c".to_string(), shipped_check()],
            env: vec![],
        },
        Step {
            name: "loom (epoch handshake, group commit, Published, snapshot hook vs close and cursor window; exhaustive within the preemption bound)",
            program: "cargo",
            args: cargo(&[
                "test",
                "--release",
                "-p",
                "deltasnap-verification",
                "--test",
                "loom_*",
                "--",
                // The seeded-bug switches are process-wide: one test at a time.
                "--test-threads=1",
            ]),
            env: vec![
                ("RUSTFLAGS", "--cfg deltasnap_loom".to_string()),
                ("CARGO_TARGET_DIR", target("loom")),
                (
                    "LOOM_MAX_PREEMPTIONS",
                    match depth {
                        Depth::Quick => "2",
                        Depth::Normal => "3",
                        Depth::Deep => "4",
                    }
                    .to_string(),
                ),
            ],
        },
        Step {
            name: "shuttle (group commit; whole engine with a snapshot; random and PCT schedulers)",
            program: "cargo",
            args: cargo(&[
                "test",
                "--release",
                "-p",
                "deltasnap",
                "-p",
                "deltasnap-verification",
                "--test",
                "*shuttle*",
                "--",
                "--test-threads=1",
            ]),
            env: vec![
                ("RUSTFLAGS", "--cfg deltasnap_shuttle".to_string()),
                ("CARGO_TARGET_DIR", target("shuttle")),
                (
                    "DELTASNAP_SHUTTLE_RANDOM",
                    match depth {
                        Depth::Quick => "200",
                        Depth::Normal => "1000",
                        Depth::Deep => "20000",
                    }
                    .to_string(),
                ),
                (
                    "DELTASNAP_SHUTTLE_PCT",
                    match depth {
                        Depth::Quick => "50",
                        Depth::Normal => "300",
                        Depth::Deep => "5000",
                    }
                    .to_string(),
                ),
            ],
        },
        // Imports run one way, files and functions stay short (issue 15; allow-list in layout.rs).
        Step {
            name: "layout",
            program: "cargo",
            args: cargo(&["xtask", "layout"]),
            env: vec![],
        },
    ];
    steps
}

/// The shell script of the step "shipped build holds no test machinery": a plain
/// `cargo build --release` of the `deltasnap` binary (no `--cfg deltasnap_testing`, so the
/// engine's seeded-bug switch and trace recorder are not compiled) must not hold the name of any
/// seeded bug (what `strings target/release/deltasnap | grep -e <name> …` would find), and the
/// plain build's compile-time check that the switch and the recorder are constant `false`
/// (`verification/tests/plain_build.rs`) must build and pass.
fn shipped_check() -> String {
    let patterns: Vec<String> = deltasnap::bugs::Bug::ALL
        .iter()
        .map(|bug| format!("-e {}", bug.name()))
        .collect();
    format!(
        "set -e; cargo build --release -p deltasnap-cli; \
         cargo test --release -p deltasnap-verification --test plain_build; \
         if grep -a -o -F {} target/release/deltasnap | sort | uniq -c | grep .; then \
         echo 'target/release/deltasnap holds the seeded-bug names above: test machinery in a shipped build'; exit 1; fi; \
         echo 'target/release/deltasnap holds none of the {} seeded-bug names'",
        patterns.join(" "),
        patterns.len()
    )
}

/// STYLE rule 1: engine code reaches locks and atomics only through `crate::sync`, so that loom
/// and shuttle see all of them. Clippy's `disallowed-types` catches the std lock types; the
/// atomics are the same types as the facade's under std, so this check looks at the source.
fn check_facade(root: &Path) -> Result<(), String> {
    let mut offenders = Vec::new();
    let mut stack = vec![root.join("engine/src")];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // sync.rs is the facade; bugs.rs holds test configuration switches and
            // snapshot/trace.rs the test-build event log, not synchronization the checkers
            // should explore.
            let test_instrumentation = name == "bugs.rs" || path.ends_with("snapshot/trace.rs");
            if !name.ends_with(".rs") || name == "sync.rs" || test_instrumentation {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            for (number, line) in text.lines().enumerate() {
                if line.contains("std::sync::") && !line.trim_start().starts_with("//") {
                    offenders.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    if offenders.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "engine code must use crate::sync, not std::sync:\n{}",
            offenders.join("\n")
        ))
    }
}

fn verify(depth: Depth) -> ExitCode {
    let root = workspace_root();
    eprintln!("=== xtask verify: concurrency facade check ===");
    if let Err(message) = check_facade(&root) {
        eprintln!("{message}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut timings = Vec::new();
    for step in steps(depth, &root) {
        eprintln!("\n=== xtask verify: {} ===", step.name);
        eprintln!("$ {} {}", step.program, step.args.join(" "));
        let step_started = Instant::now();
        let status = Command::new(step.program)
            .args(&step.args)
            .envs(step.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&root)
            .status();
        let seconds = step_started.elapsed().as_secs_f64();
        timings.push((step.name, seconds));
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!(
                    "\nxtask verify: step '{}' failed ({status}) after {seconds:.0} s",
                    step.name
                );
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("\nxtask verify: could not run {}: {error}", step.program);
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "\n=== xtask verify ({depth:?}): all tiers passed in {:.0} s ===",
        started.elapsed().as_secs_f64()
    );
    for (name, seconds) in timings {
        eprintln!("  {seconds:>7.1} s  {name}");
    }
    ExitCode::SUCCESS
}
