//! Tests of message.rs; this file is compiled only under #[cfg(test)] (see its `mod` line).
#![allow(clippy::indexing_slicing, clippy::string_slice)]
use super::*;
use alloc::format;
use alloc::vec;

use fluxrig_testkit::unhex;

fn vector(name: &str) -> Vec<u8> {
    fluxrig_testkit::vectors::get("fluxmsg.txt", name)
}

fn uuid(hex: &str) -> Uuid {
    unhex(&hex.replace('-', "")).try_into().unwrap()
}

fn example() -> FluxMsg {
    FluxMsg {
        id: uuid("01900000-0000-7000-8000-000000000001"),
        meta: Some(vec![("peer.ip".into(), "10.0.0.5".into())]),
        data: Some(vec![("hello".into(), Value::Text("wasm".into()))]),
        path: Some(vec![]),
        ts: 1_700_000_000_000_000_000,
        ..FluxMsg::default()
    }
}

/// Builds a CBOR map by hand from (key, encoded value) pairs (also used by bytes/tests.rs).
pub(crate) fn map_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, 5, entries.len() as u64);
    for (k, v) in entries {
        put_text(&mut out, k);
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn example_vector_round_trips_byte_for_byte() {
    let bytes = vector("example");
    assert_eq!(bytes.len(), 146);
    let msg = FluxMsg::decode(&bytes).unwrap();
    assert_eq!(msg, example());
    assert_eq!(msg.encode(), bytes);
}

#[test]
fn hop_vector_round_trips_byte_for_byte() {
    let want = Hop {
        gear: uuid("01900000-0000-7500-8000-0000000000aa"),
        port: uuid("01900000-0000-7600-8000-0000000000bb"),
        ts: 1_700_000_000_000_000_123,
    };
    let bytes = vector("hop");
    let mut out = Vec::new();
    want.encode_into(&mut out);
    assert_eq!(out, bytes);
    let mut msg = example();
    msg.path = Some(vec![want]);
    let encoded = msg.encode();
    assert!(encoded.windows(bytes.len()).any(|w| w == bytes.as_slice()));
    assert_eq!(FluxMsg::decode(&encoded).unwrap(), msg);
}

#[test]
fn keys_in_any_order_unknown_ignored_missing_empty() {
    let msg = map_of(&[
        ("ts", &[0x18, 0x2a]),
        ("future", &[0xa1, 0x61, 0x78, 0x82, 0x01, 0x02]),
        ("raw", &[0x43, 1, 2, 3]),
        ("flags", &[0x01]),
    ]);
    let got = FluxMsg::decode(&msg).unwrap();
    assert_eq!(got, FluxMsg { ts: 42, raw: Some(vec![1, 2, 3]), flags: 1, ..FluxMsg::default() });
    assert_eq!(FluxMsg::decode(&[0xa0]).unwrap(), FluxMsg::default());
    // Absent nullable fields encode as null, as fluxrig's nil slices and maps do.
    let empty = FluxMsg::default().encode();
    assert_eq!(FluxMsg::decode(&empty).unwrap(), FluxMsg::default());
    assert_eq!(empty.iter().filter(|b| **b == 0xf6).count(), 4);
}

#[test]
fn data_values_of_every_kind_round_trip() {
    let data = vec![
        ("n".into(), Value::Null),
        ("t".into(), Value::Bool(true)),
        ("big".into(), Value::Int(i128::from(u64::MAX))),
        ("neg".into(), Value::Int(-i128::from(u64::MAX) - 1)),
        ("f".into(), Value::Float(1.5)),
        ("b".into(), Value::Bytes(vec![0, 255])),
        ("a".into(), Value::Array(vec![Value::Int(1), Value::Text("x".into())])),
        ("m".into(), Value::Map(vec![(Value::Int(1), Value::Map(vec![]))])),
    ];
    let msg = FluxMsg { data: Some(data), ..FluxMsg::default() };
    let bytes = msg.encode();
    assert_eq!(FluxMsg::decode(&bytes).unwrap(), msg);
    // float64 always as 8 bytes
    assert!(bytes.windows(9).any(|w| w == [0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]));
}

#[test]
fn narrow_floats_decode_as_f64() {
    let half = map_of(&[("data", &[0xa2, 0x61, 0x68, 0xf9, 0x3e, 0x00, 0x61, 0x73, 0xfa, 0x3f, 0xc0, 0, 0])]);
    let data = FluxMsg::decode(&half).unwrap().data.unwrap();
    assert_eq!(data[0].1, Value::Float(1.5));
    assert_eq!(data[1].1, Value::Float(1.5));
    assert_eq!(f16_to_f32(0x0001), 1.0 / 16_777_216.0);
    assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    assert!(f16_to_f32(0x7e00).is_nan());
    assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = vector("example");
    bytes.push(0x00);
    assert_eq!(FluxMsg::decode(&bytes), Err(MessageError::TrailingBytes { offset: 146 }));
}

#[test]
fn hops_limit_edge() {
    let mut msg = FluxMsg { path: Some(vec![Hop::default(); MAX_HOPS]), ..FluxMsg::default() };
    assert_eq!(FluxMsg::decode(&msg.encode()).unwrap(), msg);
    msg.path = Some(vec![Hop::default(); MAX_HOPS + 1]);
    assert_eq!(
        FluxMsg::decode(&msg.encode()),
        Err(MessageError::TooManyHops { limit: MAX_HOPS, got: MAX_HOPS + 1 })
    );
}

#[test]
fn payload_limit_edge() {
    let meta = vec![("k".into(), "vv".into())];
    let mut msg =
        FluxMsg { meta: Some(meta), raw: Some(vec![7; MAX_PAYLOAD_BYTES - 3]), ..FluxMsg::default() };
    assert_eq!(msg.payload_bytes(), MAX_PAYLOAD_BYTES);
    assert_eq!(FluxMsg::decode(&msg.encode()).unwrap(), msg);
    msg.raw = Some(vec![7; MAX_PAYLOAD_BYTES - 2]);
    assert_eq!(
        FluxMsg::decode(&msg.encode()),
        Err(MessageError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES, got: MAX_PAYLOAD_BYTES + 1 })
    );
    // Text inside data counts too.
    let data = vec![("d".into(), Value::Array(vec![Value::Text("x".repeat(MAX_PAYLOAD_BYTES))]))];
    let msg = FluxMsg { data: Some(data), ..FluxMsg::default() };
    assert!(matches!(FluxMsg::decode(&msg.encode()), Err(MessageError::PayloadTooLarge { .. })));
}

#[test]
fn encoded_size_limit_edge() {
    let too_big = vec![0u8; MAX_ENCODED_MESSAGE_BYTES + 1];
    assert_eq!(
        FluxMsg::decode(&too_big),
        Err(MessageError::MessageTooLarge {
            limit: MAX_ENCODED_MESSAGE_BYTES,
            got: MAX_ENCODED_MESSAGE_BYTES + 1
        })
    );
}

#[test]
fn depth_limit_edge() {
    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::Int(0), |inner, _| Value::Array(vec![inner]))
    }
    // The value of a data entry is level 1; each array adds one.
    let ok = FluxMsg { data: Some(vec![("d".into(), nested(MAX_DATA_DEPTH - 1))]), ..FluxMsg::default() };
    assert_eq!(FluxMsg::decode(&ok.encode()).unwrap(), ok);
    let deep = FluxMsg { data: Some(vec![("d".into(), nested(MAX_DATA_DEPTH))]), ..FluxMsg::default() };
    assert_eq!(FluxMsg::decode(&deep.encode()), Err(MessageError::TooDeep { limit: MAX_DATA_DEPTH }));
}

#[test]
fn strict_refusals_name_the_field() {
    assert_eq!(
        FluxMsg::decode(&map_of(&[("id", &[0x43, 1, 2, 3])])),
        Err(MessageError::BadUuid { field: "id", got: 3 })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("ts", &[0x01]), ("ts", &[0x02])])),
        Err(MessageError::DuplicateKey { field: "message" })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("meta", &[0xa2, 0x61, 0x61, 0x60, 0x61, 0x61, 0x60])])),
        Err(MessageError::DuplicateKey { field: "meta" })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("data", &[0xa1, 0x61, 0x61, 0xc1, 0x00])])),
        Err(MessageError::Tagged { offset: 9 })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("raw", &[0x5f, 0x41, 0x00, 0xff])])),
        Err(MessageError::IndefiniteLength { offset: 5 })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("flags", &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0])])),
        Err(MessageError::Malformed { field: "flags", offset: 7 })
    );
    assert_eq!(
        FluxMsg::decode(&map_of(&[("trace", &[0x01])])),
        Err(MessageError::Malformed { field: "trace", offset: 7 })
    );
    assert!(matches!(FluxMsg::decode(&[0x80]), Err(MessageError::Malformed { field: "message", .. })));
    assert!(matches!(FluxMsg::decode(&[]), Err(MessageError::Malformed { .. })));
}

#[test]
fn never_panics_on_truncations_and_corruptions() {
    let mut msg = example();
    msg.path = Some(vec![Hop::default()]);
    msg.data.as_mut().unwrap().push(("x".into(), Value::Float(2.0)));
    let bytes = msg.encode();
    for end in 0..bytes.len() {
        assert!(FluxMsg::decode(&bytes[..end]).is_err(), "prefix {end} decoded");
    }
    for i in 0..bytes.len() {
        for b in [0x00, 0x17, 0x18, 0x1b, 0x5f, 0x7f, 0x9f, 0xbf, 0xc0, 0xf9, 0xff] {
            let mut c = bytes.clone();
            c[i] = b;
            let _ = FluxMsg::decode(&c);
        }
    }
}

#[test]
fn errors_display_with_values() {
    let e = MessageError::TooManyHops { limit: 64, got: 65 };
    assert_eq!(format!("{e}"), "path has 65 hops, limit is 64");
}

#[test]
fn decode_prefix_reads_one_item_of_a_sequence() {
    let one = vector("example");
    let mut two = one.clone();
    two.extend_from_slice(&FluxMsg::default().encode());
    let (first, used) = FluxMsg::decode_prefix(&two).unwrap();
    assert_eq!((first, used), (example(), one.len()));
    assert_eq!(FluxMsg::decode_prefix(&two[used..]).unwrap().0, FluxMsg::default());
    assert!(FluxMsg::decode_prefix(&one[..100]).is_err());
}

#[test]
fn decoded_size_is_bounded_like_the_encoded_size() {
    use crate::limits::MAX_DECODED_MESSAGE_BYTES;
    // {"data": {"d": [0; n]}}: n bytes of CBOR, n Value slots decoded.
    let array = |n: u64| {
        let mut m = Vec::new();
        head(&mut m, 5, 1);
        put_text(&mut m, "data");
        head(&mut m, 5, 1);
        put_text(&mut m, "d");
        head(&mut m, 4, n);
        m.resize(m.len() + n as usize, 0);
        m
    };
    let n = (MAX_DECODED_MESSAGE_BYTES / core::mem::size_of::<Value>()) as u64;
    let e = FluxMsg::decode(&array(n)).unwrap_err();
    assert!(matches!(e, MessageError::DecodedTooLarge { limit: MAX_DECODED_MESSAGE_BYTES, .. }), "{e:?}");
    let text = alloc::format!("{e}");
    assert!(text.starts_with("message would take more than 4194304 bytes decoded"), "{text}");
    assert!(FluxMsg::decode(&array(n / 2)).is_ok());
}

#[test]
fn a_hop_adds_at_most_max_hop_bytes() {
    for ts in [0, -1, i64::MAX, i64::MIN] {
        for hops in [0usize, 22, 23, 24, 25] {
            let mut msg = example();
            msg.path = Some(vec![Hop { gear: [1; 16], port: [2; 16], ts: 5 }; hops]);
            let mut bytes = MsgBytes::from_msg(&msg);
            let before = bytes.as_bytes().len();
            bytes.push_hop(&Hop { gear: [0xff; 16], port: [0xee; 16], ts }).unwrap();
            assert!(bytes.as_bytes().len() - before <= MAX_HOP_BYTES, "{ts} {hops}");
        }
    }
    let mut none = example();
    none.path = None;
    let mut bytes = MsgBytes::from_msg(&none);
    let before = bytes.as_bytes().len();
    bytes.push_hop(&Hop { gear: [0xff; 16], port: [0xee; 16], ts: i64::MIN }).unwrap();
    assert!(bytes.as_bytes().len() - before <= MAX_HOP_BYTES);
}
