//! What the shuttle suites share: the runner configuration (failing schedules persisted under
//! `target-shuttle/shuttle-failures`, or `$DELTASNAP_SHUTTLE_FAILURES`) and the schedule budgets
//! read from the environment (`DELTASNAP_SHUTTLE_RANDOM`, `DELTASNAP_SHUTTLE_PCT`).

use std::path::PathBuf;

use shuttle::FailurePersistence;

/// The shuttle configuration of every suite: a 1 MiB stack per task and failing schedules
/// written to a file for `shuttle::replay_from_file`.
pub fn config() -> shuttle::Config {
    let failures = std::env::var_os("DELTASNAP_SHUTTLE_FAILURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target-shuttle/shuttle-failures")
        });
    std::fs::create_dir_all(&failures).unwrap();
    let mut config = shuttle::Config::new();
    config.stack_size = 1 << 20;
    config.failure_persistence = FailurePersistence::File(Some(failures));
    config
}

/// The number in the environment variable `name`, or `default`.
pub fn iterations(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
