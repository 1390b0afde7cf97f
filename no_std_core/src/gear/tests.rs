//! Tests of gear.rs; this file is compiled only under #[cfg(test)] (see its `mod` line).
use super::error::cut;
use super::*;
use crate::abi::LogLevel;
use crate::limits::{MAX_LOG_LINES_PER_CALL, MAX_LOG_LINE_BYTES};
use crate::message::{FluxMsg, Value};
use crate::verify::dangerous::trust_unverified;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;

const PACK_IN: &str =
    "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))";

/// A guest with a bump `alloc`, a `free` that logs "free" at debug level, and `process`
/// given by the test. Data: "free" at 16, "hello" at 32.
fn guest_with(memory: &str, alloc: &str, process: &str, extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") {memory})
  (data (i32.const 16) "free")
  (data (i32.const 32) "hello")
  (global $next (mut i32) (i32.const 1024))
  (global $count (mut i32) (i32.const 0))
  (func $alloc (export "alloc") (param $len i32) (result i32) (local $p i32) {alloc})
  (func (export "free") (param $p i32) (param $l i32)
    (call $log (i32.const 1) (i32.const 16) (i32.const 4)))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64) {process})
  {extra})"#
    );
    wat::parse_str(text).unwrap()
}

const BUMP: &str = "(local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p)";

fn guest(process: &str) -> Vec<u8> {
    guest_with("1 16", BUMP, process, "")
}

#[derive(Default)]
struct Lines(Vec<(LogLevel, alloc::string::String)>);

impl LogSink for Lines {
    fn log(&mut self, level: LogLevel, line: &str) {
        self.0.push((level, line.to_string()));
    }
}

impl Lines {
    fn frees(&self) -> usize {
        self.0.iter().filter(|(_, l)| l == "free").count()
    }
}

fn load(module: &[u8], config: GearConfig) -> Result<Gear, GearError> {
    let compiled = Compiled::new(&GearEngine::default(), &trust_unverified(module), &config)?;
    Gear::new(compiled, config, &mut Lines::default())
}

/// Runs a decoded message through `gear` and decodes its output (tests speak FluxMsg).
fn process(gear: &mut Gear, msg: &FluxMsg, lines: &mut Lines) -> Result<Option<FluxMsg>, GearError> {
    Ok(gear.process(&MsgBytes::from_msg(msg), lines)?.map(|out| out.to_msg()))
}

fn small_fuel() -> GearConfig {
    GearConfig {
        fuel: FuelBudget { per_message: 100_000, per_alloc: 10_000, for_start: 100_000 },
        ..GearConfig::default()
    }
}

fn example_msg() -> FluxMsg {
    FluxMsg {
        id: [7; 16],
        data: Some(vec![("hello".into(), Value::Text("wasm".into()))]),
        ts: 1_700_000_000_000_000_000,
        ..FluxMsg::default()
    }
}

fn vector_gear() -> Vec<u8> {
    wat::parse_str(fluxrig_testkit::vectors::file("gear.wat")).unwrap()
}

#[test]
fn pass_through_gear_returns_the_message_and_frees_its_buffer_once() {
    let mut gear = load(&guest(PACK_IN), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    let msg = example_msg();
    assert_eq!(process(&mut gear, &msg, &mut lines).unwrap(), Some(msg.clone()));
    assert_eq!(lines.frees(), 1, "input returned as output must be freed once");
    assert!(gear.last_fuel_used() > 0);
    // The shared vector gear (no env.log import) behaves the same.
    let mut gear = load(&vector_gear(), GearConfig::default()).unwrap();
    assert!(!gear.compiled().shape().imports_log);
    assert_eq!(process(&mut gear, &msg, &mut lines).unwrap(), Some(msg));
}

#[test]
fn a_separate_output_buffer_is_freed_too() {
    // Copies the input to a fresh buffer and returns that.
    let copy = "(local $out i32)
      (local.set $out (call $alloc (local.get $len)))
      (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
      (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))";
    let mut gear = load(&guest(copy), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    let msg = example_msg();
    assert_eq!(process(&mut gear, &msg, &mut lines).unwrap(), Some(msg));
    assert_eq!(lines.frees(), 2);
}

#[test]
fn dropping_gear_drops_and_frees_the_input() {
    let mut gear = load(&guest("(i64.const 0x0000_1234_0000_0000)"), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    assert_eq!(process(&mut gear, &example_msg(), &mut lines).unwrap(), None);
    assert_eq!(lines.frees(), 1);
}

#[test]
fn infinite_loop_in_process_costs_one_message_not_the_gear() {
    // Loops forever on messages whose first byte is 0xee, passes others through.
    let body = format!(
        "(if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 0xee)) (then (loop $l (br $l)))) {PACK_IN}"
    );
    let mut gear = load(&guest(&body), small_fuel()).unwrap();
    let mut lines = Lines::default();
    let err = gear.process_bytes(&[0xee], &mut lines).unwrap_err();
    assert_eq!(err, GearError::Fault { call: cut("process"), fault: Fault::OutOfFuel });
    assert_eq!(err.to_string(), "guest \"process\" ran out of fuel");
    assert!(err.rebuilds_instance());
    let msg = example_msg();
    assert_eq!(process(&mut gear, &msg, &mut lines).unwrap(), Some(msg));
}

#[test]
fn infinite_loop_in_alloc_is_a_fault_of_alloc() {
    let spin = "(loop $l (br $l)) (i32.const 0)";
    let mut gear = load(&guest_with("1 16", spin, PACK_IN, ""), small_fuel()).unwrap();
    let err = process(&mut gear, &example_msg(), &mut Lines::default()).unwrap_err();
    assert_eq!(err, GearError::Fault { call: cut("alloc"), fault: Fault::OutOfFuel });
}

#[test]
fn infinite_loop_in_start_refuses_the_gear() {
    let start = "(func $spin (loop $l (br $l))) (start $spin)";
    let err = load(&guest_with("1 16", BUMP, PACK_IN, start), small_fuel()).unwrap_err();
    assert_eq!(err, GearError::StartFailed { fault: Fault::OutOfFuel });
    assert_eq!(err.to_string(), "start function ran out of fuel");
}

#[test]
fn memory_grow_bomb_fails_inside_the_guest_at_the_limit() {
    // Grows one page at a time until memory.grow returns -1, then logs "hello" if the
    // memory is exactly at the limit (4 pages), and passes the message through.
    let body = format!(
        "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br $l)))
         (if (i32.eq (memory.size) (i32.const 4)) (then (call $log (i32.const 2) (i32.const 32) (i32.const 5))))
         {PACK_IN}"
    );
    let config = GearConfig { memory_limit_pages: 4, ..GearConfig::default() };
    let mut gear = load(&guest_with("1", BUMP, &body, ""), config).unwrap();
    let mut lines = Lines::default();
    let msg = example_msg();
    assert_eq!(process(&mut gear, &msg, &mut lines).unwrap(), Some(msg));
    assert!(lines.0.contains(&(LogLevel::Info, "hello".into())), "{:?}", lines.0);
}

#[test]
fn initial_memory_over_the_limit_is_refused_with_advice() {
    let config = GearConfig { memory_limit_pages: 16, ..GearConfig::default() };
    let err = load(&guest_with("17", BUMP, PACK_IN, ""), config.clone()).unwrap_err();
    assert_eq!(err, GearError::InitialMemoryTooLarge { limit: 16, got: 17 });
    let text = err.to_string();
    assert!(text.contains("wants 17 pages") && text.contains("--stack 65536"), "{text}");
    // At the limit it loads; inspect says the same without instantiating.
    assert!(load(&guest_with("16", BUMP, PACK_IN, ""), config.clone()).is_ok());
    assert_eq!(inspect(&guest_with("16", BUMP, PACK_IN, ""), &config).unwrap().initial_pages, 16);
}

#[test]
fn bad_output_ranges_are_clean_errors_and_free_the_input() {
    let cases: [(&str, GearError); 3] = [
        (
            "(i64.const 0x0001_0000_0000_0001)", // ptr 65536, len 1: one past a 1-page memory
            GearError::OutputOutOfRange { ptr: 65536, len: 1, memory: 65536 },
        ),
        (
            "(i64.const 0xffff_ffff_0000_0002)", // ptr + len overflows 32 bits
            GearError::OutputOutOfRange { ptr: u32::MAX, len: 2, memory: 65536 },
        ),
        (
            "(i64.const 0x0000_0000_0000_1001)", // 4097 bytes, over max_output_bytes
            GearError::OutputTooLarge { limit: 4096, got: 4097 },
        ),
    ];
    for (body, want) in cases {
        let config = GearConfig { max_output_bytes: 4096, ..GearConfig::default() };
        let mut gear = load(&guest_with("1 1", BUMP, body, ""), config).unwrap();
        let mut lines = Lines::default();
        assert_eq!(process(&mut gear, &example_msg(), &mut lines).unwrap_err(), want);
        assert_eq!(lines.frees(), 1, "input not freed for {body}");
    }
    // The last byte of memory is a valid one-byte output range (but not a fluxMsg).
    let last_byte = "(i64.const 0x0000_ffff_0000_0001)";
    let mut gear = load(&guest_with("1 1", BUMP, last_byte, ""), GearConfig::default()).unwrap();
    let err = process(&mut gear, &example_msg(), &mut Lines::default()).unwrap_err();
    assert!(matches!(err, GearError::InvalidOutput(_)), "{err:?}");
    assert!(err.to_string().starts_with("guest output is not a fluxMsg"));
}

#[test]
fn alloc_returning_null_or_out_of_range_is_a_clean_error() {
    let mut gear = load(&guest_with("1 16", "(i32.const 0)", PACK_IN, ""), GearConfig::default()).unwrap();
    let err = gear.process_bytes(&[1, 2, 3], &mut Lines::default()).unwrap_err();
    assert_eq!(err, GearError::AllocReturnedNull { len: 3 });
    assert!(err.rebuilds_instance());
    let mut gear =
        load(&guest_with("1 16", "(i32.const 65534)", PACK_IN, ""), GearConfig::default()).unwrap();
    let err = gear.process_bytes(&[1, 2, 3], &mut Lines::default()).unwrap_err();
    assert_eq!(err, GearError::AllocOutOfRange { ptr: 65534, len: 3, memory: 65536 });
    assert!(err.rebuilds_instance());
    let mut gear = load(&guest_with("1 16", "(i32.const -1)", PACK_IN, ""), GearConfig::default()).unwrap();
    let err = gear.process_bytes(&[1, 2], &mut Lines::default()).unwrap_err();
    assert_eq!(err, GearError::AllocOutOfRange { ptr: u32::MAX, len: 2, memory: 65536 });
    // At the edge: the last 3 bytes of memory are fine.
    let mut gear =
        load(&guest_with("1 16", "(i32.const 65533)", PACK_IN, ""), GearConfig::default()).unwrap();
    assert_eq!(
        gear.process_bytes(&[1, 2, 3], &mut Lines::default()).unwrap(),
        Outcome::Output(vec![1, 2, 3])
    );
}

#[test]
fn alloc_returning_null_or_out_of_range_rebuilds_the_instance() {
    // An allocator that fails on its first call only: after a rebuild it fails again (its
    // state is fresh), where a kept instance would succeed on the second message.
    for bad in ["(i32.const 0)", "(i32.const -8)"] {
        let alloc = format!(
            "(global.set $calls (i32.add (global.get $calls) (i32.const 1))) \
             (if (result i32) (i32.eq (global.get $calls) (i32.const 1)) (then {bad}) (else (i32.const 1024)))"
        );
        let module = guest_with("1 16", &alloc, PACK_IN, "(global $calls (mut i32) (i32.const 0))");
        let mut gear = load(&module, GearConfig::default()).unwrap();
        for _ in 0..3 {
            let err = gear.process_bytes(&[1, 2, 3], &mut Lines::default()).unwrap_err();
            assert!(err.rebuilds_instance(), "{err}");
            assert_eq!(err.blame(), crate::Blame::Guest);
        }
    }
}

#[test]
fn a_trap_rebuilds_the_instance_before_the_next_message() {
    // Counts messages in a global and logs "hello" with level = count; traps on 0xaa.
    let body = format!(
        "(global.set $count (i32.add (global.get $count) (i32.const 1)))
         (call $log (global.get $count) (i32.const 32) (i32.const 5))
         (if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 0xaa)) (then unreachable))
         {PACK_IN}"
    );
    let mut gear = load(&guest(&body), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    gear.process_bytes(&[1], &mut lines).unwrap(); // count 1 -> debug
    gear.process_bytes(&[1], &mut lines).unwrap(); // count 2 -> info
    let err = gear.process_bytes(&[0xaa], &mut lines).unwrap_err(); // count 3 -> warn, trap
    assert_eq!(err, GearError::Fault { call: cut("process"), fault: Fault::Unreachable });
    gear.process_bytes(&[1], &mut lines).unwrap(); // fresh instance: count 1 -> debug
    let levels: Vec<LogLevel> = lines.0.iter().filter(|(_, l)| l == "hello").map(|(lv, _)| *lv).collect();
    assert_eq!(levels, [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Debug]);
    // No free after a trap: the heap is unknown and the instance is gone.
    assert_eq!(lines.frees(), 3);
}

#[test]
fn imports_other_than_env_log_are_refused_by_name() {
    let cases = [
        (r#"(import "env" "abort" (func))"#, "env.abort"),
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "wasi_snapshot_preview1.fd_write",
        ),
        (r#"(import "env" "table" (table 1 funcref))"#, "env.table"),
        (r#"(import "env" "g" (global i32))"#, "env.g"),
    ];
    for (import, name) in cases {
        let text = format!(
            r#"(module {import} (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 8))
              (func (export "free") (param i32 i32))
              (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#
        );
        let err = inspect(&wat::parse_str(text).unwrap(), &GearConfig::default()).unwrap_err();
        assert_eq!(err, GearError::ForbiddenImport { import: cut(name) });
        assert!(err.to_string().contains(name));
    }
    let wrong_log = r#"(module (import "env" "log" (func (param i32 i32))) (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 8))
      (func (export "free") (param i32 i32))
      (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#;
    let err = inspect(&wat::parse_str(wrong_log).unwrap(), &GearConfig::default());
    assert_eq!(err, Err(GearError::WrongLogImportType));
}

#[test]
fn exports_are_checked_by_name_and_exact_type() {
    fn module(alloc: &str, free: &str, process: &str, memory: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module {memory}
              (func (export "{alloc}") (param i32) (result i32) (i32.const 8))
              (func (export "free") {free})
              (func (export "{process}") (param i32 i32) (result i64) (i64.const 0))
              (func (export "process32") (param i32 i32) (result i32) (i32.const 0)))"#
        ))
        .unwrap()
    }
    let mem = r#"(memory (export "memory") 1)"#;
    let ok_free = "(param i32 i32)";
    let c = GearConfig::default();
    assert_eq!(inspect(&module("alloc", ok_free, "process", mem), &c).unwrap().alloc_export, "alloc");
    assert_eq!(inspect(&module("malloc", ok_free, "process", mem), &c).unwrap().alloc_export, "malloc");
    assert_eq!(
        inspect(&module("calloc", ok_free, "process", mem), &c),
        Err(GearError::MissingExport { export: cut("alloc") })
    );
    assert_eq!(
        inspect(&module("alloc", "(param i32 i32) (result i32) (i32.const 0)", "process", mem), &c),
        Err(GearError::WrongExportType { export: cut("free"), expected: "(i32, i32) -> ()" })
    );
    assert_eq!(
        inspect(&module("alloc", ok_free, "handle", mem), &c),
        Err(GearError::MissingExport { export: cut("process") })
    );
    let custom = GearConfig { entrypoint: "handle".into(), ..GearConfig::default() };
    assert!(inspect(&module("alloc", ok_free, "handle", mem), &custom).is_ok());
    let wrong_entry = GearConfig { entrypoint: "process32".into(), ..GearConfig::default() };
    let err = inspect(&module("alloc", ok_free, "process", mem), &wrong_entry).unwrap_err();
    assert_eq!(err.to_string(), "export \"process32\" must be a function (i32, i32) -> i64");
    let alloc64 = wat::parse_str(
        r#"(module (memory (export "memory") 1)
        (func (export "alloc") (param i64) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    assert_eq!(
        inspect(&alloc64, &c),
        Err(GearError::WrongExportType { export: cut("alloc"), expected: "(i32) -> i32" })
    );
    assert_eq!(
        inspect(&module("alloc", ok_free, "process", "(memory 1)"), &c),
        Err(GearError::NoMemoryExport)
    );
    assert!(matches!(inspect(b"\0asm\x01\0\0\0\x01", &c), Err(GearError::InvalidModule { .. })));
    assert!(matches!(inspect(b"not wasm", &c), Err(GearError::InvalidModule { .. })));
}

#[test]
fn log_lines_keep_levels_are_cut_and_bad_ranges_ignored() {
    let body = format!(
        "(call $log (i32.const 1) (i32.const 32) (i32.const 5))
         (call $log (i32.const 2) (i32.const 32) (i32.const 5))
         (call $log (i32.const 3) (i32.const 32) (i32.const 5))
         (call $log (i32.const 4) (i32.const 32) (i32.const 5))
         (call $log (i32.const 9) (i32.const 32) (i32.const 5))
         (call $log (i32.const 2) (i32.const 65535) (i32.const 2))
         (call $log (i32.const 2) (i32.const -1) (i32.const 5))
         (call $log (i32.const 2) (i32.const 0) (i32.const 5000))
         {PACK_IN}"
    );
    let mut gear = load(&guest(&body), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    gear.process_bytes(&[1], &mut lines).unwrap();
    let got: Vec<_> = lines.0.iter().filter(|(_, l)| l != "free").cloned().collect();
    use LogLevel::*;
    let hello = |level| (level, "hello".to_string());
    assert_eq!(got[..5], [hello(Debug), hello(Info), hello(Warn), hello(Error), hello(Info)]);
    assert_eq!(got.len(), 6, "the two out-of-range lines must be ignored");
    assert_eq!(got[5].1.len(), MAX_LOG_LINE_BYTES);
}

#[test]
fn a_log_flood_is_bounded_per_call() {
    let body = format!(
        "(local $i i32)
         (loop $l (call $log (i32.const 2) (i32.const 32) (i32.const 5))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))
         {PACK_IN}"
    );
    let mut gear = load(&guest(&body), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    gear.process_bytes(&[1], &mut lines).unwrap();
    let hellos = lines.0.iter().filter(|(_, l)| l == "hello").count();
    assert_eq!(hellos, MAX_LOG_LINES_PER_CALL);
    let dropped = 100_000 - MAX_LOG_LINES_PER_CALL;
    let note = format!("{dropped} more log lines dropped (limit {MAX_LOG_LINES_PER_CALL} per call)");
    assert!(lines.0.contains(&(LogLevel::Warn, note)));
}

#[test]
fn config_limits_edges() {
    let c = |pages| GearConfig { memory_limit_pages: pages, ..GearConfig::default() };
    assert!(c(MAX_MEMORY_LIMIT_PAGES).check().is_ok());
    assert_eq!(
        c(MAX_MEMORY_LIMIT_PAGES + 1).check(),
        Err(GearError::BadConfig { what: "memory_limit_pages", limit: 1024, got: 1025 })
    );
    assert!(c(0).check().is_err());
    let f = |per_message| GearConfig {
        fuel: FuelBudget { per_message, ..FuelBudget::default() },
        ..GearConfig::default()
    };
    assert!(f(MAX_FUEL_PER_CALL).check().is_ok());
    assert!(f(MAX_FUEL_PER_CALL + 1).check().is_err());
    assert!(f(0).check().is_err());
    let o = |max_output_bytes| GearConfig { max_output_bytes, ..GearConfig::default() };
    assert!(o(MAX_ENCODED_MESSAGE_BYTES).check().is_ok());
    assert!(o(MAX_ENCODED_MESSAGE_BYTES + 1).check().is_err());
    let t = |max_table_elements| GearConfig { max_table_elements, ..GearConfig::default() };
    assert!(t(MAX_TABLE_ELEMENTS).check().is_ok());
    assert!(t(MAX_TABLE_ELEMENTS + 1).check().is_err());
}

#[test]
fn table_limit_edge() {
    let with_table = |n: u32| guest_with("1 16", BUMP, PACK_IN, &format!("(table {n} funcref)"));
    let config = GearConfig { max_table_elements: 64, ..GearConfig::default() };
    assert!(load(&with_table(64), config.clone()).is_ok());
    assert!(matches!(load(&with_table(65), config), Err(GearError::Instantiation { .. })));
}

#[test]
fn input_size_limit_edge() {
    let config = GearConfig { memory_limit_pages: 1024, ..GearConfig::default() };
    let mut gear = load(&guest_with("1 1024", BUMP, "(i64.const 0)", ""), config).unwrap();
    let mut big = vec![0u8; MAX_ENCODED_MESSAGE_BYTES + 1];
    assert_eq!(
        gear.process_bytes(&big, &mut Lines::default()),
        Err(GearError::InputTooLarge {
            limit: MAX_ENCODED_MESSAGE_BYTES,
            got: MAX_ENCODED_MESSAGE_BYTES + 1
        })
    );
    big.pop();
    // At the limit the message reaches alloc, whose bump pointer is inside 1 page only.
    assert!(matches!(
        gear.process_bytes(&big, &mut Lines::default()),
        Err(GearError::AllocOutOfRange { .. })
    ));
}

#[test]
fn errors_stay_small() {
    // 112 bytes on 64-bit hosts: the largest variants carry a 96-byte engine `Detail`.
    // Kept inline rather than boxed so that reporting an error never allocates.
    assert!(core::mem::size_of::<GearError>() <= 112, "{}", core::mem::size_of::<GearError>());
}

#[test]
fn one_engine_compiles_each_module_once_and_rebuilds_from_it() {
    let engine = GearEngine::default();
    let module =
        trust_unverified(guest("(call $log (i32.const 1) (i32.const 32) (i32.const 5)) (unreachable)"));
    let config = small_fuel();
    let compiled = Compiled::new(&engine, &module, &config).unwrap();
    assert_eq!(engine.compile_count(), 1);
    assert_eq!(compiled.trust(), crate::verify::Trust::Unverified);
    let mut gear = Gear::new(compiled, config.clone(), &mut Lines::default()).unwrap();
    for _ in 0..3 {
        // Each trap drops the instance; the next message rebuilds it from the same compile.
        let err = gear.process_bytes(&[1], &mut Lines::default()).unwrap_err();
        assert!(err.rebuilds_instance(), "{err}");
    }
    let second = Compiled::new(&engine, &trust_unverified(guest(PACK_IN)), &config).unwrap();
    let _ = Gear::new(second, config, &mut Lines::default()).unwrap();
    assert_eq!(engine.compile_count(), 2);
}

#[test]
fn problems_lists_every_reason_in_the_order_inspect_meets_them() {
    let wasm = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "now" (func (result i64)))
  (memory (export "memory") 17)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "process") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let config = GearConfig::default();
    let found = super::problems(&wasm, &config);
    let texts: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 5, "{texts:?}");
    assert!(
        matches!(&found[0], GearError::ForbiddenImport { import } if import.as_str() == "wasi_snapshot_preview1.fd_write")
    );
    assert!(matches!(&found[1], GearError::ForbiddenImport { import } if import.as_str() == "env.now"));
    assert!(matches!(&found[2], GearError::MissingExport { export } if export.as_str() == "free"));
    assert!(matches!(&found[3], GearError::WrongExportType { export, .. } if export.as_str() == "process"));
    assert!(matches!(found[4], GearError::InitialMemoryTooLarge { limit: 16, got: 17 }));
    assert_eq!(super::inspect(&wasm, &config).unwrap_err(), found[0]);
    // A good gear has none; a module that does not parse has that one.
    assert!(super::problems(&wat::parse_str(fluxrig_testkit::PASS_THROUGH_WAT).unwrap(), &config).is_empty());
    assert!(matches!(
        super::problems(b"\0asm\x01\0\0\0\x05", &config)[..],
        [GearError::InvalidModule { .. }]
    ));
}

#[test]
fn a_code_section_with_no_bodies_but_bytes_is_refused_not_a_panic() {
    // The guard's edge: any bytes after a count of 0 are refused by name (the fuzzed
    // module below is the one that made wasmi panic).
    let good = guest(PACK_IN);
    for junk in [1usize, 999, 1000, 5000] {
        let mut module = Vec::new();
        for section in crate::section::sections(&good).unwrap() {
            let section = section.unwrap();
            if section.id == 10 {
                let mut body = vec![0u8]; // no bodies
                body.resize(1 + junk, 0x0b);
                module.push(10);
                let mut n = body.len();
                while n >= 0x80 {
                    module.push((n as u8 & 0x7f) | 0x80);
                    n >>= 7;
                }
                module.push(n as u8);
                module.extend_from_slice(&body);
            } else if section.range.start == 8 {
                module.extend_from_slice(&good[..section.range.end]);
            } else {
                module.extend_from_slice(&good[section.range.clone()]);
            }
        }
        let err = inspect(&module, &GearConfig::default()).unwrap_err();
        let text = alloc::format!("{err}");
        assert!(
            text.contains(&alloc::format!("declares no function bodies but holds {junk} more bytes")),
            "{text}"
        );
    }
}

#[test]
fn the_fuzzed_module_with_no_code_bodies_is_refused() {
    // Found by the `module` fuzz target: wasmi 2.0's enforced average function size divides
    // the code section's size by its body count before validating the count (a debug
    // assertion, or a division by zero in release).
    let module = include_bytes!("../../../fuzz/corpus/module/code_count_zero");
    let err = inspect(module, &GearConfig::default()).unwrap_err();
    let text = alloc::format!("{err}");
    assert!(text.contains("declares no function bodies but holds"), "{text}");
}

#[test]
fn a_module_with_operators_after_its_end_is_refused_not_a_panic() {
    // Found by the `module` fuzz target when the engine tried wasmi's fully lazy mode:
    // wasmi 2.0's validating translator panics on operators after a body's final `end`.
    // Validated in full before any translation, the module is refused, raw or signed.
    use crate::verify::{countersign, verify_cluster, SigningKey};
    let module = include_bytes!("../../../fuzz/corpus/module/operators_after_end");
    let config = GearConfig::default();
    let err = inspect(module, &config).unwrap_err();
    assert!(matches!(err, GearError::InvalidModule { .. }), "{err}");
    let key = SigningKey::from_seed([7; 32]).unwrap();
    let (_, stored) = countersign(module, &key).unwrap();
    let signed = verify_cluster(stored, &key.public_key(), None).unwrap();
    let err = Compiled::new(&GearEngine::default(), &signed, &config).unwrap_err();
    assert!(matches!(err, GearError::InvalidModule { .. }), "{err}");
}

/// A guest whose `$big` has more locals than wasmi translates (30 000), valid wasm that
/// only fails when wasmi translates it; `process` calls it only for a message whose first
/// byte is 0xbb.
fn guest_with_untranslatable_body() -> Vec<u8> {
    let body =
        format!("(if (i32.eq (i32.load8_u (local.get $ptr)) (i32.const 0xbb)) (then (call $big))) {PACK_IN}");
    guest_with("1 16", BUMP, &body, &format!("(func $big (local {}))", "i64 ".repeat(30_001)))
}

#[test]
fn a_body_that_cannot_be_translated_faults_its_first_call_not_the_gear() {
    // Lazy translation: validated at compile (it is valid), translated at its first call,
    // where wasmi refuses it; that call is the gear's fault and the gear keeps running.
    let mut gear = load(&guest_with_untranslatable_body(), GearConfig::default()).unwrap();
    let mut lines = Lines::default();
    assert_eq!(gear.process_bytes(&[1], &mut lines).unwrap(), Outcome::Output(vec![1]));
    let error = gear.process_bytes(&[0xbb], &mut lines).unwrap_err();
    assert_eq!(error, GearError::Fault { call: cut("process"), fault: Fault::Uncompilable });
    assert_eq!(error.to_string(), "guest \"process\" called a function the engine cannot compile");
    assert!(error.rebuilds_instance());
    assert_eq!(gear.process_bytes(&[2], &mut lines).unwrap(), Outcome::Output(vec![2]));
}
