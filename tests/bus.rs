//! Fleet mode. With the `nats` feature, over a real `nats-server -js` (`crate::natsd`):
//! connecting and the catalog over the bus ([`catalog`]), messages between racks
//! ([`messages`]). Without it, `--nats` is refused
//! in one line.

#[cfg(feature = "nats")]
mod catalog;
#[cfg(feature = "nats")]
mod messages;

#[cfg(not(feature = "nats"))]
#[test]
fn a_build_without_the_nats_feature_refuses_nats_in_one_line() {
    use crate::util::*;
    let d = Dir::new("bus-off");
    d.write("picky.wasm", picky_gear());
    d.run(&["wasm", "import", "picky.wasm", "--allow-unsigned", "--nats", "nats://127.0.0.1:4222"], b"")
        .fails(2, "this fluxrig was built without fleet mode (cargo feature `nats`)");
    assert!(!d.path("data/wasm").exists());
}
