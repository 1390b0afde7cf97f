//! JSON lines over arbitrary UTF-8: `fluxrig::json::from_line`. Error or message, never a
//! panic; a message read from a line writes back (`to_json`) as a line that reads again,
//! to a message that writes the same line. Input that is not UTF-8 is skipped (the rack
//! reads lines as UTF-8).
#![no_main]

use fluxrig::json::{from_line, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(line) = std::str::from_utf8(bytes) else { return };
    if let Ok(msg) = from_line(line) {
        let written = to_json(&msg);
        let again = from_line(&written).unwrap_or_else(|e| panic!("{written:?} does not read back: {e}"));
        assert_eq!(to_json(&again), written);
    }
});
