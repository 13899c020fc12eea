//! `cargo xtask killmatrix [--quick]`: every seeded bug against every verification tier, with the
//! iterations each tier needs to catch it (issue 5). Not part of `verify`: it runs each tier once
//! per bug.
//!
//! 1. Builds each tier once: the std suites (proptest conformance, crash points, fault matrices,
//!    the lifecycle simulation; `--cfg deltasnap_testing`, which compiles the seeded-bug switch
//!    in), loom and shuttle, each in its own target directory (as `verify` does), and the models
//!    binary.
//! 2. For every engine bug (`deltasnap::bugs::Bug::ALL`) and every test binary of a tier, runs
//!    the binary's `kill_matrix` test with `DELTASNAP_KILL_BUG=<bug>` (one process per cell, the
//!    switch is process-wide) and reads its `KILLMATRIX tier=… bug=… caught_at=…|not-caught
//!    iterations=…` lines (see `deltasnap_verification::kill`). A binary of a tier without a
//!    `kill_matrix` test prints nothing and is reported once.
//! 3. For the model tier, runs `deltasnap-models check MODEL --bug BUG` for the engine bugs that
//!    have a model counterpart ([`MODEL_COUNTERPARTS`]) and for every model-only bug.
//! 4. Prints the table (rows bugs, columns tiers; "caught @ k", "–", "n/a") and the details, and
//!    fails if some bug is caught by no tier or a cell could not be measured.
//!
//! Logs of every cell go to `target/killmatrix/`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use deltasnap::bugs::Bug;

/// The columns, in order: (tier name in `KILLMATRIX` lines, heading).
const TIERS: [(&str, &str); 7] = [
    ("loom", "loom"),
    ("shuttle-random", "shuttle random"),
    ("shuttle-pct", "shuttle PCT"),
    ("proptest", "proptest"),
    ("crash", "crash sim"),
    ("lifecycle", "lifecycle sim"),
    ("model", "model"),
];

/// Engine bugs and the model bug that breaks the same rule (`model`, `model bug`). Engine bugs
/// not listed have no model counterpart (their model cell is "n/a"); model bugs not listed are
/// rows of their own.
pub const MODEL_COUNTERPARTS: &[(&str, &str, &str)] = &[
    (
        "skip-registration-recheck",
        "cut",
        "register-without-recheck",
    ),
    ("drain-does-not-wait", "cut", "drain-without-wait"),
    ("no-retry-after-cut", "cut", "no-retry-after-cut"),
    ("no-checkpoint-image", "cut", "no-checkpoint-image"),
    (
        "control-before-page-fsync",
        "recovery",
        "control-before-page-fsync",
    ),
    (
        "purge-before-control",
        "recovery",
        "purge-before-control-durable",
    ),
    ("skip-new-image-capture", "snapshot", "phase-a-skipped"),
    (
        "close-ignores-hook-in-flight",
        "snapshot",
        "close-ignores-hook-in-flight",
    ),
    (
        "cursor-decision-not-atomic",
        "snapshot-cursor-aware",
        "cursor-decision-not-atomic",
    ),
];

/// How long one cell may run before it is killed and reported as a timeout.
const CELL_LIMIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Std,
    Loom,
    Shuttle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Std => "std",
            Mode::Loom => "loom",
            Mode::Shuttle => "shuttle",
        }
    }

    /// `RUSTFLAGS` and target directory, as `cargo xtask verify` uses them.
    fn env(self, root: &Path) -> Vec<(&'static str, String)> {
        let target = |mode: &str| root.join(format!("target-{mode}")).display().to_string();
        match self {
            Mode::Std => vec![
                ("RUSTFLAGS", "--cfg deltasnap_testing".to_string()),
                ("CARGO_TARGET_DIR", target("testing")),
            ],
            Mode::Loom => vec![
                ("RUSTFLAGS", "--cfg deltasnap_loom".to_string()),
                ("CARGO_TARGET_DIR", target("loom")),
            ],
            Mode::Shuttle => vec![
                ("RUSTFLAGS", "--cfg deltasnap_shuttle".to_string()),
                ("CARGO_TARGET_DIR", target("shuttle")),
            ],
        }
    }

    /// The test targets of this mode's tiers (globs as cargo takes them).
    fn build_args(self) -> Vec<&'static str> {
        let mut args = vec!["test", "--release", "--no-run"];
        args.extend(match self {
            Mode::Std => vec![
                "-p",
                "deltasnap",
                "-p",
                "deltasnap-verification",
                "--test",
                "conformance_sim",
                "--test",
                "*crash_points*",
                "--test",
                "fault_matrix_*",
                "--test",
                "lifecycle_sim",
            ],
            Mode::Loom => vec!["-p", "deltasnap-verification", "--test", "loom_*"],
            Mode::Shuttle => vec![
                "-p",
                "deltasnap",
                "-p",
                "deltasnap-verification",
                "--test",
                "*shuttle*",
            ],
        });
        args
    }
}

/// The budgets of each tier for one cell.
fn budget_env(quick: bool) -> Vec<(&'static str, String)> {
    let pick = |quick_value: &str, value: &str| if quick { quick_value } else { value }.to_string();
    vec![
        // Loom: the preemption bound each test file sets by default (exhaustive within it).
        ("DELTASNAP_SHUTTLE_RANDOM", pick("200", "1000")),
        ("DELTASNAP_SHUTTLE_PCT", pick("50", "300")),
        ("PROPTEST_CASES", pick("64", "256")),
        // Lifecycle programs (seeds 0..n of `verification/tests/lifecycle_sim.rs`).
        ("DELTASNAP_LIFECYCLE_SEEDS", pick("200", "1000")),
        // Fixed seeds, so that the table is the same on every run (shuttle seeds both its
        // schedulers from this variable).
        ("PROPTEST_RNG_SEED", "1".to_string()),
        ("SHUTTLE_RANDOM_SEED", "1".to_string()),
        ("RUST_BACKTRACE", "0".to_string()),
    ]
}

/// One test binary of a tier.
struct Binary {
    mode: Mode,
    /// The test target's name (`fault_matrix_checkpoint`).
    name: String,
    path: PathBuf,
}

/// Builds the test targets of `mode`; returns their binaries (cargo's "Executable" lines).
fn build(root: &Path, mode: Mode) -> Result<Vec<Binary>, String> {
    let args = mode.build_args();
    eprintln!("$ {} cargo {}", render_env(&mode.env(root)), args.join(" "));
    let output = Command::new("cargo")
        .args(&args)
        .envs(mode.env(root))
        .current_dir(root)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("the {} build failed:\n{stderr}", mode.name()));
    }
    let mut binaries = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.trim_start().strip_prefix("Executable ") else {
            continue;
        };
        let (target, path) = match (rest.find(" ("), rest.rfind(')')) {
            (Some(open), Some(close)) if open < close => (&rest[..open], &rest[open + 2..close]),
            _ => return Err(format!("cannot parse cargo's line {line:?}")),
        };
        let name = Path::new(target.trim())
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("cannot parse cargo's line {line:?}"))?
            .to_string();
        binaries.push(Binary {
            mode,
            name,
            path: root.join(path),
        });
    }
    if binaries.is_empty() {
        return Err(format!("the {} build listed no test binary", mode.name()));
    }
    Ok(binaries)
}

fn render_env(env: &[(&str, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `KILLMATRIX` line.
#[derive(Clone, Debug)]
struct Line {
    tier: String,
    bug: String,
    caught_at: Option<u64>,
    iterations: u64,
    reason: Option<String>,
}

fn parse_line(line: &str) -> Option<Line> {
    // With `--nocapture` and one test thread, libtest's "test kill_matrix ... " precedes it on
    // the same line.
    let start = line.find("KILLMATRIX ")?;
    let rest = &line[start + "KILLMATRIX ".len()..];
    let (fields, reason) = match rest.split_once(" reason=") {
        Some((fields, reason)) => (fields, Some(reason.to_string())),
        None => (rest, None),
    };
    let mut map = BTreeMap::new();
    for field in fields.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        map.insert(key, value);
    }
    Some(Line {
        tier: map.get("tier")?.to_string(),
        bug: map.get("bug")?.to_string(),
        caught_at: match *map.get("caught_at")? {
            "not-caught" => None,
            at => Some(at.parse().ok()?),
        },
        iterations: map.get("iterations")?.parse().ok()?,
        reason,
    })
}

/// What one process reported.
struct Run {
    lines: Vec<Line>,
    /// `None` if it finished with success; else what went wrong.
    problem: Option<String>,
    seconds: f64,
}

/// Runs `command` with its stdout captured and its stderr in `log`, for at most `limit`.
fn run_bounded(mut command: Command, log: &Path, limit: Duration) -> Run {
    let started = Instant::now();
    let stderr = match File::create(log) {
        Ok(file) => Stdio::from(file),
        Err(_) => Stdio::null(),
    };
    let mut child = match command.stdout(Stdio::piped()).stderr(stderr).spawn() {
        Ok(child) => child,
        Err(e) => {
            return Run {
                lines: vec![],
                problem: Some(format!("cannot start: {e}")),
                seconds: 0.0,
            }
        }
    };
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let problem = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break None,
            Ok(Some(status)) => break Some(format!("exited with {status}")),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Some(format!("timed out after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => break Some(format!("cannot wait: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    Run {
        lines: text.lines().filter_map(parse_line).collect(),
        problem,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// One measured cell of one binary.
#[derive(Clone, Debug)]
struct Measured {
    source: String,
    caught_at: Option<u64>,
    iterations: u64,
    reason: Option<String>,
}

/// A row of the table: a bug, and what each tier found.
struct Row {
    label: String,
    /// Tiers that do not apply to this bug.
    not_applicable: Vec<&'static str>,
    cells: BTreeMap<&'static str, Vec<Measured>>,
    problems: Vec<String>,
}

impl Row {
    fn new(label: String, not_applicable: Vec<&'static str>) -> Row {
        Row {
            label,
            not_applicable,
            cells: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    fn first_catch(&self, tier: &str) -> Option<&Measured> {
        self.cells
            .get(tier)?
            .iter()
            .filter(|m| m.caught_at.is_some())
            .min_by_key(|m| m.caught_at)
    }

    fn caught(&self) -> bool {
        TIERS
            .iter()
            .any(|(tier, _)| self.first_catch(tier).is_some())
    }

    fn cell_text(&self, tier: &str) -> String {
        if self.not_applicable.contains(&tier) {
            return "n/a".into();
        }
        match self.first_catch(tier) {
            Some(m) => format!("caught @ {}", m.caught_at.unwrap_or_default()),
            None if self.cells.get(tier).is_some_and(|c| !c.is_empty()) => "–".into(),
            None => "?".into(),
        }
    }
}

fn tier_key(tier: &str) -> Option<&'static str> {
    TIERS.iter().map(|(t, _)| *t).find(|t| *t == tier)
}

/// Runs `deltasnap-models check MODEL --bug BUG`; a counterexample (exit 1) is a catch after the
/// states the search generated.
fn model_cell(models: &Path, model: &str, bug: &str, log_dir: &Path) -> Result<Measured, String> {
    let mut command = Command::new(models);
    command.args(["check", model, "--bug", bug]);
    let log = log_dir.join(format!("model-{model}-{bug}.log"));
    let started = Instant::now();
    let output = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", models.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let _ = std::fs::write(
        &log,
        format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)),
    );
    // "<model>: <n> states, <u> unique, max depth …"
    let states = stdout
        .lines()
        .next()
        .and_then(|line| line.split_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "{model} --bug {bug}: no state count in its output (see {})",
                log.display()
            )
        })?;
    let caught = match output.status.code() {
        Some(1) => true,
        Some(0 | 3) => false,
        _ => {
            return Err(format!(
                "{model} --bug {bug}: {} (see {})",
                output.status,
                log.display()
            ))
        }
    };
    let violated = stdout
        .lines()
        .find(|l| l.contains("VIOLATED"))
        .map(|l| l.trim().to_string());
    eprintln!(
        "  model {model} --bug {bug}: {} after {states} states ({:.1} s)",
        if caught { "caught" } else { "not caught" },
        started.elapsed().as_secs_f64()
    );
    Ok(Measured {
        source: format!("model {model}"),
        caught_at: caught.then_some(states),
        iterations: states,
        reason: violated,
    })
}

pub fn killmatrix(root: &Path, quick: bool) -> ExitCode {
    let started = Instant::now();
    let log_dir = root.join("target").join("killmatrix");
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("cannot create {}: {e}", log_dir.display());
        return ExitCode::FAILURE;
    }

    // 1. Build every tier once.
    eprintln!("=== xtask killmatrix: build ===");
    let mut binaries = Vec::new();
    for mode in [Mode::Std, Mode::Loom, Mode::Shuttle] {
        let build_started = Instant::now();
        match build(root, mode) {
            Ok(built) => binaries.extend(built),
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        }
        eprintln!(
            "  {} build: {:.0} s",
            mode.name(),
            build_started.elapsed().as_secs_f64()
        );
    }
    eprintln!("$ cargo build --release -p deltasnap-models");
    let models_built = Command::new("cargo")
        .args(["build", "--release", "-p", "deltasnap-models"])
        .current_dir(root)
        .status();
    if !models_built.is_ok_and(|s| s.success()) {
        eprintln!("the models build failed");
        return ExitCode::FAILURE;
    }
    let models = root.join("target/release/deltasnap-models");
    let model_bugs: Vec<(String, String)> =
        match Command::new(&models).args(["list", "--bugs"]).output() {
            Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(m, b)| (m.to_string(), b.to_string()))
                .collect(),
            _ => {
                eprintln!("`deltasnap-models list --bugs` failed");
                return ExitCode::FAILURE;
            }
        };
    let build_seconds = started.elapsed().as_secs_f64();

    // 2. Engine bugs × test binaries.
    let engine_tiers: Vec<&'static str> = TIERS
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t != "model")
        .collect();
    let mut rows = Vec::new();
    let mut without_kill_mode: Vec<String> = Vec::new();
    let mut seconds_by_binary: BTreeMap<String, f64> = BTreeMap::new();
    let mut model_seconds = 0.0;
    for bug in Bug::ALL {
        let counterpart = MODEL_COUNTERPARTS.iter().find(|(b, _, _)| *b == bug.name());
        let not_applicable = if counterpart.is_some() {
            vec![]
        } else {
            vec!["model"]
        };
        let mut row = Row::new(bug.name().to_string(), not_applicable);
        eprintln!("\n=== xtask killmatrix: {} ===", bug.name());
        for binary in &binaries {
            let mut command = Command::new(&binary.path);
            command
                .args(["--exact", "kill_matrix", "--nocapture", "--test-threads=1"])
                .env("DELTASNAP_KILL_BUG", bug.name())
                .envs(budget_env(quick))
                .current_dir(root);
            let log = log_dir.join(format!("{}-{}.log", bug.name(), binary.name));
            let run = run_bounded(command, &log, CELL_LIMIT);
            *seconds_by_binary.entry(binary.name.clone()).or_default() += run.seconds;
            if run.lines.is_empty() && run.problem.is_none() {
                if !without_kill_mode.contains(&binary.name) {
                    without_kill_mode.push(binary.name.clone());
                }
                continue;
            }
            for line in &run.lines {
                let Some(tier) = tier_key(&line.tier).filter(|t| engine_tiers.contains(t)) else {
                    row.problems
                        .push(format!("{}: unknown tier {:?}", binary.name, line.tier));
                    continue;
                };
                if line.bug != bug.name() {
                    row.problems.push(format!(
                        "{}: reported bug {} for {}",
                        binary.name,
                        line.bug,
                        bug.name()
                    ));
                    continue;
                }
                eprintln!(
                    "  {:<26} {:<15} {}",
                    format!("{} ({})", binary.name, binary.mode.name()),
                    line.tier,
                    match line.caught_at {
                        Some(at) => format!("caught at {at} of {}", line.iterations),
                        None => format!("not caught in {}", line.iterations),
                    }
                );
                row.cells.entry(tier).or_default().push(Measured {
                    source: binary.name.clone(),
                    caught_at: line.caught_at,
                    iterations: line.iterations,
                    reason: line.reason.clone(),
                });
            }
            if let Some(problem) = run.problem {
                eprintln!("  {}: {problem} (log {})", binary.name, log.display());
                row.problems.push(format!(
                    "{}: {problem} (log {})",
                    binary.name,
                    log.display()
                ));
            }
        }
        if let Some((_, model, model_bug)) = counterpart {
            let model_started = Instant::now();
            let measured = model_cell(&models, model, model_bug, &log_dir);
            model_seconds += model_started.elapsed().as_secs_f64();
            match measured {
                Ok(measured) => row.cells.entry("model").or_default().push(measured),
                Err(problem) => row.problems.push(problem),
            }
        }
        rows.push(row);
    }

    // 3. Model-only bugs.
    eprintln!("\n=== xtask killmatrix: model-only bugs ===");
    for (model, bug) in &model_bugs {
        let mirrored = MODEL_COUNTERPARTS
            .iter()
            .any(|(_, m, b)| m == model && b == bug);
        if mirrored {
            continue;
        }
        let mut row = Row::new(format!("{bug} ({model} model)"), engine_tiers.clone());
        let model_started = Instant::now();
        let measured = model_cell(&models, model, bug, &log_dir);
        model_seconds += model_started.elapsed().as_secs_f64();
        match measured {
            Ok(measured) => row.cells.entry("model").or_default().push(measured),
            Err(problem) => row.problems.push(problem),
        }
        rows.push(row);
    }

    // 4. The table.
    let seconds = started.elapsed().as_secs_f64();
    let table = render_table(&rows);
    println!("\n{table}");
    println!(
        "k: loom and shuttle executions, proptest cases, crash/fault points, model states generated, up to and including the first that failed. Budgets: loom at each test's preemption bound; shuttle {} random and {} PCT (depth 3) schedules per scenario (seed 1); proptest {} cases (seed 1), no shrinking; crash and fault sweeps exhaustive; lifecycle {} programs (seeds 0..n); models at their default bounds (raised where a bug needs it).",
        budget(quick, "DELTASNAP_SHUTTLE_RANDOM"),
        budget(quick, "DELTASNAP_SHUTTLE_PCT"),
        budget(quick, "PROPTEST_CASES"),
        budget(quick, "DELTASNAP_LIFECYCLE_SEEDS"),
    );
    println!("\nDetails (every binary's result per tier):");
    for row in &rows {
        for (tier, measured) in &row.cells {
            for m in measured {
                println!(
                    "  {:<34} {:<15} {:<26} {}{}",
                    row.label,
                    tier,
                    m.source,
                    match m.caught_at {
                        Some(at) => format!("caught at {at} of {}", m.iterations),
                        None => format!("not caught in {}", m.iterations),
                    },
                    m.reason
                        .as_ref()
                        .map(|r| format!(": {}", r.chars().take(160).collect::<String>()))
                        .unwrap_or_default()
                );
            }
        }
    }
    let _ = std::fs::write(log_dir.join("table.md"), &table);
    let mut times: Vec<String> = seconds_by_binary
        .iter()
        .map(|(name, seconds)| format!("{name} {seconds:.0} s"))
        .collect();
    times.push(format!("deltasnap-models {model_seconds:.0} s"));
    println!("\nTime per test binary, all cells: {}", times.join(", "));
    if !without_kill_mode.is_empty() {
        println!(
            "\nTest binaries without a `kill_matrix` test (see deltasnap_verification::kill to wire them in): {}",
            without_kill_mode.join(", ")
        );
    }
    println!(
        "\nxtask killmatrix{}: {} rows in {:.0} s (builds {:.0} s); table in {}",
        if quick { " --quick" } else { "" },
        rows.len(),
        seconds,
        build_seconds,
        log_dir.join("table.md").display()
    );
    let problems: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.problems
                .iter()
                .map(move |p| format!("{}: {p}", row.label))
        })
        .collect();
    let uncaught: Vec<&str> = rows
        .iter()
        .filter(|row| !row.caught())
        .map(|row| row.label.as_str())
        .collect();
    if !problems.is_empty() {
        println!("\nCells that could not be measured:");
        for problem in &problems {
            println!("  {problem}");
        }
    }
    if !uncaught.is_empty() {
        println!("\nCaught by no tier: {}", uncaught.join(", "));
    }
    if problems.is_empty() && uncaught.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn budget(quick: bool, name: &str) -> String {
    budget_env(quick)
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn render_table(rows: &[Row]) -> String {
    let mut out = String::from("| bug |");
    for (_, heading) in TIERS {
        out.push_str(&format!(" {heading} |"));
    }
    out.push_str("\n|---|");
    for _ in TIERS {
        out.push_str("---|");
    }
    for row in rows {
        out.push_str(&format!("\n| {} |", row.label));
        for (tier, _) in TIERS {
            out.push_str(&format!(" {} |", row.cell_text(tier)));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kill_line() {
        let line = parse_line(
            "KILLMATRIX tier=crash bug=purge-before-control caught_at=12 iterations=12 reason=R1: lost = x",
        )
        .unwrap();
        assert_eq!(line.tier, "crash");
        assert_eq!(line.bug, "purge-before-control");
        assert_eq!(line.caught_at, Some(12));
        assert_eq!(line.iterations, 12);
        assert_eq!(line.reason.as_deref(), Some("R1: lost = x"));
        let line =
            parse_line("KILLMATRIX tier=loom bug=x caught_at=not-caught iterations=7").unwrap();
        assert_eq!(line.caught_at, None);
        assert!(parse_line("running 1 test").is_none());
        let line = parse_line(
            "test kill_matrix ... KILLMATRIX tier=loom bug=x caught_at=3 iterations=3 reason=K2",
        )
        .unwrap();
        assert_eq!(
            (line.caught_at, line.reason.as_deref()),
            (Some(3), Some("K2"))
        );
    }

    #[test]
    fn every_counterpart_names_an_engine_bug() {
        for (engine, _, _) in MODEL_COUNTERPARTS {
            assert!(
                Bug::ALL.iter().any(|b| b.name() == *engine),
                "{engine} is no engine bug"
            );
        }
    }
}
