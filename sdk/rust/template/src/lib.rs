//! {{name}}: a fluxrig Wasm gear.
//!
//! Drops messages whose raw payload is `drop`, passes on those already marked, and marks
//! the others with `meta["{{name}}"] = "seen"`. Replace `work` with your own.
#![no_std]

use fluxrig_gear::{gear, log, Level, Msg, Outcome};

fn work(mut msg: Msg) -> Outcome {
    if msg.raw.as_deref() == Some(b"drop") {
        log(Level::Info, "dropping a message that asked for it");
        return Outcome::Drop;
    }
    if msg.meta_get("{{name}}").is_some() {
        return Outcome::Pass;
    }
    msg.set_meta("{{name}}", "seen");
    Outcome::Replace(msg)
}

gear!(work);
