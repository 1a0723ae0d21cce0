//! Export benchmarks (run explicitly, results in BENCHMARKS.md):
//!
//! ```sh
//! cargo test --release -p netmon telemetry::bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Synthetic tracker contents go through the real pipeline: conversion, SDK aggregation, OTLP
//! encoding and gRPC delivery to a receiver in this process (opentelemetry-proto's tonic
//! service on 127.0.0.1).

use super::config::{self, ExportFlags};
use super::pipeline::{Pipeline, PipelineOptions};
use super::resource::{self, Workload};
use crate::tracker::{
    Attempt, Endpoint, Health, Outcome, Process, SocketRecord, Tracker, Transport,
};
use netmon_proto::role;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

fn pipeline(endpoint: &str, extra: &[(&str, String)]) -> Pipeline {
    let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string())];
    vars.extend(extra.iter().cloned());
    let e = env(&vars);
    let flags = ExportFlags {
        exporters: Some("otlp".into()),
        otlp_json: None,
        src_port: false,
        cardinality_limit: config::DEFAULT_CARDINALITY_LIMIT,
        flush_timeout: Duration::from_secs(30),
    };
    let cfg = config::resolve(&flags, &e).unwrap();
    let exporters = Pipeline::exporters(&cfg).unwrap();
    let (attrs, _) = resource::attributes(
        &Workload {
            executable: "bench".into(),
            pid: Some(1),
        },
        None,
        &e,
    );
    Pipeline::start(
        exporters,
        resource::build(attrs),
        cfg.temporality,
        PipelineOptions {
            metric_interval: cfg.batching.metric_interval,
            ephemeral_ports: false,
            cardinality_limit: cfg.cardinality_limit,
            traceparent: None,
        },
    )
}

fn socket(i: u32, t0: u64) -> SocketRecord {
    let mut s = SocketRecord::new(100 + i % 8, Transport::Tcp, false, role::OUTGOING);
    s.remote = Some(Endpoint {
        ip: [10, 0, (i % 50) as u8, 7].into(),
        port: 443,
    });
    s.local = Some(Endpoint {
        ip: [10, 0, 0, 5].into(),
        port: (20000 + i % 40000) as u16,
    });
    s.outcome = Outcome::Connected;
    s.attempts.push(Attempt {
        epoch: 0,
        start_ns: t0 + u64::from(i) * 1000,
        duration_ns: 300_000,
        errno: 0,
    });
    s
}

fn tracker() -> Tracker {
    let mut t = Tracker::new();
    for pid in 100..108 {
        t.processes.insert(
            pid,
            Process {
                pid,
                ppid: 1,
                executable: "bench".into(),
                forked: false,
            },
        );
    }
    t
}

/// utime + stime in a `stat` file of /proc, in seconds (fields 14 and 15, clock ticks).
fn stat_cpu_seconds(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU time of the whole process, including threads that have exited.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat".as_ref())
}

/// CPU time of this process's live threads named `name`.
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| stat_cpu_seconds(&t.path().join("stat")))
        .sum()
}

/// The receiver's threads, so that its CPU time can be told from netmon's.
const RECEIVER_THREAD: &str = "otlp-receiver";

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn receiver() -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(RECEIVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let (_, port) = super::tests::start_receiver(&rt);
    (rt, format!("http://127.0.0.1:{port}"))
}

#[test]
#[ignore = "benchmark"]
fn spans_per_second() {
    let (_rt, endpoint) = receiver();
    let n: u32 = 200_000;
    // All spans arrive in one read: the queue must hold them (the default, 16384, would drop
    // the rest, counted, which is what it is for).
    let mut p = pipeline(&endpoint, &[("OTEL_BSP_MAX_QUEUE_SIZE", "262144".into())]);
    let mut t = tracker();
    let t0 = 1_700_000_000_000_000_000;
    for i in 0..n {
        t.socket_order.push((i, 1));
        t.sockets.insert((i, 1), socket(i, t0));
    }
    let (cpu0, receiver0) = (cpu_seconds(), thread_cpu_seconds(RECEIVER_THREAD));
    let start = Instant::now();
    p.collect(&t, Health::default());
    let collected = start.elapsed();
    let report = p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_secs(120),
    );
    let total = start.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let receiver = thread_cpu_seconds(RECEIVER_THREAD) - receiver0;
    // netmon's side: the calling thread (conversion) and the export worker (encoding and
    // sending), i.e. everything but the receiver.
    let netmon = cpu - receiver;
    let spans = report[0].spans_exported;
    assert_eq!(spans, u64::from(n) + 8, "{report:?}");
    let per = |secs: f64| spans as f64 / secs.max(0.001);
    println!(
        "spans: {spans} converted+exported over gRPC in {:.3} s = {:.0} spans/s (conversion {:.3} s = {:.0} spans/s); CPU: netmon {netmon:.2} s = {:.0} spans per CPU-second, receiver {receiver:.2} s = {:.0} spans per CPU-second",
        total.as_secs_f64(),
        per(total.as_secs_f64()),
        collected.as_secs_f64(),
        per(collected.as_secs_f64()),
        per(netmon),
        per(receiver),
    );
}

#[test]
#[ignore = "benchmark"]
fn flow_events_per_second() {
    let (_rt, endpoint) = receiver();
    let sockets: u32 = 2_000;
    let rounds: u64 = 1_000;
    let mut p = pipeline(&endpoint, &[]);
    let mut t = tracker();
    let t0 = 1_700_000_000_000_000_000;
    for i in 0..sockets {
        t.socket_order.push((i, 1));
        t.sockets.insert((i, 1), socket(i, t0));
    }
    p.collect(&t, Health::default());
    let start = Instant::now();
    for r in 1..=rounds {
        for s in t.sockets.values_mut() {
            s.bytes_sent = r * 100;
            s.bytes_received = r * 1000;
        }
        p.collect(&t, Health::default());
    }
    let aggregated = start.elapsed();
    let report = p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_secs(60),
    );
    let events = u64::from(sockets) * rounds;
    println!(
        "flow events: {events} socket updates aggregated in {:.3} s on the calling thread = {:.0} events/s; {} metric points exported",
        aggregated.as_secs_f64(),
        events as f64 / aggregated.as_secs_f64(),
        report[0].metric_points_exported
    );
}

#[test]
#[ignore = "benchmark"]
fn memory_during_a_60s_outage() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let secs: u64 = std::env::var("NETMON_BENCH_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let rate: u32 = 10_000;
    let mut p = pipeline(&endpoint, &[("OTEL_METRIC_EXPORT_INTERVAL", "5000".into())]);
    let mut t = tracker();
    let t0 = 1_700_000_000_000_000_000;
    let mut max_rss: f64 = 0.0;
    let start = Instant::now();
    let mut next = 0u32;
    for second in 0..secs {
        // Every 20 ms (the poll interval), 200 new connections: 10,000 events/s. Sockets
        // closed and read are removed again, as a long-running tracker must.
        for _ in 0..50 {
            for _ in 0..rate / 50 {
                let mut s = socket(next, t0);
                s.bytes_sent = 500;
                s.bytes_received = 5000;
                s.close_ns = Some(t0 + u64::from(next) * 1000 + 1);
                t.socket_order.push((next, 1));
                t.sockets.insert((next, 1), s);
                next += 1;
            }
            p.collect(&t, Health::default());
            t.sockets.retain(|k, _| k.0 + rate / 10 > next);
            std::thread::sleep(Duration::from_millis(20));
        }
        max_rss = max_rss.max(rss_mib());
        if second % 10 == 9 {
            println!("outage {}s: RSS {:.1} MiB", second + 1, rss_mib());
        }
    }
    let report = p.report();
    println!(
        "outage: {secs} s at {rate} events/s to an unreachable receiver: max RSS {max_rss:.1} MiB, {} spans dropped (counted), {} failed requests, elapsed {:.1} s",
        report[0].spans_dropped,
        report[0].failed_requests,
        start.elapsed().as_secs_f64()
    );
    assert!(max_rss <= 64.0, "RSS {max_rss} MiB");
    let _ = p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_millis(500),
    );
}
