//! [`MsgBytes`]: a checked fluxMsg kept as its canonical CBOR bytes, for passing messages
//! between gears without decoding them (model: smoltcp's `Packet::new_checked`).
//!
//! Contract: a [`MsgBytes`] made by [`MsgBytes::check`] or [`MsgBytes::check_prefix`] holds
//! bytes that [`FluxMsg::decode`] accepts and that are exactly what [`FluxMsg::encode`]
//! writes for the decoded message; [`MsgBytes::push_hop`] keeps both true. So its id, flags
//! and hop count are read, and a hop stamped, in O(1) without building a [`FluxMsg`].
//!
//! Canonical, checked byte by byte while checking: a 10-entry top-level map; the keys `id`,
//! `ref_id`, `trace`, `src_id`, `meta`, `data`, `flags`, `raw`, `path`, `ts` in that order and
//! no other key; every integer and length in its shortest head; ids as 16-byte strings (not
//! `null`); `trace` as text (not `null`); `null` as 0xf6 (never `undefined`); floats only as
//! float64; hops as 3-entry maps `g`, `p`, `t` in that order. Any other valid input is
//! decoded and re-encoded once, so the kept bytes always equal fluxrig's encoder output.
//!
//! Checking applies every rule of [`FluxMsg::decode`], with the same [`MessageError`] values,
//! in the same order (the walk mirrors `decode.rs` call for call). One extra refusal: an
//! input whose re-encoding would exceed [`MAX_ENCODED_MESSAGE_BYTES`] (narrow floats and
//! `null` ids grow when re-encoded) is refused as `MessageTooLarge`, so every `MsgBytes`
//! stays within the limits.
//!
//! Duplicate keys in `meta` and `data` are found without allocating for maps of up to 16
//! entries (borrowed keys compared pairwise, at most 120 comparisons); larger maps collect
//! borrowed `&[u8]` keys into one `Vec` and sort it, O(n log n), never a quadratic scan.
//! The check keeps the decoder's account of the decoded size (`charge.rs`) and refuses
//! what the decoder refuses ([`MessageError::DecodedTooLarge`] included), so a map holds
//! at most about 58 000 entries and the key vector stays under 1 MiB.
//!
//! Guarantees: no panic on any input, no `unsafe`; checking canonical input allocates
//! nothing beyond that key vector ([`MsgBytes::check_prefix`] copies the prefix once).
//! Out of scope: editing fields other than `path`.

use alloc::vec::Vec;

use super::{counter, FluxMsg, Hop, MessageError, Uuid};
use crate::limits::{MAX_ENCODED_MESSAGE_BYTES, MAX_HOPS};
use scan::{scan, Layout};

mod scan;

// A path array head is then at most 2 bytes (0x98 n), which `push_hop` relies on.
const _: () = assert!(MAX_HOPS < 256);

/// CBOR `null`.
const NULL: u8 = 0xf6;

/// A checked, canonical fluxMsg kept as its CBOR bytes; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgBytes {
    bytes: Vec<u8>,
    id: Uuid,
    flags: u32,
    hops: usize,
    /// Offset of the path value: its array head, or its `null`.
    path_at: usize,
    /// Offset just past the path value, where the `ts` key starts.
    path_end: usize,
}

impl MsgBytes {
    /// Checks `bytes` as one whole fluxMsg and keeps them if they are canonical, or keeps
    /// their re-encoding (decoded and encoded once) if they are valid but not canonical.
    ///
    /// # Errors
    /// Every [`MessageError`] [`FluxMsg::decode`] gives for the same bytes, and
    /// `MessageTooLarge` or `DecodedTooLarge` if a re-encoding (which writes every field)
    /// would exceed [`MAX_ENCODED_MESSAGE_BYTES`] or
    /// [`MAX_DECODED_MESSAGE_BYTES`](crate::limits::MAX_DECODED_MESSAGE_BYTES).
    pub fn check(bytes: Vec<u8>) -> Result<Self, MessageError> {
        if bytes.len() > MAX_ENCODED_MESSAGE_BYTES {
            return Err(MessageError::MessageTooLarge { limit: MAX_ENCODED_MESSAGE_BYTES, got: bytes.len() });
        }
        let (layout, end, canonical) = scan(&bytes)?;
        if end != bytes.len() {
            return Err(MessageError::TrailingBytes { offset: end });
        }
        if canonical {
            return Ok(Self::from_layout(bytes, layout));
        }
        Self::reencode(&FluxMsg::decode(&bytes)?)
    }

    /// Checks the first fluxMsg of a CBOR sequence, as [`FluxMsg::decode_prefix`] does, and
    /// returns it with its length in bytes. Copies the prefix once (or re-encodes it once).
    ///
    /// # Errors
    /// As [`MsgBytes::check`], except that trailing bytes are not an error.
    pub fn check_prefix(bytes: &[u8]) -> Result<(Self, usize), MessageError> {
        let window = bytes.split_at_checked(MAX_ENCODED_MESSAGE_BYTES).map_or(bytes, |(w, _)| w);
        let (layout, end, canonical) = scan(window)?;
        if canonical {
            if let Some((used, _)) = window.split_at_checked(end) {
                return Ok((Self::from_layout(used.to_vec(), layout), end));
            }
        }
        let (msg, end) = FluxMsg::decode_prefix(bytes)?;
        Ok((Self::reencode(&msg)?, end))
    }

    /// Encodes `msg` once and notes where its path is, without checking it.
    ///
    /// The message is trusted to be within the limits (a decoded [`FluxMsg`] always is); one
    /// built from untrusted input (JSON, say) should go through [`MsgBytes::try_from_msg`].
    /// Outside the limits, [`MsgBytes::to_msg`] returns an empty message.
    pub fn from_msg(msg: &FluxMsg) -> Self {
        let bytes = msg.encode();
        // Walk back from the end: `"ts"` and its integer, then the path value.
        let ts_len = 3 + int_len(msg.ts);
        let path_len = msg.path.as_ref().map_or(1, |path| {
            array_head(path.len()).1 + path.iter().map(|h| 41 + int_len(h.ts)).sum::<usize>()
        });
        let path_end = bytes.len().saturating_sub(ts_len);
        let path_at = path_end.saturating_sub(path_len);
        let hops = msg.path.as_ref().map_or(0, Vec::len);
        Self { bytes, id: msg.id, flags: msg.flags, hops, path_at, path_end }
    }

    /// Encodes `msg` and checks the result, so a [`FluxMsg`] from untrusted input cannot
    /// make a `MsgBytes` outside the limits.
    ///
    /// # Errors
    /// As [`MsgBytes::check`] on `msg.encode()`.
    pub fn try_from_msg(msg: &FluxMsg) -> Result<Self, MessageError> {
        Self::check(msg.encode())
    }

    /// Returns the message id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Returns the flags (see [`super::FLAG_SYNC_PROBE`]).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Returns the number of hops in `path` (0 when `path` is `null`).
    pub fn hop_count(&self) -> usize {
        self.hops
    }

    /// Appends `hop` to `path` in place (a `null` path becomes a one-hop array), moving only
    /// the `ts` entry that follows it (and, when the array head grows at 24 hops, the path).
    ///
    /// # Errors
    /// `TooManyHops` if `path` already has [`MAX_HOPS`] hops; `MessageTooLarge` if the
    /// message would exceed [`MAX_ENCODED_MESSAGE_BYTES`]. The message is unchanged then.
    pub fn push_hop(&mut self, hop: &Hop) -> Result<(), MessageError> {
        if self.hops >= MAX_HOPS {
            return Err(MessageError::TooManyHops { limit: MAX_HOPS, got: self.hops + 1 });
        }
        let old_head_len =
            if self.bytes.get(self.path_at) == Some(&NULL) { 1 } else { array_head(self.hops).1 };
        let (new_head, new_head_len) = array_head(self.hops + 1);
        let head_range = self.path_at..self.path_at + old_head_len;
        if self.bytes.get(head_range.clone()).is_none() || self.path_end > self.bytes.len() {
            // Unreachable for a checked MsgBytes; refuse rather than corrupt.
            return Err(MessageError::Malformed { field: "path", offset: self.path_at });
        }
        let old_len = self.bytes.len();
        hop.encode_into(&mut self.bytes);
        let hop_len = self.bytes.len() - old_len;
        let got = self.bytes.len() + new_head_len - old_head_len;
        if got > MAX_ENCODED_MESSAGE_BYTES {
            self.bytes.truncate(old_len);
            return Err(MessageError::MessageTooLarge { limit: MAX_ENCODED_MESSAGE_BYTES, got });
        }
        // The hop was appended after `ts`; rotate it to the end of the path.
        if let Some(tail) = self.bytes.get_mut(self.path_end..) {
            tail.rotate_right(hop_len);
        }
        self.bytes.splice(head_range, new_head.iter().take(new_head_len).copied());
        self.hops += 1;
        self.path_end += hop_len + new_head_len - old_head_len;
        Ok(())
    }

    /// Returns the canonical CBOR bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the canonical CBOR bytes, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Decodes the message; for the edges only (JSON output, people, tests).
    ///
    /// Cannot fail for a checked `MsgBytes`; for one made by [`MsgBytes::from_msg`] from a
    /// message outside the limits, returns an empty [`FluxMsg`].
    pub fn to_msg(&self) -> FluxMsg {
        FluxMsg::decode(&self.bytes).unwrap_or_default()
    }

    fn from_layout(bytes: Vec<u8>, l: Layout) -> Self {
        Self { bytes, id: l.id, flags: l.flags, hops: l.hops, path_at: l.path_at, path_end: l.path_end }
    }

    /// Encodes a valid message that arrived in a non-canonical form, and locates its path.
    fn reencode(msg: &FluxMsg) -> Result<Self, MessageError> {
        counter::note_reencode();
        let bytes = msg.encode();
        if bytes.len() > MAX_ENCODED_MESSAGE_BYTES {
            return Err(MessageError::MessageTooLarge { limit: MAX_ENCODED_MESSAGE_BYTES, got: bytes.len() });
        }
        let (layout, _, canonical) = scan(&bytes)?;
        debug_assert!(canonical, "the encoder wrote non-canonical bytes");
        Ok(Self::from_layout(bytes, layout))
    }
}

impl AsRef<[u8]> for MsgBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Returns a CBOR array head for `n` < 256 items and its length.
fn array_head(n: usize) -> ([u8; 2], usize) {
    match u8::try_from(n) {
        Ok(n) if n < 24 => ([0x80 | n, 0], 1),
        Ok(n) => ([0x98, n], 2),
        Err(_) => ([0x98, u8::MAX], 2),
    }
}

/// Returns the length of the shortest CBOR head of `v` as the encoder writes it.
fn int_len(v: i64) -> usize {
    let m = if v >= 0 { v.unsigned_abs() } else { (-1 - i128::from(v)).unsigned_abs() as u64 };
    match m {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

#[cfg(test)]
mod tests;
