//! The `fluxrig` binary's library: the std side of fluxrig-edge (files, keys, catalog,
//! scenarios, clock, threads, the words a person reads) over the `no_std` core
//! `fluxrig-core`. `main.rs` only parses, runs and prints an error once; the modules are
//! public so that fuzz targets and tests can reach the parsers of untrusted input.
//!
//! The path of a command: [`cli`] (raw arguments) → [`commands`] → [`plan`] (scenario +
//! catalog + keys, verified and compiled once) → [`run`] (the loop over the core's router,
//! fed through the bounded [`queue`] by [`pump`] and [`listen`], reporting [`metrics`]).
#![forbid(unsafe_code)]

pub mod author;
pub mod bus;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod error;
pub mod files;
pub mod json;
pub mod keys;
pub mod listen;
pub mod logger;
pub mod metrics;
pub mod plan;
pub mod pump;
pub mod queue;
pub mod run;
pub mod scenario;
