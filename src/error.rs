//! The binary's one error type: a message with its context, printed once by `main`, and
//! the exit code it maps to (documented in the README).

use std::fmt;
use std::path::Path;

/// Exit code for a refused or failed operation: bad input, I/O failure, gear error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that does not parse.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a trust failure: missing, untrusted or wrong signature, hash mismatch.
pub const EXIT_UNTRUSTED: u8 = 3;

/// An error with the context a user needs to fix it.
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failed operation or bad input.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: EXIT_FAILURE }
    }

    /// A trust failure (exit code 3).
    pub fn untrusted(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: EXIT_UNTRUSTED }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, action: &str, e: &std::io::Error) -> Self {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        Self::new(format!("cannot {action} {}: {reason}", path.display()))
    }

    /// Prefixes the message with `context: `.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The binary's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
