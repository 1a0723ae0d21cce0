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
    bytes_written: Counter<u64>,
    bytes_read: Counter<u64>,
    established: Counter<u64>,
    closed: Counter<u64>,
    failed: Counter<u64>,
    retransmits: Counter<u64>,
    rtt: Gauge<f64>,
    rtt_var: Gauge<f64>,
    dns_count: Counter<u64>,
    dns_latency: Histogram<f64>,
    dns_latency_max: Gauge<f64>,
    events_dropped: Counter<u64>,
    records_rejected: Counter<u64>,
    sockets_untracked: Counter<u64>,
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
            bytes_written: counter(&m, schema::NETFLOW_BYTES_WRITTEN),
            bytes_read: counter(&m, schema::NETFLOW_BYTES_READ),
            established: counter(&m, schema::NETFLOW_TCP_ESTABLISHED),
            closed: counter(&m, schema::NETFLOW_TCP_CLOSED),
            failed: counter(&m, schema::NETFLOW_TCP_FAILED),
            retransmits: counter(&m, schema::NETFLOW_RETRANSMITS),
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
            events_dropped: counter(&m, schema::NETMON_EVENTS_DROPPED),
            records_rejected: counter(&m, schema::NETMON_RECORDS_REJECTED),
            sockets_untracked: counter(&m, schema::NETMON_SOCKETS_UNTRACKED),
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

    /// netmon's own health: region losses since the last call.
    pub fn publish_region_health(&self, dropped: u64, rejected: u64, untracked: u64) {
        if dropped > 0 {
            self.events_dropped.add(dropped, &[]);
        }
        if rejected > 0 {
            self.records_rejected.add(rejected, &[]);
        }
        if untracked > 0 {
            self.sockets_untracked.add(untracked, &[]);
        }
    }

    /// netmon's own health: export problems since the last call.
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
        if h.failures > 0 {
            self.export_failures.add(h.failures, &attrs);
        }
        if h.dropped > 0 {
            self.export_dropped.add(h.dropped, &attrs);
        }
        if h.rejected > 0 {
            self.export_rejected.add(h.rejected, &attrs);
        }
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
