//! The binary's one error type: what went wrong, with the context a user needs (path,
//! gear, line), the core error kept as its source, printed once by `main`, and one
//! [`Error::exit_code`] match (the table is in the README).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use fluxrig_core::budget::BudgetError;
use fluxrig_core::rack::RackError;
use fluxrig_core::verify::KeyError;
use fluxrig_core::{GearError, VerifyError};

/// Exit code for a refused or failed operation: bad input, I/O failure, gear error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that does not parse or asks for something impossible.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a trust failure: missing, untrusted or wrong signature, hash mismatch.
pub const EXIT_UNTRUSTED: u8 = 3;
/// Exit code of `run` when some messages were lost to a failure: bad input, guest faults,
/// the hop or queue limit, an output that closed. The rack kept going; the log names each.
pub const EXIT_MESSAGES_FAILED: u8 = 4;
/// Exit code of `run` stopped by a second signal, abandoning the messages in flight.
pub const EXIT_ABORTED: u8 = 5;

/// Everything that can stop a command.
#[derive(Debug)]
pub enum Error {
    /// The command line asks for something impossible (`--memory-budget-mib 0`).
    Usage(String),
    /// A file or folder could not be read or written.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done (`read module`, `create folder`).
        action: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A module failed its signature or hash check, or its sections cannot be read.
    Verify {
        /// The module file.
        path: PathBuf,
        /// What the core found.
        source: VerifyError,
    },
    /// A key file is not a key.
    Key {
        /// The key file.
        path: PathBuf,
        /// What the core found.
        source: KeyError,
    },
    /// A module is not a gear, or a gear could not be set up or run.
    Gear {
        /// The gear's name (or the module's path).
        gear: String,
        /// What the core found (boxed: the largest core error, and a cold path).
        source: Box<GearError>,
    },
    /// The gears of a scenario do not fit the memory budget.
    Budget {
        /// The gear that did not fit.
        gear: String,
        /// What the core found.
        source: BudgetError,
        /// The budget, in MiB.
        budget_mib: usize,
    },
    /// The wiring of a scenario cannot be built.
    Rack(RackError),
    /// Input that is refused: a scenario, a message, a file that exists already.
    Invalid(String),
    /// A check over several items failed (`wasm list`, `wasm verify`); the details were
    /// printed already.
    Checks {
        /// One line saying what failed.
        summary: String,
        /// Whether a signature or hash check was among the failures.
        trust: bool,
    },
    /// A rack ran to its end, but some messages were lost to failures (logged already).
    MessagesFailed(String),
    /// Another error, with advice on how to fix it.
    Hint {
        /// The error.
        source: Box<Error>,
        /// The advice, shown in parentheses after the error.
        hint: String,
    },
    /// Another error, with what was being done when it happened.
    Context {
        /// The file, gear or step.
        context: String,
        /// The error.
        source: Box<Error>,
    },
}

impl Error {
    /// Refused input, with a message naming what is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// An I/O error on `path` while doing `action`.
    pub fn io(path: &Path, action: impl Into<String>, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), action: action.into(), source }
    }

    /// A module that is not a gear, or a gear that failed, named `gear`.
    pub fn gear(gear: impl Into<String>, source: GearError) -> Self {
        Self::Gear { gear: gear.into(), source: Box::new(source) }
    }

    /// A verification failure of the module at `path`.
    pub fn verify(path: &Path, source: VerifyError) -> Self {
        Self::Verify { path: path.to_path_buf(), source }
    }

    /// Puts `context` (a file, a gear) in front of this error.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::Context { context: context.to_string(), source: Box::new(self) }
    }

    /// Adds advice after this error's message.
    pub fn hint(self, hint: impl Into<String>) -> Self {
        Self::Hint { source: Box::new(self), hint: hint.into() }
    }

    /// Returns the process exit code: 3 for a trust failure only, 2 for a usage error,
    /// 4 for a run that lost messages, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Verify { source, .. } if source.is_trust_failure() => EXIT_UNTRUSTED,
            Self::Checks { trust: true, .. } => EXIT_UNTRUSTED,
            Self::MessagesFailed(_) => EXIT_MESSAGES_FAILED,
            Self::Context { source, .. } | Self::Hint { source, .. } => source.exit_code(),
            _ => EXIT_FAILURE,
        }
    }
}

/// The operating system's words for common errors, shorter than `io::Error`'s Display.
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Invalid(message) | Self::MessagesFailed(message) => {
                f.write_str(message)
            }
            Self::Io { path, action, source } => {
                write!(f, "cannot {action} {}: {}", path.display(), io_reason(source))
            }
            Self::Verify { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Key { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Gear { gear, source } => write!(f, "gear '{gear}': {source}"),
            Self::Budget { gear, source, budget_mib } => {
                write!(f, "gear '{gear}': {source} (budget {budget_mib} MiB, set with --memory-budget-mib)")
            }
            Self::Rack(source) => write!(f, "wiring: {source}"),
            Self::Checks { summary, .. } => f.write_str(summary),
            Self::Context { context, source } => write!(f, "{context}: {source}"),
            Self::Hint { source, hint } => write!(f, "{source} ({hint})"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Verify { source, .. } => Some(source),
            Self::Key { source, .. } => Some(source),
            Self::Gear { source, .. } => Some(source.as_ref()),
            Self::Budget { source, .. } => Some(source),
            Self::Rack(source) => Some(source),
            Self::Context { source, .. } | Self::Hint { source, .. } => Some(source.as_ref()),
            Self::Usage(_) | Self::Invalid(_) | Self::MessagesFailed(_) | Self::Checks { .. } => None,
        }
    }
}

/// The binary's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trust_failures_exit_3() {
        let trust = Error::verify(Path::new("m.wasm"), VerifyError::BadClusterSignature);
        assert_eq!(trust.exit_code(), EXIT_UNTRUSTED);
        assert_eq!(trust.context("gear 'a'").exit_code(), EXIT_UNTRUSTED);
        let malformed = Error::verify(
            Path::new("m.wasm"),
            VerifyError::Section(fluxrig_core::section::SectionError::BadHeader),
        );
        assert_eq!(malformed.exit_code(), EXIT_FAILURE);
        let key = Error::Key { path: "k".into(), source: KeyError::BadLength { got: 3 } };
        assert_eq!(key.exit_code(), EXIT_FAILURE);
        let shape = Error::gear("a", GearError::NoMemoryExport);
        assert_eq!(shape.exit_code(), EXIT_FAILURE);
        assert_eq!(Error::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(Error::Checks { summary: "x".into(), trust: true }.exit_code(), EXIT_UNTRUSTED);
        assert_eq!(Error::Checks { summary: "x".into(), trust: false }.exit_code(), EXIT_FAILURE);
    }
}
