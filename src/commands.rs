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
use crate::queue::QueueLimits;
use crate::run::{self, Rig};
use crate::scenario::{self, MAX_SCENARIO_BYTES};

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
        Command::Scenario(ScenarioCmd { command: ScenarioCommand::Import(c) }) => scenario_import(&c),
        Command::Run(c) => run_rack(&c),
    }
}

fn fingerprint(key: &verify::PublicKey) -> String {
    json::hex(&key.0[..8])
}

fn gen_cluster(c: &GenCluster) -> Result<()> {
    let path = c.out.clone().unwrap_or_else(|| c.dir.join(&c.name));
    let key = keys::generate(&path, c.force)?;
    println!("wrote {} and {}", path.display(), keys::pub_path(&path).display());
    println!("public key: {}", json::hex(&key.public_key().0));
    Ok(())
}

fn sign(c: &Sign) -> Result<()> {
    let public = catalog::sign(&c.file, &c.key)?;
    println!("signed {} (vendor key {})", c.file.display(), fingerprint(&public));
    Ok(())
}

fn import(c: &Import) -> Result<()> {
    let done = catalog::import(&c.data_dir, &c.file, c.allow_unsigned)?;
    let vendor = match &done.vendor {
        VendorStatus::Trusted(name) => format!("vendor signature verified with trusted key '{name}'"),
        VendorStatus::UnsignedAllowed => {
            logger::warn("import", "module has no vendor signature; imported because of --allow-unsigned");
            "unsigned (allowed by --allow-unsigned)".to_string()
        }
    };
    println!("{}", done.hash);
    eprintln!(
        "{} {} as snake://wasm_catalog/{}.wasm\n  {vendor}\n  countersigned with the node's cluster key\n  \
         stored at {}\n  exports {}/free/process; initial memory {} pages",
        if done.already_present { "already in the catalog:" } else { "imported" },
        c.file.display(),
        done.hash,
        done.path.display(),
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
        match &row.status {
            Ok(()) => println!("{}  {:>8} B  ok", row.name, row.bytes),
            Err(e) => {
                bad += 1;
                trust |= e.exit_code() == crate::error::EXIT_UNTRUSTED;
                println!("{}  {:>8} B  REFUSED: {e}", row.name, row.bytes);
            }
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
        Ok(VendorStatus::Trusted(name)) => println!("vendor signature: ok (trusted key '{name}')"),
        Ok(VendorStatus::UnsignedAllowed) => {}
        Err(e) => {
            println!("vendor signature: {e}");
            failures.push("vendor signature");
            trust |= e.is_trust_failure();
        }
    }
    let has_cluster = verify::has_cluster_signature(&module).map_err(|e| Error::verify(&c.file, e))?;
    if has_cluster {
        match keys::cluster_public_key(&c.data_dir) {
            Ok(key) => match verify::verify_cluster(&module[..], &key, None) {
                Ok(v) => println!("cluster signature: ok (catalog hash {})", v.hash()),
                Err(e) => {
                    println!("cluster signature: {e}");
                    failures.push("cluster signature");
                    trust |= e.is_trust_failure();
                }
            },
            Err(e) => {
                println!("cluster signature: cannot check: {e}");
                failures.push("cluster signature");
            }
        }
    } else {
        println!("cluster signature: none (not imported into a catalog)");
    }
    match catalog::check_shape(&c.file, &module, &c.entrypoint) {
        Ok(shape) => println!(
            "shape: ok ({}, free, {}; env.log {}; initial memory {} pages)",
            shape.alloc_export,
            c.entrypoint,
            if shape.imports_log { "imported" } else { "not imported" },
            shape.initial_pages
        ),
        Err(Error::Gear { source, .. }) => {
            println!("shape: {source}");
            failures.push("shape");
        }
        Err(e) => return Err(e),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Checks { summary: format!("{}: {} failed", c.file.display(), failures.join(", ")), trust })
    }
}

/// Prints what the one gear of `wasm call` made of the message.
struct CallOutput {
    outcome: Option<Result<()>>,
}

impl RackSink for CallOutput {
    fn deliver(&mut self, delivery: Delivery) {
        self.outcome = Some(match delivery {
            Delivery::Output { msg, .. } => {
                println!("{}", json::to_json(&msg.to_msg()));
                Ok(())
            }
            Delivery::Dropped { .. } => {
                eprintln!("the gear dropped the message");
                Ok(())
            }
            Delivery::Failed { error, .. } => Err(Error::gear("gear", error)),
            Delivery::HopLimit { .. } | Delivery::QueueFull { .. } => {
                Err(Error::invalid("the message was refused by the rack's limits"))
            }
        });
    }

    fn log(&mut self, _gear: usize, level: fluxrig_core::abi::LogLevel, line: &str) {
        logger::guest(level, "gear", line);
    }
}

fn call(c: &Call) -> Result<()> {
    logger::set_verbose(c.verbose);
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
    let msg = json::from_line(&c.message)?;
    let msg = MsgBytes::try_from_msg(&msg).map_err(|e| Error::invalid(format!("message: {e}")))?;
    let mut rig = Rig::start(plan::one_gear("gear", &module, config)?)?;
    let mut output = CallOutput { outcome: None };
    rig.deliver(Entry::Inputs, msg, &mut output);
    let fuel = rig.rack().slots().first().and_then(|s| s.as_gear()).map_or(0, |g| g.last_fuel_used());
    eprintln!("fuel used: {fuel}");
    output.outcome.unwrap_or(Ok(()))
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

fn read_scenario(path: &Path) -> Result<(Vec<u8>, scenario::Scenario)> {
    let bytes = read_limited(path, MAX_SCENARIO_BYTES, "scenario")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::invalid(format!("{}: not UTF-8 text", path.display())))?;
    let parsed = scenario::parse(text).map_err(|e| e.context(path.display()))?;
    Ok((bytes, parsed))
}

fn scenario_import(c: &ScenarioImport) -> Result<()> {
    let (bytes, parsed) = read_scenario(&c.file)?;
    let (gears, wires) = (parsed.gears.len(), parsed.wires.len());
    let plan = plan::plan(parsed, &c.data_dir, Checks::Verified, budget(c.memory_budget_mib)?)
        .map_err(|e| e.context(c.file.display()))?;
    let stored = c.data_dir.join("scenarios").join(format!("{}.yaml", slug(&plan.name)));
    write_atomic(&stored, &bytes, 0o644)?;
    if c.activate {
        write_atomic(&active_path(&c.data_dir), &bytes, 0o644)?;
    }
    println!(
        "imported scenario '{}' {} ({gears} gear(s), {wires} wire(s), worst-case memory {} KiB) to {}{}",
        plan.name,
        plan.version,
        plan.worst_case_bytes.div_ceil(1024),
        stored.display(),
        if c.activate { "; active" } else { "" }
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
    let load = {
        let (path, data_dir) = (path.clone(), c.data_dir.clone());
        move || -> Result<plan::Plan> {
            let (_, parsed) = read_scenario(&path)?;
            plan::plan(parsed, &data_dir, checks, budget_bytes).map_err(|e| e.context(path.display()))
        }
    };
    let plan = load()?;
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
