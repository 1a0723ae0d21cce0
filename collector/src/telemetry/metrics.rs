//! The OpenTelemetry SDK side of the metrics: a meter provider read on demand (so the export
//! pipeline decides when, and keeps what it could not deliver), the instruments of
//! [`schema`](super::schema), the cardinality limit with its overflow data point, and the
//! hand-over of accumulated flows to the instruments at each export.

use super::config::Temporality;
use super::flows::{Aggregates, Names, dns_attributes, flow_attributes};
use super::schema::{self, MetricName};
use super::spans::scope;
use crate::names;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A [`ManualReader`] the pipeline keeps a handle to while the provider owns a copy.
#[derive(Clone, Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> opentelemetry_sdk::metrics::Temporality {
        self.0.temporality(kind)
    }
}

fn sdk_temporality(t: Temporality) -> opentelemetry_sdk::metrics::Temporality {
    match t {
        Temporality::Delta => opentelemetry_sdk::metrics::Temporality::Delta,
        Temporality::Cumulative => opentelemetry_sdk::metrics::Temporality::Cumulative,
        Temporality::LowMemory => opentelemetry_sdk::metrics::Temporality::LowMemory,
    }
}

/// The most an integer sum can carry over OTLP: `as_int` is an `i64` (the SDK exports a
/// larger `u64` as 0).
const SUM_LIMIT: u64 = i64::MAX as u64;

/// A run-wide budget for what one instrument is given: its sums — in every series, over the
/// whole run (cumulative temporality) — then stay within [`SUM_LIMIT`], saturated, where the
/// SDK would wrap (or panic, in a debug build). The values come from the region, any
/// monitored process's to write; honest data never comes near (8 EiB).
#[derive(Debug, Default)]
struct Budget(AtomicU64);

impl Budget {
    /// How much of `value` may be recorded: all of it, or what is left.
    fn take(&self, value: u64) -> u64 {
        let mut granted = 0;
        // The closure always returns `Some`: the update cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                granted = value.min(SUM_LIMIT - used);
                Some(used + granted)
            });
        granted
    }
}

/// A counter of values from the region, within a [`Budget`].
struct RegionCounter {
    counter: Counter<u64>,
    budget: Budget,
}

impl RegionCounter {
    fn new(m: &Meter, n: MetricName) -> RegionCounter {
        RegionCounter {
            counter: counter(m, n),
            budget: Budget::default(),
        }
    }

    fn add(&self, value: u64, attrs: &[KeyValue]) {
        self.counter.add(self.budget.take(value), attrs);
    }
}

/// Export-side health counts to publish: per (exporter, signal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportHealth {
    pub failures: u64,
    pub dropped: u64,
    pub rejected: u64,
}

/// The instruments, and the provider/reader they report through.
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: SharedReader,
    bytes_written: RegionCounter,
    bytes_read: RegionCounter,
    established: Counter<u64>,
    closed: Counter<u64>,
    failed: Counter<u64>,
    retransmits: RegionCounter,
    rtt: Gauge<f64>,
    rtt_var: Gauge<f64>,
    dns_count: Counter<u64>,
    dns_latency: Histogram<f64>,
    dns_latency_max: Gauge<f64>,
    net_io: Histogram<u64>,
    /// Of `net_io`'s sum (per-invocation bytes: sums of region counters).
    net_io_budget: Budget,
    events_dropped: RegionCounter,
    records_rejected: RegionCounter,
    sockets_untracked: RegionCounter,
    export_failures: Counter<u64>,
    export_dropped: Counter<u64>,
    export_rejected: Counter<u64>,
    /// The kernel metrics (`crate::kernel`): counters by name, and the connection count.
    kernel_counters: HashMap<&'static str, Counter<u64>>,
    connection_count: UpDownCounter<i64>,
}

fn counter(m: &Meter, n: MetricName) -> Counter<u64> {
    m.u64_counter(n.name)
        .with_unit(n.unit)
        .with_description(n.description)
        .build()
}

fn gauge(m: &Meter, n: MetricName) -> Gauge<f64> {
    m.f64_gauge(n.name)
        .with_unit(n.unit)
        .with_description(n.description)
        .build()
}

impl Metrics {
    pub fn new(resource: Resource, temporality: Temporality, cardinality_limit: usize) -> Metrics {
        let reader = SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(sdk_temporality(temporality))
                .build(),
        ));
        let limit = cardinality_limit.max(1);
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader.clone())
            .with_view(move |_: &Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            })
            .build();
        let m = provider.meter_with_scope(scope());
        Metrics {
            bytes_written: RegionCounter::new(&m, schema::NETFLOW_BYTES_WRITTEN),
            bytes_read: RegionCounter::new(&m, schema::NETFLOW_BYTES_READ),
            established: counter(&m, schema::NETFLOW_TCP_ESTABLISHED),
            closed: counter(&m, schema::NETFLOW_TCP_CLOSED),
            failed: counter(&m, schema::NETFLOW_TCP_FAILED),
            retransmits: RegionCounter::new(&m, schema::NETFLOW_RETRANSMITS),
            rtt: gauge(&m, schema::NETFLOW_RTT),
            rtt_var: gauge(&m, schema::NETFLOW_RTT_VAR),
            dns_count: counter(&m, schema::DNSFLOW_COUNT),
            dns_latency: m
                .f64_histogram(schema::DNSFLOW_LATENCY.name)
                .with_unit(schema::DNSFLOW_LATENCY.unit)
                .with_description(schema::DNSFLOW_LATENCY.description)
                .with_boundaries(schema::DNS_LATENCY_BUCKETS.to_vec())
                .build(),
            dns_latency_max: gauge(&m, schema::DNSFLOW_LATENCY_MAX),
            net_io: m
                .u64_histogram(schema::FAAS_NET_IO.name)
                .with_unit(schema::FAAS_NET_IO.unit)
                .with_description(schema::FAAS_NET_IO.description)
                .with_boundaries(schema::FAAS_NET_IO_BUCKETS.to_vec())
                .build(),
            net_io_budget: Budget::default(),
            events_dropped: RegionCounter::new(&m, schema::NETMON_EVENTS_DROPPED),
            records_rejected: RegionCounter::new(&m, schema::NETMON_RECORDS_REJECTED),
            sockets_untracked: RegionCounter::new(&m, schema::NETMON_SOCKETS_UNTRACKED),
            export_failures: counter(&m, schema::NETMON_EXPORT_FAILURES),
            export_dropped: counter(&m, schema::NETMON_EXPORT_DROPPED),
            export_rejected: counter(&m, schema::NETMON_EXPORT_REJECTED),
            kernel_counters: schema::KERNEL_COUNTERS
                .iter()
                .map(|n| (n.name, counter(&m, *n)))
                .collect(),
            connection_count: m
                .i64_up_down_counter(schema::SYSTEM_NETWORK_CONNECTION_COUNT.name)
                .with_unit(schema::SYSTEM_NETWORK_CONNECTION_COUNT.unit)
                .with_description(schema::SYSTEM_NETWORK_CONNECTION_COUNT.description)
                .build(),
            provider,
            reader,
        }
    }

    /// Hands the accumulated flows and lookups to the instruments and empties them.
    pub fn publish(&self, agg: &mut Aggregates, names: &Names, processes: &HashMap<u32, String>) {
        let pname = |pid: u32| processes.get(&pid).map(String::as_str);
        for (k, a) in agg.flows.drain() {
            let attrs = flow_attributes(&k, names, pname(k.pid));
            if a.bytes_written > 0 {
                self.bytes_written.add(a.bytes_written, &attrs);
            }
            if a.bytes_read > 0 {
                self.bytes_read.add(a.bytes_read, &attrs);
            }
            if a.established > 0 {
                self.established.add(a.established, &attrs);
            }
            if a.closed > 0 {
                self.closed.add(a.closed, &attrs);
            }
            if a.retransmits > 0 {
                self.retransmits.add(a.retransmits, &attrs);
            }
            if a.rtt_n > 0 {
                self.rtt.record(a.rtt_sum / a.rtt_n as f64, &attrs);
                self.rtt_var.record(a.rtt_var_sum / a.rtt_n as f64, &attrs);
            }
            for (errno, n) in a.failed {
                let mut with_error = attrs.clone();
                if !k.overflow {
                    with_error.push(KeyValue::new(
                        schema::TAG_ERROR_TYPE,
                        names::errno_name(errno),
                    ));
                }
                self.failed.add(n, &with_error);
            }
        }
        for (k, a) in agg.dns.drain() {
            let attrs = dns_attributes(&k, names, pname(k.pid));
            self.dns_count.add(a.count, &attrs);
            for l in a.latencies {
                self.dns_latency.record(l, &attrs);
            }
            self.dns_latency_max.record(a.max, &attrs);
        }
        agg.overflowed = 0;
    }

    /// The kernel metrics' changes since the last export.
    pub fn publish_kernel(&self, deltas: &[crate::kernel::MetricDelta]) {
        for d in deltas {
            let attrs: Vec<KeyValue> = d
                .attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.clone()))
                .collect();
            match d.kind {
                crate::kernel::MetricKind::UpDownCounter => {
                    self.connection_count.add(d.delta, &attrs)
                }
                crate::kernel::MetricKind::Counter => {
                    if let (Some(c), Ok(v)) = (
                        self.kernel_counters.get(d.metric.name),
                        u64::try_from(d.delta),
                    ) {
                        c.add(v, &attrs);
                    }
                }
            }
        }
    }

    /// One Lambda invocation's socket-level bytes (`faas.net_io`).
    pub fn record_invocation(&self, sent: u64, received: u64) {
        for (direction, bytes) in [("transmit", sent), ("receive", received)] {
            self.net_io.record(
                self.net_io_budget.take(bytes),
                &[KeyValue::new(schema::NETWORK_IO_DIRECTION, direction)],
            );
        }
    }

    /// netmon's own health: region losses since the last call. Zeros are recorded too, so a
    /// healthy run reports 0 rather than nothing (dashboards and alerts tell the two apart).
    pub fn publish_region_health(&self, dropped: u64, rejected: u64, untracked: u64) {
        self.events_dropped.add(dropped, &[]);
        self.records_rejected.add(rejected, &[]);
        self.sockets_untracked.add(untracked, &[]);
    }

    /// netmon's own health: export problems since the last call (zeros too, as above).
    pub fn publish_export_health(
        &self,
        exporter: &'static str,
        signal: &'static str,
        h: &ExportHealth,
    ) {
        let attrs = [
            KeyValue::new(schema::TAG_EXPORTER, exporter),
            KeyValue::new(schema::TAG_SIGNAL, signal),
        ];
        self.export_failures.add(h.failures, &attrs);
        self.export_dropped.add(h.dropped, &attrs);
        self.export_rejected.add(h.rejected, &attrs);
    }

    /// Reads the instruments: with delta temporality, what changed since the last call.
    pub fn collect(&self) -> Option<ResourceMetrics> {
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm).ok()?;
        (data_points(&rm) > 0).then_some(rm)
    }

    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// Data points in a collection (what the export queue bounds).
pub fn data_points(rm: &ResourceMetrics) -> usize {
    rm.scope_metrics()
        .flat_map(|s| s.metrics())
        .map(|m| match m.data() {
            AggregatedMetrics::F64(d) => points(d),
            AggregatedMetrics::U64(d) => points(d),
            AggregatedMetrics::I64(d) => points(d),
        })
        .sum()
}

fn points<T>(d: &MetricData<T>) -> usize {
    match d {
        MetricData::Gauge(g) => g.data_points().count(),
        MetricData::Sum(s) => s.data_points().count(),
        MetricData::Histogram(h) => h.data_points().count(),
        MetricData::ExponentialHistogram(h) => h.data_points().count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{DEFAULT_INTERVAL, KernelMonitor, KernelOptions, MetricDelta};
    use crate::telemetry::flows::{DnsKey, FlowKey};
    use crate::tracker::{Direction, Tracker, Transport};
    use schema::Kind;
    use std::collections::HashSet;
    use std::net::IpAddr;

    /// The instrument and the attribute keys of each data point of a metric.
    fn shape<T>(d: &MetricData<T>) -> (Kind, Vec<String>) {
        let keys = |it: &mut dyn Iterator<Item = &KeyValue>| -> Vec<String> {
            it.map(|kv| kv.key.to_string()).collect()
        };
        match d {
            MetricData::Gauge(g) => (
                Kind::Gauge,
                g.data_points()
                    .flat_map(|p| keys(&mut p.attributes()))
                    .collect(),
            ),
            MetricData::Sum(s) => (
                if s.is_monotonic() {
                    Kind::Counter
                } else {
                    Kind::UpDownCounter
                },
                s.data_points()
                    .flat_map(|p| keys(&mut p.attributes()))
                    .collect(),
            ),
            MetricData::Histogram(h) => (
                Kind::Histogram,
                h.data_points()
                    .flat_map(|p| keys(&mut p.attributes()))
                    .collect(),
            ),
            MetricData::ExponentialHistogram(_) => {
                panic!("netmon records no exponential histogram")
            }
        }
    }

    /// What the SDK exports is what `schema` says — the list the dashboards are checked
    /// against: every metric is declared, recorded with the declared instrument, and carries
    /// only declared attributes (plus the overflow marker).
    #[test]
    fn exported_metrics_match_the_schema() {
        let m = Metrics::new(
            Resource::builder_empty().build(),
            Temporality::Cumulative,
            100,
        );
        let mut names = Names::default();
        let domain = names.intern("api.example.com");
        let mut agg = Aggregates::new(100);
        let out = agg.flow(FlowKey {
            direction: Direction::Outgoing,
            transport: Transport::Tcp,
            src_ip: Some(IpAddr::from([10, 0, 0, 5])),
            src_port: None,
            dst_ip: IpAddr::from([93, 184, 216, 34]),
            dst_port: Some(443),
            pid: 7,
            domain: Some(domain),
            overflow: false,
        });
        out.bytes_written = 10;
        out.bytes_read = 20;
        out.established = 1;
        out.closed = 1;
        out.retransmits = 2;
        out.rtt_sum = 200.0;
        out.rtt_var_sum = 20.0;
        out.rtt_n = 1;
        out.fail(111);
        let incoming = agg.flow(FlowKey {
            direction: Direction::Incoming,
            transport: Transport::Tcp,
            src_ip: Some(IpAddr::from([10, 0, 0, 5])),
            src_port: Some(8080),
            dst_ip: IpAddr::from([10, 0, 0, 9]),
            dst_port: None,
            pid: 7,
            domain: None,
            overflow: false,
        });
        incoming.bytes_read = 5;
        agg.lookup(
            DnsKey {
                domain,
                rcode: 3,
                pid: 7,
                overflow: false,
            },
            0.002,
        );
        m.publish(
            &mut agg,
            &names,
            &HashMap::from([(7, "python3".to_string())]),
        );
        let mut kernel = KernelMonitor::new(&KernelOptions {
            root: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../procnet/tests/fixtures/root"),
            interval: DEFAULT_INTERVAL,
        });
        kernel.finish(&Tracker::new());
        // Every point the fixture gives, as a change (unchanged counters are not exported).
        let deltas: Vec<MetricDelta> = kernel
            .take_metric_points()
            .unwrap()
            .into_iter()
            .map(|p| MetricDelta {
                metric: p.metric,
                kind: p.kind,
                attributes: p.attributes,
                delta: 1,
            })
            .collect();
        m.publish_kernel(&deltas);
        m.publish_region_health(1, 0, 0);
        m.publish_export_health("otlp", "traces", &ExportHealth::default());
        m.record_invocation(100, 200);

        let rm = m.collect().unwrap();
        let mut seen = HashSet::new();
        for metric in rm.scope_metrics().flat_map(|s| s.metrics()) {
            let declared = schema::ALL_METRICS
                .iter()
                .find(|d| d.name == metric.name())
                .unwrap_or_else(|| panic!("{} is not in the schema", metric.name()));
            let (kind, keys) = match metric.data() {
                AggregatedMetrics::F64(d) => shape(d),
                AggregatedMetrics::U64(d) => shape(d),
                AggregatedMetrics::I64(d) => shape(d),
            };
            assert_eq!(kind, declared.kind, "{}", declared.name);
            for k in keys {
                assert!(
                    declared.attributes.contains(&k.as_str()) || k == schema::OVERFLOW_ATTRIBUTE,
                    "{} carries {k}, which the schema does not list",
                    declared.name
                );
            }
            seen.insert(declared.name);
        }
        for d in schema::ALL_METRICS {
            assert!(seen.contains(d.name), "{} was not exercised", d.name);
        }
    }

    #[test]
    fn a_budget_gives_what_is_left_of_what_otlp_carries() {
        let b = Budget::default();
        assert_eq!(b.take(5), 5);
        assert_eq!(b.take(u64::MAX), SUM_LIMIT - 5);
        assert_eq!(b.take(1), 0);
        assert_eq!(b.take(0), 0);
    }
}
