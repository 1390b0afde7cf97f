//! The host/guest contract of a fluxrig Wasm gear: names, signatures, packing, log levels.
//!
//! Contract (`spec/fluxrig-compat.md` section 1): the guest exports `alloc` (or `malloc`)
//! `(i32) -> i32`, `free` `(i32, i32) -> ()`, an entrypoint (default `process`)
//! `(i32, i32) -> i64`, and its memory; it may import only `env.log(i32, i32, i32)`.
//! The entrypoint's i64 result, read as u64, packs the output pointer in the high 32 bits
//! and its length in the low 32 bits; length 0 means "drop the message".
//!
//! This module holds only constants and pure functions; [`crate::gear`] applies them.

/// Export the host calls to get an input buffer.
pub const ALLOC_EXPORT: &str = "alloc";
/// Fallback name for [`ALLOC_EXPORT`], as C toolchains name it.
pub const MALLOC_EXPORT: &str = "malloc";
/// Export the host calls to release a buffer.
pub const FREE_EXPORT: &str = "free";
/// Default entrypoint export, called once per message.
pub const DEFAULT_ENTRYPOINT: &str = "process";
/// Module of the one import a gear may have.
pub const LOG_IMPORT_MODULE: &str = "env";
/// Name of the one import a gear may have.
pub const LOG_IMPORT_NAME: &str = "log";

/// A Wasm value type that appears in the gear contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// A function signature of the contract, as data, with the text errors show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    /// Parameter types.
    pub params: &'static [AbiType],
    /// Result types.
    pub results: &'static [AbiType],
    /// How errors write it, e.g. `(i32) -> i32`.
    pub text: &'static str,
}

/// `alloc(len) -> ptr`.
pub const ALLOC_SIG: Sig = Sig { params: &[AbiType::I32], results: &[AbiType::I32], text: "(i32) -> i32" };
/// `free(ptr, len)`.
pub const FREE_SIG: Sig =
    Sig { params: &[AbiType::I32, AbiType::I32], results: &[], text: "(i32, i32) -> ()" };
/// `process(ptr, len) -> packed`.
pub const PROCESS_SIG: Sig =
    Sig { params: &[AbiType::I32, AbiType::I32], results: &[AbiType::I64], text: "(i32, i32) -> i64" };
/// `env.log(level, ptr, len)`.
pub const LOG_SIG: Sig =
    Sig { params: &[AbiType::I32, AbiType::I32, AbiType::I32], results: &[], text: "(i32, i32, i32) -> ()" };

/// What the entrypoint's packed result asks the host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Length 0: drop the message (the pointer is ignored).
    Drop,
    /// Output bytes at `ptr..ptr + len` in guest memory.
    Output {
        /// Guest address of the output.
        ptr: u32,
        /// Length of the output, never 0.
        len: u32,
    },
}

/// Unpacks the entrypoint's i64 result: high 32 bits pointer, low 32 bits length.
pub fn unpack_result(result: i64) -> Returned {
    let bits = result as u64;
    let ptr = (bits >> 32) as u32;
    let len = bits as u32;
    if len == 0 {
        Returned::Drop
    } else {
        Returned::Output { ptr, len }
    }
}

/// Packs a pointer and length the way a guest does (the inverse of [`unpack_result`]).
pub fn pack_result(ptr: u32, len: u32) -> i64 {
    ((u64::from(ptr) << 32) | u64::from(len)) as i64
}

/// Severity of a guest's `env.log` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Level 1.
    Debug,
    /// Level 2, and any value fluxrig does not know.
    Info,
    /// Level 3.
    Warn,
    /// Level 4.
    Error,
}

impl LogLevel {
    /// Maps a guest's level number as fluxrig does: 1 debug, 2 info, 3 warn, 4 error,
    /// anything else info.
    pub fn from_guest(level: i32) -> Self {
        match level {
            1 => Self::Debug,
            3 => Self::Warn,
            4 => Self::Error,
            _ => Self::Info,
        }
    }

    /// Returns the lowercase name (`debug`, `info`, `warn`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Checks that `ptr..ptr + len` lies inside a memory of `memory_len` bytes without
/// overflowing 32 bits, and returns it as a `usize` range.
pub fn guest_range(ptr: u32, len: u32, memory_len: usize) -> Option<core::ops::Range<usize>> {
    let end = ptr.checked_add(len)?;
    let (start, end) = (ptr as usize, end as usize);
    (end <= memory_len).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_zero_length_drops() {
        assert_eq!(unpack_result(pack_result(1024, 146)), Returned::Output { ptr: 1024, len: 146 });
        assert_eq!(
            unpack_result(pack_result(0xffff_ffff, 0xffff_ffff)),
            Returned::Output { ptr: 0xffff_ffff, len: 0xffff_ffff }
        );
        assert_eq!(unpack_result(pack_result(1234, 0)), Returned::Drop);
        assert_eq!(unpack_result(-1), Returned::Output { ptr: u32::MAX, len: u32::MAX });
    }

    #[test]
    fn log_levels_map_as_fluxrig() {
        let got: [LogLevel; 7] = [0, 1, 2, 3, 4, 5, -1].map(LogLevel::from_guest);
        use LogLevel::*;
        assert_eq!(got, [Info, Debug, Info, Warn, Error, Info, Info]);
    }

    #[test]
    fn guest_range_edges() {
        assert_eq!(guest_range(0, 65536, 65536), Some(0..65536));
        assert_eq!(guest_range(1, 65536, 65536), None);
        assert_eq!(guest_range(u32::MAX, 1, usize::MAX), None);
        assert_eq!(guest_range(65536, 0, 65536), Some(65536..65536));
    }
}
