//! `deltasnap-models`: list, check and explore deltasnap's stateright models.
//!
//! Exit status of `check`: 0 when every `always`/`eventually` property holds and every
//! `sometimes` property was reached; 1 on a counterexample; 3 when the whole bounded space was
//! searched and a `sometimes` property was never reached (the model is vacuous there); 2 on usage
//! errors.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use deltasnap_models::check::{CheckOptions, CheckReport, Progress, Strategy, Verdict};
use deltasnap_models::registry;
use deltasnap_models::spec::{BoundValues, ModelEntry};
use stateright::Expectation;

#[derive(Parser)]
#[command(
    name = "deltasnap-models",
    about = "Model-check deltasnap's protocols (stateright)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the models with their bounds (and defaults) and seeded bugs.
    List {
        /// Print only the model names, one per line (for scripts).
        #[arg(long)]
        names: bool,
        /// Print only `<model> <seeded bug>`, one pair per line (for scripts).
        #[arg(long, conflicts_with = "names")]
        bugs: bool,
    },
    /// Check a model exhaustively within its bounds.
    Check {
        /// Model name (see `list`).
        model: String,
        /// Override a bound: `--bound name=value` (repeatable).
        #[arg(long = "bound", value_name = "NAME=VALUE", value_parser = parse_bound, num_args = 1..)]
        bounds: Vec<(String, usize)>,
        /// Seed a bug (see `list`); the check must then fail with a counterexample.
        #[arg(long)]
        bug: Option<String>,
        /// Checker threads. One gives the shortest counterexamples with BFS and, on this 2-core
        /// machine, is as fast as two.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Depth-first search (less memory, longer counterexamples).
        #[arg(long)]
        dfs: bool,
        /// Keep searching after the first counterexample (to report every property).
        #[arg(long)]
        all: bool,
    },
    /// Serve the stateright Explorer for a model on 127.0.0.1.
    Explore {
        model: String,
        #[arg(long, default_value_t = 3000)]
        port: u16,
        #[arg(long = "bound", value_name = "NAME=VALUE", value_parser = parse_bound, num_args = 1..)]
        bounds: Vec<(String, usize)>,
        #[arg(long)]
        bug: Option<String>,
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
    },
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_bound(text: &str) -> Result<(String, usize), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))?;
    let value = value
        .trim()
        .parse()
        .map_err(|e| format!("bound `{name}`: {e}"))?;
    Ok((name.trim().to_owned(), value))
}

fn find_model(name: &str) -> Result<Box<dyn ModelEntry>, String> {
    registry::find(name).ok_or_else(|| {
        let known: Vec<_> = registry::registry().iter().map(|m| m.name()).collect();
        format!("unknown model `{name}` (known: {})", known.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { names, bugs } => {
            if bugs {
                for model in registry::registry() {
                    for bug in model.bugs() {
                        println!("{} {}", model.name(), bug.name);
                    }
                }
            } else if names {
                for model in registry::registry() {
                    println!("{}", model.name());
                }
            } else {
                list();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            model,
            bounds,
            bug,
            threads,
            dfs,
            all,
        } => check(&model, &bounds, bug.as_deref(), threads, dfs, all),
        Command::Explore {
            model,
            port,
            bounds,
            bug,
            threads,
        } => explore(&model, port, &bounds, bug.as_deref(), threads),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn list() {
    for model in registry::registry() {
        println!("{}  — {}", model.name(), model.summary());
        println!("  bounds:");
        for bound in model.bounds() {
            println!(
                "    {:<20} default {:<3} ({}..={})  {}",
                bound.name, bound.default, bound.min, bound.max, bound.description
            );
        }
        println!("  bugs:");
        for bug in model.bugs() {
            let needs: Vec<String> = bug
                .needs
                .iter()
                .map(|(name, minimum)| format!("{name}>={minimum}"))
                .collect();
            let needs = if needs.is_empty() {
                String::new()
            } else {
                format!(" [needs {}]", needs.join(", "))
            };
            println!("    {:<30} {}{needs}", bug.name, bug.description);
        }
        println!();
    }
}

fn check(
    name: &str,
    overrides: &[(String, usize)],
    bug: Option<&str>,
    threads: usize,
    dfs: bool,
    all: bool,
) -> Result<ExitCode, String> {
    let model = find_model(name)?;
    let bounds = BoundValues::resolve(model.bounds(), overrides)?;
    let effective = model.bounds_for(&bounds, bug);
    for ((name, asked), (_, used)) in bounds.iter().zip(effective.iter()) {
        if asked != used {
            eprintln!("note: the seeded bug needs {name} >= {used}; raised from {asked}");
        }
    }
    let rendered: Vec<String> = effective.iter().map(|(n, v)| format!("{n}={v}")).collect();
    eprintln!(
        "checking `{}` [{}]{} with {} thread(s), {}",
        model.name(),
        rendered.join(" "),
        bug.map(|b| format!(" with seeded bug `{b}`"))
            .unwrap_or_default(),
        threads,
        if dfs { "DFS" } else { "BFS" }
    );
    let options = CheckOptions {
        threads,
        strategy: if dfs { Strategy::Dfs } else { Strategy::Bfs },
        stop_at_first_failure: !all,
        progress_interval: Duration::from_secs(1),
        progress: Some(Box::new(|p: &Progress| {
            eprintln!(
                "  {:>6.1}s  states {:>12}  unique {:>11}  {:>10.0} states/s  depth {}",
                p.elapsed.as_secs_f64(),
                p.states,
                p.unique_states,
                p.states_per_second(),
                p.max_depth
            );
        })),
    };
    let report = model.check(&bounds, bug, options)?;
    print_report(&report);
    let code = if report.violations().next().is_some() {
        1
    } else if report.unreached().next().is_some() {
        3
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

fn print_report(report: &CheckReport) {
    let mut out = std::io::stdout().lock();
    let seconds = report.elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "{}: {} states, {} unique, max depth {}, {:.2}s ({:.0} states/s){}",
        report.model,
        report.states,
        report.unique_states,
        report.max_depth,
        seconds,
        if seconds > 0.0 {
            report.states as f64 / seconds
        } else {
            0.0
        },
        if report.complete {
            ", state space exhausted"
        } else {
            ", search stopped early"
        }
    );
    for property in &report.properties {
        let kind = match property.expectation {
            Expectation::Always => "always",
            Expectation::Eventually => "eventually",
            Expectation::Sometimes => "sometimes",
        };
        let verdict = match property.verdict {
            Verdict::Holds => "holds",
            Verdict::Violated => "VIOLATED",
            Verdict::Reached => "reached",
            Verdict::Unreached => "NEVER REACHED",
            Verdict::Undecided => "undecided (search stopped early)",
        };
        let _ = writeln!(out, "  [{kind:<10}] {verdict:<9} {}", property.name);
    }
    for property in report.violations() {
        let _ = writeln!(
            out,
            "\ncounterexample to \"{}\" ({} steps):",
            property.name,
            property.trace.len()
        );
        for (step, line) in property.trace.iter().enumerate() {
            let _ = writeln!(out, "  {:>3}. {line}", step + 1);
        }
    }
    if property_failed(report) {
        let _ = writeln!(out, "\nFAILED");
    } else {
        let _ = writeln!(out, "\nOK");
    }
}

fn property_failed(report: &CheckReport) -> bool {
    report.violations().next().is_some() || report.unreached().next().is_some()
}

fn explore(
    name: &str,
    port: u16,
    overrides: &[(String, usize)],
    bug: Option<&str>,
    threads: usize,
) -> Result<ExitCode, String> {
    let model = find_model(name)?;
    let bounds = BoundValues::resolve(model.bounds(), overrides)?;
    let address = format!("127.0.0.1:{port}");
    eprintln!(
        "Explorer for `{}` on http://{address}/ (Ctrl-C to stop)",
        model.name()
    );
    model.explore(&bounds, bug, &address, threads)?;
    Ok(ExitCode::SUCCESS)
}
