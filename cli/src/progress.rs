//! Progress bars and spinners (indicatif) on stderr. indicatif draws them only when stderr is a
//! terminal, so scripts, tests and `--json` consumers see only the final report on stdout.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often a bar redraws on its own (spinners and rates move even without progress).
const TICK: Duration = Duration::from_millis(100);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("progress templates are constants")
        .progress_chars("=> ")
}

// Templates fit 80 columns: indicatif wraps (and so repeats) a line longer than the terminal,
// so live numbers go in `wide_msg`, which is cut to the width left.

/// A bar over `total_bytes`, showing bytes done, rate and time left.
pub fn bytes(prefix: &'static str, total_bytes: u64) -> ProgressBar {
    let bar = ProgressBar::new(total_bytes)
        .with_prefix(prefix)
        .with_style(style(
            "{prefix:>7} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ));
    bar.enable_steady_tick(TICK);
    bar
}

/// A bar over a fixed duration, in milliseconds; the message carries the live numbers.
pub fn timed(prefix: &'static str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64)
        .with_prefix(prefix)
        .with_style(style("{prefix:>7} [{bar:20}] {elapsed:>3} {wide_msg}"));
    bar.enable_steady_tick(TICK);
    bar
}

/// A bar over a snapshot's copy: bytes copied of the total (set once the cut fixed it); the
/// message carries the stage and the delta pages.
pub fn snapshot(prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_prefix(prefix).with_style(style(
        "{prefix:>7} [{bar:20}] {bytes}/{total_bytes} {wide_msg}",
    ));
    bar.enable_steady_tick(TICK);
    bar
}

/// A bar over `total` items.
pub fn items(prefix: &'static str, total: u64, unit: &'static str) -> ProgressBar {
    let template = format!("{{prefix:>7}} [{{bar:20}}] {{pos}}/{{len}} {unit} {{per_sec}}");
    let bar = ProgressBar::new(total)
        .with_prefix(prefix)
        .with_style(style(&template));
    bar.enable_steady_tick(TICK);
    bar
}

/// A spinner for a step of unknown length.
pub fn spinner(prefix: &'static str, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner()
        .with_prefix(prefix)
        .with_message(message)
        .with_style(
            ProgressStyle::with_template("{prefix:>7} {spinner} {elapsed:>3} {wide_msg}")
                .expect("progress templates are constants"),
        );
    bar.enable_steady_tick(TICK);
    bar
}
