//! The catalog: the shared vectors through sign and import byte for byte, `wasm list`
//! on a tampered catalog, and `wasm call` on a file or a catalog hash.

use crate::util::*;

#[test]
fn shared_vectors_through_sign_and_import() {
    let d = Dir::new("vectors");
    d.write("gear.wasm", vector("gear_module"));
    d.write("vendor.key", vector("vendor_key_file"));
    d.write("data/wasm/keys/vendor.pub", vector("vendor_pub"));
    d.write("data/cluster.key", vector("cluster_key_file"));
    d.run(&["wasm", "sign", "gear.wasm", "vendor.key"], b"").ok();
    assert_eq!(d.read("gear.wasm"), vector("gear_vendor_signed_module"));
    // Re-signing replaces the signature: same bytes again.
    d.run(&["wasm", "sign", "gear.wasm", "vendor.key"], b"").ok();
    assert_eq!(d.read("gear.wasm"), vector("gear_vendor_signed_module"));
    let import = d.run(&["wasm", "import", "gear.wasm"], b"");
    import.ok();
    let hash = hex(&vector("gear_catalog_hash"));
    assert_eq!(import.stdout().trim(), hash);
    assert_eq!(d.read(&format!("data/wasm/{hash}.wasm")), vector("gear_cluster_signed_module"));
    // Importing again is harmless and says so.
    let again = d.run(&["wasm", "import", "gear.wasm"], b"");
    again.ok();
    assert!(again.stderr().contains("already in the catalog"));
    // The 8-byte bare module has no gear exports: refused by name.
    d.write("bare.wasm", vector("vendor_signed_module"));
    d.run(&["wasm", "import", "bare.wasm"], b"")
        .fails(1, "gear 'bare.wasm': module does not export \"alloc\"");
    d.run(&["wasm", "list"], b"").ok();
}

#[test]
fn wasm_list_flags_a_tampered_catalog() {
    let d = Dir::new("list");
    let hash = tutorial_up_to_import(&d);
    let list = d.run(&["wasm", "list"], b"");
    list.ok();
    assert!(list.stdout().contains(&format!("{hash}.wasm")) && list.stdout().contains(" ok"));
    let path = format!("data/wasm/{hash}.wasm");
    let mut bytes = d.read(&path);
    bytes[20] ^= 1;
    d.write(&path, bytes);
    let list = d.run(&["wasm", "list"], b"");
    list.fails(3, "1 of 1 catalog modules would be refused");
    // A changed file is named as changed, not blamed on the cluster key.
    assert!(
        list.stdout().contains("REFUSED: ")
            && list.stdout().contains("it was changed or renamed after it was countersigned"),
        "{}",
        list.stdout()
    );
}

#[test]
fn wasm_call_runs_one_message() {
    let d = Dir::new("call");
    d.write("polyglot.wasm", POLYGLOT);
    let call = d.run(&["wasm", "call", "polyglot.wasm", "-m", "ping"], b"");
    call.ok();
    let out: serde_json::Value = serde_json::from_str(call.stdout().trim()).unwrap();
    assert_eq!(out["raw_text"], "ping");
    assert!(call.stderr().contains("without checking its signatures"));
    assert!(call.stderr().contains(ZIG_LOG_LINE));
    assert!(call.stderr().contains("fuel used: "));
    d.run(&["wasm", "call", "polyglot.wasm", "--memory-limit-pages", "1"], b"").fails(1, "wants 2 pages");
    let hash = tutorial_up_to_import(&d);
    let by_hash = d.run(&["wasm", "call", &hash, "-m", "{\"raw_text\":\"x\"}"], b"");
    by_hash.ok();
    assert!(!by_hash.stderr().contains("without checking"));
    d.write("picky.wasm", picky_gear());
    d.run(&["wasm", "call", "picky.wasm", "-m", "loop", "--fuel", "100000"], b"")
        .fails(1, "gear 'gear': guest \"process\" ran out of fuel");
    let dropped = d.run(&["wasm", "call", "picky.wasm", "-m", "drop"], b"");
    dropped.ok();
    assert_eq!(dropped.stdout(), "");
    assert!(dropped.stderr().contains("the gear dropped the message"));
}
