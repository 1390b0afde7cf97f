//! The test kit of fluxrig-edge: the one home of what more than one test needs.
//!
//! - [`vectors`]: fluxrig's byte-exact vectors, the files in `tests/data/vectors/` (copies
//!   of `../shared/vectors/`, see `tests/data/README.md`), compiled in with
//!   `include_str!`, so the kit needs no file system at run time: it works in build
//!   scripts and in test binaries run under qemu.
//! - [`hex`] and [`unhex`]: lowercase hex, as the vectors and catalog hashes write it.
//! - WAT guests shared by several test files: [`PASS_THROUGH_WAT`] and [`PICKY_WAT`].
//!   Compile them with the `wat` crate (`wat::parse_str`), which each user already has.
//!
//! Host-only and dev-only (`publish = false`): used by the core's tests and benchmark,
//! the CLI tests and the firmware's build script, never by a shipped artifact. Every
//! function panics with a message naming what is missing or malformed: in a test, that is
//! the failure report.

/// The vector files of `tests/data/vectors/`.
pub mod vectors {
    /// The files, by name, as committed.
    const FILES: [(&str, &str); 3] = [
        ("signatures.txt", include_str!("../../data/vectors/signatures.txt")),
        ("fluxmsg.txt", include_str!("../../data/vectors/fluxmsg.txt")),
        ("gear.wat", include_str!("../../data/vectors/gear.wat")),
    ];

    /// Returns the whole text of vector file `file` (`signatures.txt`, `fluxmsg.txt`,
    /// `gear.wat`); `file("gear.wat")` is the WAT source of the vectors' `gear_module`.
    ///
    /// # Panics
    /// If there is no such file.
    pub fn file(file: &str) -> &'static str {
        FILES
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, text)| *text)
            .unwrap_or_else(|| panic!("no vector file {file:?} in tests/data/vectors"))
    }

    /// Returns the bytes of the `name = hex` line called `name` in vector file `file`,
    /// for example `get("signatures.txt", "vendor_key_file")` or
    /// `get("fluxmsg.txt", "example")`.
    ///
    /// # Panics
    /// If the file or the line is missing, or the value is not hex.
    pub fn get(file: &str, name: &str) -> Vec<u8> {
        let prefix = format!("{name} = ");
        let value = self::file(file)
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no vector {name:?} in tests/data/vectors/{file}"));
        super::unhex(value.trim())
    }
}

/// Returns `bytes` as lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the bytes that hex text `text` spells (either case, no separators).
///
/// # Panics
/// If `text` has an odd length or a character that is not a hex digit.
pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "hex of odd length {}: {text:?}", text.len());
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .unwrap_or_else(|| panic!("not hex at {i}: {text:?}"))
        })
        .collect()
}

/// A pass-through gear: `alloc` always hands out the same buffer at 1024 (so any number
/// of messages of up to 63 KiB fits, one at a time), `free` does nothing, `process`
/// returns its input. Imports `env.log` without calling it, like most real gears. One
/// page of memory, at most 16. The benchmark's guest: keep it minimal.
pub const PASS_THROUGH_WAT: &str = r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1 16)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))"#;

/// A gear that drops messages whose bytes contain "drop" (logging "dropping one" at warn),
/// loops forever on "loop" (so fuel has something to stop), traps on "trap", and passes
/// everything else through. A bump `alloc` that starts over before 60000; memory 1 to 4
/// pages.
pub const PICKY_WAT: &str = r#"(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1 4)
  (data (i32.const 16) "dropping one")
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32) (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (if (i32.gt_u (global.get $next) (i32.const 60000)) (then (global.set $next (i32.const 1024)) (local.set $p (i32.const 1024)) (global.set $next (i32.add (i32.const 1024) (local.get $len)))))
    (local.get $p))
  (func (export "free") (param i32 i32))
  (func $find (param $ptr i32) (param $len i32) (param $word i32) (result i32) (local $i i32)
    (block $no (loop $l
      (br_if $no (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
      (if (i32.eq (i32.load (i32.add (local.get $ptr) (local.get $i))) (local.get $word)) (then (return (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.const 0))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64)
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x706f7264)) ;; "drop"
      (then (call $log (i32.const 3) (i32.const 16) (i32.const 12)) (return (i64.const 0))))
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x706f6f6c)) ;; "loop"
      (then (loop $l (br $l))))
    (if (call $find (local.get $ptr) (local.get $len) (i32.const 0x70617274)) ;; "trap"
      (then unreachable))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))))"#;

/// xorshift64*: a deterministic random source for seeded robustness tests, with no
/// dependency, so that a failure reproduces from its seed on every target.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Returns the next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Returns a number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Returns up to `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Returns one of `from` (not empty).
    pub fn pick<'a, T: ?Sized>(&mut self, from: &[&'a T]) -> &'a T {
        from[self.below(from.len())]
    }

    /// Flips, inserts, deletes or overwrites one to four bytes of `base`; an overwrite
    /// takes one of `interesting` (the heads and markers the parser under test cares about).
    pub fn mutate(&mut self, base: &[u8], interesting: &[u8]) -> Vec<u8> {
        let mut out = base.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = if out.is_empty() { 0 } else { self.below(out.len()) };
            match self.below(4) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 => out.insert(at, self.next() as u8),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                _ if !out.is_empty() => out[at] = interesting[self.below(interesting.len())],
                _ => out.push(0),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), bytes);
        assert_eq!(hex(&[0x00, 0x0f, 0xa5]), "000fa5");
        assert_eq!(unhex("A5ff"), [0xa5, 0xff]);
    }

    #[test]
    #[should_panic(expected = "odd length")]
    fn odd_hex_is_refused() {
        unhex("abc");
    }

    #[test]
    #[should_panic(expected = "not hex")]
    fn non_hex_is_refused() {
        unhex("zz");
    }

    #[test]
    fn every_vector_line_is_hex() {
        for file in ["signatures.txt", "fluxmsg.txt"] {
            for line in vectors::file(file).lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let (name, _) = line.split_once(" = ").unwrap_or_else(|| panic!("{file}: {line:?}"));
                assert!(!vectors::get(file, name).is_empty(), "{file}: {name}");
            }
        }
        assert_eq!(vectors::get("signatures.txt", "module"), b"\0asm\x01\0\0\0");
        assert!(vectors::file("gear.wat").starts_with("(module"));
    }

    #[test]
    #[should_panic(expected = "no vector \"nothing\" in tests/data/vectors/fluxmsg.txt")]
    fn a_missing_vector_is_named() {
        vectors::get("fluxmsg.txt", "nothing");
    }
}
