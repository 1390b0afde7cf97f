//! End-to-end tests of the `fluxrig` binary, one test binary for all (ripgrep's shape):
//! the tutorial flow as a user types it, the shared vectors through the CLI, and every
//! bad input the CLI must refuse cleanly. Each test checks the exit code, the last line of
//! standard error and the files it leaves, byte for byte.
//!
//! The bus tests (`bus`, over a real nats-server started by `natsd`) are built with the
//! `nats` feature: `cargo test --workspace --all-features`.
//!
//! Each test works in its own fresh folder (`util::Dir`). Set `FLUXRIG_TEST_RUNNER` (for
//! example `qemu-aarch64-static`) to run the binary under an emulator.

#[cfg(feature = "nats")]
mod natsd;
mod util;

mod bus;
mod catalog;
mod cli;
mod hostile;
mod keys;
mod listen;
mod rack;
mod robustness;
mod scenario;
mod service;
mod trust;
mod tutorial;
