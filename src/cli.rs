//! Command-line arguments (argh): raw flags in, a [`Command`] out. Doc comments are the
//! `--help` text.

use std::path::PathBuf;

use argh::FromArgs;
use fluxrig_core::abi::LogLevel;

use crate::listen::Listen;
use crate::logger::LogFormat;

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

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// fluxrig-edge: run signed fluxrig Wasm gears on an edge gateway. Exit codes: 0 success,
/// 1 refused or failed, 2 bad command line, 3 trust failure (signature or hash).
#[derive(FromArgs, Debug)]
pub struct Top {
    #[argh(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Keys(Keys),
    Wasm(Wasm),
    Scenario(ScenarioCmd),
    Run(Run),
}

/// manage Ed25519 key files
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keys")]
pub struct Keys {
    #[argh(subcommand)]
    pub command: KeysCommand,
}

/// The `keys` commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum KeysCommand {
    GenCluster(GenCluster),
}

/// generate an Ed25519 key pair: PATH (64 bytes, seed then public key) and PATH.pub (32
/// bytes), both mode 0600; usable as a vendor key or a cluster key
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gen-cluster")]
pub struct GenCluster {
    /// key file to write (overrides --dir and --name)
    #[argh(option, short = 'o')]
    pub out: Option<PathBuf>,
    /// folder to write the key in (default .)
    #[argh(option, short = 'd', default = "PathBuf::from(\".\")")]
    pub dir: PathBuf,
    /// key file name inside --dir (default cluster.key)
    #[argh(option, short = 'n', default = "String::from(\"cluster.key\")")]
    pub name: String,
    /// replace existing key files (the old key is lost)
    #[argh(switch)]
    pub force: bool,
    /// data folder (default ./data; not used by this command)
    #[argh(option, default = "default_data_dir()")]
    #[allow(dead_code)] // accepted on every command, so that scripts can always pass it
    pub data_dir: PathBuf,
}

/// sign, import, inspect and try Wasm gear modules
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "wasm")]
pub struct Wasm {
    #[argh(subcommand)]
    pub command: WasmCommand,
}

/// The `wasm` commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum WasmCommand {
    Sign(Sign),
    Import(Import),
    List(List),
    Verify(VerifyCmd),
    Call(Call),
}

/// vendor-sign a module in place (replaces an older vendor signature)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "sign")]
pub struct Sign {
    /// the .wasm module to sign
    #[argh(positional)]
    pub file: PathBuf,
    /// the vendor's private key file
    #[argh(positional)]
    pub key: PathBuf,
    /// data folder (default ./data; not used by this command)
    #[argh(option, default = "default_data_dir()")]
    #[allow(dead_code)] // accepted on every command, so that scripts can always pass it
    pub data_dir: PathBuf,
}

/// check a module's vendor signature against DATA/wasm/keys and its shape, countersign it
/// with the node's cluster key and store it in the catalog; prints its SHA-256 hash
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
pub struct Import {
    /// the vendor-signed .wasm module
    #[argh(positional)]
    pub file: PathBuf,
    /// import a module that has no vendor signature at all
    #[argh(switch)]
    pub allow_unsigned: bool,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// list the catalog and check every module's cluster signature and hash
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct List {
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// check a module file: vendor signature, cluster signature (if any) and gear shape
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify")]
pub struct VerifyCmd {
    /// the .wasm module
    #[argh(positional)]
    pub file: PathBuf,
    /// entrypoint export to check for (default process)
    #[argh(option, default = "String::from(\"process\")")]
    pub entrypoint: String,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// run one message through a gear and print the result as a JSON line; the gear author's
/// test bench. A catalog hash is verified; a file runs unverified, with a warning
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "call")]
pub struct Call {
    /// a .wasm file, or the catalog hash of an imported module
    #[argh(positional)]
    pub module: String,
    /// the message: a fluxMsg as JSON, or any other text as its raw payload (default "hello")
    #[argh(option, short = 'm', default = "String::from(\"hello\")")]
    pub message: String,
    /// entrypoint export (default process)
    #[argh(option, default = "String::from(\"process\")")]
    pub entrypoint: String,
    /// linear-memory limit in 64 KiB pages (default 16)
    #[argh(option, default = "fluxrig_core::limits::DEFAULT_MEMORY_LIMIT_PAGES")]
    pub memory_limit_pages: u32,
    /// fuel for the process call (default 10000000)
    #[argh(option, default = "fluxrig_core::limits::DEFAULT_FUEL_PER_MESSAGE")]
    pub fuel: u64,
    /// show the gear's debug log lines
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// check and store scenarios
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "scenario")]
pub struct ScenarioCmd {
    #[argh(subcommand)]
    pub command: ScenarioCommand,
}

/// The `scenario` commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ScenarioCommand {
    Import(ScenarioImport),
}

/// check a scenario completely (schema, names, wires, sources, signatures, hashes,
/// limits, memory budget), then store it, and with --activate make it the one 'run' uses
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
pub struct ScenarioImport {
    /// the scenario YAML file
    #[argh(positional)]
    pub file: PathBuf,
    /// make it the active scenario
    #[argh(switch)]
    pub activate: bool,
    /// memory budget for all gears in MiB (default: half of this machine's RAM)
    #[argh(option)]
    pub memory_budget_mib: Option<usize>,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// run the active scenario (or --scenario FILE) as a service: unwired gear inputs read
/// standard input (or the --listen sockets), unwired outputs write standard output (or
/// --output FILE), logs go to standard error. SIGINT/SIGTERM stop it after the messages
/// already read (a second one stops at once); SIGHUP reloads the scenario. Exit codes: 0
/// every message written or dropped by a gear, 4 some messages failed, 5 stopped by a
/// second signal, 1/2/3 could not start
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct Run {
    /// scenario YAML to run instead of the active one (SIGHUP re-reads it)
    #[argh(option)]
    pub scenario: Option<PathBuf>,
    /// input format of standard input and sockets: json (lines) or cbor (sequence)
    /// (default json)
    #[argh(option, default = "Format::Json")]
    pub input_format: Format,
    /// output format: json or cbor (default json)
    #[argh(option, default = "Format::Json")]
    pub output_format: Format,
    /// accept input on a socket: unix:PATH (mode 0660), tcp:PORT (127.0.0.1) or
    /// tcp:HOST:PORT; repeat for more. With --listen, standard input is not read unless
    /// --stdin is given, and the rack serves until it is signalled
    #[argh(option)]
    pub listen: Vec<Listen>,
    /// read standard input too when --listen is given
    #[argh(switch)]
    pub stdin: bool,
    /// most open socket connections (default 64; one more is closed at once)
    #[argh(option, default = "crate::listen::DEFAULT_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// longest line or CBOR item on one socket connection, in bytes (default 1048576)
    #[argh(option, default = "crate::listen::DEFAULT_CONNECTION_BUFFER_BYTES")]
    pub connection_buffer_bytes: usize,
    /// seconds a socket connection may stay silent before it is closed (default 300)
    #[argh(option, default = "crate::listen::DEFAULT_IDLE_SECS")]
    pub idle_timeout_secs: u64,
    /// most messages waiting for the gears; when full, inputs stop reading (default 1024)
    #[argh(option, default = "crate::queue::DEFAULT_QUEUE_MESSAGES")]
    pub queue_messages: usize,
    /// most bytes of messages waiting for the gears (default 8388608; one message of any
    /// size is always let in)
    #[argh(option, default = "crate::queue::DEFAULT_QUEUE_BYTES")]
    pub queue_bytes: usize,
    /// append the output to FILE (created with mode 0644) instead of standard output
    #[argh(option)]
    pub output: Option<PathBuf>,
    /// write Prometheus metrics to FILE atomically every --metrics-interval-secs (for
    /// node_exporter's textfile collector) and when the rack stops
    #[argh(option)]
    pub metrics_file: Option<PathBuf>,
    /// seconds between two writes of --metrics-file (default 5)
    #[argh(option, default = "crate::metrics::DEFAULT_METRICS_INTERVAL_SECS")]
    pub metrics_interval_secs: u64,
    /// write the final statistics as one JSON object to FILE when the rack stops (- for
    /// standard error)
    #[argh(option)]
    pub stats_json: Option<PathBuf>,
    /// memory budget for all gears in MiB (default: half of this machine's RAM)
    #[argh(option)]
    pub memory_budget_mib: Option<usize>,
    /// run modules without checking cluster signatures or hashes (development only)
    #[argh(switch)]
    pub insecure: bool,
    /// log format: text or json (one object per line) (default text)
    #[argh(option, default = "LogFormat::Text")]
    pub log_format: LogFormat,
    /// lowest level logged: error, warn, info or debug (default info)
    #[argh(option, from_str_fn(parse_log_level))]
    pub log_level: Option<LogLevel>,
    /// show debug log lines (--log-level debug)
    #[argh(switch, short = 'v')]
    pub verbose: bool,
    /// show only warnings and errors (--log-level warn)
    #[argh(switch, short = 'q')]
    pub quiet: bool,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

fn parse_log_level(value: &str) -> Result<LogLevel, String> {
    crate::logger::parse_level(value)
}
