//! The rack's metrics in the Prometheus text format (version 0.0.4), and the final
//! statistics as JSON.
//!
//! Contract: the run loop publishes a [`Snapshot`] of its counters (when it is idle, and at
//! least every [`PUBLISH_INTERVAL`] when busy); [`render`] turns a snapshot plus the
//! queue's depth into the text a Prometheus scrape or node_exporter's textfile collector
//! reads. `--metrics-file PATH` is rewritten atomically every `--metrics-interval` seconds
//! ([`spawn_file_writer`]) and once more when the rack stops, so a collector never reads
//! half a file. Names follow Prometheus conventions: `fluxrig_` prefix, `_total` for
//! counters, base units (seconds, bytes). Label values are escaped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fluxrig_core::rack::{GearStats, CALL_TIME_BUCKETS_NANOS};
use fluxrig_core::Blame;

use crate::files::write_atomic;
use crate::logger;
use crate::queue::Queue;
use crate::run::Stats;

/// Longest a busy run loop goes without publishing a [`Snapshot`]: 1 s.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Default seconds between two writes of `--metrics-file`.
///
/// Reason: Prometheus scrapes every 15-60 s; 5 s keeps the file fresh for any of them at
/// the cost of one small write.
pub const DEFAULT_METRICS_INTERVAL_SECS: u64 = 5;

/// One gear's name and counters.
#[derive(Debug, Clone)]
pub struct GearSnapshot {
    /// The gear's name in the scenario.
    pub name: String,
    /// Its counters (all zero for a `generate` gear).
    pub stats: GearStats,
    /// Whether it is a wasm gear (generators have no calls).
    pub wasm: bool,
}

/// What the run loop has counted so far.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The running scenario's name and version.
    pub scenario: (String, String),
    /// The running plan's gears.
    pub gears: Vec<GearSnapshot>,
    /// The rack's counters since it started (across reloads).
    pub stats: Stats,
    /// Unix time the rack started, in seconds.
    pub started_unix_secs: u64,
    /// Open input connections (sockets).
    pub connections: usize,
}

/// The snapshot the run loop publishes and the metrics writers read.
pub type Shared = Arc<Mutex<Snapshot>>;

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Renders `snapshot` and the depth of `queue` as Prometheus text.
pub fn render(snapshot: &Snapshot, queue: &Queue) -> String {
    let mut out = String::with_capacity(4096);
    let s = &snapshot.stats;
    let mut counter = |name: &str, help: &str, value: u64| {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    };
    counter("fluxrig_messages_in_total", "Messages (and bad input items) that entered the rack.", s.entered);
    counter("fluxrig_messages_out_total", "Messages written to the output.", s.written);
    counter("fluxrig_messages_dropped_total", "Messages a gear dropped on purpose.", s.dropped);
    counter("fluxrig_messages_hop_limit_total", "Messages stopped by the hop limit.", s.hop_limit);
    counter("fluxrig_messages_queue_full_total", "Gear outputs refused by the router's queue.", s.queue_full);
    counter("fluxrig_bytes_in_total", "Bytes of the messages that entered the rack (CBOR).", s.bytes_in);
    counter("fluxrig_bytes_out_total", "Bytes written to the output.", s.bytes_out);
    counter("fluxrig_reloads_total", "Scenario reloads applied.", s.reloads);
    counter("fluxrig_reload_failures_total", "Scenario reloads refused.", s.reload_failures);
    family(
        &mut out,
        "fluxrig_messages_failed_total",
        "counter",
        "Messages lost to a failure, by whose fault.",
    );
    for (blame, n) in Blame::ALL.iter().zip(s.failed) {
        let _ = writeln!(out, "fluxrig_messages_failed_total{{blame=\"{blame}\"}} {n}");
    }
    let (depth, bytes) = queue.depth();
    let limits = queue.limits();
    let mut gauge = |name: &str, help: &str, value: usize| {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    };
    gauge("fluxrig_queue_messages", "Messages waiting in the input queue.", depth);
    gauge("fluxrig_queue_bytes", "Bytes waiting in the input queue.", bytes);
    gauge("fluxrig_queue_capacity_messages", "Most messages the input queue holds.", limits.messages);
    gauge("fluxrig_queue_capacity_bytes", "Most bytes the input queue holds.", limits.bytes);
    gauge("fluxrig_input_connections", "Open input connections.", snapshot.connections);
    family(&mut out, "fluxrig_start_time_seconds", "gauge", "Unix time the rack started.");
    let _ = writeln!(out, "fluxrig_start_time_seconds {}", snapshot.started_unix_secs);
    family(&mut out, "fluxrig_scenario_info", "gauge", "The running scenario.");
    let _ = writeln!(
        out,
        "fluxrig_scenario_info{{name=\"{}\",version=\"{}\"}} 1",
        escape(&snapshot.scenario.0),
        escape(&snapshot.scenario.1)
    );
    let wasm: Vec<(String, &GearStats)> =
        snapshot.gears.iter().filter(|g| g.wasm).map(|g| (escape(&g.name), &g.stats)).collect();
    let per_gear = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&GearStats) -> u64| {
        family(out, name, "counter", help);
        for (gear, stats) in &wasm {
            let _ = writeln!(out, "{name}{{gear=\"{gear}\"}} {}", value(stats));
        }
    };
    per_gear(&mut out, "fluxrig_gear_messages_in_total", "Messages a gear was called with.", &|g| g.calls);
    per_gear(&mut out, "fluxrig_gear_messages_out_total", "Messages a gear returned.", &|g| g.outputs);
    per_gear(&mut out, "fluxrig_gear_messages_dropped_total", "Messages a gear dropped.", &|g| g.dropped);
    per_gear(&mut out, "fluxrig_gear_fuel_used_total", "Fuel a gear's process calls used.", &|g| g.fuel_used);
    per_gear(
        &mut out,
        "fluxrig_gear_instance_rebuilds_total",
        "Faults after which a gear's instance was rebuilt (traps, fuel exhaustion).",
        &|g| g.rebuilds,
    );
    family(
        &mut out,
        "fluxrig_gear_messages_failed_total",
        "counter",
        "Messages a gear failed on, by whose fault.",
    );
    for (gear, stats) in &wasm {
        for (blame, n) in Blame::ALL.iter().zip(stats.failed) {
            let _ =
                writeln!(out, "fluxrig_gear_messages_failed_total{{gear=\"{gear}\",blame=\"{blame}\"}} {n}");
        }
    }
    family(
        &mut out,
        "fluxrig_gear_call_seconds",
        "histogram",
        "Time of one gear call (process, with its copies).",
    );
    for (gear, stats) in &wasm {
        let mut cumulative = 0u64;
        for (bound, n) in CALL_TIME_BUCKETS_NANOS.iter().zip(stats.call_nanos) {
            cumulative += n;
            let _ = writeln!(
                out,
                "fluxrig_gear_call_seconds_bucket{{gear=\"{gear}\",le=\"{}\"}} {cumulative}",
                seconds(*bound)
            );
        }
        let _ =
            writeln!(out, "fluxrig_gear_call_seconds_bucket{{gear=\"{gear}\",le=\"+Inf\"}} {}", stats.calls);
        let _ =
            writeln!(out, "fluxrig_gear_call_seconds_sum{{gear=\"{gear}\"}} {}", seconds(stats.busy_nanos));
        let _ = writeln!(out, "fluxrig_gear_call_seconds_count{{gear=\"{gear}\"}} {}", stats.calls);
    }
    out
}

/// Writes `render(...)` to `path` atomically (mode 0644); a failure is logged, not fatal.
pub fn write_file(path: &Path, shared: &Shared, queue: &Queue) {
    // Render and rename as one step: a periodic write that rendered an older snapshot
    // must not land after the final write, so the file ends with the final figures.
    static WRITING: Mutex<()> = Mutex::new(());
    let _writing = WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = {
        let snapshot = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        render(&snapshot, queue)
    };
    if let Err(e) = write_atomic(path, text.as_bytes(), 0o644) {
        logger::warn("metrics", &e.to_string());
    }
}

/// Rewrites `path` every `interval` on a thread of its own, for as long as the process
/// runs (it sleeps in between: no work when nothing is due).
pub fn spawn_file_writer(path: PathBuf, interval: Duration, shared: Shared, queue: Arc<Queue>) {
    thread::spawn(move || loop {
        write_file(&path, &shared, &queue);
        thread::sleep(interval);
    });
}

/// The final statistics as one JSON object (`--stats-json`), with the signal that
/// stopped the rack, if one did.
pub fn stats_json(snapshot: &Snapshot, stopped_by: Option<&str>) -> String {
    let s = &snapshot.stats;
    let failed: serde_json::Map<String, serde_json::Value> =
        Blame::ALL.iter().zip(s.failed).map(|(b, n)| (b.to_string(), n.into())).collect();
    let gears: Vec<serde_json::Value> = snapshot
        .gears
        .iter()
        .filter(|g| g.wasm)
        .map(|g| {
            let failed: serde_json::Map<String, serde_json::Value> =
                Blame::ALL.iter().zip(g.stats.failed).map(|(b, n)| (b.to_string(), n.into())).collect();
            serde_json::json!({
                "name": g.name,
                "in": g.stats.calls,
                "out": g.stats.outputs,
                "dropped": g.stats.dropped,
                "failed": failed,
                "fuel_used": g.stats.fuel_used,
                "instance_rebuilds": g.stats.rebuilds,
                "busy_seconds": seconds(g.stats.busy_nanos),
            })
        })
        .collect();
    serde_json::json!({
        "scenario": snapshot.scenario.0,
        "in": s.entered,
        "out": s.written,
        "dropped": s.dropped,
        "failed": failed,
        "failed_total": s.failed_total(),
        "hop_limit": s.hop_limit,
        "queue_full": s.queue_full,
        "stopped_by": stopped_by,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "reloads": s.reloads,
        "reload_failures": s.reload_failures,
        "peak_rss_bytes": peak_rss_bytes(),
        "gears": gears,
    })
    .to_string()
}

/// Returns this process's peak resident set size (`VmHWM` in `/proc/self/status`), if
/// the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueLimits;

    #[test]
    fn renders_counters_gauges_and_cumulative_buckets_with_escaped_labels() {
        let mut stats = GearStats { calls: 3, outputs: 2, dropped: 1, fuel_used: 99, ..GearStats::default() };
        stats.call_nanos[0] = 1; // <= 1 µs
        stats.call_nanos[2] = 2; // <= 5 µs
        stats.busy_nanos = 9_000;
        let snapshot = Snapshot {
            scenario: ("demo \"q\"".into(), "v1".into()),
            gears: vec![
                GearSnapshot { name: "a\\b".into(), stats, wasm: true },
                GearSnapshot { name: "gen".into(), stats: GearStats::default(), wasm: false },
            ],
            stats: Stats { entered: 5, written: 2, ..Stats::default() },
            started_unix_secs: 7,
            connections: 1,
        };
        let text = render(&snapshot, &Queue::new(QueueLimits::default()));
        for line in [
            "fluxrig_messages_in_total 5",
            "fluxrig_messages_out_total 2",
            "fluxrig_queue_capacity_messages 1024",
            "fluxrig_scenario_info{name=\"demo \\\"q\\\"\",version=\"v1\"} 1",
            "fluxrig_gear_messages_in_total{gear=\"a\\\\b\"} 3",
            "fluxrig_gear_call_seconds_bucket{gear=\"a\\\\b\",le=\"0.000001\"} 1",
            "fluxrig_gear_call_seconds_bucket{gear=\"a\\\\b\",le=\"0.000002\"} 1",
            "fluxrig_gear_call_seconds_bucket{gear=\"a\\\\b\",le=\"0.000005\"} 3",
            "fluxrig_gear_call_seconds_bucket{gear=\"a\\\\b\",le=\"+Inf\"} 3",
            "fluxrig_gear_call_seconds_sum{gear=\"a\\\\b\"} 0.000009",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("gear=\"gen\""), "generators have no gear metrics");
        // Every sample line belongs to a family declared just before it.
        let mut declared = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| declared.contains(*f))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} has no # TYPE");
            }
        }
    }
}
