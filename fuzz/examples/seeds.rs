//! Writes the generated seed corpus of the fuzz targets: `corpus/module`, `corpus/section`
//! and `corpus/message` (the `scenario` and `json_line` seeds are hand-written files).
//!
//! Run from the repository root, on any toolchain:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`. It writes every file again
//! (the same bytes each time) and removes nothing.
//!
//! - module: gears built from WAT: the test kit's pass-through and picky gears, the
//!   vectors' gear, one import of each kind (function, table, memory, global), one export
//!   of each kind, imports named with 30 × "é", guests that trap, loop, log, return a bad
//!   pointer or too much; and the tutorial's Zig gear, `examples/polyglot/polyglot.wasm`.
//! - section: a few of those modules with fluxrig's signature sections and custom
//!   sections with long multi-byte names appended.
//! - message: the fluxMsg vectors (`tests/data/vectors/fluxmsg.txt`), and messages with
//!   every kind of `data` value, 23 and 24 hops (where the path head grows), a `null`
//!   path, and a non-canonical encoding.

use std::fs;
use std::path::Path;

use fluxrig_core::message::{FluxMsg, Hop, Value};
use fluxrig_core::section::append_custom;
use fluxrig_testkit::{vectors, PASS_THROUGH_WAT, PICKY_WAT};

/// A name of 30 × "é": 60 bytes of UTF-8, cut by the shape error.
fn long_name() -> String {
    "é".repeat(30)
}

/// The gear exports, around a `process` body and extra module fields.
fn gear(fields: &str, process: &str) -> String {
    format!(
        r#"(module
  {fields}
  (memory (export "memory") 1 16)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64) {process}))"#
    )
}

/// Returns its input: `ptr << 32 | len`.
const ECHO: &str = "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) \
                    (i64.extend_i32_u (local.get $len)))";

fn modules() -> Vec<(String, Vec<u8>)> {
    let long = long_name();
    let wat: Vec<(&str, String)> = vec![
        ("pass_through", PASS_THROUGH_WAT.into()),
        ("picky", PICKY_WAT.into()),
        ("vectors_gear", vectors::file("gear.wat").into()),
        // One import of each kind; only `env.log` (a function) is allowed.
        ("import_func", gear(r#"(import "env" "other" (func))"#, ECHO)),
        ("import_table", gear(r#"(import "env" "table" (table 1 funcref))"#, ECHO)),
        ("import_memory", gear(r#"(import "env" "mem" (memory 1))"#, ECHO)),
        ("import_global", gear(r#"(import "env" "g" (global i32))"#, ECHO)),
        ("import_log_wrong_type", gear(r#"(import "env" "log" (func (param i32)))"#, ECHO)),
        // Long multi-byte names, where a shape error cuts them.
        ("import_long_name", gear(&format!(r#"(import "env" "{long}" (func))"#), ECHO)),
        ("import_long_module", gear(&format!(r#"(import "{long}" "log" (global i32))"#), ECHO)),
        // One export of each kind beside the gear's own.
        (
            "export_every_kind",
            gear(
                r#"(table (export "table") 2 funcref) (global (export "global") i32 (i32.const 7))
                   (func (export "extra"))"#,
                ECHO,
            ),
        ),
        ("export_long_name", gear(&format!(r#"(func (export "{long}"))"#), ECHO)),
        // Gear exports of the wrong kind or type.
        (
            "alloc_is_a_global",
            r#"(module (memory (export "memory") 1) (global (export "alloc") i32 (i32.const 0))
                 (func (export "free") (param i32 i32))
                 (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"#
                .into(),
        ),
        (
            "malloc_and_wrong_process",
            r#"(module (memory (export "memory") 1)
                 (func (export "malloc") (param i32) (result i32) (i32.const 1024))
                 (func (export "free") (param i32 i32))
                 (func (export "process") (param i32) (result i32) (i32.const 0)))"#
                .into(),
        ),
        ("no_memory_export", PASS_THROUGH_WAT.replace(r#"(export "memory") "#, "")),
        (
            "memory_too_large",
            PASS_THROUGH_WAT.replace("(memory (export \"memory\") 1 16)", "(memory (export \"memory\") 17)"),
        ),
        // Guests that misbehave at run time.
        ("trap", gear("", "unreachable")),
        ("loop_forever", gear("", "(loop $l (br $l)) (i64.const 0)")),
        ("bad_pointer", gear("", "(i64.const 0x7fffffff00000010)")),
        ("drop", gear("", "(i64.const 0)")),
        ("output_not_a_message", gear("", "(i64.const 0x0000000000000010)")),
        (
            "start_and_log",
            gear(
                r#"(import "env" "log" (func $log (param i32 i32 i32))) (data (i32.const 16) "hello")
                   (func $start (call $log (i32.const 1) (i32.const 16) (i32.const 5))) (start $start)"#,
                "(call $log (i32.const 2) (i32.const 16) (i32.const 500000)) (i64.const 0)",
            ),
        ),
        ("grow_memory", gear("", "(drop (memory.grow (i32.const 100))) (i64.const 0)")),
    ];
    let mut out: Vec<(String, Vec<u8>)> = wat
        .into_iter()
        .map(|(name, text)| {
            let bytes = wat::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.to_string(), bytes)
        })
        .collect();
    out.push(("polyglot".into(), include_bytes!("../../examples/polyglot/polyglot.wasm").to_vec()));
    out
}

fn sections(modules: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let get = |name: &str| modules.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()).unwrap();
    let signed = append_custom(&get("pass_through"), "fluxrig.signature", &[7; 64]).unwrap();
    let countersigned = append_custom(&signed, "fluxrig.cluster.signature", &[9; 96]).unwrap();
    let long = append_custom(&get("vectors_gear"), &long_name(), "é".repeat(40).as_bytes()).unwrap();
    vec![
        ("header_only".into(), fluxrig_core::section::WASM_HEADER.to_vec()),
        ("signed".into(), signed),
        ("countersigned".into(), countersigned),
        ("long_custom_name".into(), long),
        ("polyglot".into(), get("polyglot")),
    ]
}

fn messages() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vectors::file("fluxmsg.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(name, _)| (format!("vector_{name}"), vectors::get("fluxmsg.txt", name)))
        .collect();
    let hop =
        |i: u8| Hop { gear: [i; 16], port: [i ^ 0xff; 16], ts: 1_700_000_000_000_000_000 + i64::from(i) };
    let every_value = FluxMsg {
        id: [1; 16],
        trace: "trace-é".into(),
        meta: Some(vec![("k".into(), "v".into()), (long_name(), "".into())]),
        data: Some(vec![
            ("null".into(), Value::Null),
            ("bool".into(), Value::Bool(true)),
            ("int".into(), Value::Int(-(1 << 64))),
            ("big".into(), Value::Int((1 << 64) - 1)),
            ("float".into(), Value::Float(1.5)),
            ("text".into(), Value::Text("é".into())),
            ("bytes".into(), Value::Bytes(vec![0, 1, 2])),
            ("array".into(), Value::Array(vec![Value::Int(1), Value::Array(vec![])])),
            ("map".into(), Value::Map(vec![(Value::Int(1), Value::Text("one".into()))])),
        ]),
        flags: 1,
        raw: Some(b"payload".to_vec()),
        path: Some(vec![hop(1)]),
        ts: -1,
        ..FluxMsg::default()
    };
    out.push(("every_value".into(), every_value.encode()));
    for n in [23u8, 24] {
        let msg = FluxMsg { path: Some((0..n).map(hop).collect()), ..FluxMsg::default() };
        out.push((format!("hops_{n}"), msg.encode()));
    }
    out.push(("null_path".into(), FluxMsg { path: None, ..FluxMsg::default() }.encode()));
    // Non-canonical: flags 1 written as a one-byte integer head (0x18 0x01).
    let canonical = FluxMsg { flags: 1, ..FluxMsg::default() }.encode();
    let at = canonical.windows(6).position(|w| w == b"\x65flags").unwrap() + 6;
    let mut long_head = canonical.clone();
    long_head.splice(at..at + 1, [0x18, 0x01]);
    out.push(("non_canonical_int".into(), long_head));
    // Two messages back to back: a CBOR sequence, for the prefix readers.
    let mut two = canonical.clone();
    two.extend_from_slice(&canonical);
    out.push(("sequence_of_two".into(), two));
    out
}

fn write(dir: &str, files: &[(String, Vec<u8>)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(dir);
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
    println!("{}: {} files", dir.display(), files.len());
}

fn main() {
    let modules = modules();
    write("module", &modules);
    write("section", &sections(&modules));
    write("message", &messages());
}
