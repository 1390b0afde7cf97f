//! temp-check: the example gear every kit implements, byte for byte the same.
//!
//! - data.temp_c absent (or data null): not a reading; passed on unchanged.
//! - data.temp_c a number (int or float) in -40..=85: passed on with meta.checked = "yes".
//! - anything else (out of range, NaN, text, null, ...): dropped.
//! - every 1,000th message: one info line, "temp-check: 1000 messages, 250 dropped".
const fluxrig = @import("fluxrig");

var seen: u64 = 0;
var dropped: u64 = 0;

fn check(m: *const fluxrig.Msg) fluxrig.Outcome {
    seen += 1;
    const out: fluxrig.Outcome = if (m.dataGet("temp_c")) |v| blk: {
        if (v.number()) |t| if (t >= -40.0 and t <= 85.0) break :blk m.replaceMeta("checked", "yes");
        dropped += 1;
        break :blk .drop;
    } else .pass;
    if (seen % 1000 == 0) {
        var l = fluxrig.Line{};
        l.text("temp-check: ").num(seen).text(" messages, ").num(dropped).text(" dropped").send(.info);
    }
    return out;
}

comptime {
    fluxrig.exportGear(check);
}
