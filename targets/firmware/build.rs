//! Makes the firmware's embedded gear: compiles `gear.wat`, vendor-signs it with the
//! shared test vendor key and countersigns it with the shared test cluster key (RFC 8032
//! test keys 1 and 2, from tests/data/vectors/signatures.txt via fluxrig-testkit),
//! exactly as `fluxrig wasm sign` and `fluxrig wasm import` would (validating it in full
//! first). Writes to OUT_DIR:
//! `gear.wasm` (cluster-signed), `cluster.pub` (32 bytes), `gear_hash.txt` (hex).
//! Also puts the right linker script for the target on the link path.

use std::path::PathBuf;

use fluxrig_core::gear::GearConfig;
use fluxrig_core::verify::{countersign, vendor_sign, SigningKey};
use fluxrig_testkit::vectors;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    // The keys are compiled into the test kit, which cargo rebuilds (and so reruns this
    // script) when tests/data/vectors changes.
    println!("cargo:rerun-if-changed=gear.wat");
    println!("cargo:rerun-if-changed=memory");
    let key = |name| vectors::get("signatures.txt", name);
    let vendor = SigningKey::from_key_file(&key("vendor_key_file")).expect("vendor key");
    let cluster = SigningKey::from_key_file(&key("cluster_key_file")).expect("cluster key");
    let module = wat::parse_file(manifest.join("gear.wat")).expect("gear.wat compiles");
    // Validated in full before it is countersigned, as `fluxrig wasm import` does.
    fluxrig_core::gear::inspect(&module, &GearConfig::default()).expect("gear.wat is a valid gear");
    let signed = vendor_sign(&module, &vendor).expect("vendor-sign");
    let (hash, stored) = countersign(&signed, &cluster).expect("countersign");
    std::fs::write(out.join("gear.wasm"), stored).expect("write gear");
    std::fs::write(out.join("cluster.pub"), cluster.public_key().0).expect("write key");
    std::fs::write(out.join("gear_hash.txt"), hash.to_string()).expect("write hash");

    // The linker script for this target's memory map.
    let target = std::env::var("TARGET").unwrap_or_default();
    let memory =
        if target.starts_with("thumbv7em") { "memory/mps2-an386.x" } else { "memory/qemu-virt-rv32.x" };
    std::fs::copy(manifest.join(memory), out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
}
