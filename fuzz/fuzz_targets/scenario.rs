//! Scenario YAML over arbitrary UTF-8: `fluxrig::scenario::parse`. Error or scenario,
//! never a panic; a parsed scenario's wires name gears it has. Input that is not UTF-8 is
//! skipped (a scenario file is read as UTF-8 before it is parsed).
//!
//! Known: YAML aliases are expanded by the loader, so a small file of nested aliases can
//! take gigabytes (an alias bomb); libFuzzer reports it as out of memory or a timeout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Ok(scenario) = fluxrig::scenario::parse(text) {
        assert!(!scenario.gears.is_empty());
        for wire in &scenario.wires {
            assert!(wire.from < scenario.gears.len() && wire.to < scenario.gears.len());
        }
    }
});
