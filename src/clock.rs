//! The binary's clock and message ids: Unix nanoseconds for hops and log lines, UUID v7
//! for new messages. The core never reads a clock; the run loop passes this time in.

use std::time::{SystemTime, UNIX_EPOCH};

use fluxrig_core::message::{FluxMsg, Uuid};

/// Returns Unix nanoseconds now (0 if the clock is before 1970, saturating in 2262).
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Random bytes asked of the operating system at once for message ids: 4 KiB, the
/// random bits of 409 UUIDs per `getrandom` call instead of one call per message.
const RANDOM_POOL_BYTES: usize = 4096;

thread_local! {
    /// Random bytes not handed out yet, and how many are used.
    static RANDOM_POOL: std::cell::RefCell<(Box<[u8; RANDOM_POOL_BYTES]>, usize)> =
        std::cell::RefCell::new((Box::new([0; RANDOM_POOL_BYTES]), RANDOM_POOL_BYTES));
}

/// Fills `out` from this thread's pool of OS randomness, refilling it when it runs out.
fn random(out: &mut [u8]) {
    RANDOM_POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used + out.len() > RANDOM_POOL_BYTES {
            // Randomness failing leaves zeros: ids stay ordered by time, no message is lost.
            if getrandom::fill(&mut bytes[..]).is_err() {
                bytes.fill(0);
            }
            *used = 0;
        }
        out.copy_from_slice(&bytes[*used..*used + out.len()]);
        // Used bytes are wiped, so an id's random bits are never in memory twice.
        bytes[*used..*used + out.len()].fill(0);
        *used += out.len();
    });
}

/// Makes a UUID v7 (RFC 9562): 48-bit Unix milliseconds, version 7, variant `10`, and 74
/// random bits from the operating system (drawn from a per-thread pool, refilled 4 KiB at
/// a time).
pub fn new_uuid_v7() -> Uuid {
    uuid_v7_at(unix_nanos())
}

/// Makes a UUID v7 as [`new_uuid_v7`] does, for a time the caller already read.
fn uuid_v7_at(unix_nanos: i64) -> Uuid {
    let mut u = [0u8; 16];
    random(&mut u[6..]);
    let millis = (unix_nanos / 1_000_000) as u64;
    u[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    u[6] = 0x70 | (u[6] & 0x0f);
    u[8] = 0x80 | (u[8] & 0x3f);
    u
}

/// A new message carrying `raw`: a UUID v7 id and `ts` from one clock read (a generator
/// or a raw input line makes one per message; the second read was 4 % of a generating
/// rack's CPU).
pub fn new_raw_message(raw: Vec<u8>) -> FluxMsg {
    let now = unix_nanos();
    FluxMsg::with_raw(uuid_v7_at(now), now, raw)
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

    #[test]
    fn ids_stay_distinct_across_pool_refills() {
        let ids: std::collections::HashSet<_> = (0..2000).map(|_| super::new_uuid_v7()).collect();
        assert_eq!(ids.len(), 2000, "5 refills of the pool, no repeated id");
    }
}
