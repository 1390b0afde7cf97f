//! Measures the heap one gear really uses under a counting allocator and checks it stays
//! within `budget::gear_worst_case_bytes`. Run with `--nocapture` to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::budget::gear_worst_case_bytes;
use fluxrig_core::gear::{Compiled, Gear, GearConfig, GearEngine, LogSink};
use fluxrig_core::verify::dangerous::trust_unverified;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Safety: forwards to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), SeqCst);
        // Safety: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Quiet;
impl LogSink for Quiet {
    fn log(&mut self, _: LogLevel, _: &str) {}
}

/// A pass-through gear with `funcs` extra functions of `body_ops` instructions each, so
/// that module size varies; it logs one 1 KiB line per message and grows memory to its
/// limit, the costliest things a guest can make the host do.
fn gear_module(funcs: usize, body_ops: usize, pages: u32) -> Vec<u8> {
    let mut text = format!(
        r#"(module (import "env" "log" (func $log (param i32 i32 i32)))
        (memory (export "memory") 1 {pages})
        (global $next (mut i32) (i32.const 1024))
        (func (export "alloc") (param $len i32) (result i32) (global.get $next))
        (func (export "free") (param i32 i32))
        (func (export "process") (param $ptr i32) (param $len i32) (result i64)
          (drop (memory.grow (i32.const {pages})))
          (call $log (i32.const 2) (i32.const 0) (i32.const 1024))
          (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))"#
    );
    for i in 0..funcs {
        if body_ops == 0 {
            text.push_str("(func)");
            continue;
        }
        text.push_str(&format!("(func (export \"f{i}\") (param $x i32) (result i32) (local.get $x)"));
        for _ in 0..body_ops {
            text.push_str(" (i32.add (i32.const 3)) (i32.mul (i32.const 5))");
        }
        text.push(')');
    }
    text.push(')');
    wat::parse_str(text).unwrap()
}

fn measure(module: &[u8], config: GearConfig) -> (usize, usize) {
    let _serial = SERIAL.lock().unwrap();
    let message = vec![0u8; 1000];
    let base = CURRENT.load(SeqCst);
    PEAK.store(base, SeqCst);
    {
        let verified = trust_unverified(module);
        let compiled = Compiled::new(&GearEngine::default(), &verified, &config).unwrap();
        let mut gear = Gear::new(compiled, config.clone(), &mut Quiet).unwrap();
        for _ in 0..3 {
            gear.process_bytes(&message, &mut Quiet).unwrap();
        }
    }
    let peak = PEAK.load(SeqCst) - base;
    (peak, gear_worst_case_bytes(module, &config))
}

#[test]
fn measured_peak_heap_stays_within_the_worst_case() {
    let cases =
        [(0, 0, 1), (10, 10, 1), (100, 50, 2), (400, 100, 16), (2000, 20, 4), (5000, 0, 1), (20, 5000, 1)];
    for (funcs, ops, pages) in cases {
        let module = gear_module(funcs, ops, pages);
        let config = GearConfig {
            memory_limit_pages: pages,
            max_output_bytes: 4096,
            max_table_elements: 64,
            ..GearConfig::default()
        };
        let (peak, bound) = measure(&module, config);
        // Linear memory is reserved for the limit but may not all be touched, so the
        // non-memory share is at least 0.
        let non_memory = peak.saturating_sub(pages as usize * 65536);
        println!(
            "module {:>7} B, {pages:>2} pages: peak {:>8} B (non-memory {:>7} B = {:.1} B/module byte), bound {:>8} B",
            module.len(),
            peak,
            non_memory,
            non_memory as f64 / module.len() as f64,
            bound
        );
        assert!(peak <= bound, "peak {peak} > bound {bound} for a {}-byte module", module.len());
    }
}
