//! From a scenario to a plan a rack can run: every source read and verified, every gear
//! admitted against the memory budget and compiled once, on one engine.
//!
//! Contract: [`plan`] is where a scenario's modules meet the catalog and the keys. For each
//! wasm gear: read the module (bounded), verify its cluster signature and catalog hash
//! with the public cluster key (never the private one), admit its worst case into the
//! memory budget, compile it on the plan's [`GearEngine`]. `scenario import` stops here;
//! `run` hands the plan to [`crate::run`]. [`one_gear`] plans the one-gear rack of
//! `wasm call`. Nothing is verified, read or compiled twice.
//!
//! `run --insecure` ([`Checks::Insecure`]) skips the signature checks, and only those:
//! the one place a scenario's module is trusted unverified.

use std::path::Path;

use fluxrig_core::budget::Arena;
use fluxrig_core::rack::Wire;
use fluxrig_core::verify::VerifiedModule;
use fluxrig_core::{Compiled, GearConfig, GearEngine, PublicKey};

use crate::catalog;
use crate::error::{Error, Result};
use crate::keys;
use crate::scenario::{GearKind, Scenario};

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
        .map_or(FALLBACK_MEMORY_BUDGET_BYTES, |kib| kib.saturating_mul(1024) / 2)
}

/// How strictly a scenario's modules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Cluster signature and catalog hash (the default).
    Verified,
    /// Nothing; the operator asked for it with `--insecure`.
    Insecure,
}

/// One gear of a plan, ready to start.
pub enum PlannedGear {
    /// A wasm gear: its compiled module and how it runs.
    Wasm {
        /// The gear's name.
        name: String,
        /// The module, verified and compiled (boxed: a generator is much smaller).
        compiled: Box<Compiled>,
        /// Entrypoint, memory limit, fuel.
        config: GearConfig,
    },
    /// Where a bus input enters: a source slot whose wire leads to the receiving gear.
    BusInput {
        /// The subject it consumes (`flux.msg.<rack>.<gear>.<port>`), as its name.
        name: String,
    },
    /// A `generate` source.
    Generate {
        /// The gear's name.
        name: String,
        /// How many messages.
        count: u64,
        /// Pause between two, in milliseconds.
        interval_ms: u64,
        /// `raw` payload text; `{n}` becomes 1, 2, ...
        payload: String,
    },
}

impl PlannedGear {
    /// Returns the gear's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Wasm { name, .. } | Self::Generate { name, .. } | Self::BusInput { name } => name,
        }
    }
}

/// A checked scenario, every module verified and compiled.
pub struct Plan {
    /// The scenario's name.
    pub name: String,
    /// The scenario's version.
    pub version: String,
    /// The engine every gear was compiled on.
    pub engine: GearEngine,
    /// The gears, in scenario order.
    pub gears: Vec<PlannedGear>,
    /// The wires, by gear index.
    pub wires: Vec<Wire>,
    /// Worst-case heap of all gears, in bytes.
    pub worst_case_bytes: usize,
    /// Slots of the gears whose `out` goes to other racks over the bus, with their names.
    pub bus_outputs: Vec<(usize, String)>,
}

impl Plan {
    /// Slots of the bus inputs, with the subject each consumes.
    pub fn bus_inputs(&self) -> impl Iterator<Item = (usize, &str)> {
        self.gears.iter().enumerate().filter_map(|(i, g)| match g {
            PlannedGear::BusInput { name } => Some((i, name.as_str())),
            _ => None,
        })
    }

    /// Whether any wire of this plan crosses to another rack.
    pub fn uses_bus(&self) -> bool {
        !self.bus_outputs.is_empty() || self.bus_inputs().next().is_some()
    }
}

/// Resolves, verifies, admits and compiles every gear of `scenario`, running none.
pub fn plan(scenario: Scenario, data_dir: &Path, checks: Checks, budget_bytes: usize) -> Result<Plan> {
    let has_wasm = scenario.gears.iter().any(|g| matches!(g.kind, GearKind::Wasm { .. }));
    let cluster: Option<PublicKey> = match checks {
        Checks::Verified if has_wasm => Some(keys::cluster_public_key(data_dir)?),
        _ => None,
    };
    let engine = GearEngine::default();
    let mut arena = Arena::new(budget_bytes);
    let mut gears = Vec::with_capacity(scenario.gears.len());
    for gear in scenario.gears {
        let planned = match gear.kind {
            GearKind::Wasm { source, config } => {
                let at = || format!("gear '{}'", gear.name);
                let module = match &cluster {
                    Some(key) => catalog::load_source(data_dir, &source, key),
                    None => catalog::load_source_unverified(data_dir, &source),
                }
                .map_err(|e| e.context(at()))?;
                let compiled =
                    admit_and_compile(&engine, &mut arena, &gear.name, &module, &config, budget_bytes)?;
                PlannedGear::Wasm { name: gear.name, compiled: Box::new(compiled), config }
            }
            GearKind::Generate { count, interval_ms, payload } => {
                PlannedGear::Generate { name: gear.name, count, interval_ms, payload }
            }
        };
        gears.push(planned);
    }
    let mut wires: Vec<Wire> = scenario.wires.iter().map(|w| Wire { from: w.from, to: w.to }).collect();
    // One source slot per bus subject, after the gears, wired to every gear it feeds.
    let mut subjects: Vec<String> = Vec::new();
    for input in &scenario.bus_inputs {
        let subject = input.subject();
        let slot = match subjects.iter().position(|s| *s == subject) {
            Some(i) => gears.len() - subjects.len() + i,
            None => {
                subjects.push(subject.clone());
                gears.push(PlannedGear::BusInput { name: subject });
                gears.len() - 1
            }
        };
        wires.push(Wire { from: slot, to: input.to });
    }
    let bus_outputs = scenario
        .bus_outputs
        .iter()
        .filter_map(|i| gears.get(*i).map(|g| (*i, g.name().to_string())))
        .collect();
    let worst_case_bytes = budget_bytes.saturating_sub(arena.remaining());
    Ok(Plan {
        name: scenario.name,
        version: scenario.version,
        engine,
        gears,
        wires,
        worst_case_bytes,
        bus_outputs,
    })
}

/// Plans a rack of one gear named `name` running `module`, for `wasm call`: its input is
/// the caller's message, its output the result.
pub fn one_gear(name: &str, module: &VerifiedModule<Vec<u8>>, config: GearConfig) -> Result<Plan> {
    let engine = GearEngine::default();
    let budget = default_memory_budget();
    let mut arena = Arena::new(budget);
    let compiled = admit_and_compile(&engine, &mut arena, name, module, &config, budget)?;
    let gears = vec![PlannedGear::Wasm { name: name.to_string(), compiled: Box::new(compiled), config }];
    let worst_case_bytes = budget.saturating_sub(arena.remaining());
    Ok(Plan {
        name: name.to_string(),
        version: String::new(),
        engine,
        gears,
        wires: Vec::new(),
        worst_case_bytes,
        bus_outputs: Vec::new(),
    })
}

fn admit_and_compile(
    engine: &GearEngine,
    arena: &mut Arena,
    name: &str,
    module: &VerifiedModule<Vec<u8>>,
    config: &GearConfig,
    budget_bytes: usize,
) -> Result<Compiled> {
    let gear_error = |source| Error::gear(name, source);
    config.check().map_err(gear_error)?;
    arena.admit(module.bytes(), config).map_err(|source| Error::Budget {
        gear: name.to_string(),
        source,
        budget_mib: budget_bytes >> 20,
    })?;
    Compiled::new(engine, module, config).map_err(gear_error)
}
