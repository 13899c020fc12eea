//! The `deltasnap` binary as a user runs it: if these break, the demo (snapshot phase included),
//! `snapshot`, `inspect`, `verify` or `restore` no longer work from the command line, or a failure
//! no longer ends in one line on stderr and a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use deltasnap::format::{payload_size, seal_page, verify_page};
use deltasnap::snapshot::manifest::{
    partition_file_name, ManifestMetadata, ManifestPartition, MANIFEST_FILE_NAME,
};
use deltasnap::{Config, Engine, Manifest, PageId, PartitionId};

fn deltasnap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deltasnap"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run the deltasnap binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failure is exactly one line, `deltasnap: <what>: <error>`, and no panic.
fn assert_one_line_failure(output: &Output, starts_with: &str) {
    assert!(!output.status.success(), "expected a failure: {output:?}");
    let stderr = stderr(output);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.starts_with(starts_with), "stderr: {stderr:?}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr:?}");
}

#[test]
fn demo_on_a_small_store_succeeds_and_reports() {
    let output = deltasnap(&["demo", "--size", "4MiB", "--seconds", "1"]);
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    for expected in [
        "store        4.0 MiB: 1,024 pages",
        "writes/s",
        "p50",
        "p99",
        "max",
        "checkpoints",
        "evictions",
        "recovery",
        "all 1,024 pages match the reference",
        "before the snapshot",
        "during the snapshot",
        "restored snapshot equals the cut: 1,024 pages",
        "result: OK",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
}

#[test]
fn demo_json_report_parses_and_keeps_the_store_with_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let output = deltasnap(&[
        "--json",
        "demo",
        "--dir",
        store.to_str().unwrap(),
        "--size",
        "1MiB",
        "--seconds",
        "0.5",
        "--writers",
        "2",
        "--partitions",
        "3",
        "--seed",
        "7",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(report["ok"], true);
    assert_eq!(report["plan"]["seed"], 7);
    assert_eq!(report["store"]["pages"], 256);
    assert_eq!(report["verification"]["mismatches"], 0);
    assert!(report["load"]["writes"].as_u64().unwrap() > 0);
    assert!(report["load"]["latency_ns"]["p99"].as_u64().unwrap() > 0);
    assert_eq!(report["store_kept"], true);
    assert!(store.join("CONTROL").is_file(), "the given --dir is kept");

    // A second demo refuses the now occupied directory.
    let again = deltasnap(&["demo", "--dir", store.to_str().unwrap(), "--size", "1MiB"]);
    assert_one_line_failure(&again, "deltasnap: demo: --dir");
}

#[test]
fn demo_rejects_bad_sizes_on_one_line() {
    let output = deltasnap(&["demo", "--size", "3KiB"]);
    assert_one_line_failure(&output, "deltasnap: demo: --size");
    let output = deltasnap(&["demo", "--size", "12XB"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unknown size suffix"));
}

#[test]
fn verify_of_a_directory_that_is_not_a_snapshot_fails_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = deltasnap(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_one_line_failure(&output, "deltasnap: verify ");
    assert!(
        stderr(&output).contains("not a snapshot"),
        "{}",
        stderr(&output)
    );

    let missing = dir.path().join("missing");
    let output = deltasnap(&["verify", missing.to_str().unwrap()]);
    assert_one_line_failure(&output, "deltasnap: verify ");
}

#[test]
fn inspect_of_a_fresh_store_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path(), Config::default()).unwrap();
        engine.create_partition(PartitionId(4)).unwrap();
        for _ in 0..3 {
            let page = engine.allocate_page(PartitionId(4)).unwrap();
            engine.write(page, 0, b"hello").unwrap();
        }
        engine.metadata_put(b"schema", b"v1").unwrap();
        engine.close().unwrap();
    }
    let output = deltasnap(&["inspect", "--json", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(info["kind"], "store");
    assert_eq!(info["page_size"], 4096);
    assert_eq!(info["partitions"][0]["id"], 4);
    assert_eq!(info["partitions"][0]["pages"], 3);
    assert_eq!(info["metadata"][0]["key"], "schema");
    assert!(info["last_checkpoint"]["epoch"].as_u64().unwrap() >= 1);
    assert!(info["redo"]["tail_cut"].is_null());

    let human = deltasnap(&["inspect", dir.path().to_str().unwrap()]);
    assert!(human.status.success());
    assert!(
        stdout(&human).contains("partitions   1 with 3 pages"),
        "{}",
        stdout(&human)
    );

    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nothing-here");
    let output = deltasnap(&["inspect", missing.to_str().unwrap()]);
    assert_one_line_failure(&output, "deltasnap: inspect store ");
}

/// Writes a snapshot by hand, independent of the engine's snapshot task: one partition of
/// `pages` sealed pages and a manifest with their crcs.
fn write_snapshot(dir: &Path, pages: u32) {
    let page_size = 4096usize;
    std::fs::create_dir_all(dir.join("partitions")).unwrap();
    let file = dir.join(partition_file_name(2));
    let mut bytes = Vec::new();
    let mut page_crcs = Vec::new();
    for index in 0..pages {
        let mut page = vec![0u8; page_size];
        page[..payload_size(page_size)].fill(index as u8 + 1);
        seal_page(&mut page, index, 100 + index as u64);
        page_crcs.push(verify_page(&page, index, &file).unwrap().crc);
        bytes.extend_from_slice(&page);
    }
    std::fs::write(&file, bytes).unwrap();
    let manifest = Manifest {
        format_version: 1,
        name: "by-hand".into(),
        created_unix_ms: 1_700_000_000_000,
        cut_epoch: 5,
        cut_lsn: 0,
        page_size: page_size as u32,
        delta_policy: deltasnap::DeltaPolicy::Full,
        delta_pages: 1,
        partitions: vec![ManifestPartition {
            id: 2,
            file: partition_file_name(2),
            page_count: pages,
            page_crcs,
        }],
        metadata: vec![ManifestMetadata {
            key_hex: "6b".into(),
            value_hex: "76".into(),
        }],
    };
    std::fs::write(dir.join(MANIFEST_FILE_NAME), manifest.to_json()).unwrap();
}

#[test]
fn a_snapshot_inspects_verifies_and_restores() {
    let root = tempfile::tempdir().unwrap();
    let snapshot = root.path().join("snap");
    write_snapshot(&snapshot, 3);
    let snapshot_arg = snapshot.to_str().unwrap();

    let output = deltasnap(&["inspect", "--json", snapshot_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["kind"], "snapshot");
    assert_eq!(info["name"], "by-hand");
    assert_eq!(info["cut_epoch"], 5);
    assert_eq!(info["delta_policy"], "full");
    assert_eq!(info["pages"], 3);
    assert_eq!(info["metadata"][0]["key"], "k");

    let output = deltasnap(&["verify", snapshot_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("OK"), "{}", stdout(&output));

    let restored = root.path().join("restored");
    let output = deltasnap(&["restore", snapshot_arg, restored.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("3 pages"), "{}", stdout(&output));
    let engine = Engine::open(&restored, Config::default()).unwrap();
    let page = engine.read(PageId::new(PartitionId(2), 1)).unwrap();
    assert!(page.iter().all(|&b| b == 2));
    assert_eq!(
        engine.metadata_get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    engine.close().unwrap();

    // Restoring again into the now occupied store fails on one line.
    let output = deltasnap(&["restore", snapshot_arg, restored.to_str().unwrap()]);
    assert_one_line_failure(&output, "deltasnap: restore ");

    // One flipped byte: verify lists the page and exits 1.
    let file = snapshot.join(partition_file_name(2));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4096 + 10] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let output = deltasnap(&["--json", "verify", snapshot_arg]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["page"], 1);
    assert_one_line_failure(&output, "deltasnap: verify ");
}

#[test]
fn demo_takes_a_snapshot_under_load_that_restores_to_its_cut() {
    let output = deltasnap(&["--json", "demo", "--size", "8MiB", "--seconds", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(report["ok"], true, "{report:#}");
    let snapshot = &report["snapshot"];
    assert_eq!(snapshot["restored_equals_cut"], true, "{snapshot:#}");
    assert_eq!(snapshot["restored_pages_checked"], 2048);
    assert_eq!(snapshot["restored_mismatches"], 0);
    assert_eq!(snapshot["verified"], true);
    assert_eq!(snapshot["delta_policy"], "full");
    assert_eq!(snapshot["pages"], 2048);
    assert!(snapshot["cut_epoch"].as_u64().unwrap() >= 1);
    for field in [
        "seconds",
        "copy_bytes_per_second",
        "restore_seconds",
        "requested_at_seconds",
    ] {
        assert!(
            snapshot[field].as_f64().unwrap() > 0.0,
            "{field}: {snapshot:#}"
        );
    }
    assert!(snapshot["delta_pages"].is_u64());
    let load = &report["load"];
    for phase in ["before_snapshot", "during_snapshot"] {
        assert!(
            load[phase]["writes"].as_u64().unwrap() > 0,
            "{phase}: {load:#}"
        );
        assert!(load[phase]["writes_per_second"].as_f64().unwrap() > 0.0);
        assert!(load[phase]["latency_ns"]["p50"].as_u64().unwrap() > 0);
        assert!(load[phase]["latency_ns"]["p99"].as_u64().unwrap() > 0);
        assert!(load[phase]["longest_write_ns"].as_u64().unwrap() > 0);
    }
    let writes: u64 = ["before_snapshot", "during_snapshot", "after_snapshot"]
        .iter()
        .map(|phase| load[phase]["writes"].as_u64().unwrap())
        .sum();
    assert_eq!(writes, load["writes"].as_u64().unwrap());
}

#[test]
fn demo_takes_a_cursor_aware_snapshot_on_request() {
    let output = deltasnap(&[
        "--json",
        "demo",
        "--size",
        "2MiB",
        "--seconds",
        "1",
        "--delta-policy",
        "cursor-aware",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["snapshot"]["delta_policy"], "cursor-aware");
    assert_eq!(report["snapshot"]["restored_equals_cut"], true);
}

#[test]
fn a_store_snapshots_verifies_and_restores_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let pages: Vec<PageId> = {
        let engine = Engine::open(&store, Config::default()).unwrap();
        let mut pages = Vec::new();
        for partition in [PartitionId(0), PartitionId(3)] {
            engine.create_partition(partition).unwrap();
            for index in 0..5u8 {
                let page = engine.allocate_page(partition).unwrap();
                engine
                    .write(page, 0, &[partition.0 as u8 * 16 + index; 64])
                    .unwrap();
                pages.push(page);
            }
        }
        engine.metadata_put(b"schema", b"v1").unwrap();
        engine.close().unwrap();
        pages
    };
    let backups = root.path().join("backups");
    let store_arg = store.to_str().unwrap();
    let backups_arg = backups.to_str().unwrap();

    let output = deltasnap(&[
        "--json",
        "snapshot",
        store_arg,
        backups_arg,
        "--name",
        "first",
        "--rate-limit",
        "64MiB",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(manifest["name"], "first");
    assert_eq!(manifest["delta_policy"], "full");
    assert_eq!(manifest["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["partitions"][1]["page_count"], 5);
    let snapshot = backups.join("first");
    let snapshot_arg = snapshot.to_str().unwrap();

    // The human summary, and a second snapshot under the same name is refused on one line.
    let output = deltasnap(&[
        "snapshot",
        store_arg,
        backups_arg,
        "--name",
        "second",
        "--delta-policy",
        "cursor-aware",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("10 in 2 partitions"), "{out}");
    assert!(out.contains("cursor-aware policy"), "{out}");
    let output = deltasnap(&["snapshot", store_arg, backups_arg, "--name", "first"]);
    assert_one_line_failure(&output, "deltasnap: snapshot ");

    let output = deltasnap(&["verify", snapshot_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("OK"), "{}", stdout(&output));

    let restored = root.path().join("restored");
    let output = deltasnap(&["restore", snapshot_arg, restored.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("10 pages"), "{}", stdout(&output));
    let engine = Engine::open(&restored, Config::default()).unwrap();
    for page in pages {
        let payload = engine.read(page).unwrap();
        let byte = page.partition.0 as u8 * 16 + page.index as u8;
        assert!(payload[..64].iter().all(|&b| b == byte), "page {page}");
        assert!(payload[64..].iter().all(|&b| b == 0), "page {page}");
    }
    assert_eq!(
        engine.metadata_get(b"schema").unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    engine.close().unwrap();

    // A store that does not exist is an error on one line, and nothing is created.
    let missing = root.path().join("missing");
    let output = deltasnap(&[
        "snapshot",
        missing.to_str().unwrap(),
        backups_arg,
        "--name",
        "x",
    ]);
    assert_one_line_failure(&output, "deltasnap: snapshot ");
    assert!(!missing.exists());
}

/// Every file under `dir` with its bytes' crc32c (paths relative to `dir`).
fn file_checksums(dir: &Path) -> Vec<(String, u64, u32)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.push((name, bytes.len() as u64, crc32c::crc32c(&bytes)));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_live_store_is_inspected_without_a_byte_changed_and_not_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        background_checkpointer: false, // nothing of the holder's own writes during the check
        ..Config::default()
    };
    let engine = Engine::open(dir.path().join("store"), config).unwrap();
    engine.create_partition(PartitionId(2)).unwrap();
    let page = engine.allocate_page(PartitionId(2)).unwrap();
    engine.write(page, 0, b"checkpointed").unwrap();
    engine.checkpoint().unwrap();
    engine.write(page, 0, b"only in the redo log").unwrap();
    engine.metadata_put(b"schema", b"v2").unwrap();
    engine.sync().unwrap();
    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let before = file_checksums(&store);

    let output = deltasnap(&["inspect", "--json", store_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(info["in_use"]["pid"], std::process::id());
    assert_eq!(info["partitions"][0]["pages"], 1);
    assert!(info["redo"].is_null(), "not recovered: {info:#}");
    let human = deltasnap(&["inspect", store_arg]);
    assert!(human.status.success(), "{}", stderr(&human));
    let text = stdout(&human);
    assert!(
        text.contains(&format!("in use       by process {}", std::process::id())),
        "{text}"
    );
    assert_eq!(
        file_checksums(&store),
        before,
        "inspect changed the live store"
    );

    let target = dir.path().join("snapshots");
    let output = deltasnap(&[
        "snapshot",
        "--name",
        "live",
        store_arg,
        target.to_str().unwrap(),
    ]);
    assert_one_line_failure(&output, "deltasnap: snapshot ");
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.contains("in use by process") && message.contains("Engine::snapshot"),
        "{message}"
    );
    assert_eq!(
        file_checksums(&store),
        before,
        "a refused snapshot changed the live store"
    );
    assert!(!target.join("live").exists());

    // The holder is unaffected and, once it closes, the CLI opens the store as before.
    assert_eq!(&engine.read(page).unwrap()[..20], b"only in the redo log");
    engine.close().unwrap();
    let output = deltasnap(&["inspect", "--json", store_arg]);
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert!(info["in_use"].is_null());
    assert!(!info["redo"].is_null());
}
