//! The tutorial's gear (examples/polyglot/polyglot.zig) on the kit: the same log line, the
//! same pass-through, without a hand-written alloc, free or pointer packing (and without
//! copying the message: `.pass` hands the input back).
const fluxrig = @import("fluxrig");

fn gear(m: *const fluxrig.Msg) fluxrig.Outcome {
    _ = m;
    fluxrig.logLine(.info, "Zig Wasm Gear: Processing message!");
    return .pass;
}

comptime {
    fluxrig.exportGear(gear);
}
