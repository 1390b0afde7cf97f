//! The binary's clock and message ids: Unix nanoseconds for hops and log lines, UUID v7
//! for new messages. The core never reads a clock; the run loop passes this time in.

use std::time::{SystemTime, UNIX_EPOCH};

use fluxrig_core::message::Uuid;

/// Returns Unix nanoseconds now (0 if the clock is before 1970, saturating in 2262).
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Makes a UUID v7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant `10`, and 74
/// random bits from the operating system.
pub fn new_uuid_v7() -> Uuid {
    let mut u = [0u8; 16];
    // Randomness failing leaves zeros: ids stay ordered by time, and no message is lost.
    let _ = getrandom::fill(&mut u[6..]);
    let millis = (unix_nanos() / 1_000_000) as u64;
    u[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    u[6] = 0x70 | (u[6] & 0x0f);
    u[8] = 0x80 | (u[8] & 0x3f);
    u
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_v7_has_version_variant_and_time() {
        let before = (super::unix_nanos() / 1_000_000) as u64;
        let id = super::new_uuid_v7();
        assert_eq!(id[6] >> 4, 7);
        assert_eq!(id[8] >> 6, 0b10);
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&id[..6]);
        assert!(u64::from_be_bytes(millis) >= before);
        assert_ne!(super::new_uuid_v7(), id);
    }
}
