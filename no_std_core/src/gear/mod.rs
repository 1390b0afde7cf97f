//! One gear: a compiled, verified module on the wasmi interpreter, with its memory limit,
//! fuel, and the per-message call sequence.
//!
//! Contract (`spec/fluxrig-compat.md` section 1, every BETTER item): a module becomes a
//! gear in two steps, verify then compile: [`Compiled::new`] takes a
//! [`crate::verify::VerifiedModule`], checks its shape and compiles it on the rack's
//! [`GearEngine`]; [`Gear::new`] instantiates it with fuel for the start function.
//! [`Gear::process`] then runs, per message: `alloc(n)`, write, the entrypoint, read the
//! output, `free(input)`, `free(output)`, each call with its own fuel, and checks the
//! output is a fluxMsg ([`MsgBytes::check`]) without decoding it.
//!
//! Guarantees:
//! - [`GearConfig::check`] is the one range check of every setting;
//! - memory growth past `memory_limit_pages` fails inside the guest (`memory.grow`
//!   returns -1); a module whose initial memory is larger is refused at compile;
//! - every guest call runs on a fuel budget; running out costs that message;
//! - the input buffer is freed on every path that does not trap; an output that is the
//!   input buffer is freed once;
//! - `alloc` returning 0, a result range outside memory or overflowing 32 bits, and an
//!   output over `max_output_bytes` are per-message errors;
//! - after a trap, fuel exhaustion, or `alloc` returning 0 or a range outside memory (a
//!   guest allocator in an unknown state) the instance (and its store) is dropped and
//!   rebuilt from the same compiled module before the next message;
//! - `env.log` lines reach the caller's [`LogSink`] after each guest call, at most
//!   [`crate::limits::MAX_LOG_LINES_PER_CALL`] lines of at most
//!   [`crate::limits::MAX_LOG_LINE_BYTES`]; out-of-bounds
//!   ranges are ignored, as in fluxrig.
//!
//! Out of scope: routing, clocks, I/O. wasmi types never leave this module.

mod engine;
mod error;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use engine::{inspect, problems, Compiled, GearEngine, ModuleShape, Translation};
pub use error::{Detail, Fault, GearError, Name};

use crate::abi::{self, LogLevel, Returned};
use crate::limits::{
    DEFAULT_FUEL_FOR_START, DEFAULT_FUEL_PER_ALLOC, DEFAULT_FUEL_PER_MESSAGE, DEFAULT_MEMORY_LIMIT_PAGES,
    MAX_ENCODED_MESSAGE_BYTES, MAX_FUEL_PER_CALL, MAX_MEMORY_LIMIT_PAGES, MAX_TABLE_ELEMENTS,
};
use crate::message::MsgBytes;
use engine::Live;

/// Fuel budgets, one per kind of guest call (about one unit per Wasm instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuelBudget {
    /// For each entrypoint call. Default [`DEFAULT_FUEL_PER_MESSAGE`].
    pub per_message: u64,
    /// For each `alloc` and each `free` call. Default [`DEFAULT_FUEL_PER_ALLOC`].
    pub per_alloc: u64,
    /// For instantiation, including the start function. Default [`DEFAULT_FUEL_FOR_START`].
    pub for_start: u64,
}

impl Default for FuelBudget {
    fn default() -> Self {
        Self {
            per_message: DEFAULT_FUEL_PER_MESSAGE,
            per_alloc: DEFAULT_FUEL_PER_ALLOC,
            for_start: DEFAULT_FUEL_FOR_START,
        }
    }
}

/// How to run one gear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GearConfig {
    /// The entrypoint export, called once per message. Default `process`.
    pub entrypoint: String,
    /// Most linear-memory pages the guest may have (fluxrig's `memory_limit_pages`).
    /// Default [`DEFAULT_MEMORY_LIMIT_PAGES`], at most [`MAX_MEMORY_LIMIT_PAGES`].
    pub memory_limit_pages: u32,
    /// Fuel budgets.
    pub fuel: FuelBudget,
    /// Most elements the gear's one table may hold (tables live in host memory, outside
    /// `memory_limit_pages`). Default and ceiling [`MAX_TABLE_ELEMENTS`].
    pub max_table_elements: u32,
    /// Longest output the host copies out of the guest. Default and ceiling
    /// [`MAX_ENCODED_MESSAGE_BYTES`]; a firmware with small messages sets it lower to
    /// shrink its memory budget.
    pub max_output_bytes: usize,
}

impl Default for GearConfig {
    fn default() -> Self {
        Self {
            entrypoint: String::from(abi::DEFAULT_ENTRYPOINT),
            memory_limit_pages: DEFAULT_MEMORY_LIMIT_PAGES,
            fuel: FuelBudget::default(),
            max_table_elements: MAX_TABLE_ELEMENTS,
            max_output_bytes: MAX_ENCODED_MESSAGE_BYTES,
        }
    }
}

impl GearConfig {
    /// Checks every value against its range: the one place settings are checked, for a
    /// scenario, `wasm call` and the firmware alike.
    ///
    /// # Errors
    /// [`GearError::BadConfig`] naming the value (by its scenario key), its limit and what
    /// was asked.
    pub fn check(&self) -> Result<(), GearError> {
        let bad = |what, limit: u64, got: u64| Err(GearError::BadConfig { what, limit, got });
        let in_range = |got: u64, limit: u64| (1..=limit).contains(&got);
        if !in_range(self.memory_limit_pages.into(), MAX_MEMORY_LIMIT_PAGES.into()) {
            return bad("memory_limit_pages", MAX_MEMORY_LIMIT_PAGES.into(), self.memory_limit_pages.into());
        }
        let fuels = [
            ("fuel_per_message", self.fuel.per_message),
            ("fuel per alloc", self.fuel.per_alloc),
            ("fuel for start", self.fuel.for_start),
        ];
        for (what, got) in fuels {
            if !in_range(got, MAX_FUEL_PER_CALL) {
                return bad(what, MAX_FUEL_PER_CALL, got);
            }
        }
        if !in_range(self.max_table_elements.into(), MAX_TABLE_ELEMENTS.into()) {
            return bad("max_table_elements", MAX_TABLE_ELEMENTS.into(), self.max_table_elements.into());
        }
        let (output, output_limit) = (self.max_output_bytes as u64, MAX_ENCODED_MESSAGE_BYTES as u64);
        if !in_range(output, output_limit) {
            return bad("max_output_bytes", output_limit, output);
        }
        Ok(())
    }
}

/// Where a gear's `env.log` lines go.
pub trait LogSink {
    /// Takes one line from the guest (already cut to
    /// [`crate::limits::MAX_LOG_LINE_BYTES`]).
    fn log(&mut self, level: LogLevel, line: &str);
}

impl<F: FnMut(LogLevel, &str)> LogSink for F {
    fn log(&mut self, level: LogLevel, line: &str) {
        self(level, line);
    }
}

/// What the guest made of one message, as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest returned length 0.
    Dropped,
    /// The guest returned these bytes (not yet checked as a fluxMsg).
    Output(Vec<u8>),
}

/// One running gear: a compiled module, its configuration and its live instance. See the
/// module docs for the per-message contract.
pub struct Gear {
    compiled: Compiled,
    config: GearConfig,
    /// The running instance; `None` after a fault, until the next message rebuilds it.
    live: Option<Live>,
    fuel_used: u64,
}

impl fmt::Debug for Gear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gear").field("compiled", &self.compiled).field("config", &self.config).finish()
    }
}

impl Gear {
    /// Instantiates a compiled module (running its start function on the start fuel).
    ///
    /// # Errors
    /// [`GearError::BadConfig`], [`GearError::InitialMemoryTooLarge`] if `config` is
    /// tighter than the one the module was compiled under, [`GearError::StartFailed`] or
    /// [`GearError::Instantiation`].
    pub fn new(compiled: Compiled, config: GearConfig, sink: &mut dyn LogSink) -> Result<Self, GearError> {
        config.check()?;
        let initial = compiled.shape().initial_pages;
        if initial > u64::from(config.memory_limit_pages) {
            return Err(GearError::InitialMemoryTooLarge { limit: config.memory_limit_pages, got: initial });
        }
        let live = compiled.instantiate(&config, sink)?;
        Ok(Self { compiled, config, live: Some(live), fuel_used: 0 })
    }

    /// Returns the compiled module this gear runs (its hash, trust and shape).
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Returns the configuration the gear runs with.
    pub fn config(&self) -> &GearConfig {
        &self.config
    }

    /// Returns the fuel the last message used over all its guest calls.
    pub fn last_fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Runs one message, given as bytes, through the guest and returns what it gave back,
    /// unchecked. For tools and tests; a rack uses [`Gear::process`].
    ///
    /// # Errors
    /// A per-message [`GearError`]; the gear stays usable. If
    /// [`GearError::rebuilds_instance`] is true the instance was dropped and the next call
    /// rebuilds it first (and fails with [`GearError::StartFailed`] if that fails).
    pub fn process_bytes(&mut self, input: &[u8], sink: &mut dyn LogSink) -> Result<Outcome, GearError> {
        if input.len() > MAX_ENCODED_MESSAGE_BYTES {
            return Err(GearError::InputTooLarge { limit: MAX_ENCODED_MESSAGE_BYTES, got: input.len() });
        }
        // A faulted instance was dropped at once (freeing its memory); rebuild it now.
        let live = match &mut self.live {
            Some(live) => live,
            empty @ None => empty.insert(self.compiled.instantiate(&self.config, sink)?),
        };
        let mut run = Run { live, config: &self.config, sink, fuel_used: 0 };
        let result = run.message(input);
        self.fuel_used = run.fuel_used;
        if result.as_ref().is_err_and(GearError::rebuilds_instance) {
            self.live = None;
        }
        result
    }

    /// Runs one checked message through the guest and checks its output as a fluxMsg,
    /// without decoding either: `None` if the guest dropped the message.
    ///
    /// # Errors
    /// As [`Gear::process_bytes`], plus [`GearError::InvalidOutput`].
    pub fn process(&mut self, msg: &MsgBytes, sink: &mut dyn LogSink) -> Result<Option<MsgBytes>, GearError> {
        match self.process_bytes(msg.as_bytes(), sink)? {
            Outcome::Dropped => Ok(None),
            Outcome::Output(bytes) => MsgBytes::check(bytes).map(Some).map_err(GearError::InvalidOutput),
        }
    }
}

/// One message's call sequence over a live instance.
struct Run<'a> {
    live: &'a mut Live,
    config: &'a GearConfig,
    sink: &'a mut dyn LogSink,
    fuel_used: u64,
}

impl Run<'_> {
    /// Calls a guest export with `fuel`, then hands its log lines to the sink.
    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(
        &mut self,
        func: wasmi::TypedFunc<P, R>,
        name: &str,
        fuel: u64,
        params: P,
    ) -> Result<R, GearError> {
        let store = &mut self.live.store;
        store.set_fuel(fuel).map_err(|_| GearError::fault(name, Fault::Other))?;
        let result = func.call(&mut *store, params);
        self.fuel_used += fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        store.data_mut().flush(self.sink);
        result.map_err(|e| GearError::fault(name, Fault::of(&e)))
    }

    fn free(&mut self, ptr: u32, len: u32) -> Result<(), GearError> {
        let free = self.live.free;
        self.call(free, abi::FREE_EXPORT, self.config.fuel.per_alloc, (ptr as i32, len as i32))
    }

    fn message(&mut self, input: &[u8]) -> Result<Outcome, GearError> {
        let len = input.len() as u32; // <= MAX_ENCODED_MESSAGE_BYTES, checked by the caller
        let (alloc, alloc_name) = (self.live.alloc, self.live.alloc_name);
        let ptr = self.call(alloc, alloc_name, self.config.fuel.per_alloc, len as i32)? as u32;
        if ptr == 0 {
            return Err(GearError::AllocReturnedNull { len });
        }
        let memory = self.live.memory;
        let data = memory.data_mut(&mut self.live.store);
        let memory_len = data.len();
        let Some(slot) = abi::guest_range(ptr, len, memory_len).and_then(|range| data.get_mut(range)) else {
            return Err(GearError::AllocOutOfRange { ptr, len, memory: memory_len });
        };
        slot.copy_from_slice(input);

        let (process, config) = (self.live.process, self.config);
        let result =
            self.call(process, &config.entrypoint, config.fuel.per_message, (ptr as i32, len as i32))?;
        let (out_ptr, out_len) = match abi::unpack_result(result) {
            Returned::Drop => {
                self.free(ptr, len)?;
                return Ok(Outcome::Dropped);
            }
            Returned::Output { ptr, len } => (ptr, len),
        };
        if out_len as usize > self.config.max_output_bytes {
            self.free(ptr, len)?;
            return Err(GearError::OutputTooLarge {
                limit: self.config.max_output_bytes,
                got: out_len as usize,
            });
        }
        let data = memory.data(&self.live.store);
        let memory_len = data.len();
        let Some(output) = abi::guest_range(out_ptr, out_len, memory_len).and_then(|range| data.get(range))
        else {
            self.free(ptr, len)?;
            return Err(GearError::OutputOutOfRange { ptr: out_ptr, len: out_len, memory: memory_len });
        };
        // Room for the hop the next gear stamps, so that it does not reallocate.
        let mut copy = Vec::with_capacity(output.len() + crate::message::MAX_HOP_BYTES);
        copy.extend_from_slice(output);
        let output = copy;
        self.free(ptr, len)?;
        // An output that is the input buffer is freed once (fluxrig frees it twice).
        if out_ptr != ptr {
            self.free(out_ptr, out_len)?;
        }
        Ok(Outcome::Output(output))
    }
}

#[cfg(test)]
mod tests;
