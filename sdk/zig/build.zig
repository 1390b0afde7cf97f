//! Builds the Zig kit's example gears: `zig build` (Zig 0.14.1; `python3 -m ziglang build`
//! with `pip install ziglang==0.14.1`) writes zig-out/bin/temp_check.wasm (the example every
//! kit implements) and zig-out/bin/polyglot.wasm (the tutorial's gear on the kit).
//!
//! A gear is a wasm32-freestanding executable with no entry point (no WASI imports, no
//! _start), 64 KiB of stack so memory starts at 2 pages instead of 17 (over the scenario's
//! memory_limit_pages of 16), ReleaseSmall and stripped (signing adds its own sections).
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.resolveTargetQuery(.{ .cpu_arch = .wasm32, .os_tag = .freestanding });
    const fluxrig = b.addModule("fluxrig", .{ .root_source_file = b.path("fluxrig.zig") });
    for ([_][]const u8{ "temp_check", "polyglot" }) |name| {
        const exe = b.addExecutable(.{
            .name = name,
            .root_source_file = b.path(b.fmt("examples/{s}.zig", .{name})),
            .target = target,
            .optimize = .ReleaseSmall,
            .strip = true,
        });
        exe.root_module.addImport("fluxrig", fluxrig);
        exe.entry = .disabled;
        exe.rdynamic = true;
        exe.stack_size = 65536;
        b.installArtifact(exe);
    }
}
