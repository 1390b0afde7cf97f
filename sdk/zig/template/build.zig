//! Builds zig-out/bin/{{name}}.wasm: `zig build` (Zig 0.14.1; or `python3 -m ziglang build`
//! after `pip install ziglang==0.14.1`).
//!
//! A gear is a wasm32-freestanding executable with no entry point (no WASI imports, no
//! _start), 64 KiB of stack so memory starts at 2 pages instead of 17 (over the scenario's
//! memory_limit_pages of 16), ReleaseSmall and stripped (signing adds its own sections).
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.resolveTargetQuery(.{ .cpu_arch = .wasm32, .os_tag = .freestanding });
    const fluxrig = b.addModule("fluxrig", .{ .root_source_file = b.path("fluxrig.zig") });
    const exe = b.addExecutable(.{
        .name = "{{name}}",
        .root_source_file = b.path("gear.zig"),
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
