//! Log lines on standard error, as text (`TIME LEVEL SOURCE: TEXT`) or as JSON objects
//! (`{"ts":…,"level":…,"source":…,"msg":…}`, one per line, for journald or a collector).
//!
//! One global threshold (info by default; `--log-level`, `-v` for debug, `-q` for warn)
//! and one format (`--log-format`); lines are written whole so that lines from different
//! threads never interleave.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use fluxrig_core::abi::LogLevel;

use crate::clock::unix_nanos;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL SOURCE: TEXT`.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown log format {s:?} (text or json)")),
        }
    }
}

/// Parses a `--log-level` value.
pub fn parse_level(s: &str) -> Result<LogLevel, String> {
    match s {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        _ => Err(format!("unknown log level {s:?} (error, warn, info or debug)")),
    }
}

static THRESHOLD: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Shows debug lines too (`-v`).
pub fn set_verbose(verbose: bool) {
    if verbose {
        set_threshold(LogLevel::Debug);
    }
}

/// Writes lines at `level` and above only.
pub fn set_threshold(level: LogLevel) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

/// Writes lines in `format`.
pub fn set_format(format: LogFormat) {
    JSON.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

/// Whether lines at `level` are written (to skip building a line nobody will see).
pub fn enabled(level: LogLevel) -> bool {
    level as u8 >= THRESHOLD.load(Ordering::Relaxed)
}

/// Writes one log line from `source` at `level`, if the threshold lets it through.
pub fn log(level: LogLevel, source: &str, text: &str) {
    if !enabled(level) {
        return;
    }
    let line = if JSON.load(Ordering::Relaxed) == 1 {
        let field = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "{{\"ts\":\"{}\",\"level\":\"{}\",\"source\":{},\"msg\":{}}}\n",
            utc_now(),
            level.as_str(),
            field(source),
            field(text)
        )
    } else {
        format!("{} {:<5} {source}: {text}\n", utc_now(), level.as_str().to_uppercase())
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Writes one line a gear's guest logged through `env.log`, under the gear's name, with
/// control characters escaped (`\n`, `\u{1b}`): a guest can neither start a line of its
/// own nor send escape sequences to a terminal.
pub fn guest(level: LogLevel, gear: &str, text: &str) {
    if !enabled(level) {
        return;
    }
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
