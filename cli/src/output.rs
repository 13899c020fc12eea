//! Printing results: JSON for scripts, and the small formatting helpers the human reports share.

use std::io::Write;

use serde::Serialize;

use crate::failure::{Context, Result};

/// Prints `value` as pretty JSON on stdout, followed by a newline.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value).context(|| "write JSON to stdout".into())?;
    writeln!(stdout).context(|| "write JSON to stdout".into())
}

/// A metadata key or value for humans: the text if it is printable UTF-8, else `0x` and hex.
pub fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_string(),
        _ => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (no time-zone database needed).
pub fn utc_from_unix_ms(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_as_text_or_hex() {
        assert_eq!(text_or_hex(b"schema/v1"), "schema/v1");
        assert_eq!(text_or_hex(b"\x00\xff"), "0x00ff");
        assert_eq!(text_or_hex(b"a\nb"), "0x610a62");
    }

    #[test]
    fn unix_ms_prints_as_utc() {
        assert_eq!(utc_from_unix_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_from_unix_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc_from_unix_ms(1_700_000_000_123),
            "2023-11-14 22:13:20 UTC"
        );
    }
}
