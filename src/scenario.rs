//! Scenarios: which gears a rack runs and how messages flow between them.
//!
//! Schema (`spec/fluxrig-compat.md` section 6): `meta: {name, version}` or, as the
//! tutorial writes it, top-level `name` and `version`; `gears: [{name, type, config}]`;
//! `wires: [{from: "gear.port", to: "gear.port", lane}]`; an end `rack.gear.port` names a
//! gear of another rack, reached over the bus (fluxrig's guaranteed lane; `lane: hot` is
//! refused across racks, as fluxrig does). Unknown keys are refused with the
//! nearest known key suggested (DEPARTS from fluxrig, which ignores them: a typo such as
//! `memory_limit_page` would silently change what runs). Duplicate keys are refused; a
//! UTF-8 byte order mark is accepted.
//!
//! Hostile YAML: the file is at most [`MAX_SCENARIO_BYTES`]; before the document tree is
//! built, one pass over the parser's events counts what anchors and aliases would expand
//! to, and refuses a scenario past [`MAX_SCENARIO_NODES`] nodes,
//! [`MAX_SCENARIO_EXPANDED_BYTES`] bytes of scalar text or [`MAX_SCENARIO_DEPTH`] levels
//! (an alias bomb of a few hundred bytes would otherwise expand to gigabytes).
//!
//! Gear types: `wasm` (ports `in`, `out`; config `source`, `entrypoint`,
//! `memory_limit_pages`, `fuel_per_message`) and `generate` (port `out`; config `count`,
//! `interval_ms`, `payload`).
//!
//! [`parse`] checks the schema, names and wires; [`crate::plan::plan`] then resolves
//! sources and checks signatures, shapes and the memory budget, before anything is
//! written or run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use fluxrig_core::gear::{FuelBudget, GearConfig};
use fluxrig_core::verify::CatalogHash;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};

/// Largest scenario file read, in bytes.
pub const MAX_SCENARIO_BYTES: usize = 1024 * 1024;
/// Most YAML nodes (scalars, lists, mappings) in a scenario once its aliases are
/// expanded. Reason: a scenario of [`MAX_GEARS`] gears and [`MAX_WIRES`] wires needs about
/// 25 000; aliases must not multiply a small file into a large tree.
pub const MAX_SCENARIO_NODES: usize = 65_536;
/// Most bytes of scalar text in a scenario once its aliases are expanded: twice the
/// largest file, so that aliases may repeat some text but not multiply it.
pub const MAX_SCENARIO_EXPANDED_BYTES: usize = 2 * MAX_SCENARIO_BYTES;
/// Deepest nesting of lists and mappings in a scenario, in levels. Reason: the schema
/// needs 4; dropping a deep tree recurses, so depth is bounded well before the stack.
pub const MAX_SCENARIO_DEPTH: usize = 32;
/// Most gears in one scenario.
pub const MAX_GEARS: usize = 256;
/// Most wires in one scenario.
pub const MAX_WIRES: usize = 4096;
/// Most messages one `generate` gear may be asked for.
pub const MAX_GENERATE_COUNT: u64 = 1_000_000_000;
/// Longest `interval_ms` of a `generate` gear: one hour.
pub const MAX_GENERATE_INTERVAL_MS: u64 = 3_600_000;
/// Default `count` of a `generate` gear.
pub const DEFAULT_GENERATE_COUNT: u64 = 10;
/// Default `payload` of a `generate` gear; `{n}` is replaced by the message number.
pub const DEFAULT_GENERATE_PAYLOAD: &str = "hello {n}";

/// Where a wasm gear's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `snake://wasm_catalog/<hash>.wasm`: the node's catalog.
    Catalog(CatalogHash),
    /// `file://PATH`: a cluster-signed module file.
    File(PathBuf),
}

/// What a gear is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GearKind {
    /// A Wasm gear.
    Wasm {
        /// Its module.
        source: Source,
        /// How it runs: entrypoint, memory limit, fuel (checked by [`GearConfig::check`]).
        config: GearConfig,
    },
    /// A source of `count` messages, `interval_ms` apart.
    Generate {
        /// How many.
        count: u64,
        /// Pause between two, in milliseconds.
        interval_ms: u64,
        /// `raw` payload text; `{n}` becomes 1, 2, ...
        payload: String,
    },
}

impl GearKind {
    /// Input ports.
    pub fn inputs(&self) -> &'static [&'static str] {
        match self {
            Self::Wasm { .. } => &["in"],
            Self::Generate { .. } => &[],
        }
    }

    /// Output ports.
    pub fn outputs(&self) -> &'static [&'static str] {
        &["out"]
    }
}

/// One gear of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GearSpec {
    /// Unique name, `^[a-z0-9_-]+$`.
    pub name: String,
    /// Type and configuration.
    pub kind: GearKind,
}

/// A wire from an output port to an input port, by gear index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// Index of the sending gear (its port is `out`).
    pub from: usize,
    /// Index of the receiving gear (its port is `in`).
    pub to: usize,
}

/// A wire from a gear port of another rack, over the bus, into a gear of this one
/// (`from: "rack.gear.port"`): this rack consumes `flux.msg.<rack>.<gear>.<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusInput {
    /// The sending rack.
    pub rack: String,
    /// The sending gear.
    pub gear: String,
    /// The sending port.
    pub port: String,
    /// Index of the receiving gear here (its port is `in`).
    pub to: usize,
}

impl BusInput {
    /// The subject this rack consumes: `flux.msg.<rack>.<gear>.<port>`.
    pub fn subject(&self) -> String {
        crate::bus::subject(&self.rack, &self.gear, &self.port)
    }
}

/// A parsed and checked scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Gears, in file order.
    pub gears: Vec<GearSpec>,
    /// Wires.
    pub wires: Vec<Wire>,
    /// Wires from other racks over the bus, in file order, one per subject and gear.
    pub bus_inputs: Vec<BusInput>,
    /// Gears whose `out` goes to other racks over the bus (published on
    /// `flux.msg.<this rack>.<gear>.out`), by index, each once.
    pub bus_outputs: Vec<usize>,
}

impl Scenario {
    /// Makes every relative `file://` source relative to `folder` (the scenario file's
    /// own folder), as a path in a file is read; returns the gears that had one.
    pub fn resolve_files(&mut self, folder: &Path) -> Vec<String> {
        let mut relative = Vec::new();
        for gear in &mut self.gears {
            if let GearKind::Wasm { source: Source::File(path), .. } = &mut gear.kind {
                if path.is_relative() {
                    *path = folder.join(&*path);
                    relative.push(gear.name.clone());
                }
            }
        }
        relative
    }
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> Result<&'a str> {
    y.as_str().ok_or_else(|| Error::invalid(format!("{what} must be a string")))
}

fn scalar_string(y: &Yaml, what: &str) -> Result<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        _ => Err(Error::invalid(format!("{what} must be a string"))),
    }
}

/// Reads a whole number that fits `T`; the range a setting may take is checked by its owner.
fn uint<T: TryFrom<i64>>(y: &Yaml, what: &str) -> Result<T> {
    match y.as_i64() {
        Some(v) => T::try_from(v).map_err(|_| Error::invalid(format!("{what} is {v}, out of range"))),
        None => Err(Error::invalid(format!("{what} must be a whole number"))),
    }
}

fn uint_in(y: &Yaml, what: &str, min: u64, max: u64) -> Result<u64> {
    match y.as_i64() {
        Some(v) if v >= 0 && (min..=max).contains(&(v as u64)) => Ok(v as u64),
        Some(v) => Err(Error::invalid(format!("{what} is {v}, it must be between {min} and {max}"))),
        None => Err(Error::invalid(format!("{what} must be a whole number"))),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Returns the edit distance (insertions, deletions, substitutions) between two keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        let mut left = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let next = (diagonal + usize::from(ca != *cb)).min(above + 1).min(left + 1);
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = next;
            }
            left = next;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

/// Every key a scenario knows, and where it belongs, for a key found at the wrong level.
const KEY_HOMES: [(&str, &str); 17] = [
    ("meta", "the top of the scenario"),
    ("gears", "the top of the scenario"),
    ("wires", "the top of the scenario"),
    ("name", "the top of the scenario, meta, or a gear"),
    ("version", "the top of the scenario, or meta"),
    ("type", "a gear"),
    ("config", "a gear"),
    ("source", "a wasm gear's config"),
    ("entrypoint", "a wasm gear's config"),
    ("memory_limit_pages", "a wasm gear's config"),
    ("fuel_per_message", "a wasm gear's config"),
    ("count", "a generate gear's config"),
    ("interval_ms", "a generate gear's config"),
    ("payload", "a generate gear's config"),
    ("from", "a wire"),
    ("to", "a wire"),
    ("lane", "a wire"),
];

/// Refuses a mapping with a key outside `known`: a key that belongs elsewhere is named with
/// where it belongs, any other with the nearest known key; both with their line.
fn check_keys(map: &Yaml, known: &[&str], at: &str, lines: &KeyLines) -> Result<()> {
    let Some(map) = map.as_hash() else { return Ok(()) };
    for key in map.keys() {
        let Some(key) = key.as_str() else {
            return Err(Error::invalid(format!("{at}: a key is not a string ({key:?})")));
        };
        if known.contains(&key) {
            continue;
        }
        let line = lines.at(key);
        if let Some((_, home)) = KEY_HOMES.iter().find(|(k, _)| *k == key) {
            return Err(Error::invalid(format!(
                "{line}{at}: key {key:?} belongs in {home}, not here (known here: {})",
                known.join(", ")
            )));
        }
        let nearest = known.iter().min_by_key(|k| edit_distance(key, k)).copied().unwrap_or_default();
        return Err(Error::invalid(format!(
            "{line}{at}: unknown key {key:?} (did you mean {nearest:?}? known: {})",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Counts what a scenario's YAML expands to, aliases included, before any tree is built.
#[derive(Default)]
struct Expansion {
    nodes: usize,
    bytes: usize,
    /// Open lists and mappings: (anchor id, nodes and bytes before it).
    open: Vec<(usize, usize, usize)>,
    /// Anchor id -> nodes and bytes of the anchored node, its own aliases expanded.
    anchors: std::collections::HashMap<usize, (usize, usize)>,
    error: Option<String>,
    /// Open collections: `Some(next node is a key)` for a mapping, `None` for a list.
    frames: Vec<Option<bool>>,
    /// Every mapping key, with the line it is on, in order.
    keys: KeyLines,
}

/// Where each mapping key of a scenario is: (key, 1-based line), in document order.
#[derive(Debug, Default)]
pub struct KeyLines(Vec<(String, usize)>);

impl KeyLines {
    /// The line of `key`, as the start of an error (`line N: `), when the key is on one line
    /// only (a key used at several places gets no line rather than a wrong one).
    fn at(&self, key: &str) -> String {
        let mut found = self.0.iter().filter(|(k, _)| k == key).map(|(_, line)| *line);
        match (found.next(), found.next()) {
            (Some(line), None) => format!("line {line}: "),
            _ => String::new(),
        }
    }
}

impl MarkedEventReceiver for Expansion {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let is_node = matches!(
            event,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_)
        );
        if is_node {
            if let Some(Some(expect_key)) = self.frames.last_mut() {
                let is_key = *expect_key;
                *expect_key = !is_key;
                if let (true, Event::Scalar(text, ..)) = (is_key, &event) {
                    if self.keys.0.len() < MAX_SCENARIO_NODES {
                        self.keys.0.push((text.clone(), mark.line()));
                    }
                }
            }
        }
        match &event {
            Event::MappingStart(..) => self.frames.push(Some(true)),
            Event::SequenceStart(..) => self.frames.push(None),
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
            }
            _ => {}
        }
        match event {
            Event::Scalar(text, _, anchor, _) => {
                self.nodes = self.nodes.saturating_add(1);
                self.bytes = self.bytes.saturating_add(text.len());
                if anchor > 0 {
                    self.anchors.insert(anchor, (1, text.len()));
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((anchor, self.nodes, self.bytes));
                self.nodes = self.nodes.saturating_add(1);
                if self.open.len() > MAX_SCENARIO_DEPTH {
                    self.error = Some(format!(
                        "nesting deeper than {MAX_SCENARIO_DEPTH} levels at line {}",
                        mark.line()
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, nodes, bytes)) = self.open.pop() {
                    if anchor > 0 {
                        self.anchors.insert(anchor, (self.nodes - nodes, self.bytes - bytes));
                    }
                }
            }
            Event::Alias(anchor) => {
                let (nodes, bytes) = self.anchors.get(&anchor).copied().unwrap_or((0, 0));
                self.nodes = self.nodes.saturating_add(nodes);
                self.bytes = self.bytes.saturating_add(bytes);
            }
            _ => {}
        }
        if self.error.is_none() && self.nodes > MAX_SCENARIO_NODES {
            self.error = Some(format!(
                "more than {MAX_SCENARIO_NODES} YAML nodes once aliases are expanded (at line {})",
                mark.line()
            ));
        }
        if self.error.is_none() && self.bytes > MAX_SCENARIO_EXPANDED_BYTES {
            self.error = Some(format!(
                "more than {MAX_SCENARIO_EXPANDED_BYTES} bytes of text once aliases are expanded (at line {})",
                mark.line()
            ));
        }
    }
}

/// Parses `text` as YAML documents, refusing it if aliases would expand it past the limits.
fn load_yaml(text: &str) -> Result<(Vec<Yaml>, KeyLines)> {
    let mut expansion = Expansion::default();
    Parser::new_from_str(text)
        .load(&mut expansion, true)
        .map_err(|e| Error::invalid(format!("not valid YAML: {e}")))?;
    if let Some(error) = expansion.error {
        return Err(Error::invalid(format!("scenario refused: {error}")));
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| Error::invalid(format!("not valid YAML: {e}")))?;
    Ok((docs, expansion.keys))
}

/// Parses a `source` value.
pub fn parse_source(text: &str) -> Result<Source> {
    if let Some(rest) = text.strip_prefix("snake://wasm_catalog/") {
        let hash = rest.strip_suffix(".wasm").and_then(CatalogHash::from_hex);
        return hash.map(Source::Catalog).ok_or_else(|| {
            Error::invalid(format!(
                "source {text:?}: expected snake://wasm_catalog/<64 lowercase hex digits>.wasm"
            ))
        });
    }
    if let Some(path) = text.strip_prefix("file://") {
        if path.is_empty() {
            return Err(Error::invalid("source \"file://\" names no file"));
        }
        return Ok(Source::File(PathBuf::from(path)));
    }
    Err(Error::invalid(format!("source {text:?}: use snake://wasm_catalog/<hash>.wasm or file://PATH")))
}

fn parse_gear(y: &Yaml, index: usize, lines: &KeyLines) -> Result<GearSpec> {
    let at = format!("gears[{index}]");
    if y.as_hash().is_none() {
        return Err(Error::invalid(format!("{at} must be a mapping with name, type and config")));
    }
    let name = str_of(&y["name"], &format!("{at}.name"))?.to_string();
    if !valid_name(&name) {
        return Err(Error::invalid(format!(
            "gear name {name:?} must match ^[a-z0-9_-]+$ (lowercase letters, digits, '_', '-')"
        )));
    }
    let at = format!("gear '{name}'");
    check_keys(y, &["name", "type", "config"], &at, lines)?;
    let kind = str_of(&y["type"], &format!("{at}: type"))?;
    let config = &y["config"];
    let known: &[&str] = match kind {
        "wasm" => &["source", "entrypoint", "memory_limit_pages", "fuel_per_message"],
        "generate" => &["count", "interval_ms", "payload"],
        other => {
            return Err(Error::invalid(format!("{at}: unknown gear type {other:?} (known: wasm, generate)")))
        }
    };
    if config.as_hash().is_some() {
        check_keys(config, known, &format!("{at}: config"), lines)?;
    } else if !config.is_badvalue() && !config.is_null() {
        return Err(Error::invalid(format!("{at}: config must be a mapping")));
    }
    let get = |key: &str| Some(&config[key]).filter(|v| !v.is_badvalue() && !v.is_null());
    let kind = match kind {
        "wasm" => {
            let source =
                get("source").ok_or_else(|| Error::invalid(format!("{at}: config.source is required")))?;
            let source =
                parse_source(str_of(source, &format!("{at}: source"))?).map_err(|e| e.context(&at))?;
            let mut config = GearConfig::default();
            if let Some(e) = get("entrypoint") {
                config.entrypoint = str_of(e, &format!("{at}: entrypoint"))?.to_string();
            }
            if config.entrypoint.is_empty() {
                return Err(Error::invalid(format!("{at}: entrypoint is empty")));
            }
            if let Some(p) = get("memory_limit_pages") {
                config.memory_limit_pages = uint(p, &format!("{at}: memory_limit_pages"))?;
            }
            if let Some(f) = get("fuel_per_message") {
                let per_message = uint(f, &format!("{at}: fuel_per_message"))?;
                config.fuel = FuelBudget { per_message, ..FuelBudget::default() };
            }
            config.check().map_err(|source| Error::gear(name.clone(), source))?;
            GearKind::Wasm { source, config }
        }
        _ => GearKind::Generate {
            count: match get("count") {
                Some(c) => uint_in(c, &format!("{at}: count"), 0, MAX_GENERATE_COUNT)?,
                None => DEFAULT_GENERATE_COUNT,
            },
            interval_ms: match get("interval_ms") {
                Some(i) => uint_in(i, &format!("{at}: interval_ms"), 0, MAX_GENERATE_INTERVAL_MS)?,
                None => 0,
            },
            payload: match get("payload") {
                Some(p) => scalar_string(p, &format!("{at}: payload"))?,
                None => DEFAULT_GENERATE_PAYLOAD.to_string(),
            },
        },
    };
    Ok(GearSpec { name, kind })
}

/// One end of a wire: `gear.port` here, or `rack.gear.port` on another rack (the bus).
fn parse_endpoint<'a>(text: &'a str, what: &str) -> Result<(Option<&'a str>, &'a str, &'a str)> {
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [g, p] if !g.is_empty() && !p.is_empty() => Ok((None, g, p)),
        [r, g, p] if valid_name(r) && valid_name(g) && valid_name(p) => Ok((Some(r), g, p)),
        _ => Err(Error::invalid(format!(
            "wire {what} {text:?} must be \"gear.port\" (or \"rack.gear.port\" for a gear of another rack, \
             names of a-z, 0-9, _ and -)"
        ))),
    }
}

/// Parses and checks a scenario: schema, gear names, wires.
pub fn parse(text: &str) -> Result<Scenario> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(Error::invalid(format!(
            "scenario is {} bytes, limit is {MAX_SCENARIO_BYTES}",
            text.len()
        )));
    }
    // A byte order mark is not part of the text (editors on Windows write one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (docs, lines) = load_yaml(text)?;
    let doc = match docs.as_slice() {
        [doc] if doc.as_hash().is_some() => doc,
        [] => return Err(Error::invalid("scenario is empty")),
        [_] => {
            return Err(Error::invalid("scenario must be a mapping with meta (or name, version) and gears"))
        }
        _ => return Err(Error::invalid("scenario holds more than one YAML document")),
    };
    check_keys(doc, &["meta", "name", "version", "gears", "wires"], "scenario", &lines)?;
    let meta = &doc["meta"];
    check_keys(meta, &["name", "version"], "meta", &lines)?;
    let field = |key: &str| -> Result<Option<String>> {
        let v = if meta[key].is_badvalue() || meta[key].is_null() { &doc[key] } else { &meta[key] };
        if v.is_badvalue() || v.is_null() {
            return Ok(None);
        }
        scalar_string(v, key).map(Some)
    };
    let name = field("name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::invalid("scenario has no name (meta.name or name)"))?;
    let version = field("version")?.filter(|v| !v.is_empty()).ok_or_else(|| {
        Error::invalid("scenario has no version (meta.version or version); fluxrig requires one")
    })?;
    let gears_yaml = match &doc["gears"] {
        Yaml::Array(g) if !g.is_empty() => g,
        Yaml::Array(_) | Yaml::BadValue | Yaml::Null => return Err(Error::invalid("scenario has no gears")),
        _ => return Err(Error::invalid("gears must be a list")),
    };
    if gears_yaml.len() > MAX_GEARS {
        return Err(Error::invalid(format!("scenario has {} gears, limit is {MAX_GEARS}", gears_yaml.len())));
    }
    let gears =
        gears_yaml.iter().enumerate().map(|(i, g)| parse_gear(g, i, &lines)).collect::<Result<Vec<_>>>()?;
    let mut seen = HashSet::new();
    for g in &gears {
        if !seen.insert(g.name.as_str()) {
            return Err(Error::invalid(format!("gear name '{}' is used twice", g.name)));
        }
    }
    let wires_yaml = match &doc["wires"] {
        Yaml::Array(w) => w.as_slice(),
        Yaml::BadValue | Yaml::Null => &[],
        _ => return Err(Error::invalid("wires must be a list")),
    };
    if wires_yaml.len() > MAX_WIRES {
        return Err(Error::invalid(format!("scenario has {} wires, limit is {MAX_WIRES}", wires_yaml.len())));
    }
    let find = |name: &str, port: &str, output: bool, text: &str| -> Result<usize> {
        let index = gears.iter().position(|g| g.name == name).ok_or_else(|| {
            Error::invalid(format!("wire {text:?} names gear '{name}', which the scenario does not have"))
        })?;
        let kind = &gears[index].kind;
        let ports = if output { kind.outputs() } else { kind.inputs() };
        if !ports.contains(&port) {
            let dir = if output { "output" } else { "input" };
            return Err(Error::invalid(format!(
                "wire {text:?}: gear '{name}' has no {dir} port '{port}' ({dir}s: {})",
                if ports.is_empty() { "none".to_string() } else { ports.join(", ") }
            )));
        }
        Ok(index)
    };
    let mut wires = Vec::new();
    let mut bus_inputs: Vec<BusInput> = Vec::new();
    let mut bus_outputs: Vec<usize> = Vec::new();
    for (i, w) in wires_yaml.iter().enumerate() {
        check_keys(w, &["from", "to", "lane"], &format!("wires[{i}]"), &lines)?;
        let from = str_of(&w["from"], &format!("wires[{i}].from"))?;
        let to = str_of(&w["to"], &format!("wires[{i}].to"))?;
        let lane = match &w["lane"] {
            Yaml::BadValue | Yaml::Null => None,
            y => Some(str_of(y, &format!("wires[{i}].lane"))?),
        };
        let (from_rack, fg, fp) = parse_endpoint(from, "from")?;
        let (to_rack, tg, tp) = parse_endpoint(to, "to")?;
        let across = from_rack.is_some() || to_rack.is_some();
        // fluxrig's lanes (C6): hot is in memory within one rack, guaranteed is the bus.
        match (lane, across) {
            (None, _) | (Some("hot"), false) | (Some("guaranteed"), true) => {}
            (Some("hot"), true) => {
                return Err(Error::invalid(format!(
                "wires[{i}]: lane hot cannot cross racks ({from:?} to {to:?}); use lane guaranteed (the bus)"
            )))
            }
            (Some("guaranteed"), false) => {
                return Err(Error::invalid(format!(
                    "wires[{i}]: lane guaranteed between two gears of this rack is not supported; leave \
                     lane out (hot, in memory) or wire to another rack"
                )))
            }
            (Some(other), _) => {
                return Err(Error::invalid(format!(
                    "wires[{i}].lane is {other:?}; it must be hot or guaranteed"
                )))
            }
        }
        match (from_rack, to_rack) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                "wires[{i}]: {from:?} to {to:?} joins two other racks; a rack's scenario wires its own gears"
            )))
            }
            (Some(rack), None) => {
                let input = BusInput {
                    rack: rack.to_string(),
                    gear: fg.to_string(),
                    port: fp.to_string(),
                    to: find(tg, tp, false, to)?,
                };
                if !bus_inputs.contains(&input) {
                    bus_inputs.push(input);
                }
            }
            (None, Some(_)) => {
                let from = find(fg, fp, true, from)?;
                if !bus_outputs.contains(&from) {
                    bus_outputs.push(from);
                }
            }
            (None, None) => {
                let wire = Wire { from: find(fg, fp, true, from)?, to: find(tg, tp, false, to)? };
                if !wires.contains(&wire) {
                    wires.push(wire);
                }
            }
        }
    }
    // The router hands out an output only where it has no wire: a gear's `out` goes to
    // this rack's gears or to the bus, not both.
    if let Some(gear) = bus_outputs.iter().find(|g| wires.iter().any(|w| w.from == **g)) {
        return Err(Error::invalid(format!(
            "gear '{}': its out is wired both to gears of this rack and to another rack; \
             wire it to one or the other (add a pass-through gear to split it)",
            gears[*gear].name
        )));
    }
    Ok(Scenario { name, version, gears, wires, bus_inputs, bus_outputs })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUTORIAL: &str = r#"
name: "Wasm Zig Demo"
version: "v1.0.0"
gears:
  - name: my-zig-filter
    type: wasm
    config:
      source: "snake://wasm_catalog/df88ee3f3afe6d998294b2a9b418064cd42c03446b8eb90ca35779bec39c4f0e.wasm"
      entrypoint: "process"
      memory_limit_pages: 16 # Sandbox limited to 1MB
"#;

    #[test]
    fn tutorial_form_and_meta_form_both_parse() {
        let s = parse(TUTORIAL).unwrap();
        assert_eq!((s.name.as_str(), s.version.as_str()), ("Wasm Zig Demo", "v1.0.0"));
        assert!(matches!(&s.gears[0].kind, GearKind::Wasm { config, .. } if config.memory_limit_pages == 16));
        let meta = TUTORIAL
            .replace("name: \"Wasm Zig Demo\"\nversion: \"v1.0.0\"", "meta:\n  name: demo\n  version: 2");
        let s = parse(&meta).unwrap();
        assert_eq!((s.name.as_str(), s.version.as_str()), ("demo", "2"));
    }

    #[test]
    fn wires_to_and_from_other_racks() {
        let base = "name: w\nversion: '1'\ngears:\n  - {name: gen, type: generate}\n  - {name: f, type: wasm, config: {source: 'file://x.wasm'}}\nwires:\n";
        let s = parse(&format!(
            "{base}  - {{from: a.gen.out, to: f.in, lane: guaranteed}}\n  - {{from: a.gen.out, to: f.in}}\n  - {{from: gen.out, to: b.f.in}}\n"
        ))
        .unwrap();
        let input = BusInput { rack: "a".into(), gear: "gen".into(), port: "out".into(), to: 1 };
        assert_eq!(s.bus_inputs, std::slice::from_ref(&input), "one per subject and gear");
        assert_eq!(input.subject(), "flux.msg.a.gen.out");
        assert_eq!(s.bus_outputs, [0]);
        assert!(s.wires.is_empty());
        let cases = [
            ("  - {from: a.gen.out, to: f.in, lane: hot}", "lane hot cannot cross racks"),
            (
                "  - {from: gen.out, to: f.in, lane: guaranteed}",
                "lane guaranteed between two gears of this rack",
            ),
            ("  - {from: gen.out, to: f.in, lane: warm}", "it must be hot or guaranteed"),
            ("  - {from: a.gen.out, to: b.f.in}", "joins two other racks"),
            ("  - {from: A.gen.out, to: f.in}", "\"rack.gear.port\" for a gear of another rack"),
            ("  - {from: a.gen.out.x, to: f.in}", "must be \"gear.port\""),
            (
                "  - {from: gen.out, to: f.in}\n  - {from: gen.out, to: b.f.in}",
                "gear 'gen': its out is wired both",
            ),
        ];
        for (wires, want) in cases {
            let e = parse(&format!("{base}{wires}\n")).unwrap_err().to_string();
            assert!(e.contains(want), "{wires}: {e}");
        }
    }

    #[test]
    fn wires_and_defaults() {
        let s = parse(
            "meta: {name: w, version: '1'}\ngears:\n  - {name: gen, type: generate, config: {count: 3}}\n  - {name: f, type: wasm, config: {source: 'file://x.wasm'}}\nwires:\n  - {from: gen.out, to: f.in}\n",
        )
        .unwrap();
        assert_eq!(s.wires, [Wire { from: 0, to: 1 }]);
        assert_eq!(
            s.gears[1].kind,
            GearKind::Wasm { source: Source::File("x.wasm".into()), config: GearConfig::default() }
        );
    }

    #[test]
    fn bad_scenarios_name_what_is_wrong() {
        let base = "meta: {name: w, version: '1'}\ngears:\n  - {name: f, type: wasm, config: {source: 'file://x.wasm'}}\n";
        let cases = [
            ("gears: []\nmeta: {name: a, version: '1'}", "no gears"),
            ("meta: {name: a}\ngears: [{name: f, type: wasm}]", "no version"),
            ("name: a\nversion: 1\ngears: [{name: F, type: wasm}]", "must match ^[a-z0-9_-]+$"),
            ("name: a\nversion: 1\ngears: [{name: f, type: http}]", "unknown gear type \"http\""),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {}}]", "config.source is required"),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {source: 'http://x'}}]", "use snake://"),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {source: 'snake://wasm_catalog/abc.wasm'}}]", "64 lowercase hex"),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {source: 'file://x', memory_limit_pages: 1025}}]", "between 1 and 1024"),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {source: 'file://x', memory_limit_pages: 0}}]", "between 1 and 1024"),
            ("name: a\nversion: 1\ngears: [{name: f, type: generate}, {name: f, type: generate}]", "used twice"),
            ("{", "not valid YAML"),
            ("- 1", "must be a mapping"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let wire_cases = [
            ("wires: [{from: g.out, to: f.in}]", "names gear 'g', which the scenario does not have"),
            ("wires: [{from: f.in, to: f.in}]", "has no output port 'in'"),
            ("wires: [{from: f.out, to: f.out}]", "has no input port 'out'"),
            ("wires: [{from: fout, to: f.in}]", "must be \"gear.port\""),
        ];
        for (wires, want) in wire_cases {
            let e = parse(&format!("{base}{wires}")).unwrap_err().to_string();
            assert!(e.contains(want), "{wires}: {e}");
        }
        assert!(parse(base).is_ok());
        // At the limit of pages it parses.
        assert!(parse(
            &base.replace("source: 'file://x.wasm'", "source: 'file://x.wasm', memory_limit_pages: 1024")
        )
        .is_ok());
    }

    /// The issue's alias bomb: nine levels of anchors, each aliasing the last ten times.
    fn alias_bomb(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..levels {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        let bomb = alias_bomb(9);
        assert!(bomb.len() < 600, "{}", bomb.len());
        let e = parse(&bomb).unwrap_err().to_string();
        assert!(
            e.contains(&format!("more than {MAX_SCENARIO_NODES} YAML nodes once aliases are expanded")),
            "{e}"
        );
        // Long text repeated through aliases is bounded by bytes, not nodes.
        let long = format!("a: &a {:?}\nb: [{}]\n", "x".repeat(100_000), vec!["*a"; 21].join(","));
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.contains(&format!("more than {MAX_SCENARIO_EXPANDED_BYTES} bytes of text")), "{e}");
        let deep = format!("{}{}", "[".repeat(MAX_SCENARIO_DEPTH + 1), "]".repeat(MAX_SCENARIO_DEPTH + 1));
        let e = parse(&deep).unwrap_err().to_string();
        assert!(e.contains(&format!("nesting deeper than {MAX_SCENARIO_DEPTH} levels")), "{e}");
    }

    #[test]
    fn expansion_limits_hold_at_their_edge() {
        // A mapping with one key whose value is a list: 3 nodes + n scalars.
        let at_limit = format!("a: [{}]\n", vec!["1"; MAX_SCENARIO_NODES - 3].join(","));
        let e = parse(&at_limit).unwrap_err().to_string();
        assert!(
            e.contains("unknown key \"a\""),
            "at the node limit the YAML loads and the schema speaks: {e}"
        );
        let past = format!("a: [{}]\n", vec!["1"; MAX_SCENARIO_NODES - 2].join(","));
        assert!(parse(&past).unwrap_err().to_string().contains("YAML nodes once aliases"));
        let depth = |n: usize| format!("a: {}{}\n", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse(&depth(MAX_SCENARIO_DEPTH)).unwrap_err().to_string().contains("unknown key \"a\""));
        assert!(parse(&depth(MAX_SCENARIO_DEPTH + 1)).unwrap_err().to_string().contains("nesting deeper"));
        // Aliases used sparingly still work.
        let anchored = "name: &n demo\nversion: *n\ngears:\n  - &g {name: g, type: generate}\n";
        let s = parse(anchored).unwrap();
        assert_eq!((s.name.as_str(), s.version.as_str(), s.gears.len()), ("demo", "demo", 1));
    }

    #[test]
    fn keys_at_the_wrong_level_say_where_they_belong_with_their_line() {
        let cases = [
            ("name: a\nversion: 1\nentrypoint: process\ngears: [{name: f, type: generate}]",
             "line 3: scenario: key \"entrypoint\" belongs in a wasm gear's config, not here"),
            ("name: a\nversion: 1\ngears:\n  - name: f\n    type: generate\n    config:\n      source: x\n",
             "line 7: gear 'f': config: key \"source\" belongs in a wasm gear's config, not here"),
            ("name: a\nversion: 1\ngears:\n  - name: f\n    type: generate\n    count: 3\n",
             "line 6: gear 'f': key \"count\" belongs in a generate gear's config, not here"),
            ("name: a\nversion: 1\ngears: [{name: f, type: generate}]\nwires:\n  - {from: f.out, to: f.in, name: w}\n",
             "wires[0]: key \"name\" belongs in the top of the scenario, meta, or a gear, not here"),
            ("name: a\nversion: 1\ngears: [{name: f, type: generate}]\nwire: []\n",
             "line 4: scenario: unknown key \"wire\" (did you mean \"wires\"?"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_nearest_known_key() {
        let cases = [
            ("name: a\nversion: 1\ngears: [{name: f, type: generate, config: {cuont: 1}}]",
             "gear 'f': config: unknown key \"cuont\" (did you mean \"count\"?"),
            ("name: a\nversion: 1\ngears: [{name: f, type: wasm, config: {source: 'file://x', memory_limit_page: 2}}]",
             "unknown key \"memory_limit_page\" (did you mean \"memory_limit_pages\"?"),
            ("name: a\nversion: 1\ngear: []", "scenario: unknown key \"gear\" (did you mean \"gears\"?"),
            ("meta: {name: a, versoin: 1}\ngears: []", "meta: unknown key \"versoin\" (did you mean \"version\"?"),
            ("name: a\nversion: 1\ngears: [{name: f, typ: generate}]", "gear 'f': unknown key \"typ\" (did you mean \"type\"?"),
            ("name: a\nversion: 1\ngears: [{name: f, type: generate}]\nwires: [{form: f.out, to: f.in}]",
             "wires[0]: unknown key \"form\" (did you mean \"from\"?"),
            ("name: a\nversion: 1\n1: x\ngears: []", "scenario: a key is not a string (Integer(1))"),
            ("name: a\nversion: 1\n\"\\e[31m\": x\ngears: []", "unknown key \"\\u{1b}[31m\""),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_and_a_bom_is_accepted() {
        let e = parse("name: a\nname: b\nversion: 1\ngears: [{name: f, type: generate}]").unwrap_err();
        assert!(e.to_string().contains("duplicated key in mapping"), "{e}");
        let e =
            parse("name: a\nversion: 1\ngears: [{name: f, type: generate, config: {count: 1, count: 2}}]")
                .unwrap_err();
        assert!(e.to_string().contains("duplicated key in mapping"), "{e}");
        let s = parse(&format!("\u{feff}{TUTORIAL}")).unwrap();
        assert_eq!(s, parse(TUTORIAL).unwrap());
    }
}
