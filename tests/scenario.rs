//! Scenario import: everything a scenario can get wrong is refused before anything is
//! written; a generate-only scenario needs no catalog.

use std::fs;

use crate::util::*;

#[test]
fn bad_scenarios_are_refused_and_nothing_is_written() {
    let d = Dir::new("scenarios");
    let hash = tutorial_up_to_import(&d);
    let good = tutorial_scenario(&hash, 16);
    d.write("good.yaml", &good);
    d.run(&["scenario", "import", "good.yaml", "--activate"], b"").ok();
    let before = d.files("data");
    let active = d.read("data/scenarios/active.yaml");

    // A module that needs more pages than the scenario allows.
    d.write("small.yaml", good.replace("memory_limit_pages: 16", "memory_limit_pages: 1"));
    d.run(&["scenario", "import", "small.yaml", "--activate"], b"").fails(
        1,
        "gear 'my-zig-filter': module wants 2 pages (128 KiB) of initial memory, but memory_limit_pages is 1",
    );
    // Unknown gear type; wire to a missing gear.
    d.write("type.yaml", good.replace("type: wasm", "type: lua"));
    d.run(&["scenario", "import", "type.yaml", "--activate"], b"").fails(1, "unknown gear type \"lua\"");
    d.write("wire.yaml", format!("{good}wires:\n  - from: my-zig-filter.out\n  - to: nowhere.in\n"));
    d.run(&["scenario", "import", "wire.yaml"], b"").fails(1, "wires[0].to must be a string");
    d.write("wire2.yaml", format!("{good}wires:\n  - {{from: my-zig-filter.out, to: nowhere.in}}\n"));
    d.run(&["scenario", "import", "wire2.yaml"], b"")
        .fails(1, "names gear 'nowhere', which the scenario does not have");
    // A renamed catalog file: content no longer matches its name.
    let other = "ab".repeat(32);
    fs::copy(d.path(&format!("data/wasm/{hash}.wasm")), d.path(&format!("data/wasm/{other}.wasm"))).unwrap();
    d.write("renamed.yaml", tutorial_scenario(&other, 16));
    d.run(&["scenario", "import", "renamed.yaml", "--activate"], b"")
        .fails(3, &format!("hashes to {hash}, but it is named {other}"));
    fs::remove_file(d.path(&format!("data/wasm/{other}.wasm"))).unwrap();
    // Not in the catalog at all.
    d.run(&["scenario", "import", "renamed.yaml"], b"").fails(1, "is not in the catalog");
    // A catalog module whose cluster signature is broken.
    let stored_path = format!("data/wasm/{hash}.wasm");
    let stored = d.read(&stored_path);
    let mut broken = stored.clone();
    *broken.last_mut().unwrap() ^= 1;
    d.write(&stored_path, &broken);
    d.run(&["scenario", "import", "good.yaml"], b"")
        .fails(3, "cluster signature does not match the cluster key");
    d.write(&stored_path, &stored);
    // An unsigned file:// module is refused (only cluster-signed files run).
    d.write("plain.wasm", POLYGLOT);
    d.write("file.yaml", scenario_with("file://plain.wasm", ""));
    d.run(&["scenario", "import", "file.yaml"], b"").fails(3, "missing cluster signature");
    // Memory budget too small for the gear.
    d.run(&["scenario", "import", "good.yaml", "--memory-budget-mib", "1"], b"")
        .fails(1, "of the memory budget is left");
    d.write("bad.yaml", "gears: [");
    d.run(&["scenario", "import", "bad.yaml"], b"").fails(1, "bad.yaml: not valid YAML");
    d.run(&["scenario", "import", "missing.yaml"], b"").fails(1, "cannot read scenario missing.yaml");

    assert_eq!(d.files("data"), before, "a refused import writes nothing");
    assert_eq!(d.read("data/scenarios/active.yaml"), active);
}

#[test]
fn a_generate_only_scenario_needs_no_catalog() {
    let d = Dir::new("gen-only");
    d.write("g.yaml", "name: g\nversion: '1'\ngears:\n  - {name: gen, type: generate, config: {count: 3, payload: 'tick {n}'}}\n");
    d.run(&["scenario", "import", "g.yaml", "--activate"], b"").ok();
    let run = d.run(&["run"], b"");
    run.ok();
    let texts: Vec<String> = run
        .stdout()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["raw_text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts, ["tick 1", "tick 2", "tick 3"]);
}
