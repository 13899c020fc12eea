//! Breaks if a `Config` value outside its documented range is accepted (issue 11 defect 6):
//! every field's bounds, just in and just out, through `Config::validate`, and `Engine::open`
//! refusing a bad value before it touches the store. Out of range, a zero redo threshold or
//! interval made the checkpointer spin.
//!
//! The table also runs with the seeded bug `config-unchecked` on and must fail then.
#![cfg(all(deltasnap_testing, not(any(deltasnap_loom, deltasnap_shuttle))))]

mod lifecycle_core_support;

use std::sync::Arc;

use deltasnap::bugs::Bug;
use deltasnap::vfs::{SimFs, Vfs};
use deltasnap::{Config, Engine, Error};
use lifecycle_core_support::{serial, with_bug};

/// One row: a field, the value tried (as the error must print it), the configuration, and
/// whether it is in range.
struct Row {
    field: &'static str,
    value: String,
    config: Config,
    in_range: bool,
}

fn row(
    field: &'static str,
    value: impl ToString,
    in_range: bool,
    set: impl FnOnce(&mut Config),
) -> Row {
    let mut config = Config::default();
    set(&mut config);
    Row {
        field,
        value: value.to_string(),
        config,
        in_range,
    }
}

/// A byte-sized field: its name, smallest and largest value, and its setter.
type ByteField = (&'static str, u64, u64, fn(&mut Config, u64));

fn table() -> Vec<Row> {
    let page = Config::default().page_size as u64;
    let day_ms = Config::CHECKPOINT_INTERVAL_MS_MAX;
    let mut rows = vec![
        row("page_size", 512, true, |c| c.page_size = 512),
        row("page_size", 256, false, |c| c.page_size = 256),
        row("page_size", 65536, true, |c| c.page_size = 65536),
        row("page_size", 131072, false, |c| c.page_size = 131072),
        row("page_size", 4095, false, |c| c.page_size = 4095),
        row("dirty_checkpoint_percent", 1, true, |c| {
            c.dirty_checkpoint_percent = 1
        }),
        row("dirty_checkpoint_percent", 0, false, |c| {
            c.dirty_checkpoint_percent = 0
        }),
        row("dirty_checkpoint_percent", 75, true, |c| {
            c.dirty_checkpoint_percent = 75
        }),
        row("dirty_checkpoint_percent", 76, false, |c| {
            c.dirty_checkpoint_percent = 76
        }),
        row("dirty_throttle_percent", 100, true, |c| {
            c.dirty_throttle_percent = 100
        }),
        row("dirty_throttle_percent", 101, false, |c| {
            c.dirty_throttle_percent = 101
        }),
        row("dirty_throttle_percent", 50, true, |c| {
            c.dirty_throttle_percent = 50
        }),
        row("dirty_throttle_percent", 49, false, |c| {
            c.dirty_throttle_percent = 49
        }),
        row("checkpoint_interval_ms", "None", true, |c| {
            c.checkpoint_interval_ms = None
        }),
        row("checkpoint_interval_ms", 1, true, |c| {
            c.checkpoint_interval_ms = Some(1)
        }),
        row("checkpoint_interval_ms", 0, false, |c| {
            c.checkpoint_interval_ms = Some(0)
        }),
        row("checkpoint_interval_ms", day_ms, true, |c| {
            c.checkpoint_interval_ms = Some(day_ms)
        }),
        row("checkpoint_interval_ms", day_ms + 1, false, |c| {
            c.checkpoint_interval_ms = Some(day_ms + 1)
        }),
    ];
    let byte_fields: [ByteField; 3] = [
        (
            "memory_budget_bytes",
            Config::MEMORY_BUDGET_PAGES_MIN * page,
            Config::MEMORY_BUDGET_BYTES_MAX,
            |c, v| c.memory_budget_bytes = v,
        ),
        (
            "checkpoint_redo_bytes",
            Config::CHECKPOINT_REDO_PAGES_MIN * page,
            Config::CHECKPOINT_REDO_BYTES_MAX,
            |c, v| c.checkpoint_redo_bytes = v,
        ),
        (
            "wal_segment_bytes",
            Config::WAL_SEGMENT_PAGES_MIN * page,
            Config::WAL_SEGMENT_BYTES_MAX,
            |c, v| c.wal_segment_bytes = v,
        ),
    ];
    for (field, min, max, set) in byte_fields {
        for (value, in_range) in [
            (min, true),
            (min - 1, false),
            (max, true),
            (max + 1, false),
            (0, false),
        ] {
            rows.push(row(field, value, in_range, |c| set(c, value)));
        }
    }
    // Fields with no range: every value is in it.
    for on in [true, false] {
        rows.push(row("create_if_missing", on, true, |c| {
            c.create_if_missing = on
        }));
        rows.push(row("background_checkpointer", on, true, |c| {
            c.background_checkpointer = on
        }));
    }
    rows
}

/// Every row's verdict, or the rows that got the wrong one.
fn check_table() -> Result<(), String> {
    let mut wrong = Vec::new();
    for row in table() {
        match (row.config.validate(), row.in_range) {
            (Ok(()), true) => {}
            (Err(Error::InvalidArgument(message)), false)
                if message.contains(row.field) && message.contains(&row.value) => {}
            (result, in_range) => wrong.push(format!(
                "{} = {} (in range: {in_range}) gave {result:?}",
                row.field, row.value
            )),
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// `Engine::open` refuses a value that made the checkpointer spin before it writes anything.
fn check_open_refuses_up_front() -> Result<(), String> {
    let sim = Arc::new(SimFs::new());
    let vfs: Arc<dyn Vfs> = sim.clone();
    let config = Config {
        checkpoint_redo_bytes: 0,
        ..Config::default()
    };
    match Engine::open_on(vfs, "/store", config) {
        Err(Error::InvalidArgument(message)) if message.contains("checkpoint_redo_bytes") => {}
        Err(other) => {
            return Err(format!(
                "open with checkpoint_redo_bytes = 0 failed with {other}"
            ))
        }
        Ok(engine) => {
            engine.close().ok();
            return Err("open with checkpoint_redo_bytes = 0 succeeded".into());
        }
    }
    match sim.file_names() {
        names if names.is_empty() => Ok(()),
        names => Err(format!("the refused open created {names:?}")),
    }
}

#[test]
fn every_config_field_is_checked_against_its_range() {
    let _serial = serial();
    check_table().unwrap();
    check_open_refuses_up_front().unwrap();
    assert!(Config::default().validate().is_ok());
}

#[test]
fn seeded_config_unchecked_is_caught() {
    let _serial = serial();
    let (table, open) = with_bug(Bug::ConfigUnchecked, || {
        (check_table(), check_open_refuses_up_front())
    });
    for (what, result) in [("table", table), ("open", open)] {
        let error = result.expect_err("seeded bug config-unchecked must be caught");
        eprintln!("seeded bug config-unchecked caught by the {what}: {error}");
    }
}
