//! Whose fault an error is: the one question every core error answers.
//!
//! Contract: each error type of the core has a `blame()` that returns a [`Blame`], so a
//! caller can count failures by cause and choose its words (and exit code) without
//! matching every variant. Model: rustls's split between a peer's misbehaviour and API
//! misuse, Wasefire's `Space`.

use core::fmt;

/// Who has to act to fix an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Blame {
    /// The operator's configuration: a limit out of range, a bad key, a wrong entrypoint.
    Config,
    /// The module: malformed, unsigned, untrusted, or not of a gear's shape.
    Module,
    /// The running guest: a trap, running out of fuel, a bad pointer or output.
    Guest,
    /// A message given to the rack: malformed or over a limit.
    Input,
    /// The host itself: a resource the engine could not get.
    Host,
}

impl Blame {
    /// Every blame, in the order reports list them.
    pub const ALL: [Blame; 5] = [Self::Config, Self::Module, Self::Guest, Self::Input, Self::Host];

    /// Returns the lowercase word for this blame (`config`, `module`, `guest`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Module => "module",
            Self::Guest => "guest",
            Self::Input => "input",
            Self::Host => "host",
        }
    }
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
