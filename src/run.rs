//! The run loop: a [`Plan`] started as a core [`Rack`], fed by the producers of
//! [`crate::pump`], driven with this machine's clock, writing what leaves the rack.
//!
//! Contract:
//! - a wasm gear whose input has no wire reads standard input; a gear output with no wire
//!   writes standard output (JSON lines or a CBOR sequence, converted at this edge only:
//!   CBOR passes through as the bytes the last gear returned, checked);
//! - each gear's trust (cluster-signed, or unverified under `--insecure`) is logged once
//!   when the rack starts, with the number of module compiles (one per gear);
//! - every message that entered is counted in [`Stats`] once per fate: written, dropped by
//!   a gear, failed (by [`Blame`]), stopped by the hop limit or the queue limit;
//! - output is buffered and flushed whenever no message is waiting, so a slow producer's
//!   messages come out at once and a fast one's in large writes.
//!
//! Routing itself (hops, wires, limits) is the core's: see [`fluxrig_core::rack`].

use std::io::{BufWriter, Read, Write};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::limits::MAX_QUEUED_MESSAGES;
use fluxrig_core::message::Uuid;
use fluxrig_core::rack::Slot;
use fluxrig_core::verify::{sha256, Trust};
use fluxrig_core::{Blame, Delivery, Entry, Gear, MsgBytes, Rack, RackSink};

use crate::cli::Format;
use crate::clock;
use crate::error::{Error, Result};
use crate::json;
use crate::logger;
use crate::plan::{Plan, PlannedGear};
use crate::pump::{self, Event, Generator};

/// Derives a stable 16-byte id from a name (SHA-256 prefix), for hops and `src_id`.
pub fn id_of(text: &str) -> Uuid {
    let digest = sha256(text.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Counters reported when the rack stops: every message that entered has one fate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Messages that entered the rack (from standard input or generators).
    pub entered: u64,
    /// Messages written to standard output.
    pub written: u64,
    /// Messages a gear dropped.
    pub dropped: u64,
    /// Messages lost to a failure, by whose fault (indexed as [`Blame::ALL`]).
    pub failed: [u64; 5],
    /// Messages stopped by the hop limit.
    pub hop_limit: u64,
    /// Outputs refused because the router's queue was full.
    pub queue_full: u64,
}

impl Stats {
    fn fail(&mut self, blame: Blame) {
        if let Some(slot) = Blame::ALL.iter().position(|b| *b == blame).and_then(|i| self.failed.get_mut(i)) {
            *slot += 1;
        }
    }

    /// Returns the total of failures of every blame.
    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// Returns the one-line summary the rack logs when it stops.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "stopped: {} in, {} out, {} dropped by gears, {} failed",
            self.entered,
            self.written,
            self.dropped,
            self.failed_total()
        );
        let by_blame: Vec<String> = Blame::ALL
            .iter()
            .zip(self.failed)
            .filter(|(_, n)| *n > 0)
            .map(|(blame, n)| format!("{blame} {n}"))
            .collect();
        if !by_blame.is_empty() {
            text.push_str(&format!(" ({})", by_blame.join(", ")));
        }
        text.push_str(&format!(
            ", {} past the hop limit, {} refused by a full queue",
            self.hop_limit, self.queue_full
        ));
        text
    }
}

/// A started rack: the core router with its gears' names.
pub struct Rig {
    rack: Rack,
    names: Vec<String>,
    generators: Vec<Generator>,
}

impl Rig {
    /// Starts every gear of `plan` (running start functions) and wires them; logs each
    /// gear's trust once.
    pub fn start(plan: Plan) -> Result<Self> {
        let mut slots = Vec::with_capacity(plan.gears.len());
        let mut names = Vec::with_capacity(plan.gears.len());
        let mut generators = Vec::new();
        for (index, planned) in plan.gears.into_iter().enumerate() {
            let name = planned.name().to_string();
            let id = id_of(&name);
            let slot = match planned {
                PlannedGear::Wasm { compiled, config, .. } => {
                    let hash = compiled.hash();
                    match compiled.trust() {
                        Trust::ClusterSigned => logger::info(
                            &name,
                            &format!("module {hash}: cluster signature and hash verified"),
                        ),
                        Trust::Unverified => {
                            logger::warn(&name, &format!("module {hash}: UNVERIFIED, running anyway"))
                        }
                    }
                    let mut sink = |level, line: &str| logger::guest(level, &name, line);
                    let gear = Gear::new(*compiled, config, &mut sink)
                        .map_err(|source| Error::gear(name.clone(), source))?;
                    Slot::gear(gear, id, id_of(&format!("{name}.in")))
                }
                PlannedGear::Generate { count, interval_ms, payload, .. } => {
                    generators.push(Generator { index, src: id, count, interval_ms, payload });
                    Slot::source(id)
                }
            };
            slots.push(slot);
            names.push(name);
        }
        let gears = slots.iter().filter(|s| s.as_gear().is_some()).count();
        logger::info(
            "rack",
            &format!(
                "{gears} wasm gear(s) ready: {} module compile(s) on one engine",
                plan.engine.compile_count()
            ),
        );
        let rack = Rack::new(slots, &plan.wires, MAX_QUEUED_MESSAGES).map_err(Error::Rack)?;
        Ok(Self { rack, names, generators })
    }

    /// Returns the core rack.
    pub fn rack(&self) -> &Rack {
        &self.rack
    }

    /// Routes one message, stamping hops with the clock now.
    pub fn deliver(&mut self, entry: Entry, msg: MsgBytes, sink: &mut dyn RackSink) {
        self.rack.deliver(entry, msg, clock::unix_nanos(), sink);
    }
}

/// Writes what leaves the rack and counts every fate.
struct Output<'a> {
    names: &'a [String],
    format: Format,
    out: BufWriter<Box<dyn Write>>,
    closed: bool,
    stats: Stats,
}

impl Output<'_> {
    fn name(&self, gear: usize) -> &str {
        self.names.get(gear).map_or("rack", String::as_str)
    }

    fn write(&mut self, msg: &MsgBytes) {
        if self.closed {
            return;
        }
        let result = match self.format {
            Format::Json => writeln!(self.out, "{}", json::to_json(&msg.to_msg())),
            Format::Cbor => self.out.write_all(msg.as_bytes()),
        };
        match result {
            Ok(()) => self.stats.written += 1,
            Err(e) => self.close(&e),
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.close(&e);
        }
    }

    fn close(&mut self, e: &std::io::Error) {
        if !self.closed {
            logger::error("output", &format!("standard output closed ({e}); stopping"));
        }
        self.closed = true;
    }
}

impl RackSink for Output<'_> {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Output { msg, .. } => self.write(&msg),
            Delivery::Dropped { gear, id } => {
                self.stats.dropped += 1;
                let text = format!("dropped message {}", json::uuid_string(&id));
                logger::log(LogLevel::Debug, self.name(gear), &text);
            }
            Delivery::Failed { gear, id, error } => {
                self.stats.fail(error.blame());
                let text = format!("message {}: {error} ({} fault)", json::uuid_string(&id), error.blame());
                logger::error(self.name(gear), &text);
            }
            Delivery::HopLimit { gear, id } => {
                self.stats.hop_limit += 1;
                let text = format!(
                    "message {} dropped: it has passed {} gears (a wiring loop?)",
                    json::uuid_string(&id),
                    fluxrig_core::limits::MAX_HOPS
                );
                logger::warn(self.name(gear), &text);
            }
            Delivery::QueueFull { gear, id } => {
                self.stats.queue_full += 1;
                let text = format!(
                    "output {} dropped: more than {} messages queued (a fan-out loop?)",
                    json::uuid_string(&id),
                    MAX_QUEUED_MESSAGES
                );
                logger::warn(self.name(gear), &text);
            }
        }
    }

    fn log(&mut self, gear: usize, level: LogLevel, line: &str) {
        logger::guest(level, self.name(gear), line);
    }
}

/// Runs `plan` until every producer is done (or standard output closes), then returns
/// the counters.
pub fn run(
    plan: Plan,
    input: Format,
    output: Format,
    stdin: Box<dyn Read + Send>,
    stdout: Box<dyn Write>,
) -> Result<Stats> {
    let mut rig = Rig::start(plan)?;
    let (tx, rx) = mpsc::channel();
    let mut producers = 0;
    if !rig.rack().inputs().is_empty() {
        producers += 1;
        let tx = tx.clone();
        thread::spawn(move || match input {
            Format::Json => pump::json_lines(stdin, &tx),
            Format::Cbor => pump::cbor_sequence(stdin, &tx),
        });
    }
    for generator in std::mem::take(&mut rig.generators) {
        producers += 1;
        let tx = tx.clone();
        thread::spawn(move || generator.run(&tx));
    }
    drop(tx);
    let names = rig.names.clone();
    let mut out = Output {
        names: &names,
        format: output,
        out: BufWriter::new(stdout),
        closed: false,
        stats: Stats::default(),
    };
    while producers > 0 && !out.closed {
        let event = match rx.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Empty) => {
                out.flush(); // nothing waiting: let what is written go out now
                match rx.recv() {
                    Ok(event) => event,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match event {
            Event::Input(msg) => {
                out.stats.entered += 1;
                rig.deliver(Entry::Inputs, msg, &mut out);
            }
            Event::Generated(from, msg) => {
                out.stats.entered += 1;
                rig.deliver(Entry::From(from), msg, &mut out);
            }
            Event::BadInput(text) => {
                out.stats.fail(Blame::Input);
                logger::error("input", &text);
            }
            Event::Done => producers -= 1,
        }
    }
    out.flush();
    Ok(out.stats)
}
