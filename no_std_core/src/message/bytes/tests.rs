//! Tests of bytes.rs: canonical vectors kept as they are, push_hop against decode + encode,
//! non-canonical input re-encoded, and the same errors as FluxMsg::decode.
#![allow(clippy::indexing_slicing, clippy::string_slice)]

use super::scan::{scan, FEW_KEYS};
use super::*;
use crate::limits::{MAX_DATA_DEPTH, MAX_PAYLOAD_BYTES};
use crate::message::tests::map_of;
use crate::message::Value;
use alloc::string::String;
use alloc::vec;

/// Every `name = hex` line of the shared vector file.
fn vectors() -> Vec<(&'static str, Vec<u8>)> {
    let text = fluxrig_testkit::vectors::file("fluxmsg.txt");
    let unhex = fluxrig_testkit::unhex;
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .map(|l| {
            let (name, hex) = l.split_once(" = ").unwrap();
            (name.trim(), unhex(hex.trim()))
        })
        .collect()
}

fn is_canonical(bytes: &[u8]) -> bool {
    scan(bytes).unwrap().2
}

fn hop(n: u8) -> Hop {
    Hop { gear: [n; 16], port: [n ^ 0xff; 16], ts: 1_700_000_000_000_000_000 + i64::from(n) }
}

fn sample(path: Option<Vec<Hop>>) -> FluxMsg {
    FluxMsg {
        id: [7; 16],
        trace: "t".into(),
        meta: Some(vec![("k".into(), "v".into())]),
        data: Some(vec![("x".into(), Value::Float(0.5)), ("n".into(), Value::Int(-300))]),
        flags: 5,
        raw: Some(vec![1, 2, 3]),
        path,
        ts: -42,
        ..FluxMsg::default()
    }
}

#[test]
fn every_vector_is_kept_byte_for_byte() {
    let all = vectors();
    assert!(all.len() >= 2);
    for (name, bytes) in all {
        if name.starts_with("hop") {
            // A Hop, not a message: stamped into a message it must appear as it is.
            let h = FluxMsg::decode(&[[0xa1, 0x64].as_slice(), b"path", &[0x81], &bytes].concat()).unwrap();
            let mut m = MsgBytes::from_msg(&sample(Some(vec![])));
            m.push_hop(&h.path.unwrap()[0]).unwrap();
            assert!(m.as_bytes().windows(bytes.len()).any(|w| w == bytes.as_slice()), "{name}");
            continue;
        }
        assert!(is_canonical(&bytes), "{name} is not canonical");
        let m = MsgBytes::check(bytes.clone()).unwrap();
        assert_eq!(m.as_bytes(), bytes.as_slice(), "{name}");
        let msg = FluxMsg::decode(&bytes).unwrap();
        assert_eq!((m.id(), m.flags(), m.hop_count()), (msg.id, msg.flags, msg.path.map_or(0, |p| p.len())));
        assert_eq!(m.to_msg(), FluxMsg::decode(&bytes).unwrap());
    }
}

#[test]
fn push_hop_equals_decode_push_encode() {
    for start in [None, Some(0), Some(1), Some(23), Some(63)] {
        let path = start.map(|n| (0..n).map(hop).collect::<Vec<_>>());
        for ts in [0, 23, 24, -24, -25, 255, 256, i64::MAX, i64::MIN] {
            let msg = FluxMsg { ts, ..sample(path.clone()) };
            let mut want = msg.clone();
            let new = hop(200);
            want.path.get_or_insert_with(Vec::new).push(new);
            for mut m in [MsgBytes::from_msg(&msg), MsgBytes::check(msg.encode()).unwrap()] {
                m.push_hop(&new).unwrap();
                assert_eq!(m.as_bytes(), want.encode().as_slice(), "start {start:?} ts {ts}");
                assert_eq!(m.hop_count(), usize::from(start.unwrap_or(0)) + 1);
                assert_eq!(m, MsgBytes::check(want.encode()).unwrap());
            }
        }
    }
}

#[test]
fn push_hop_walks_to_the_limit_and_refuses_past_it() {
    let mut msg = sample(None);
    let mut m = MsgBytes::from_msg(&msg);
    for n in 0..MAX_HOPS {
        m.push_hop(&hop(n as u8)).unwrap();
        msg.path.get_or_insert_with(Vec::new).push(hop(n as u8));
        assert_eq!(m.as_bytes(), msg.encode().as_slice(), "after {} hops", n + 1);
    }
    let before = m.clone();
    assert_eq!(m.push_hop(&hop(0)), Err(MessageError::TooManyHops { limit: MAX_HOPS, got: MAX_HOPS + 1 }));
    assert_eq!(m, before);
    assert_eq!(m.to_msg(), msg);
}

#[test]
fn non_canonical_input_is_re_encoded_once() {
    let canonical = sample(Some(vec![hop(1)])).encode();
    let ts = [0x18, 0x05]; // 5 in a 2-byte head
    let f32 = [0xa1, 0x61, 0x66, 0xfa, 0x3f, 0xc0, 0, 0];
    let f16 = [0xa1, 0x61, 0x66, 0xf9, 0x3e, 0x00];
    let undefined = [0xa1, 0x61, 0x75, 0xf7];
    let hop_reordered =
        [&[0x81, 0xa3, 0x61, 0x74, 0x01, 0x61, 0x70, 0x50][..], &[0; 16], &[0x61, 0x67, 0x50], &[1; 16]]
            .concat();
    let cases: Vec<Vec<u8>> = vec![
        map_of(&[("ts", &[0x01]), ("id", &[[0x50].as_slice(), &[7; 16]].concat())]),
        map_of(&[("ts", &ts)]),
        map_of(&[("data", &f32)]),
        map_of(&[("data", &f16)]),
        map_of(&[("data", &undefined)]),
        map_of(&[("id", &[0xf6]), ("future", &[0x01])]),
        map_of(&[("path", &hop_reordered)]),
        vec![0xa0],
        FluxMsg::default().encode(), // canonical: kept as it is
        [&[0xba, 0, 0, 0, 10][..], &canonical[1..]].concat(), // long map head
        [&[0xaa, 0x78, 0x02][..], &canonical[2..]].concat(), // long key head
    ];
    for (i, input) in cases.into_iter().enumerate() {
        let want = FluxMsg::decode(&input).unwrap().encode();
        let m = MsgBytes::check(input.clone()).unwrap();
        assert_eq!(m.as_bytes(), want.as_slice(), "case {i}");
        assert_eq!(is_canonical(&input), input == want, "case {i}");
        let mut pushed = m.clone();
        pushed.push_hop(&hop(9)).unwrap();
        let mut msg = m.to_msg();
        msg.path.get_or_insert_with(Vec::new).push(hop(9));
        assert_eq!(pushed.as_bytes(), msg.encode().as_slice(), "case {i}");
    }
}

#[test]
fn errors_are_the_decoders() {
    let example = vectors().into_iter().find(|(n, _)| *n == "example").unwrap().1;
    let deep = (0..MAX_DATA_DEPTH).fold(vec![0x00], |inner, _| [&[0x81][..], &inner].concat());
    let cases: Vec<Vec<u8>> = vec![
        map_of(&[("id", &[0x43, 1, 2, 3])]),
        map_of(&[("ts", &[0x01]), ("ts", &[0x02])]),
        map_of(&[("meta", &[0xa2, 0x61, 0x61, 0x60, 0x61, 0x61, 0x60])]),
        map_of(&[("data", &[0xa1, 0x61, 0x61, 0xc1, 0x00])]),
        map_of(&[("raw", &[0x5f, 0x41, 0x00, 0xff])]),
        map_of(&[("flags", &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0])]),
        map_of(&[("trace", &[0x01])]),
        map_of(&[("path", &[0x98, 65])]),
        map_of(&[("path", &[0x81, 0xa2, 0x61, 0x67, 0x40, 0x61, 0x67, 0x40])]),
        map_of(&[("data", &[[0xa1, 0x61, 0x64].as_slice(), &deep].concat())]),
        map_of(&[("data", &[0xa1, 0x61, 0x64, 0xf8, 0x20])]),
        map_of(&[("ts", &[0x3b, 0xff, 0, 0, 0, 0, 0, 0, 0])]),
        vec![0x80],
        vec![],
        [example.as_slice(), &[0]].concat(),
        example[..100].to_vec(),
        vec![0; MAX_ENCODED_MESSAGE_BYTES + 1],
        FluxMsg { raw: Some(vec![0; MAX_PAYLOAD_BYTES + 1]), ..FluxMsg::default() }.encode(),
    ];
    for (i, input) in cases.into_iter().enumerate() {
        let want = FluxMsg::decode(&input).unwrap_err();
        assert_eq!(MsgBytes::check(input.clone()).unwrap_err(), want, "case {i}");
        if !matches!(want, MessageError::TrailingBytes { .. } | MessageError::MessageTooLarge { .. }) {
            assert_eq!(MsgBytes::check_prefix(&input).unwrap_err(), want, "case {i}");
        }
    }
}

#[test]
fn duplicate_keys_found_in_small_and_large_maps() {
    // 40 000 entries: a large map that still decodes within MAX_DECODED_MESSAGE_BYTES.
    for n in [2, FEW_KEYS, FEW_KEYS + 1, 40_000] {
        let mut data: Vec<(String, Value)> = (0..n).map(|i| (alloc::format!("{i}"), Value::Null)).collect();
        let ok = FluxMsg { data: Some(data.clone()), ..FluxMsg::default() };
        assert_eq!(MsgBytes::check(ok.encode()).unwrap().as_bytes(), ok.encode().as_slice());
        data.push(("1".into(), Value::Bool(true)));
        let dup = FluxMsg { data: Some(data), ..FluxMsg::default() }.encode();
        assert_eq!(MsgBytes::check(dup), Err(MessageError::DuplicateKey { field: "data" }), "{n} keys");
    }
}

#[test]
fn check_prefix_reads_one_item_of_a_sequence() {
    let one = sample(Some(vec![hop(3)])).encode();
    let two = [one.as_slice(), &[0xa0], &[0xff]].concat();
    let (first, used) = MsgBytes::check_prefix(&two).unwrap();
    assert_eq!((first.as_bytes(), used), (one.as_slice(), one.len()));
    let (second, used2) = MsgBytes::check_prefix(&two[used..]).unwrap();
    assert_eq!((second.as_bytes(), used2), (FluxMsg::default().encode().as_slice(), 1));
    assert!(MsgBytes::check_prefix(&two[used + 1..]).is_err());
}

#[test]
fn with_raw_builds_what_the_binary_did() {
    let m = FluxMsg::with_raw([1; 16], 9, vec![4, 5]);
    let want =
        FluxMsg { id: [1; 16], ts: 9, raw: Some(vec![4, 5]), path: Some(vec![]), ..FluxMsg::default() };
    assert_eq!(m, want);
    assert!(is_canonical(&m.encode()));
}

#[test]
fn corner_bytes_agree_with_decode() {
    let d = |v: &[u8]| [&[0xa1, 0x61, 0x64][..], v].concat(); // data {"d": v}
    let id = |head: &[u8]| [head, &[3; 16]].concat();
    let cases: Vec<Vec<u8>> = vec![
        map_of(&[("data", &d(&[0xdc]))]), // reserved in minicbor: Malformed, not Tagged
        map_of(&[("data", &d(&[0xdf]))]),
        map_of(&[("data", &d(&[0x1c]))]),
        map_of(&[("data", &d(&[0x7c]))]),
        map_of(&[("data", &d(&[0xf9, 0x3e]))]), // cut floats
        map_of(&[("data", &d(&[0xfa, 0, 0, 0]))]),
        map_of(&[("data", &d(&[0xfb, 0, 0, 0, 0, 0, 0, 0]))]),
        map_of(&[("data", &d(&[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))]), // -2^64
        map_of(&[("data", &d(&[0x82, 0xf4, 0xf8]))]),
        map_of(&[("ts", &[0x38])]), // a negative head with no next byte
        map_of(&[("flags", &[0x20])]),
        map_of(&[("id", &id(&[0x58, 0x10]))]), // long uuid head: valid, not canonical
        map_of(&[("id", &[0xf7])]),
        map_of(&[("id", &[0x50, 1, 2, 3])]),
        map_of(&[("trace", &[0x61, 0x80])]),
        map_of(&[("meta", &[0xa1, 0x61, 0xff, 0x60])]),
        map_of(&[("path", &[0x81, 0xa1, 0x61, 0x78, 0xc1, 0x00])]),
        [&[0xa1, 0x78, 0x02][..], b"id", &id(&[0x50])].concat(), // known key, long head
        vec![0xa1, 0x62, 0xff, 0xfe, 0x01],                      // unknown key, not UTF-8
        vec![0xa1, 0x62, 0x69],                                  // key cut short
        vec![0xff],
        vec![0xbf],
        vec![0xc0],
    ];
    for (i, input) in cases.into_iter().enumerate() {
        match FluxMsg::decode(&input) {
            Ok(msg) => {
                let want = msg.encode();
                assert_eq!(MsgBytes::check(input.clone()).unwrap().as_bytes(), want.as_slice(), "case {i}");
                assert_eq!(is_canonical(&input), input == want, "case {i}");
            }
            Err(e) => assert_eq!(MsgBytes::check(input).unwrap_err(), e, "case {i}"),
        }
    }
}
