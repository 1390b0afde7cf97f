//! Proves with the `decode-counter` feature (on through the crate's own dev-dependency)
//! that passing a MsgBytes along does not decode it. One test in its own binary: the
//! counters are process-wide and other tests would move them.

use fluxrig_core::message::{decode_count, reencode_count, FluxMsg, Hop, MsgBytes};

#[test]
fn checked_bytes_move_between_gears_without_a_decode() {
    let msg = FluxMsg::with_raw([1; 16], 5, vec![1, 2, 3]);
    let canonical = msg.encode();
    let (d0, r0) = (decode_count(), reencode_count());
    let mut m = MsgBytes::check(canonical.clone()).unwrap();
    for i in 0..10u8 {
        m.push_hop(&Hop { gear: [i; 16], port: [i; 16], ts: i64::from(i) }).unwrap();
        assert_eq!(m.id(), [1; 16]);
        m = MsgBytes::check(m.into_bytes()).unwrap(); // as if it came back from a gear
    }
    let (m2, _) = MsgBytes::check_prefix(&canonical).unwrap();
    let _ = MsgBytes::from_msg(&msg);
    assert_eq!((decode_count() - d0, reencode_count() - r0), (0, 0));
    assert_eq!(m2.as_bytes(), canonical.as_slice());

    // Non-canonical input: one decode and one re-encode; to_msg is a decode.
    let long_ts = [0xa1, 0x62, b't', b's', 0x18, 0x05];
    let m = MsgBytes::check(long_ts.to_vec()).unwrap();
    assert_eq!((decode_count() - d0, reencode_count() - r0), (1, 1));
    assert_eq!(m.to_msg().ts, 5);
    assert_eq!((decode_count() - d0, reencode_count() - r0), (2, 1));
}
