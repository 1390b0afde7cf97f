//! The rack's router, sans I/O: gears in slots, wires between them, and one call that
//! takes a message in and hands out everything that becomes of it.
//!
//! Contract: [`Rack::deliver`] takes a checked message ([`MsgBytes`]) at an [`Entry`] and
//! a time the caller reads from its clock, and routes it breadth first: each gear it
//! enters gets a [`Hop`] (gear id, input port id, that time) appended to the path in
//! place, runs it, and its output follows the gear's wires; an output with no wire leaves
//! the rack as [`Delivery::Output`]. Every fate of every message is reported to the
//! caller's [`RackSink`] exactly once: output, dropped by a gear, failed (with the
//! [`GearError`], which says whose fault it was), past the hop limit, or refused because
//! the queue is full. Messages travel as bytes: nothing is decoded between gears.
//!
//! Guarantees:
//! - the hop limit [`MAX_HOPS`] is counted by the router for each message it delivers,
//!   from 0 at its entry; the path a guest returns never resets it, so a gear wired to
//!   itself that returns an empty path still stops after [`MAX_HOPS`] gears;
//! - flags are data: no flag that an input or a guest sets makes the router skip a gear
//!   (sync probes belong to a bus input, not to the router);
//! - at most `max_queued` messages wait inside one delivery ([`MAX_QUEUED_MESSAGES`] by
//!   default), so fan-out loops cost memory in proportion to that limit only;
//! - a gear error costs that message only; the gear rebuilds itself if it must.
//!
//! Out of scope: names, clocks, threads, input and output formats (the caller's).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::LogLevel;
use crate::blame::Blame;
use crate::gear::{Gear, GearError};
use crate::limits::{MAX_HOPS, MAX_QUEUED_MESSAGES};
use crate::message::{Hop, MsgBytes, Uuid};

/// One place in a rack: a gear, or a source that only sends (a generator, an input).
#[derive(Debug)]
pub struct Slot {
    gear: Option<Gear>,
    id: Uuid,
    in_port: Uuid,
    stats: GearStats,
}

impl Slot {
    /// A gear, with the ids its hops carry: the gear's and its input port's.
    pub fn gear(gear: Gear, id: Uuid, in_port: Uuid) -> Self {
        Self { gear: Some(gear), id, in_port, stats: GearStats::default() }
    }

    /// A source: it has outputs and wires, but no input and no guest.
    pub fn source(id: Uuid) -> Self {
        Self { gear: None, id, in_port: [0; 16], stats: GearStats::default() }
    }

    /// Returns the gear in this slot, if it is one.
    pub fn as_gear(&self) -> Option<&Gear> {
        self.gear.as_ref()
    }

    /// Returns what the gear in this slot has done (all zero for a source).
    pub fn stats(&self) -> &GearStats {
        &self.stats
    }
}

/// A wire from one slot's output to another slot's input, by slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// The sending slot.
    pub from: usize,
    /// The receiving slot; it must hold a gear.
    pub to: usize,
}

/// Why a rack cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RackError {
    /// A wire names a slot that does not exist.
    NoSuchSlot {
        /// The index.
        index: usize,
        /// How many slots there are.
        slots: usize,
    },
    /// A wire ends at a source, which has no input.
    WireToSource {
        /// The index.
        index: usize,
    },
    /// `max_queued` is 0.
    ZeroQueue,
}

impl fmt::Display for RackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchSlot { index, slots } => write!(f, "wire names slot {index}, the rack has {slots}"),
            Self::WireToSource { index } => write!(f, "wire ends at slot {index}, which has no input"),
            Self::ZeroQueue => f.write_str("the router's queue limit must be at least 1"),
        }
    }
}

impl core::error::Error for RackError {}

/// Where a message enters the rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Every gear whose input has no wire (the rack's own inputs, such as stdin); with
    /// none, the message leaves the rack at once.
    Inputs,
    /// Along the wires of slot `index`'s output (a source's message, such as a generator's).
    From(usize),
}

/// What became of a message (or of one copy of it, after a fan-out).
#[derive(Debug)]
pub enum Delivery {
    /// It leaves the rack through an unwired output.
    Output {
        /// The slot whose output it left by (`None`: it entered at [`Entry::Inputs`] and
        /// the rack has no inputs).
        from: Option<usize>,
        /// The message.
        msg: MsgBytes,
    },
    /// A gear dropped it (returned length 0).
    Dropped {
        /// The gear.
        gear: usize,
        /// The message's id.
        id: Uuid,
    },
    /// A gear failed on it; the error says whose fault.
    Failed {
        /// The gear.
        gear: usize,
        /// The message's id.
        id: Uuid,
        /// What went wrong.
        error: GearError,
    },
    /// It would have entered its [`MAX_HOPS`]+1st gear (a wiring loop?).
    HopLimit {
        /// The gear it would have entered.
        gear: usize,
        /// The message's id.
        id: Uuid,
    },
    /// A gear's output was refused: the router's queue was full (a fan-out loop?).
    QueueFull {
        /// The gear whose output it was.
        gear: usize,
        /// The message's id.
        id: Uuid,
    },
}

/// The caller's side of a delivery: where fates and gears' log lines go, and the clock
/// that times gear calls.
pub trait RackSink {
    /// Takes the fate of one message.
    fn deliver(&mut self, delivery: Delivery);
    /// Takes one `env.log` line of the gear in slot `gear`.
    fn log(&mut self, gear: usize, level: LogLevel, line: &str);
    /// Returns a monotonic time in nanoseconds, read when a delivery starts and after each
    /// gear call, to time the calls in [`GearStats`] (a call's time includes the routing
    /// step just before it). The default, always 0, leaves those timings at 0.
    fn monotonic_nanos(&mut self) -> u64 {
        0
    }
}

/// Upper bounds, in nanoseconds, of the buckets of [`GearStats::call_nanos`]: 1 µs to
/// 1 s in 1-2-5 steps; a last bucket holds slower calls.
pub const CALL_TIME_BUCKETS_NANOS: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// What one gear has done since the rack was built. Counts are per gear call: a message
/// fanned out to two gears counts once in each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GearStats {
    /// Messages the gear was called with.
    pub calls: u64,
    /// Messages it returned (that went on along its wires or left the rack).
    pub outputs: u64,
    /// Messages it dropped.
    pub dropped: u64,
    /// Messages it failed on, by whose fault (indexed as [`Blame::ALL`]).
    pub failed: [u64; 5],
    /// Failures after which its instance was dropped, to be rebuilt from the compiled
    /// module before its next message (traps, fuel exhaustion, a guest allocator fault).
    pub rebuilds: u64,
    /// Fuel its `process` calls used, in total.
    pub fuel_used: u64,
    /// Its calls by duration: `call_nanos[i]` counts calls of at most
    /// [`CALL_TIME_BUCKETS_NANOS`]`[i]` and more than the bound before; the last entry
    /// counts slower ones (not cumulative; Prometheus' `le` buckets are the running sum).
    pub call_nanos: [u64; 20],
    /// Time spent in its calls, in nanoseconds, in total.
    pub busy_nanos: u64,
}

impl GearStats {
    fn record_time(&mut self, nanos: u64) {
        let bucket = CALL_TIME_BUCKETS_NANOS.iter().position(|bound| nanos <= *bound);
        let index = bucket.unwrap_or(CALL_TIME_BUCKETS_NANOS.len());
        if let Some(count) = self.call_nanos.get_mut(index) {
            *count += 1;
        }
        self.busy_nanos = self.busy_nanos.saturating_add(nanos);
    }

    fn record_failure(&mut self, blame: Blame) {
        if let Some(count) = Blame::ALL.iter().position(|b| *b == blame).and_then(|i| self.failed.get_mut(i))
        {
            *count += 1;
        }
    }
}

struct Pending {
    to: usize,
    msg: MsgBytes,
    /// Gears this message's lineage has entered in this delivery.
    hops: usize,
}

/// Gears, wires and the router between them. See the module docs.
#[derive(Debug)]
pub struct Rack {
    slots: Vec<Slot>,
    /// For each slot, the slots its output is wired to.
    targets: Vec<Vec<usize>>,
    /// Gears whose input has no wire.
    inputs: Vec<usize>,
    max_queued: usize,
    /// The delivery queue, empty between deliveries, kept for its memory (at most
    /// `max_queued` entries of a few words; the messages themselves are not kept).
    pending: VecDeque<Pending>,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").field("to", &self.to).field("hops", &self.hops).finish()
    }
}

impl Rack {
    /// Builds a rack from its slots and wires, with at most `max_queued` messages waiting
    /// inside one delivery.
    ///
    /// # Errors
    /// [`RackError`] for a wire to a missing slot or to a source, or a zero queue limit.
    pub fn new(slots: Vec<Slot>, wires: &[Wire], max_queued: usize) -> Result<Self, RackError> {
        if max_queued == 0 {
            return Err(RackError::ZeroQueue);
        }
        let mut targets: Vec<Vec<usize>> = slots.iter().map(|_| Vec::new()).collect();
        let mut wired_in: Vec<bool> = slots.iter().map(|_| false).collect();
        for wire in wires {
            for index in [wire.from, wire.to] {
                if index >= slots.len() {
                    return Err(RackError::NoSuchSlot { index, slots: slots.len() });
                }
            }
            if slots.get(wire.to).is_some_and(|s| s.gear.is_none()) {
                return Err(RackError::WireToSource { index: wire.to });
            }
            if let Some(list) = targets.get_mut(wire.from) {
                list.push(wire.to);
            }
            if let Some(flag) = wired_in.get_mut(wire.to) {
                *flag = true;
            }
        }
        let inputs = (0..slots.len())
            .filter(|i| {
                slots.get(*i).is_some_and(|s| s.gear.is_some()) && !wired_in.get(*i).copied().unwrap_or(true)
            })
            .collect();
        Ok(Self { slots, targets, inputs, max_queued, pending: VecDeque::new() })
    }

    /// Builds a rack with the default queue limit [`MAX_QUEUED_MESSAGES`].
    ///
    /// # Errors
    /// As [`Rack::new`].
    pub fn with_default_queue(slots: Vec<Slot>, wires: &[Wire]) -> Result<Self, RackError> {
        Self::new(slots, wires, MAX_QUEUED_MESSAGES)
    }

    /// Returns the slots, in the order given.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Returns the gears whose input has no wire: where [`Entry::Inputs`] delivers.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// Routes `msg` from `entry` until every copy of it has left the rack or met its fate,
    /// stamping hops with `now_nanos`, and reports each fate to `sink`. See the module docs.
    pub fn deliver(&mut self, entry: Entry, msg: MsgBytes, now_nanos: i64, sink: &mut dyn RackSink) {
        // The queue's memory is kept between deliveries: no allocation per message.
        let mut queue = core::mem::take(&mut self.pending);
        queue.clear();
        let first: &[usize] = match entry {
            Entry::Inputs => &self.inputs,
            Entry::From(index) => self.targets.get(index).map_or(&[], Vec::as_slice),
        };
        let from = match entry {
            Entry::Inputs => None,
            Entry::From(index) => Some(index),
        };
        if let Some(msg) = fan_out(&mut queue, first, msg, 0) {
            sink.deliver(Delivery::Output { from, msg });
        }
        // One clock read per gear call and one to start: a call's time runs from the end
        // of the previous one (or the start of the delivery), so it includes the routing
        // step before it (stamping a hop, tens of nanoseconds). Two reads per call were 8 %
        // of the CPU of a rack of three pass-through gears. No gear to call (a rack of
        // generators only, or a message for the output): no read.
        let mut clock = if queue.is_empty() { 0 } else { sink.monotonic_nanos() };
        while let Some(Pending { to, mut msg, hops }) = queue.pop_front() {
            let Some(slot) = self.slots.get_mut(to) else { continue };
            let Some(gear) = slot.gear.as_mut() else { continue };
            let id = msg.id();
            let hop = Hop { gear: slot.id, port: slot.in_port, ts: now_nanos };
            if hops >= MAX_HOPS || msg.push_hop(&hop).is_err() {
                sink.deliver(Delivery::HopLimit { gear: to, id });
                continue;
            }
            let started = clock;
            let mut log = |level, line: &str| sink.log(to, level, line);
            let result = gear.process(&msg, &mut log);
            clock = sink.monotonic_nanos();
            let stats = &mut slot.stats;
            stats.calls += 1;
            stats.fuel_used = stats.fuel_used.saturating_add(gear.last_fuel_used());
            stats.record_time(clock.saturating_sub(started));
            let output = match result {
                Ok(Some(output)) => {
                    stats.outputs += 1;
                    output
                }
                Ok(None) => {
                    stats.dropped += 1;
                    sink.deliver(Delivery::Dropped { gear: to, id });
                    continue;
                }
                Err(error) => {
                    stats.record_failure(error.blame());
                    stats.rebuilds += u64::from(error.rebuilds_instance());
                    sink.deliver(Delivery::Failed { gear: to, id, error });
                    continue;
                }
            };
            let targets = self.targets.get(to).map_or(&[][..], Vec::as_slice);
            if queue.len().saturating_add(targets.len()) > self.max_queued {
                sink.deliver(Delivery::QueueFull { gear: to, id: output.id() });
                continue;
            }
            if let Some(msg) = fan_out(&mut queue, targets, output, hops + 1) {
                sink.deliver(Delivery::Output { from: Some(to), msg });
            }
        }
        self.pending = queue;
    }
}

/// Queues `msg` for each of `targets`; returns it if there are none (it leaves the rack).
fn fan_out(queue: &mut VecDeque<Pending>, targets: &[usize], msg: MsgBytes, hops: usize) -> Option<MsgBytes> {
    let Some((last, rest)) = targets.split_last() else {
        return Some(msg);
    };
    for to in rest {
        queue.push_back(Pending { to: *to, msg: msg.clone(), hops });
    }
    queue.push_back(Pending { to: *last, msg, hops });
    None
}
