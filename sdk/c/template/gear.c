/* {{name}}: a fluxrig Wasm gear.
 *
 * Drops messages whose raw payload is "drop", passes on those already marked, and marks
 * the others with meta["{{name}}"] = "seen". Replace `work` with your own. */
#include "fluxrig_gear.h"

static uint64_t work(fr_msg *m) {
    const uint8_t *raw, *v;
    uint32_t n, vn;
    if (fr_raw(m, &raw, &n) && n == 4 && raw[0] == 'd' && raw[1] == 'r' && raw[2] == 'o' && raw[3] == 'p') {
        const char *line = "dropping a message that asked for it";
        fr_log(FR_INFO, line, fr_strlen(line));
        return fr_drop();
    }
    if (fr_meta_get(m, "{{name}}", &v, &vn)) return fr_pass(m);
    return fr_replace_meta(m, "{{name}}", "seen");
}

FLUXRIG_GEAR(work)
