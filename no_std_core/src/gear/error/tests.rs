//! Tests of gear/error.rs: names cut on character boundaries and escaped, blame, the
//! config's own range check.
use super::super::{inspect, GearConfig};
use super::*;
use alloc::format;
use alloc::string::ToString;

#[test]
fn long_multi_byte_import_names_are_cut_on_a_character_boundary() {
    // "a" + 30 x "é" (2 bytes each): the cut at 48 bytes once fell inside a character.
    let name: alloc::string::String = core::iter::once('a').chain(core::iter::repeat_n('é', 30)).collect();
    for (module, field) in [("env", name.as_str()), (name.as_str(), "log"), (name.as_str(), name.as_str())] {
        let text = format!(r#"(module (import "{module}" "{field}" (func)) (memory (export "memory") 1))"#);
        let err = inspect(&wat::parse_str(text).unwrap(), &GearConfig::default()).unwrap_err();
        let GearError::ForbiddenImport { import } = &err else { panic!("{err:?}") };
        assert!(import.len() <= 48 && format!("{module}.{field}").starts_with(import.as_str()), "{import}");
        assert_eq!(err.blame(), crate::Blame::Module);
        // Control characters in a name are escaped in the message, never printed raw.
        let _ = err.to_string();
    }
    let text = r#"(module (import "env" "x\1b[31m\0a" (func)) (memory (export "memory") 1))"#;
    let err = inspect(&wat::parse_str(text).unwrap(), &GearConfig::default()).unwrap_err();
    assert!(err.to_string().contains(r#"\u{1b}[31m\n"#), "{err}");
}

#[test]
fn every_error_says_whose_fault_it_is() {
    use crate::Blame;
    let cases = [
        (GearError::BadConfig { what: "x", limit: 1, got: 2 }, Blame::Config),
        (GearError::NoMemoryExport, Blame::Module),
        (GearError::fault("process", Fault::OutOfFuel), Blame::Guest),
        (GearError::InvalidOutput(crate::message::MessageError::TrailingBytes { offset: 1 }), Blame::Guest),
        (GearError::InputTooLarge { limit: 1, got: 2 }, Blame::Input),
        (GearError::Instantiation { detail: cut("x") }, Blame::Host),
    ];
    for (err, blame) in cases {
        assert_eq!(err.blame(), blame, "{err}");
    }
}

#[test]
fn config_zero_table_elements_is_refused_like_its_message_says() {
    let config = GearConfig { max_table_elements: 0, ..GearConfig::default() };
    assert_eq!(
        config.check().unwrap_err().to_string(),
        "max_table_elements is 0, it must be between 1 and 10000"
    );
}
