//! The run loop: a [`Plan`] started as a core [`Rack`] ([`Rig`]), fed through the bounded
//! [`Queue`] by the producers of [`crate::pump`] and [`crate::listen`], driven with this
//! machine's clock, writing what leaves the rack; and the signals that stop and reload it.
//!
//! Contract:
//! - a wasm gear whose input has no wire reads the rack's inputs (standard input, sockets);
//!   a gear output with no wire writes the output (standard output or `--output FILE`;
//!   JSON lines or a CBOR sequence, converted at this edge only: CBOR passes through as
//!   the bytes the last gear returned, checked);
//! - each gear's trust (cluster-signed, or unverified under `--insecure`) is logged once
//!   when its rack starts, with the number of module compiles (one per gear);
//! - every message that entered is counted in [`Stats`] once per fate: written, dropped by
//!   a gear, failed (by [`Blame`]), stopped by the hop limit or the queue limit (a fan-out
//!   gives one fate per copy);
//! - output is buffered and flushed whenever no message is waiting, and when the buffer
//!   fills: a trickle comes out at once, a flood in large writes;
//! - SIGINT or SIGTERM: stop reading, finish every message already read, flush, return
//!   the counters. A second one: flush what is written and exit at once with
//!   [`EXIT_ABORTED`], saying how many messages were abandoned;
//! - SIGHUP: re-read the scenario, verify, admit, compile and start the whole new plan on
//!   the signal thread while messages flow, then queue the switch behind the messages
//!   already read (they finish on the old plan); a plan that fails changes nothing and is
//!   logged with the reason.
//!
//! - fleet mode ([`Settings::bus`], [`crate::bus::Link`]): bus messages enter from their
//!   source slots like generated ones; an output of a gear wired to another rack is handed
//!   to the bus with the fate of the bus message it came from (ack or nak), after the
//!   output buffer is flushed if it also wrote there.
//!
//! Routing itself (hops, wires, limits) is the core's: see [`fluxrig_core::rack`].

use std::fs::OpenOptions;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use fluxrig_core::abi::LogLevel;
use fluxrig_core::limits::MAX_QUEUED_MESSAGES;
use fluxrig_core::message::Uuid;
use fluxrig_core::rack::Slot;
use fluxrig_core::verify::{sha256, Trust};
use fluxrig_core::{Blame, Delivery, Entry, Gear, MsgBytes, Rack, RackSink};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::cli::Format;
use crate::clock;
use crate::error::{Error, Result, EXIT_ABORTED};
use crate::json;
use crate::listen::{Listen, ListenLimits, Listeners};
use crate::logger;
use crate::metrics::{self, GearSnapshot, Snapshot};
use crate::plan::{Plan, PlannedGear};
use crate::pump::{self, Generator, Input, MAX_STDIN_ITEM_BYTES};
use crate::queue::{Item, Origin, Queue, QueueLimits, Taken, MAX_TAKE_ITEMS};

/// Size of the output buffer: 64 KiB. Output is flushed when it fills and whenever the
/// rack is idle.
pub const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

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
    /// Messages that entered the rack (from inputs or generators), and bad input items.
    pub entered: u64,
    /// Messages written to the output.
    pub written: u64,
    /// Messages a gear dropped.
    pub dropped: u64,
    /// Messages lost to a failure, by whose fault (indexed as [`Blame::ALL`]).
    pub failed: [u64; 5],
    /// Messages stopped by the hop limit.
    pub hop_limit: u64,
    /// Outputs refused because the router's queue was full.
    pub queue_full: u64,
    /// Bytes of the messages that entered (encoded CBOR).
    pub bytes_in: u64,
    /// Bytes written to the output.
    pub bytes_out: u64,
    /// Reloads applied.
    pub reloads: u64,
    /// Reloads refused (the old plan kept running).
    pub reload_failures: u64,
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

    /// Whether some message was lost to a failure or a limit (what `run` exits
    /// [`crate::error::EXIT_MESSAGES_FAILED`] for).
    pub fn any_lost(&self) -> bool {
        self.failed_total() + self.hop_limit + self.queue_full > 0
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

/// A started rack: the core router with its gears' names and its generators (which the
/// run loop starts).
pub struct Rig {
    rack: Rack,
    names: Vec<String>,
    generators: Vec<Generator>,
    scenario: (String, String),
}

impl Rig {
    /// Starts every gear of `plan` (running start functions) and wires them; logs each
    /// gear's trust once.
    pub fn start(plan: Plan) -> Result<Self> {
        let scenario = (plan.name.clone(), plan.version.clone());
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
                PlannedGear::BusInput { .. } => Slot::source(id),
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
        Ok(Self { rack, names, generators, scenario })
    }

    /// Returns the core rack.
    pub fn rack(&self) -> &Rack {
        &self.rack
    }

    /// Routes one message, stamping hops with the clock now.
    pub fn deliver(&mut self, entry: Entry, msg: MsgBytes, sink: &mut dyn RackSink) {
        self.rack.deliver(entry, msg, clock::unix_nanos(), sink);
    }

    fn snapshot_gears(&self) -> Vec<GearSnapshot> {
        self.rack
            .slots()
            .iter()
            .zip(&self.names)
            .map(|(slot, name)| GearSnapshot {
                name: name.clone(),
                stats: *slot.stats(),
                wasm: slot.as_gear().is_some(),
            })
            .collect()
    }
}

/// How a rack runs: its inputs, output, limits and reports.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Format of every input.
    pub input_format: Format,
    /// Format of the output.
    pub output_format: Format,
    /// Limits of the input queue.
    pub queue: QueueLimits,
    /// Whether standard input is an input.
    pub stdin: bool,
    /// Sockets to accept inputs on.
    pub listen: Vec<Listen>,
    /// Limits of socket inputs.
    pub listen_limits: ListenLimits,
    /// File to append the output to, instead of standard output.
    pub output: Option<PathBuf>,
    /// File to write metrics to, atomically, every `metrics_interval`.
    pub metrics_file: Option<PathBuf>,
    /// Time between two writes of `metrics_file`.
    pub metrics_interval: Duration,
    /// File to write the final statistics to as JSON (`-`: standard error).
    pub stats_json: Option<PathBuf>,
    /// Wires to and from other racks over the bus (fleet mode).
    pub bus: Option<Arc<crate::bus::Link>>,
}

/// Makes a new plan for a reload (SIGHUP): re-reads the scenario, verifies, admits and
/// compiles it.
pub type Reload = Box<dyn Fn() -> Result<Plan> + Send>;

/// The output: a buffered writer shared with the signal thread, which flushes it before
/// an abort.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Where it goes, for log lines (`standard output`, a path).
    name: String,
}

/// Writes what leaves the rack and counts every fate.
struct Output {
    writer: Arc<Mutex<Writer>>,
    format: Format,
    closed: bool,
    stats: Stats,
    queue: Arc<Queue>,
    epoch: Instant,
    /// Each gear's `env.log` budget, by slot.
    guest_logs: Vec<LogBudget>,
    /// The bus, and what the message being routed gives it (see [`finish_bus`]).
    bus: Option<Arc<crate::bus::Link>>,
    bus_work: crate::bus::Finished,
    bus_failed: bool,
    /// Bus messages whose outputs are in the output buffer: acked once it is flushed.
    bus_unflushed: Vec<crate::bus::Finished>,
    /// The JSON line being written, kept between messages.
    line: Vec<u8>,
}

/// Most `env.log` lines one gear may write in a second; the rest are counted and reported
/// in one line when the next second starts.
///
/// Reason: the core caps a call at 32 lines of 512 bytes, but a gear called 100 000 times a
/// second could still fill a gateway's journal; 100 lines a second is more than a person
/// reads and keeps a flood at about 50 KB/s.
pub const MAX_GUEST_LOG_LINES_PER_SECOND: u32 = 100;

/// One gear's `env.log` lines in the current second.
#[derive(Debug, Clone, Copy)]
struct LogBudget {
    second_started: Instant,
    lines: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Reports what is still suppressed (when the rack stops or its plan is replaced).
    fn report(&mut self, gear: &str) {
        if self.suppressed > 0 {
            let text = format!(
                "{} log line(s) suppressed: more than {MAX_GUEST_LOG_LINES_PER_SECOND} a second",
                self.suppressed
            );
            logger::warn(gear, &text);
            self.suppressed = 0;
        }
    }

    fn new() -> Self {
        Self { second_started: Instant::now(), lines: 0, suppressed: 0 }
    }

    /// Whether one more line may be written now; when a new second starts, first reports
    /// what the last one suppressed (under `gear`).
    fn admit(&mut self, gear: &str) -> bool {
        if self.second_started.elapsed() >= Duration::from_secs(1) {
            self.report(gear);
            *self = Self::new();
        }
        if self.lines < MAX_GUEST_LOG_LINES_PER_SECOND {
            self.lines += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Output {
    fn write(&mut self, msg: &MsgBytes) {
        if self.closed {
            self.stats.fail(Blame::Host);
            return;
        }
        let mut writer = lock(&self.writer);
        let (result, bytes) = match self.format {
            Format::Json => {
                // One buffer for every line: no allocation for the text, no formatting.
                self.line.clear();
                json::push_json(&mut self.line, msg.as_bytes());
                self.line.push(b'\n');
                (writer.out.write_all(&self.line), self.line.len())
            }
            Format::Cbor => (writer.out.write_all(msg.as_bytes()), msg.as_bytes().len()),
        };
        match result {
            Ok(()) => {
                self.stats.written += 1;
                self.stats.bytes_out += bytes as u64;
            }
            Err(e) => {
                drop(writer);
                self.stats.fail(Blame::Host);
                self.close(&e);
            }
        }
    }

    fn flush(&mut self) {
        let mut writer = lock(&self.writer);
        let flushed = writer.out.flush();
        drop(writer);
        if let Err(e) = &flushed {
            self.close(e);
        }
        // What they wrote is out (or lost with the output: then they are nak'd).
        if let Some(bus) = &self.bus {
            for mut work in self.bus_unflushed.drain(..) {
                if flushed.is_err() {
                    work.input = Some(false);
                }
                bus.finish(work);
            }
        }
    }

    fn close(&mut self, e: &std::io::Error) {
        if !self.closed {
            let name = lock(&self.writer).name.clone();
            logger::error("output", &format!("cannot write {name} ({e}); stopping the inputs"));
            self.queue.stop();
        }
        self.closed = true;
    }
}

/// The run loop's [`RackSink`]: the output plus the names of the running rack's gears.
struct Sink<'a> {
    names: &'a [String],
    out: &'a mut Output,
}

impl Sink<'_> {
    fn name(&self, gear: usize) -> &str {
        self.names.get(gear).map_or("rack", String::as_str)
    }
}

impl Sink<'_> {
    /// Keeps an output for the bus, or fails it if the server would refuse it (larger
    /// than its `max_payload`: retrying could never succeed).
    fn keep_for_bus(&mut self, slot: usize, msg: MsgBytes) {
        let Some(bus) = self.out.bus.as_ref() else { return };
        let limit = bus.max_payload();
        let msg = match bus.stamp_output(slot, msg, clock::unix_nanos()) {
            Ok(msg) => msg,
            Err(text) => {
                self.out.bus_failed = true;
                self.out.stats.fail(Blame::Guest);
                logger::error("bus", &text);
                return;
            }
        };
        if msg.as_bytes().len() <= limit {
            self.out.bus_work.publishes.push((slot, msg));
            return;
        }
        self.out.bus_failed = true;
        self.out.stats.fail(Blame::Guest);
        let text = format!(
            "output {} is {} bytes, more than the {limit} the NATS server takes (its max_payload); not published",
            json::uuid_string(&msg.id()),
            msg.as_bytes().len()
        );
        logger::error(self.name(slot), &text);
    }
}

impl RackSink for Sink<'_> {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Output { from: Some(slot), msg }
                if self.out.bus.as_ref().is_some_and(|b| b.publishes(slot)) =>
            {
                self.keep_for_bus(slot, msg);
            }
            Delivery::Output { msg, .. } => self.out.write(&msg),
            Delivery::Dropped { gear, id } => {
                self.out.stats.dropped += 1;
                if logger::enabled(LogLevel::Debug) {
                    let text = format!("dropped message {}", json::uuid_string(&id));
                    logger::log(LogLevel::Debug, self.name(gear), &text);
                }
            }
            Delivery::Failed { gear, id, error } => {
                self.out.bus_failed = true;
                self.out.stats.fail(error.blame());
                let text = format!("message {}: {error} ({} fault)", json::uuid_string(&id), error.blame());
                logger::error(self.name(gear), &text);
            }
            Delivery::HopLimit { gear, id } => {
                self.out.bus_failed = true;
                self.out.stats.hop_limit += 1;
                let text = format!(
                    "message {} dropped: it has passed {} gears (a wiring loop?)",
                    json::uuid_string(&id),
                    fluxrig_core::limits::MAX_HOPS
                );
                logger::warn(self.name(gear), &text);
            }
            Delivery::QueueFull { gear, id } => {
                self.out.bus_failed = true;
                self.out.stats.queue_full += 1;
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
        if !logger::enabled(level) {
            return;
        }
        let name = self.names.get(gear).map_or("rack", String::as_str);
        if self.out.guest_logs.len() <= gear {
            self.out.guest_logs.resize(gear + 1, LogBudget::new());
        }
        if self.out.guest_logs.get_mut(gear).is_some_and(|budget| budget.admit(name)) {
            logger::guest(level, name, line);
        }
    }

    fn monotonic_nanos(&mut self) -> u64 {
        u64::try_from(self.out.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The counters.
    pub stats: Stats,
    /// The signal that stopped it (`SIGINT`, `SIGTERM`), if one did.
    pub signal: Option<&'static str>,
}

/// What the signal thread shares with the run loop.
struct Control {
    /// The input queue (to stop it, to swap plans in, to count what entered).
    queue: Arc<Queue>,
    /// Items the run loop has finished (delivered, or reported bad).
    finished: AtomicUsize,
    /// Reloads refused.
    reload_failures: AtomicUsize,
    /// The output, flushed by an abort.
    writer: Arc<Mutex<Writer>>,
    /// The first stop signal (0: none yet, else its index in `SIGNAL_NAMES`).
    signal: AtomicUsize,
}

const SIGNAL_NAMES: [&str; 3] = ["", "SIGINT", "SIGTERM"];

fn open_output(settings: &Settings, stdout: Box<dyn Write + Send>) -> Result<Writer> {
    let Some(path) = &settings.output else {
        return Ok(Writer {
            out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, stdout),
            name: "standard output".into(),
        });
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| Error::io(path, "open output", e))?;
    // A line cut off by a killed run must not swallow the first new one.
    if settings.output_format == Format::Json && file.metadata().is_ok_and(|m| m.len() > 0) {
        let mut last = [0u8; 1];
        let cut =
            file.seek(SeekFrom::End(-1)).and_then(|_| file.read_exact(&mut last)).is_ok() && last != *b"\n";
        if cut {
            logger::warn("output", &format!("{} ends without a newline; adding one", path.display()));
            file.write_all(b"\n").map_err(|e| Error::io(path, "write output", e))?;
        }
    }
    Ok(Writer {
        out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, Box::new(file)),
        name: path.display().to_string(),
    })
}

/// Runs `plan` with `settings` until every input has ended (or it is stopped by a
/// signal, or the output closes), then returns the counters. `reload` makes the next plan
/// on SIGHUP; without it SIGHUP is logged and ignored.
pub fn run(
    plan: Plan,
    settings: &Settings,
    reload: Option<Reload>,
    stdin: Box<dyn Read + Send>,
    stdout: Box<dyn Write + Send>,
) -> Result<Outcome> {
    let queue = Arc::new(Queue::new(settings.queue));
    let writer = Arc::new(Mutex::new(open_output(settings, stdout)?));
    let mut rig = Rig::start(plan)?;
    // Bind every socket before anything runs: a busy address stops the start, cleanly.
    let listeners = Listeners::bind(&settings.listen, settings.listen_limits, settings.input_format)?;
    let shared = Arc::new(Control {
        queue: Arc::clone(&queue),
        finished: AtomicUsize::new(0),
        reload_failures: AtomicUsize::new(0),
        writer: Arc::clone(&writer),
        signal: AtomicUsize::new(0),
    });
    let listeners = Arc::new(listeners);
    spawn_signals(Arc::clone(&shared), Arc::clone(&listeners), reload)?;
    let mut inputs: Vec<String> = Vec::new();
    // Standard input only for a rack with inputs: a rack of generators ends when they do.
    if settings.stdin && !rig.rack().inputs().is_empty() {
        inputs.push("standard input".into());
        let producer = queue.producer();
        let input = Input {
            name: "standard input".into(),
            format: settings.input_format,
            max_item_bytes: MAX_STDIN_ITEM_BYTES,
        };
        thread::spawn(move || {
            let (_, items) = pump::read_input(stdin, &input, &producer);
            logger::log(LogLevel::Debug, "input", &format!("standard input ended after {items} item(s)"));
        });
    }
    inputs.extend(listeners.start(&queue));
    if let Some(bus) = &settings.bus {
        inputs.extend(bus.start(&queue)?);
    }
    let mut generation = 0u64;
    spawn_generators(&mut rig, generation, &queue);
    let name = lock(&writer).name.clone();
    logger::info(
        "rack",
        &format!(
            "running scenario '{}' {}: inputs: {}; output: {name} ({}); queue: {} messages, {} KiB",
            rig.scenario.0,
            rig.scenario.1,
            if inputs.is_empty() { "none (generators only)".to_string() } else { inputs.join(", ") },
            format_name(settings.output_format),
            settings.queue.messages,
            settings.queue.bytes / 1024,
        ),
    );
    let snapshot: metrics::Shared = Arc::new(Mutex::new(Snapshot {
        scenario: rig.scenario.clone(),
        gears: rig.snapshot_gears(),
        started_unix_secs: (clock::unix_nanos() / 1_000_000_000).max(0) as u64,
        ..Snapshot::default()
    }));
    if let Some(path) = &settings.metrics_file {
        metrics::spawn_file_writer(
            path.clone(),
            settings.metrics_interval,
            Arc::clone(&snapshot),
            Arc::clone(&queue),
        );
    }
    let mut out = Output {
        writer,
        format: settings.output_format,
        closed: false,
        stats: Stats::default(),
        queue: Arc::clone(&queue),
        epoch: Instant::now(),
        guest_logs: Vec::new(),
        bus: settings.bus.clone(),
        bus_work: crate::bus::Finished::default(),
        bus_failed: false,
        bus_unflushed: Vec::new(),
        line: Vec::new(),
    };
    let mut published = Instant::now();
    let mut taken = Taken::default();
    loop {
        let Some(item) = taken.next_item() else {
            // Once per batch taken, not per message: a clock read.
            if published.elapsed() >= metrics::PUBLISH_INTERVAL {
                publish(&snapshot, &rig, &out.stats, &shared, &listeners);
                published = Instant::now();
            }
            if !queue.take(false, MAX_TAKE_ITEMS, &mut taken) {
                out.flush(); // nothing waiting: let what is written go out now
                publish(&snapshot, &rig, &out.stats, &shared, &listeners);
                published = Instant::now();
                if !queue.take(true, MAX_TAKE_ITEMS, &mut taken) {
                    break;
                }
            }
            continue;
        };
        match item {
            Item::Message(origin, msg) => {
                out.stats.entered += 1;
                out.stats.bytes_in += msg.as_bytes().len() as u64;
                let entry = match origin {
                    Origin::Input => Entry::Inputs,
                    // The queue refuses other generations' messages after a swap.
                    Origin::Generated { index, .. } => Entry::From(index),
                    Origin::Bus { slot } => Entry::From(slot),
                };
                let Rig { rack, names, .. } = &mut rig;
                let written = out.stats.written;
                rack.deliver(entry, msg, clock::unix_nanos(), &mut Sink { names, out: &mut out });
                if out.bus.is_some() {
                    let wrote = out.stats.written != written;
                    finish_bus(&mut out, matches!(origin, Origin::Bus { .. }), wrote);
                }
            }
            Item::BadInput(text) => {
                out.stats.entered += 1;
                out.stats.fail(Blame::Input);
                logger::error("input", &text);
            }
            Item::Swap(next) => {
                report_suppressed(&mut out, &rig);
                rig = *next;
                out.guest_logs.clear(); // slots are the new plan's
                generation += 1;
                out.stats.reloads += 1;
                spawn_generators(&mut rig, generation, &queue);
                logger::info(
                    "rack",
                    &format!("reloaded: now running scenario '{}' {}", rig.scenario.0, rig.scenario.1),
                );
                publish(&snapshot, &rig, &out.stats, &shared, &listeners);
                continue;
            }
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
    queue.finish();
    listeners.remove_files();
    report_suppressed(&mut out, &rig);
    out.flush();
    if let Some(bus) = &settings.bus {
        bus.close();
    }
    publish(&snapshot, &rig, &out.stats, &shared, &listeners);
    if let Some(path) = &settings.metrics_file {
        metrics::write_file(path, &snapshot, &queue);
    }
    let mut stats = out.stats;
    stats.reload_failures = shared.reload_failures.load(Ordering::Relaxed) as u64;
    let signal = SIGNAL_NAMES.get(shared.signal.load(Ordering::Relaxed)).filter(|s| !s.is_empty()).copied();
    if let Some(path) = &settings.stats_json {
        let text = metrics::stats_json(&lock_snapshot(&snapshot), signal) + "\n";
        write_stats_json(path, &text);
    }
    Ok(Outcome { stats, signal })
}

/// Most bus messages whose outputs wait in the output buffer; past it the buffer is
/// flushed so that they can be acked. Reason: a flush per message would cost a write(2)
/// each; 256 keeps a killed rack's redelivery small.
pub const MAX_UNFLUSHED_BUS_MESSAGES: usize = 256;

/// Hands the bus what became of the message just routed: for a bus message, ack (every
/// gear succeeded) or nak, and every output to publish (counted as written once handed
/// over; the bus publishes it before it acks the input). A bus message that `wrote` to
/// the output is handed over only once the output is flushed: an ack must not outrun
/// the output it stands for.
fn finish_bus(out: &mut Output, from_bus: bool, wrote: bool) {
    let failed = std::mem::take(&mut out.bus_failed);
    if !from_bus && out.bus_work.publishes.is_empty() {
        return;
    }
    let mut work = std::mem::take(&mut out.bus_work);
    work.input = from_bus.then_some(!failed);
    out.stats.written += work.publishes.len() as u64;
    out.stats.bytes_out += work.publishes.iter().map(|(_, m)| m.as_bytes().len() as u64).sum::<u64>();
    if from_bus && wrote {
        out.bus_unflushed.push(work);
        if out.bus_unflushed.len() >= MAX_UNFLUSHED_BUS_MESSAGES {
            out.flush();
        }
    } else if let Some(bus) = &out.bus {
        bus.finish(work);
    }
}

/// Reports every gear's suppressed log lines not reported yet.
fn report_suppressed(out: &mut Output, rig: &Rig) {
    for (budget, name) in out.guest_logs.iter_mut().zip(&rig.names) {
        budget.report(name);
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Json => "JSON lines",
        Format::Cbor => "CBOR sequence",
    }
}

fn lock_snapshot(snapshot: &metrics::Shared) -> MutexGuard<'_, Snapshot> {
    snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn publish(snapshot: &metrics::Shared, rig: &Rig, stats: &Stats, shared: &Control, listeners: &Listeners) {
    let mut s = lock_snapshot(snapshot);
    s.scenario.clone_from(&rig.scenario);
    s.gears = rig.snapshot_gears();
    s.stats = *stats;
    s.stats.reload_failures = shared.reload_failures.load(Ordering::Relaxed) as u64;
    s.connections = listeners.connections();
}

fn write_stats_json(path: &std::path::Path, text: &str) {
    if path.as_os_str() == "-" {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else if let Err(e) = crate::files::write_atomic(path, text.as_bytes(), 0o644) {
        logger::warn("rack", &format!("--stats-json: {e}"));
    }
}

fn spawn_generators(rig: &mut Rig, generation: u64, queue: &Arc<Queue>) {
    for generator in std::mem::take(&mut rig.generators) {
        let producer = queue.producer();
        thread::spawn(move || generator.run(generation, &producer));
    }
}

/// Handles SIGINT, SIGTERM and SIGHUP on a thread of its own (see the module docs).
fn spawn_signals(shared: Arc<Control>, listeners: Arc<Listeners>, reload: Option<Reload>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::invalid(format!("cannot handle signals: {e}")))?;
    thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT {
                1
            } else if signal == SIGTERM {
                2
            } else {
                0
            };
            if name == 0 {
                reload_now(&shared, reload.as_ref());
                continue;
            }
            let label = SIGNAL_NAMES.get(name).copied().unwrap_or("signal");
            if shared.signal.load(Ordering::Relaxed) == 0 {
                shared.signal.store(name, Ordering::Relaxed);
                let (waiting, _) = shared.queue.depth();
                logger::info(
                    "rack",
                    &format!(
                        "{label}: stopping; no more input is read, the {waiting} message(s) waiting finish (signal again to stop at once)"
                    ),
                );
                shared.queue.stop();
                listeners.shutdown();
                continue;
            }
            abort(&shared, label);
        }
    });
    Ok(())
}

/// The second signal: flush what is written (waiting at most a second for the output),
/// say what is abandoned, exit.
///
/// The count is taken with the output locked, so that the rack writes nothing after it:
/// each message read is then written or counted as abandoned (give or take the one whose
/// write had just returned). An output blocked for the whole second (a reader that stopped
/// reading, with the rack inside a write) gets the count without the lock.
fn abort(shared: &Arc<Control>, label: &'static str) -> ! {
    let reported = Arc::new(AtomicBool::new(false));
    let report = move |control: &Control, reported: &AtomicBool| {
        if reported.swap(true, Ordering::Relaxed) {
            return;
        }
        // Counted modulo the word size (32-bit targets have no 64-bit atomics): what
        // waits is bounded by the queue, so the difference is exact.
        let abandoned =
            (control.queue.entered() as usize).wrapping_sub(control.finished.load(Ordering::Relaxed));
        logger::error(
            "rack",
            &format!(
                "{label} again: stopping at once; {abandoned} message(s) abandoned (waiting or inside a gear)"
            ),
        );
    };
    let (done, steps) = std::sync::mpsc::channel();
    let control = Arc::clone(shared);
    let flag = Arc::clone(&reported);
    thread::spawn(move || {
        let mut writer = lock(&control.writer);
        report(&control, &flag);
        let _ = done.send(());
        let _ = writer.out.flush();
        let _ = done.send(());
    });
    let deadline = Instant::now() + Duration::from_secs(1);
    if steps.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
        report(shared, &reported);
    }
    let _ = steps.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    std::process::exit(i32::from(EXIT_ABORTED));
}

fn reload_now(shared: &Control, reload: Option<&Reload>) {
    let Some(reload) = reload else {
        logger::warn("rack", "SIGHUP: nothing to reload (the rack runs a one-off plan); ignored");
        return;
    };
    if shared.signal.load(Ordering::Relaxed) != 0 {
        logger::warn("rack", "SIGHUP while stopping: ignored");
        return;
    }
    logger::info("rack", "SIGHUP: reloading the scenario");
    match reload().and_then(Rig::start) {
        Ok(rig) => {
            let (waiting, _) = shared.queue.depth();
            logger::info(
                "rack",
                &format!(
                    "reload: scenario '{}' {} is ready; switching after the {waiting} message(s) waiting",
                    rig.scenario.0, rig.scenario.1
                ),
            );
            shared.queue.swap(rig);
        }
        Err(e) => {
            shared.reload_failures.fetch_add(1, Ordering::Relaxed);
            logger::error("rack", &format!("reload refused, the running scenario is unchanged: {e}"));
        }
    }
}
