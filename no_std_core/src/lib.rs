//! fluxrig-core: verified, limited execution of fluxrig Wasm gears, for `no_std` + `alloc`.
//!
//! Layers, each usable alone, bottom up:
//! - [`section`]: custom sections of a module over plain bytes;
//! - [`verify`]: vendor signatures, cluster countersignatures, catalog hashes, and the
//!   [`verify::VerifiedModule`] type that is the only way into a gear;
//! - [`message`]: fluxMsg and Hop CBOR, byte-compatible with fluxrig;
//! - [`abi`]: the host/guest contract (names, signatures, result packing, log levels);
//! - [`gear`]: one loaded gear on the wasmi interpreter, with its memory limit, fuel,
//!   shape checks and the per-message call sequence;
//! - [`budget`]: what a gear can cost at worst, and admission against a fixed arena;
//! - [`limits`]: every cap and default, with its unit and reason.
//!
//! Guarantees: no `unsafe`, no I/O, no clock, no global allocator (the final binary or
//! firmware picks one). Untrusted bytes (modules, keys, messages, guest results) give an
//! error or an outcome, never a panic. wasmi types do not appear in the public API.
//!
//! Features priced: there are none of our own. wasmi is built with `validate` (Wasm
//! validation; required for untrusted modules) and `portable-dispatch` (a plain `match`
//! loop: wasmi's default tail-call dispatch was seen to segfault on riscv64 at opt-level
//! "z" and to use 4 MB of stack on riscv32, the portable loop 7-9 KB on every target).
//!
//! Memory budget of one gear, at worst (see [`budget`] for the measured figures):
//!
//! | part | bound |
//! |---|---|
//! | linear memory | `memory_limit_pages` x 64 KiB |
//! | value stack | [`limits::MAX_VALUE_STACK_BYTES`] |
//! | tables | [`limits::MAX_TABLE_ELEMENTS`] x 16 B |
//! | engine, store, instance, compiled code | measured: base + factor x module size |
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

extern crate alloc;

pub mod abi;
pub mod budget;
pub mod gear;
pub mod limits;
pub mod message;
pub mod section;
pub mod verify;
