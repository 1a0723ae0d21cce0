//! Pipeline tests against real receivers in the test process: the otlp-json file read back
//! through `opentelemetry-proto`'s types, and an OTLP/gRPC server made from its generated
//! tonic services.

use super::config::{self, ExportFlags};
use super::pipeline::{Pipeline, PipelineOptions};
use super::resource::{self, Workload};
use crate::tracker::{
    Attempt, DnsLookup, DnsSource, Endpoint, Health, Outcome, Process, SocketRecord, Tracker,
    Transport,
};
use netmon_proto::role;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

fn pipeline(flags: ExportFlags, vars: &[(&str, &str)]) -> Pipeline {
    let cfg = config::resolve(&flags, &env(vars)).unwrap();
    let exporters = Pipeline::exporters(&cfg).unwrap();
    let (attrs, _) = resource::attributes(
        &Workload {
            executable: "client".into(),
            pid: Some(100),
        },
        Some("testhost"),
        &env(vars),
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

fn flags(exporters: &str, json: Option<&std::path::Path>) -> ExportFlags {
    ExportFlags {
        exporters: Some(exporters.into()),
        otlp_json: json.map(|p| p.to_path_buf()),
        src_port: false,
        cardinality_limit: 100,
        flush_timeout: Duration::from_secs(5),
    }
}

const T0: u64 = 1_700_000_000_000_000_000;

/// A process that resolves a name and keeps one connection open across two reads.
fn workload(t: &mut Tracker, sent: u64, received: u64, closed: bool) {
    t.processes.entry(100).or_insert(Process {
        pid: 100,
        ppid: 1,
        executable: "client".into(),
        forked: false,
    });
    if t.lookups.is_empty() {
        t.lookups.push(DnsLookup {
            pid: 100,
            tid: 100,
            epoch: 0,
            name: "api.example.internal".into(),
            source: DnsSource::Getaddrinfo,
            start_ns: T0,
            duration_ns: 2_000_000,
            answers: vec!["10.0.3.7".parse().unwrap()],
            rcode: 0,
            error: None,
        });
    }
    let key = (1, 1);
    if !t.sockets.contains_key(&key) {
        t.socket_order.push(key);
        let mut s = SocketRecord::new(100, Transport::Tcp, false, role::OUTGOING);
        s.remote = Some(Endpoint {
            ip: "10.0.3.7".parse().unwrap(),
            port: 443,
        });
        s.local = Some(Endpoint {
            ip: "10.0.0.5".parse().unwrap(),
            port: 40000,
        });
        s.outcome = Outcome::Connected;
        s.attempts.push(Attempt {
            epoch: 0,
            start_ns: T0 + 3_000_000,
            duration_ns: 500_000,
            errno: 0,
        });
        t.sockets.insert(key, s);
        // A refused attempt to another port.
        t.socket_order.push((2, 1));
        let mut f = SocketRecord::new(100, Transport::Tcp, false, role::OUTGOING);
        f.remote = Some(Endpoint {
            ip: "10.0.3.7".parse().unwrap(),
            port: 9,
        });
        f.outcome = Outcome::Failed(111);
        f.close_ns = Some(T0 + 5_000_000);
        f.attempts.push(Attempt {
            epoch: 0,
            start_ns: T0 + 4_000_000,
            duration_ns: 100_000,
            errno: 111,
        });
        t.sockets.insert((2, 1), f);
    }
    let s = t.sockets.get_mut(&key).unwrap();
    s.bytes_sent = sent;
    s.bytes_received = received;
    if closed {
        s.close_ns = Some(T0 + 9_000_000);
        s.rtt_us = Some(250);
        s.rtt_var_us = Some(40);
        s.retransmits = Some(2);
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Sum of a counter's data points (delta temporality) over all requests.
fn sum_of(requests: &[ExportMetricsServiceRequest], name: &str) -> i64 {
    metrics_named(requests, name)
        .filter_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => Some(s.data_points.iter().map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                Some(number_data_point::Value::AsDouble(v)) => v as i64,
                None => 0,
            })),
            _ => None,
        })
        .flatten()
        .sum()
}

fn metrics_named<'a>(
    requests: &'a [ExportMetricsServiceRequest],
    name: &'a str,
) -> impl Iterator<Item = &'a Metric> + 'a {
    requests
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(move |m| m.name == name)
}

#[test]
fn otlp_json_file_round_trips_through_proto_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut p = pipeline(
        flags("otlp-json", Some(&path)),
        &[("OTEL_BSP_SCHEDULE_DELAY", "10")],
    );
    let mut t = Tracker::new();
    workload(&mut t, 1000, 5000, false);
    p.collect(&t, Health::default());
    // Long-lived connection: more bytes before the next read, then closed.
    workload(&mut t, 1500, 9000, true);
    p.collect(&t, Health::default());
    assert!(p.flush(Instant::now() + Duration::from_secs(5)));
    workload(&mut t, 1600, 9000, true);
    let report = p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(report[0].spans_dropped, 0);

    let text = std::fs::read_to_string(&path).unwrap();
    let mut traces = Vec::new();
    let mut metrics = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v.get("resourceSpans").is_some() {
            let r: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
            // Round trip: the proto types write the same JSON back.
            assert_eq!(serde_json::to_value(&r).unwrap(), v);
            traces.push(r);
        } else {
            let r: ExportMetricsServiceRequest = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_value(&r).unwrap(), v);
            metrics.push(r);
        }
    }
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let by_name = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let (dns, connects, roots) = (
        by_name("dns.lookup"),
        by_name("connect"),
        by_name("process"),
    );
    assert_eq!((dns.len(), connects.len(), roots.len()), (1, 2, 1));
    let root = roots[0];
    assert!(root.parent_span_id.is_empty());
    for s in dns.iter().chain(connects.iter()) {
        assert_eq!(s.trace_id, root.trace_id);
        assert_eq!(s.parent_span_id, root.span_id);
    }
    let ok = connects
        .iter()
        .find(|s| str_attr(&s.attributes, "error.type").is_none())
        .unwrap();
    assert_eq!(
        str_attr(&ok.attributes, "peer.service").as_deref(),
        Some("api.example.internal")
    );
    assert_eq!(ok.start_time_unix_nano, T0 + 3_000_000);
    assert_eq!(ok.end_time_unix_nano, T0 + 3_500_000);
    let failed = connects
        .iter()
        .find(|s| str_attr(&s.attributes, "error.type").as_deref() == Some("ECONNREFUSED"))
        .unwrap();
    assert_eq!(failed.status.as_ref().unwrap().code, 2);
    let resource = traces[0].resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        str_attr(&resource.attributes, "service.name").as_deref(),
        Some("client")
    );

    // Deltas add up to the socket's totals, across reads of a long-lived connection.
    assert_eq!(sum_of(&metrics, "netflow.bytes_written"), 1600);
    assert_eq!(sum_of(&metrics, "netflow.bytes_read"), 9000);
    assert_eq!(sum_of(&metrics, "netflow.tcp_established"), 1);
    assert_eq!(sum_of(&metrics, "netflow.tcp_closed"), 1);
    assert_eq!(sum_of(&metrics, "netflow.retransmits"), 2);
    assert_eq!(sum_of(&metrics, "netflow.tcp_failed"), 1);
    assert_eq!(sum_of(&metrics, "dnsflow.count"), 1);
    let written = metrics_named(&metrics, "netflow.bytes_written")
        .next()
        .unwrap();
    let Some(metric::Data::Sum(s)) = &written.data else {
        panic!("not a sum")
    };
    assert_eq!(s.aggregation_temporality, 1, "delta by default");
    let point = &s.data_points[0];
    assert_eq!(
        str_attr(&point.attributes, "dst_domain").as_deref(),
        Some("api.example.internal")
    );
    assert_eq!(
        str_attr(&point.attributes, "dst_ip_type").as_deref(),
        Some("private")
    );
    assert!(matches!(
        attr(&point.attributes, "dst_port"),
        Some(any_value::Value::IntValue(443))
    ));
    assert!(attr(&point.attributes, "src_port").is_none());
}

#[derive(Clone, Default)]
pub(super) struct Receiver {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

pub(super) fn start_receiver(rt: &tokio::runtime::Runtime) -> (Receiver, u16) {
    let recv = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let svc = recv.clone();
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(svc.clone()))
            .add_service(MetricsServiceServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (recv, port)
}

#[test]
fn grpc_receiver_gets_spans_and_cumulative_metrics_during_the_run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (recv, port) = start_receiver(&rt);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut p = pipeline(
        flags("otlp", None),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "cumulative",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "50"),
        ],
    );
    let mut t = Tracker::new();
    workload(&mut t, 100, 200, false);
    p.collect(&t, Health::default());
    // Exports happen in the background while the program runs, not only at the end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recv.traces.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        p.collect(&t, Health::default());
    }
    assert!(!recv.traces.lock().unwrap().is_empty());
    workload(&mut t, 300, 700, true);
    let report = p.shutdown(
        &t,
        Health {
            events_dropped: 3,
            records_rejected: 0,
            sockets_untracked: 0,
        },
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(report[0].spans_dropped + report[0].metric_points_dropped, 0);
    let metrics = recv.metrics.lock().unwrap().clone();
    let last = metrics.last().unwrap().clone();
    // Cumulative: the last collection carries the totals.
    assert_eq!(
        sum_of(std::slice::from_ref(&last), "netflow.bytes_written"),
        300
    );
    assert_eq!(
        sum_of(std::slice::from_ref(&last), "netflow.bytes_read"),
        700
    );
    assert_eq!(
        sum_of(std::slice::from_ref(&last), "netmon.events_dropped"),
        3
    );
    let s = metrics_named(std::slice::from_ref(&last), "netflow.bytes_read")
        .next()
        .unwrap();
    let Some(metric::Data::Sum(sum)) = &s.data else {
        panic!("not a sum")
    };
    assert_eq!(sum.aggregation_temporality, 2);
    let spans: usize = recv
        .traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, 4, "dns, two connects, the process");
    drop(rt);
}

#[test]
fn unreachable_receiver_never_blocks_and_losses_are_counted() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut p = pipeline(
        flags("otlp", None),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ],
    );
    let mut t = Tracker::new();
    workload(&mut t, 100, 200, true);
    let started = Instant::now();
    for _ in 0..10 {
        p.collect(&t, Health::default());
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "collect blocked"
    );
    let started = Instant::now();
    let report = p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_millis(800),
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown overran its deadline: {:?}",
        started.elapsed()
    );
    let r = &report[0];
    assert_eq!(r.spans_exported, 0);
    // Four spans were made; the queue holds two: the rest were dropped, and what was
    // still queued at the deadline too.
    assert_eq!(r.spans_dropped, 4, "{r:?}");
    assert!(r.metric_points_dropped > 0, "{r:?}");
    assert!(r.failed_requests > 0, "{r:?}");
}

/// Lambda: a DNS span of each invocation epoch joins that invocation's trace — the X-Ray
/// parent when given, its own `invocation` root span otherwise — and an unsampled invocation
/// exports no spans.
#[test]
fn lambda_invocations_get_their_own_traces() {
    use super::pipeline::RemoteParent;
    use opentelemetry::trace::{SpanId, TraceId};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let mut p = pipeline(flags("otlp-json", Some(&path)), &[]);
    let mut t = Tracker::new();
    let xray = RemoteParent {
        trace_id: TraceId::from(0x5759e988bd862e3fe1be46a994272793_u128),
        span_id: Some(SpanId::from(0x53995c3f42cd8ad8_u64)),
        sampled: true,
    };
    let unsampled = RemoteParent {
        trace_id: TraceId::from(0x1111_u128),
        span_id: Some(SpanId::from(0x22_u64)),
        sampled: false,
    };
    p.begin_invocation(0, None, None, true, T0);
    p.begin_invocation(1, Some("req-1"), Some(xray), true, T0 + 10);
    p.begin_invocation(2, Some("req-2"), None, false, T0 + 20);
    p.begin_invocation(3, Some("req-3"), Some(unsampled), false, T0 + 30);
    for epoch in 0..4u32 {
        t.lookups.push(DnsLookup {
            pid: 100,
            tid: 100,
            epoch,
            name: format!("e{epoch}.example"),
            source: DnsSource::Getaddrinfo,
            start_ns: T0 + 10 * epoch as u64 + 1,
            duration_ns: 5,
            answers: vec![],
            rcode: 0,
            error: None,
        });
    }
    p.collect(&t, Health::default());
    for epoch in 0..4 {
        p.end_invocation(epoch, T0 + 10 * epoch as u64 + 9);
    }
    p.shutdown(
        &t,
        Health::default(),
        Instant::now() + Duration::from_secs(5),
    );

    let mut spans = Vec::new();
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        if line.contains("resourceSpans") {
            let r: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
            spans.extend(
                r.resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans),
            );
        }
    }
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let dns = named("dns.lookup");
    assert_eq!(
        dns.len(),
        3,
        "the unsampled invocation's lookup is not exported"
    );
    let x = dns
        .iter()
        .find(|s| s.trace_id == xray.trace_id.to_bytes().to_vec())
        .expect("the X-Ray invocation's lookup");
    assert_eq!(
        x.parent_span_id,
        0x53995c3f42cd8ad8_u64.to_be_bytes().to_vec()
    );
    let inv = named("invocation");
    assert_eq!(
        inv.len(),
        1,
        "one root span, for the invocation without a header"
    );
    let own = dns
        .iter()
        .find(|s| s.trace_id == inv[0].trace_id)
        .expect("the lookup under the invocation root");
    assert_eq!(own.parent_span_id, inv[0].span_id);
    let ids: Vec<String> = inv[0]
        .attributes
        .iter()
        .filter(|kv| kv.key == "faas.invocation_id")
        .filter_map(|kv| match &kv.value.as_ref()?.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["req-2"]);
    let init = named("init");
    assert_eq!(init.len(), 1);
    assert!(dns.iter().any(|s| s.trace_id == init[0].trace_id));
    assert!(
        named("process").is_empty(),
        "no process root spans in Lambda"
    );
}
