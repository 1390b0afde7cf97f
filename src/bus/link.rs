//! Messages over the bus (feature `nats`): a rack's wires to and from other racks, on
//! JetStream with fluxrig's layout (`spec/fleet-nats.md` §1.3), bounded and lossless.
//!
//! Contract:
//! - **Subjects.** A gear's `out` wired to another rack is published on
//!   `flux.msg.<this rack>.<gear>.out`; a wire from `rack.gear.port` consumes
//!   `flux.msg.<rack>.<gear>.<port>`, in the stream [`STREAM`] (created with fluxrig's
//!   settings if it does not exist).
//! - **Stamp, as fluxrig's `publishPort` (C5).** An output leaving for the bus gets an id
//!   (a fresh UUID v7) if the gear left it nil, and its departure hop `{g: gear id, p:
//!   port id of <gear>.out, t: now}` appended (ids as the rack's own hops: `run::id_of`).
//!   The arrival hop is the router's (`fluxrig_core::rack`): a gear fed by the bus sees
//!   its own arrival hop, and no hop is stamped twice.
//! - **Validate, as fluxrig's `FluxMsg.Validate()` (C2).** Its limits have one home, the
//!   core's check of every message ([`MsgBytes::check`]: at most
//!   [`MAX_HOPS`](fluxrig_core::limits::MAX_HOPS) hops, a payload of at most
//!   [`MAX_PAYLOAD_BYTES`](fluxrig_core::limits::MAX_PAYLOAD_BYTES), UTF-8 text). A gear's
//!   output passed it; the departure hop is the one thing that can break it (a 65th hop),
//!   and such an output is refused with one line on the rack's thread
//!   ([`Link::stamp_output`]), counted as a failed message (exit status 4), and its bus
//!   input nak'd (Go's `Publish` returns the error, so the handler fails).
//! - **Publish.** Body: the stamped message's canonical CBOR (meta, `traceparent`
//!   included, passes through). Header `Nats-Msg-Id: <id>-<hops after stamping>-<subject>`
//!   (C4), so JetStream drops a duplicate of a publish retried after a lost PubAck or a
//!   redelivered input. A publish is retried, same id, until its PubAck arrives.
//! - **Consume.** One durable pull consumer per subject (`fluxedge-<rack>-<subject parts>`,
//!   explicit ack, [`MAX_DELIVER`] deliveries, [`MAX_ACK_PENDING`] pending, `--nats-ack-wait-secs`):
//!   a rack restarted after a crash gets what it had not acknowledged (DEPARTS from
//!   fluxrig's ephemeral `DeliverNew` consumers, which lose them).
//! - **Bounded.** Credits equal to the rack's queue limit (at most [`MAX_ACK_PENDING`]):
//!   a message is fetched only with a free credit, and its credit comes back only when it
//!   is acknowledged, so the rack never holds more bus messages than its queue takes.
//! - **Acknowledged after success.** A bus message is acked only after every gear it went
//!   through succeeded and every output it made was published and acknowledged by
//!   JetStream; a gear fault (or a hop or queue limit) naks it (redelivered at once, up to
//!   [`MAX_DELIVER`] deliveries); bytes that are not a valid fluxMsg (undecodable, or
//!   failing the checks above) are terminated (`+TERM`) with a log line, as fluxrig does.
//! - **Sync probes** (flags bit 0) on a consumed subject are acked and never delivered to
//!   a gear. Convergence as fluxrig's `waitForConvergence` (§1.4): at start the rack
//!   publishes a probe on each subject it consumes, again every [`PROBE_INTERVAL_MILLIS`]
//!   until a consumer of its own sees one (logged: the subject is live), and
//!   [`Link::start`] returns only then, before any gear runs; after
//!   [`CONVERGENCE_TIMEOUT_SECS`] the start fails, naming the subjects still silent. The
//!   probes are watched by an ephemeral `DeliverNew` consumer per subject (fluxrig's
//!   kind, deleted after), not the durable one: a backlog left by a previous run (which
//!   the durable consumer delivers first, and the rack cannot take before it runs) must
//!   not hide them. A probe from any other input is data.
//! - **Stop.** Fetching stops with the rack's inputs; [`Link::close`] waits (at most
//!   [`DRAIN_SECS`]) for every publish and acknowledgement in flight.
//!
//! Pairing: bus messages enter the rack's FIFO queue from one pushing thread, so the run
//! loop finishes them in the order they were fetched; [`Link::finish`] pairs each with the
//! oldest one not finished yet.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use fluxrig_core::message::{Hop, MessageError, Uuid, FLAG_SYNC_PROBE, NIL_UUID};
use fluxrig_core::MsgBytes;
use futures_util::StreamExt;

use super::{BusOptions, Finished, CONNECT_TIMEOUT_SECS};
use crate::error::{Error, Result};
use crate::logger;
use crate::queue::{Flow, Item, Origin, Queue};

/// The stream of data-plane messages: fluxrig's `snake.stream_name`.
pub const STREAM: &str = "flux-msg";
/// The subjects of [`STREAM`] when this rack creates it, as fluxrig's Mixer does.
pub const STREAM_SUBJECTS: [&str; 4] = ["flux.msg.>", "flux.agent.>", "flux.rack.>", "flux.ctrl.>"];
/// Deliveries of one message before JetStream gives up on it: fluxrig's
/// `maxGuaranteedRedeliveries` (5 attempts in all).
pub const MAX_DELIVER: i64 = 5;
/// Most messages a consumer has delivered and not seen acknowledged: fluxrig's value.
pub const MAX_ACK_PENDING: usize = 10_000;
/// Most messages asked for in one pull.
pub const MAX_FETCH_BATCH: usize = 256;
/// How long one pull waits for messages before it is asked again: 1 s (so that a stop
/// is seen within a second).
pub const FETCH_EXPIRES_MILLIS: u64 = 1000;
/// Longest wait, when the rack stops, for publishes and acknowledgements in flight.
pub const DRAIN_SECS: u64 = 30;
/// Room kept for a publish's headers under the server's `max_payload` (`Nats-Msg-Id`: a
/// UUID, a count and a subject, under 200 bytes).
pub const MAX_HEADER_BYTES: usize = 1024;
/// Tries to connect before a rack with bus wires gives up: fluxrig's
/// `defaultInitialRetryAttempts`.
pub const CONNECT_ATTEMPTS: u32 = 10;
/// First pause between two tries, growing by half each time (fluxrig's 500 ms × 1.5: about
/// a minute in all).
pub const CONNECT_RETRY_MILLIS: u64 = 500;
/// Pause between two tries of a publish whose PubAck did not come.
pub const PUBLISH_RETRY_MILLIS: u64 = 200;
/// Pause between two rounds of sync probes on the subjects not seen live yet: fluxrig's
/// 500 ms ticker.
pub const PROBE_INTERVAL_MILLIS: u64 = 500;
/// Longest wait for every consumed subject to be live before the start fails: 5 s,
/// fluxrig's `rack.convergence_timeout` default.
pub const CONVERGENCE_TIMEOUT_SECS: u64 = 5;

enum Work {
    Finished(Finished),
    Close,
}

/// Counters, logged when the link closes.
#[derive(Default)]
struct Counts {
    published: AtomicUsize,
    acked: AtomicUsize,
    naked: AtomicUsize,
    terminated: AtomicUsize,
    probes: AtomicUsize,
    unpublished: AtomicUsize,
    refused: AtomicUsize,
}

/// Where a gear's `out` goes on the bus, and the ids of its departure hop.
#[derive(Clone)]
struct Output {
    subject: String,
    gear: Uuid,
    port: Uuid,
}

/// A rack's wires over the bus. See the module docs.
pub struct Link {
    rack: String,
    /// (slot, subject) of each bus input.
    inputs: Vec<(usize, String)>,
    /// Each bus output, by slot.
    outputs: HashMap<usize, Output>,
    options: BusOptions,
    ack_wait: Duration,
    work: Mutex<Option<tokio::sync::mpsc::Sender<Work>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counts: Arc<Counts>,
    /// The server's `max_payload` (from its INFO), once connected.
    max_payload: AtomicUsize,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("rack", &self.rack).field("inputs", &self.inputs).finish()
    }
}

impl Link {
    /// A link for rack `rack` with these bus inputs (slot, subject) and outputs (slot,
    /// gear name); nothing is connected until [`Link::start`].
    pub fn new(
        rack: &str,
        options: BusOptions,
        inputs: Vec<(usize, String)>,
        outputs: Vec<(usize, String)>,
        ack_wait: Duration,
    ) -> Self {
        let outputs = outputs
            .into_iter()
            .map(|(slot, gear)| {
                let output = Output {
                    subject: super::subject(rack, &gear, "out"),
                    gear: crate::run::id_of(&gear),
                    port: crate::run::id_of(&format!("{gear}.out")),
                };
                (slot, output)
            })
            .collect();
        Self {
            rack: rack.to_string(),
            inputs,
            outputs,
            options,
            ack_wait,
            work: Mutex::new(None),
            thread: Mutex::new(None),
            counts: Arc::default(),
            max_payload: AtomicUsize::new(usize::MAX),
        }
    }

    /// The largest message the server takes (its `max_payload`, 1 MiB by default, less
    /// [`MAX_HEADER_BYTES`]).
    pub fn max_payload(&self) -> usize {
        self.max_payload.load(Ordering::Relaxed)
    }

    /// Whether slot `slot`'s `out` goes to the bus.
    pub fn publishes(&self, slot: usize) -> bool {
        self.outputs.contains_key(&slot)
    }

    /// Stamps slot `slot`'s output for the bus as fluxrig's `publishPort` does (an id if it
    /// has none, the departure hop; see [`stamp`]), on the rack's thread, so that a
    /// refusal counts as the failure of the message it came from.
    ///
    /// # Errors
    /// One line naming the subject, the output and what fluxrig's `Validate` refuses
    /// (the departure hop would pass the hop limit); counted as refused.
    pub fn stamp_output(
        &self,
        slot: usize,
        msg: MsgBytes,
        now: i64,
    ) -> std::result::Result<MsgBytes, String> {
        let Some(output) = self.outputs.get(&slot) else {
            return Ok(msg);
        };
        let id = msg.id();
        stamp(msg, output.gear, output.port, now).map_err(|e| {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            format!(
                "{}: output {} not published: {e} (fluxrig's Validate refuses it)",
                output.subject,
                crate::json::uuid_string(&id)
            )
        })
    }

    /// Connects, makes sure of the stream and the consumers, and starts fetching into
    /// `queue` (bounded by its message limit) on a thread of its own. Returns the inputs'
    /// names for the rack's start line.
    ///
    /// # Errors
    /// The server cannot be reached, or refuses the stream or a consumer.
    pub fn start(&self, queue: &Arc<Queue>) -> Result<Vec<String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the NATS client's runtime: {e}")))?;
        let client = runtime.block_on(connect_with_retries(&self.options))?;
        let max_payload = client.server_info().max_payload.saturating_sub(MAX_HEADER_BYTES);
        self.max_payload.store(max_payload, Ordering::Relaxed);
        // The JetStream context spawns its acker task on the runtime.
        let js = {
            let _inside = runtime.enter();
            jetstream::new(client)
        };
        let url = self.options.url.clone();
        let fail = |what: String, e: &dyn std::error::Error| {
            Error::invalid(format!("NATS server {url}: {what}: {}", super::client::one_line(e)))
        };
        let timeout = Duration::from_secs(CONNECT_TIMEOUT_SECS);
        let consumers = runtime.block_on(async {
            let config = stream::Config {
                name: STREAM.to_string(),
                subjects: STREAM_SUBJECTS.iter().map(|s| s.to_string()).collect(),
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                num_replicas: 1,
                max_age: Duration::from_secs(24 * 3600),
                max_bytes: 1024 * 1024 * 1024,
                ..stream::Config::default()
            };
            let stream = tokio::time::timeout(timeout, js.get_or_create_stream(config))
                .await
                .map_err(|_| Error::invalid(format!("NATS server {url}: stream {STREAM}: no answer")))?
                .map_err(|e| fail(format!("stream {STREAM}"), &e))?;
            let mut consumers = Vec::new();
            let mut watchers = Vec::new();
            for (slot, subject) in &self.inputs {
                let config = consumer::pull::Config {
                    filter_subject: subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..consumer::pull::Config::default()
                };
                let watcher: consumer::PullConsumer =
                    tokio::time::timeout(timeout, stream.create_consumer(config))
                        .await
                        .map_err(|_| {
                            Error::invalid(format!(
                                "NATS server {url}: probe consumer on {subject}: no answer"
                            ))
                        })?
                        .map_err(|e| fail(format!("probe consumer on {subject}"), &e))?;
                watchers.push((subject.clone(), watcher));
                let durable = format!(
                    "fluxedge-{}-{}",
                    self.rack,
                    subject.trim_start_matches("flux.msg.").replace('.', "-")
                );
                let config = consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subject.clone(),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: MAX_DELIVER,
                    max_ack_pending: MAX_ACK_PENDING as i64,
                    ..consumer::pull::Config::default()
                };
                let consumer: consumer::PullConsumer =
                    tokio::time::timeout(timeout, stream.get_or_create_consumer(&durable, config))
                        .await
                        .map_err(|_| {
                            Error::invalid(format!("NATS server {url}: consumer {durable}: no answer"))
                        })?
                        .map_err(|e| fail(format!("consumer {durable} on {subject}"), &e))?;
                consumers.push((*slot, subject.clone(), consumer));
            }
            Ok::<_, Error>((consumers, watchers, stream))
        })?;
        let (consumers, watchers, stream) = consumers;
        let names = self.inputs.iter().map(|(_, s)| format!("bus {s}")).collect();
        let credits = queue.limits().messages.clamp(1, MAX_ACK_PENDING);
        let (work_tx, work_rx) = tokio::sync::mpsc::channel(credits.max(64));
        *self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(work_tx);
        // Registered now, before the run loop first looks at the queue: a rack fed only by
        // the bus serves until it is stopped.
        let producer = (!consumers.is_empty()).then(|| queue.producer());
        let (converged_tx, converged) = std::sync::mpsc::channel();
        let shared = Shared {
            js,
            queue: Arc::clone(queue),
            credits: Arc::new(tokio::sync::Semaphore::new(credits)),
            pending: Arc::new(Mutex::new(VecDeque::new())),
            outputs: self.outputs.clone(),
            counts: Arc::clone(&self.counts),
            closing: Arc::new(AtomicBool::new(false)),
        };
        let thread = std::thread::Builder::new()
            .name("bus".into())
            .spawn(move || {
                let convergence = Convergence { stream, watchers, answer: converged_tx };
                runtime.block_on(drive(shared, consumers, producer, work_rx, convergence))
            })
            .map_err(|e| Error::invalid(format!("cannot start the bus thread: {e}")))?;
        *self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        // The convergence task answers within CONVERGENCE_TIMEOUT_SECS (each probe publish
        // is bounded by the interval); the margin covers a bus thread that stopped early.
        let answer = converged.recv_timeout(Duration::from_secs(CONVERGENCE_TIMEOUT_SECS + 5));
        match answer {
            Ok(Ok(())) => Ok(names),
            answer => {
                let silent = match answer {
                    Ok(Err(silent)) => silent.join(", "),
                    _ => self.inputs.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join(", "),
                };
                self.close();
                Err(Error::invalid(format!(
                    "NATS server {}: timeout waiting for subject convergence after {CONVERGENCE_TIMEOUT_SECS} s: no sync probe came back on {silent} (can this rack publish there, and does a stream take it?)",
                    self.options.url
                )))
            }
        }
    }

    /// Hands the bus what became of one message (its ack and outputs); waits while the
    /// bus has [`Link::start`]'s credits of work queued (backpressure on the run loop).
    pub fn finish(&self, finished: Finished) {
        let sender = self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match sender {
            Some(sender) => {
                if sender.blocking_send(Work::Finished(finished)).is_err() {
                    logger::error(
                        "bus",
                        "the bus thread has stopped; an output or acknowledgement is not sent",
                    );
                }
            }
            None => logger::error("bus", "the bus is not started; an output or acknowledgement is not sent"),
        }
    }

    /// Stops fetching, waits (at most [`DRAIN_SECS`]) for every publish and
    /// acknowledgement in flight, and logs the counts.
    pub fn close(&self) {
        let sender = self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(sender) = sender {
            let _ = sender.blocking_send(Work::Close);
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = thread.join();
        }
        let c = &self.counts;
        let n = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        logger::info(
            "bus",
            &format!(
                "{} published, {} acked, {} nak'd, {} terminated (not valid fluxMsgs), {} sync probe(s) seen, {} output(s) not published, {} refused (fluxMsg limits)",
                n(&c.published),
                n(&c.acked),
                n(&c.naked),
                n(&c.terminated),
                n(&c.probes),
                n(&c.unpublished),
                n(&c.refused)
            ),
        );
    }
}

/// Connects, trying [`CONNECT_ATTEMPTS`] times [`CONNECT_RETRY_MILLIS`] apart (growing
/// by half each time), as fluxrig's racks do: a rack started just before its server
/// (boot order) still starts. Each failed try is logged.
async fn connect_with_retries(options: &BusOptions) -> Result<async_nats::Client> {
    let mut wait = Duration::from_millis(CONNECT_RETRY_MILLIS);
    let mut attempt = 1;
    loop {
        match super::client::connect_client(options).await {
            Ok(client) => return Ok(client),
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                logger::warn("bus", &format!("{e}; trying again in {} ms", wait.as_millis()));
                tokio::time::sleep(wait).await;
                wait = wait * 3 / 2;
                attempt += 1;
            }
            Err(e) => return Err(e.hint(format!("after {CONNECT_ATTEMPTS} tries"))),
        }
    }
}

/// What the bus thread's tasks share.
#[derive(Clone)]
struct Shared {
    js: jetstream::Context,
    queue: Arc<Queue>,
    /// One per message fetched and not finished yet.
    credits: Arc<tokio::sync::Semaphore>,
    /// Acknowledgers of the bus messages pushed and not finished, oldest first.
    pending: Arc<Mutex<VecDeque<jetstream::message::Acker>>>,
    outputs: HashMap<usize, Output>,
    counts: Arc<Counts>,
    closing: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bus thread: fetch loops, the pushing thread, and the finishing of messages.
async fn drive(
    shared: Shared,
    consumers: Vec<(usize, String, consumer::PullConsumer)>,
    producer: Option<crate::queue::Producer>,
    mut work: tokio::sync::mpsc::Receiver<Work>,
    convergence: Convergence,
) {
    // Fetched messages go to the queue from one plain thread: a push may wait for room,
    // which must not stall this runtime.
    let (push_tx, push_rx) = std::sync::mpsc::sync_channel::<(usize, MsgBytes, jetstream::message::Acker)>(
        shared.credits.available_permits(),
    );
    let pusher = producer.map(|producer| {
        let (pending, credits) = (Arc::clone(&shared.pending), Arc::clone(&shared.credits));
        std::thread::spawn(move || {
            for (slot, msg, acker) in push_rx {
                lock(&pending).push_back(acker);
                if producer.push(Item::Message(Origin::Bus { slot }, msg)) == Flow::Refused {
                    // The rack has finished: left unacknowledged, redelivered to its next run.
                    lock(&pending).pop_back();
                    credits.add_permits(1);
                }
            }
        })
    });
    let mut fetchers = tokio::task::JoinSet::new();
    for (slot, subject, consumer) in consumers {
        fetchers.spawn(fetch(shared.clone(), slot, subject, consumer, push_tx.clone()));
    }
    let convergence = tokio::spawn(converge(shared.js.clone(), convergence));
    drop(push_tx);
    let mut finishing = tokio::task::JoinSet::new();
    while let Some(item) = work.recv().await {
        match item {
            Work::Finished(done) => {
                let acker = match done.input {
                    Some(_) => lock(&shared.pending).pop_front(),
                    None => None,
                };
                finishing.spawn(finish(shared.clone(), done, acker));
                // Reap what is done, so the set stays as small as the work in flight.
                while finishing.try_join_next().is_some() {}
            }
            Work::Close => break,
        }
    }
    shared.closing.store(true, Ordering::Relaxed);
    convergence.abort();
    // A fetch loop waiting for a credit stops now.
    shared.credits.close();
    let drain = async {
        while fetchers.join_next().await.is_some() {}
        while finishing.join_next().await.is_some() {}
    };
    if tokio::time::timeout(Duration::from_secs(DRAIN_SECS), drain).await.is_err() {
        logger::warn("bus", &format!("publishes or acknowledgements still in flight after {DRAIN_SECS} s: left to JetStream's redelivery"));
    }
    if let Some(pusher) = pusher {
        let _ = pusher.join();
    }
    let _ = tokio::time::timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS), shared.js.client().flush()).await;
}

/// What the convergence task needs: the stream, a probe watcher per consumed subject, and
/// where to answer [`Link::start`] (`Err` with the subjects still silent).
struct Convergence {
    stream: stream::Stream,
    watchers: Vec<(String, consumer::PullConsumer)>,
    answer: std::sync::mpsc::Sender<std::result::Result<(), Vec<String>>>,
}

/// fluxrig's `waitForConvergence`: every subject probed until live or until
/// [`CONVERGENCE_TIMEOUT_SECS`] pass; then the watchers are deleted.
async fn converge(js: jetstream::Context, c: Convergence) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(CONVERGENCE_TIMEOUT_SECS);
    let mut probing = tokio::task::JoinSet::new();
    for (subject, watcher) in &c.watchers {
        let (js, subject, watcher) = (js.clone(), subject.clone(), watcher.clone());
        probing.spawn(async move {
            let live = probe_until_seen(&js, &subject, &watcher, deadline).await;
            (subject, live)
        });
    }
    let mut silent = Vec::new();
    while let Some(done) = probing.join_next().await {
        match done {
            Ok((_, true)) => {}
            Ok((subject, false)) => silent.push(subject),
            Err(_) => silent.push("(a probe task failed)".to_string()),
        }
    }
    silent.sort();
    let _ = c.answer.send(if silent.is_empty() { Ok(()) } else { Err(silent) });
    for (_, mut watcher) in c.watchers {
        let name = match watcher.info().await {
            Ok(info) => info.name.clone(),
            Err(_) => continue,
        };
        // Best effort: an ephemeral consumer left behind goes after its inactive threshold.
        let _ =
            tokio::time::timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS), c.stream.delete_consumer(&name))
                .await;
    }
}

/// Publishes a probe on `subject` every [`PROBE_INTERVAL_MILLIS`] until `watcher` sees
/// one (true) or `deadline` passes (false).
async fn probe_until_seen(
    js: &jetstream::Context,
    subject: &str,
    watcher: &consumer::PullConsumer,
    deadline: tokio::time::Instant,
) -> bool {
    let interval = Duration::from_millis(PROBE_INTERVAL_MILLIS);
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        let round_end = (now + interval).min(deadline);
        // Bounded: a server that takes no publish must not hold the deadline.
        let _ = tokio::time::timeout_at(round_end, publish_probe(js, subject)).await;
        let wait =
            round_end.saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_millis(50));
        match watcher.fetch().max_messages(MAX_FETCH_BATCH).expires(wait).messages().await {
            Ok(mut batch) => {
                while let Some(Ok(message)) = batch.next().await {
                    let probe = MsgBytes::check(message.payload.to_vec())
                        .is_ok_and(|m| m.flags() & FLAG_SYNC_PROBE != 0);
                    if probe {
                        logger::info("bus", &format!("{subject}: sync probe seen, the subject is live"));
                        return true;
                    }
                }
            }
            Err(_) => tokio::time::sleep_until(round_end).await,
        }
    }
}

/// Publishes a sync probe (flags bit 0, fresh id, nothing else) on `subject`.
async fn publish_probe(js: &jetstream::Context, subject: &str) {
    let mut probe = crate::clock::new_raw_message(Vec::new());
    probe.raw = None;
    probe.flags = FLAG_SYNC_PROBE;
    let msg = MsgBytes::from_msg(&probe);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id(&msg, subject).as_str());
    let sent =
        js.publish_with_headers(subject.to_string(), headers, bytes::Bytes::from(msg.into_bytes())).await;
    if let Err(e) = sent {
        logger::warn("bus", &format!("sync probe on {subject}: {}", super::client::one_line(&e)));
    }
}

/// Stamps an output leaving by `gear`'s port `port` at `now` as fluxrig's `publishPort`
/// does (C5): an id if it has none, then the departure hop.
///
/// # Errors
/// `TooManyHops` when the departure hop would pass
/// [`MAX_HOPS`](fluxrig_core::limits::MAX_HOPS) (fluxrig's `Validate()` refuses it);
/// `MessageTooLarge` past the core's encoded limit.
fn stamp(mut msg: MsgBytes, gear: Uuid, port: Uuid, now: i64) -> Result<MsgBytes, MessageError> {
    if msg.id() == NIL_UUID {
        // Rare (a gear that clears the id): one decode and encode.
        let mut decoded = msg.to_msg();
        decoded.id = crate::clock::new_uuid_v7();
        msg = MsgBytes::try_from_msg(&decoded)?;
    }
    msg.push_hop(&Hop { gear, port, ts: now })?;
    Ok(msg)
}

/// The check of a message from the bus: fluxrig's `FluxMsg.Validate()` and decoding in
/// one (see the module docs); what fails it is terminated.
fn ingress(payload: &[u8]) -> Result<MsgBytes, MessageError> {
    MsgBytes::check(payload.to_vec())
}

/// `Nats-Msg-Id = <id>-<hops>-<subject>` (fluxrig v0.12, C4).
fn msg_id(msg: &MsgBytes, subject: &str) -> String {
    format!("{}-{}-{}", crate::json::uuid_string(&msg.id()), msg.hop_count(), subject)
}

/// One subject's fetch loop: pull as many messages as there are free credits, hand them
/// to the pushing thread; ack probes, terminate what is not a fluxMsg.
async fn fetch(
    shared: Shared,
    slot: usize,
    subject: String,
    consumer: consumer::PullConsumer,
    push: std::sync::mpsc::SyncSender<(usize, MsgBytes, jetstream::message::Acker)>,
) {
    while !shared.closing.load(Ordering::Relaxed) && !shared.queue.is_stopping() {
        let Ok(first) = shared.credits.acquire().await else { return };
        first.forget();
        let mut taken = 1usize;
        while taken < MAX_FETCH_BATCH {
            match shared.credits.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        let batch = consumer
            .fetch()
            .max_messages(taken)
            .expires(Duration::from_millis(FETCH_EXPIRES_MILLIS))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                shared.credits.add_permits(taken);
                logger::log(
                    fluxrig_core::abi::LogLevel::Debug,
                    "bus",
                    &format!("fetch {subject}: {}", super::client::one_line(&e)),
                );
                tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_MILLIS)).await;
                continue;
            }
        };
        let mut used = 0usize;
        while let Some(message) = batch.next().await {
            let Ok(message) = message else { break };
            let (message, acker) = message.split();
            let checked = ingress(&message.payload);
            match checked {
                Ok(msg) if msg.flags() & FLAG_SYNC_PROBE != 0 => {
                    shared.counts.probes.fetch_add(1, Ordering::Relaxed);
                    let _ = acker.ack().await;
                }
                Ok(msg) => {
                    used += 1;
                    // The pushing thread takes as many as there are credits: no wait here.
                    if push.send((slot, msg, acker)).is_err() {
                        shared.credits.add_permits(taken - used + 1);
                        return;
                    }
                }
                Err(e) => {
                    shared.counts.terminated.fetch_add(1, Ordering::Relaxed);
                    logger::warn(
                        "bus",
                        &format!(
                            "{subject}: a message of {} bytes is not a valid fluxMsg ({e}); terminated",
                            message.payload.len()
                        ),
                    );
                    let _ = acker.ack_with(AckKind::Term).await;
                }
            }
        }
        shared.credits.add_permits(taken - used);
    }
}

/// Publishes one message's outputs (each until JetStream acknowledges it), then acks or
/// naks the bus message it came from, then gives its credit back.
async fn finish(shared: Shared, done: Finished, acker: Option<jetstream::message::Acker>) {
    let mut all_published = true;
    for (slot, msg) in done.publishes {
        let Some(output) = shared.outputs.get(&slot) else { continue };
        let subject = &output.subject;
        if publish(&shared, subject, msg).await {
            shared.counts.published.fetch_add(1, Ordering::Relaxed);
        } else {
            all_published = false;
            shared.counts.unpublished.fetch_add(1, Ordering::Relaxed);
        }
    }
    if done.input.is_none() {
        return;
    }
    let Some(acker) = acker else {
        logger::error("bus", "a bus message finished with nothing to acknowledge (a pairing error)");
        shared.credits.add_permits(1);
        return;
    };
    match done.input {
        Some(true) if all_published => {
            if acker.ack().await.is_ok() {
                shared.counts.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Not all published (the rack is stopping, the server gone): redelivered later.
        Some(true) => {}
        _ => {
            if acker.ack_with(AckKind::Nak(None)).await.is_ok() {
                shared.counts.naked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    shared.credits.add_permits(1);
}

/// Publishes `msg` on `subject` until JetStream acknowledges it; gives up only when the
/// link is closing and [`DRAIN_SECS`] have passed (the caller then leaves its input
/// unacknowledged). Returns whether it was acknowledged.
async fn publish(shared: &Shared, subject: &str, msg: MsgBytes) -> bool {
    let id = msg_id(&msg, subject);
    let payload = bytes::Bytes::from(msg.into_bytes());
    let mut warned = false;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let sent = shared.js.publish_with_headers(subject.to_string(), headers, payload.clone()).await;
        let error = match sent {
            Ok(ack) => match ack.await {
                Ok(_) => {
                    if warned {
                        logger::info("bus", &format!("{subject}: publishing again"));
                    }
                    return true;
                }
                Err(e) => super::client::one_line(&e),
            },
            Err(e) => super::client::one_line(&e),
        };
        if !warned {
            logger::warn("bus", &format!("{subject}: publish not acknowledged ({error}); retrying"));
            warned = true;
        }
        if shared.closing.load(Ordering::Relaxed)
            && shared.js.client().connection_state() != async_nats::connection::State::Connected
        {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(PUBLISH_RETRY_MILLIS)).await;
    }
}

#[cfg(test)]
mod tests {
    use fluxrig_core::limits::{MAX_HOPS, MAX_PAYLOAD_BYTES};
    use fluxrig_core::message::{FluxMsg, Value};

    use super::*;

    fn with_hops(n: usize) -> FluxMsg {
        let hop = Hop { gear: [1; 16], port: [2; 16], ts: 3 };
        let mut msg = FluxMsg::with_raw([9; 16], 1, b"x".to_vec());
        msg.path = Some(vec![hop; n]);
        msg
    }

    #[test]
    fn stamping_sets_a_missing_id_and_appends_the_departure_hop_up_to_the_hop_limit() {
        let mut nil = with_hops(0);
        nil.id = NIL_UUID;
        let stamped = stamp(MsgBytes::from_msg(&nil), [4; 16], [5; 16], 77).unwrap();
        assert_ne!(stamped.id(), NIL_UUID);
        let back = stamped.to_msg();
        assert_eq!(back.path, Some(vec![Hop { gear: [4; 16], port: [5; 16], ts: 77 }]));
        assert_eq!((back.raw.as_deref(), back.ts), (Some(&b"x"[..]), 1), "the rest is kept");
        let subject = "flux.msg.r.g.out";
        assert_eq!(
            msg_id(&stamped, subject),
            format!("{}-1-{subject}", crate::json::uuid_string(&stamped.id()))
        );
        // An id that is there is kept; the hop count after stamping names the publish.
        let last = stamp(MsgBytes::from_msg(&with_hops(MAX_HOPS - 1)), [4; 16], [5; 16], 77).unwrap();
        assert_eq!((last.id(), last.hop_count()), ([9; 16], MAX_HOPS));
        assert!(msg_id(&last, subject).ends_with(&format!("-{MAX_HOPS}-{subject}")));
        let over = stamp(MsgBytes::from_msg(&with_hops(MAX_HOPS)), [4; 16], [5; 16], 77).unwrap_err();
        assert_eq!(over, MessageError::TooManyHops { limit: MAX_HOPS, got: MAX_HOPS + 1 });
    }

    #[test]
    fn ingress_refuses_what_fluxrig_validate_refuses_at_each_edge() {
        let bytes = |msg: &FluxMsg| msg.encode();
        assert_eq!(ingress(&bytes(&with_hops(MAX_HOPS))).unwrap().hop_count(), MAX_HOPS);
        assert_eq!(
            ingress(&bytes(&with_hops(MAX_HOPS + 1))).unwrap_err(),
            MessageError::TooManyHops { limit: MAX_HOPS, got: MAX_HOPS + 1 }
        );
        // The payload: raw + meta keys and values + data keys, text and bytes values.
        let sized = |extra: usize| {
            let mut msg = FluxMsg::with_raw([9; 16], 1, Vec::new());
            msg.meta = Some(vec![("mk".into(), "mv".into())]);
            msg.data =
                Some(vec![("t".into(), Value::Text("abc".into())), ("b".into(), Value::Bytes(vec![0; 5]))]);
            let counted = 4 + 4 + 6;
            msg.raw = Some(vec![b'r'; MAX_PAYLOAD_BYTES - counted + extra]);
            assert_eq!(msg.payload_bytes(), MAX_PAYLOAD_BYTES + extra);
            msg.encode()
        };
        assert!(ingress(&sized(0)).is_ok());
        assert_eq!(
            ingress(&sized(1)).unwrap_err(),
            MessageError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES, got: MAX_PAYLOAD_BYTES + 1 }
        );
        // Not UTF-8: a meta key, a meta value, a data key (the marker's 4 bytes replaced).
        for (key, value, data_key) in [("KEYX", "v", "d"), ("k", "KEYX", "d"), ("k", "v", "KEYX")] {
            let mut msg = FluxMsg::with_raw([9; 16], 1, Vec::new());
            msg.meta = Some(vec![(key.into(), value.into())]);
            msg.data = Some(vec![(data_key.into(), Value::Int(1))]);
            let mut encoded = msg.encode();
            let at = encoded.windows(4).position(|w| w == b"KEYX").unwrap();
            encoded.splice(at..at + 4, [0xff, 0xfe, 0xfd, 0xfc]);
            assert!(ingress(&encoded).is_err(), "{key} {value} {data_key}");
            assert!(ingress(&msg.encode()).is_ok());
        }
    }
}
