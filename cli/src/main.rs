//! `deltasnap`: run the demo, take, inspect, verify and restore snapshots, inspect a store.
//!
//! This file only parses the arguments, sets up logging, dispatches and turns the outcome into an
//! exit code (see [`failure`]). Every command lives in its own module.

mod args;
mod content;
mod demo;
mod failure;
mod inspect;
mod output;
mod progress;
mod restore;
mod snapshot;
mod units;
mod verify;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() {
    restore_sigpipe();
    failure::install_panic_hook();
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args, cli.json),
        Command::Snapshot(args) => snapshot::run(&args, cli.json),
        Command::Inspect(args) => inspect::run(&args, cli.json),
        Command::Verify(args) => verify::run(&args, cli.json),
        Command::Restore(args) => restore::run(&args, cli.json),
    };
    if let Err(failure) = result {
        eprintln!("deltasnap: {failure}");
        std::process::exit(failure.exit_code());
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`deltasnap inspect … | head`) would be
/// an error (or a panic in `println!`). Like other Unix tools, die quietly of the signal instead.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `warn`), so stdout stays the command's
/// report (and valid JSON with `--json`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
