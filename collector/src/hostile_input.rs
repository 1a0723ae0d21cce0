//! Property tests: the collector's readers of untrusted input never panic and never trust it.
//!
//! The shared-memory region is written by every monitored process; here it is filled with
//! random and mutated content (through the same atomics and ring protocol a process uses), and
//! everything downstream of the tracker — the summary, its text and JSON, the Lambda report,
//! the flow log, the export pipeline (spans, cumulative metrics, OTLP JSON) — must cope. Debug
//! builds check integer overflow, so a sum of hostile counters that is not saturating fails
//! here; exported cumulative sums must never go back (a wrapped one would).
//!
//! Seeds are fixed (reproducible); `NETMON_PROPTEST_ROUNDS` scales the number of cases.

use crate::flowlog::FlowLog;
use crate::lambda::invocation;
use crate::summary::{self, RunInfo};
use crate::tracker::Tracker;
use netmon_proto::region::{Geometry, Region};
use netmon_proto::*;
use std::sync::atomic::Ordering::Relaxed;

/// xorshift64*: small, deterministic, good enough to pick cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Boundary values more often than uniform randomness would give them.
    pub fn wild_u64(&mut self) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - self.below(3),
            3 => (1 << 56) + self.below(3) - 1,
            4 | 5 => self.below(100_000),
            _ => self.next(),
        }
    }
    pub fn wild_u32(&mut self) -> u32 {
        match self.below(6) {
            0 => 0,
            1 => u32::MAX,
            2 | 3 => self.below(64) as u32,
            _ => self.next() as u32,
        }
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next() as u8;
        }
    }
    /// Up to `max` random bytes, often shorter.
    pub fn string(&mut self, max: usize) -> Vec<u8> {
        let mut v = vec![0; self.below(max as u64 + 1) as usize];
        self.bytes(&mut v);
        v
    }
}

pub fn rounds(default: u64) -> u64 {
    std::env::var("NETMON_PROPTEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn addr(rng: &mut Rng) -> Addr {
    let mut bytes = [0u8; 16];
    if rng.chance(50) {
        bytes[..4].copy_from_slice(&[127, 0, 0, rng.below(3) as u8 + 1]);
    } else {
        rng.bytes(&mut bytes);
    }
    Addr {
        family: [family::IPV4, family::IPV6, family::NONE, rng.next() as u8][rng.below(4) as usize],
        _pad: rng.next() as u8,
        port: if rng.chance(20) {
            53
        } else {
            rng.next() as u16
        },
        bytes,
    }
}

/// A Lambda invocation epoch: small, or about to wrap.
fn wild_epoch(rng: &mut Rng) -> u32 {
    if rng.chance(5) {
        u32::MAX - rng.below(2) as u32
    } else {
        rng.below(4) as u32
    }
}

fn header(rng: &mut Rng, kind: u16, slots: usize) -> EventHeader {
    let mut h = EventHeader::new(
        kind,
        slots,
        rng.below(4) as u32 + 1,
        rng.wild_u32(),
        rng.wild_u64(),
    );
    h.epoch = wild_epoch(rng);
    h.flags = rng.next() as u8;
    h
}

/// One event, valid in shape with random contents, or plain garbage; returns (bytes, slots).
fn event(rng: &mut Rng) -> (Vec<u8>, usize) {
    let mut bytes = match rng.below(7) {
        0 => {
            let mut e = ProcessEvent {
                header: header(rng, kind::PROCESS, ProcessEvent::SLOTS),
                ppid: rng.wild_u32(),
                exe_len: rng.next() as u16,
                _pad: 0,
                exe: [0; 96],
            };
            rng.bytes(&mut e.exe);
            e.as_bytes().to_vec()
        }
        1 => {
            let mut e = DnsEvent::empty(rng.below(7) as u8);
            e.header = header(rng, kind::DNS, DnsEvent::SLOTS);
            e.duration_ns = rng.wild_u64();
            e.set_name(&rng.string(300));
            if rng.chance(20) {
                e.name_len = rng.next() as u16;
            }
            for _ in 0..rng.below(12) {
                e.push_answer(addr(rng));
            }
            if rng.chance(20) {
                e.answer_count = rng.next() as u8;
            }
            e.status = rng.next() as i32;
            e.rcode = rng.next() as i16;
            e.query_id = rng.below(3) as u16;
            e.socket = [u32::MAX, rng.below(8) as u32][rng.below(2) as usize];
            e.socket_generation = rng.below(3) as u32;
            e.as_bytes().to_vec()
        }
        2 | 3 => {
            let k = [kind::CONNECT, kind::CONNECT_RESULT, kind::ACCEPT][rng.below(3) as usize];
            ConnectEvent {
                header: header(rng, k, ConnectEvent::SLOTS),
                socket: [u32::MAX, rng.below(8) as u32, rng.next() as u32][rng.below(3) as usize],
                socket_generation: rng.below(3) as u32,
                fd: rng.next() as i32,
                errno: [0, 111, 115, rng.next() as i32][rng.below(4) as usize],
                duration_ns: rng.wild_u64(),
                remote: addr(rng),
                local: addr(rng),
                transport: rng.below(4) as u8,
                _pad: [0; 7],
            }
            .as_bytes()
            .to_vec()
        }
        4 => DatagramEvent {
            header: header(rng, kind::DATAGRAM, DatagramEvent::SLOTS),
            socket: rng.below(8) as u32,
            socket_generation: rng.below(3) as u32,
            bytes: rng.wild_u64(),
            peer: addr(rng),
            direction: rng.below(4) as u8,
            _pad: [0; 3],
        }
        .as_bytes()
        .to_vec(),
        5 => {
            let mut e = InvocationEvent {
                header: header(rng, kind::INVOCATION, InvocationEvent::SLOTS),
                phase: rng.below(5) as u8,
                request_id_len: rng.next() as u8,
                _pad: [0; 6],
                deadline_ms: rng.wild_u64(),
                request_id: [0; REQUEST_ID_MAX],
            };
            if rng.chance(70) {
                e.request_id[..36].copy_from_slice(b"8476a536-e9f4-11e8-9739-2dfe598c3fcd");
                e.request_id_len = 36;
            } else {
                rng.bytes(&mut e.request_id);
            }
            e.as_bytes().to_vec()
        }
        _ => {
            let mut v = vec![0u8; SLOT_SIZE * (rng.below(MAX_EVENT_SLOTS as u64) as usize + 1)];
            rng.bytes(&mut v);
            v
        }
    };
    // Flip a few bytes anywhere (kind, slot count, lengths, ...).
    if rng.chance(30) {
        for _ in 0..rng.below(4) + 1 {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] = rng.next() as u8;
        }
    }
    let slots = bytes.len().div_ceil(SLOT_SIZE).clamp(1, MAX_EVENT_SLOTS);
    (bytes, slots)
}

/// Writes random and mutated content everywhere the collector reads: header counters, ring
/// control blocks and slots, socket slots.
pub fn scribble(r: &Region, rng: &mut Rng) {
    let h = r.header();
    if rng.chance(50) {
        for c in [
            &h.dropped_no_ring,
            &h.sockets_untracked,
            &h.fds_untracked,
            &h.attached_processes,
        ] {
            c.store(rng.wild_u64(), Relaxed);
        }
        for c in [
            &h.socket_hint,
            &h.socket_high_water,
            &h.epoch,
            &h.invocations_done,
        ] {
            c.store(rng.wild_u32(), Relaxed);
        }
    }
    for i in 0..r.geometry().rings {
        let Some(ring) = r.ring(i) else { break };
        let c = ring.control;
        if rng.chance(30) {
            continue; // leave some rings as they are
        }
        c.state.store(rng.below(4) as u32, Relaxed);
        c.owner_pid.store(rng.wild_u32(), Relaxed);
        c.head.store(0, Relaxed);
        c.tail.store(0, Relaxed);
        for _ in 0..rng.below(ring.capacity() as u64) {
            let (bytes, slots) = event(rng);
            let slots = if rng.chance(5) {
                rng.below(MAX_EVENT_SLOTS as u64) as usize + 1
            } else {
                slots
            };
            if !ring.push(&bytes[..bytes.len().min(slots * SLOT_SIZE)], slots) {
                break;
            }
        }
        match rng.below(10) {
            0 => c.head.store(rng.wild_u64(), Relaxed),
            1 => c.tail.store(rng.wild_u64(), Relaxed),
            2 => {
                let t = rng.wild_u64();
                c.tail.store(t, Relaxed);
                c.head.store(t.wrapping_add(rng.below(8)), Relaxed);
            }
            _ => {}
        }
        c.dropped.store(rng.wild_u64(), Relaxed);
    }
    // Sometimes every slot is valid and as large as the tracker accepts: their sum overflows.
    let big = rng.chance(10);
    for i in 0..r.geometry().sockets {
        let Some(s) = r.socket(i) else { break };
        if rng.chance(20) && !big {
            continue;
        }
        let kind = if big {
            pack_kind(family::IPV4, transport::TCP, role::OUTGOING)
        } else if rng.chance(80) {
            pack_kind(
                [family::IPV4, family::IPV6, 0, 9][rng.below(4) as usize],
                [transport::TCP, transport::UDP, 0][rng.below(3) as usize],
                rng.below(4) as u8,
            )
        } else {
            rng.next() as u32
        };
        s.generation.store(rng.below(3) as u32, Relaxed);
        s.pid.store(rng.below(4) as u32 + 1, Relaxed);
        s.kind.store(kind, Relaxed);
        s.flags.store(rng.next() as u32, Relaxed);
        s.connect_state.store(rng.below(5) as u32, Relaxed);
        s.connect_errno.store(rng.next() as i32, Relaxed);
        s.fd.store(rng.next() as i32, Relaxed);
        s.remote.store(&addr(rng));
        s.local.store(&addr(rng));
        for c in [
            &s.bytes_sent,
            &s.bytes_received,
            &s.sends,
            &s.receives,
            &s.open_ns,
            &s.close_ns,
            &s.dns_query_ns,
            &s.base_sent,
            &s.base_received,
        ] {
            c.store(rng.wild_u64(), Relaxed);
        }
        for c in [
            &s.rtt_us,
            &s.rtt_var_us,
            &s.total_retrans,
            &s.tcp_state,
            &s.segs_out,
            &s.segs_in,
            &s.fd_refs,
        ] {
            c.store(rng.wild_u32(), Relaxed);
        }
        s.epoch.store(wild_epoch(rng), Relaxed);
        s.open_epoch.store(wild_epoch(rng), Relaxed);
        if big {
            s.remote.store(&Addr::from_ipv4([10, 0, 0, i as u8], 443));
            for c in [&s.bytes_sent, &s.bytes_received, &s.sends, &s.receives] {
                c.store((1 << 56) - rng.below(1000), Relaxed);
            }
            s.state.store(socket_state::OPEN, Relaxed);
            continue;
        }
        s.state.store(
            [
                socket_state::OPEN,
                socket_state::CLOSED,
                socket_state::FREE,
                rng.next() as u32,
            ][rng.below(4) as usize],
            Relaxed,
        );
    }
}

/// Everything that reads a tracker, on whatever it holds.
fn consume_everything(t: &Tracker, r: &Region, flow_log: &mut FlowLog) {
    let health = t.health(r);
    let s = summary::build(
        t,
        &summary::Retired::default(),
        health,
        RunInfo {
            command: vec!["x".into()],
            pid: 1,
            exit_code: 0,
            duration_ms: 1.0,
        },
    );
    let _ = summary::render_text(&s);
    serde_json::to_string(&s).unwrap();
    for epoch in [0, 1, 2, 3, u32::MAX] {
        let rep = invocation::report(t, epoch, Some("r"));
        let _ = rep.log_line();
        let _ = rep.emf("f", 1);
    }
    let now = netmon_proto::ring::realtime_ns();
    flow_log.poll(t, &[], now).unwrap();
    flow_log.finish(t, &[], now).unwrap();
}

#[test]
fn hostile_region_contents_are_rejected_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut flow_log = FlowLog::create(
        &dir.path().join("flows.log"),
        std::time::Duration::from_secs(1),
        netmon_proto::ring::realtime_ns(),
    )
    .unwrap();
    // Enough sockets that their bounded counters still overflow a plain sum.
    let r = Region::create(
        Geometry {
            rings: 4,
            ring_capacity: 16,
            sockets: 512,
        },
        1,
    )
    .unwrap();
    let mut rng = Rng::new(7);
    let mut rejected_seen = false;
    for _ in 0..rounds(300) {
        // A tracker lives across several scribbles, as in a real run.
        let mut t = Tracker::new();
        for _ in 0..rng.below(4) + 1 {
            scribble(&r, &mut rng);
            t.poll(&r);
        }
        t.finish(&r);
        for rec in t.sockets.values() {
            assert!(rec.bytes_sent <= 1 << 56 && rec.bytes_received <= 1 << 56);
            let (tx, rx) = rec.epoch_bytes.values().fold((0u64, 0u64), |a, b| {
                (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
            });
            assert!(tx <= rec.bytes_sent && rx <= rec.bytes_received, "{rec:?}");
        }
        rejected_seen |= t.health(&r).records_rejected > 0;
        consume_everything(&t, &r, &mut flow_log);
    }
    assert!(rejected_seen, "the cases never produced a rejected record");
}

#[test]
fn a_scribbling_process_cannot_hide_sockets_by_lowering_the_high_water_mark() {
    let r = Region::create(
        Geometry {
            rings: 1,
            ring_capacity: 16,
            sockets: 8,
        },
        1,
    )
    .unwrap();
    let s = r.socket(5).unwrap();
    s.kind.store(
        pack_kind(family::IPV4, transport::TCP, role::OUTGOING),
        Relaxed,
    );
    s.remote.store(&Addr::from_ipv4([10, 0, 0, 1], 80));
    s.state.store(socket_state::OPEN, Relaxed);
    r.header().socket_high_water.store(6, Relaxed);
    let mut t = Tracker::new();
    t.poll(&r);
    assert_eq!(t.sockets.len(), 1);
    r.header().socket_high_water.store(0, Relaxed);
    s.bytes_sent.store(1234, Relaxed);
    s.state.store(socket_state::CLOSED, Relaxed);
    t.finish(&r);
    let rec = t.sockets.values().next().unwrap();
    assert_eq!((rec.bytes_sent, rec.close_ns.is_some()), (1234, true));
}

// ------------------------------------------------------------------ the export pipeline

use crate::telemetry::export::{Exporters, QueueLimits};
use crate::telemetry::{Pipeline, PipelineOptions};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A pipeline with cumulative metrics and a tiny cardinality limit (every flow beyond it
/// folds into one overflow data point, whose sums add up the most), exporting every collect
/// into an OTLP JSON file.
fn export_pipeline(path: &std::path::Path, rng: &mut Rng) -> Pipeline {
    let exporters = Exporters::build(
        None,
        Some(path),
        QueueLimits {
            max_spans: 1 << 16,
            max_batch: 512,
            span_delay: Duration::from_millis(1),
            max_points: 1 << 20,
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    Pipeline::start(
        exporters,
        opentelemetry_sdk::Resource::builder_empty().build(),
        export_config::Temporality::Cumulative,
        PipelineOptions {
            metric_interval: Duration::ZERO,
            ephemeral_ports: rng.chance(50),
            cardinality_limit: 3,
            traceparent: None,
        },
    )
}

/// The cumulative sums and histograms of an OTLP JSON file never go back and never leave the
/// range OTLP carries: a sum that wrapped or saturated past `i64::MAX` (exported as 0 or
/// negative) would. Returns the last (sum, count) of each series, by "name attributes".
fn assert_cumulative_metrics_only_grow(path: &std::path::Path) -> HashMap<String, (f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut last: HashMap<String, (f64, u64)> = HashMap::new();
    for line in text.lines().filter(|l| l.contains("resourceMetrics")) {
        let req: ExportMetricsServiceRequest = serde_json::from_str(line).unwrap();
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            let points: Vec<(String, f64, u64)> = match &m.data {
                Some(metric::Data::Sum(sum))
                    if sum.is_monotonic
                        && sum.aggregation_temporality
                            == AggregationTemporality::Cumulative as i32 =>
                {
                    sum.data_points
                        .iter()
                        .map(|p| {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => 0.0,
                            };
                            (serde_json::to_string(&p.attributes).unwrap(), v, 0)
                        })
                        .collect()
                }
                Some(metric::Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .map(|p| {
                        let key = serde_json::to_string(&p.attributes).unwrap();
                        (key, p.sum.unwrap_or(0.0), p.count)
                    })
                    .collect(),
                _ => continue,
            };
            for (attrs, value, count) in points {
                assert!(value.is_finite() && value >= 0.0, "{}: {value}", m.name);
                let key = format!("{} {attrs}", m.name);
                if let Some((before, before_count)) = last.insert(key, (value, count)) {
                    assert!(
                        value >= before && count >= before_count,
                        "{} {attrs} went back: {before} -> {value}",
                        m.name
                    );
                }
            }
        }
    }
    last
}

#[test]
fn hostile_region_contents_flow_through_the_export_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let r = Region::create(
        Geometry {
            rings: 4,
            ring_capacity: 16,
            sockets: 512,
        },
        1,
    )
    .unwrap();
    let mut rng = Rng::new(11);
    for round in 0..rounds(40) {
        let path = dir.path().join(format!("otlp-{round}.jsonl"));
        let mut p = export_pipeline(&path, &mut rng);
        let mut t = Tracker::new();
        for _ in 0..rng.below(5) + 2 {
            scribble(&r, &mut rng);
            t.poll(&r);
            if rng.chance(30) {
                let epoch = [0, 1, u32::MAX, rng.wild_u32()][rng.below(4) as usize];
                p.begin_invocation(epoch, Some("r"), None, rng.chance(50), rng.wild_u64());
            }
            // Lambda: an invocation's bytes, sums of hostile counters (saturated).
            p.record_invocation(rng.wild_u64(), rng.wild_u64());
            p.collect(&t, t.health(&r));
            if rng.chance(30) {
                p.end_invocation(rng.wild_u32(), rng.wild_u64());
            }
        }
        t.finish(&r);
        let health = t.health(&r);
        let report = p.shutdown(&t, health, Instant::now() + Duration::from_secs(5));
        let e = &report[0];
        assert_eq!(e.spans_dropped + e.metric_points_dropped, 0, "{e:?}");
        assert_cumulative_metrics_only_grow(&path);
    }
}

/// The largest values a hostile process can leave in a slot, many times over: every sum
/// saturates, nothing panics (debug builds check overflow), exported totals stay in range.
#[test]
fn counters_at_their_limits_saturate_in_every_consumer() {
    use crate::tracker::{Attempt, DnsLookup, DnsSource, Endpoint, Outcome, SocketRecord};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otlp.jsonl");
    let mut rng = Rng::new(1);
    let mut p = export_pipeline(&path, &mut rng);
    let mut t = Tracker::new();
    let mut key = 0;
    for step in 0..6u64 {
        for i in 0..64u32 {
            key += 1;
            let mut s = SocketRecord::new(i % 3 + 1, crate::tracker::Transport::Tcp, false, 0);
            s.remote = Some(Endpoint {
                ip: std::net::IpAddr::from([10, 0, (i % 4) as u8, step as u8]),
                port: 443,
            });
            s.outcome = Outcome::Connected;
            (s.bytes_sent, s.bytes_received) = (u64::MAX, u64::MAX - 1);
            (s.sends, s.receives) = (u64::MAX, u64::MAX);
            s.close_ns = Some(u64::MAX);
            (s.rtt_us, s.rtt_var_us, s.retransmits) =
                (Some(u32::MAX), Some(u32::MAX), Some(u32::MAX));
            (s.segs_out, s.segs_in) = (u32::MAX, u32::MAX);
            s.attempts.push(Attempt {
                epoch: u32::MAX,
                start_ns: u64::MAX - 1,
                duration_ns: u64::MAX,
                errno: 0,
            });
            s.epoch_bytes.insert(u32::MAX, (u64::MAX, u64::MAX));
            t.sockets.insert((key, 1), s);
            t.socket_order.push((key, 1));
        }
        t.lookups.push(DnsLookup {
            pid: 1,
            tid: 1,
            epoch: u32::MAX,
            name: "x.example".into(),
            source: DnsSource::Getaddrinfo,
            start_ns: u64::MAX,
            duration_ns: u64::MAX,
            answers: vec![],
            rcode: 0,
            error: None,
        });
        p.record_invocation(u64::MAX, u64::MAX);
        let health = crate::tracker::Health {
            events_dropped: [u64::MAX, 0][step as usize % 2],
            records_rejected: u64::MAX,
            sockets_untracked: [u64::MAX, 1][step as usize % 2],
        };
        p.collect(&t, health);
    }
    let report = p.shutdown(
        &t,
        crate::tracker::Health::default(),
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(report[0].spans_dropped + report[0].metric_points_dropped, 0);
    let last = assert_cumulative_metrics_only_grow(&path);
    // Byte sums saturate: together they are what OTLP carries at most, none wrapped (to 0 or
    // below, checked above). Retransmits (u32 per socket) are far from it: exact.
    let total = |name: &str| -> f64 {
        last.iter()
            .filter(|(k, _)| k.starts_with(&format!("{name} ")))
            .map(|(_, v)| v.0)
            .sum()
    };
    for name in ["netflow.bytes_written", "netflow.bytes_read"] {
        assert_eq!(total(name), i64::MAX as f64, "{name}");
    }
    assert_eq!(
        total("netflow.retransmits"),
        (6 * 64 * u64::from(u32::MAX)) as f64
    );
    let net_io: Vec<_> = last
        .iter()
        .filter(|(k, _)| k.starts_with("faas.net_io "))
        .collect();
    assert_eq!(net_io.len(), 2, "{net_io:?}");
    assert!(
        net_io.iter().all(|(_, (_, count))| *count == 6),
        "{net_io:?}"
    );
    assert_eq!(total("faas.net_io"), i64::MAX as f64);
    let s = summary::build(
        &t,
        &summary::Retired::default(),
        crate::tracker::Health {
            events_dropped: u64::MAX,
            records_rejected: u64::MAX,
            sockets_untracked: u64::MAX,
        },
        RunInfo {
            command: vec!["x".into()],
            pid: 1,
            exit_code: 0,
            duration_ms: 1.0,
        },
    );
    assert_eq!(s.totals.bytes_sent, u64::MAX);
    let _ = summary::render_text(&s);
    let rep = invocation::report(&t, u32::MAX, Some("r"));
    assert_eq!(rep.tx_bytes, u64::MAX);
}

// ------------------------------------------------------------------ Lambda APIs and settings

use crate::lambda::api::{ApiBase, NextEvent};
use crate::lambda::extension::Config;
use crate::lambda::telemetry_api::parse_batch;
use crate::telemetry::config::{self as export_config, ExportFlags};
use crate::telemetry::resource::parse_resource_attributes;

/// Valid documents of each kind, the starting points for mutation.
const NEXT_EVENTS: &[&str] = &[
    r#"{"eventType":"INVOKE","deadlineMs":1700000003000,"requestId":"r1","invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}}"#,
    r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1700000005000}"#,
];
const BATCHES: &[&str] = &[
    r#"[{"time":"x","type":"platform.start","record":{"requestId":"a","version":"$LATEST"}},{"time":"x","type":"platform.runtimeDone","record":{"requestId":"a","status":"success","metrics":{"durationMs":10.5}}},{"time":"x","type":"platform.report","record":{"requestId":"a","metrics":{"durationMs":12.0,"billedDurationMs":13,"initDurationMs":200.5}}},{"type":"function","record":"hello"}]"#,
];
/// Tokens that JSON mutations splice in: wrong types, huge and odd numbers, escapes.
const JSON_TOKENS: &[&str] = &[
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "-1",
    "1e999",
    "18446744073709551616",
    "-0",
    "0.5",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"INVOKE\"",
    "\"SHUTDOWN\"",
    "\"platform.report\"",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\"requestId\"",
    "\"metrics\"",
    "NaN",
];

/// A mutation of `doc`: bytes replaced, removed, duplicated, or a token spliced in.
fn mutate_json(rng: &mut Rng, doc: &str) -> String {
    let mut b = doc.as_bytes().to_vec();
    for _ in 0..rng.below(4) + 1 {
        let at = rng.below(b.len() as u64 + 1) as usize;
        match rng.below(4) {
            0 if at < b.len() => b[at] = rng.next() as u8,
            1 if at < b.len() => {
                let end = (at + rng.below(16) as usize).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let t = JSON_TOKENS[rng.below(JSON_TOKENS.len() as u64) as usize];
                b.splice(at..at, t.bytes());
            }
            _ => {
                let end = (at + rng.below(32) as usize).min(b.len());
                let copy = b[at..end].to_vec();
                b.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn lambda_api_documents_never_panic() {
    let mut rng = Rng::new(11);
    for _ in 0..rounds(20_000) {
        let which = rng.below(2) as usize;
        let doc = mutate_json(&mut rng, NEXT_EVENTS[which]);
        match serde_json::from_str::<NextEvent>(&doc) {
            Ok(NextEvent::Invoke { request_id, .. }) => {
                assert!(doc.contains("INVOKE"), "{request_id}")
            }
            Ok(NextEvent::Shutdown { .. }) => assert!(doc.contains("SHUTDOWN")),
            Err(_) => {}
        }
        let batch = mutate_json(&mut rng, BATCHES[0]);
        for e in parse_batch(&batch) {
            let _ = format!("{e:?}");
        }
    }
    // Nesting far beyond serde_json's recursion limit is an error, not a stack overflow.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(parse_batch(&deep).is_empty());
    assert!(serde_json::from_str::<NextEvent>(&deep).is_err());
    let deep_record = format!(
        r#"[{{"type":"platform.start","record":{}}}]"#,
        "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000)
    );
    assert!(parse_batch(&deep_record).is_empty());
}

/// Printable and unprintable strings, empty and long, with the characters parsers split on.
fn setting(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "",
        " ",
        "0",
        "1",
        "-1",
        "4096",
        "4097",
        "99999999999999999999",
        "1e3",
        "0x10",
        "true",
        "false",
        "yes",
        "fail",
        "end",
        "background",
        "grpc",
        "http/protobuf",
        "http://",
        "https://",
        "localhost",
        ":",
        "/",
        ",",
        "=",
        "%",
        "%2",
        "%zz",
        "%0A",
        "%+1",
        "\u{0}",
        "\r\n",
        "é",
        "☃",
        "a=b",
        "k=%41",
        "otlp",
        "console",
        "otlp-json",
        "127.0.0.1:4317",
        "[::1]:4318",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(5) {
        if rng.chance(20) {
            let raw = rng.string(8);
            s.push_str(&String::from_utf8_lossy(&raw));
        } else {
            s.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
        }
    }
    s
}

#[test]
fn extension_settings_never_panic_and_stay_in_range() {
    const VARS: &[&str] = &[
        "NETMON_EMF",
        "NETMON_TELEMETRY_API",
        "NETMON_RINGS",
        "NETMON_RING_SLOTS",
        "NETMON_SOCKETS",
        "NETMON_FLUSH_TIMEOUT_MS",
        "NETMON_ON_ERROR",
        "NETMON_FLUSH",
        "NETMON_EXPORTERS",
        "NETMON_SHM_DIR",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ];
    let mut rng = Rng::new(13);
    for _ in 0..rounds(5_000) {
        let mut values = std::collections::HashMap::new();
        for k in VARS {
            if rng.chance(60) {
                values.insert(*k, setting(&mut rng));
            }
        }
        let (config, errors) = Config::from_env(|k| values.get(k).cloned());
        // Whatever the input, the geometry is one the region accepts.
        assert!(
            config.geometry.total_size().is_ok(),
            "{values:?} -> {config:?}"
        );
        assert!(config.flush_timeout.as_millis() >= 1);
        for e in &errors {
            assert!(!e.is_empty() && !e.contains('\n'), "{e:?}");
        }
        // AWS_LAMBDA_RUNTIME_API.
        let _ = ApiBase::from_env_value(&setting(&mut rng));
    }
}

#[test]
fn export_settings_never_panic_and_errors_are_one_line() {
    const VARS: &[&str] = &[
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_INSECURE",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ];
    let mut rng = Rng::new(17);
    for _ in 0..rounds(5_000) {
        let mut values = std::collections::HashMap::new();
        for k in VARS {
            if rng.chance(50) {
                values.insert(*k, setting(&mut rng));
            }
        }
        let flags = ExportFlags {
            exporters: rng.chance(70).then(|| setting(&mut rng)),
            otlp_json: rng.chance(20).then(|| "/nonexistent/x.jsonl".into()),
            src_port: rng.chance(50),
            cardinality_limit: rng.below(3) as usize,
            flush_timeout: std::time::Duration::from_millis(rng.below(1000)),
        };
        let env = |k: &str| values.get(k).cloned();
        if let Err(e) = export_config::resolve(&flags, &env) {
            assert!(!e.0.is_empty() && !e.0.contains('\n'), "{e:?}");
        }
        let raw = setting(&mut rng);
        if let Ok(headers) = export_config::parse_headers("H", &raw) {
            for (k, v) in headers {
                assert!(!k.is_empty() && !v.contains(['\r', '\n', '\0']), "{raw:?}");
            }
        }
        let _ = parse_resource_attributes(&raw);
    }
}

/// Percent-encodes every byte that is not unreserved.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn percent_encoded_values_round_trip_and_nothing_else_is_accepted() {
    let mut rng = Rng::new(19);
    for _ in 0..rounds(5_000) {
        let raw = rng.string(24);
        let value: String = String::from_utf8_lossy(&raw)
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
            .collect();
        let value = value.trim().to_string();
        let encoded = percent_encode(&value);
        let headers = export_config::parse_headers("H", &format!("k={encoded}")).unwrap();
        assert_eq!(headers, vec![("k".to_string(), value.clone())]);
        let attrs = parse_resource_attributes(&format!("k={encoded}")).unwrap();
        assert_eq!(attrs, vec![("k".to_string(), value)]);
    }
    // Not percent-encodings: a sign or a non-hex digit where two hex digits belong.
    for bad in ["%+1", "%-1", "%1", "%1g", "% 1", "%"] {
        assert!(
            export_config::parse_headers("H", &format!("k={bad}")).is_err(),
            "{bad}"
        );
        assert!(
            parse_resource_attributes(&format!("k={bad}")).is_err(),
            "{bad}"
        );
    }
}
