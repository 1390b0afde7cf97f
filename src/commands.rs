//! What each command does, given its parsed arguments: dispatch and the words a person
//! reads. Results go to standard output, diagnostics to standard error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::gear::FuelBudget;
use fluxrig_core::verify::{self, CatalogHash};
use fluxrig_core::{Delivery, Entry, GearConfig, MsgBytes, RackSink};

use crate::catalog::{self, VendorStatus};
use crate::cli::*;
use crate::error::{Error, Result};
use crate::files::{read_limited, write_atomic};
use crate::json;
use crate::keys;
use crate::listen::ListenLimits;
use crate::logger;
use crate::plan::{self, Checks};
use crate::pump;
use crate::queue::{Item, Queue, QueueLimits};
use crate::run::{self, Rig};
use crate::scenario::{self, MAX_SCENARIO_BYTES};

/// Writes one line of results to standard output. A reader that closed the pipe early
/// (`fluxrig wasm list | head -n 1`) ends the command quietly instead of with a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::say_line(format_args!($($arg)*))
    };
}

/// See [`say!`].
pub fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Runs one parsed command.
pub fn run(top: Top) -> Result<()> {
    match top.command {
        Command::Keys(Keys { command: KeysCommand::GenCluster(c) }) => gen_cluster(&c),
        Command::Wasm(Wasm { command }) => match command {
            WasmCommand::Sign(c) => sign(&c),
            WasmCommand::Import(c) => import(&c),
            WasmCommand::List(c) => list(&c),
            WasmCommand::Verify(c) => verify_file(&c),
            WasmCommand::Call(c) => call(&c),
        },
        Command::Scenario(ScenarioCmd { command }) => match command {
            ScenarioCommand::Import(c) => scenario_import(&c),
            ScenarioCommand::Validate(c) => scenario_validate(&c),
            ScenarioCommand::List(c) => scenario_list(&c),
            ScenarioCommand::Show(c) => scenario_show(&c),
            ScenarioCommand::Activate(c) => scenario_activate(&c),
        },
        Command::Run(c) => run_rack(&c),
        Command::Gear(GearCmd { command: GearCommand::New(c) }) => gear_new(&c),
        Command::Version(_) => {
            say!("{}", crate::cli::version_line());
            Ok(())
        }
    }
}

fn gen_cluster(c: &GenCluster) -> Result<()> {
    let path = c.out.clone().unwrap_or_else(|| c.dir.join(&c.name));
    let key = keys::generate(&path, c.force)?;
    say!("wrote {} and {}", path.display(), keys::pub_path(&path).display());
    say!("public key: {}", json::hex(&key.public_key().0));
    Ok(())
}

fn sign(c: &Sign) -> Result<()> {
    let public = catalog::sign(&c.file, &c.key)?;
    say!("signed {} (vendor key {})", c.file.display(), keys::fingerprint(&public));
    Ok(())
}

fn import(c: &Import) -> Result<()> {
    // The bus first: an unreachable server or a module over its cap changes nothing.
    let bus = c.bus_flags().options("fluxrig-import")?.map(|o| crate::bus::connect(&o)).transpose()?;
    if bus.is_some() {
        let size = std::fs::metadata(&c.file).map(|m| m.len()).unwrap_or(0);
        if size > crate::bus::MAX_KV_VALUE_BYTES as u64 {
            return Err(Error::invalid(format!(
                "{}: module is {size} bytes, more than the {} bytes a value of the bus catalog '{}' may hold",
                c.file.display(),
                crate::bus::MAX_KV_VALUE_BYTES,
                crate::bus::CATALOG_BUCKET
            )));
        }
    }
    let done = catalog::import(&c.data_dir, &c.file, c.allow_unsigned, c.new_cluster_key)?;
    if let Some(bus) = &bus {
        catalog::publish(bus, &done)?;
    }
    let vendor = match &done.vendor {
        VendorStatus::Trusted(name) => format!("vendor signature verified with trusted key '{name}'"),
        VendorStatus::UnsignedAllowed => {
            logger::warn("import", "module has no vendor signature; imported because of --allow-unsigned");
            "unsigned (allowed by --allow-unsigned)".to_string()
        }
    };
    say!("{}", done.hash);
    eprintln!(
        "{} {} as snake://wasm_catalog/{}.wasm\n  {vendor}\n  countersigned with the node's cluster key\n  \
         stored at {}{}\n  exports {}/free/process; initial memory {} pages",
        if done.already_present { "already in the catalog:" } else { "imported" },
        c.file.display(),
        done.hash,
        done.path.display(),
        c.nats
            .as_ref()
            .map(|url| format!("\n  put into the bus catalog {url} bucket wasm_catalog"))
            .unwrap_or_default(),
        done.shape.alloc_export,
        done.shape.initial_pages,
    );
    Ok(())
}

fn list(c: &List) -> Result<()> {
    let rows = catalog::list(&c.data_dir)?;
    if rows.is_empty() {
        eprintln!("the catalog {} is empty", c.data_dir.join("wasm").display());
    }
    let (mut bad, mut trust) = (0, false);
    for row in &rows {
        if let Err(e) = &row.status {
            bad += 1;
            trust |= e.exit_code() == crate::error::EXIT_UNTRUSTED;
        }
        if c.json {
            let error = row.status.as_ref().err().map(ToString::to_string);
            let object = serde_json::json!({
                "hash": row.name.strip_suffix(".wasm").unwrap_or(&row.name),
                "file": row.name,
                "bytes": row.bytes,
                "ok": error.is_none(),
                "error": error,
            });
            say!("{object}");
            continue;
        }
        match &row.status {
            Ok(()) => say!("{}  {:>8} B  ok", row.name, row.bytes),
            Err(e) => say!("{}  {:>8} B  REFUSED: {e}", row.name, row.bytes),
        }
    }
    if bad > 0 {
        let summary = format!("{bad} of {} catalog modules would be refused", rows.len());
        return Err(Error::Checks { summary, trust });
    }
    Ok(())
}

fn verify_file(c: &VerifyCmd) -> Result<()> {
    let module = catalog::read_module(&c.file)?;
    let trusted = keys::load_trust_store(&c.data_dir)?;
    let mut failures = Vec::new();
    let mut trust = false;
    match catalog::check_vendor(&module, &trusted, false) {
        Ok(VendorStatus::Trusted(name)) => say!("vendor signature: ok (trusted key '{name}')"),
        Ok(VendorStatus::UnsignedAllowed) => {}
        Err(e) => {
            say!("vendor signature: {e}");
            failures.push("vendor signature");
            trust |= e.is_trust_failure();
        }
    }
    let has_cluster = verify::has_cluster_signature(&module).map_err(|e| Error::verify(&c.file, e))?;
    if has_cluster {
        match keys::cluster_public_key(&c.data_dir) {
            Ok(key) => match verify::verify_cluster(&module[..], &key, None) {
                Ok(v) => say!("cluster signature: ok (catalog hash {})", v.hash()),
                Err(e) => {
                    say!("cluster signature: {e}");
                    failures.push("cluster signature");
                    trust |= e.is_trust_failure();
                }
            },
            Err(e) => {
                say!("cluster signature: cannot check: {e}");
                failures.push("cluster signature");
            }
        }
    } else {
        say!("cluster signature: none (not imported into a catalog)");
    }
    let config = GearConfig {
        entrypoint: c.entrypoint.clone(),
        memory_limit_pages: c.memory_limit_pages,
        ..GearConfig::default()
    };
    let problems = fluxrig_core::gear::problems(&module, &config);
    if problems.is_empty() {
        let shape = catalog::check_shape(&c.file, &module, &c.entrypoint)?;
        say!(
            "shape: ok ({}, free, {}; env.log {}; initial memory {} of {} pages)",
            shape.alloc_export,
            c.entrypoint,
            if shape.imports_log { "imported" } else { "not imported" },
            shape.initial_pages,
            c.memory_limit_pages
        );
    } else {
        say!("shape: {} problem(s):", problems.len());
        for problem in &problems {
            say!("  - {problem}");
            if let Some(fix) = crate::author::advice(problem) {
                say!("    fix: {fix}");
            }
        }
        failures.push("shape");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Checks { summary: format!("{}: {} failed", c.file.display(), failures.join(", ")), trust })
    }
}

/// What the gear of `wasm call` made of one message: printed once, counted every time.
#[derive(Default)]
struct CallOutput {
    /// Print the output (the first run of each message only).
    print: bool,
    /// The outcome of the last run: `Err` for a failure.
    outcome: Option<Result<()>>,
    /// Whether the last failure drops the instance (the next call rebuilds it).
    rebuilds: bool,
}

impl RackSink for CallOutput {
    fn deliver(&mut self, delivery: Delivery) {
        self.rebuilds = false;
        self.outcome = Some(match delivery {
            Delivery::Output { msg, .. } => {
                if self.print {
                    say!("{}", json::to_json(&msg.to_msg()));
                }
                Ok(())
            }
            Delivery::Dropped { .. } => {
                if self.print {
                    eprintln!("the gear dropped the message");
                }
                Ok(())
            }
            Delivery::Failed { error, .. } => {
                self.rebuilds = error.rebuilds_instance();
                Err(Error::gear("gear", error))
            }
            Delivery::HopLimit { .. } | Delivery::QueueFull { .. } => {
                Err(Error::invalid("the message was refused by the rack's limits"))
            }
        });
    }

    fn log(&mut self, _gear: usize, level: fluxrig_core::abi::LogLevel, line: &str) {
        if self.print {
            logger::guest(level, "gear", line);
        }
    }
}

/// The messages of `wasm call`: -m TEXT, -m @FILE, standard input, or "hello".
fn call_messages(c: &Call) -> Result<Vec<MsgBytes>> {
    use std::io::IsTerminal;
    let one = |text: &[u8]| pump::line_to_message(text).map_err(|e| Error::invalid(format!("message: {e}")));
    match &c.message {
        Some(text) => match text.strip_prefix('@') {
            Some(path) => {
                let bytes = read_limited(Path::new(path), pump::MAX_STDIN_ITEM_BYTES, "message")?;
                let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                Ok(vec![one(line.strip_suffix(b"\r").unwrap_or(line))?])
            }
            None => Ok(vec![one(text.as_bytes())?]),
        },
        None if !std::io::stdin().is_terminal() => {
            // Standard input through the rack's own reader: same framing, same limits.
            let queue = std::sync::Arc::new(Queue::new(QueueLimits::default()));
            let producer = queue.producer();
            let input = pump::Input {
                name: "standard input".into(),
                format: c.input_format,
                max_item_bytes: pump::MAX_STDIN_ITEM_BYTES,
            };
            let reader = std::thread::spawn(move || pump::read_input(std::io::stdin(), &input, &producer));
            let mut messages = Vec::new();
            let mut bad = 0;
            while let Some(item) = queue.pop(true) {
                match item {
                    Item::Message(_, msg) => messages.push(msg),
                    Item::BadInput(text) => {
                        bad += 1;
                        logger::error("input", &text);
                    }
                    Item::Swap(_) => {}
                }
            }
            let _ = reader.join();
            if bad > 0 {
                return Err(Error::invalid(format!("{bad} input item(s) are not messages")));
            }
            if messages.is_empty() {
                logger::info("call", "standard input is empty: calling with \"hello\"");
                messages.push(one(b"hello")?);
            }
            Ok(messages)
        }
        None => Ok(vec![one(b"hello")?]),
    }
}

/// Minimum, median and maximum of `values` (sorted in place).
fn spread<T: Copy + Ord + Default>(values: &mut [T]) -> (T, T, T) {
    values.sort_unstable();
    let at = |i: usize| values.get(i).copied().unwrap_or_default();
    (at(0), at(values.len() / 2), at(values.len().saturating_sub(1)))
}

fn call(c: &Call) -> Result<()> {
    logger::set_verbose(c.verbose);
    if c.repeat == 0 {
        return Err(Error::Usage("--loop must be at least 1".into()));
    }
    let module = match CatalogHash::from_hex(&c.module) {
        Some(hash) if !Path::new(&c.module).exists() => {
            let key = keys::cluster_public_key(&c.data_dir)?;
            catalog::load_source(&c.data_dir, &scenario::Source::Catalog(hash), &key)?
        }
        _ => {
            // An author's own local file: run as they asked, unverified, and say so.
            logger::warn("call", &format!("running {} without checking its signatures", c.module));
            let bytes = catalog::read_module(Path::new(&c.module))?;
            verify::dangerous::trust_unverified(bytes)
        }
    };
    let config = GearConfig {
        entrypoint: c.entrypoint.clone(),
        memory_limit_pages: c.memory_limit_pages,
        fuel: FuelBudget { per_message: c.fuel, ..FuelBudget::default() },
        ..GearConfig::default()
    };
    let messages = call_messages(c)?;
    let mut rig = Rig::start(plan::one_gear("gear", &module, config)?)?;
    let (mut failed, mut first_error) = (0usize, None);
    for (n, msg) in messages.into_iter().enumerate() {
        let mut output = CallOutput { print: true, ..CallOutput::default() };
        let (mut fuel, mut nanos, mut rebuilds) = (Vec::new(), Vec::new(), 0u32);
        for run in 0..c.repeat {
            output.print = run == 0;
            let started = std::time::Instant::now();
            rig.deliver(Entry::Inputs, msg.clone(), &mut output);
            nanos.push(started.elapsed().as_nanos());
            fuel.push(rig.rack().slots().first().and_then(|s| s.as_gear()).map_or(0, |g| g.last_fuel_used()));
            rebuilds += u32::from(output.rebuilds);
        }
        let label = if n == 0 && c.repeat == 1 { String::new() } else { format!("message {}: ", n + 1) };
        if c.repeat == 1 {
            eprintln!("{label}fuel used: {}", fuel.first().copied().unwrap_or(0));
        } else {
            let (f0, f1, f2) = spread(&mut fuel);
            let (t0, t1, t2) = spread(&mut nanos);
            let micros = |t: u128| t as f64 / 1000.0;
            eprintln!(
                "{label}{} calls: fuel min {f0}, median {f1}, max {f2}; time min {:.2} µs, median {:.2} µs, max {:.2} µs; {rebuilds} instance rebuild(s)",
                c.repeat,
                micros(t0),
                micros(t1),
                micros(t2)
            );
        }
        if let Some(Err(e)) = output.outcome {
            failed += 1;
            if first_error.is_none() {
                first_error = Some(e);
            } else {
                eprintln!("{label}{e}");
            }
        }
    }
    match first_error {
        Some(e) if failed == 1 => Err(e),
        Some(e) => Err(Error::invalid(format!("{failed} messages failed; the first: {e}"))),
        None => Ok(()),
    }
}

fn gear_new(c: &GearNew) -> Result<()> {
    let dir = c.dir.clone().unwrap_or_else(|| PathBuf::from(&c.name));
    let written = crate::author::write_project(&dir, &c.name, c.lang)?;
    for path in &written {
        eprintln!("  wrote {}", path.display());
    }
    say!("wrote the {:?} gear '{}' in {}; next:", c.lang, c.name, dir.display());
    say!("  cd {} && {}", dir.display(), c.lang.build_command());
    say!("  fluxrig wasm call {}.wasm < input.jsonl    # then sign, import and run: see README.md", c.name);
    Ok(())
}

fn budget(mib: Option<usize>) -> Result<usize> {
    match mib {
        None => Ok(plan::default_memory_budget()),
        Some(0) => Err(Error::Usage("--memory-budget-mib must be at least 1".into())),
        Some(m) => {
            m.checked_mul(1 << 20).ok_or_else(|| Error::Usage("--memory-budget-mib is too large".into()))
        }
    }
}

/// The active scenario's path.
fn active_path(data_dir: &Path) -> PathBuf {
    data_dir.join("scenarios").join("active.yaml")
}

fn slug(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "scenario".to_string()
    } else {
        s
    }
}

/// Reads and parses the scenario at `path`; a relative `file://` source is taken relative
/// to the scenario's own folder. Also returns the gears that have one.
fn read_scenario_sources(path: &Path) -> Result<(Vec<u8>, scenario::Scenario, Vec<String>)> {
    let bytes = read_limited(path, MAX_SCENARIO_BYTES, "scenario")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid(format!("{}: not UTF-8 text", path.display())))?;
    let mut parsed = scenario::parse(text).map_err(|e| e.context(path.display()))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let relative = parsed.resolve_files(folder);
    Ok((bytes, parsed, relative))
}

fn read_scenario(path: &Path) -> Result<(Vec<u8>, scenario::Scenario)> {
    read_scenario_sources(path).map(|(bytes, parsed, _)| (bytes, parsed))
}

/// Reads, checks and plans the scenario at `file` as an import does, writing nothing.
fn check_scenario(file: &Path, budget_mib: Option<usize>, data_dir: &Path) -> Result<(Vec<u8>, plan::Plan)> {
    check_scenario_sources(file, budget_mib, data_dir).map(|(bytes, plan, _)| (bytes, plan))
}

/// As [`check_scenario`], also naming the gears with a relative `file://` source.
fn check_scenario_sources(
    file: &Path,
    budget_mib: Option<usize>,
    data_dir: &Path,
) -> Result<(Vec<u8>, plan::Plan, Vec<String>)> {
    let (bytes, parsed, relative) = read_scenario_sources(file)?;
    let plan = plan::plan(parsed, data_dir, Checks::Verified, budget(budget_mib)?)
        .map_err(|e| e.context(file.display()))?;
    Ok((bytes, plan, relative))
}

/// Refuses to store a scenario whose relative `file://` sources (relative to its own
/// folder) would name other files once it is stored in `DATA/scenarios`.
fn check_storable(file: &Path, data_dir: &Path, relative: &[String]) -> Result<()> {
    let same_folder = |a: &Path, b: &Path| {
        std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b)
    };
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stored = data_dir.join("scenarios");
    match relative.first() {
        Some(gear) if !same_folder(folder, &stored) => Err(Error::invalid(format!(
            "gear '{gear}': a relative file:// source names a file beside the scenario, which the stored copy \
             in {} would not find; import the module ('fluxrig wasm import', then snake://wasm_catalog/<hash>.wasm) \
             or use an absolute path (file:///...)",
            stored.display()
        ))
        .context(file.display())),
        _ => Ok(()),
    }
}

fn describe(plan: &plan::Plan) -> String {
    format!(
        "scenario '{}' {} ({} gear(s), {} wire(s), worst-case memory {} KiB)",
        plan.name,
        plan.version,
        plan.gears.iter().filter(|g| !matches!(g, plan::PlannedGear::BusInput { .. })).count(),
        plan.wires.len(),
        plan.worst_case_bytes.div_ceil(1024)
    )
}

fn scenario_import(c: &ScenarioImport) -> Result<()> {
    let file = match (&c.file, &c.file_flag) {
        (Some(file), None) | (None, Some(file)) => file,
        (None, None) => {
            return Err(Error::Usage("scenario import needs the scenario file: FILE or -f FILE".into()))
        }
        (Some(_), Some(_)) => {
            return Err(Error::Usage("give the scenario file once: FILE or -f FILE".into()))
        }
    };
    let (bytes, plan, relative) = check_scenario_sources(file, c.memory_budget_mib, &c.data_dir)?;
    check_storable(file, &c.data_dir, &relative)?;
    if c.dry_run {
        say!("{} is valid; nothing written (--dry-run)", describe(&plan));
        return Ok(());
    }
    let stored = c.data_dir.join("scenarios").join(format!("{}.yaml", slug(&plan.name)));
    let active = active_path(&c.data_dir);
    let read = |path: &Path| read_limited(path, MAX_SCENARIO_BYTES, "scenario").ok();
    let (previous, active_before) = (read(&stored), read(&active));
    write_atomic(&stored, &bytes, 0o644)?;
    let was_active = previous.is_some() && previous == active_before;
    let activity = if c.activate {
        write_atomic(&active, &bytes, 0o644)?;
        if active_before.as_deref() == Some(&bytes[..]) {
            "; active (unchanged)"
        } else {
            "; now active (a running rack switches on SIGHUP)"
        }
    } else {
        ""
    };
    say!("imported {} to {}{activity}", describe(&plan), stored.display());
    if !c.activate && was_active && previous.as_deref() != Some(&bytes[..]) {
        eprintln!(
            "note: '{}' is the active scenario, and the active copy is still the one imported before; \
             'fluxrig scenario activate {}' switches to this one",
            plan.name,
            slug(&plan.name)
        );
    }
    Ok(())
}

fn scenario_validate(c: &ScenarioValidate) -> Result<()> {
    let (_, plan, relative) = check_scenario_sources(&c.file, c.memory_budget_mib, &c.data_dir)?;
    check_storable(&c.file, &c.data_dir, &relative)?;
    say!("{} is valid; nothing written", describe(&plan));
    Ok(())
}

/// One stored scenario: its file, and its name and version if it parses.
struct Stored {
    path: PathBuf,
    bytes: Vec<u8>,
    parsed: Result<(String, String)>,
}

fn stored_scenarios(data_dir: &Path) -> Result<Vec<Stored>> {
    let dir = data_dir.join("scenarios");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "read scenarios", e)),
    };
    let mut found: Vec<Stored> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml") && p.file_name().is_some_and(|n| n != "active.yaml")
        })
        .map(|path| match read_scenario(&path) {
            Ok((bytes, parsed)) => Stored { path, bytes, parsed: Ok((parsed.name, parsed.version)) },
            Err(e) => Stored { path, bytes: Vec::new(), parsed: Err(e) },
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The stored scenario called `name` (its name in the YAML, or its file name).
fn find_stored(data_dir: &Path, name: &str) -> Result<Stored> {
    let all = stored_scenarios(data_dir)?;
    let names: Vec<String> =
        all.iter().filter_map(|s| s.parsed.as_ref().ok().map(|(n, _)| format!("{n:?}"))).collect();
    all.into_iter()
        .find(|s| {
            s.parsed.as_ref().is_ok_and(|(n, _)| n == name)
                || s.path.file_stem().is_some_and(|stem| stem.to_string_lossy() == slug(name))
        })
        .ok_or_else(|| {
            let known = if names.is_empty() { "none is stored".to_string() } else { names.join(", ") };
            Error::invalid(format!("no stored scenario {name:?} in {} (stored: {known})", data_dir.display()))
        })
}

fn scenario_list(c: &ScenarioList) -> Result<()> {
    let active = read_limited(&active_path(&c.data_dir), MAX_SCENARIO_BYTES, "scenario").ok();
    let all = stored_scenarios(&c.data_dir)?;
    if all.is_empty() && !c.json {
        eprintln!("no scenarios in {}", c.data_dir.join("scenarios").display());
    }
    for s in &all {
        let is_active = active.as_deref() == Some(&s.bytes[..]) && !s.bytes.is_empty();
        let file = s.path.display().to_string();
        match (&s.parsed, c.json) {
            (Ok((name, version)), true) => say!(
                "{}",
                serde_json::json!({"name": name, "version": version, "file": file, "active": is_active})
            ),
            (Err(e), true) => say!("{}", serde_json::json!({"file": file, "error": e.to_string()})),
            (Ok((name, version)), false) => {
                say!("{}{name} {version}  ({file})", if is_active { "* " } else { "  " })
            }
            (Err(e), false) => say!("  UNREADABLE {file}: {e}"),
        }
    }
    Ok(())
}

fn scenario_show(c: &ScenarioShow) -> Result<()> {
    let found = find_stored(&c.data_dir, &c.name)?;
    say!("{}", String::from_utf8_lossy(&found.bytes).trim_end_matches('\n'));
    Ok(())
}

fn scenario_activate(c: &ScenarioActivate) -> Result<()> {
    let found = find_stored(&c.data_dir, &c.name)?;
    // The catalog or the keys may have changed since the import: check again.
    let (bytes, plan) = check_scenario(&found.path, c.memory_budget_mib, &c.data_dir)?;
    let active = active_path(&c.data_dir);
    let unchanged = read_limited(&active, MAX_SCENARIO_BYTES, "scenario").ok().as_deref() == Some(&bytes[..]);
    write_atomic(&active, &bytes, 0o644)?;
    say!(
        "{} is {}",
        describe(&plan),
        if unchanged { "active (unchanged)" } else { "now active (a running rack switches on SIGHUP)" }
    );
    Ok(())
}

fn run_rack(c: &Run) -> Result<()> {
    let level = c.log_level.unwrap_or(if c.verbose {
        LogLevel::Debug
    } else if c.quiet {
        LogLevel::Warn
    } else {
        LogLevel::Info
    });
    logger::set_threshold(level);
    logger::set_format(c.log_format);
    let path = c.scenario.clone().unwrap_or_else(|| active_path(&c.data_dir));
    if c.scenario.is_none() && !path.exists() {
        return Err(Error::invalid(format!(
            "no active scenario in {}: run 'fluxrig scenario import FILE --activate' or pass --scenario FILE",
            c.data_dir.display()
        )));
    }
    if c.queue_messages == 0 || c.queue_bytes == 0 {
        return Err(Error::Usage("--queue-messages and --queue-bytes must be at least 1".into()));
    }
    if c.max_connections == 0 || c.connection_buffer_bytes == 0 || c.idle_timeout_secs == 0 {
        return Err(Error::Usage(
            "--max-connections, --connection-buffer-bytes and --idle-timeout-secs must be at least 1".into(),
        ));
    }
    if c.metrics_interval_secs == 0 {
        return Err(Error::Usage("--metrics-interval-secs must be at least 1".into()));
    }
    let checks = if c.insecure {
        logger::warn("rack", "--insecure: modules run without checking cluster signatures or hashes");
        Checks::Insecure
    } else {
        Checks::Verified
    };
    let budget_bytes = budget(c.memory_budget_mib)?;
    let rack_name = c.rack.clone().unwrap_or_else(|| "fluxrig".to_string());
    if !valid_rack_name(&rack_name) {
        return Err(Error::Usage(format!("--rack {rack_name:?}: a rack name is made of a-z, 0-9, _ and -")));
    }
    if c.nats_ack_wait_secs == 0 {
        return Err(Error::Usage("--nats-ack-wait-secs must be at least 1".into()));
    }
    let bus_options = c.bus_flags().options(&rack_name)?;
    let catalog_bus = bus_options.clone().map(crate::bus::LazyBus::new);
    // Set once the first plan is made: a reload may not change the bus wires.
    let wiring: std::sync::Arc<std::sync::Mutex<Option<BusWiring>>> = std::sync::Arc::default();
    let load = {
        let (path, data_dir, wiring, rack) =
            (path.clone(), c.data_dir.clone(), wiring.clone(), rack_name.clone());
        move || -> Result<plan::Plan> {
            let (_, parsed) = read_scenario(&path)?;
            catalog::fetch_missing(&data_dir, &parsed, catalog_bus.as_ref())
                .map_err(|e| e.context(path.display()))?;
            let plan =
                plan::plan(parsed, &data_dir, checks, budget_bytes).map_err(|e| e.context(path.display()))?;
            let next = bus_wiring(&plan, &rack);
            let mut first = wiring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*first {
                Some(running) if *running != next => {
                    return Err(Error::invalid(
                        "the new scenario changes the wires to or from other racks; restart the rack to change them",
                    ))
                }
                Some(_) => {}
                None => *first = Some(next),
            }
            Ok(plan)
        }
    };
    let plan = load()?;
    let bus = match (plan.uses_bus(), bus_options) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::Usage(format!(
                "{}: the scenario wires to or from another rack: give the bus with --nats URL (and this rack's name with --rack NAME)",
                path.display()
            )))
        }
        (true, Some(_)) if c.rack.is_none() => {
            return Err(Error::Usage(format!(
                "{}: the scenario wires to or from another rack: give this rack's name with --rack NAME",
                path.display()
            )))
        }
        (true, Some(options)) => Some(std::sync::Arc::new(new_link(&plan, &rack_name, options, c.nats_ack_wait_secs)?)),
    };
    let settings = run::Settings {
        input_format: c.input_format,
        output_format: c.output_format,
        queue: QueueLimits { messages: c.queue_messages, bytes: c.queue_bytes },
        stdin: c.listen.is_empty() || c.stdin,
        listen: c.listen.clone(),
        listen_limits: ListenLimits {
            max_connections: c.max_connections,
            buffer_bytes: c.connection_buffer_bytes,
            idle: Duration::from_secs(c.idle_timeout_secs),
        },
        output: c.output.clone(),
        metrics_file: c.metrics_file.clone(),
        metrics_interval: Duration::from_secs(c.metrics_interval_secs),
        stats_json: c.stats_json.clone(),
        bus,
    };
    let outcome = run::run(
        plan,
        &settings,
        Some(Box::new(load)),
        Box::new(std::io::stdin()),
        Box::new(std::io::stdout()),
    )?;
    let stats = outcome.stats;
    logger::info("rack", &stats.summary());
    if stats.any_lost() {
        let lost = stats.failed_total() + stats.hop_limit + stats.queue_full;
        return Err(Error::MessagesFailed(format!("{lost} message(s) failed; the log above names each one")));
    }
    Ok(())
}

/// Whether `name` is a rack name fluxrig accepts (`^[a-z0-9_-]+$`).
fn valid_rack_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A plan's wires over the bus: (slot, subject) of its inputs and of its outputs.
type BusWiring = (Vec<(usize, String)>, Vec<(usize, String)>);

fn bus_wiring(plan: &plan::Plan, rack: &str) -> BusWiring {
    let inputs = plan.bus_inputs().map(|(slot, subject)| (slot, subject.to_string())).collect();
    let mut outputs: Vec<(usize, String)> =
        plan.bus_outputs.iter().map(|(slot, gear)| (*slot, crate::bus::subject(rack, gear, "out"))).collect();
    outputs.sort();
    (inputs, outputs)
}

#[cfg(feature = "nats")]
fn new_link(
    plan: &plan::Plan,
    rack: &str,
    options: crate::bus::BusOptions,
    ack_wait_secs: u64,
) -> Result<crate::bus::Link> {
    let inputs = plan.bus_inputs().map(|(slot, subject)| (slot, subject.to_string())).collect();
    Ok(crate::bus::Link::new(
        rack,
        options,
        inputs,
        plan.bus_outputs.clone(),
        Duration::from_secs(ack_wait_secs),
    ))
}

#[cfg(not(feature = "nats"))]
fn new_link(
    _plan: &plan::Plan,
    _rack: &str,
    options: crate::bus::BusOptions,
    _secs: u64,
) -> Result<crate::bus::Link> {
    match crate::bus::connect(&options)? {}
}
