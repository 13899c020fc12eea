//! `deltasnap restore SNAPSHOT_DIR NEW_STORE_DIR`: verify a snapshot and turn it into a new store
//! that `Engine::open` starts from at the snapshot's cut (`deltasnap::restore`).

use std::path::Path;

use serde::Serialize;

use crate::args::RestoreArgs;
use crate::failure::{Context, Result};
use crate::output::print_json;
use crate::progress;
use crate::units::format_count;

/// The `--json` output.
#[derive(Debug, Serialize)]
struct RestoreOutput<'a> {
    snapshot_dir: &'a Path,
    store_dir: &'a Path,
    cut_epoch: u64,
    partitions: usize,
    pages: u64,
}

pub fn run(args: &RestoreArgs, json: bool) -> Result<()> {
    let spinner = progress::spinner("restore", "verifying and copying the snapshot");
    let report = deltasnap::restore(&args.snapshot_dir, &args.new_store_dir).context(|| {
        format!(
            "restore {} into {}",
            args.snapshot_dir.display(),
            args.new_store_dir.display()
        )
    });
    spinner.finish_and_clear();
    let report = report?;
    if json {
        print_json(&RestoreOutput {
            snapshot_dir: &args.snapshot_dir,
            store_dir: &report.store_dir,
            cut_epoch: report.cut_epoch,
            partitions: report.partitions,
            pages: report.pages,
        })
    } else {
        println!(
            "restored {} into {}: {} partitions, {} pages, opens at cut epoch {}",
            args.snapshot_dir.display(),
            report.store_dir.display(),
            report.partitions,
            format_count(report.pages),
            report.cut_epoch
        );
        Ok(())
    }
}
