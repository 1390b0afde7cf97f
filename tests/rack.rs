//! `fluxrig run`: bad messages cost one message, wires and generators, the hop limit,
//! CBOR in and out, and running without a scenario or in insecure mode.

use crate::util::*;

#[test]
fn a_rack_keeps_running_through_bad_messages() {
    let d = Dir::new("rack");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write(
        "s.yaml",
        scenario_with(&format!("snake://wasm_catalog/{hash}.wasm"), "      fuel_per_message: 200000\n"),
    );
    d.run(&["scenario", "import", "s.yaml", "--activate"], b"").ok();
    let input = b"one\ndrop this\nloop forever\n{\"id\": \"not-a-uuid\"}\ntrap now\ntwo\n\n{\"raw_text\":\"three\",\"trace\":\"t-1\"}\n";
    let run = d.run(&["run"], input);
    // Exit 4: the rack kept going, but three messages failed (bad input, two guest faults).
    run.fails(4, "3 message(s) failed");
    let out: Vec<serde_json::Value> =
        run.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<&str> = out.iter().map(|m| m["raw_text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(out[2]["trace"], "t-1");
    let err = run.stderr();
    assert!(err.contains("WARN  f: dropping one"), "{err}");
    assert!(err.contains("guest \"process\" ran out of fuel (guest fault)"), "{err}");
    assert!(err.contains("ERROR input: standard input: line 4: 'id' is not a UUID"), "{err}");
    assert!(err.contains("guest \"process\" trapped: unreachable executed"), "{err}");
    // Every item read has one fate: 7 in = 3 out + 1 dropped + 3 failed.
    assert!(
        err.contains(
            "stopped: 7 in, 3 out, 1 dropped by gears, 3 failed (guest 2, input 1), 0 past the hop limit"
        ),
        "{err}"
    );
}

#[test]
fn generate_and_wires_route_through_two_gears() {
    let d = Dir::new("wires");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    d.write(
        "s.yaml",
        format!(
            "meta: {{name: chain, version: '2'}}\ngears:\n  - {{name: gen, type: generate, config: {{count: 5, payload: 'msg {{n}}'}}}}\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\n  - {{name: b, type: wasm, config: {{source: '{source}', memory_limit_pages: 2}}}}\nwires:\n  - {{from: gen.out, to: a.in}}\n  - {{from: a.out, to: b.in}}\n"
        ),
    );
    let run = d.run(&["run", "--scenario", "s.yaml"], b"");
    run.ok();
    let out: Vec<serde_json::Value> =
        run.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), 5);
    assert_eq!(out[4]["raw_text"], "msg 5");
    assert_eq!(out[0]["path"].as_array().unwrap().len(), 2, "two hops: a and b");
    assert_ne!(out[0]["path"][0]["g"], out[0]["path"][1]["g"]);
    assert_ne!(out[0]["src_id"], "00000000-0000-0000-0000-000000000000");
}

#[test]
fn a_wiring_loop_is_stopped_by_the_hop_limit() {
    let d = Dir::new("loop");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    let source = format!("snake://wasm_catalog/{hash}.wasm");
    d.write(
        "s.yaml",
        format!(
            "name: loop\nversion: '1'\ngears:\n  - {{name: gen, type: generate, config: {{count: 1}}}}\n  - {{name: a, type: wasm, config: {{source: '{source}'}}}}\nwires:\n  - {{from: gen.out, to: a.in}}\n  - {{from: a.out, to: a.in}}\n"
        ),
    );
    let run = d.run(&["run", "--scenario", "s.yaml"], b"");
    run.fails(4, "1 message(s) failed");
    assert_eq!(run.stdout(), "");
    assert!(run.stderr().contains("dropped: it has passed 64 gears (a wiring loop?)"), "{}", run.stderr());
}

#[test]
fn cbor_in_and_out() {
    let d = Dir::new("cbor");
    let hash = tutorial_up_to_import(&d);
    d.write("s.yaml", tutorial_scenario(&hash, 16));
    let example = fluxrig_testkit::vectors::get("fluxmsg.txt", "example");
    let mut input = example.clone();
    input.extend_from_slice(&example);
    let run =
        d.run(&["run", "--scenario", "s.yaml", "--input-format", "cbor", "--output-format", "cbor"], &input);
    run.ok();
    let out = &run.0.stdout;
    let (first, used) = fluxrig_core::message::FluxMsg::decode_prefix(out).unwrap();
    let second = fluxrig_core::message::FluxMsg::decode(&out[used..]).unwrap();
    let mut want = fluxrig_core::message::FluxMsg::decode(&example).unwrap();
    assert_eq!(first.path.as_ref().unwrap().len(), 1);
    want.path = first.path.clone();
    assert_eq!(first, want);
    assert_eq!(second.id, want.id);
    // A truncated CBOR stream: the good item passes, the bad one is reported.
    let run = d.run(&["run", "--scenario", "s.yaml", "--input-format", "cbor"], &input[..example.len() + 10]);
    run.fails(4, "1 message(s) failed");
    assert_eq!(run.stdout().lines().count(), 1);
    assert!(
        run.stderr().contains(
            "standard input: CBOR item 2 is cut off at the end of the input (10 bytes); 1 item(s) read"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn run_without_an_active_scenario_or_with_insecure_mode() {
    let d = Dir::new("run");
    d.run(&["run"], b"").fails(1, "no active scenario in ./data");
    d.write("plain.wasm", POLYGLOT);
    d.write("s.yaml", scenario_with("file://plain.wasm", ""));
    d.run(&["run", "--scenario", "s.yaml"], b"x\n").fails(1, "no cluster key at ./data/cluster.key.pub");
    let run = d.run(&["run", "--scenario", "s.yaml", "--insecure"], b"x\n");
    run.ok();
    assert!(run.stderr().contains("--insecure: modules run without checking"));
    assert_eq!(run.stdout().lines().count(), 1);
}

#[test]
fn a_json_message_over_the_hop_limit_is_refused_as_input() {
    let d = Dir::new("json-limits");
    let hash = import_unsigned(&d, "picky.wasm", &picky_gear());
    d.write("s.yaml", scenario_with(&format!("snake://wasm_catalog/{hash}.wasm"), ""));
    let hop =
        r#"{"g":"00000000-0000-0000-0000-000000000000","p":"00000000-0000-0000-0000-000000000000","t":1}"#;
    let path = |n: usize| vec![hop; n].join(",");
    let input = format!(
        "{{\"raw_text\":\"full\",\"path\":[{}]}}\n{{\"raw_text\":\"ok\",\"path\":[{}]}}\n",
        path(65),
        path(63)
    );
    let run = d.run(&["run", "--scenario", "s.yaml"], input.as_bytes());
    run.fails(4, "1 message(s) failed");
    assert!(
        run.stderr().contains("ERROR input: standard input: line 1: path has 65 hops, limit is 64"),
        "{}",
        run.stderr()
    );
    assert_eq!(run.stdout().lines().count(), 1);
    assert!(run.stdout().contains("\"raw_text\":\"ok\""));
}
