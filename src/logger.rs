//! Human-readable log lines on standard error: `TIME LEVEL SOURCE: TEXT`.
//!
//! One global threshold (info by default, debug with `--verbose`); lines are written
//! whole so that lines from different threads never interleave.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use fluxrig_core::abi::LogLevel;

use crate::clock::unix_nanos;

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Shows debug lines too.
pub fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Writes one log line from `source` at `level` (debug lines only when verbose).
pub fn log(level: LogLevel, source: &str, text: &str) {
    if level == LogLevel::Debug && !VERBOSE.load(Ordering::Relaxed) {
        return;
    }
    let line = format!("{} {:<5} {source}: {text}\n", utc_now(), level.as_str().to_uppercase());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Writes one line a gear's guest logged through `env.log`, under the gear's name, with
/// control characters escaped (`\n`, `\u{1b}`): a guest can neither start a line of its
/// own nor send escape sequences to a terminal.
pub fn guest(level: LogLevel, gear: &str, text: &str) {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    log(level, gear, &escaped);
}

/// Logs at info level.
pub fn info(source: &str, text: &str) {
    log(LogLevel::Info, source, text);
}

/// Logs at warn level.
pub fn warn(source: &str, text: &str) {
    log(LogLevel::Warn, source, text);
}

/// Logs at error level.
pub fn error(source: &str, text: &str) {
    log(LogLevel::Error, source, text);
}

/// Formats now as RFC 3339 UTC with milliseconds.
fn utc_now() -> String {
    let nanos = unix_nanos();
    let secs = nanos.div_euclid(1_000_000_000);
    let millis = nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
    }
}
