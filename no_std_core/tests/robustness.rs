//! Untrusted bytes into every parser of the core: random inputs and random mutations of
//! valid ones, from a fixed seed so that a failure reproduces. The invariant: an error or
//! an outcome, never a panic (a panic fails the test). Coverage-guided fuzzing would go
//! further; this runs everywhere `cargo test` runs, qemu targets included.

use fluxrig_core::gear::{inspect, GearConfig};
use fluxrig_core::message::FluxMsg;
use fluxrig_core::section;
use fluxrig_core::verify::{self, CatalogHash, PublicKey, SigningKey};
use fluxrig_testkit::Rng;

/// The bytes an overwrite picks from: CBOR heads and section ids.
const INTERESTING: &[u8] = &[0x00, 0x7f, 0x80, 0xff, 0x18, 0x1b, 0x5f, 0xbf];

const ITERATIONS: usize = 3000;

/// The vectors' gear (tests/data/vectors/gear.wat), compiled.
fn gear_module() -> Vec<u8> {
    wat::parse_str(fluxrig_testkit::vectors::file("gear.wat")).unwrap()
}

#[test]
fn sections_and_signatures_never_panic() {
    let key = SigningKey::from_seed([7; 32]).unwrap();
    let cluster = SigningKey::from_seed([9; 32]).unwrap();
    let signed = verify::vendor_sign(&gear_module(), &key).unwrap();
    let (hash, stored) = verify::countersign(&signed, &cluster).unwrap();
    let trusted = [key.public_key()];
    let mut rng = Rng(0x5eed_0001);
    for i in 0..ITERATIONS {
        let input = if i % 4 == 0 { rng.bytes(64) } else { rng.mutate(&stored, INTERESTING) };
        let _ = section::check_framing(&input);
        let _ = section::strip_custom(&input, verify::CLUSTER_SECTION);
        let _ = section::function_count(&input);
        let _ = verify::verify_vendor(&input, &trusted);
        let checked = verify::verify_cluster(&input, &cluster.public_key(), Some(&hash));
        // A changed module must never pass as the original.
        if input != stored {
            assert!(checked.is_err(), "mutation {i} verified");
        }
        let _ = PublicKey::from_bytes(&input);
        let _ = SigningKey::from_key_file(&input);
        let _ = CatalogHash::from_hex(&String::from_utf8_lossy(&input));
    }
}

#[test]
fn messages_never_panic() {
    let example = FluxMsg {
        meta: Some(vec![("k".into(), "v".into())]),
        raw: Some(b"payload".to_vec()),
        path: Some(vec![Default::default()]),
        ..FluxMsg::default()
    }
    .encode();
    let mut rng = Rng(0x5eed_0002);
    for i in 0..ITERATIONS * 3 {
        let input = if i % 4 == 0 { rng.bytes(64) } else { rng.mutate(&example, INTERESTING) };
        if let Ok(msg) = FluxMsg::decode(&input) {
            // Whatever decodes re-encodes and decodes to the same message.
            assert_eq!(FluxMsg::decode(&msg.encode()).as_ref(), Ok(&msg), "input {input:02x?}");
        }
        let _ = FluxMsg::decode_prefix(&input);
    }
}

#[test]
fn module_shape_checks_never_panic() {
    let module = gear_module();
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..ITERATIONS / 3 {
        let _ = inspect(&rng.mutate(&module, INTERESTING), &GearConfig::default());
    }
}
