//! fluxrig-core: verified, limited execution of fluxrig Wasm gears, for `no_std` + `alloc`.
//!
//! Layers, each usable alone, bottom up:
//! - [`section`]: custom sections of a module over plain bytes;
//! - [`verify`]: vendor signatures, cluster countersignatures, catalog hashes, and the
//!   [`VerifiedModule`] type that is the only way into a gear;
//! - [`message`]: fluxMsg and Hop CBOR, byte-compatible with fluxrig, and [`MsgBytes`],
//!   the checked byte view that travels between gears;
//! - [`abi`]: the host/guest contract (names, signatures, result packing, log levels);
//! - [`gear`]: the shared [`GearEngine`], a module [`Compiled`] once, and a running
//!   [`Gear`] with its memory limit, fuel and per-message call sequence;
//! - [`budget`]: what a gear can cost at worst, and admission against a fixed arena;
//! - [`rack`]: the router: gears, wires, hops and queue limits, with time passed in;
//! - [`limits`]: every cap and default, with its unit and reason;
//! - [`Blame`]: whose fault an error is, answered by every error type.
//!
//! The path of a module: bytes → [`verify::verify_cluster`] → [`VerifiedModule`] →
//! [`budget::Arena::admit`] → [`Compiled::new`] (once, on the rack's engine) →
//! [`Gear::new`] → [`rack::Slot`]. The path of a message: bytes → [`MsgBytes::check`] →
//! [`Rack::deliver`] → hop appended in place → [`Gear::process`] → [`MsgBytes::check`] →
//! next gear, with no decode between gears.
//!
//! Guarantees: no `unsafe`, no I/O, no clock, no global allocator (the final binary or
//! firmware picks one). Untrusted bytes (modules, keys, messages, guest results) give an
//! error or an outcome, never a panic: `unwrap`, `expect`, `panic!`, indexing and string
//! slicing are denied by lints. wasmi types do not appear in the public API.
//!
//! Features priced: `decode-counter` (tests only: counts full fluxMsg decodes). wasmi is
//! built with `validate` (Wasm validation; required for untrusted modules) and a dispatch
//! chosen per target in `Cargo.toml`: tail calls (about 4x faster on compute-bound gears)
//! on x86_64, aarch64, armv7 Linux and riscv64, the portable `match` loop on MIPS and the
//! microcontrollers (tail calls used 4 MB of stack on riscv32, the loop 7-9 KB).
//!
//! The memory budget of one gear, at worst, is the table in [`budget`].
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice
    )
)]

extern crate alloc;

pub mod abi;
mod blame;
pub mod budget;
pub mod gear;
pub mod limits;
pub mod message;
pub mod rack;
pub mod section;
pub mod verify;

pub use blame::Blame;
pub use gear::{Compiled, Gear, GearConfig, GearEngine, GearError};
pub use message::{FluxMsg, MsgBytes};
pub use rack::{Delivery, Entry, Rack, RackSink};
pub use verify::{CatalogHash, PublicKey, SigningKey, Trust, VerifiedModule, VerifyError};
