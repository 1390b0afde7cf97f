// temp-check: the example gear every kit implements, byte for byte the same.
//
// - data.temp_c absent (or data null): not a reading; passed on unchanged.
// - data.temp_c a number (int or float) in -40..=85: passed on with meta.checked = "yes".
// - anything else (out of range, NaN, text, null, ...): dropped.
// - every 1,000th message: one info line, "temp-check: 1000 messages, 250 dropped".
import { Msg, Line, Level, pass, drop, run } from "../assembly/fluxrig";
export { alloc, free } from "../assembly/fluxrig";

let seen: u64 = 0;
let dropped: u64 = 0;

function check(m: Msg): u64 {
  seen++;
  let out: u64;
  const v = m.dataGet("temp_c");
  if (v === null) out = pass(m);
  else {
    const t = v.number();
    if (t >= -40.0 && t <= 85.0) out = m.replaceMeta("checked", "yes");
    else { dropped++; out = drop(); }
  }
  if (seen % 1000 == 0) {
    Line.start().text("temp-check: ").num(seen).text(" messages, ").num(dropped).text(" dropped").send(Level.Info);
  }
  return out;
}

export function process(ptr: usize, len: u32): u64 {
  return run(ptr, len, check);
}
