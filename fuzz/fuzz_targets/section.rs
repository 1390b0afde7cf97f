//! Section walking over arbitrary bytes: `sections`, `check_framing`, `find_custom`,
//! `count_custom`, `function_count`, `contents`, `strip_custom`, `append_custom`. Error or outcome,
//! never a panic; and the functions agree with one another.
#![no_main]

use fluxrig_core::section::{self, WASM_HEADER};
use libfuzzer_sys::fuzz_target;

/// The names fluxrig signs with, and one that is not there.
const NAMES: [&str; 3] = ["fluxrig.signature", "fluxrig.cluster.signature", "é"];

fuzz_target!(|module: &[u8]| {
    let framing = section::check_framing(module);
    let walked = section::sections(module).and_then(|s| s.collect::<Result<Vec<_>, _>>());
    assert_eq!(framing.is_ok(), walked.is_ok());
    let functions = section::function_count(module);
    // `contents` adds up every function section, `function_count` reads the first; it
    // fails only where the framing does or a counted section is cut short.
    match section::contents(module) {
        Ok(contents) => {
            assert!(functions.is_ok_and(|n| n <= contents.functions), "{functions:?} {contents:?}")
        }
        Err(e) => assert!(framing.is_err() || matches!(e, section::SectionError::Truncated { .. }), "{e:?}"),
    }

    // A well-framed module is the header and its sections, end to end.
    let mut names: Vec<&str> = NAMES.to_vec();
    if let Ok(list) = &walked {
        let mut at = WASM_HEADER.len();
        for s in list {
            assert_eq!(s.range.start, at);
            assert!(s.range.end > s.range.start && s.range.end <= module.len());
            assert_eq!(s.name.is_some(), s.id == 0);
            at = s.range.end;
        }
        assert_eq!(at, module.len());
        // The module's own custom section names too (long and multi-byte ones included).
        names.extend(list.iter().filter_map(|s| s.name).take(2));
    }

    let payload = module.get(module.len() / 2..).unwrap_or_default();
    for name in names {
        let found = section::find_custom(module, name);
        let count = section::count_custom(module, name);
        let stripped = section::strip_custom(module, name);
        assert_eq!(found.is_ok(), framing.is_ok());
        assert_eq!(count.is_ok(), framing.is_ok());
        assert_eq!(stripped.is_ok(), framing.is_ok());
        let (Ok(found), Ok(count), Ok(stripped)) = (found, count, stripped) else { continue };
        assert_eq!(found.is_some(), count > 0);
        // Stripping removes exactly the first one and keeps the framing.
        assert_eq!(section::count_custom(&stripped, name), Ok(count.saturating_sub(1)));
        match &found {
            Some(s) => assert_eq!(stripped.len(), module.len() - s.range.len()),
            None => assert_eq!(stripped, module),
        }
        // Appending adds one at the end, which stripping takes off again when it is the only one.
        if let Ok(appended) = section::append_custom(module, name, payload) {
            assert_eq!(section::count_custom(&appended, name), Ok(count + 1));
            let last = section::sections(&appended).ok().and_then(|s| s.last()).and_then(Result::ok);
            assert_eq!(last.map(|s| (s.name, s.payload)), Some((Some(name), payload)));
            if count == 0 {
                assert_eq!(section::strip_custom(&appended, name).as_deref(), Ok(module));
            }
        }
    }
});
