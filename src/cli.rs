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

/// fluxrig-edge: run signed fluxrig Wasm gears on an edge gateway. Every command takes
/// --data-dir DIR (default ./data, or $FLUXRIG_DATA_DIR), before or after its name, and
/// -h/--help; 'fluxrig help COMMAND' works too. Exit codes: 0 success, 1 refused or failed,
/// 2 bad command line, 3 trust failure (signature or hash); 'run' adds 4 (some messages
/// failed) and 5 (stopped by a second signal).
#[derive(FromArgs, Debug)]
#[argh(help_triggers("-h", "--help", "help"))]
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
    Gear(GearCmd),
    Version(Version),
}

/// write a new gear project (Rust, C, Zig or AssemblyScript) from the kits in sdk/
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "gear", help_triggers("-h", "--help", "help"))]
pub struct GearCmd {
    #[argh(subcommand)]
    pub command: GearCommand,
}

/// The `gear` commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum GearCommand {
    New(GearNew),
}

/// write a buildable gear project: the kit, a gear that marks or drops messages, a build
/// script, a test input and a README with the sign-import-run steps
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "new", help_triggers("-h", "--help", "help"))]
pub struct GearNew {
    /// the gear's name: lowercase letters, digits, - and _ (also its folder)
    #[argh(positional)]
    pub name: String,
    /// the language: rust, c, zig or as (AssemblyScript)
    #[argh(option)]
    pub lang: crate::author::Lang,
    /// the folder to write (default ./NAME; must not exist or be empty)
    #[argh(option)]
    pub dir: Option<PathBuf>,
    /// data folder (not used by this command)
    #[argh(option, default = "default_data_dir()")]
    #[allow(dead_code)] // accepted on every command, so that the global --data-dir always fits
    pub data_dir: PathBuf,
}

/// print the version, git commit, target and enabled features (also --version, -V)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "version", help_triggers("-h", "--help", "help"))]
pub struct Version {
    /// data folder (not used by this command)
    #[argh(option, default = "default_data_dir()")]
    #[allow(dead_code)] // accepted on every command, so that the global --data-dir always fits
    pub data_dir: PathBuf,
}

/// manage Ed25519 key files
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keys", help_triggers("-h", "--help", "help"))]
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
#[argh(subcommand, name = "gen-cluster", help_triggers("-h", "--help", "help"))]
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
#[argh(subcommand, name = "wasm", help_triggers("-h", "--help", "help"))]
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
#[argh(subcommand, name = "sign", help_triggers("-h", "--help", "help"))]
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
#[argh(subcommand, name = "import", help_triggers("-h", "--help", "help"))]
pub struct Import {
    /// the vendor-signed .wasm module
    #[argh(positional)]
    pub file: PathBuf,
    /// import a module that has no vendor signature at all
    #[argh(switch)]
    pub allow_unsigned: bool,
    /// create a new cluster key although the catalog holds modules signed by a previous
    /// one (a new node identity: every module must be imported again)
    #[argh(switch)]
    pub new_cluster_key: bool,
    /// NATS server of the fleet: nats://HOST:PORT or tls://HOST:PORT (built with the
    /// `nats` feature only; see README "Fleet")
    #[argh(option)]
    pub nats: Option<String>,
    /// PEM file of the CA that signed the NATS server's certificate (turns TLS on)
    #[argh(option)]
    pub nats_ca: Option<PathBuf>,
    /// name the NATS server's certificate must be valid for, whatever the URL's host
    /// (default flux, fluxrig's snake.domain)
    #[argh(option)]
    pub nats_server_name: Option<String>,
    /// PEM client certificate for a NATS server that requires one (with --nats-key)
    #[argh(option)]
    pub nats_cert: Option<PathBuf>,
    /// PEM private key of --nats-cert
    #[argh(option)]
    pub nats_key: Option<PathBuf>,
    /// NATS user name (with --nats-password-file)
    #[argh(option)]
    pub nats_user: Option<String>,
    /// file holding the NATS user's password
    #[argh(option)]
    pub nats_password_file: Option<PathBuf>,
    /// file holding a NATS token
    #[argh(option)]
    pub nats_token_file: Option<PathBuf>,
    /// file holding a NATS nkey seed (SU...)
    #[argh(option)]
    pub nats_nkey: Option<PathBuf>,
    /// NATS .creds file (user JWT and nkey seed)
    #[argh(option)]
    pub nats_creds: Option<PathBuf>,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// list the catalog and check every module's cluster signature and hash
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help", "help"))]
pub struct List {
    /// print one JSON object per module (hash, bytes, ok, error) instead of a table
    #[argh(switch)]
    pub json: bool,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// check a module file as a gear author or an operator would: vendor signature, cluster
/// signature (if any), and every shape problem that would stop it (imports, exports,
/// memory), each with the fix in Rust, C, Zig and AssemblyScript
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify", help_triggers("-h", "--help", "help"))]
pub struct VerifyCmd {
    /// the .wasm module
    #[argh(positional)]
    pub file: PathBuf,
    /// entrypoint export to check for (default process)
    #[argh(option, default = "String::from(\"process\")")]
    pub entrypoint: String,
    /// the memory_limit_pages the module must start within (default 16, a scenario's default)
    #[argh(option, default = "fluxrig_core::limits::DEFAULT_MEMORY_LIMIT_PAGES")]
    pub memory_limit_pages: u32,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// run messages through a gear and print each result as a JSON line: the gear author's
/// test bench. The messages: -m MESSAGE (or -m @FILE), else standard input (one JSON line
/// or CBOR item each) when it is not a terminal, else "hello". A catalog hash is verified;
/// a file runs unverified, with a warning
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "call", help_triggers("-h", "--help", "help"))]
pub struct Call {
    /// a .wasm file, or the catalog hash of an imported module
    #[argh(positional)]
    pub module: String,
    /// the message: a fluxMsg as JSON, or any other text as its raw payload; @FILE reads it
    /// from FILE
    #[argh(option, short = 'm')]
    pub message: Option<String>,
    /// input format of standard input: json (lines) or cbor (sequence) (default json)
    #[argh(option, default = "Format::Json")]
    pub input_format: Format,
    /// run each message N times and report fuel and time per call (min, median, max) and
    /// the instance rebuilds; the output is printed once (default 1)
    #[argh(option, long = "loop", default = "1")]
    pub repeat: u32,
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
#[argh(subcommand, name = "scenario", help_triggers("-h", "--help", "help"))]
pub struct ScenarioCmd {
    #[argh(subcommand)]
    pub command: ScenarioCommand,
}

/// The `scenario` commands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ScenarioCommand {
    Import(ScenarioImport),
    Validate(ScenarioValidate),
    List(ScenarioList),
    Show(ScenarioShow),
    Activate(ScenarioActivate),
}

/// check a scenario completely (schema, names, wires, sources, signatures, hashes,
/// limits, memory budget), then store it as DATA/scenarios/NAME.yaml, and with --activate
/// make it the one 'run' uses
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import", help_triggers("-h", "--help", "help"))]
pub struct ScenarioImport {
    /// the scenario YAML file
    #[argh(positional)]
    pub file: Option<PathBuf>,
    /// the scenario YAML file (fluxrig's spelling)
    #[argh(option, short = 'f', long = "file")]
    pub file_flag: Option<PathBuf>,
    /// make it the active scenario
    #[argh(switch)]
    pub activate: bool,
    /// check everything and write nothing (as 'scenario validate')
    #[argh(switch, short = 'd')]
    pub dry_run: bool,
    /// memory budget for all gears in MiB (default: half of this machine's RAM)
    #[argh(option)]
    pub memory_budget_mib: Option<usize>,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// check a scenario as 'scenario import' does (schema, sources, signatures, hashes,
/// budget) and write nothing
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "validate", help_triggers("-h", "--help", "help"))]
pub struct ScenarioValidate {
    /// the scenario YAML file
    #[argh(positional)]
    pub file: PathBuf,
    /// memory budget for all gears in MiB (default: half of this machine's RAM)
    #[argh(option)]
    pub memory_budget_mib: Option<usize>,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// list the stored scenarios, marking the active one
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help", "help"))]
pub struct ScenarioList {
    /// print one JSON object per scenario (name, version, file, active)
    #[argh(switch)]
    pub json: bool,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// print a stored scenario's YAML, by name
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show", help_triggers("-h", "--help", "help"))]
pub struct ScenarioShow {
    /// the scenario's name (as 'scenario list' shows it)
    #[argh(positional)]
    pub name: String,
    /// data folder (default ./data)
    #[argh(option, default = "default_data_dir()")]
    pub data_dir: PathBuf,
}

/// check a stored scenario again and make it the active one; a running rack switches to
/// it on SIGHUP (systemctl reload fluxrig)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "activate", help_triggers("-h", "--help", "help"))]
pub struct ScenarioActivate {
    /// the scenario's name (as 'scenario list' shows it)
    #[argh(positional)]
    pub name: String,
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
#[argh(subcommand, name = "run", help_triggers("-h", "--help", "help"))]
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
    /// this rack's name in the fleet (a-z, 0-9, _ and -): its gears' outputs to other
    /// racks go out on flux.msg.RACK.GEAR.out; needed when the scenario wires to or from
    /// another rack ("rack.gear.port")
    #[argh(option)]
    pub rack: Option<String>,
    /// seconds JetStream waits for a bus message's ack before it delivers it again
    /// (default 30)
    #[argh(option, default = "crate::bus::DEFAULT_ACK_WAIT_SECS")]
    pub nats_ack_wait_secs: u64,
    /// NATS server of the fleet: nats://HOST:PORT or tls://HOST:PORT (built with the
    /// `nats` feature only; see README "Fleet")
    #[argh(option)]
    pub nats: Option<String>,
    /// PEM file of the CA that signed the NATS server's certificate (turns TLS on)
    #[argh(option)]
    pub nats_ca: Option<PathBuf>,
    /// name the NATS server's certificate must be valid for, whatever the URL's host
    /// (default flux, fluxrig's snake.domain)
    #[argh(option)]
    pub nats_server_name: Option<String>,
    /// PEM client certificate for a NATS server that requires one (with --nats-key)
    #[argh(option)]
    pub nats_cert: Option<PathBuf>,
    /// PEM private key of --nats-cert
    #[argh(option)]
    pub nats_key: Option<PathBuf>,
    /// NATS user name (with --nats-password-file)
    #[argh(option)]
    pub nats_user: Option<String>,
    /// file holding the NATS user's password
    #[argh(option)]
    pub nats_password_file: Option<PathBuf>,
    /// file holding a NATS token
    #[argh(option)]
    pub nats_token_file: Option<PathBuf>,
    /// file holding a NATS nkey seed (SU...)
    #[argh(option)]
    pub nats_nkey: Option<PathBuf>,
    /// NATS .creds file (user JWT and nkey seed)
    #[argh(option)]
    pub nats_creds: Option<PathBuf>,
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

/// The environment variable naming the data folder when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "FLUXRIG_DATA_DIR";

/// What the command line asks for: a command, or text to print and an exit code (help,
/// a usage error).
#[derive(Debug)]
// Made once per process and moved once: boxing the command would only add a step.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// A command to run.
    Run(Top),
    /// Text to print (to standard output if `code` is 0, else to standard error).
    Print {
        /// The text.
        text: String,
        /// The exit code.
        code: u8,
    },
}

/// Parses `args` (without the program name) the way people type them: `--opt=value` as
/// well as `--opt value`; `--data-dir` before or after the command, else
/// [`DATA_DIR_ENV`]; `--version`, `-V` and `version`; `help COMMAND...`; and a suggestion
/// for a mistyped command or flag.
pub fn parse(program: &str, args: &[String], data_dir_env: Option<String>) -> Parsed {
    let mut words: Vec<String> = Vec::with_capacity(args.len() + 2);
    let mut data_dir = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            words.push(arg.clone());
            words.extend(rest.by_ref().cloned());
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && flag.len() > 2 => {
                (flag, Some(value.to_string()))
            }
            _ => (arg.as_str(), None),
        };
        if flag == "--data-dir" {
            match inline.or_else(|| rest.next().cloned()) {
                Some(dir) => data_dir = Some(dir),
                None => return usage("--data-dir needs a folder, as in --data-dir /var/lib/fluxrig"),
            }
            continue;
        }
        words.push(flag.to_string());
        words.extend(inline);
    }
    match words.first().map(String::as_str) {
        Some("--version" | "-V") => words[0] = "version".to_string(),
        Some("help") if words.len() > 1 => {
            words.remove(0);
            words.push("--help".to_string());
        }
        None => words.push("--help".to_string()),
        _ => {}
    }
    let is_command = words.first().is_some_and(|w| !w.starts_with('-') && w != "help");
    if let Some(dir) = data_dir.or(data_dir_env).filter(|_| is_command) {
        words.push("--data-dir".to_string());
        words.push(dir);
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    match Top::from_args(&[program], &refs) {
        Ok(top) => Parsed::Run(top),
        Err(early) if early.status.is_ok() => Parsed::Print { text: early.output, code: 0 },
        Err(early) => Parsed::Print { text: explain(program, &refs, &early.output), code: EXIT_USAGE },
    }
}

const EXIT_USAGE: u8 = crate::error::EXIT_USAGE;

fn usage(text: &str) -> Parsed {
    Parsed::Print { text: format!("fluxrig: {text}"), code: EXIT_USAGE }
}

/// Turns argh's "Unrecognized argument" into one line naming the command, the nearest
/// known command or flag, and where the help is; other errors pass unchanged.
fn explain(program: &str, words: &[&str], error: &str) -> String {
    let Some(given) = error.strip_prefix("Unrecognized argument: ") else {
        return error.trim_end().to_string();
    };
    let given = given.trim().trim_matches('"');
    // The command path: the leading words that name (sub)commands.
    let mut path: Vec<&str> = Vec::new();
    let mut known = candidates(program, &path);
    for word in words.iter().take_while(|w| **w != given) {
        if known.commands.iter().any(|c| c == word) {
            path.push(word);
            known = candidates(program, &path);
        }
    }
    let pool = if given.starts_with('-') { &known.flags } else { &known.commands };
    let nearest = pool
        .iter()
        .map(|c| (distance(given, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default();
    let command = if path.is_empty() { "fluxrig".to_string() } else { format!("fluxrig {}", path.join(" ")) };
    let kind = if given.starts_with('-') { "flag" } else { "command or argument" };
    format!("fluxrig: unknown {kind} {given:?} for '{command}'{nearest}; see '{command} --help'")
}

/// The commands and flags a command path knows, read from its own help text.
struct Known {
    commands: Vec<String>,
    flags: Vec<String>,
}

fn candidates(program: &str, path: &[&str]) -> Known {
    let mut words = path.to_vec();
    words.push("--help");
    let help = match Top::from_args(&[program], &words) {
        Err(early) => early.output,
        Ok(_) => String::new(),
    };
    let mut known = Known { commands: Vec::new(), flags: Vec::new() };
    let mut in_commands = false;
    for line in help.lines() {
        if !line.starts_with(' ') {
            in_commands = line.starts_with("Commands:");
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        if in_commands {
            known.commands.push(first.to_string());
        } else {
            known.flags.extend(
                line.split_whitespace()
                    .take_while(|w| w.starts_with('-'))
                    .map(|w| w.trim_end_matches(',').to_string()),
            );
        }
    }
    known
}

/// Levenshtein distance between two short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The version line: version, git commit, target and enabled features.
pub fn version_line() -> String {
    // The package's cargo features compiled in (none yet; the bus adds `nats`).
    let features: Vec<&str> = Vec::new();
    format!(
        "fluxrig {} (commit {}, target {}, features: {})",
        env!("CARGO_PKG_VERSION"),
        option_env!("FLUXRIG_GIT_COMMIT").unwrap_or("unknown"),
        option_env!("FLUXRIG_TARGET").unwrap_or("unknown"),
        if features.is_empty() { "none".to_string() } else { features.join(", ") }
    )
}

/// The `--nats*` flags of a command, gathered (argh has no flattening).
macro_rules! bus_flags {
    ($c:expr) => {
        $crate::bus::BusFlags {
            url: $c.nats.clone(),
            ca: $c.nats_ca.clone(),
            server_name: $c.nats_server_name.clone(),
            cert: $c.nats_cert.clone(),
            key: $c.nats_key.clone(),
            user: $c.nats_user.clone(),
            password_file: $c.nats_password_file.clone(),
            token_file: $c.nats_token_file.clone(),
            nkey_file: $c.nats_nkey.clone(),
            creds_file: $c.nats_creds.clone(),
        }
    };
}

impl Import {
    /// Returns the `--nats*` flags.
    pub fn bus_flags(&self) -> crate::bus::BusFlags {
        bus_flags!(self)
    }
}

impl Run {
    /// Returns the `--nats*` flags.
    pub fn bus_flags(&self) -> crate::bus::BusFlags {
        bus_flags!(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: Option<&str>) -> Parsed {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse("fluxrig", &args, env.map(String::from))
    }

    fn printed(args: &[&str]) -> (String, u8) {
        match run(args, None) {
            Parsed::Print { text, code } => (text, code),
            Parsed::Run(top) => panic!("{args:?} parsed as {top:?}"),
        }
    }

    #[test]
    fn equals_values_and_a_global_data_dir_anywhere() {
        for args in [
            &["--data-dir", "/d", "wasm", "list"][..],
            &["wasm", "--data-dir=/d", "list"],
            &["wasm", "list", "--data-dir", "/d"],
            &["--data-dir=/d", "wasm", "list"],
        ] {
            let Parsed::Run(Top { command: Command::Wasm(Wasm { command: WasmCommand::List(l) }) }) =
                run(args, None)
            else {
                panic!("{args:?}")
            };
            assert_eq!(l.data_dir, PathBuf::from("/d"), "{args:?}");
        }
        let Parsed::Run(Top { command: Command::Run(r) }) =
            run(&["run", "--input-format=cbor"], Some("/env"))
        else {
            panic!()
        };
        assert_eq!((r.input_format, r.data_dir), (Format::Cbor, PathBuf::from("/env")));
        let Parsed::Run(Top { command: Command::Run(r) }) =
            run(&["run", "--data-dir", "/flag"], Some("/env"))
        else {
            panic!()
        };
        assert_eq!(r.data_dir, PathBuf::from("/flag"), "the flag wins over the environment");
        assert_eq!(printed(&["run", "--data-dir"]).1, EXIT_USAGE);
    }

    #[test]
    fn help_version_and_suggestions() {
        for args in [
            &["-h"][..],
            &["--help"],
            &["help"],
            &[],
            &["help", "wasm"],
            &["wasm", "-h"],
            &["wasm", "call", "help"],
        ] {
            let (text, code) = printed(args);
            assert_eq!(code, 0, "{args:?}");
            assert!(text.starts_with("Usage: fluxrig"), "{args:?}: {text}");
        }
        assert!(printed(&["help", "wasm", "call"]).0.starts_with("Usage: fluxrig wasm call"));
        for args in [&["--version"][..], &["-V"], &["version"]] {
            assert!(matches!(run(args, None), Parsed::Run(Top { command: Command::Version(_) })), "{args:?}");
        }
        assert!(version_line().starts_with(concat!("fluxrig ", env!("CARGO_PKG_VERSION"), " (commit ")));
        let (text, code) = printed(&["wasm", "lst"]);
        assert_eq!(code, EXIT_USAGE);
        assert_eq!(
            text,
            "fluxrig: unknown command or argument \"lst\" for 'fluxrig wasm' (did you mean \"list\"?); see 'fluxrig wasm --help'"
        );
        let (text, _) = printed(&["run", "--lsten", "unix:x"]);
        assert!(
            text.contains("unknown flag \"--lsten\" for 'fluxrig run' (did you mean \"--listen\"?)"),
            "{text}"
        );
        let (text, _) = printed(&["scenaro", "list"]);
        assert!(text.contains("(did you mean \"scenario\"?); see 'fluxrig --help'"), "{text}");
        let (text, _) = printed(&["wasm", "frobnicate"]);
        assert!(!text.contains("did you mean"), "no suggestion when nothing is near: {text}");
    }

    #[test]
    fn distances() {
        assert_eq!(distance("lst", "list"), 1);
        assert_eq!(distance("--lsten", "--listen"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
