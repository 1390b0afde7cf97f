//! What a gear can cost at worst, and admission of gears against a fixed heap arena.
//!
//! A gear's heap use is bounded by its configuration, not by its messages:
//!
//! | part | bound |
//! |---|---|
//! | linear memory | `memory_limit_pages` x 64 KiB |
//! | output copy | `min(max_output_bytes, memory)` |
//! | value stack | [`MAX_VALUE_STACK_BYTES`] |
//! | table | `max_table_elements` x [`TABLE_ELEMENT_BYTES`] |
//! | log lines of one call | [`MAX_LOG_LINES_PER_CALL`] x [`MAX_LOG_LINE_BYTES`] |
//! | engine, store, instance | [`ENGINE_BASE_BYTES`] |
//! | per defined function | [`BYTES_PER_FUNCTION`] |
//! | compiled code and module metadata | [`COMPILED_BYTES_PER_MODULE_BYTE`] x module size |
//! | types, imports, globals, exports, elements | [`METADATA_BYTES_PER_SECTION_BYTE`] x their sections' size |
//! | per data segment | [`BYTES_PER_DATA_SEGMENT`] |
//!
//! The last five are measured, not derived: `tests/budget.rs` loads gears of several
//! shapes (few or 5000 functions, short or 10 000-instruction bodies) and hostile ones
//! (60 000 types, 1 M element items, 1000 globals, 1000 data segments, 200 000 exports)
//! under a counting allocator, records the peak heap during load and messages, and fails
//! if any peak exceeds [`gear_worst_case_bytes`]. Measured on x86_64 with wasmi 2.0: 16 KB
//! base, about 260 B per function, up to 5.8 B per byte of code, up to 28 B per byte of
//! metadata, 120 B per data segment; the constants add 35-70 % margin (32-bit targets use
//! less). Counts that would make the host allocate without bound for a few bytes each
//! (globals, element and data segments, functions, tables) are capped when the module is
//! parsed ([`crate::limits::MAX_GLOBALS`] and the rest). The input message is the
//! caller's and is not counted.
//!
//! [`Arena`] adds gears up against a fixed capacity, so that a firmware with N KiB of heap
//! refuses a gear that would not fit before it runs, not in the middle of a message.

use core::fmt;

use crate::gear::GearConfig;
use crate::limits::{MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES, MAX_VALUE_STACK_BYTES, WASM_PAGE_BYTES};
use crate::section::Contents;

/// Heap used by one gear's engine, store, linker and instance apart from its module
/// (measured 16 KB).
pub const ENGINE_BASE_BYTES: usize = 32 * 1024;

/// Heap used per function the module defines (measured about 260 B).
pub const BYTES_PER_FUNCTION: usize = 384;

/// Heap used per byte of module for compiled code and metadata, at the peak during
/// validation and translation (measured up to 5.8 B).
pub const COMPILED_BYTES_PER_MODULE_BYTE: usize = 8;

/// Host bytes per table element (a function reference), rounded up.
pub const TABLE_ELEMENT_BYTES: usize = 16;

/// Heap used per byte of the type, import, global, export and element sections, on top of
/// [`COMPILED_BYTES_PER_MODULE_BYTE`]: the engine turns a 3-byte type or a 1-byte element
/// item into a host structure of 16-80 bytes (measured up to 28 B per section byte in all,
/// for 1 M element items and 60 000 distinct types).
pub const METADATA_BYTES_PER_SECTION_BYTE: usize = 40;

/// Heap used per data segment, on top of its bytes (measured 120 B for 100 000 one-byte
/// segments).
pub const BYTES_PER_DATA_SEGMENT: usize = 192;

/// Returns the worst-case heap, in bytes, of one gear running `module` with `config`.
/// A module whose sections cannot be read is priced as if every byte were a function, a
/// data segment and metadata.
pub fn gear_worst_case_bytes(module: &[u8], config: &GearConfig) -> usize {
    let all = Contents {
        functions: u32::try_from(module.len()).unwrap_or(u32::MAX),
        data_segments: u32::try_from(module.len()).unwrap_or(u32::MAX),
        metadata_bytes: module.len(),
        ..Contents::default()
    };
    let contents = crate::section::contents(module).unwrap_or(all);
    let functions = contents.functions as usize;
    let memory = config.memory_limit_pages as usize * WASM_PAGE_BYTES;
    let logs = MAX_LOG_LINES_PER_CALL * (MAX_LOG_LINE_BYTES + 32);
    memory
        .saturating_add(config.max_output_bytes.min(memory))
        .saturating_add(MAX_VALUE_STACK_BYTES)
        .saturating_add(config.max_table_elements as usize * TABLE_ELEMENT_BYTES)
        .saturating_add(logs)
        .saturating_add(ENGINE_BASE_BYTES)
        .saturating_add(functions.saturating_mul(BYTES_PER_FUNCTION))
        .saturating_add(module.len().saturating_mul(COMPILED_BYTES_PER_MODULE_BYTE))
        .saturating_add(contents.metadata_bytes.saturating_mul(METADATA_BYTES_PER_SECTION_BYTE))
        .saturating_add((contents.data_segments as usize).saturating_mul(BYTES_PER_DATA_SEGMENT))
}

/// A gear that does not fit in what is left of the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetError {
    /// Bytes left in the arena.
    pub limit: usize,
    /// Bytes the gear may need at worst.
    pub got: usize,
}

impl BudgetError {
    /// Returns whose fault the error is: [`crate::Blame::Config`] (the gears asked for
    /// more than the budget the operator set).
    pub fn blame(&self) -> crate::Blame {
        crate::Blame::Config
    }
}

impl core::error::Error for BudgetError {}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gear may need {} KiB at worst, only {} KiB of the memory budget is left; lower the \
             gear's memory_limit_pages or raise the memory budget",
            self.got.div_ceil(1024),
            self.limit / 1024
        )
    }
}

/// A fixed heap capacity that gears are admitted into, worst case first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arena {
    capacity: usize,
    committed: usize,
}

impl Arena {
    /// Makes an arena of `capacity` bytes with nothing admitted.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, committed: 0 }
    }

    /// Returns the bytes not yet promised to any gear.
    pub fn remaining(&self) -> usize {
        self.capacity.saturating_sub(self.committed)
    }

    /// Admits a gear running `module` with `config`, reserving its worst case, and
    /// returns that worst case.
    ///
    /// # Errors
    /// [`BudgetError`] if the worst case exceeds what is left; nothing is reserved then.
    pub fn admit(&mut self, module: &[u8], config: &GearConfig) -> Result<usize, BudgetError> {
        let need = gear_worst_case_bytes(module, config);
        if need > self.remaining() {
            return Err(BudgetError { limit: self.remaining(), got: need });
        }
        self.committed += need;
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::section::WASM_HEADER;

    fn small() -> GearConfig {
        GearConfig {
            memory_limit_pages: 1,
            max_output_bytes: 4096,
            max_table_elements: 64,
            ..GearConfig::default()
        }
    }

    #[test]
    fn admission_edge_is_exact() {
        let need = gear_worst_case_bytes(&WASM_HEADER, &small());
        let mut exact = Arena::new(need);
        assert_eq!(exact.admit(&WASM_HEADER, &small()), Ok(need));
        assert_eq!(exact.remaining(), 0);
        let mut short = Arena::new(need - 1);
        assert_eq!(short.admit(&WASM_HEADER, &small()), Err(BudgetError { limit: need - 1, got: need }));
        assert_eq!(short.remaining(), need - 1);
    }

    #[test]
    fn default_gear_does_not_fit_a_256_kib_arena_but_a_small_one_does() {
        let mut arena = Arena::new(256 * 1024);
        let err = arena.admit(&WASM_HEADER, &GearConfig::default()).unwrap_err();
        assert!(alloc::format!("{err}").contains("lower the gear's memory_limit_pages"));
        assert!(arena.admit(&WASM_HEADER, &small()).is_ok());
    }

    #[test]
    fn unreadable_modules_are_priced_per_byte_as_functions() {
        let junk = [0u8; 100];
        let priced = gear_worst_case_bytes(&junk, &small());
        assert_eq!(
            priced - gear_worst_case_bytes(&WASM_HEADER, &small()),
            100 * (BYTES_PER_FUNCTION + BYTES_PER_DATA_SEGMENT + METADATA_BYTES_PER_SECTION_BYTE)
                + 92 * COMPILED_BYTES_PER_MODULE_BYTE
        );
    }
}
