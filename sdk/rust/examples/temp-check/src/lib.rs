//! temp-check: the example gear every kit implements, byte for byte the same.
//!
//! - `data.temp_c` absent (or `data` null): not a reading; passed on unchanged.
//! - `data.temp_c` a number (int or float) in -40..=85: passed on with `meta.checked = "yes"`.
//! - anything else (out of range, NaN, text, null, ...): dropped.
//! - every 1,000th message: one info line, `temp-check: 1000 messages, 250 dropped`.
#![no_std]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use fluxrig_gear::{gear, Level, Line, Msg, Outcome};

static SEEN: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn check(mut msg: Msg) -> Outcome {
    let seen = SEEN.load(Relaxed) + 1;
    SEEN.store(seen, Relaxed);
    let outcome = match msg.data_get("temp_c").map(|v| v.as_f64()) {
        None => Outcome::Pass,
        Some(Some(t)) if (-40.0..=85.0).contains(&t) => {
            msg.set_meta("checked", "yes");
            Outcome::Replace(msg)
        }
        Some(_) => {
            DROPPED.store(DROPPED.load(Relaxed) + 1, Relaxed);
            Outcome::Drop
        }
    };
    if seen.is_multiple_of(1000) {
        Line::new()
            .text("temp-check: ")
            .num(seen)
            .text(" messages, ")
            .num(DROPPED.load(Relaxed))
            .text(" dropped")
            .log(Level::Info);
    }
    outcome
}

gear!(check);
