//! The rack's producers: inputs (standard input, socket connections) and `generate` gears.
//! Each runs on its own thread, turns what it reads into checked messages ([`MsgBytes`],
//! encoded or checked once, here) and pushes them into the bounded [`Queue`], which blocks
//! it while the rack is behind: that is where reading stops and backpressure starts.
//!
//! Contract for an input ([`read_input`]):
//! - JSON lines: each line a fluxMsg as JSON, or any other text as the `raw` payload of a
//!   new message; a line that is not UTF-8 is carried as its raw bytes, unchanged. A bad
//!   line is reported ([`Item::BadInput`], naming the input and the line number) and
//!   skipped. A line longer than the input's `max_item_bytes` ends the input: it is not
//!   buffered.
//! - CBOR sequences: items are framed first (well-formedness only, linear in the input,
//!   never re-read), then checked as fluxMsgs. A well-formed item that is not a valid
//!   fluxMsg is reported and skipped; a malformed or oversized one ends the input (a CBOR
//!   sequence cannot be resynchronised), saying how many items were read before it.
//! - At most `max_item_bytes` plus one read chunk ([`READ_CHUNK_BYTES`]) is buffered.
//! - Once the rack stops, no more is read from the writer; what was read already (whole
//!   lines and items in the buffer) is pushed, and a partial one is logged as cut off.
//! - While it holds bytes it has read, an input says so to the queue, so that a stopping
//!   rack waits for them ([`Producer::set_holding`]).
//! - Messages are pushed in batches ([`Batch`]: at most [`MAX_BATCH_MESSAGES`] messages or
//!   [`MAX_BATCH_BYTES`] bytes), and always before the next read from the operating system
//!   (which may block) or a generator's pause: a batch never waits for more input.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::thread;
use std::time::Duration;

use fluxrig_core::limits::MAX_ENCODED_MESSAGE_BYTES;
use fluxrig_core::message::{Uuid, MAX_HOP_BYTES};
use fluxrig_core::MsgBytes;

use crate::cli::Format;
use crate::clock;
use crate::json;
use crate::queue::{Flow, Item, Origin, Producer};

/// Longest line or item read from standard input: twice
/// [`MAX_ENCODED_MESSAGE_BYTES`], room for the largest message as JSON.
pub const MAX_STDIN_ITEM_BYTES: usize = 2 * MAX_ENCODED_MESSAGE_BYTES;

/// Bytes asked of the operating system per read: 64 KiB.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Most messages a producer gathers before it pushes them to the queue at once: 64.
///
/// Reason: one lock and at most one wake-up of the run loop per batch instead of per
/// message (measured: two futex calls per message were most of the binary's CPU time at
/// 64-byte messages); 64 small messages are a few KiB, pushed within microseconds.
pub const MAX_BATCH_MESSAGES: usize = 64;

/// Most bytes (encoded messages) a producer gathers before it pushes them: 64 KiB, one
/// read chunk, so that a batch adds at most that to what the queue's limits hold.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Messages gathered by one producer and pushed together (see the module docs).
struct Batch<'a> {
    producer: &'a Producer,
    items: VecDeque<Item>,
    bytes: usize,
}

impl<'a> Batch<'a> {
    fn new(producer: &'a Producer) -> Self {
        Self { producer, items: VecDeque::with_capacity(MAX_BATCH_MESSAGES), bytes: 0 }
    }

    /// Adds `item`, pushing the batch when it is full; returns what the push said.
    fn add(&mut self, item: Item) -> Flow {
        if let Item::Message(_, msg) = &item {
            self.bytes += msg.as_bytes().len();
        }
        self.items.push_back(item);
        if self.items.len() >= MAX_BATCH_MESSAGES || self.bytes >= MAX_BATCH_BYTES {
            self.push()
        } else {
            Flow::Continue
        }
    }

    /// Pushes what is gathered (waiting for room as a single push does).
    fn push(&mut self) -> Flow {
        self.bytes = 0;
        if self.items.is_empty() {
            return Flow::Continue;
        }
        self.producer.push_all(&mut self.items)
    }
}

/// One input: what it is called in log lines, its format and its longest item.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its name in log lines (`standard input`, `unix:/run/fluxrig.sock client 3`).
    pub name: String,
    /// JSON lines or a CBOR sequence.
    pub format: Format,
    /// Longest line (JSON) or item (CBOR), in bytes.
    pub max_item_bytes: usize,
}

/// How an input ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The writer closed it.
    Closed,
    /// The rack is stopping, or it finished.
    Stopped,
    /// It broke off: a read error, a malformed or oversized item (already reported).
    Broken,
    /// Nothing came for longer than the reader's timeout (a silent socket client).
    Idle,
}

/// Reads `reader` as `input` until it ends, pushing every message; returns how it ended
/// and how many items (good or bad) it read.
pub fn read_input(reader: impl Read, input: &Input, producer: &Producer) -> (End, u64) {
    let reader = Tracked { inner: reader, producer };
    let (end, items) = match input.format {
        Format::Json => json_lines(reader, input, producer),
        Format::Cbor => cbor_sequence(reader, input, producer),
    };
    producer.set_holding(false);
    (end, items)
}

/// The error [`Tracked`] returns for a read the stopping rack refuses.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the rack is stopping")
    }
}

impl std::error::Error for Stopped {}

fn stopped(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

/// A reader that tells the queue when it holds bytes read but not pushed (from a read
/// that returned data until the next read), and refuses to read once the rack stops: the
/// bytes already read are finished, no more are taken from the writer.
struct Tracked<'a, R> {
    inner: R,
    producer: &'a Producer,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.producer.set_holding(false);
        if self.producer.queue().is_stopping() {
            return Err(std::io::Error::other(Stopped));
        }
        let read = self.inner.read(buf)?;
        // A socket whose read side the stop closed reads as its end: that is the stop too,
        // not the writer's end (a partial line must not pass for a whole one).
        if read == 0 && self.producer.queue().is_stopping() {
            return Err(std::io::Error::other(Stopped));
        }
        self.producer.set_holding(read > 0);
        Ok(read)
    }
}

/// How a failed read ends the input: the stop (with a warning if a partial line or item
/// was cut off), a timeout, or an error reported as bad input.
fn read_failed(e: &std::io::Error, partial: usize, input: &Input, producer: &Producer) -> End {
    if stopped(e) {
        if partial > 0 {
            let text = format!("{partial} byte(s) of an unfinished line or item were cut off by the stop");
            crate::logger::warn(&input.name, &text);
        }
        End::Stopped
    } else if is_timeout(e) {
        End::Idle
    } else {
        let _ = push(producer, read_error(input, e), input);
        End::Broken
    }
}

/// Pushes `item`; returns how the input ends if it must end now. A stopping queue takes
/// the item: the reader goes on with what it has read, and its next read is refused.
fn push(producer: &Producer, item: Item, input: &Input) -> Option<End> {
    refused(producer.push(item), 1, input)
}

/// Adds `item` to `batch` (pushed when full); returns how the input ends if it must end
/// now, as [`push`].
fn gather(batch: &mut Batch, item: Item, input: &Input) -> Option<End> {
    let flow = batch.add(item);
    refused(flow, batch.items.len(), input)
}

/// Pushes what `batch` holds (before a read that may block, or at the end); returns how
/// the input ends if it must end now, as [`push`].
fn send(batch: &mut Batch, input: &Input) -> Option<End> {
    let flow = batch.push();
    refused(flow, batch.items.len(), input)
}

/// The end of an input whose push was refused (the rack has finished): `left` messages
/// were not processed, and it says so.
fn refused(flow: Flow, left: usize, input: &Input) -> Option<End> {
    match flow {
        Flow::Continue | Flow::Stop => None,
        Flow::Refused => {
            let text = format!("{} message(s) read after the rack finished were not processed", left.max(1));
            crate::logger::error(&input.name, &text);
            Some(End::Stopped)
        }
    }
}

fn bad(input: &Input, text: String) -> Item {
    Item::BadInput(format!("{}: {text}", input.name))
}

fn read_error(input: &Input, e: &std::io::Error) -> Item {
    bad(input, format!("read failed: {e}; stopping this input"))
}

/// A read timeout, as a socket with `set_read_timeout` reports it.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn json_lines(reader: impl Read, input: &Input, producer: &Producer) -> (End, u64) {
    let mut reader = BufReader::with_capacity(READ_CHUNK_BYTES, reader);
    let mut batch = Batch::new(producer);
    let mut line = Vec::new();
    let mut number = 0u64;
    let limit = input.max_item_bytes as u64;
    loop {
        // The next line needs a read from the operating system, which may block: push
        // what is gathered first.
        if !reader.buffer().contains(&b'\n') {
            if let Some(end) = send(&mut batch, input) {
                return (end, number);
            }
        }
        line.clear();
        match (&mut reader).take(limit + 1).read_until(b'\n', &mut line) {
            Ok(0) => return (send(&mut batch, input).unwrap_or(End::Closed), number),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                if let Some(end) = send(&mut batch, input) {
                    return (end, number);
                }
                return (read_failed(&e, line.len(), input, producer), number);
            }
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if line.len() as u64 > limit {
            let text = format!("line {number}: longer than {limit} bytes; stopping this input");
            let _ = gather(&mut batch, bad(input, text), input);
            let end = send(&mut batch, input);
            return (end.unwrap_or(End::Broken), number);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            number -= 1; // blank lines are not items
            continue;
        }
        let item = match line_to_message(&line) {
            Ok(msg) => Item::Message(Origin::Input, msg),
            Err(text) => bad(input, format!("line {number}: {text}")),
        };
        if let Some(end) = gather(&mut batch, item, input) {
            return (end, number);
        }
    }
}

/// One JSON line to a message: a fluxMsg object, any other UTF-8 text as `raw`, any other
/// bytes as `raw` unchanged. A JSON message is held to the limits of a CBOR one.
pub fn line_to_message(line: &[u8]) -> Result<MsgBytes, String> {
    let msg = match std::str::from_utf8(line) {
        Ok(text) => json::from_line(text).map_err(|e| e.to_string())?,
        Err(_) => clock::new_raw_message(line.to_vec()),
    };
    MsgBytes::try_from_msg(&msg).map_err(|e| e.to_string())
}

/// The framing of one CBOR item at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole item of this many bytes.
    Complete(usize),
    /// The buffer ends inside the item; at least this many bytes are needed in all.
    Incomplete(usize),
    /// Not well-formed CBOR for a fluxMsg sequence (a reserved head, an indefinite length,
    /// a stray break), at this offset.
    Malformed(usize),
}

/// Frames the CBOR item that starts `bytes`, without decoding it: one pass over its heads,
/// skipping string contents, so the cost is linear in the item and no more. Indefinite
/// lengths, which fluxMsg never uses, count as malformed.
pub fn frame(bytes: &[u8]) -> Frame {
    let mut at = 0usize;
    let mut pending = 1u64; // items still to frame
    while pending > 0 {
        let Some(&initial) = bytes.get(at) else { return Frame::Incomplete(at + 1) };
        let (major, info) = (initial >> 5, initial & 0x1f);
        let width = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Frame::Malformed(at),
        };
        let head_end = at + 1 + width;
        let Some(argument_bytes) = bytes.get(at + 1..head_end) else { return Frame::Incomplete(head_end) };
        let argument = if width == 0 {
            u64::from(info)
        } else {
            argument_bytes.iter().fold(0u64, |n, b| n << 8 | u64::from(*b))
        };
        at = head_end;
        pending -= 1;
        match major {
            2 | 3 => {
                let end = usize::try_from(argument).ok().and_then(|n| at.checked_add(n));
                match end {
                    Some(end) if end <= bytes.len() => at = end,
                    Some(end) => return Frame::Incomplete(end),
                    None => return Frame::Incomplete(usize::MAX),
                }
            }
            4 => pending = pending.saturating_add(argument),
            5 => pending = pending.saturating_add(argument.saturating_mul(2)),
            6 => pending = pending.saturating_add(1),
            _ => {} // integers, simple values, floats
        }
    }
    Frame::Complete(at)
}

fn cbor_sequence(mut reader: impl Read, input: &Input, producer: &Producer) -> (End, u64) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut start = 0usize; // where the next item begins in `buffer`
    let mut needed = 1usize; // bytes after `start` before framing is worth trying again
    let mut number = 0u64;
    let limit = input.max_item_bytes;
    let mut batch = Batch::new(producer);
    loop {
        while buffer.len() - start >= needed {
            let rest = buffer.get(start..).unwrap_or_default();
            match frame(rest) {
                Frame::Complete(len) | Frame::Incomplete(len) if len > limit => {
                    let text = format!(
                        "CBOR item {} is larger than {limit} bytes; stopping this input after {number} item(s)",
                        number + 1
                    );
                    let _ = gather(&mut batch, bad(input, text), input);
                    return (send(&mut batch, input).unwrap_or(End::Broken), number);
                }
                Frame::Complete(len) => {
                    number += 1;
                    // Room for the first gear's hop, so that stamping it does not reallocate.
                    let mut bytes = Vec::with_capacity(len + MAX_HOP_BYTES);
                    bytes.extend_from_slice(rest.get(..len).unwrap_or_default());
                    let item = match MsgBytes::check(bytes) {
                        Ok(msg) => Item::Message(Origin::Input, msg),
                        Err(e) => bad(input, format!("CBOR item {number}: {e}; skipped")),
                    };
                    start += len;
                    needed = 1;
                    if let Some(end) = gather(&mut batch, item, input) {
                        return (end, number);
                    }
                }
                Frame::Incomplete(len) => {
                    // Frame again only once the buffer has doubled (or holds the whole
                    // item): each byte is framed a bounded number of times.
                    let have = buffer.len() - start;
                    needed = len.min(have.saturating_mul(2)).max(have + 1);
                }
                Frame::Malformed(offset) => {
                    let text = format!(
                        "CBOR item {} is not well-formed (byte {offset} of the item); stopping this input after {number} item(s)",
                        number + 1
                    );
                    let _ = gather(&mut batch, bad(input, text), input);
                    return (send(&mut batch, input).unwrap_or(End::Broken), number);
                }
            }
        }
        // The next item needs a read, which may block: push what is gathered first.
        if let Some(end) = send(&mut batch, input) {
            return (end, number);
        }
        if start > 0 {
            buffer.drain(..start); // at most one partial item is moved, once per read
            start = 0;
        }
        let old = buffer.len();
        buffer.resize(old + READ_CHUNK_BYTES, 0);
        let read = loop {
            match reader.read(buffer.get_mut(old..).unwrap_or_default()) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => {
                buffer.truncate(old);
                if !buffer.is_empty() {
                    let text = format!(
                        "CBOR item {} is cut off at the end of the input ({} bytes); {number} item(s) read",
                        number + 1,
                        buffer.len()
                    );
                    let _ = push(producer, bad(input, text), input);
                    return (End::Broken, number);
                }
                return (End::Closed, number);
            }
            Ok(n) => buffer.truncate(old + n),
            Err(e) => {
                buffer.truncate(old);
                return (read_failed(&e, buffer.len(), input, producer), number);
            }
        }
    }
}

/// What a `generate` gear makes.
#[derive(Debug, Clone)]
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
    /// Pushes the messages, `interval_ms` apart, for the plan of `generation`, until done
    /// or the rack stops (or replaces the plan).
    pub fn run(self, generation: u64, producer: &Producer) {
        let origin = Origin::Generated { generation, index: self.index };
        let payload = Template::new(&self.payload);
        let mut batch = Batch::new(producer);
        for n in 1..=self.count {
            if n > 1 && self.interval_ms > 0 {
                // Nothing waits in a batch during a pause.
                if batch.push() != Flow::Continue {
                    return;
                }
                thread::sleep(Duration::from_millis(self.interval_ms));
            }
            if batch.items.is_empty() && producer.queue().is_stopping() {
                return;
            }
            let mut msg = clock::new_raw_message(payload.make(n));
            msg.src_id = self.src;
            if batch.add(Item::Message(origin, MsgBytes::from_msg(&msg))) != Flow::Continue {
                return;
            }
        }
        let _ = batch.push();
    }
}

/// A generator's payload split once at its `{n}`s, so that a message's payload is made by
/// appending, without searching the text again (the search was 4 % of a generating rack's
/// CPU).
struct Template<'a> {
    pieces: Vec<&'a str>,
}

impl<'a> Template<'a> {
    fn new(payload: &'a str) -> Self {
        Self { pieces: payload.split("{n}").collect() }
    }

    /// The payload of message `n`: every `{n}` replaced by `n` in decimal.
    fn make(&self, n: u64) -> Vec<u8> {
        let number = n.to_string();
        let mut pieces = self.pieces.iter();
        let mut out = Vec::with_capacity(self.pieces.iter().map(|p| p.len() + number.len()).sum());
        out.extend_from_slice(pieces.next().map_or(&b""[..], |p| p.as_bytes()));
        for piece in pieces {
            out.extend_from_slice(number.as_bytes());
            out.extend_from_slice(piece.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use fluxrig_core::FluxMsg;

    use super::*;

    #[test]
    fn a_template_replaces_every_n_as_replace_does() {
        for text in ["", "{n}", "plain", "a{n}b", "{n}{n}", "x{n}y{n}z{n}", "{{n}}", "{n", "n}"] {
            for n in [1, 42, u64::MAX] {
                let want = text.replace("{n}", &n.to_string());
                assert_eq!(Template::new(text).make(n), want.as_bytes(), "{text:?} {n}");
            }
        }
    }

    #[test]
    fn frames_whole_items_and_asks_for_what_is_missing() {
        let msg = MsgBytes::from_msg(&FluxMsg::with_raw([7; 16], 1, b"hello".to_vec()));
        let bytes = msg.as_bytes();
        assert_eq!(frame(bytes), Frame::Complete(bytes.len()));
        let mut two = bytes.to_vec();
        two.extend_from_slice(bytes);
        assert_eq!(frame(&two), Frame::Complete(bytes.len()));
        for cut in 0..bytes.len() {
            assert!(matches!(frame(&bytes[..cut]), Frame::Incomplete(n) if n > cut && n <= bytes.len()));
        }
        assert_eq!(frame(&[0x5a, 0, 0x10, 0, 0]), Frame::Incomplete(5 + 0x10_0000));
        assert_eq!(frame(&[0x9f]), Frame::Malformed(0), "indefinite array");
        assert_eq!(frame(&[0xff]), Frame::Malformed(0), "stray break");
        assert_eq!(frame(&[0x82, 0x01, 0x1c]), Frame::Malformed(2), "reserved head");
        assert_eq!(frame(&[0xc1, 0x01]), Frame::Complete(2), "a tag and its item");
        // A huge declared count costs one step per byte present, no more.
        assert_eq!(frame(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]), Frame::Incomplete(11));
    }

    #[test]
    fn a_non_utf8_line_is_carried_as_its_bytes() {
        let line = [b'a', 0xff, 0xfe, b'z'];
        let msg = line_to_message(&line).unwrap().to_msg();
        assert_eq!(msg.raw.as_deref(), Some(&line[..]));
    }
}
