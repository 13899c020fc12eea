//! The command line: subcommands and their options (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::parse_size;

/// deltasnap: an embeddable page store with online, consistent snapshots.
#[derive(Debug, Parser)]
#[command(name = "deltasnap", version, about, propagate_version = true)]
pub struct Cli {
    /// Print the result as JSON on stdout (progress and logs stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a store, write to it from several threads while the checkpointer runs, take a
    /// snapshot under that load, restore it and check it against the state at its cut, reopen
    /// the store and check every page against what the writers wrote.
    Demo(DemoArgs),
    /// Take an online snapshot of a store into TARGET_DIR/NAME.
    Snapshot(SnapshotArgs),
    /// Describe a snapshot (a directory with manifest.json) or a store.
    Inspect(InspectArgs),
    /// Recheck every page of a snapshot against its manifest; exit 1 on any problem.
    Verify(VerifyArgs),
    /// Turn a snapshot into a new store that opens at the snapshot's cut.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Store directory (must not hold anything else). Default: a fresh directory under the
    /// system temp directory, removed at the end unless --keep.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Keep the temporary store directory at the end.
    #[arg(long)]
    pub keep: bool,

    /// Store size to build (B, KiB, MiB or GiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub size: u64,

    /// Writer threads (the build phase uses as many).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub writers: u16,

    /// How long the writers write, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,

    /// Page size of the new store (a power of two, 512 ..= 65536).
    #[arg(long, default_value_t = 4096)]
    pub page_size: u32,

    /// Partitions to spread the pages over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub partitions: u32,

    /// Bytes each load write changes, at the start of the page (the page's stamp lives there).
    #[arg(long, default_value_t = 128)]
    pub write_bytes: usize,

    /// Background checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub checkpoint_interval_ms: u64,

    /// Engine page-memory budget (B, KiB, MiB or GiB). Default: the engine's default.
    #[arg(long, value_parser = parse_size)]
    pub memory_budget: Option<u64>,

    /// Seed of the writers' page choices (default: from the clock; printed in the report so a
    /// run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Which pages the snapshot's write hook captures into the delta.
    #[arg(long, value_enum, default_value_t = DeltaPolicyArg::Full)]
    pub delta_policy: DeltaPolicyArg,
}

/// `deltasnap::DeltaPolicy` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeltaPolicyArg {
    /// Every page the cut checkpoint writes and every first overwrite after it (Ignite's rule).
    Full,
    /// Only the pages the copier could miss, given the window it announced.
    CursorAware,
}

impl From<DeltaPolicyArg> for deltasnap::DeltaPolicy {
    fn from(policy: DeltaPolicyArg) -> Self {
        match policy {
            DeltaPolicyArg::Full => deltasnap::DeltaPolicy::Full,
            DeltaPolicyArg::CursorAware => deltasnap::DeltaPolicy::CursorAware,
        }
    }
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The store to snapshot (not open in another process).
    pub store_dir: PathBuf,
    /// Where the snapshot is published, as TARGET_DIR/NAME.
    pub target_dir: PathBuf,
    /// The snapshot's name: 1 to 128 of [A-Za-z0-9._-], not starting with '.'.
    #[arg(long)]
    pub name: String,
    /// Which pages the write hook captures into the delta.
    #[arg(long, value_enum, default_value_t = DeltaPolicyArg::Full)]
    pub delta_policy: DeltaPolicyArg,
    /// Bytes per second the copier may copy (B, KiB, MiB or GiB). Default: no limit.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = parse_size)]
    pub rate_limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A snapshot directory (holding manifest.json) or a store directory.
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The snapshot directory.
    pub snapshot_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot directory.
    pub snapshot_dir: PathBuf,
    /// Where to create the new store (must not exist or be empty).
    pub new_store_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn demo_defaults() {
        let cli = Cli::try_parse_from(["deltasnap", "demo"]).unwrap();
        let Command::Demo(demo) = cli.command else {
            panic!("not demo")
        };
        assert_eq!(demo.size, 256 << 20);
        assert_eq!(demo.writers, 4);
        assert_eq!(demo.page_size, 4096);
        assert_eq!(demo.delta_policy, DeltaPolicyArg::Full);
        assert!(!cli.json);
    }

    #[test]
    fn snapshot_options_parse() {
        let cli = Cli::try_parse_from([
            "deltasnap",
            "snapshot",
            "store",
            "backups",
            "--name",
            "nightly",
            "--delta-policy",
            "cursor-aware",
            "--rate-limit",
            "8MiB",
        ])
        .unwrap();
        let Command::Snapshot(snapshot) = cli.command else {
            panic!("not snapshot")
        };
        assert_eq!(snapshot.name, "nightly");
        assert_eq!(snapshot.delta_policy, DeltaPolicyArg::CursorAware);
        assert_eq!(snapshot.rate_limit, Some(8 << 20));
        assert!(Cli::try_parse_from(["deltasnap", "snapshot", "store", "backups"]).is_err());
    }
}
