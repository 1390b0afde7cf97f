//! Untrusted text into the binary's parsers, called directly (no process): scenario YAML
//! (`scenario::parse`) and JSON lines (`json::from_line`), as random inputs and random
//! mutations of valid ones, from a fixed seed so that a failure reproduces. The invariant:
//! an error or a value, never a panic (a panic fails the test). `fuzz/` goes further with
//! coverage guidance; this runs everywhere `cargo test` runs, qemu targets included.
//!
//! The mutations never write `&` or `*`: YAML anchors and aliases are expanded by the
//! loader, so a few hundred bytes of nested aliases can take gigabytes (an alias bomb).
//! That is the parser's open issue, not what this test is for.

use fluxrig::json::{from_line, to_json};
use fluxrig::scenario::parse;

use fluxrig_testkit::Rng;

use crate::util::tutorial_scenario;

/// Up to `max` tokens of `alphabet`, run together.
fn text(rng: &mut Rng, alphabet: &[&str], max: usize) -> String {
    (0..rng.below(max)).map(|_| rng.pick(alphabet)).collect()
}
/// Flips, inserts, deletes or copies one or two bytes or tokens of `base`, or duplicates,
/// drops or swaps a line; the result is made UTF-8 again (lossily), at most `max`
/// bytes, and free of `&` and `*`.
fn mutate_text(rng: &mut Rng, base: &str, alphabet: &[&str], max: usize) -> String {
    let mut out = base.as_bytes().to_vec();
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => {
                let token = rng.pick(alphabet);
                out.splice(at..at, token.bytes());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let from = rng.below(out.len() + 1);
                let copy = out[from..(from + rng.below(32)).min(out.len())].to_vec();
                out.splice(at..at, copy);
            }
            4..=6 => {
                let mut lines: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                match rng.below(3) {
                    0 => lines.insert(i, lines[j]),
                    1 if lines.len() > 1 => {
                        lines.remove(i);
                    }
                    _ => lines.swap(i, j),
                }
                out = lines.join(&b'\n');
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out.truncate(max);
    String::from_utf8_lossy(&out).replace(['&', '*'], "_")
}

const ITERATIONS: usize = 3000;

/// Scenarios up to this size: big enough for every seed and its mutations.
const MAX_SCENARIO: usize = 2048;

/// Seeds besides the tutorial's own scenario ([`tutorial_scenario`]).
const MORE_SCENARIOS: [&str; 3] = [
    r#"meta: {name: wired, version: '2'}
gears:
  - {name: gen, type: generate, config: {count: 3, interval_ms: 5, payload: "n={n}"}}
  - {name: first, type: wasm, config: {source: 'file://first.wasm', fuel_per_message: 500000}}
  - name: second
    type: wasm
    config: {source: 'file://second.wasm', entrypoint: run, memory_limit_pages: 1024}
wires:
  - {from: gen.out, to: first.in}
  - {from: first.out, to: second.in}
"#,
    "name: a\nversion: 1\ngears: [{name: F, type: http}]\nwires: [{from: x, to: y.in}]\n",
    "--- !tag\nname: |\n  block\nversion: >-\n  folded\ngears: [{name: g, type: generate, config: {count: -1}}]\n...\n",
];

/// Pieces of YAML syntax and of the scenario schema (no anchors or aliases).
const YAML_TOKENS: &[&str] = &[
    ":",
    ": ",
    "-",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "#",
    "!",
    "|",
    ">",
    "?",
    "%",
    "@",
    "`",
    "\\",
    "\t",
    "---",
    "...",
    "~",
    "null",
    "true",
    "0x1f",
    "1e9",
    "-1",
    "99999999999999999999",
    ".inf",
    "é",
    "\u{feff}",
    "\0",
    "name",
    "version",
    "meta",
    "gears",
    "wires",
    "type",
    "wasm",
    "generate",
    "config",
    "source",
    "file://x",
    "snake://wasm_catalog/",
    ".wasm",
    "from",
    "to",
    ".out",
    ".in",
    "count",
    "payload",
    "entrypoint",
    "memory_limit_pages",
    "fuel_per_message",
    "interval_ms",
];

#[test]
fn scenario_parser_never_panics() {
    let mut rng = Rng(0x5eed_0101);
    let hash = "df88ee3f3afe6d998294b2a9b418064cd42c03446b8eb90ca35779bec39c4f0e";
    let seeds: Vec<String> =
        std::iter::once(tutorial_scenario(hash, 16)).chain(MORE_SCENARIOS.map(String::from)).collect();
    let mut parsed = 0;
    for i in 0..ITERATIONS {
        let text = if i % 5 == 0 {
            text(&mut rng, YAML_TOKENS, 200)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate_text(&mut rng, seed, YAML_TOKENS, MAX_SCENARIO)
        };
        if let Ok(scenario) = parse(&text) {
            parsed += 1;
            assert!(!scenario.gears.is_empty(), "{text:?}");
            for w in &scenario.wires {
                assert!(w.from < scenario.gears.len() && w.to < scenario.gears.len(), "{text:?}");
            }
        }
    }
    // The mutations are small: some inputs must still be scenarios, or this tests nothing.
    assert!(parsed > ITERATIONS / 50, "only {parsed} of {ITERATIONS} parsed");
}

const LINES: [&str; 4] = [
    r#"{"id":"01900000-0000-7000-8000-000000000001","ref_id":"00000000-0000-0000-0000-000000000000","trace":"t","src_id":"00000000-0000-0000-0000-000000000000","meta":{"peer.ip":"10.0.0.5"},"data":{"hello":"wasm","n":[1,-2,3.5,true,null,{"é":"x"}],"big":18446744073709551615},"flags":0,"raw":"aGVsbG8=","raw_text":"hello","path":[{"g":"01900000-0000-7500-8000-0000000000aa","p":"01900000-0000-7600-8000-0000000000bb","t":1700000000000000123}],"ts":1700000000000000000}"#,
    r#"{"raw_text":"only text","path":null,"flags":4294967295}"#,
    r#"{"temp": 1}"#,
    "hello world",
];

/// Pieces of JSON syntax and of the fluxMsg shape.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u00e9",
    "\\ud800",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1.5",
    "1e999",
    "-9223372036854775809",
    "18446744073709551616",
    "é",
    " ",
    "\"id\":",
    "\"ref_id\":",
    "\"src_id\":",
    "\"trace\":",
    "\"meta\":",
    "\"data\":",
    "\"flags\":",
    "\"raw\":",
    "\"raw_text\":",
    "\"path\":",
    "\"ts\":",
    "\"g\":",
    "\"p\":",
    "\"t\":",
    "\"aGk=\"",
    "\"=\"",
    "\"01900000-0000-7000-8000-000000000001\"",
];

#[test]
fn json_line_parser_never_panics() {
    let mut rng = Rng(0x5eed_0102);
    let mut messages = 0;
    for i in 0..ITERATIONS {
        let line = if i % 5 == 0 {
            text(&mut rng, JSON_TOKENS, 40)
        } else {
            let seed = LINES[rng.below(LINES.len())];
            mutate_text(&mut rng, seed, JSON_TOKENS, 4096)
        };
        if let Ok(msg) = from_line(&line) {
            messages += 1;
            // What was read writes back as a line that reads to the same message.
            let written = to_json(&msg);
            let again = from_line(&written).unwrap_or_else(|e| panic!("{line:?} -> {written:?}: {e}"));
            assert_eq!(to_json(&again), written, "{line:?}");
        }
    }
    assert!(messages > ITERATIONS / 50, "only {messages} of {ITERATIONS} read");
}
