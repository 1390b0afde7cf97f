//! One loaded gear: a verified module on the wasmi interpreter, with its memory limit,
//! fuel, shape checks and the per-message call sequence.
//!
//! Contract (`spec/fluxrig-compat.md` section 1, every BETTER item): [`Gear::load`] takes
//! a [`VerifiedModule`], checks its shape (imports, exports, initial memory) with
//! [`inspect`], compiles it eagerly and instantiates it with fuel for the start function.
//! [`Gear::process_bytes`] then runs, per message: `alloc(n)`, write, the entrypoint,
//! read the output, `free(input)`, `free(output)`, each call with its own fuel.
//!
//! Guarantees:
//! - memory growth past `memory_limit_pages` fails inside the guest (`memory.grow`
//!   returns -1); a module whose initial memory is larger is refused at load;
//! - every guest call runs on a fuel budget; running out costs that message;
//! - the input buffer is freed on every path that does not trap; an output that is the
//!   input buffer is freed once;
//! - `alloc` returning 0, a result range outside memory or overflowing 32 bits, and an
//!   output over `max_output_bytes` are per-message errors;
//! - after a trap or fuel exhaustion the instance (and its store) is dropped and rebuilt
//!   from the compiled module before the next message;
//! - `env.log` lines reach the caller's [`LogSink`] after each guest call, at most
//!   [`MAX_LOG_LINES_PER_CALL`] lines of at most [`MAX_LOG_LINE_BYTES`]; out-of-bounds
//!   ranges are ignored, as in fluxrig.
//!
//! Out of scope: routing, clocks, I/O. wasmi types never leave this module.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write as _;

use wasmi::{
    Caller, CompilationMode, Config, Engine, Error as WasmiError, ExternType, FuncType, Linker, Memory,
    Module, Store, StoreLimits, StoreLimitsBuilder, TrapCode, TypedFunc, ValType,
};

use crate::abi::{self, LogLevel, Returned};
use crate::limits::{
    DEFAULT_FUEL_FOR_START, DEFAULT_FUEL_PER_ALLOC, DEFAULT_FUEL_PER_MESSAGE, DEFAULT_MEMORY_LIMIT_PAGES,
    MAX_ENCODED_MESSAGE_BYTES, MAX_FUEL_PER_CALL, MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES,
    MAX_MEMORY_LIMIT_PAGES, MAX_RECURSION_DEPTH, MAX_TABLE_ELEMENTS, MAX_VALUE_STACK_BYTES, WASM_PAGE_BYTES,
};
use crate::message::{FluxMsg, MessageError};
use crate::verify::{CatalogHash, VerifiedModule};

/// A name from a module (an import or export), cut to 48 bytes so errors stay small.
pub type Name = heapless::String<48>;

/// Detail text from the engine, cut to 96 bytes.
pub type Detail = heapless::String<96>;

fn cut<const N: usize>(text: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

fn detail_of(e: &dyn fmt::Display) -> Detail {
    struct Cut(Detail);
    impl fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                self.0.push(c).map_err(|_| fmt::Error)?;
            }
            Ok(())
        }
    }
    let mut cut = Cut(Detail::new());
    let _ = write!(cut, "{e}");
    cut.0
}

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
    /// Checks every value against its ceiling.
    ///
    /// # Errors
    /// [`GearError::BadConfig`] naming the value, its limit and what was asked.
    pub fn check(&self) -> Result<(), GearError> {
        let bad = |what, limit: u64, got: u64| Err(GearError::BadConfig { what, limit, got });
        if self.memory_limit_pages == 0 || self.memory_limit_pages > MAX_MEMORY_LIMIT_PAGES {
            return bad("memory_limit_pages", MAX_MEMORY_LIMIT_PAGES.into(), self.memory_limit_pages.into());
        }
        let fuels = [
            ("fuel per message", self.fuel.per_message),
            ("fuel per alloc", self.fuel.per_alloc),
            ("fuel for start", self.fuel.for_start),
        ];
        for (what, got) in fuels {
            if got == 0 || got > MAX_FUEL_PER_CALL {
                return bad(what, MAX_FUEL_PER_CALL, got);
            }
        }
        if self.max_table_elements > MAX_TABLE_ELEMENTS {
            return bad("max_table_elements", MAX_TABLE_ELEMENTS.into(), self.max_table_elements.into());
        }
        if self.max_output_bytes == 0 || self.max_output_bytes > MAX_ENCODED_MESSAGE_BYTES {
            return bad("max_output_bytes", MAX_ENCODED_MESSAGE_BYTES as u64, self.max_output_bytes as u64);
        }
        Ok(())
    }
}

/// A guest trap, in our own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call used up its fuel.
    OutOfFuel,
    /// `unreachable` executed (a Zig or Rust panic in the guest).
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// Call stack or value stack exhausted (deep recursion).
    StackOverflow,
    /// Integer division by zero or overflow, or a bad float-to-int conversion.
    Arithmetic,
    /// A bad indirect call (table bounds, null entry, type mismatch).
    IndirectCall,
    /// Any other trap, including a host resource failure.
    Other,
}

impl Fault {
    fn of(e: &WasmiError) -> Self {
        match e.as_trap_code() {
            Some(TrapCode::OutOfFuel) => Self::OutOfFuel,
            Some(TrapCode::UnreachableCodeReached) => Self::Unreachable,
            Some(TrapCode::MemoryOutOfBounds) => Self::MemoryOutOfBounds,
            Some(TrapCode::StackOverflow) => Self::StackOverflow,
            Some(
                TrapCode::IntegerDivisionByZero
                | TrapCode::IntegerOverflow
                | TrapCode::BadConversionToInteger,
            ) => Self::Arithmetic,
            Some(TrapCode::TableOutOfBounds | TrapCode::IndirectCallToNull | TrapCode::BadSignature) => {
                Self::IndirectCall
            }
            _ => Self::Other,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfFuel => "ran out of fuel",
            Self::Unreachable => "trapped: unreachable executed (guest panic)",
            Self::MemoryOutOfBounds => "trapped: memory access out of bounds",
            Self::StackOverflow => "trapped: stack overflow",
            Self::Arithmetic => "trapped: arithmetic error",
            Self::IndirectCall => "trapped: bad indirect call",
            Self::Other => "trapped",
        })
    }
}

/// Why a gear could not be loaded or could not process a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GearError {
    /// A configuration value is zero or over its ceiling.
    BadConfig {
        /// The setting.
        what: &'static str,
        /// Its ceiling.
        limit: u64,
        /// What was asked.
        got: u64,
    },
    /// The engine refused the module (not valid Wasm, or a feature not supported).
    InvalidModule {
        /// The engine's words.
        detail: Detail,
    },
    /// An import other than `env.log`.
    ForbiddenImport {
        /// `module.name` of the import.
        import: Name,
    },
    /// `env.log` imported with a type other than `(i32, i32, i32) -> ()`.
    WrongLogImportType,
    /// A required export is missing.
    MissingExport {
        /// The export's name (`alloc` stands for `alloc` or `malloc`).
        export: Name,
    },
    /// A required export has the wrong kind or type.
    WrongExportType {
        /// The export's name.
        export: Name,
        /// The type it must have.
        expected: &'static str,
    },
    /// The module exports no linear memory, so the host cannot pass messages.
    NoMemoryExport,
    /// The module's initial memory exceeds `memory_limit_pages`.
    InitialMemoryTooLarge {
        /// `memory_limit_pages`.
        limit: u32,
        /// The initial pages the module declares.
        got: u64,
    },
    /// Instantiation failed (the start function trapped or ran out of fuel).
    StartFailed {
        /// What happened.
        fault: Fault,
    },
    /// Instantiation failed for a reason other than a trap (a resource limit).
    Instantiation {
        /// The engine's words.
        detail: Detail,
    },
    /// A guest call trapped or ran out of fuel; the instance will be rebuilt.
    Fault {
        /// The export that was called.
        call: Name,
        /// What happened.
        fault: Fault,
    },
    /// The input message is longer than [`MAX_ENCODED_MESSAGE_BYTES`].
    InputTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// The message size.
        got: usize,
    },
    /// `alloc` returned 0 (the guest is out of memory).
    AllocReturnedNull {
        /// Bytes asked for.
        len: u32,
    },
    /// `alloc` returned a range outside memory or past 4 GiB; the instance will be rebuilt.
    AllocOutOfRange {
        /// Returned pointer.
        ptr: u32,
        /// Bytes asked for.
        len: u32,
        /// Memory size in bytes.
        memory: usize,
    },
    /// The entrypoint returned a range outside memory or past 4 GiB.
    OutputOutOfRange {
        /// Returned pointer.
        ptr: u32,
        /// Returned length.
        len: u32,
        /// Memory size in bytes.
        memory: usize,
    },
    /// The entrypoint returned more than `max_output_bytes`.
    OutputTooLarge {
        /// `max_output_bytes`.
        limit: usize,
        /// Returned length.
        got: usize,
    },
    /// The output is not a valid fluxMsg.
    InvalidOutput(MessageError),
}

impl GearError {
    fn fault(call: &str, fault: Fault) -> Self {
        Self::Fault { call: cut(call), fault }
    }

    /// Returns `true` if the error leaves the guest's state unknown, so the instance is
    /// rebuilt before the next message.
    pub fn rebuilds_instance(&self) -> bool {
        matches!(self, Self::Fault { .. } | Self::AllocOutOfRange { .. } | Self::StartFailed { .. })
    }
}

impl fmt::Display for GearError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadConfig { what, limit, got } => {
                write!(f, "{what} is {got}, it must be between 1 and {limit}")
            }
            Self::InvalidModule { detail } => write!(f, "invalid module: {detail}"),
            Self::ForbiddenImport { import } => {
                write!(f, "module imports '{import}'; a gear may import only env.log(i32, i32, i32)")
            }
            Self::WrongLogImportType => {
                f.write_str("module imports env.log with a type other than (i32, i32, i32) -> ()")
            }
            Self::MissingExport { export } => write!(f, "module does not export '{export}'"),
            Self::WrongExportType { export, expected } => {
                write!(f, "export '{export}' must be a function {expected}")
            }
            Self::NoMemoryExport => f.write_str("module does not export its linear memory"),
            Self::InitialMemoryTooLarge { limit, got } => write!(
                f,
                "module wants {got} pages ({} KiB) of initial memory, but memory_limit_pages is \
                 {limit}; raise memory_limit_pages to {got} or build the module with less \
                 initial memory (Zig: --stack 65536; Rust/C: -C link-arg=-zstack-size=65536)",
                got.saturating_mul(64)
            ),
            Self::StartFailed { fault } => write!(f, "start function {fault}"),
            Self::Instantiation { detail } => write!(f, "cannot instantiate module: {detail}"),
            Self::Fault { call, fault } => write!(f, "guest '{call}' {fault}"),
            Self::InputTooLarge { limit, got } => {
                write!(f, "message is {got} bytes, limit is {limit} bytes")
            }
            Self::AllocReturnedNull { len } => {
                write!(f, "guest alloc({len}) returned 0 (guest out of memory)")
            }
            Self::AllocOutOfRange { ptr, len, memory } => {
                write!(f, "guest alloc({len}) returned {ptr}, outside its {memory}-byte memory")
            }
            Self::OutputOutOfRange { ptr, len, memory } => {
                write!(f, "guest returned {len} bytes at {ptr}, outside its {memory}-byte memory")
            }
            Self::OutputTooLarge { limit, got } => {
                write!(f, "guest returned {got} bytes, limit is {limit} bytes")
            }
            Self::InvalidOutput(e) => write!(f, "guest output is not a fluxMsg: {e}"),
        }
    }
}

/// Where a gear's `env.log` lines go.
pub trait LogSink {
    /// Takes one line from the guest (already cut to [`MAX_LOG_LINE_BYTES`]).
    fn log(&mut self, level: LogLevel, line: &str);
}

impl<F: FnMut(LogLevel, &str)> LogSink for F {
    fn log(&mut self, level: LogLevel, line: &str) {
        self(level, line);
    }
}

/// What the guest made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest returned length 0.
    Dropped,
    /// The guest returned these bytes.
    Output(Vec<u8>),
}

/// What [`inspect`] learns of a module without running it.
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

const SIG_ALLOC: &str = "(i32) -> i32";
const SIG_FREE: &str = "(i32, i32) -> ()";
const SIG_PROCESS: &str = "(i32, i32) -> i64";

fn has_type(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    ty.params() == params && ty.results() == results
}

fn engine_config() -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .set_max_stack_height(MAX_VALUE_STACK_BYTES)
        .set_max_recursion_depth(MAX_RECURSION_DEPTH)
        .set_max_cached_stacks(1);
    config
}

/// Checks a module's shape against the gear contract without running any of it:
/// imports (only `env.log`), exports and their types, memory export and initial size.
///
/// Works on raw bytes so that an importer can refuse a bad module before it is signed
/// into a catalog; it compiles the module but never instantiates it.
///
/// # Errors
/// The first [`GearError`] found, naming the import or export.
pub fn inspect(module: &[u8], config: &GearConfig) -> Result<ModuleShape, GearError> {
    compile(module, config).map(|(_, _, shape)| shape)
}

fn compile(bytes: &[u8], config: &GearConfig) -> Result<(Engine, Module, ModuleShape), GearError> {
    use ValType::{I32, I64};
    config.check()?;
    crate::section::check_framing(bytes).map_err(|e| GearError::InvalidModule { detail: detail_of(&e) })?;
    let engine = Engine::new(&engine_config());
    let module =
        Module::new(&engine, bytes).map_err(|e| GearError::InvalidModule { detail: detail_of(&e) })?;

    let mut imports_log = false;
    for import in module.imports() {
        let is_log = import.module() == abi::LOG_IMPORT_MODULE && import.name() == abi::LOG_IMPORT_NAME;
        match import.ty() {
            ExternType::Func(ty) if is_log => {
                if !has_type(ty, &[I32, I32, I32], &[]) {
                    return Err(GearError::WrongLogImportType);
                }
                imports_log = true;
            }
            _ => {
                let mut name: Name = cut(import.module());
                let _ = name.push('.');
                let rest: Name = cut(import.name());
                let _ = name.push_str(&rest[..rest.len().min(name.capacity() - name.len())]);
                return Err(GearError::ForbiddenImport { import: name });
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
            Ok(Some(ty)) if has_type(&ty, &[I32], &[I32]) => Some(Ok(name)),
            _ => Some(Err(wrong(name, SIG_ALLOC))),
        })
        .unwrap_or(Err(GearError::MissingExport { export: cut(abi::ALLOC_EXPORT) }))?;
    let required = [
        (abi::FREE_EXPORT, SIG_FREE, &[I32, I32][..], &[][..]),
        (config.entrypoint.as_str(), SIG_PROCESS, &[I32, I32][..], &[I64][..]),
    ];
    for (name, sig, params, results) in required {
        match func_export(name) {
            Ok(Some(ty)) if has_type(&ty, params, results) => {}
            Ok(None) => return Err(GearError::MissingExport { export: cut(name) }),
            _ => return Err(wrong(name, sig)),
        }
    }

    let mut memory = None;
    for export in module.exports() {
        if let (ExternType::Memory(ty), None) = (export.ty(), &memory) {
            memory = Some((String::from(export.name()), ty.minimum(), ty.maximum()));
        }
    }
    let (memory_export, initial_pages, maximum_pages) = memory.ok_or(GearError::NoMemoryExport)?;
    if initial_pages > u64::from(config.memory_limit_pages) {
        return Err(GearError::InitialMemoryTooLarge {
            limit: config.memory_limit_pages,
            got: initial_pages,
        });
    }
    let shape = ModuleShape {
        initial_pages,
        maximum_pages,
        alloc_export,
        imports_log,
        module_bytes: bytes.len(),
        memory_export,
    };
    Ok((engine, module, shape))
}

/// The store's data: resource limits and the log lines of the current call.
struct Host {
    limits: StoreLimits,
    memory_export: String,
    lines: Vec<(LogLevel, String)>,
    dropped_lines: usize,
}

impl Host {
    fn flush(&mut self, sink: &mut dyn LogSink) {
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
    let Some(memory) = caller.get_export(&caller.data().memory_export).and_then(wasmi::Extern::into_memory)
    else {
        return;
    };
    let (data, host) = memory.data_and_store_mut(&mut caller);
    if host.lines.len() >= MAX_LOG_LINES_PER_CALL {
        host.dropped_lines += 1;
        return;
    }
    // Out-of-bounds ranges are ignored, as fluxrig does.
    let Some(range) = abi::guest_range(ptr as u32, len as u32, data.len()) else {
        return;
    };
    let bytes = &data[range.start..range.end.min(range.start + MAX_LOG_LINE_BYTES)];
    let line = String::from_utf8_lossy(bytes).into_owned();
    host.lines.push((LogLevel::from_guest(level), line));
}

/// A live instance: its store and the exports the host calls.
struct Live {
    store: Store<Host>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    alloc_name: &'static str,
    free: TypedFunc<(i32, i32), ()>,
    process: TypedFunc<(i32, i32), i64>,
}

/// A compiled module with its linker: what every instance of a gear is made from.
struct Compiled {
    engine: Engine,
    module: Module,
    linker: Linker<Host>,
    shape: ModuleShape,
}

impl Compiled {
    /// Makes a fresh instance in a fresh store, running the start function on
    /// [`FuelBudget::for_start`].
    fn instantiate(&self, config: &GearConfig, sink: &mut dyn LogSink) -> Result<Live, GearError> {
        let memory_bytes = config.memory_limit_pages as usize * WASM_PAGE_BYTES;
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
        let alloc_name = self.shape.alloc_export;
        let alloc = instance.get_typed_func(&store, alloc_name).map_err(|_| missing(alloc_name))?;
        let free =
            instance.get_typed_func(&store, abi::FREE_EXPORT).map_err(|_| missing(abi::FREE_EXPORT))?;
        let process =
            instance.get_typed_func(&store, &config.entrypoint).map_err(|_| missing(&config.entrypoint))?;
        Ok(Live { store, memory, alloc, alloc_name, free, process })
    }
}

/// One loaded gear. See the module docs for the per-message contract.
pub struct Gear {
    compiled: Compiled,
    config: GearConfig,
    hash: CatalogHash,
    /// The running instance; `None` after a fault, until the next message rebuilds it.
    live: Option<Live>,
    fuel_used: u64,
}

impl fmt::Debug for Gear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gear").field("hash", &self.hash).field("config", &self.config).finish()
    }
}

impl Gear {
    /// Checks the shape of a verified module, compiles it and instantiates it (running its
    /// start function on [`FuelBudget::for_start`]).
    ///
    /// # Errors
    /// Any shape error of [`inspect`], [`GearError::StartFailed`] or
    /// [`GearError::Instantiation`].
    pub fn load(
        module: &VerifiedModule<'_>,
        config: GearConfig,
        sink: &mut dyn LogSink,
    ) -> Result<Self, GearError> {
        let (engine, compiled, shape) = compile(module.bytes(), &config)?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(abi::LOG_IMPORT_MODULE, abi::LOG_IMPORT_NAME, log_host)
            .map_err(|e| GearError::Instantiation { detail: detail_of(&e) })?;
        let compiled = Compiled { engine, module: compiled, linker, shape };
        let live = compiled.instantiate(&config, sink)?;
        Ok(Self { compiled, config, hash: module.hash(), live: Some(live), fuel_used: 0 })
    }

    /// Returns the catalog hash of the module this gear runs.
    pub fn hash(&self) -> CatalogHash {
        self.hash
    }

    /// Returns what [`inspect`] found.
    pub fn shape(&self) -> &ModuleShape {
        &self.compiled.shape
    }

    /// Returns the configuration the gear runs with.
    pub fn config(&self) -> &GearConfig {
        &self.config
    }

    /// Returns the fuel the last [`Gear::process_bytes`] used over all its guest calls.
    pub fn last_fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Runs one encoded message through the guest.
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

    /// Encodes `msg`, runs it through the guest and decodes the output.
    ///
    /// # Errors
    /// As [`Gear::process_bytes`], plus [`GearError::InvalidOutput`].
    pub fn process(&mut self, msg: &FluxMsg, sink: &mut dyn LogSink) -> Result<Option<FluxMsg>, GearError> {
        match self.process_bytes(&msg.encode(), sink)? {
            Outcome::Dropped => Ok(None),
            Outcome::Output(bytes) => FluxMsg::decode(&bytes).map(Some).map_err(GearError::InvalidOutput),
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
        func: TypedFunc<P, R>,
        name: &str,
        fuel: u64,
        params: P,
    ) -> Result<R, GearError> {
        let store = &mut self.live.store;
        store.set_fuel(fuel).map_err(|_| GearError::fault(name, Fault::Other))?;
        let result = func.call(&mut *store, params);
        self.fuel_used += fuel - store.get_fuel().unwrap_or(0);
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
        let Some(range) = abi::guest_range(ptr, len, data.len()) else {
            return Err(GearError::AllocOutOfRange { ptr, len, memory: data.len() });
        };
        data[range].copy_from_slice(input);

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
        let Some(range) = abi::guest_range(out_ptr, out_len, data.len()) else {
            let memory = data.len();
            self.free(ptr, len)?;
            return Err(GearError::OutputOutOfRange { ptr: out_ptr, len: out_len, memory });
        };
        let output = data[range].to_vec();
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
