//! {{name}}: a fluxrig Wasm gear.
//!
//! Drops messages whose raw payload is "drop", passes on those already marked, and marks
//! the others with meta["{{name}}"] = "seen". Replace `work` with your own.
const fluxrig = @import("fluxrig");

fn work(m: *const fluxrig.Msg) fluxrig.Outcome {
    if (m.raw()) |raw| if (raw.len == 4 and raw[0] == 'd' and raw[1] == 'r' and raw[2] == 'o' and raw[3] == 'p') {
        fluxrig.logLine(.info, "dropping a message that asked for it");
        return .drop;
    };
    if (m.metaGet("{{name}}") != null) return .pass;
    return m.replaceMeta("{{name}}", "seen");
}

comptime {
    fluxrig.exportGear(work);
}
