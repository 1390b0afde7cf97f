// {{name}}: a fluxrig Wasm gear.
//
// Drops messages whose raw payload is "drop", passes on those already marked, and marks
// the others with meta["{{name}}"] = "seen". Replace `work` with your own.
import { Msg, Level, log, pass, drop, run } from "./fluxrig";
export { alloc, free } from "./fluxrig";

function work(m: Msg): u64 {
  const p = m.rawPtr();
  if (m.rawLen() == 4 && load<u8>(p) == 0x64 && load<u8>(p + 1) == 0x72 && load<u8>(p + 2) == 0x6f && load<u8>(p + 3) == 0x70) {
    log(Level.Info, "dropping a message that asked for it"); // raw is "drop"
    return drop();
  }
  if (m.hasMeta("{{name}}")) return pass(m);
  return m.replaceMeta("{{name}}", "seen");
}

export function process(ptr: usize, len: u32): u64 {
  return run(ptr, len, work);
}
