//! The rack's input queue: the one place where messages wait, bounded in messages and in
//! bytes, between the threads that read (standard input, sockets, generators) and the run
//! loop that routes.
//!
//! Contract:
//! - [`Queue::push`] waits while the queue is full: a producer that is blocked here stops
//!   reading, so its writer (a pipe, a socket client, a generator) waits in turn. That is
//!   the backpressure; nothing is dropped and nothing is buffered past the limits, except
//!   that one message is always admitted into an empty queue (so a message of the largest
//!   size never waits forever).
//! - Once a message is pushed it is the run loop's: [`Queue::stop`] makes producers stop
//!   reading (their next push says [`Flow::Stop`]) but every message already pushed, and
//!   every message a producer already holds when it pushes, is still popped. Only a push
//!   after the run loop has [`Queue::finish`]ed is refused, and it says so.
//! - A message is counted as entered when it is pushed; [`Queue::entered`] is what the
//!   second signal compares with the messages the rack has finished.
//! - A reload ([`Queue::swap`]) is queued in order with the messages: every message pushed
//!   before it runs on the old plan, every one after on the new. Generators of the old
//!   plan are refused from then on ([`Flow::Stop`]) and quit.
//! - [`Queue::pop`] returns `None` when nothing is waiting and no producer can add more:
//!   every producer has gone, or the queue is stopping and no producer is inside a push or
//!   holds bytes it has read but not pushed yet ([`Producer::set_holding`]; a producer
//!   blocked in a read holds nothing). An idle queue waits on a condition variable: no
//!   polling.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use fluxrig_core::MsgBytes;

use crate::run::Rig;

/// Default most messages waiting in the input queue.
///
/// Reason: enough to keep the gears busy while producers are scheduled; at 64-byte
/// messages it is 64 KiB.
pub const DEFAULT_QUEUE_MESSAGES: usize = 1024;

/// Default most bytes (encoded fluxMsgs) waiting in the input queue: 8 MiB.
///
/// Reason: with one message of the largest size always admitted into an empty queue, the
/// queue holds at most this plus one [`fluxrig_core::limits::MAX_ENCODED_MESSAGE_BYTES`]
/// (4 MiB): 12 MiB on a gateway with 64 MiB or more.
pub const DEFAULT_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Most items the run loop takes from the queue at once ([`Queue::take`]): 64.
///
/// Reason: one lock per 64 messages instead of one per message, while a producer can
/// still fill the rest of the queue as the loop works; the items taken keep counting
/// against the queue's limits, so this adds nothing to what may wait.
pub const MAX_TAKE_ITEMS: usize = 64;

/// How much may wait in a [`Queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages waiting (at least 1).
    pub messages: usize,
    /// Most bytes waiting; a message is always admitted into an empty queue.
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { messages: DEFAULT_QUEUE_MESSAGES, bytes: DEFAULT_QUEUE_BYTES }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An input (standard input, a socket): it enters at the rack's unwired gear inputs.
    Input,
    /// A bus input ([`crate::bus::Link`]): it enters along the wires of source slot `slot`.
    Bus {
        /// The bus input's slot in the running plan (bus wires do not change on reload).
        slot: usize,
    },
    /// The `generate` gear at `index` of the plan of `generation`.
    Generated {
        /// The plan generation ([`Queue::generation`]) the generator belongs to.
        generation: u64,
        /// The gear's index in that plan.
        index: usize,
    },
}

/// What the run loop takes from the queue.
pub enum Item {
    /// A checked message and where it came from.
    Message(Origin, MsgBytes),
    /// A line or item that is not a message, with the reason (already one line).
    BadInput(String),
    /// A new rack, its plan admitted and compiled and its gears started, to switch to
    /// from here on.
    Swap(Box<Rig>),
}

impl Item {
    /// The bytes it holds while it waits, for the items the limits count: messages and
    /// bad-input reports (a flood of bad lines waits like messages). A swap is not counted.
    fn size(&self) -> Option<usize> {
        match self {
            Self::Message(_, msg) => Some(msg.as_bytes().len()),
            Self::BadInput(text) => Some(text.len()),
            Self::Swap(_) => None,
        }
    }
}

/// Items the run loop took from the queue with [`Queue::take`]: they still count against
/// the queue's limits until the next take (or [`Taken::release`]).
#[derive(Default)]
pub struct Taken {
    items: VecDeque<Item>,
    /// Messages among `items` when taken, and their bytes.
    messages: usize,
    bytes: usize,
}

impl Taken {
    /// Returns the next item taken, in queue order.
    pub fn next_item(&mut self) -> Option<Item> {
        self.items.pop_front()
    }

    /// Gives the room of the items taken back to `queue` (they are finished).
    pub fn release(&mut self, queue: &Queue) {
        if self.messages > 0 {
            let mut state = queue.lock();
            state.messages -= self.messages;
            state.bytes -= self.bytes;
            let wake = queue.wake_writers(&state);
            drop(state);
            if wake {
                queue.writable.notify_all();
            }
        }
        self.messages = 0;
        self.bytes = 0;
    }
}

/// What a producer does after a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on reading.
    Continue,
    /// The message was taken; stop reading (the rack is stopping, or the producer's plan
    /// was replaced).
    Stop,
    /// The message was NOT taken: the rack has finished. The producer logs and quits.
    Refused,
}

struct State {
    items: VecDeque<Item>,
    /// Messages in `items`.
    messages: usize,
    /// Bytes of the messages in `items`.
    bytes: usize,
    producers: usize,
    /// Producers inside [`Queue::push`] (waiting for room or about to push).
    pushing: usize,
    /// Producers holding bytes they have read and not pushed yet.
    holding: usize,
    /// Run loops waiting in [`Queue::pop`] for an item.
    readers_waiting: usize,
    /// Producers waiting in a push for room.
    writers_waiting: usize,
    stopping: bool,
    finished: bool,
    generation: u64,
    entered: u64,
}

/// The bounded input queue. See the module docs.
pub struct Queue {
    limits: QueueLimits,
    state: Mutex<State>,
    readable: Condvar,
    writable: Condvar,
}

/// A producer's registration; while one exists, [`Queue::pop`] waits for more.
pub struct Producer {
    queue: Arc<Queue>,
    holding: std::sync::atomic::AtomicBool,
}

impl Drop for Producer {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.producers -= 1;
        if self.holding.load(std::sync::atomic::Ordering::Relaxed) {
            state.holding -= 1;
        }
        drop(state);
        self.queue.readable.notify_all();
    }
}

impl Producer {
    /// Pushes an item, waiting for room if it is a message; see [`Queue`].
    pub fn push(&self, item: Item) -> Flow {
        self.queue.push(item)
    }

    /// Pushes a batch of items in order, under one lock and with at most one wake-up of
    /// the run loop (one pair of system calls per batch instead of per message); waits for
    /// room before each message as [`Producer::push`] does. Takes the items out of
    /// `items`; on [`Flow::Refused`], those not taken are left there.
    pub fn push_all(&self, items: &mut VecDeque<Item>) -> Flow {
        self.queue.push_all(items)
    }

    /// Returns the queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Says whether this producer holds bytes it has read and not pushed yet: a stopping
    /// queue waits for those to be pushed before it ends.
    pub fn set_holding(&self, holding: bool) {
        if self.holding.swap(holding, std::sync::atomic::Ordering::Relaxed) == holding {
            return;
        }
        let mut state = self.queue.lock();
        if holding {
            state.holding += 1;
        } else {
            state.holding -= 1;
        }
        drop(state);
        if !holding {
            self.queue.readable.notify_all();
        }
    }
}

impl Queue {
    /// An empty queue with `limits` (a zero message limit is taken as 1).
    pub fn new(limits: QueueLimits) -> Self {
        let limits = QueueLimits { messages: limits.messages.max(1), bytes: limits.bytes };
        Self {
            limits,
            state: Mutex::new(State {
                items: VecDeque::new(),
                messages: 0,
                bytes: 0,
                producers: 0,
                pushing: 0,
                holding: 0,
                readers_waiting: 0,
                writers_waiting: 0,
                stopping: false,
                finished: false,
                generation: 0,
                entered: 0,
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left consistent counters (every
        // update is a single statement); go on with them.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether producers waiting for room are woken now: once the queue is half empty (in
    /// messages and in bytes) or empty, not at every message taken, so that a full queue
    /// costs one wake-up per half queue rather than one per batch. An empty queue always
    /// wakes them: a message of any size is admitted into it.
    fn wake_writers(&self, state: &State) -> bool {
        state.writers_waiting > 0
            && (state.messages == 0
                || (state.messages <= self.limits.messages / 2 && state.bytes <= self.limits.bytes / 2))
    }

    /// Registers a producer: [`Queue::pop`] waits for it until it is dropped.
    pub fn producer(self: &Arc<Self>) -> Producer {
        self.lock().producers += 1;
        Producer { queue: Arc::clone(self), holding: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Returns the current plan generation (0 for the first plan).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Returns how many messages have been pushed so far.
    pub fn entered(&self) -> u64 {
        self.lock().entered
    }

    /// Returns the messages and bytes waiting now.
    pub fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.messages, state.bytes)
    }

    /// Returns the limits.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Whether the rack is stopping (producers should not start another read).
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    fn push(&self, item: Item) -> Flow {
        self.push_all(&mut VecDeque::from([item]))
    }

    /// Pushes `items` in order under one lock, waiting for room before each message as
    /// [`Producer::push`] does; takes them out of `items`. On [`Flow::Refused`] the items
    /// not taken are left in `items`; on [`Flow::Stop`] for a replaced plan's generator,
    /// `items` is cleared (nothing generated is lost: it never entered).
    fn push_all(&self, items: &mut VecDeque<Item>) -> Flow {
        let mut state = self.lock();
        let mut flow = if state.stopping { Flow::Stop } else { Flow::Continue };
        while let Some(item) = items.pop_front() {
            if state.finished {
                items.push_front(item);
                flow = Flow::Refused;
                break;
            }
            if let Item::Message(Origin::Generated { generation, .. }, _) = &item {
                if *generation != state.generation {
                    items.clear(); // its plan was replaced: nothing generated, nothing lost
                    flow = Flow::Stop;
                    break;
                }
            }
            if let Some(size) = item.size() {
                state.pushing += 1;
                while !state.finished
                    && state.messages > 0
                    && (state.messages >= self.limits.messages || state.bytes + size > self.limits.bytes)
                {
                    // What this batch pushed so far must reach a waiting run loop first.
                    if state.readers_waiting > 0 {
                        self.readable.notify_one();
                    }
                    state.writers_waiting += 1;
                    state = self.writable.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
                    state.writers_waiting -= 1;
                }
                state.pushing -= 1;
                if state.finished {
                    items.push_front(item);
                    flow = Flow::Refused;
                    break;
                }
                state.messages += 1;
                state.bytes += size;
                state.entered += 1;
            }
            state.items.push_back(item);
            if state.stopping {
                flow = Flow::Stop;
            }
        }
        // A run loop waiting for items is woken; one that is busy is not (std's condition
        // variable makes a system call for every notify, waiter or not).
        let wake = state.readers_waiting > 0;
        drop(state);
        if wake {
            self.readable.notify_one();
        }
        flow
    }

    /// Queues a switch to `rig` after everything pushed so far, and starts its
    /// generation: generators of the old plan are refused from now on.
    pub fn swap(&self, rig: Rig) {
        let mut state = self.lock();
        state.generation += 1;
        state.items.push_back(Item::Swap(Box::new(rig)));
        drop(state);
        self.readable.notify_one();
    }

    /// Stops reading: producers are told to stop at their next push, and [`Queue::pop`]
    /// ends once what was pushed is taken.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.readable.notify_all();
    }

    /// Takes the next item, waiting while none is waiting and a producer can add one;
    /// `None` when the input has ended (see the module docs). `wait` is false to take
    /// only what is waiting now (`None` if nothing is).
    pub fn pop(&self, wait: bool) -> Option<Item> {
        let mut taken = Taken::default();
        self.take(wait, 1, &mut taken);
        let item = taken.items.pop_front();
        taken.release(self);
        item
    }

    /// Takes up to `most` items (at least 1) into `taken`, which must be empty, waiting
    /// while none is waiting and a producer can add one; returns false when the input
    /// has ended (see the module docs), or with `wait` false when nothing is waiting.
    ///
    /// The items taken by the previous call are finished now: their room in the queue is
    /// given back here, not when they were taken, so the messages the run loop holds
    /// count against the queue's limits (one lock and no wake-up per message).
    pub fn take(&self, wait: bool, most: usize, taken: &mut Taken) -> bool {
        let mut state = self.lock();
        state.messages -= taken.messages;
        state.bytes -= taken.bytes;
        let freed = taken.messages > 0;
        taken.messages = 0;
        taken.bytes = 0;
        let got = loop {
            if !state.items.is_empty() {
                while taken.items.len() < most.max(1) {
                    let Some(item) = state.items.pop_front() else { break };
                    if let Some(size) = item.size() {
                        taken.messages += 1;
                        taken.bytes += size;
                    }
                    taken.items.push_back(item);
                }
                break true;
            }
            let ended = state.producers == 0 || (state.stopping && state.pushing == 0 && state.holding == 0);
            if !wait || ended {
                break false;
            }
            if freed && self.wake_writers(&state) {
                self.writable.notify_all();
            }
            state.readers_waiting += 1;
            state = self.readable.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            state.readers_waiting -= 1;
        };
        let wake = freed && self.wake_writers(&state);
        drop(state);
        if wake {
            self.writable.notify_all();
        }
        got
    }

    /// Marks the end: every later push is refused, and producers waiting for room are
    /// woken to be refused. Returns the messages left waiting (0 after a drain).
    pub fn finish(&self) -> usize {
        let mut state = self.lock();
        state.finished = true;
        let left = state.messages;
        drop(state);
        self.writable.notify_all();
        left
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use fluxrig_core::FluxMsg;

    use crate::plan::Plan;

    use super::*;

    fn msg(n: usize) -> MsgBytes {
        MsgBytes::from_msg(&FluxMsg::with_raw([n as u8; 16], 0, vec![0; n]))
    }

    fn size(n: usize) -> usize {
        msg(n).as_bytes().len()
    }

    #[test]
    fn a_full_queue_blocks_the_producer_until_the_loop_takes_one() {
        let queue = Arc::new(Queue::new(QueueLimits { messages: 2, bytes: 1 << 20 }));
        let q = Arc::clone(&queue);
        let producer = thread::spawn(move || {
            let p = q.producer();
            for n in 0..3 {
                assert_eq!(p.push(Item::Message(Origin::Input, msg(n))), Flow::Continue);
            }
        });
        thread::sleep(Duration::from_millis(100));
        assert_eq!(queue.depth().0, 2, "the third push must wait");
        assert!(!producer.is_finished());
        assert!(matches!(queue.pop(true), Some(Item::Message(..))));
        producer.join().unwrap();
        assert_eq!(queue.depth().0, 2);
        assert_eq!(queue.entered(), 3);
    }

    #[test]
    fn the_byte_limit_blocks_but_an_empty_queue_takes_any_message() {
        let queue = Arc::new(Queue::new(QueueLimits { messages: 100, bytes: size(10) + 1 }));
        let p = queue.producer();
        // Larger than the whole byte limit, but the queue is empty: admitted.
        assert_eq!(p.push(Item::Message(Origin::Input, msg(1000))), Flow::Continue);
        assert_eq!(queue.depth(), (1, size(1000)));
        queue.pop(false).unwrap();
        assert_eq!(p.push(Item::Message(Origin::Input, msg(10))), Flow::Continue);
        // One more byte than fits: the producer would wait; finishing refuses it.
        let waiting = thread::scope(|s| {
            let h = s.spawn(|| p.push(Item::Message(Origin::Input, msg(1))));
            thread::sleep(Duration::from_millis(100));
            assert!(!h.is_finished());
            queue.finish();
            h.join().unwrap()
        });
        assert_eq!(waiting, Flow::Refused);
    }

    #[test]
    fn stop_lets_what_was_pushed_through_and_ends_without_waiting_for_idle_producers() {
        let queue = Arc::new(Queue::new(QueueLimits::default()));
        let p = queue.producer(); // an idle producer, blocked in a read elsewhere
        assert_eq!(p.push(Item::Message(Origin::Input, msg(1))), Flow::Continue);
        queue.stop();
        assert_eq!(p.push(Item::Message(Origin::Input, msg(2))), Flow::Stop, "taken, but stop reading");
        assert!(queue.pop(true).is_some());
        assert!(queue.pop(true).is_some());
        assert!(queue.pop(true).is_none(), "stopping and nobody pushing: the end");
        assert_eq!(queue.finish(), 0);
        assert_eq!(p.push(Item::Message(Origin::Input, msg(3))), Flow::Refused);
        assert_eq!(queue.entered(), 2);
    }

    #[test]
    fn a_stopping_queue_waits_for_a_producer_holding_read_bytes() {
        let queue = Arc::new(Queue::new(QueueLimits::default()));
        let p = queue.producer();
        p.set_holding(true); // read a chunk, not pushed yet
        queue.stop();
        thread::scope(|s| {
            let end = s.spawn(|| queue.pop(true).is_none());
            thread::sleep(Duration::from_millis(100));
            assert!(!end.is_finished(), "must wait for the held bytes");
            assert_eq!(p.push(Item::Message(Origin::Input, msg(1))), Flow::Stop);
            p.set_holding(false); // its next read is refused: nothing more to come
            assert!(!end.join().unwrap(), "the held message comes first");
        });
        assert!(queue.pop(true).is_none());
    }

    #[test]
    fn pop_ends_when_every_producer_has_gone() {
        let queue = Arc::new(Queue::new(QueueLimits::default()));
        let p = queue.producer();
        p.push(Item::BadInput("x".into()));
        drop(p);
        assert!(matches!(queue.pop(true), Some(Item::BadInput(_))));
        assert!(queue.pop(true).is_none());
    }

    #[test]
    fn a_swap_refuses_the_old_generators_and_keeps_order() {
        let queue = Arc::new(Queue::new(QueueLimits::default()));
        let p = queue.producer();
        let old = Origin::Generated { generation: 0, index: 0 };
        assert_eq!(p.push(Item::Message(old, msg(1))), Flow::Continue);
        let plan = Plan {
            name: "next".into(),
            version: String::new(),
            engine: fluxrig_core::GearEngine::default(),
            gears: Vec::new(),
            wires: Vec::new(),
            worst_case_bytes: 0,
            bus_outputs: Vec::new(),
        };
        queue.swap(crate::run::Rig::start(plan).unwrap());
        assert_eq!(queue.generation(), 1);
        assert_eq!(p.push(Item::Message(old, msg(2))), Flow::Stop, "the old plan's generator quits");
        let new = Origin::Generated { generation: 1, index: 0 };
        assert_eq!(p.push(Item::Message(new, msg(3))), Flow::Continue);
        assert!(matches!(queue.pop(false), Some(Item::Message(o, _)) if o == old));
        assert!(matches!(queue.pop(false), Some(Item::Swap(_))));
        assert!(matches!(queue.pop(false), Some(Item::Message(o, _)) if o == new));
        assert_eq!(queue.entered(), 2);
    }
}
