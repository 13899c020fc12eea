//! `deltasnap verify SNAPSHOT_DIR`: recheck every page of a snapshot against its manifest
//! (`deltasnap::verify_snapshot`), print every problem, and exit 1 if there is any.

use std::path::Path;

use deltasnap::Problem;
use serde::Serialize;

use crate::args::VerifyArgs;
use crate::failure::{Context, Failure, Result};
use crate::output::print_json;
use crate::units::format_count;

/// The `--json` output.
#[derive(Debug, Serialize)]
struct VerifyOutput<'a> {
    snapshot_dir: &'a Path,
    ok: bool,
    name: Option<&'a str>,
    cut_epoch: Option<u64>,
    partitions_checked: usize,
    pages_checked: u64,
    problems: &'a [Problem],
}

pub fn run(args: &VerifyArgs, json: bool) -> Result<()> {
    let dir = &args.snapshot_dir;
    let what = || format!("verify {}", dir.display());
    let report = deltasnap::verify_snapshot(dir).context(what)?;
    let manifest = report.manifest.as_ref();
    if json {
        print_json(&VerifyOutput {
            snapshot_dir: dir,
            ok: report.is_ok(),
            name: manifest.map(|m| m.name.as_str()),
            cut_epoch: manifest.map(|m| m.cut_epoch),
            partitions_checked: report.partitions_checked,
            pages_checked: report.pages_checked,
            problems: &report.problems,
        })?;
    } else {
        let title = match manifest {
            Some(m) => format!(
                "snapshot {:?} at {} (cut epoch {})",
                m.name,
                dir.display(),
                m.cut_epoch
            ),
            None => format!("{}", dir.display()),
        };
        if report.is_ok() {
            println!(
                "{title}: OK, {} partitions and {} pages match the manifest",
                report.partitions_checked,
                format_count(report.pages_checked)
            );
        } else {
            println!(
                "{title}: {} problem(s) in {} partitions and {} pages checked",
                report.problems.len(),
                report.partitions_checked,
                format_count(report.pages_checked)
            );
            for problem in &report.problems {
                println!("  {problem}");
            }
        }
    }
    if report.is_ok() {
        return Ok(());
    }
    let first = report
        .problems
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "no manifest".into());
    let reason = if manifest.is_none() {
        format!("not a snapshot: {first}")
    } else {
        format!("{} problem(s), the first: {first}", report.problems.len())
    };
    Err(Failure::problems(what(), reason))
}
