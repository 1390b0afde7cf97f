//! Everything of wasmi: the engine a rack shares, compiling a verified module once, the
//! gear shape check, the host's `env.log`, and live instances.
//!
//! Contract: one [`GearEngine`] per rack; [`Compiled::new`] takes a [`VerifiedModule`]
//! (never raw bytes), checks the gear shape and compiles it once; every instance of that
//! gear, including the ones rebuilt after a fault, is made from the same [`Compiled`].
//! [`inspect`] is the one way to check raw, unverified bytes (an importer refusing a bad
//! module before it signs it); it compiles on a throw-away engine and never instantiates.
//!
//! Compilation mode: wasmi's lazy translation (validate every function eagerly, translate
//! each on its first call). Measured cold start (verify + compile + instantiate + one
//! message) in README "Measured": lazy is faster for every gear we have, most for large
//! ones, and validation stays eager, so a malformed function body is still refused at
//! import. [`Translation::Eager`] is kept for the benchmark that compares the two.
//! wasmi's fully lazy mode (each body validated, too, at its first call) was measured at
//! 118-125 µs against 141 µs for the tutorial gear's cold start, and not taken: wasmi
//! 2.0's validating translator, which that mode and eager compiles use, panics on a body
//! with operators after its final `end` (found by the `module` fuzz target, kept as
//! `fuzz/corpus/module/operators_after_end`), where wasmparser's own validator, run in
//! full first as here, refuses it. Eager compiles (the benchmark only) have that panic.
//!
//! Out of scope: routing, clocks, I/O. No wasmi type leaves this module's crate.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicUsize, Ordering};

use wasmi::{
    Caller, CompilationMode, Config, EnforcedLimits, Engine, Error as WasmiError, ExternType, FuncType,
    Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc, ValType,
};

use super::error::{cut, detail_of, Fault, GearError, Name};
use super::{GearConfig, LogSink};
use crate::abi::{self, LogLevel};
use crate::limits::{
    MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES, MAX_RECURSION_DEPTH, MAX_VALUE_STACK_BYTES, WASM_PAGE_BYTES,
};
use crate::verify::{CatalogHash, Trust, VerifiedModule};

/// When wasmi translates a module's functions to its internal code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// All functions at compile time.
    Eager,
    /// Each function at its first call; validation still runs for all at compile time.
    Lazy,
}

/// The interpreter engine shared by every gear of a rack, with a count of the modules it
/// compiled (a rack compiles each gear once; a test holds it to that).
pub struct GearEngine {
    engine: Engine,
    compiles: AtomicUsize,
}

impl Default for GearEngine {
    fn default() -> Self {
        Self::new(Translation::Lazy)
    }
}

impl core::fmt::Debug for GearEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GearEngine").field("compiles", &self.compile_count()).finish()
    }
}

impl GearEngine {
    /// Makes an engine with fuel metering, the value stack and call depth limits of
    /// [`crate::limits`], wasmi's strict enforced limits on module contents
    /// ([`crate::limits::MAX_GLOBALS`] and the rest), and the given translation mode.
    pub fn new(translation: Translation) -> Self {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            .compilation_mode(match translation {
                Translation::Eager => CompilationMode::Eager,
                Translation::Lazy => CompilationMode::LazyTranslation,
            })
            .set_max_stack_height(MAX_VALUE_STACK_BYTES)
            .set_max_recursion_depth(MAX_RECURSION_DEPTH)
            .set_max_cached_stacks(1)
            // Counts of what a module makes the host allocate outside its linear memory
            // (globals, functions, tables, segments, parameters): checked while the module
            // is parsed, before it costs more than its bytes. The values are listed, with
            // what the budget prices beyond them, in `crate::limits` (MAX_GLOBALS, ...).
            .enforced_limits(EnforcedLimits::strict());
        Self { engine: Engine::new(&config), compiles: AtomicUsize::new(0) }
    }

    /// Returns how many modules this engine has compiled.
    pub fn compile_count(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }
}

/// What [`inspect`] and [`Compiled::new`] learn of a module without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleShape {
    /// Initial linear-memory pages.
    pub initial_pages: u64,
    /// Declared maximum pages, if any.
    pub maximum_pages: Option<u64>,
    /// `alloc` or `malloc`, whichever the module exports (`alloc` wins).
    pub alloc_export: &'static str,
    /// Whether the module imports `env.log`.
    pub imports_log: bool,
    /// Size of the module in bytes.
    pub module_bytes: usize,
    memory_export: String,
}

/// Returns whether a function type is the contract's signature `sig`.
fn fits(ty: &FuncType, sig: &abi::Sig) -> bool {
    let wasm = |t: &abi::AbiType| match t {
        abi::AbiType::I32 => ValType::I32,
        abi::AbiType::I64 => ValType::I64,
    };
    ty.params().iter().copied().eq(sig.params.iter().map(wasm))
        && ty.results().iter().copied().eq(sig.results.iter().map(wasm))
}

/// Checks a module's shape against the gear contract without running any of it:
/// imports (only `env.log`), exports and their types, memory export and initial size.
///
/// Works on raw bytes so that an importer can refuse a bad module before it is signed
/// into a catalog; it compiles the module on a throw-away engine but never instantiates.
///
/// # Errors
/// The first [`GearError`] found, naming the import or export.
pub fn inspect(module: &[u8], config: &GearConfig) -> Result<ModuleShape, GearError> {
    compile(&GearEngine::default(), module, config).map(|(_, shape)| shape)
}

/// Every reason `module` cannot run as a gear under `config`, in the order [`inspect`]
/// meets them, not only the first: every forbidden import, every missing or mistyped
/// export, the memory. What a gear author's check (`wasm verify`) reports. Empty exactly
/// when [`inspect`] succeeds. A module that does not parse or validate gives that one
/// error (nothing after it can be read).
pub fn problems(module: &[u8], config: &GearConfig) -> Vec<GearError> {
    let engine = GearEngine::default();
    match parse(&engine, module, config) {
        Ok(parsed) => {
            let mut found = Vec::new();
            let _ = shape(&parsed, config, module.len(), &mut found);
            found
        }
        Err(error) => alloc::vec![error],
    }
}

fn parse(engine: &GearEngine, bytes: &[u8], config: &GearConfig) -> Result<Module, GearError> {
    config.check()?;
    let contents =
        crate::section::contents(bytes).map_err(|e| GearError::InvalidModule { detail: detail_of(&e) })?;
    // wasmi 2.0 divides by this count (enforced average function size) before validating
    // it: a code section of 1000 bytes or more that declares no bodies would panic there
    // (found by the `module` fuzz target). Such a section is invalid anyway.
    if contents.bodiless_code_bytes > 0 {
        let detail = alloc::format!(
            "the code section declares no function bodies but holds {} more bytes",
            contents.bodiless_code_bytes
        );
        return Err(GearError::InvalidModule { detail: detail_of(&detail) });
    }
    engine.compiles.fetch_add(1, Ordering::Relaxed);
    Module::new(&engine.engine, bytes).map_err(|e| GearError::InvalidModule { detail: detail_of(&e) })
}

fn compile(
    engine: &GearEngine,
    bytes: &[u8],
    config: &GearConfig,
) -> Result<(Module, ModuleShape), GearError> {
    let module = parse(engine, bytes, config)?;
    let mut found = Vec::new();
    match (shape(&module, config, bytes.len(), &mut found), found.into_iter().next()) {
        (Some(shape), None) => Ok((module, shape)),
        (_, Some(first)) => Err(first),
        // `shape` gives no shape only with a problem; kept total without a panic.
        (None, None) => Err(GearError::NoMemoryExport),
    }
}

/// Checks a parsed module against the gear contract, pushing every problem to `found` in
/// a fixed order (imports, alloc, free, entrypoint, memory); returns the shape if there
/// was none.
fn shape(
    module: &Module,
    config: &GearConfig,
    module_bytes: usize,
    found: &mut Vec<GearError>,
) -> Option<ModuleShape> {
    let before = found.len();
    let mut imports_log = false;
    for import in module.imports() {
        let is_log = import.module() == abi::LOG_IMPORT_MODULE && import.name() == abi::LOG_IMPORT_NAME;
        match import.ty() {
            ExternType::Func(ty) if is_log => {
                if fits(ty, &abi::LOG_SIG) {
                    imports_log = true;
                } else {
                    found.push(GearError::WrongLogImportType);
                }
            }
            _ => {
                // Cut on a character boundary: names are untrusted UTF-8 of any length.
                let mut name = String::new();
                let _ = write!(name, "{}.{}", import.module(), import.name());
                let import: Name = cut(&name);
                found.push(GearError::ForbiddenImport { import });
            }
        }
    }

    let func_export = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(ty)) => Ok(Some(ty)),
        Some(_) => Err(()),
        None => Ok(None),
    };
    let wrong = |export: &str, expected| GearError::WrongExportType { export: cut(export), expected };
    let alloc_export = [abi::ALLOC_EXPORT, abi::MALLOC_EXPORT]
        .into_iter()
        .find_map(|name| match func_export(name) {
            Ok(None) => None,
            Ok(Some(ty)) if fits(&ty, &abi::ALLOC_SIG) => Some(Ok(name)),
            _ => Some(Err(wrong(name, abi::ALLOC_SIG.text))),
        })
        .unwrap_or(Err(GearError::MissingExport { export: cut(abi::ALLOC_EXPORT) }));
    let alloc_export = alloc_export.map_err(|e| found.push(e)).ok();
    let required = [(abi::FREE_EXPORT, &abi::FREE_SIG), (config.entrypoint.as_str(), &abi::PROCESS_SIG)];
    for (name, sig) in required {
        match func_export(name) {
            Ok(Some(ty)) if fits(&ty, sig) => {}
            Ok(None) => found.push(GearError::MissingExport { export: cut(name) }),
            _ => found.push(wrong(name, sig.text)),
        }
    }

    let memory = module.exports().find_map(|export| match export.ty() {
        ExternType::Memory(ty) => Some((String::from(export.name()), ty.minimum(), ty.maximum())),
        _ => None,
    });
    let Some((memory_export, initial_pages, maximum_pages)) = memory else {
        found.push(GearError::NoMemoryExport);
        return None;
    };
    if initial_pages > u64::from(config.memory_limit_pages) {
        found.push(GearError::InitialMemoryTooLarge { limit: config.memory_limit_pages, got: initial_pages });
    }
    let alloc_export = alloc_export?;
    (found.len() == before).then_some(ModuleShape {
        initial_pages,
        maximum_pages,
        alloc_export,
        imports_log,
        module_bytes,
        memory_export,
    })
}

/// A verified module compiled once, with its linker: what every instance of a gear is
/// made from. Carries the module's catalog hash and how it came to be trusted.
pub struct Compiled {
    engine: Engine,
    module: Module,
    linker: Linker<Host>,
    shape: ModuleShape,
    hash: CatalogHash,
    trust: Trust,
}

impl core::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Compiled").field("hash", &self.hash).field("trust", &self.trust).finish()
    }
}

impl Compiled {
    /// Checks the shape of a verified module under `config` and compiles it on `engine`.
    ///
    /// # Errors
    /// [`GearError::BadConfig`], [`GearError::InvalidModule`], or the shape error naming
    /// the import or export.
    pub fn new<B: AsRef<[u8]>>(
        engine: &GearEngine,
        module: &VerifiedModule<B>,
        config: &GearConfig,
    ) -> Result<Self, GearError> {
        let (compiled, shape) = compile(engine, module.bytes(), config)?;
        let mut linker = Linker::new(&engine.engine);
        linker
            .func_wrap(abi::LOG_IMPORT_MODULE, abi::LOG_IMPORT_NAME, log_host)
            .map_err(|e| GearError::Instantiation { detail: detail_of(&e) })?;
        Ok(Self {
            engine: engine.engine.clone(),
            module: compiled,
            linker,
            shape,
            hash: module.hash(),
            trust: module.trust(),
        })
    }

    /// Returns what the shape check found.
    pub fn shape(&self) -> &ModuleShape {
        &self.shape
    }

    /// Returns the catalog hash of the module.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }

    /// Returns how the module came to be trusted.
    pub fn trust(&self) -> Trust {
        self.trust
    }

    /// Makes a fresh instance in a fresh store, running the start function on the
    /// configuration's start fuel.
    pub(super) fn instantiate(&self, config: &GearConfig, sink: &mut dyn LogSink) -> Result<Live, GearError> {
        let memory_bytes = (config.memory_limit_pages as usize).saturating_mul(WASM_PAGE_BYTES);
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .memories(1)
            .tables(1)
            .table_elements(config.max_table_elements as usize)
            .instances(1)
            .trap_on_grow_failure(false)
            .build();
        let host = Host {
            limits,
            memory: None,
            memory_export: self.shape.memory_export.clone(),
            lines: Vec::new(),
            dropped_lines: 0,
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limits);
        let instantiation = |e: WasmiError| GearError::Instantiation { detail: detail_of(&e) };
        store.set_fuel(config.fuel.for_start).map_err(instantiation)?;
        let started = self.linker.instantiate_and_start(&mut store, &self.module);
        store.data_mut().flush(sink);
        let instance = started.map_err(|e| match e.as_trap_code() {
            Some(_) => GearError::StartFailed { fault: Fault::of(&e) },
            None => instantiation(e),
        })?;
        let missing = |name: &str| GearError::MissingExport { export: cut(name) };
        let memory =
            instance.get_memory(&store, &self.shape.memory_export).ok_or(GearError::NoMemoryExport)?;
        store.data_mut().memory = Some(memory);
        let alloc_name = self.shape.alloc_export;
        let alloc = instance.get_typed_func(&store, alloc_name).map_err(|_| missing(alloc_name))?;
        let free =
            instance.get_typed_func(&store, abi::FREE_EXPORT).map_err(|_| missing(abi::FREE_EXPORT))?;
        let process =
            instance.get_typed_func(&store, &config.entrypoint).map_err(|_| missing(&config.entrypoint))?;
        Ok(Live { store, memory, alloc, alloc_name, free, process })
    }
}

/// The store's data: resource limits, the memory handle and the log lines of the call.
pub(super) struct Host {
    limits: StoreLimits,
    /// The exported memory, kept once the instance exists (`None` while the start
    /// function runs, when `env.log` looks it up by name).
    memory: Option<Memory>,
    memory_export: String,
    lines: Vec<(LogLevel, String)>,
    dropped_lines: usize,
}

impl Host {
    pub(super) fn flush(&mut self, sink: &mut dyn LogSink) {
        for (level, line) in self.lines.drain(..) {
            sink.log(level, &line);
        }
        if self.dropped_lines > 0 {
            let mut note = String::new();
            let _ = write!(
                note,
                "{} more log lines dropped (limit {MAX_LOG_LINES_PER_CALL} per call)",
                self.dropped_lines
            );
            sink.log(LogLevel::Warn, &note);
            self.dropped_lines = 0;
        }
    }
}

fn log_host(mut caller: Caller<'_, Host>, level: i32, ptr: i32, len: i32) {
    let memory = match caller.data().memory {
        Some(memory) => memory,
        None => {
            let name = caller.data().memory_export.clone();
            let Some(memory) = caller.get_export(&name).and_then(wasmi::Extern::into_memory) else {
                return;
            };
            memory
        }
    };
    let (data, host) = memory.data_and_store_mut(&mut caller);
    if host.lines.len() >= MAX_LOG_LINES_PER_CALL {
        host.dropped_lines += 1;
        return;
    }
    // Out-of-bounds ranges are ignored, as fluxrig does; long lines are cut.
    let Some(range) = abi::guest_range(ptr as u32, len as u32, data.len()) else {
        return;
    };
    let end = range.end.min(range.start.saturating_add(MAX_LOG_LINE_BYTES));
    let Some(bytes) = data.get(range.start..end) else {
        return;
    };
    let line = String::from_utf8_lossy(bytes).into_owned();
    host.lines.push((LogLevel::from_guest(level), line));
}

/// A live instance: its store and the exports the host calls.
pub(super) struct Live {
    pub(super) store: Store<Host>,
    pub(super) memory: Memory,
    pub(super) alloc: TypedFunc<i32, i32>,
    pub(super) alloc_name: &'static str,
    pub(super) free: TypedFunc<(i32, i32), ()>,
    pub(super) process: TypedFunc<(i32, i32), i64>,
}
