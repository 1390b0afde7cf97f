//! fluxMsg decoding and the checked byte view over arbitrary bytes: `FluxMsg::decode`,
//! `decode_prefix`, `MsgBytes::check`, `check_prefix`, and `push_hop` on a checked
//! message. Error or outcome, never a panic; and the two readers agree:
//! - `MsgBytes::check` is Ok exactly when `FluxMsg::decode` is, and keeps the canonical
//!   encoding of the decoded message;
//! - what decodes re-encodes to bytes that decode and re-encode to themselves;
//! - `push_hop` appends exactly that hop (or changes nothing when it refuses).
//!
//! Messages are compared by their encoding: `Value::Float(NaN)` is not equal to itself.
#![no_main]

use fluxrig_core::message::{FluxMsg, Hop, MsgBytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let decoded = FluxMsg::decode(bytes);
    let checked = MsgBytes::check(bytes.to_vec());
    assert_eq!(decoded.is_ok(), checked.is_ok(), "decode {decoded:?}, check {checked:?}");

    if let (Ok(msg), Ok(view)) = (&decoded, &checked) {
        let encoded = msg.encode();
        let again = FluxMsg::decode(&encoded);
        assert_eq!(again.as_ref().map(FluxMsg::encode).as_ref(), Ok(&encoded));
        assert_eq!(view.as_bytes(), &encoded[..]);
        assert_eq!((view.id(), view.flags()), (msg.id, msg.flags));
        assert_eq!(view.hop_count(), msg.path.as_ref().map_or(0, Vec::len));

        let hop = Hop { gear: [0xaa; 16], port: [0xbb; 16], ts: bytes.len() as i64 - 24 };
        let mut pushed = view.clone();
        match pushed.push_hop(&hop) {
            Ok(()) => {
                let mut want = msg.clone();
                want.path.get_or_insert_with(Vec::new).push(hop);
                assert_eq!(pushed.as_bytes(), &want.encode()[..]);
                assert_eq!(pushed.hop_count(), view.hop_count() + 1);
                let rechecked = MsgBytes::check(pushed.as_bytes().to_vec());
                assert_eq!(rechecked.as_ref().map(MsgBytes::as_bytes), Ok(pushed.as_bytes()));
            }
            Err(_) => assert_eq!(&pushed, view),
        }
    }

    let prefix = FluxMsg::decode_prefix(bytes);
    let view_prefix = MsgBytes::check_prefix(bytes);
    assert_eq!(prefix.is_ok(), view_prefix.is_ok(), "decode_prefix {prefix:?}, check_prefix {view_prefix:?}");
    if let (Ok((msg, used)), Ok((view, view_used))) = (&prefix, &view_prefix) {
        assert_eq!(used, view_used);
        assert!(*used <= bytes.len());
        assert_eq!(view.as_bytes(), &msg.encode()[..]);
    }
    if let Ok(msg) = &decoded {
        let (whole, used) = prefix.expect("a whole message is a prefix");
        assert_eq!((whole.encode(), used), (msg.encode(), bytes.len()));
    }
});
