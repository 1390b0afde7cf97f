//! MsgBytes against FluxMsg on untrusted bytes: random mutations of valid messages, from a
//! fixed seed. The invariants: `check` never panics, accepts exactly what `decode` accepts
//! (with the same error otherwise), and keeps exactly what `decode` + `encode` writes.
//! Also a timing comparison, run by hand:
//! `cargo test -p fluxrig-core --release --test msgbytes -- --ignored --nocapture`.

#![allow(clippy::indexing_slicing)] // test code: a wrong index is a failed test

use fluxrig_core::message::{FluxMsg, Hop, MsgBytes, Value};
use fluxrig_testkit::Rng;

/// The bytes an overwrite picks from: CBOR heads, simple values and indefinite markers.
const INTERESTING: &[u8] = &[0x00, 0x17, 0x18, 0x19, 0xf6, 0xf7, 0xf9, 0xfa, 0x7f, 0xff, 0x5f, 0xbf];

fn hop(n: u8) -> Hop {
    Hop { gear: [n; 16], port: [!n; 16], ts: 1_700_000_000_000_000_000 + i64::from(n) }
}

fn message(raw: usize, hops: u8) -> FluxMsg {
    FluxMsg {
        id: [1; 16],
        trace: "trace".into(),
        meta: Some(vec![("peer.ip".into(), "10.0.0.5".into())]),
        data: Some(vec![
            ("i".into(), Value::Int(-70_000)),
            ("f".into(), Value::Float(0.25)),
            ("a".into(), Value::Array(vec![Value::Null, Value::Bool(true), Value::Bytes(vec![9])])),
            ("m".into(), Value::Map(vec![(Value::Text("k".into()), Value::Int(300))])),
        ]),
        flags: 2,
        raw: Some(vec![0xab; raw]),
        path: Some((0..hops).map(hop).collect()),
        ts: 1_700_000_000_000_000_000,
        ..FluxMsg::default()
    }
}

/// Valid inputs, canonical and not, to mutate.
fn bases() -> Vec<Vec<u8>> {
    let mut long_heads = message(3, 1).encode();
    long_heads[0] = 0xba; // 10 entries in a 5-byte head
    long_heads.splice(1..1, [0, 0, 0]);
    let keys_reordered = [
        &[0xa3, 0x62, 0x74, 0x73, 0x01, 0x63, 0x72, 0x61, 0x77, 0x41, 0x07][..],
        b"\x64data\xa1\x61h\xf9\x3e\x00",
    ]
    .concat();
    vec![
        message(0, 0).encode(),
        message(8, 2).encode(),
        message(0, 23).encode(),
        FluxMsg::default().encode(),
        long_heads,
        keys_reordered,
    ]
}

#[test]
fn check_agrees_with_decode_on_mutations() {
    let mut rng = Rng(0x5eed_0002);
    let bases = bases();
    let (mut ok, mut err) = (0, 0);
    for i in 0..20_000 {
        let base = &bases[i % bases.len()];
        let input = if i < bases.len() { base.clone() } else { rng.mutate(base, INTERESTING) };
        let decoded = FluxMsg::decode(&input);
        let checked = MsgBytes::check(input.clone());
        match (&decoded, &checked) {
            (Ok(msg), Ok(m)) => {
                ok += 1;
                assert_eq!(m.as_bytes(), msg.encode().as_slice(), "mutation {i}");
                assert_eq!((m.id(), m.flags()), (msg.id, msg.flags));
                assert_eq!(m.hop_count(), msg.path.as_ref().map_or(0, Vec::len));
                let mut stamped = m.clone();
                let mut want = msg.clone();
                if stamped.push_hop(&hop(7)).is_ok() {
                    want.path.get_or_insert_with(Vec::new).push(hop(7));
                    assert_eq!(stamped.as_bytes(), want.encode().as_slice(), "mutation {i}");
                }
            }
            (Err(a), Err(b)) => {
                err += 1;
                assert_eq!(a, b, "mutation {i}");
            }
            _ => panic!("mutation {i}: decode {decoded:?}, check {checked:?}, input {input:02x?}"),
        }
        let prefix = MsgBytes::check_prefix(&input).map(|(m, n)| (m.into_bytes(), n));
        let want = FluxMsg::decode_prefix(&input).map(|(m, n)| (m.encode(), n));
        assert_eq!(prefix, want, "mutation {i}");
    }
    assert!(ok > 1000 && err > 1000, "ok {ok}, err {err}: the mutations should land on both sides");
}
