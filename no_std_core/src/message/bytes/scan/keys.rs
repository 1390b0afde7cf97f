//! Keys for the walk in `scan.rs`: the keys it knows, matched 8 bytes at a time, and the
//! duplicate check of `meta` and `data` keys.
//!
//! Contract: a [`Key`]'s `word`/`mask`/`len` are exactly the bytes the encoder writes for
//! it (shortest text head, then the text), so matching them is matching a canonical text
//! item with that content. [`Keys::check`] refuses a map with a repeated key, as
//! `decode.rs`'s `check_unique` does, without allocating for up to [`FEW_KEYS`] keys.

use alloc::vec::Vec;

use super::super::super::MessageError;

/// The top-level keys in the order fluxrig writes them.
pub(super) const KEYS: [Key; 10] = [
    key(b"id"),
    key(b"ref_id"),
    key(b"trace"),
    key(b"src_id"),
    key(b"meta"),
    key(b"data"),
    key(b"flags"),
    key(b"raw"),
    key(b"path"),
    key(b"ts"),
];

/// The keys of a hop in the order fluxrig writes them.
pub(super) const HOP_KEYS: [Key; 3] = [key(b"g"), key(b"p"), key(b"t")];

/// A key the walk knows: its text, and its encoding (shortest text head, then the text)
/// packed little-endian into `word`, so that 8 input bytes are matched at once.
pub(super) struct Key {
    pub(super) text: &'static [u8],
    pub(super) word: u64,
    pub(super) mask: u64,
    pub(super) len: usize,
}

const fn key(text: &'static [u8]) -> Key {
    assert!(text.len() < 8, "a known key is encoded in at most 8 bytes");
    let mut word = 0x60 | text.len() as u64;
    let mut shift = 8;
    let mut rest = text;
    while let Some((b, tail)) = rest.split_first() {
        word |= (*b as u64) << shift;
        shift += 8;
        rest = tail;
    }
    Key { text, word, mask: u64::MAX >> (64 - shift), len: text.len() + 1 }
}

/// The keys of one `meta` or `data` map, for the duplicate check after the map is read
/// (after, as in `decode.rs`, so errors come in the same order). Keys are compared as bytes:
/// they were checked as UTF-8, and byte equality and order are `str` equality and order.
#[allow(clippy::large_enum_variant)] // 264 bytes on the stack on purpose: no heap for small maps
pub(super) enum Keys<'b> {
    Few { keys: [&'b [u8]; FEW_KEYS], n: usize, dup: bool },
    Many(Vec<&'b [u8]>),
}

/// Up to this many keys are compared pairwise on the stack.
pub(in super::super) const FEW_KEYS: usize = 16;

impl<'b> Keys<'b> {
    pub(super) fn new(len: u64) -> Self {
        if len <= FEW_KEYS as u64 {
            Self::Few { keys: [&[]; FEW_KEYS], n: 0, dup: false }
        } else {
            Self::Many(Vec::new())
        }
    }

    pub(super) fn push(&mut self, key: &'b [u8]) {
        match self {
            Self::Few { keys, n, dup } => {
                *dup |= keys.get(..*n).is_some_and(|seen| seen.contains(&key));
                if let Some(slot) = keys.get_mut(*n) {
                    *slot = key;
                    *n += 1;
                }
            }
            Self::Many(keys) => keys.push(key),
        }
    }

    pub(super) fn check(self, field: &'static str) -> Result<(), MessageError> {
        let dup = match self {
            Self::Few { dup, .. } => dup,
            Self::Many(mut keys) => {
                keys.sort_unstable();
                keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a == b)
            }
        };
        if dup {
            return Err(MessageError::DuplicateKey { field });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{HOP_KEYS, KEYS};
    use crate::message::encode::put_text;
    use alloc::vec::Vec;

    #[test]
    fn key_words_are_the_encoders_bytes() {
        for k in KEYS.iter().chain(&HOP_KEYS) {
            let mut want = Vec::new();
            put_text(&mut want, core::str::from_utf8(k.text).unwrap());
            let mut padded = want.clone();
            padded.resize(8, 0xee);
            let word = u64::from_le_bytes(padded.try_into().unwrap());
            assert_eq!((word & k.mask, k.len), (k.word, want.len()), "{:?}", k.text);
        }
    }
}
