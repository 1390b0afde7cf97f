//! The core router: hops stamped in place and counted by the router, flags as data,
//! fan-out, the queue limit at its edge, and wiring errors.

use fluxrig_core::abi::LogLevel;
use fluxrig_core::gear::{Compiled, Gear, GearConfig, GearEngine};
use fluxrig_core::limits::MAX_HOPS;
use fluxrig_core::message::{FluxMsg, Hop, MsgBytes, FLAG_SYNC_PROBE};
use fluxrig_core::rack::{Delivery, Entry, Rack, RackError, RackSink, Slot, Wire};
use fluxrig_core::verify::dangerous::trust_unverified;
use fluxrig_testkit::PASS_THROUGH_WAT;

/// Everything the rack reported, in order.
#[derive(Default)]
struct Seen(Vec<Delivery>);

impl RackSink for Seen {
    fn deliver(&mut self, delivery: Delivery) {
        self.0.push(delivery);
    }
    fn log(&mut self, _: usize, _: LogLevel, _: &str) {}
}

fn gear(engine: &GearEngine, wasm: &[u8]) -> Gear {
    let config = GearConfig::default();
    let compiled = Compiled::new(engine, &trust_unverified(wasm), &config).unwrap();
    Gear::new(compiled, config, &mut |_: LogLevel, _: &str| {}).unwrap()
}

fn pass_through() -> Vec<u8> {
    wat::parse_str(PASS_THROUGH_WAT).unwrap()
}

/// A gear that returns `bytes` whatever it is given (or drops every message if empty).
fn constant(bytes: &[u8]) -> Vec<u8> {
    let data: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    let packed = (16u64 << 32) | bytes.len() as u64;
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) (data (i32.const 16) "{data}")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param i32 i32) (result i64) (i64.const {packed})))"#
    ))
    .unwrap()
}

fn slot(engine: &GearEngine, wasm: &[u8], n: u8) -> Slot {
    Slot::gear(gear(engine, wasm), [n; 16], [n + 100; 16])
}

fn message() -> FluxMsg {
    FluxMsg { trace: "t-1".into(), ..FluxMsg::with_raw([9; 16], 1_700_000_000, b"hello".to_vec()) }
}

#[test]
fn a_chain_of_three_adds_three_hops_and_changes_nothing_else() {
    let engine = GearEngine::default();
    let slots = (0..3).map(|n| slot(&engine, &pass_through(), n)).collect();
    let wires = [Wire { from: 0, to: 1 }, Wire { from: 1, to: 2 }];
    let mut rack = Rack::with_default_queue(slots, &wires).unwrap();
    assert_eq!(rack.inputs(), [0]);
    let mut seen = Seen::default();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 42, &mut seen);
    let [Delivery::Output { from: Some(2), msg }] = seen.0.as_slice() else { panic!("{:?}", seen.0) };
    let mut want = message();
    let path = want.path.get_or_insert_with(Vec::new);
    for n in 0..3u8 {
        path.push(Hop { gear: [n; 16], port: [n + 100; 16], ts: 42 });
    }
    assert_eq!(msg.as_bytes(), want.encode().as_slice());
    assert_eq!(engine.compile_count(), 3);
}

#[test]
fn the_hop_limit_is_the_routers_count_not_the_guests_path() {
    // A gear wired to itself that always returns a message with an empty path.
    let engine = GearEngine::default();
    let fixed = MsgBytes::from_msg(&FluxMsg::with_raw([5; 16], 1, b"again".to_vec()));
    let mut rack = Rack::with_default_queue(
        vec![slot(&engine, &constant(fixed.as_bytes()), 0)],
        &[Wire { from: 0, to: 0 }],
    )
    .unwrap();
    // With its input wired, the rack has no inputs: enter along a source's wire instead.
    assert!(rack.inputs().is_empty());
    let mut seen = Seen::default();
    let mut rack_with_source = {
        let slots = vec![Slot::source([1; 16]), slot(&engine, &constant(fixed.as_bytes()), 2)];
        Rack::with_default_queue(slots, &[Wire { from: 0, to: 1 }, Wire { from: 1, to: 1 }]).unwrap()
    };
    rack_with_source.deliver(Entry::From(0), MsgBytes::from_msg(&message()), 7, &mut seen);
    let [Delivery::HopLimit { gear: 1, id }] = seen.0.as_slice() else { panic!("{:?}", seen.0) };
    assert_eq!(*id, [5; 16]);
    // Entering with no inputs, the message leaves at once.
    seen.0.clear();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 7, &mut seen);
    assert!(matches!(seen.0.as_slice(), [Delivery::Output { from: None, .. }]), "{:?}", seen.0);
}

#[test]
fn a_message_with_a_full_path_stops_at_the_first_gear() {
    let engine = GearEngine::default();
    let mut rack = Rack::with_default_queue(vec![slot(&engine, &pass_through(), 0)], &[]).unwrap();
    let mut full = message();
    full.path = Some(vec![Hop::default(); MAX_HOPS]);
    let mut seen = Seen::default();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&full), 1, &mut seen);
    assert!(matches!(seen.0.as_slice(), [Delivery::HopLimit { gear: 0, .. }]), "{:?}", seen.0);
    // One hop short of the limit still passes, and leaves with a full path.
    full.path = Some(vec![Hop::default(); MAX_HOPS - 1]);
    seen.0.clear();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&full), 1, &mut seen);
    let [Delivery::Output { msg, .. }] = seen.0.as_slice() else { panic!("{:?}", seen.0) };
    assert_eq!(msg.hop_count(), MAX_HOPS);
}

#[test]
fn flags_are_data_a_probe_flag_skips_no_gear() {
    let engine = GearEngine::default();
    let mut rack = Rack::with_default_queue(vec![slot(&engine, &constant(&[]), 0)], &[]).unwrap();
    let probe = FluxMsg { flags: FLAG_SYNC_PROBE | 0x8000_0000, ..message() };
    let mut seen = Seen::default();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&probe), 1, &mut seen);
    assert!(
        matches!(seen.0.as_slice(), [Delivery::Dropped { gear: 0, id }] if *id == [9; 16]),
        "{:?}",
        seen.0
    );
}

#[test]
fn fan_out_and_the_queue_limit_at_its_edge() {
    let engine = GearEngine::default();
    let build = |max_queued| {
        let slots = (0..3).map(|n| slot(&engine, &pass_through(), n)).collect();
        Rack::new(slots, &[Wire { from: 0, to: 1 }, Wire { from: 0, to: 2 }], max_queued).unwrap()
    };
    // Two copies wait after gear 0: a limit of 2 lets both through...
    let mut seen = Seen::default();
    build(2).deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 1, &mut seen);
    let outputs: Vec<(Option<usize>, usize)> = seen
        .0
        .iter()
        .map(|d| match d {
            Delivery::Output { from, msg } => (*from, msg.hop_count()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(outputs, [(Some(1), 2), (Some(2), 2)]);
    // ...and a limit of 1 refuses gear 0's output, saying so.
    seen.0.clear();
    build(1).deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 1, &mut seen);
    assert!(matches!(seen.0.as_slice(), [Delivery::QueueFull { gear: 0, .. }]), "{:?}", seen.0);
}

#[test]
fn a_failing_gear_costs_that_message_only() {
    let engine = GearEngine::default();
    let garbage = constant(&[0xff, 0x00]);
    let slots = vec![slot(&engine, &garbage, 0), slot(&engine, &pass_through(), 1)];
    let mut rack = Rack::with_default_queue(slots, &[]).unwrap();
    assert_eq!(rack.inputs(), [0, 1]);
    let mut seen = Seen::default();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 1, &mut seen);
    match seen.0.as_slice() {
        [Delivery::Failed { gear: 0, error, .. }, Delivery::Output { from: Some(1), .. }] => {
            assert_eq!(error.blame(), fluxrig_core::Blame::Guest);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wiring_errors_are_named() {
    let engine = GearEngine::default();
    let one = || vec![slot(&engine, &pass_through(), 0)];
    assert_eq!(
        Rack::with_default_queue(one(), &[Wire { from: 0, to: 3 }]).unwrap_err(),
        RackError::NoSuchSlot { index: 3, slots: 1 }
    );
    let with_source = vec![slot(&engine, &pass_through(), 0), Slot::source([1; 16])];
    assert_eq!(
        Rack::with_default_queue(with_source, &[Wire { from: 0, to: 1 }]).unwrap_err(),
        RackError::WireToSource { index: 1 }
    );
    assert_eq!(Rack::new(one(), &[], 0).unwrap_err(), RackError::ZeroQueue);
    assert_eq!(RackError::ZeroQueue.to_string(), "the router's queue limit must be at least 1");
}

/// A sink with a clock that advances 1.5 µs per reading.
#[derive(Default)]
struct Clocked {
    seen: Seen,
    now: u64,
}

impl RackSink for Clocked {
    fn deliver(&mut self, delivery: Delivery) {
        self.seen.deliver(delivery);
    }
    fn log(&mut self, _: usize, _: LogLevel, _: &str) {}
    fn monotonic_nanos(&mut self) -> u64 {
        self.now += 1_500;
        self.now
    }
}

#[test]
fn each_gear_counts_its_calls_outcomes_fuel_and_time() {
    let engine = GearEngine::default();
    let dropper = constant(&[]);
    let slots = vec![slot(&engine, &pass_through(), 0), slot(&engine, &dropper, 1), Slot::source([7; 16])];
    let wires = [Wire { from: 2, to: 0 }, Wire { from: 0, to: 1 }];
    let mut rack = Rack::with_default_queue(slots, &wires).unwrap();
    let mut sink = Clocked::default();
    for _ in 0..3 {
        rack.deliver(Entry::From(2), MsgBytes::from_msg(&message()), 1, &mut sink);
    }
    let [first, second, source] = rack.slots() else { panic!() };
    let (first, second) = (first.stats(), second.stats());
    assert_eq!((first.calls, first.outputs, first.dropped, first.failed), (3, 3, 0, [0; 5]));
    assert_eq!((second.calls, second.outputs, second.dropped), (3, 0, 3));
    assert!(first.fuel_used > 0);
    // Each call read the clock twice, 1.5 µs apart: all in the "at most 2 µs" bucket.
    assert_eq!(first.call_nanos[1], 3);
    assert_eq!(first.call_nanos.iter().sum::<u64>(), 3);
    assert_eq!(first.busy_nanos, 4_500);
    assert_eq!(*source.stats(), Default::default());
    // Without a clock the timings stay at zero, in the first bucket.
    let mut plain = Seen::default();
    rack.deliver(Entry::From(2), MsgBytes::from_msg(&message()), 1, &mut plain);
    let stats = rack.slots()[0].stats();
    assert_eq!((stats.calls, stats.call_nanos[0], stats.busy_nanos), (4, 1, 4_500));
}

#[test]
fn a_failing_gear_counts_the_failure_by_blame() {
    let engine = GearEngine::default();
    let trap = wat::parse_str(
        r#"(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param i32 i32) (result i64) unreachable))"#,
    )
    .unwrap();
    let mut rack = Rack::with_default_queue(vec![slot(&engine, &trap, 0)], &[]).unwrap();
    rack.deliver(Entry::Inputs, MsgBytes::from_msg(&message()), 1, &mut Seen::default());
    let stats = rack.slots()[0].stats();
    let guest = fluxrig_core::Blame::ALL.iter().position(|b| *b == fluxrig_core::Blame::Guest).unwrap();
    assert_eq!(stats.failed[guest], 1);
    assert_eq!((stats.calls, stats.outputs, stats.dropped, stats.rebuilds), (1, 0, 0, 1));
}
