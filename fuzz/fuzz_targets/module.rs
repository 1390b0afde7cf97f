//! Module inspection and loading over arbitrary bytes: `gear::inspect`, and for a module
//! that passes, `Compiled::new` → `Gear::new` → `Gear::process` on one empty message
//! (twice: the second call may run on a rebuilt instance). Error or outcome, never a
//! panic; a module that inspects compiles, with the same shape; what a gear returns is a
//! checked message. Fuel is small so that an iteration stays fast.
#![no_main]

use fluxrig_core::gear::{inspect, Compiled, FuelBudget, Gear, GearConfig, GearEngine};
use fluxrig_core::message::{FluxMsg, MsgBytes};
use fluxrig_core::verify::dangerous::trust_unverified;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(shape) = inspect(bytes, &GearConfig::default()) else { return };
    let config = GearConfig {
        fuel: FuelBudget { per_message: 100_000, per_alloc: 10_000, for_start: 100_000 },
        ..GearConfig::default()
    };
    let compiled = Compiled::new(&GearEngine::default(), &trust_unverified(bytes), &config)
        .expect("a module that inspects compiles");
    assert_eq!(compiled.shape(), &shape);
    let mut sink = |_, _: &str| {};
    let Ok(mut gear) = Gear::new(compiled, config, &mut sink) else { return };
    let input = MsgBytes::from_msg(&FluxMsg::default());
    for _ in 0..2 {
        if let Ok(Some(output)) = gear.process(&input, &mut sink) {
            let bytes = output.into_bytes();
            let rechecked = MsgBytes::check(bytes.clone());
            assert_eq!(rechecked.map(MsgBytes::into_bytes), Ok(bytes));
        }
    }
});
