//! Every cap and default of the core, with its unit and its reason.
//!
//! A limit named `MAX_*` is a hard ceiling: one past it fails with an error that carries
//! `{ limit, got }`. A limit named `DEFAULT_*` is what a gear gets when its scenario or
//! caller says nothing; the matching `MAX_*` bounds what they may ask for.

/// Size of one WebAssembly linear-memory page, in bytes (fixed by the Wasm spec).
pub const WASM_PAGE_BYTES: usize = 65_536;

/// Default `memory_limit_pages` of a gear: 16 pages = 1 MiB, as in fluxrig.
pub const DEFAULT_MEMORY_LIMIT_PAGES: u32 = 16;

/// Largest `memory_limit_pages` a scenario may ask for: 1024 pages = 64 MiB.
///
/// Reason: a gear is a message filter on a gateway with 64-512 MiB of RAM; a gear that
/// wants more than this is a mistake in the scenario, not a workload to host.
pub const MAX_MEMORY_LIMIT_PAGES: u32 = 1024;

/// Default fuel for one `process` call (about one unit per Wasm instruction).
///
/// Reason: a pass-through of a 16 KiB message by a Zig gear costs under 100 000; ten
/// million leaves room for real filters and stops an infinite loop within about 0.1 s on
/// a Cortex-A53.
pub const DEFAULT_FUEL_PER_MESSAGE: u64 = 10_000_000;

/// Default fuel for one `alloc` or `free` call.
///
/// Reason: allocators are short; a guest allocator that needs more than this is stuck.
pub const DEFAULT_FUEL_PER_ALLOC: u64 = 1_000_000;

/// Default fuel for the start function and other work done while a gear is instantiated.
pub const DEFAULT_FUEL_FOR_START: u64 = 10_000_000;

/// Largest fuel budget any single guest call may be given.
///
/// Reason: keeps a typo in a scenario (an extra few zeros) from turning fuel off in practice.
pub const MAX_FUEL_PER_CALL: u64 = 10_000_000_000;

/// Largest module, in bytes, the core will parse, verify or load: 8 MiB.
///
/// Reason: gears are filters; a Zig gear is 5-50 KiB, a Rust one 50-500 KiB.
pub const MAX_MODULE_BYTES: usize = 8 * 1024 * 1024;

/// Largest payload of a fluxMsg, in bytes: `raw` + `meta` keys and values + the text and
/// byte strings inside `data`. 2 MiB, as fluxrig enforces.
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;

/// Largest encoded fluxMsg, in bytes, accepted from a guest or a caller: 4 MiB.
///
/// Reason: room for a full 2 MiB payload plus ids, keys, 64 hops and CBOR heads, while
/// refusing to copy an arbitrary guest range out of memory.
pub const MAX_ENCODED_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest size of a decoded fluxMsg in memory, in bytes: the same as the encoded limit,
/// counting every string's bytes and `size_of` every value, map entry and hop.
///
/// Reason: 4 MiB of CBOR made of one-byte items decodes to about 64 bytes an item; without
/// this bound a 4 MiB message cost 275 MiB to decode. A message within
/// [`MAX_PAYLOAD_BYTES`] and a few thousand data items stays well under it.
pub const MAX_DECODED_MESSAGE_BYTES: usize = MAX_ENCODED_MESSAGE_BYTES;

/// Largest number of hops in a fluxMsg `path`: 64, as fluxrig enforces.
pub const MAX_HOPS: usize = 64;

/// Deepest nesting of arrays and maps inside `data`: 32 levels.
///
/// Reason: decoding is recursive; this bounds its stack use on a microcontroller
/// (about 200 bytes a level).
pub const MAX_DATA_DEPTH: usize = 32;

/// Longest `env.log` line kept, in bytes; longer lines are cut at this length.
///
/// Reason: a log line is for a person; 512 bytes holds any sensible line and keeps the
/// worst-case log buffer of a call at 17 KiB.
pub const MAX_LOG_LINE_BYTES: usize = 512;

/// Most `env.log` lines kept from one guest call; the rest are counted and reported in
/// one summary line, so a log flood costs a bounded amount of memory and output.
pub const MAX_LOG_LINES_PER_CALL: usize = 32;

/// Most elements a gear's tables may hold in total.
///
/// Reason: tables are host memory outside `memory_limit_pages`; compilers emit one entry
/// per address-taken function, a few hundred at most in a filter.
pub const MAX_TABLE_ELEMENTS: u32 = 10_000;

/// Most globals a module may define: 1000, checked as the module is parsed (wasmi's
/// `EnforcedLimits::strict`, as are the five limits below).
///
/// Reason: a global is 5 bytes of module and about 80 bytes of host memory (1 M globals
/// in a 5 MB module cost 83 MB); compilers emit a stack pointer and a few constants.
pub const MAX_GLOBALS: u32 = 1000;

/// Most functions a module may define: 10 000. Reason: each costs the host about 260
/// bytes before it runs ([`crate::budget::BYTES_PER_FUNCTION`]); a 500 KiB Rust gear has
/// about 2000.
pub const MAX_FUNCTIONS: u32 = 10_000;

/// Least average size of a function body, in bytes, once the bodies add up to 1000 bytes
/// or more: 40. Reason: thousands of empty functions cost the host far more than their
/// bytes (lazy translation keeps per-function state); real code averages 100-2500.
pub const MIN_AVG_BYTES_PER_FUNCTION: u32 = 40;

/// Most element segments a module may have: 1000. Reason: each costs the host about 150
/// bytes for 6 bytes of module (100 000 segments: 15.6 MB from a 600 KB module).
pub const MAX_ELEMENT_SEGMENTS: u32 = 1000;

/// Most data segments a module may have: 1000. Reason: each costs the host about 120
/// bytes for 3 bytes of module; compilers emit a few (`.rodata`, `.data`).
pub const MAX_DATA_SEGMENTS: u32 = 1000;

/// Most parameters, and most results, of a function type: 32. Reason: the gear contract
/// needs 3; a long signature costs value stack on every call.
pub const MAX_FUNCTION_PARAMS: usize = 32;

/// Largest height of the interpreter's value stack for one gear, in bytes: 32 KiB.
///
/// Reason: wasmi's default is 1 MB, which a 256 KiB microcontroller arena cannot hold;
/// gears are shallow filters (the tutorial's Zig gear stays under 1 KiB).
pub const MAX_VALUE_STACK_BYTES: usize = 32 * 1024;

/// Deepest guest call recursion: 128 frames.
pub const MAX_RECURSION_DEPTH: usize = 128;

/// Most messages waiting inside the router during one delivery (the copies a fan-out
/// makes). Past it an output is refused with [`crate::rack::Delivery::QueueFull`]: a
/// fan-out loop in the wiring would otherwise grow without bound. Each waiting message
/// is at most [`MAX_ENCODED_MESSAGE_BYTES`], so this caps the router's memory.
pub const MAX_QUEUED_MESSAGES: usize = 10_000;
