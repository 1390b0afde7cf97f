//! What a message and a module cost, against floors measured in the same run.
//!
//! 1. Per message, one gear: `Gear::process_bytes` for a pass-through gear (the test
//!    kit's `PASS_THROUGH_WAT`, whose alloc always hands out the same buffer at 1024)
//!    against two bare wasmi floors of the same sequence (alloc, write, process, read,
//!    free; no checks), for 64 B, 1 KiB and 16 KiB: one without fuel metering and one
//!    with it (the engine meters the guest's code; the store is filled once, not per
//!    call). Gear over the metered floor is the host's overhead; the metered floor over
//!    the unmetered one is what metering costs inside wasmi.
//! 2. Per message, the rack: a real fluxMsg (64 B, 1 KiB, 16 KiB of `raw`) through three
//!    pass-through gears wired in a chain, CBOR in to CBOR out (`Rack::deliver`: hop
//!    stamping, three guest calls, three checks of the output), against three bare wasmi
//!    floor calls on the same bytes.
//! 3. Cold start, eager against lazy translation: verify the cluster signature, compile,
//!    instantiate and run one message, for the tutorial's Zig gear and a 16 KiB gear,
//!    next to one Ed25519 verify alone (the floor of any signed load).
//! 4. Real gears, one message: the tutorial's Zig gear (64 B) against its bare wasmi floor,
//!    and a compute gear (FNV-1a, CRC-32 and ASCII uppercase over 1 KiB) against its bare
//!    wasmi floor and against the same work in native Rust.
//!
//! Every time is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time.
//!
//! Run: `cargo bench -p fluxrig-core` (add `-- --quick` for a short run). `bench/run.py`
//! runs it with `--results-line` (every figure again as one JSON line, `results: {...}`,
//! for its table) and `--write-pass-through FILE` (the pass-through guest as a module
//! file, for its end-to-end runs of the real binary).

use std::hint::black_box;
use std::time::Duration;

use fluxrig_core::abi::LogLevel;
use fluxrig_core::gear::{Compiled, Gear, GearConfig, GearEngine, Translation};
use fluxrig_core::message::FluxMsg;
use fluxrig_core::rack::{Delivery, Entry, Rack, RackSink, Slot, Wire};
use fluxrig_core::verify::dangerous::trust_unverified;
use fluxrig_core::verify::{countersign, verify_cluster, SigningKey};
use fluxrig_core::MsgBytes;
use fluxrig_testkit::PASS_THROUGH_WAT;
use wasmi::{Engine, Linker, Module, Store, TypedFunc};

/// The compute gear: FNV-1a and a bitwise CRC-32 over the input, then ASCII uppercase in
/// place; the two hashes are written over the input's first 8 bytes, which it returns.
const COMPUTE_WAT: &str = r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2 16)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $end i32) (local $b i32) (local $fnv i32) (local $crc i32) (local $k i32)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $fnv (i32.const 0x811c9dc5))
    (local.set $crc (i32.const -1))
    (local.set $i (local.get $ptr))
    (block $done (loop $byte
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $b (i32.load8_u (local.get $i)))
      (local.set $fnv (i32.mul (i32.xor (local.get $fnv) (local.get $b)) (i32.const 0x01000193)))
      (local.set $crc (i32.xor (local.get $crc) (local.get $b)))
      (local.set $k (i32.const 8))
      (loop $bit
        (local.set $crc (i32.xor (i32.shr_u (local.get $crc) (i32.const 1))
          (i32.and (i32.const 0xedb88320) (i32.sub (i32.const 0) (i32.and (local.get $crc) (i32.const 1))))))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br_if $bit (local.get $k)))
      (if (i32.lt_u (i32.sub (local.get $b) (i32.const 97)) (i32.const 26))
        (then (i32.store8 (local.get $i) (i32.sub (local.get $b) (i32.const 32)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $byte)))
    (if (i32.ge_u (local.get $len) (i32.const 8))
      (then (i32.store (local.get $ptr) (local.get $fnv))
            (i32.store (i32.add (local.get $ptr) (i32.const 4)) (i32.xor (local.get $crc) (i32.const -1)))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#;

/// The compute gear's work in native Rust, on a copy as the gear gets one.
fn compute_native(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let (mut fnv, mut crc) = (0x811c_9dc5u32, u32::MAX);
    for b in &mut out {
        fnv = (fnv ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(crc & 1));
        }
        b.make_ascii_uppercase();
    }
    if out.len() >= 8 {
        out[..4].copy_from_slice(&fnv.to_le_bytes());
        out[4..8].copy_from_slice(&(!crc).to_le_bytes());
    }
    out
}

/// This thread's CPU time: the machine is shared, and time spent descheduled is not the
/// code's (wall-clock medians moved by 2x under other builds; CPU time by a few percent).
#[derive(Clone, Copy)]
struct Instant(Duration);

impl Instant {
    fn now() -> Self {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // Safety: `t` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on
        // every Linux the benchmark runs on, and on failure `t` stays zero.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        Self(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    }

    fn elapsed(&self) -> Duration {
        Self::now().0.saturating_sub(self.0)
    }
}

impl std::ops::Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

struct Floor {
    store: Store<()>,
    memory: wasmi::Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    process: TypedFunc<(i32, i32), i64>,
}

impl Floor {
    /// `metered`: the engine meters fuel as the gear's does, and the store gets all the
    /// fuel there is once, so that no call runs out and none sets it.
    fn new(wasm: &[u8], metered: bool) -> Self {
        let mut config = wasmi::Config::default();
        config.consume_fuel(metered);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).unwrap();
        let mut store = Store::new(&engine, ());
        if metered {
            store.set_fuel(u64::MAX).unwrap();
        }
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

fn gear(engine: &GearEngine, wasm: &[u8]) -> Gear {
    let config = GearConfig::default();
    let compiled = Compiled::new(engine, &trust_unverified(wasm), &config).unwrap();
    Gear::new(compiled, config, &mut |_: LogLevel, _: &str| {}).unwrap()
}

/// Takes the rack's output and checks every message came out.
struct Count(usize);

impl RackSink for Count {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Output { msg, .. } => {
                black_box(msg);
                self.0 += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    fn log(&mut self, _: usize, _: LogLevel, _: &str) {}
}

/// Interleaves the timings three times and keeps the best of each (drift hits all).
fn compare<const N: usize>(rounds: usize, iters: usize, mut runs: [&mut dyn FnMut(); N]) -> [f64; N] {
    let mut best = [f64::MAX; N];
    for _ in 0..3 {
        for (best, run) in best.iter_mut().zip(runs.iter_mut()) {
            *best = best.min(time(rounds, iters, run));
        }
    }
    best
}

/// Iterations per round so that a round takes about `budget_ns / rounds`.
fn iterations(rounds: usize, budget_ns: f64, mut f: impl FnMut()) -> usize {
    let start = Instant::now();
    f();
    ((budget_ns / rounds as f64) / start.elapsed().as_nanos().max(1) as f64).clamp(10.0, 1e6) as usize
}

/// A gear of about 16 KiB: the pass-through gear plus functions that are never called,
/// each about 70 bytes of code (wasmi's strict limits refuse a large code section of
/// functions under 40 bytes on average).
fn gear_16k() -> Vec<u8> {
    let body = PASS_THROUGH_WAT.trim_end();
    let mut text = String::from(body.strip_suffix(')').unwrap());
    text.push('\n');
    for i in 0..240 {
        let terms: String = (0..8)
            .map(|k| format!("(i32.add (i32.mul (local.get 0) (i32.const {})) ", i * 8 + k + 1))
            .collect();
        text.push_str(&format!(
            "(func $f{i} (param i32) (result i32) {terms}(local.get 0){})\n",
            ")".repeat(8)
        ));
    }
    text.push(')');
    let wasm = wat::parse_str(&text).unwrap();
    assert!((15 * 1024..=18 * 1024).contains(&wasm.len()), "{}", wasm.len());
    wasm
}

/// Microseconds for verify + compile + instantiate + one message, median of `runs`, and
/// the median of each stage: engine, verify, compile, instantiate + first message.
fn cold_start(
    stored: &[u8],
    key: &fluxrig_core::PublicKey,
    translation: Translation,
    runs: usize,
) -> (f64, [f64; 4]) {
    let msg = MsgBytes::from_msg(&FluxMsg::with_raw([1; 16], 1, b"hello".to_vec()));
    let mut totals = Vec::with_capacity(runs);
    let mut stages: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        let start = Instant::now();
        let engine = GearEngine::new(translation);
        let t1 = Instant::now();
        let config = GearConfig::default();
        let verified = verify_cluster(stored, key, None).unwrap();
        let t2 = Instant::now();
        let compiled = Compiled::new(&engine, &verified, &config).unwrap();
        let t3 = Instant::now();
        let mut gear = Gear::new(compiled, config, &mut |_: LogLevel, _: &str| {}).unwrap();
        black_box(gear.process(&msg, &mut |_: LogLevel, _: &str| {}).unwrap());
        let end = Instant::now();
        totals.push((end - start).as_nanos() as f64 / 1000.0);
        for (stage, (a, b)) in stages.iter_mut().zip([(start, t1), (t1, t2), (t2, t3), (t3, end)]) {
            stage.push((b - a).as_nanos() as f64 / 1000.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut totals), stages.map(|mut v| median(&mut v)))
}

/// Every figure of the run by name, printed as one JSON line by `--results-line`.
#[derive(Default)]
struct Results(Vec<(String, f64)>);

impl Results {
    fn add(&mut self, name: impl Into<String>, value: f64) {
        self.0.push((name.into(), value));
    }

    fn line(&self) -> String {
        let fields: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\": {v:.3}")).collect();
        format!("results: {{{}}}", fields.join(", "))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(path) = args.iter().position(|a| a == "--write-pass-through").and_then(|i| args.get(i + 1)) {
        std::fs::write(path, wat::parse_str(PASS_THROUGH_WAT).unwrap()).unwrap();
    }
    let mut results = Results::default();
    let (rounds, budget_ns) = if quick { (5, 20_000_000.0) } else { (21, 100_000_000.0) };
    let wasm = wat::parse_str(PASS_THROUGH_WAT).unwrap();
    let mut floor = Floor::new(&wasm, false);
    let mut metered = Floor::new(&wasm, true);
    let mut sink = |_: LogLevel, _: &str| {};
    let engine = GearEngine::default();
    let mut one = gear(&engine, &wasm);

    println!("one gear, process_bytes against the bare wasmi floor, without and with fuel metering");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>7} {:>7}",
        "size", "floor ns", "metered ns", "gear ns", "ratio", "host"
    );
    for size in [64usize, 1024, 16 * 1024] {
        let input = vec![0x5a; size];
        assert_eq!(floor.run(&input), input);
        assert_eq!(metered.run(&input), input);
        let iters = iterations(rounds, budget_ns, || {
            black_box(floor.run(&input));
        });
        let [f, m, g] = compare(
            rounds,
            iters,
            [
                &mut || {
                    black_box(floor.run(black_box(&input)));
                },
                &mut || {
                    black_box(metered.run(black_box(&input)));
                },
                &mut || {
                    black_box(one.process_bytes(black_box(&input), &mut sink).unwrap());
                },
            ],
        );
        println!("{size:>8} {f:>12.0} {m:>12.0} {g:>12.0} {:>7.2} {:>7.2}", g / f, g / m);
        results.add(format!("floor_{size}"), f);
        results.add(format!("floor_metered_{size}"), m);
        results.add(format!("gear_{size}"), g);
    }

    println!("\nrack of 3 pass-through gears, CBOR in to CBOR out, against 3 bare wasmi floor calls");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>7} {:>7}",
        "raw", "floor ns", "metered ns", "rack ns", "ratio", "host"
    );
    let slots = (0..3u8).map(|i| Slot::gear(gear(&engine, &wasm), [i; 16], [i + 10; 16])).collect();
    let wires = [Wire { from: 0, to: 1 }, Wire { from: 1, to: 2 }];
    let mut rack = Rack::with_default_queue(slots, &wires).unwrap();
    for size in [64usize, 1024, 16 * 1024] {
        let msg = MsgBytes::from_msg(&FluxMsg::with_raw([9; 16], 1_700_000_000, vec![0x5a; size]));
        let mut out = Count(0);
        let iters = iterations(rounds, budget_ns, || {
            rack.deliver(Entry::Inputs, msg.clone(), 1, &mut out);
        });
        let bytes = msg.as_bytes().to_vec();
        let [f, m, r] = compare(
            rounds,
            iters,
            [
                &mut || {
                    for _ in 0..3 {
                        black_box(floor.run(black_box(&bytes)));
                    }
                },
                &mut || {
                    for _ in 0..3 {
                        black_box(metered.run(black_box(&bytes)));
                    }
                },
                &mut || rack.deliver(Entry::Inputs, black_box(msg.clone()), 1, &mut out),
            ],
        );
        assert!(out.0 > 0);
        println!("{size:>8} {f:>12.0} {m:>12.0} {r:>12.0} {:>7.2} {:>7.2}", r / f, r / m);
        results.add(format!("rack_floor_{size}"), f);
        results.add(format!("rack_floor_metered_{size}"), m);
        results.add(format!("rack_{size}"), r);
    }

    println!("\nreal gears, one message: against the bare wasmi floors (and native Rust for compute)");
    println!(
        "{:>22} {:>8} {:>12} {:>12} {:>12} {:>7} {:>7} {:>10} {:>7}",
        "gear", "bytes", "floor ns", "metered ns", "gear ns", "ratio", "host", "native ns", "x native"
    );
    let tutorial = include_bytes!("../../examples/polyglot/polyglot.wasm").to_vec();
    let reading = MsgBytes::from_msg(&FluxMsg::with_raw([3; 16], 1_700_000_000, b"temp_c=21.5".to_vec()));
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789 "
        .iter()
        .copied()
        .cycle()
        .take(1024)
        .collect();
    let compute = wat::parse_str(COMPUTE_WAT).unwrap();
    for (key, name, module, input) in [
        ("tutorial", "tutorial Zig gear", tutorial.clone(), reading.as_bytes().to_vec()),
        ("compute", "compute 1 KiB", compute, text),
    ] {
        let mut bare = Floor::new(&module, false);
        let mut bare_metered = Floor::new(&module, true);
        let mut gear = gear(&engine, &module);
        let want = bare.run(&input);
        assert_eq!(bare_metered.run(&input), want);
        if name.starts_with("compute") {
            assert_eq!(want, compute_native(&input), "the gear and native Rust do the same work");
        }
        let iters = iterations(rounds, budget_ns, || {
            black_box(bare.run(&input));
        });
        let [f, m, g] = compare(
            rounds,
            iters,
            [
                &mut || {
                    black_box(bare.run(black_box(&input)));
                },
                &mut || {
                    black_box(bare_metered.run(black_box(&input)));
                },
                &mut || {
                    black_box(gear.process_bytes(black_box(&input), &mut sink).unwrap());
                },
            ],
        );
        let native = if name.starts_with("compute") {
            let n = time(rounds, iters.max(1000), || {
                black_box(compute_native(black_box(&input)));
            });
            results.add("compute_native", n);
            format!("{n:>10.0} {:>7.1}", g / n)
        } else {
            format!("{:>10} {:>7}", "-", "-")
        };
        println!(
            "{name:>22} {:>8} {f:>12.0} {m:>12.0} {g:>12.0} {:>7.2} {:>7.2} {native}",
            input.len(),
            g / f,
            g / m
        );
        results.add(format!("{key}_floor"), f);
        results.add(format!("{key}_floor_metered"), m);
        results.add(format!("{key}_gear"), g);
    }

    println!("\ncold start: verify + compile + instantiate + first message, median us");
    println!("{:>22} {:>8} {:>10} {:>10}", "gear", "bytes", "eager us", "lazy us");
    let key = SigningKey::from_seed([7; 32]).unwrap();
    let runs = if quick { 21 } else { 201 };
    for (label, name, module) in
        [("tutorial", "tutorial Zig gear", tutorial), ("16k", "16 KiB gear", gear_16k())]
    {
        let (_, stored) = countersign(&module, &key).unwrap();
        let (eager, _) = cold_start(&stored, &key.public_key(), Translation::Eager, runs);
        let (lazy, stages) = cold_start(&stored, &key.public_key(), Translation::Lazy, runs);
        println!(
            "{name:>22} {:>8} {eager:>10.1} {lazy:>10.1}   lazy: engine {:.1}, verify {:.1}, compile {:.1}, instantiate + first message {:.1}",
            module.len(),
            stages[0],
            stages[1],
            stages[2],
            stages[3]
        );
        for (stage, value) in ["engine", "verify", "compile", "instantiate"].iter().zip(stages) {
            results.add(format!("cold_{label}_lazy_{stage}_us"), value);
        }
        results.add(format!("cold_{label}_bytes"), module.len() as f64);
        results.add(format!("cold_{label}_eager_us"), eager);
        results.add(format!("cold_{label}_lazy_us"), lazy);
    }
    // One Ed25519 verify of a 32-byte digest, with the core's own build of the crate.
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
    let digest = fluxrig_core::verify::sha256(b"module");
    let signature = pair.sk.sign(digest, None);
    let verify_us = time(rounds, 200, || {
        black_box(pair.pk.verify(black_box(digest), &signature)).unwrap();
    }) / 1000.0;
    println!("{:>22} {:>8} {verify_us:>10.1} {:>10}", "Ed25519 verify alone", 32, "");
    results.add("ed25519_verify_us", verify_us);
    if args.iter().any(|a| a == "--results-line") {
        println!("{}", results.line());
    }
}
