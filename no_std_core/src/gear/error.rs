//! Why a gear could not be compiled, instantiated or could not process a message.
//!
//! Contract: [`GearError`] names the value, limit or export involved, holds no heap data
//! (names are cut to [`Name`]'s capacity on a character boundary) and answers
//! [`GearError::blame`] and [`GearError::rebuilds_instance`].

use core::fmt;
use core::fmt::Write as _;

use wasmi::errors::ErrorKind;
use wasmi::{Error as WasmiError, TrapCode};

use crate::blame::Blame;
use crate::message::MessageError;

/// A name from a module (an import or export), cut to 48 bytes so errors stay small.
pub type Name = heapless::String<48>;

/// Detail text from the engine, cut to 96 bytes.
pub type Detail = heapless::String<96>;

/// Writes into a bounded string and stops at the first character that does not fit, so
/// the result is always cut on a character boundary.
struct Bounded<'a, const N: usize>(&'a mut heapless::String<N>);

impl<const N: usize> fmt::Write for Bounded<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.0.push(c).map_err(|_| fmt::Error)?;
        }
        Ok(())
    }
}

/// Cuts `text` to at most `N` bytes, on a character boundary.
pub(crate) fn cut<const N: usize>(text: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    let _ = Bounded(&mut out).write_str(text);
    out
}

/// Formats `value` into at most `N` bytes, on a character boundary.
pub(crate) fn cut_display<const N: usize>(value: &dyn fmt::Display) -> heapless::String<N> {
    let mut out = heapless::String::new();
    let _ = write!(Bounded(&mut out), "{value}");
    out
}

/// The engine's words for an error, cut to [`Detail`].
pub(crate) fn detail_of(e: &dyn fmt::Display) -> Detail {
    cut_display(e)
}

/// A guest trap, in our own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call used up its fuel.
    OutOfFuel,
    /// `unreachable` executed (a Zig or Rust panic in the guest).
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// Call stack or value stack exhausted (deep recursion).
    StackOverflow,
    /// Integer division by zero or overflow, or a bad float-to-int conversion.
    Arithmetic,
    /// A bad indirect call (table bounds, null entry, type mismatch).
    IndirectCall,
    /// A function body the engine could not translate at its first call (valid wasm over
    /// one of wasmi's own limits, such as 30 000 locals; see the `gear::engine` module doc).
    Uncompilable,
    /// Any other trap, including a host resource failure.
    Other,
}

impl Fault {
    pub(crate) fn of(e: &WasmiError) -> Self {
        match e.as_trap_code() {
            Some(TrapCode::OutOfFuel) => Self::OutOfFuel,
            Some(TrapCode::UnreachableCodeReached) => Self::Unreachable,
            Some(TrapCode::MemoryOutOfBounds) => Self::MemoryOutOfBounds,
            Some(TrapCode::StackOverflow) => Self::StackOverflow,
            Some(
                TrapCode::IntegerDivisionByZero
                | TrapCode::IntegerOverflow
                | TrapCode::BadConversionToInteger,
            ) => Self::Arithmetic,
            Some(TrapCode::TableOutOfBounds | TrapCode::IndirectCallToNull | TrapCode::BadSignature) => {
                Self::IndirectCall
            }
            _ => match e.kind() {
                ErrorKind::Wasm(_)
                | ErrorKind::Read(_)
                | ErrorKind::Translation(_)
                | ErrorKind::Ir(_)
                | ErrorKind::UserLimits(_)
                | ErrorKind::ImplementationLimits(_) => Self::Uncompilable,
                _ => Self::Other,
            },
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfFuel => "ran out of fuel",
            Self::Unreachable => "trapped: unreachable executed (guest panic)",
            Self::MemoryOutOfBounds => "trapped: memory access out of bounds",
            Self::StackOverflow => "trapped: stack overflow",
            Self::Arithmetic => "trapped: arithmetic error",
            Self::IndirectCall => "trapped: bad indirect call",
            Self::Uncompilable => "called a function the engine cannot compile",
            Self::Other => "trapped",
        })
    }
}

/// Why a gear could not be loaded or could not process a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GearError {
    /// A configuration value is zero or over its ceiling.
    BadConfig {
        /// The setting, by its scenario name.
        what: &'static str,
        /// Its ceiling.
        limit: u64,
        /// What was asked.
        got: u64,
    },
    /// The engine refused the module (not valid Wasm, or a feature not supported).
    InvalidModule {
        /// The engine's words.
        detail: Detail,
    },
    /// An import other than `env.log`.
    ForbiddenImport {
        /// `module.name` of the import, cut to 48 bytes.
        import: Name,
    },
    /// `env.log` imported with a type other than `(i32, i32, i32) -> ()`.
    WrongLogImportType,
    /// A required export is missing.
    MissingExport {
        /// The export's name (`alloc` stands for `alloc` or `malloc`).
        export: Name,
    },
    /// A required export has the wrong kind or type.
    WrongExportType {
        /// The export's name.
        export: Name,
        /// The type it must have.
        expected: &'static str,
    },
    /// The module exports no linear memory, so the host cannot pass messages.
    NoMemoryExport,
    /// The module's initial memory exceeds `memory_limit_pages`.
    InitialMemoryTooLarge {
        /// `memory_limit_pages`.
        limit: u32,
        /// The initial pages the module declares.
        got: u64,
    },
    /// Instantiation failed (the start function trapped or ran out of fuel).
    StartFailed {
        /// What happened.
        fault: Fault,
    },
    /// Instantiation failed for a reason other than a trap (a resource limit).
    Instantiation {
        /// The engine's words.
        detail: Detail,
    },
    /// A guest call trapped or ran out of fuel; the instance will be rebuilt.
    Fault {
        /// The export that was called.
        call: Name,
        /// What happened.
        fault: Fault,
    },
    /// The input message is longer than the gear accepts.
    InputTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The message size.
        got: usize,
    },
    /// `alloc` returned 0 (the guest is out of memory).
    AllocReturnedNull {
        /// Bytes asked for.
        len: u32,
    },
    /// `alloc` returned a range outside memory or past 4 GiB; the instance will be rebuilt.
    AllocOutOfRange {
        /// Returned pointer.
        ptr: u32,
        /// Bytes asked for.
        len: u32,
        /// Memory size in bytes.
        memory: usize,
    },
    /// The entrypoint returned a range outside memory or past 4 GiB.
    OutputOutOfRange {
        /// Returned pointer.
        ptr: u32,
        /// Returned length.
        len: u32,
        /// Memory size in bytes.
        memory: usize,
    },
    /// The entrypoint returned more than `max_output_bytes`.
    OutputTooLarge {
        /// `max_output_bytes`.
        limit: usize,
        /// Returned length.
        got: usize,
    },
    /// The output is not a valid fluxMsg.
    InvalidOutput(MessageError),
}

impl GearError {
    pub(crate) fn fault(call: &str, fault: Fault) -> Self {
        Self::Fault { call: cut(call), fault }
    }

    /// Returns `true` if the error leaves the guest's state unknown, so the instance is
    /// rebuilt before the next message.
    pub fn rebuilds_instance(&self) -> bool {
        matches!(
            self,
            Self::Fault { .. }
                | Self::AllocReturnedNull { .. }
                | Self::AllocOutOfRange { .. }
                | Self::StartFailed { .. }
        )
    }

    /// Returns whose fault the error is: a bad setting ([`Blame::Config`]), a module that
    /// is not a gear ([`Blame::Module`]), a misbehaving guest ([`Blame::Guest`]), a
    /// message too large ([`Blame::Input`]) or the engine's resources ([`Blame::Host`]).
    pub fn blame(&self) -> Blame {
        match self {
            Self::BadConfig { .. } | Self::InitialMemoryTooLarge { .. } => Blame::Config,
            Self::InvalidModule { .. }
            | Self::ForbiddenImport { .. }
            | Self::WrongLogImportType
            | Self::MissingExport { .. }
            | Self::WrongExportType { .. }
            | Self::NoMemoryExport => Blame::Module,
            Self::StartFailed { .. }
            | Self::Fault { .. }
            | Self::AllocReturnedNull { .. }
            | Self::AllocOutOfRange { .. }
            | Self::OutputOutOfRange { .. }
            | Self::OutputTooLarge { .. }
            | Self::InvalidOutput(_) => Blame::Guest,
            Self::InputTooLarge { .. } => Blame::Input,
            Self::Instantiation { .. } => Blame::Host,
        }
    }
}

impl fmt::Display for GearError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig { what, limit, got } => {
                write!(f, "{what} is {got}, it must be between 1 and {limit}")
            }
            Self::InvalidModule { detail } => write!(f, "invalid module: {detail}"),
            Self::ForbiddenImport { import } => write!(
                f,
                "module imports {:?}; a gear may import only env.log(i32, i32, i32)",
                import.as_str()
            ),
            Self::WrongLogImportType => {
                f.write_str("module imports env.log with a type other than (i32, i32, i32) -> ()")
            }
            Self::MissingExport { export } => write!(f, "module does not export {:?}", export.as_str()),
            Self::WrongExportType { export, expected } => {
                write!(f, "export {:?} must be a function {expected}", export.as_str())
            }
            Self::NoMemoryExport => f.write_str("module does not export its linear memory"),
            Self::InitialMemoryTooLarge { limit, got } => write!(
                f,
                "module wants {got} pages ({} KiB) of initial memory, but memory_limit_pages is \
                 {limit}; raise memory_limit_pages to {got} or build the module with less \
                 initial memory (Zig: --stack 65536; Rust/C: -C link-arg=-zstack-size=65536)",
                got.saturating_mul(64)
            ),
            Self::StartFailed { fault } => write!(f, "start function {fault}"),
            Self::Instantiation { detail } => write!(f, "cannot instantiate module: {detail}"),
            Self::Fault { call, fault } => write!(f, "guest {:?} {fault}", call.as_str()),
            Self::InputTooLarge { limit, got } => {
                write!(f, "message is {got} bytes, limit is {limit} bytes")
            }
            Self::AllocReturnedNull { len } => {
                write!(f, "guest alloc({len}) returned 0 (guest out of memory)")
            }
            Self::AllocOutOfRange { ptr, len, memory } => {
                write!(f, "guest alloc({len}) returned {ptr}, outside its {memory}-byte memory")
            }
            Self::OutputOutOfRange { ptr, len, memory } => {
                write!(f, "guest returned {len} bytes at {ptr}, outside its {memory}-byte memory")
            }
            Self::OutputTooLarge { limit, got } => {
                write!(f, "guest returned {got} bytes, limit is {limit} bytes")
            }
            Self::InvalidOutput(e) => write!(f, "guest output is not a fluxMsg: {e}"),
        }
    }
}

impl core::error::Error for GearError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::InvalidOutput(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
