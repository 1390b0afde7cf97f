//! Per-message cost of `Gear::process_bytes` for a pass-through gear (the test kit's
//! `PASS_THROUGH_WAT`, whose alloc always hands out the same buffer at 1024), against
//! the bare wasmi floor of the same sequence (alloc, write, process, read, free; no fuel,
//! no checks). Prints ns per message and the ratio for 64 B, 1 KiB and 16 KiB messages.
//!
//! Run: `cargo bench -p fluxrig-core` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Instant;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::gear::{Gear, GearConfig};
use fluxrig_core::verify::dangerous::trust_unverified;
use fluxrig_testkit::PASS_THROUGH_WAT;
use wasmi::{Engine, Linker, Module, Store, TypedFunc};

struct Floor {
    store: Store<()>,
    memory: wasmi::Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    process: TypedFunc<(i32, i32), i64>,
}

impl Floor {
    fn new(wasm: &[u8]) -> Self {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, ());
        let mut linker = Linker::new(&engine);
        linker.func_wrap("env", "log", |_: i32, _: i32, _: i32| {}).unwrap();
        let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
        Self {
            memory: instance.get_memory(&store, "memory").unwrap(),
            alloc: instance.get_typed_func(&store, "alloc").unwrap(),
            free: instance.get_typed_func(&store, "free").unwrap(),
            process: instance.get_typed_func(&store, "process").unwrap(),
            store,
        }
    }

    fn run(&mut self, input: &[u8]) -> Vec<u8> {
        let n = input.len() as i32;
        let p = self.alloc.call(&mut self.store, n).unwrap();
        self.memory.write(&mut self.store, p as usize, input).unwrap();
        let r = self.process.call(&mut self.store, (p, n)).unwrap() as u64;
        let (rp, rl) = ((r >> 32) as usize, (r & 0xffff_ffff) as usize);
        let out = self.memory.data(&self.store)[rp..rp + rl].to_vec();
        self.free.call(&mut self.store, (p, n)).unwrap();
        out
    }
}

/// Median ns per call over `rounds` rounds of `iters` calls.
fn time(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, budget_ns) = if quick { (5, 20_000_000.0) } else { (21, 100_000_000.0) };
    let wasm = wat::parse_str(PASS_THROUGH_WAT).unwrap();
    let mut floor = Floor::new(&wasm);
    let mut sink = |_: LogLevel, _: &str| {};
    let mut gear = Gear::load(&trust_unverified(&wasm), GearConfig::default(), &mut sink).unwrap();
    println!("{:>8} {:>12} {:>12} {:>7}", "size", "floor ns", "gear ns", "ratio");
    for size in [64usize, 1024, 16 * 1024] {
        let input = vec![0x5a; size];
        assert_eq!(floor.run(&input), input);
        let start = Instant::now();
        black_box(floor.run(&input));
        let iters = ((budget_ns / rounds as f64) / start.elapsed().as_nanos().max(1) as f64).clamp(10.0, 1e6)
            as usize;
        // Interleave the two so that drift on the machine hits both alike.
        let mut floor_ns = Vec::new();
        let mut gear_ns = Vec::new();
        for _ in 0..3 {
            floor_ns.push(time(rounds, iters, || {
                black_box(floor.run(black_box(&input)));
            }));
            gear_ns.push(time(rounds, iters, || {
                black_box(gear.process_bytes(black_box(&input), &mut sink).unwrap());
            }));
        }
        let (f, g) = (
            floor_ns.iter().copied().fold(f64::MAX, f64::min),
            gear_ns.iter().copied().fold(f64::MAX, f64::min),
        );
        println!("{size:>8} {f:>12.0} {g:>12.0} {:>7.2}", g / f);
    }
}
