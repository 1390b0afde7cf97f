//! fluxrig-core on a microcontroller, run under QEMU.
//!
//! From a fixed 512 KiB heap arena: verifies the embedded cluster-signed gear against the
//! embedded cluster public key (keeping it as `&'static` bytes, never copied; a tampered
//! copy is refused), admits two 1-page gears against the arena (and refuses the default
//! 16-page configuration), compiles the module once per gear on one engine, wires the
//! two gears in a chain with the core's router, and routes five fluxMsgs through them,
//! stamping hops with a tick count in place of a clock (the fourth spins and runs out of
//! fuel in the first gear; the fifth shows the rebuilt instance). Prints every step over
//! semihosting and exits 0 only if every step did what it should; CI checks the lines.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use embedded_alloc::LlffHeap as Heap;
use fluxrig_core::abi::LogLevel;
use fluxrig_core::budget::Arena;
use fluxrig_core::gear::{Compiled, FuelBudget, Gear, GearConfig, GearEngine};
use fluxrig_core::message::{FluxMsg, MsgBytes};
use fluxrig_core::rack::{Delivery, Entry, Rack, RackSink, Slot, Wire};
use fluxrig_core::verify::{verify_cluster, CatalogHash, PublicKey};
use semihosting::{println, process};

// Linked for their critical-section implementations, which the allocator uses.
#[cfg(target_arch = "arm")]
use cortex_m as _;
#[cfg(target_arch = "riscv32")]
use riscv as _;

/// The whole heap: everything the core allocates comes from here.
const ARENA_BYTES: usize = 512 * 1024;

/// Part of the arena kept for the firmware itself (messages, copies), not for gears.
const FIRMWARE_RESERVE_BYTES: usize = 24 * 1024;

/// The cluster-signed demo gear and the key and hash it must match (made by build.rs).
static GEAR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gear.wasm"));
static CLUSTER_PUB: &[u8; 32] = include_bytes!(concat!(env!("OUT_DIR"), "/cluster.pub"));
static GEAR_HASH: &str = include_str!(concat!(env!("OUT_DIR"), "/gear_hash.txt"));

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// The arena's memory; only the allocator touches it.
static mut ARENA: [MaybeUninit<u8>; ARENA_BYTES] = [MaybeUninit::uninit(); ARENA_BYTES];

#[cfg(target_arch = "arm")]
const TARGET: &str = "thumbv7em-none-eabihf (Cortex-M4, mps2-an386)";
#[cfg(target_arch = "riscv32")]
const TARGET: &str = "riscv32imac-unknown-none-elf (virt)";

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    // Safety: runs once, before any allocation, and hands the allocator a static buffer
    // that nothing else touches.
    unsafe { HEAP.init(core::ptr::addr_of_mut!(ARENA) as usize, ARENA_BYTES) }
    let code = match run() {
        Ok(()) => 0,
        Err(step) => {
            println!("FAILED: {}", step);
            1
        }
    };
    process::exit(code)
}

fn message(raw: &[u8], n: u8) -> FluxMsg {
    let mut id = [0u8; 16];
    id[0] = 0x01;
    id[15] = n;
    FluxMsg {
        id,
        raw: Some(raw.into()),
        path: Some(Vec::new()),
        ts: 1_700_000_000_000_000_000,
        ..FluxMsg::default()
    }
}

/// Prints what became of each message and counts the outcomes.
#[derive(Default)]
struct Report {
    n: u8,
    passed: usize,
    out_of_fuel: usize,
    wrong: usize,
}

impl RackSink for Report {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Output { msg, .. } if msg.hop_count() == 2 => {
                self.passed += 1;
                println!(
                    "message {}: passed through 2 gears, {} bytes, {} hops",
                    self.n,
                    msg.as_bytes().len(),
                    msg.hop_count()
                );
            }
            Delivery::Failed { gear, error, .. } => {
                self.out_of_fuel += 1;
                println!("message {}: gear {}: {}", self.n, gear, error);
            }
            _ => self.wrong += 1,
        }
    }

    fn log(&mut self, gear: usize, level: LogLevel, line: &str) {
        println!("  gear {} {}: {}", gear, level.as_str(), line);
    }
}

fn run() -> Result<(), &'static str> {
    println!("fluxrig-core firmware on {}", TARGET);
    println!("heap arena: {} bytes", ARENA_BYTES);

    let key = PublicKey(*CLUSTER_PUB);
    let expected = CatalogHash::from_hex(GEAR_HASH.trim()).ok_or("bad embedded hash")?;
    let verified = verify_cluster(GEAR, &key, Some(&expected)).map_err(|_| "embedded gear did not verify")?;
    println!("verified: cluster signature ok, catalog hash {}", verified.hash());
    let mut tampered: Vec<u8> = GEAR.into();
    if let Some(byte) = tampered.get_mut(40) {
        *byte ^= 1;
    }
    match verify_cluster(&tampered[..], &key, Some(&expected)) {
        Err(e) => println!("tampered copy refused: {}", e),
        Ok(_) => return Err("a tampered gear verified"),
    }
    drop(tampered);

    let config = GearConfig {
        memory_limit_pages: 1,
        max_output_bytes: 4096,
        max_table_elements: 16,
        fuel: FuelBudget { per_message: 200_000, per_alloc: 10_000, for_start: 10_000 },
        ..GearConfig::default()
    };
    let mut arena = Arena::new(ARENA_BYTES - FIRMWARE_RESERVE_BYTES);
    match arena.clone().admit(GEAR, &GearConfig::default()) {
        Err(e) => println!("default 16-page configuration refused: {}", e),
        Ok(_) => return Err("a 16-page gear was admitted into the arena"),
    }
    let mut need = 0;
    for _ in 0..2 {
        need = arena.admit(GEAR, &config).map_err(|_| "1-page gear not admitted")?;
    }
    println!(
        "admitted: two 1-page gears need at most {} bytes each; {} bytes of the arena left",
        need,
        arena.remaining()
    );

    let engine = GearEngine::default();
    let mut log = |level: LogLevel, line: &str| println!("  gear {}: {}", level.as_str(), line);
    let mut slots = Vec::new();
    for n in 0..2u8 {
        let compiled = Compiled::new(&engine, &verified, &config).map_err(|_| "gear did not compile")?;
        let gear = Gear::new(compiled, config.clone(), &mut log).map_err(|_| "gear did not start")?;
        slots.push(Slot::gear(gear, [n + 1; 16], [n + 101; 16]));
    }
    let mut rack = Rack::with_default_queue(slots, &[Wire { from: 0, to: 1 }]).map_err(|_| "bad wiring")?;
    println!(
        "loaded: 2 gears, {} compiles on one engine, {} bytes of heap in use",
        engine.compile_count(),
        HEAP.used()
    );

    let payloads: [&[u8]; 5] = [b"temp=21.5", b"temp=21.7", b"door=open", b"loop", b"temp=21.6"];
    let mut report = Report::default();
    for (i, raw) in payloads.iter().enumerate() {
        report.n = i as u8 + 1;
        let msg = MsgBytes::from_msg(&message(raw, report.n));
        // No clock here: hops carry a tick count, as the router takes time from its caller.
        rack.deliver(Entry::Inputs, msg, i64::from(report.n) * 1_000_000, &mut report);
    }
    println!("heap in use after messages: {} bytes", HEAP.used());
    if (report.passed, report.out_of_fuel, report.wrong) != (4, 1, 0) {
        return Err("wrong outcomes");
    }
    println!("done: 4 passed through 2 gears, 1 ran out of fuel");
    Ok(())
}
