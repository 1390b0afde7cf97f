//! The rack's producers, each on its own thread: standard input (JSON lines or a CBOR
//! sequence) and `generate` gears. Each turns what it reads into checked messages
//! ([`MsgBytes`], encoded or checked once, here) and sends [`Event`]s to the run loop.
//!
//! Contract: a producer sends [`Event::Done`] exactly once, last; a bad line or item is an
//! [`Event::BadInput`] naming its number, and the producer goes on where it can (JSON
//! lines) or stops (a CBOR sequence cannot be resynchronised). A line longer than twice
//! [`MAX_ENCODED_MESSAGE_BYTES`] is not buffered: input stops there, with a reason.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use fluxrig_core::limits::MAX_ENCODED_MESSAGE_BYTES;
use fluxrig_core::message::Uuid;
use fluxrig_core::{FluxMsg, MsgBytes};

use crate::clock;
use crate::json;

/// What a producer sends to the run loop.
pub enum Event {
    /// A message from standard input.
    Input(MsgBytes),
    /// A message made by the `generate` gear at this index.
    Generated(usize, MsgBytes),
    /// A line or item that is not a message, and why.
    BadInput(String),
    /// The producer has finished.
    Done,
}

/// Reads JSON lines from `reader` until it ends: each line a fluxMsg as JSON or any other
/// text as the raw payload of a new message.
pub fn json_lines(reader: impl Read, tx: &Sender<Event>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut number = 0u64;
    let limit = (2 * MAX_ENCODED_MESSAGE_BYTES) as u64;
    loop {
        line.clear();
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Event::BadInput(format!("cannot read standard input: {e}")));
                break;
            }
        }
        number += 1;
        if line.len() as u64 >= limit && line.last() != Some(&b'\n') {
            let text = format!("line {number}: longer than {limit} bytes; stopping input");
            let _ = tx.send(Event::BadInput(text));
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        // A JSON message is held to the same limits as a CBOR one (hops, payload, size).
        let event = match json::from_line(text).map(|msg| MsgBytes::try_from_msg(&msg)) {
            Ok(Ok(msg)) => Event::Input(msg),
            Ok(Err(e)) => Event::BadInput(format!("line {number}: {e}")),
            Err(e) => Event::BadInput(format!("line {number}: {e}")),
        };
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Done);
}

/// Reads a CBOR sequence of fluxMsgs from `reader` until it ends or an item is bad.
pub fn cbor_sequence(mut reader: impl Read, tx: &Sender<Event>) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut eof = false;
    let mut number = 0u64;
    loop {
        while !buffer.is_empty() {
            match MsgBytes::check_prefix(&buffer) {
                Ok((msg, used)) => {
                    number += 1;
                    buffer.drain(..used);
                    if tx.send(Event::Input(msg)).is_err() {
                        return;
                    }
                }
                Err(e) if eof || buffer.len() >= MAX_ENCODED_MESSAGE_BYTES => {
                    let text = format!("CBOR item {}: {e}; stopping input", number + 1);
                    let _ = tx.send(Event::BadInput(text));
                    let _ = tx.send(Event::Done);
                    return;
                }
                Err(_) => break, // wait for more bytes
            }
        }
        if eof {
            break;
        }
        match reader.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) => {
                let _ = tx.send(Event::BadInput(format!("cannot read standard input: {e}")));
                break;
            }
        }
    }
    let _ = tx.send(Event::Done);
}

/// What a `generate` gear makes.
pub struct Generator {
    /// The gear's index in the rack.
    pub index: usize,
    /// The gear's id, the `src_id` of its messages.
    pub src: Uuid,
    /// How many messages.
    pub count: u64,
    /// Pause between two, in milliseconds.
    pub interval_ms: u64,
    /// `raw` payload; `{n}` becomes the message number.
    pub payload: String,
}

impl Generator {
    /// Sends the messages, `interval_ms` apart, then [`Event::Done`].
    pub fn run(self, tx: &Sender<Event>) {
        for n in 1..=self.count {
            if n > 1 && self.interval_ms > 0 {
                thread::sleep(Duration::from_millis(self.interval_ms));
            }
            let raw = self.payload.replace("{n}", &n.to_string()).into_bytes();
            let mut msg = FluxMsg::with_raw(clock::new_uuid_v7(), clock::unix_nanos(), raw);
            msg.src_id = self.src;
            if tx.send(Event::Generated(self.index, MsgBytes::from_msg(&msg))).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Done);
    }
}
