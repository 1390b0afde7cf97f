//! The decoded-size account that the decoder and the checking scan share, so that both
//! refuse the same message at the same item with the same error.
//!
//! Contract: a message is charged `size_of::<FluxMsg>()`, every text and byte string read
//! its length, every vector its capacity (the claimed count, but no more than the input
//! left or the room left under [`MAX_DECODED_MESSAGE_BYTES`]) and every item past that
//! capacity its slot; past the limit, [`MessageError::DecodedTooLarge`].

use alloc::string::String;
use core::mem::size_of;

use super::{FluxMsg, Hop, MessageError, Value};
use crate::limits::MAX_DECODED_MESSAGE_BYTES;

/// A decoded message.
pub(super) const MESSAGE: usize = size_of::<FluxMsg>();
/// One `meta` entry.
pub(super) const META_ENTRY: usize = size_of::<(String, String)>();
/// One `data` entry.
pub(super) const DATA_ENTRY: usize = size_of::<(String, Value)>();
/// One array item inside `data`.
pub(super) const VALUE: usize = size_of::<Value>();
/// One map entry inside `data`.
pub(super) const MAP_ENTRY: usize = size_of::<(Value, Value)>();
/// One hop.
pub(super) const HOP: usize = size_of::<Hop>();
/// One borrowed key, for the duplicate check of `meta` and `data`.
pub(super) const KEY_REF: usize = size_of::<&str>();

/// Bytes a decoded message holds so far.
#[derive(Debug, Default)]
pub(super) struct Account {
    decoded: usize,
}

impl Account {
    /// Charges `n` bytes.
    pub(super) fn charge(&mut self, n: usize) -> Result<(), MessageError> {
        self.decoded = self.decoded.saturating_add(n);
        if self.decoded > MAX_DECODED_MESSAGE_BYTES {
            return Err(MessageError::DecodedTooLarge {
                limit: MAX_DECODED_MESSAGE_BYTES,
                got: self.decoded,
            });
        }
        Ok(())
    }

    /// Returns the capacity to reserve for a claimed `count` of `size`-byte items with
    /// `input_left` bytes of input after the head, and charges it. Never fails: the
    /// capacity is cut to what is left of the limit.
    pub(super) fn reserve(&mut self, count: u64, size: usize, input_left: usize) -> usize {
        let size = size.max(1);
        let room = MAX_DECODED_MESSAGE_BYTES.saturating_sub(self.decoded) / size;
        let capacity = usize::try_from(count).unwrap_or(usize::MAX).min(input_left).min(room);
        self.decoded = self.decoded.saturating_add(capacity.saturating_mul(size));
        capacity
    }

    /// Charges the item at index `index` of a vector reserved at `capacity`, if it is past it.
    pub(super) fn push(&mut self, index: usize, capacity: usize, size: usize) -> Result<(), MessageError> {
        if index >= capacity {
            self.charge(size)?;
        }
        Ok(())
    }
}
