//! Measures the heap one gear really uses under a counting allocator and checks it stays
//! within `budget::gear_worst_case_bytes`. Run with `--nocapture` to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::budget::gear_worst_case_bytes;
use fluxrig_core::gear::{Compiled, Gear, GearConfig, GearEngine, LogSink};
use fluxrig_core::verify::dangerous::trust_unverified;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Safety: forwards to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), SeqCst);
        // Safety: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Quiet;
impl LogSink for Quiet {
    fn log(&mut self, _: LogLevel, _: &str) {}
}

/// A pass-through gear with `funcs` extra functions of `body_ops` instructions each, so
/// that module size varies; it logs one 1 KiB line per message and grows memory to its
/// limit, the costliest things a guest can make the host do.
fn gear_module(funcs: usize, body_ops: usize, pages: u32) -> Vec<u8> {
    let mut text = format!(
        r#"(module (import "env" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 1 {pages})
        (global $next (mut i32) (i32.const 1024))
        (func (export "alloc") (param $len i32) (result i32) (global.get $next))
        (func (export "free") (param i32 i32))
        (func (export "process") (param $ptr i32) (param $len i32) (result i64)
          (drop (memory.grow (i32.const {pages})))
          (call $log (i32.const 2) (i32.const 0) (i32.const 1024))
          (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))"#
    );
    for i in 0..funcs {
        if body_ops == 0 {
            text.push_str("(func)");
            continue;
        }
        text.push_str(&format!("(func (export \"f{i}\") (param $x i32) (result i32) (local.get $x)"));
        for _ in 0..body_ops {
            text.push_str(" (i32.add (i32.const 3)) (i32.mul (i32.const 5))");
        }
        text.push(')');
    }
    text.push(')');
    wat::parse_str(text).unwrap()
}

/// Measures one gear; the caller holds [`SERIAL`] for its whole test, so that no other
/// test allocates while a peak is measured.
fn measure(module: &[u8], config: GearConfig) -> (usize, usize) {
    let message = vec![0u8; 1000];
    let base = CURRENT.load(SeqCst);
    PEAK.store(base, SeqCst);
    {
        let verified = trust_unverified(module);
        let compiled = Compiled::new(&GearEngine::default(), &verified, &config).unwrap();
        let mut gear = Gear::new(compiled, config.clone(), &mut Quiet).unwrap();
        for _ in 0..3 {
            gear.process_bytes(&message, &mut Quiet).unwrap();
        }
    }
    let peak = PEAK.load(SeqCst) - base;
    (peak, gear_worst_case_bytes(module, &config))
}

#[test]
fn measured_peak_heap_stays_within_the_worst_case() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cases =
        [(0, 0, 1), (10, 10, 1), (100, 50, 2), (400, 100, 16), (2000, 20, 4), (5000, 7, 1), (20, 5000, 1)];
    for (funcs, ops, pages) in cases {
        let module = gear_module(funcs, ops, pages);
        let config = GearConfig {
            memory_limit_pages: pages,
            max_output_bytes: 4096,
            max_table_elements: 64,
            ..GearConfig::default()
        };
        let (peak, bound) = measure(&module, config);
        // Linear memory is reserved for the limit but may not all be touched, so the
        // non-memory share is at least 0.
        let non_memory = peak.saturating_sub(pages as usize * 65536);
        println!(
            "module {:>7} B, {pages:>2} pages: peak {:>8} B (non-memory {:>7} B = {:.1} B/module byte), bound {:>8} B",
            module.len(),
            peak,
            non_memory,
            non_memory as f64 / module.len() as f64,
            bound
        );
        assert!(peak <= bound, "peak {peak} > bound {bound} for a {}-byte module", module.len());
    }
}

/// The pass-through gear with `extra` module fields added.
fn with(extra: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
        (memory (export "memory") 1 1)
        (func (export "alloc") (param $len i32) (result i32) (i32.const 1024))
        (func (export "free") (param i32 i32))
        (func $process (export "process") (param $ptr i32) (param $len i32) (result i64)
          (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
        {extra})"#
    );
    wat::parse_str(text).unwrap()
}

fn repeat(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join("\n")
}

/// Loads `module` and runs one message, whatever fails; returns the peak and the bound.
/// The caller holds [`SERIAL`], as for [`measure`].
fn measure_any(module: &[u8], config: &GearConfig) -> (usize, usize, String) {
    let message = vec![0u8; 100];
    let base = CURRENT.load(SeqCst);
    PEAK.store(base, SeqCst);
    let outcome = {
        let verified = trust_unverified(module);
        match Compiled::new(&GearEngine::default(), &verified, config) {
            Err(e) => format!("refused at compile: {e}"),
            Ok(compiled) => match Gear::new(compiled, config.clone(), &mut Quiet) {
                Err(e) => format!("refused at start: {e}"),
                Ok(mut gear) => match gear.process_bytes(&message, &mut Quiet) {
                    Err(e) => format!("runs, message: {e}"),
                    Ok(_) => "runs".to_string(),
                },
            },
        }
    };
    let peak = PEAK.load(SeqCst) - base;
    (peak, gear_worst_case_bytes(module, config), outcome)
}

#[test]
fn hostile_modules_are_refused_or_priced() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use fluxrig_core::limits::{MAX_DATA_SEGMENTS, MAX_ELEMENT_SEGMENTS, MAX_FUNCTIONS, MAX_GLOBALS};
    let types = |n: usize| {
        repeat(n, |i| {
            let params: Vec<&str> =
                (0..8).map(|b| ["i32", "i64", "f32", "f64"][(i >> (2 * b)) & 3]).collect();
            format!("(type (func (param {})))", params.join(" "))
        })
    };
    let globals = |n: usize| with(&repeat(n, |_| "(global i32 (i32.const 0))".into()));
    let segments = |n: usize| {
        with(&format!("(table 1 funcref) {}", repeat(n, |_| "(elem (i32.const 0) $process)".into())))
    };
    let data = |n: usize| with(&repeat(n, |_| "(data \"x\")".into()));
    // Functions of 45 bytes each, above the least average size.
    let functions = |n: usize| {
        with(&repeat(n - 3, |_| {
            format!("(func (result i32) (i32.const 0) {})", "(i32.add (i32.const 1000))".repeat(11))
        }))
    };
    let runs = "runs";
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("table 10000".into(), with("(table 10000 funcref)"), runs),
        ("table 10001".into(), with("(table 10001 funcref)"), "refused at start: cannot instantiate"),
        ("1M globals".into(), globals(1_000_000), "limit of 1000 global variables"),
        (format!("{MAX_GLOBALS} globals"), globals(MAX_GLOBALS as usize), runs),
        (format!("{} globals", MAX_GLOBALS + 1), globals(MAX_GLOBALS as usize + 1), "limit of 1000 global"),
        ("100k element segments".into(), segments(100_000), "limit of 1000 active element segments"),
        (format!("{MAX_ELEMENT_SEGMENTS} element segments"), segments(MAX_ELEMENT_SEGMENTS as usize), runs),
        (
            format!("{} element segments", MAX_ELEMENT_SEGMENTS + 1),
            segments(MAX_ELEMENT_SEGMENTS as usize + 1),
            "limit of 1000 active element",
        ),
        (
            "1M passive element items".into(),
            with(&format!("(elem func {})", repeat(1_000_000, |_| "0".into()))),
            runs,
        ),
        (
            "10k active element items".into(),
            with(&format!("(table 10000 funcref) (elem (i32.const 0) {})", repeat(10_000, |_| "0".into()))),
            runs,
        ),
        ("100k data segments".into(), data(100_000), "limit of 1000 active data segments"),
        (format!("{MAX_DATA_SEGMENTS} data segments"), data(MAX_DATA_SEGMENTS as usize), runs),
        (
            format!("{} data segments", MAX_DATA_SEGMENTS + 1),
            data(MAX_DATA_SEGMENTS as usize + 1),
            "limit of 1000 active data",
        ),
        ("7 MiB passive data".into(), with(&format!("(data \"{}\")", "x".repeat(7 << 20))), runs),
        ("60k types".into(), with(&types(60_000)), runs),
        (
            "200k exports".into(),
            with(&repeat(200_000, |i| format!("(export \"{i:x}\" (func $process))"))),
            "refused at compile",
        ),
        (
            "20k exports".into(),
            with(&repeat(20_000, |i| format!("(export \"{i:x}\" (func $process))"))),
            runs,
        ),
        (
            "50k locals".into(),
            with(&format!("(func (export \"l\") (local {}))", "i64 ".repeat(50_000))),
            runs,
        ),
        (format!("{MAX_FUNCTIONS} functions"), functions(MAX_FUNCTIONS as usize), runs),
        (
            format!("{} functions", MAX_FUNCTIONS + 1),
            functions(MAX_FUNCTIONS as usize + 1),
            "limit of 10000 functions",
        ),
        (
            "5000 empty functions".into(),
            with(&repeat(5000, |_| "(func)".into())),
            "minimum average bytes per function of 40",
        ),
        ("32 parameters".into(), with(&format!("(type (func (param {})))", "i32 ".repeat(32))), runs),
        (
            "33 parameters".into(),
            with(&format!("(type (func (param {})))", "i32 ".repeat(33))),
            "limit of 32 parameters",
        ),
    ];
    let config = GearConfig { memory_limit_pages: 1, ..GearConfig::default() };
    for (name, module, want) in cases {
        let (peak, bound, outcome) = measure_any(&module, &config);
        println!(
            "{name:>26}: {:>8} B module, peak {:>10} B, bound {:>10} B ({:.1} B/module byte): {outcome}",
            module.len(),
            peak,
            bound,
            peak as f64 / module.len() as f64
        );
        assert!(outcome.starts_with(want) || outcome.contains(want), "{name}: {outcome}");
        assert!(peak <= bound, "{name}: peak {peak} > bound {bound}");
    }
}

/// CBOR head of major type `major` with argument `n`.
fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [vec![m | 25], (n as u16).to_be_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![m | 26], (n as u32).to_be_bytes().to_vec()].concat(),
        _ => [vec![m | 27], n.to_be_bytes().to_vec()].concat(),
    }
}

/// A fluxMsg `{"data": {"d": VALUE}}` whose value is `items` (already encoded) in an
/// array of `count`.
fn message_with_array(count: u64, items: &[u8]) -> Vec<u8> {
    let mut m = vec![0xa1, 0x64, b'd', b'a', b't', b'a', 0xa1, 0x61, b'd'];
    m.extend(head(4, count));
    m.extend_from_slice(items);
    m
}

#[test]
fn decoding_costs_at_most_the_decoded_limit() {
    use fluxrig_core::limits::{MAX_DECODED_MESSAGE_BYTES, MAX_ENCODED_MESSAGE_BYTES};
    use fluxrig_core::message::{FluxMsg, MessageError};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let room = MAX_ENCODED_MESSAGE_BYTES - 64;
    let zeros = room as u64; // one byte each
    let ones = (room / 2) as u64; // [0]: two bytes each
    let pairs = (room / 2) as u64; // map entries 0: 0, two bytes each
    let mut map = vec![0xa1, 0x64, b'd', b'a', b't', b'a', 0xa1, 0x61, b'd'];
    map.extend(head(5, pairs));
    map.extend(std::iter::repeat_n([0u8, 0u8], pairs as usize).flatten());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("4 MiB of zeros in one array", message_with_array(zeros, &vec![0; zeros as usize])),
        ("4 MiB of one-item arrays", message_with_array(ones, &[0x81, 0].repeat(ones as usize))),
        ("4 MiB of map entries", map),
        ("an array claiming 2^40 items", message_with_array(1 << 40, &[0; 16])),
        (
            "4000 arrays of 1000 zeros",
            message_with_array(4000, &[head(4, 1000), vec![0; 1000]].concat().repeat(4000)),
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes) in cases {
        assert!(bytes.len() <= MAX_ENCODED_MESSAGE_BYTES, "{name}");
        let base = CURRENT.load(SeqCst);
        PEAK.store(base, SeqCst);
        let result = FluxMsg::decode(&bytes);
        let peak = PEAK.load(SeqCst) - base;
        let shown = format!("{result:?}");
        let shown = shown.get(..100).unwrap_or(&shown);
        println!("{name:>30}: {:>8} B of CBOR, decode peak {:>10} B: {shown}", bytes.len(), peak);
        // A claim longer than the input is found where the input ends; the rest are too
        // large decoded. Either way the decoder allocates no more than the limit.
        let refused =
            matches!(result, Err(MessageError::DecodedTooLarge { .. } | MessageError::Malformed { .. }));
        if !refused || peak > MAX_DECODED_MESSAGE_BYTES {
            failures.push(format!("{name}: peak {peak}, {result:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // At the limit: the most zeros a canonical message can hold decode and check; one more
    // is refused by both, with the same error.
    let zeros = |k: usize| {
        use fluxrig_core::message::Value;
        let data = vec![("d".to_string(), Value::Array(vec![Value::Int(0); k]))];
        FluxMsg { data: Some(data), ..FluxMsg::default() }.encode()
    };
    let slot = std::mem::size_of::<fluxrig_core::message::Value>();
    let (mut fits, mut fails) = (0, MAX_DECODED_MESSAGE_BYTES / slot + 1);
    while fails - fits > 1 {
        let mid = (fits + fails) / 2;
        if FluxMsg::decode(&zeros(mid)).is_ok() {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    assert!(fits > MAX_DECODED_MESSAGE_BYTES / slot - 16, "{fits}: only the fixed fields take room");
    assert!(fluxrig_core::MsgBytes::check(zeros(fits)).is_ok());
    let past = zeros(fits + 1);
    assert!(matches!(FluxMsg::decode(&past), Err(MessageError::DecodedTooLarge { .. })));
    assert_eq!(fluxrig_core::MsgBytes::check(past.clone()).err(), FluxMsg::decode(&past).err());
    let mut raw = vec![0xa1, 0x63, b'r', b'a', b'w'];
    raw.extend(head(2, 2 << 20));
    raw.extend(vec![7u8; 2 << 20]);
    assert_eq!(FluxMsg::decode(&raw).unwrap().raw.unwrap().len(), 2 << 20);
}
