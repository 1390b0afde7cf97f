const std = @import("std");

// Expose the allocator to the host
var gpa = std.heap.GeneralPurposeAllocator(.{}){};
const allocator = gpa.allocator();

// Host functions we expect
extern "env" fn log(level: i32, ptr: [*]const u8, len: i32) void;

fn hostLog(level: i32, msg: []const u8) void {
    log(level, msg.ptr, @as(i32, @intCast(msg.len)));
}

// Exported ABI functions for Host to call
// fluxrig-edge: returns `?[*]u8` and `null` where the tutorial has `[*]u8` and
// `@ptrFromInt(0)`, which no Zig version accepts for a non-optional pointer.
export fn alloc(len: u32) ?[*]u8 {
    const slice = allocator.alloc(u8, len) catch return null;
    return slice.ptr;
}

export fn free(ptr: [*]u8, len: u32) void {
    const slice = ptr[0..len];
    allocator.free(slice);
}

// process is the entrypoint
export fn process(ptr: [*]u8, len: u32) u64 {
    hostLog(2, "Zig Wasm Gear: Processing message!");

    // In a real gear, we would decode the CBOR payload here.
    // For this example, we'll act as a pass-through filter.
    const input = ptr[0..len];
    
    // Allocate buffer for response
    const output = allocator.alloc(u8, len) catch {
        hostLog(4, "Zig Wasm Gear: Out of memory!");
        return 0; // Returning 0 drops the message
    };
    
    @memcpy(output, input);
    
    // The host will read the memory and then call free()
    const ret_ptr: u64 = @intFromPtr(output.ptr);
    const ret_len: u64 = len;
    
    return (ret_ptr << 32) | ret_len;
}
