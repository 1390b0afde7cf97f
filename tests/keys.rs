//! Key files, vendor signatures and trust: what `keys gen-cluster`, `wasm sign` and
//! `wasm import` accept and refuse.

use crate::util::*;

#[test]
fn key_files_bad_and_good() {
    let d = Dir::new("keys");
    d.write("m.wasm", vector("gear_module"));
    d.run(&["wasm", "sign", "m.wasm", "missing.key"], b"")
        .fails(1, "cannot read key file missing.key: no such file");
    d.write("short.key", [1u8; 31]);
    d.run(&["wasm", "sign", "m.wasm", "short.key"], b"")
        .fails(1, "short.key: key file is 31 bytes: expected 32 raw bytes");
    let mut mismatched = vector("vendor_key_file");
    mismatched[63] ^= 1;
    d.write("bad.key", mismatched);
    d.run(&["wasm", "sign", "m.wasm", "bad.key"], b"").fails(1, "public half does not match");
    assert_eq!(d.read("m.wasm"), vector("gear_module"), "a failed sign leaves the module alone");
    // A 32-byte seed and hex text are accepted, as in fluxrig.
    d.write("seed.key", vector("vendor_seed"));
    d.run(&["wasm", "sign", "m.wasm", "seed.key"], b"").ok();
    assert_eq!(d.read("m.wasm"), vector("gear_vendor_signed_module"));
    d.write("hex.key", format!("{}\n", hex(&vector("vendor_key_file"))));
    d.run(&["wasm", "sign", "m.wasm", "hex.key"], b"").ok();
    assert_eq!(d.read("m.wasm"), vector("gear_vendor_signed_module"));
    // gen-cluster with -d/-n (the folder is created), and never over an existing key.
    d.run(&["keys", "gen-cluster", "-d", "k", "-n", "node.key"], b"").ok();
    let before = d.read("k/node.key");
    d.run(&["keys", "gen-cluster", "-o", "k/node.key"], b"").fails(1, "already exists");
    assert_eq!(d.read("k/node.key"), before);
    d.run(&["keys", "gen-cluster", "-o", "k/node.key", "--force"], b"").ok();
    assert_ne!(d.read("k/node.key"), before);
}

#[test]
fn unsigned_tampered_and_untrusted_modules_are_refused() {
    let d = Dir::new("trust");
    d.write("m.wasm", vector("gear_module"));
    d.write("vendor.key", vector("vendor_key_file"));
    d.write("other.key", vector("cluster_key_file"));
    d.write("data/wasm/keys/vendor.pub", vector("vendor_pub"));
    d.write("data/wasm/keys/notes.txt", "not a key");
    d.write("data/wasm/keys/short.pub", [0u8; 31]);

    let unsigned = d.run(&["wasm", "import", "m.wasm"], b"");
    unsigned.fails(3, "missing vendor signature (use allow_unsigned to bypass)");
    assert!(unsigned.stderr().contains("notes.txt: trusted keys end in .pub"), "{}", unsigned.stderr());
    assert!(unsigned.stderr().contains("short.pub: public key is 31 bytes; expected 32"));
    assert!(!d.path("data/wasm").read_dir().unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "wasm")));

    d.run(&["wasm", "sign", "m.wasm", "other.key"], b"").ok();
    d.run(&["wasm", "import", "m.wasm"], b"")
        .fails(3, "vendor signature found but does not match any trusted keys");

    d.run(&["wasm", "sign", "m.wasm", "vendor.key"], b"").ok();
    let mut tampered = d.read("m.wasm");
    // The global's initial value (i32.const 1024 -> 1025): still a valid gear.
    let at = tampered.windows(4).position(|w| w == [0x41, 0x80, 0x08, 0x0b]).unwrap();
    tampered[at + 1] ^= 0x01;
    d.write("t.wasm", &tampered);
    d.run(&["wasm", "import", "t.wasm"], b"")
        .fails(3, "vendor signature found but does not match any trusted keys");
    d.run(&["wasm", "verify", "t.wasm"], b"").fails(3, "vendor signature failed");

    d.write("u.wasm", vector("gear_module"));
    let allowed = d.run(&["wasm", "import", "u.wasm", "--allow-unsigned"], b"");
    allowed.ok();
    assert!(allowed.stderr().contains("unsigned (allowed by --allow-unsigned)"));
    let verify = d.run(&["wasm", "verify", "m.wasm"], b"");
    verify.ok();
    assert!(verify.stdout().contains("vendor signature: ok (trusted key 'vendor')"));
    d.write("junk.wasm", b"\0asm\x01\0\0\0\x00\x05");
    d.run(&["wasm", "import", "junk.wasm", "--allow-unsigned"], b"")
        .fails(1, "runs past the end of the module");
    d.write("notwasm.wasm", b"hello");
    d.run(&["wasm", "import", "notwasm.wasm"], b"").fails(1, "not a WebAssembly module");
}
