//! The rack: builds every gear of a scenario and routes fluxMsgs along its wires.
//!
//! [`plan`] checks what [`crate::scenario::parse`] cannot: every source resolves, every
//! module's cluster signature and hash, its shape under the gear's limits, and that all
//! gears fit the memory budget. `scenario import` stops there; [`Rack::build`] then
//! loads the gears and [`Rack::run`] routes:
//! - a wasm gear input with no wire reads standard input (JSON lines or a CBOR sequence);
//! - a gear output with no wire writes to standard output (same formats);
//! - each gear a message enters adds a Hop; a message past [`MAX_HOPS`] is dropped, so a
//!   wiring loop cannot spin forever; sync probes (flag bit 0) bypass gears;
//! - a gear error costs that message only: it is logged, counted, and the rack goes on.
//!
//! Producers (standard input, `generate` gears) run on their own threads and send into
//! one channel; gears run on the main thread, one message at a time, in arrival order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fluxrig_core::budget::Arena;
use fluxrig_core::gear::{inspect, FuelBudget, Gear, GearConfig};
use fluxrig_core::limits::{MAX_ENCODED_MESSAGE_BYTES, MAX_HOPS};
use fluxrig_core::message::{FluxMsg, Hop, Uuid, FLAG_SYNC_PROBE};
use fluxrig_core::verify::{dangerous, sha256, PublicKey};

use crate::catalog;
use crate::error::{Error, Result};
use crate::json;
use crate::keys;
use crate::logger::{self, unix_nanos};
use crate::scenario::{GearKind, Scenario};

/// Most messages waiting inside the rack at once; past it a message is dropped with a
/// warning (a fan-out loop in the wiring would otherwise grow without bound).
pub const MAX_QUEUED_MESSAGES: usize = 10_000;

/// Default memory budget when `/proc/meminfo` cannot be read: 256 MiB.
pub const FALLBACK_MEMORY_BUDGET_BYTES: usize = 256 * 1024 * 1024;

/// Returns the default memory budget for all gears: half of this machine's RAM.
pub fn default_memory_budget() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(FALLBACK_MEMORY_BUDGET_BYTES, |kib| kib * 1024 / 2)
}

/// Wire format at the rack's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object (or plain text) per line.
    Json,
    /// A CBOR sequence of fluxMsgs.
    Cbor,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "cbor" => Ok(Self::Cbor),
            _ => Err(format!("unknown format {s:?} (json or cbor)")),
        }
    }
}

/// How strictly modules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Cluster signature and catalog hash (the default).
    Verified,
    /// Nothing; the operator asked for it with `--insecure`.
    Insecure,
}

/// A wasm gear's resolved module and configuration.
pub struct PlannedWasm {
    /// Module bytes as stored.
    pub bytes: Vec<u8>,
    /// Configuration from the scenario.
    pub config: GearConfig,
}

/// The checked plan of a scenario, one entry per gear (`None` for non-wasm gears).
pub struct Plan {
    /// The scenario.
    pub scenario: Scenario,
    /// Resolved wasm gears.
    pub wasm: Vec<Option<PlannedWasm>>,
    /// Worst-case heap of all gears, in bytes.
    pub worst_case_bytes: usize,
}

/// Resolves and checks every gear of `scenario` without running any of them.
pub fn plan(scenario: Scenario, data_dir: &Path, checks: Checks, budget_bytes: usize) -> Result<Plan> {
    let has_wasm = scenario.gears.iter().any(|g| matches!(g.kind, GearKind::Wasm { .. }));
    let cluster: Option<PublicKey> = match checks {
        Checks::Verified if has_wasm => Some(keys::cluster_public_key(data_dir)?),
        _ => None,
    };
    let mut arena = Arena::new(budget_bytes);
    let mut wasm = Vec::new();
    for gear in &scenario.gears {
        let at = format!("gear '{}'", gear.name);
        let GearKind::Wasm { source, entrypoint, memory_limit_pages, fuel_per_message } = &gear.kind else {
            wasm.push(None);
            continue;
        };
        let (bytes, _) =
            catalog::load_source(data_dir, source, cluster.as_ref()).map_err(|e| e.context(&at))?;
        let config = GearConfig {
            entrypoint: entrypoint.clone(),
            memory_limit_pages: *memory_limit_pages,
            fuel: FuelBudget { per_message: *fuel_per_message, ..FuelBudget::default() },
            ..GearConfig::default()
        };
        inspect(&bytes, &config).map_err(|e| Error::new(format!("{at}: {e}")))?;
        arena.admit(&bytes, &config).map_err(|e| {
            Error::new(format!("{at}: {e} (budget {} MiB, set with --memory-budget-mib)", budget_bytes >> 20))
        })?;
        wasm.push(Some(PlannedWasm { bytes, config }));
    }
    Ok(Plan { scenario, wasm, worst_case_bytes: budget_bytes - arena.remaining() })
}

/// Derives a stable 16-byte id from a name (SHA-256 prefix), for hops.
fn id_of(text: &str) -> Uuid {
    let digest = sha256(text.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

enum Node {
    Wasm(Box<Gear>),
    Generate { count: u64, interval_ms: u64, payload: String },
}

struct RackGear {
    name: String,
    id: Uuid,
    in_port: Uuid,
    node: Node,
    /// Gears this one's `out` is wired to.
    targets: Vec<usize>,
}

/// Counters reported when the rack stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Messages that entered the rack (from standard input or generators).
    pub entered: u64,
    /// Messages written to standard output.
    pub written: u64,
    /// Messages a gear dropped.
    pub dropped: u64,
    /// Messages lost to a gear error, a bad input line, or a limit.
    pub errors: u64,
}

enum Event {
    Input(FluxMsg),
    Generated(usize, FluxMsg),
    BadInput(String),
    Done,
}

/// A built rack, ready to run.
pub struct Rack {
    gears: Vec<RackGear>,
    /// Gears whose input has no wire: they read standard input.
    stdin_gears: Vec<usize>,
    output: Format,
    stats: Stats,
    out: Box<dyn Write>,
    out_closed: bool,
}

impl Rack {
    /// Loads every gear of a plan (running start functions).
    pub fn build(plan: Plan, output: Format) -> Result<Self> {
        let scenario = &plan.scenario;
        let mut gears = Vec::new();
        for (spec, planned) in scenario.gears.iter().zip(plan.wasm) {
            let node = match (&spec.kind, planned) {
                (GearKind::Wasm { .. }, Some(p)) => {
                    let verified = dangerous::trust_unverified(&p.bytes); // checked by `plan`
                    let name = spec.name.clone();
                    let mut sink = |level, line: &str| logger::log(level, &name, line);
                    let gear = Gear::load(&verified, p.config, &mut sink)
                        .map_err(|e| Error::new(format!("gear '{}': {e}", spec.name)))?;
                    Node::Wasm(Box::new(gear))
                }
                (GearKind::Generate { count, interval_ms, payload }, _) => {
                    Node::Generate { count: *count, interval_ms: *interval_ms, payload: payload.clone() }
                }
                (GearKind::Wasm { .. }, None) => {
                    return Err(Error::new("internal: wasm gear without a plan"))
                }
            };
            gears.push(RackGear {
                id: id_of(&spec.name),
                in_port: id_of(&format!("{}.in", spec.name)),
                name: spec.name.clone(),
                node,
                targets: scenario.wires.iter().filter(|w| w.from == gears.len()).map(|w| w.to).collect(),
            });
        }
        let stdin_gears = (0..gears.len())
            .filter(|i| matches!(gears[*i].node, Node::Wasm(_)) && !scenario.wires.iter().any(|w| w.to == *i))
            .collect();
        Ok(Self {
            gears,
            stdin_gears,
            output,
            stats: Stats::default(),
            out: Box::new(std::io::stdout()),
            out_closed: false,
        })
    }

    /// Runs until every producer is done, then returns the counters.
    pub fn run(mut self, input: Format, stdin: Box<dyn Read + Send>) -> Stats {
        let (tx, rx) = mpsc::channel();
        let mut producers = 0;
        if !self.stdin_gears.is_empty() {
            producers += 1;
            let tx = tx.clone();
            thread::spawn(move || read_input(stdin, input, &tx));
        }
        for (index, gear) in self.gears.iter().enumerate() {
            if let Node::Generate { count, interval_ms, payload } = &gear.node {
                producers += 1;
                let (tx, count, interval, payload, src) =
                    (tx.clone(), *count, *interval_ms, payload.clone(), gear.id);
                thread::spawn(move || generate(index, src, count, interval, &payload, &tx));
            }
        }
        drop(tx);
        while producers > 0 {
            let Ok(event) = rx.recv() else { break };
            match event {
                Event::Input(msg) => {
                    self.stats.entered += 1;
                    let targets = self.stdin_gears.clone();
                    self.route(&targets, msg);
                }
                Event::Generated(from, msg) => {
                    self.stats.entered += 1;
                    let targets = self.gears[from].targets.clone();
                    self.route(&targets, msg);
                }
                Event::BadInput(text) => {
                    self.stats.errors += 1;
                    logger::error("input", &text);
                }
                Event::Done => producers -= 1,
            }
            if self.out_closed {
                break;
            }
        }
        self.stats
    }

    /// Delivers `msg` to `targets` (or standard output if there are none) and follows
    /// every output along the wires, breadth first.
    fn route(&mut self, targets: &[usize], msg: FluxMsg) {
        let mut queue = VecDeque::new();
        enqueue(&mut queue, targets, msg);
        while let Some((target, mut msg)) = queue.pop_front() {
            let Some(index) = target else {
                self.write(&msg);
                continue;
            };
            let RackGear { name, id, in_port, node, .. } = &mut self.gears[index];
            let name = name.as_str();
            let output = if msg.flags & FLAG_SYNC_PROBE != 0 {
                Some(msg) // sync probes are never delivered to gears
            } else {
                let path = msg.path.get_or_insert_with(Vec::new);
                if path.len() >= MAX_HOPS {
                    self.stats.errors += 1;
                    let msg_id = json::uuid_string(&msg.id);
                    logger::warn(
                        name,
                        &format!("message {msg_id} dropped: it has passed {MAX_HOPS} gears (a wiring loop?)"),
                    );
                    continue;
                }
                path.push(Hop { gear: *id, port: *in_port, ts: unix_nanos() });
                let Node::Wasm(wasm) = node else { continue }; // only wasm gears have inputs
                let mut sink = |level, line: &str| logger::log(level, name, line);
                match wasm.process(&msg, &mut sink) {
                    Ok(Some(out)) => Some(out),
                    Ok(None) => {
                        self.stats.dropped += 1;
                        let text = format!("dropped message {}", json::uuid_string(&msg.id));
                        logger::log(fluxrig_core::abi::LogLevel::Debug, name, &text);
                        None
                    }
                    Err(e) => {
                        self.stats.errors += 1;
                        logger::error(name, &format!("message {}: {e}", json::uuid_string(&msg.id)));
                        None
                    }
                }
            };
            let Some(out) = output else { continue };
            let gear = &self.gears[index];
            if queue.len() + gear.targets.len().max(1) > MAX_QUEUED_MESSAGES {
                self.stats.errors += 1;
                let text = format!(
                    "output dropped: more than {MAX_QUEUED_MESSAGES} messages queued (a fan-out loop?)"
                );
                logger::warn(&gear.name, &text);
                continue;
            }
            enqueue(&mut queue, &gear.targets, out);
        }
    }

    fn write(&mut self, msg: &FluxMsg) {
        let result = match self.output {
            Format::Json => writeln!(self.out, "{}", json::to_json(msg)),
            Format::Cbor => self.out.write_all(&msg.encode()),
        }
        .and_then(|()| self.out.flush());
        match result {
            Ok(()) => self.stats.written += 1,
            Err(e) => {
                if !self.out_closed {
                    logger::error("output", &format!("standard output closed ({e}); stopping"));
                }
                self.out_closed = true;
            }
        }
    }
}

/// Queues `msg` for each of `targets`, or for standard output if there are none.
fn enqueue(queue: &mut VecDeque<(Option<usize>, FluxMsg)>, targets: &[usize], msg: FluxMsg) {
    match targets {
        [] => queue.push_back((None, msg)),
        [only] => queue.push_back((Some(*only), msg)),
        many => queue.extend(many.iter().map(|t| (Some(*t), msg.clone()))),
    }
}

fn read_input(stdin: Box<dyn Read + Send>, format: Format, tx: &mpsc::Sender<Event>) {
    match format {
        Format::Json => {
            let mut reader = BufReader::new(stdin);
            let mut line = Vec::new();
            let mut number = 0u64;
            loop {
                line.clear();
                // A line longer than any message could be is cut and reported, not buffered.
                let limit = (2 * MAX_ENCODED_MESSAGE_BYTES) as u64;
                match (&mut reader).take(limit).read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Event::BadInput(format!("cannot read standard input: {e}")));
                        break;
                    }
                }
                number += 1;
                if line.len() as u64 >= limit && line.last() != Some(&b'\n') {
                    let _ = tx.send(Event::BadInput(format!(
                        "line {number}: longer than {limit} bytes; stopping input"
                    )));
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if text.trim().is_empty() {
                    continue;
                }
                let event = match json::from_line(text) {
                    Ok(msg) => Event::Input(msg),
                    Err(e) => Event::BadInput(format!("line {number}: {e}")),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        }
        Format::Cbor => {
            let mut reader = stdin;
            let mut buffer: Vec<u8> = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let mut eof = false;
            let mut number = 0u64;
            loop {
                while !buffer.is_empty() {
                    match FluxMsg::decode_prefix(&buffer) {
                        Ok((msg, used)) => {
                            number += 1;
                            buffer.drain(..used);
                            if tx.send(Event::Input(msg)).is_err() {
                                return;
                            }
                        }
                        Err(e) if eof || buffer.len() >= MAX_ENCODED_MESSAGE_BYTES => {
                            // A CBOR sequence cannot be resynchronised after a bad item.
                            let _ = tx.send(Event::BadInput(format!(
                                "CBOR item {}: {e}; stopping input",
                                number + 1
                            )));
                            let _ = tx.send(Event::Done);
                            return;
                        }
                        Err(_) => break, // wait for more bytes
                    }
                }
                if eof {
                    break;
                }
                match reader.read(&mut chunk) {
                    Ok(0) => eof = true,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    Err(e) => {
                        let _ = tx.send(Event::BadInput(format!("cannot read standard input: {e}")));
                        break;
                    }
                }
            }
        }
    }
    let _ = tx.send(Event::Done);
}

fn generate(index: usize, src: Uuid, count: u64, interval_ms: u64, payload: &str, tx: &mpsc::Sender<Event>) {
    for n in 1..=count {
        if n > 1 && interval_ms > 0 {
            thread::sleep(Duration::from_millis(interval_ms));
        }
        let mut msg = json::raw_message(payload.replace("{n}", &n.to_string()).into_bytes());
        msg.src_id = src;
        if tx.send(Event::Generated(index, msg)).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Done);
}
