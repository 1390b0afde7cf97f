/* temp-check: the example gear every kit implements, byte for byte the same.
 *
 * - data.temp_c absent (or data null): not a reading; passed on unchanged.
 * - data.temp_c a number (int or float) in -40..=85: passed on with meta.checked = "yes".
 * - anything else (out of range, NaN, text, null, ...): dropped.
 * - every 1,000th message: one info line, "temp-check: 1000 messages, 250 dropped". */
#include "../fluxrig_gear.h"

static uint64_t seen, dropped;

static uint64_t check(fr_msg *m) {
    fr_val v;
    double t;
    uint64_t out;
    seen++;
    if (!fr_data_get(m, "temp_c", &v)) out = fr_pass(m);
    else if (fr_val_number(&v, &t) && t >= -40.0 && t <= 85.0) out = fr_replace_meta(m, "checked", "yes");
    else { dropped++; out = fr_drop(); }
    if (seen % 1000 == 0) {
        fr_line l = { .len = 0 };
        fr_line_text(&l, "temp-check: ");
        fr_line_num(&l, seen);
        fr_line_text(&l, " messages, ");
        fr_line_num(&l, dropped);
        fr_line_text(&l, " dropped");
        fr_line_log(&l, FR_INFO);
    }
    return out;
}

FLUXRIG_GEAR(check)
