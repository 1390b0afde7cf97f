//! Proves, with the `decode-counter` feature, that a rack carries messages between gears
//! as bytes: CBOR in, three gears, CBOR out, and not one fluxMsg decoded or re-encoded.
//! One test in its own binary: the counters are process-wide.

use fluxrig_core::abi::LogLevel;
use fluxrig_core::gear::{Compiled, Gear, GearConfig, GearEngine};
use fluxrig_core::message::{decode_count, reencode_count, FluxMsg, MsgBytes};
use fluxrig_core::rack::{Delivery, Entry, Rack, RackSink, Slot, Wire};
use fluxrig_core::verify::dangerous::trust_unverified;

struct Outputs(Vec<Vec<u8>>);

impl RackSink for Outputs {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Output { msg, .. } => self.0.push(msg.into_bytes()),
            other => panic!("{other:?}"),
        }
    }
    fn log(&mut self, _: usize, _: LogLevel, _: &str) {}
}

#[test]
fn cbor_through_three_gears_decodes_nothing() {
    let engine = GearEngine::default();
    let wasm = wat::parse_str(fluxrig_testkit::PASS_THROUGH_WAT).unwrap();
    let slots = (0..3u8)
        .map(|n| {
            let config = GearConfig::default();
            let compiled = Compiled::new(&engine, &trust_unverified(&wasm[..]), &config).unwrap();
            Slot::gear(Gear::new(compiled, config, &mut |_: LogLevel, _: &str| {}).unwrap(), [n; 16], [n; 16])
        })
        .collect();
    let mut rack =
        Rack::with_default_queue(slots, &[Wire { from: 0, to: 1 }, Wire { from: 1, to: 2 }]).unwrap();
    // The input arrives as CBOR bytes, as on `run --input-format cbor`.
    let input = FluxMsg::with_raw([3; 16], 1, vec![0x5a; 1000]).encode();
    let mut out = Outputs(Vec::new());
    let before = (decode_count(), reencode_count());
    for _ in 0..100 {
        let (msg, used) = MsgBytes::check_prefix(&input).unwrap();
        assert_eq!(used, input.len());
        rack.deliver(Entry::Inputs, msg, 5, &mut out);
    }
    assert_eq!((decode_count() - before.0, reencode_count() - before.1), (0, 0));
    assert_eq!(out.0.len(), 100);
    assert_eq!(FluxMsg::decode(&out.0[0]).unwrap().path.unwrap().len(), 3);
}
