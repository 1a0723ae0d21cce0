//! Every name netmon puts on the wire: metric names and units, attribute keys, span names and
//! the instrumentation scope. Dashboards and tests check against this one module.
//!
//! Span attributes use OpenTelemetry semantic-convention keys; netflow/dnsflow metric tags use
//! the short netflow names (`src_ip`, `dst_port`, ...) of DESIGN §6.

use opentelemetry_semantic_conventions::attribute as semconv;
use opentelemetry_semantic_conventions::metric as semconv_metric;

/// Instrumentation scope of everything netmon exports.
pub const SCOPE_NAME: &str = "netmon";

// ------------------------------------------------------------------ span names (low cardinality)

/// A name lookup (getaddrinfo, gethostbyname, DNS datagrams).
pub const SPAN_DNS_LOOKUP: &str = "dns.lookup";
/// An outgoing connection attempt (one `connect` call and its outcome).
pub const SPAN_CONNECT: &str = "connect";
/// An accepted connection (one `accept` call).
pub const SPAN_ACCEPT: &str = "accept";
/// The root span of a monitored process.
pub const SPAN_PROCESS: &str = "process";
/// The root span of a Lambda invocation, when Lambda gave no X-Ray header to join.
pub const SPAN_INVOCATION: &str = "invocation";
/// The root span of a Lambda environment's init phase.
pub const SPAN_INIT: &str = "init";

// ------------------------------------------------------------------ span attributes (semconv)

pub const DNS_QUESTION_NAME: &str = semconv::DNS_QUESTION_NAME;
pub const DNS_ANSWERS: &str = semconv::DNS_ANSWERS;
pub const ERROR_TYPE: &str = semconv::ERROR_TYPE;
pub const NETWORK_PEER_ADDRESS: &str = semconv::NETWORK_PEER_ADDRESS;
pub const NETWORK_PEER_PORT: &str = semconv::NETWORK_PEER_PORT;
pub const NETWORK_LOCAL_ADDRESS: &str = semconv::NETWORK_LOCAL_ADDRESS;
pub const NETWORK_LOCAL_PORT: &str = semconv::NETWORK_LOCAL_PORT;
pub const NETWORK_TRANSPORT: &str = semconv::NETWORK_TRANSPORT;
pub const NETWORK_TYPE: &str = semconv::NETWORK_TYPE;
pub const SERVER_ADDRESS: &str = semconv::SERVER_ADDRESS;
pub const SERVER_PORT: &str = semconv::SERVER_PORT;
pub const CLIENT_ADDRESS: &str = semconv::CLIENT_ADDRESS;
pub const CLIENT_PORT: &str = semconv::CLIENT_PORT;
pub const SERVICE_PEER_NAME: &str = semconv::SERVICE_PEER_NAME;
/// `peer.service`: deprecated in semantic conventions in favour of `service.peer.name`, but it
/// is the attribute Tempo's service graph reads by default, so spans carry both.
pub const PEER_SERVICE: &str = "peer.service";
pub const PROCESS_PID: &str = semconv::PROCESS_PID;
pub const PROCESS_PARENT_PID: &str = semconv::PROCESS_PARENT_PID;
pub const PROCESS_EXECUTABLE_NAME: &str = semconv::PROCESS_EXECUTABLE_NAME;
pub const THREAD_ID: &str = semconv::THREAD_ID;

/// How a lookup was made: `getaddrinfo`, `gethostbyname`, `getaddrinfo_a`, `udp`.
pub const NETMON_DNS_SOURCE: &str = "netmon.dns.source";
/// The DNS response code of a lookup (-1: timeout).
pub const NETMON_DNS_RCODE: &str = "netmon.dns.rcode";

/// Every span name.
#[allow(dead_code, reason = "the list dashboards and tests check against")]
pub const SPAN_NAMES: &[&str] = &[
    SPAN_DNS_LOOKUP,
    SPAN_CONNECT,
    SPAN_ACCEPT,
    SPAN_PROCESS,
    SPAN_INVOCATION,
    SPAN_INIT,
];

/// Every span attribute.
#[allow(dead_code, reason = "the list dashboards and tests check against")]
pub const SPAN_ATTRIBUTES: &[&str] = &[
    DNS_QUESTION_NAME,
    DNS_ANSWERS,
    ERROR_TYPE,
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    NETWORK_LOCAL_ADDRESS,
    NETWORK_LOCAL_PORT,
    NETWORK_TRANSPORT,
    NETWORK_TYPE,
    SERVER_ADDRESS,
    SERVER_PORT,
    CLIENT_ADDRESS,
    CLIENT_PORT,
    SERVICE_PEER_NAME,
    PEER_SERVICE,
    PROCESS_PID,
    PROCESS_PARENT_PID,
    PROCESS_EXECUTABLE_NAME,
    THREAD_ID,
    NETMON_DNS_SOURCE,
    NETMON_DNS_RCODE,
    FAAS_INVOCATION_ID,
    FAAS_COLDSTART,
    FAAS_TRIGGER,
];

// ------------------------------------------------------------------ resource attributes

pub const SERVICE_NAME: &str = semconv::SERVICE_NAME;
pub const HOST_NAME: &str = semconv::HOST_NAME;
pub const FAAS_NAME: &str = semconv::FAAS_NAME;
pub const FAAS_INVOCATION_ID: &str = semconv::FAAS_INVOCATION_ID;
pub const FAAS_COLDSTART: &str = semconv::FAAS_COLDSTART;
pub const FAAS_TRIGGER: &str = semconv::FAAS_TRIGGER;
pub const FAAS_VERSION: &str = semconv::FAAS_VERSION;
pub const FAAS_INSTANCE: &str = semconv::FAAS_INSTANCE;
pub const FAAS_MAX_MEMORY: &str = semconv::FAAS_MAX_MEMORY;
pub const CLOUD_PROVIDER: &str = semconv::CLOUD_PROVIDER;
pub const CLOUD_PLATFORM: &str = semconv::CLOUD_PLATFORM;
pub const CLOUD_REGION: &str = semconv::CLOUD_REGION;
pub const TELEMETRY_SDK_NAME: &str = semconv::TELEMETRY_SDK_NAME;
pub const TELEMETRY_SDK_LANGUAGE: &str = semconv::TELEMETRY_SDK_LANGUAGE;
pub const TELEMETRY_SDK_VERSION: &str = semconv::TELEMETRY_SDK_VERSION;

/// Every resource attribute netmon sets (`OTEL_RESOURCE_ATTRIBUTES` may add others). Backends
/// that turn resource attributes into labels put these on every series.
#[allow(dead_code, reason = "the list dashboards and tests check against")]
pub const RESOURCE_ATTRIBUTES: &[&str] = &[
    SERVICE_NAME,
    PROCESS_PID,
    PROCESS_EXECUTABLE_NAME,
    HOST_NAME,
    FAAS_NAME,
    FAAS_VERSION,
    FAAS_INSTANCE,
    FAAS_MAX_MEMORY,
    CLOUD_PROVIDER,
    CLOUD_PLATFORM,
    CLOUD_REGION,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_VERSION,
];

// ------------------------------------------------------------------ netflow / dnsflow tags

pub const TAG_SRC_IP: &str = "src_ip";
pub const TAG_SRC_PORT: &str = "src_port";
pub const TAG_DST_IP: &str = "dst_ip";
pub const TAG_DST_PORT: &str = "dst_port";
pub const TAG_TRANSPORT: &str = "transport";
pub const TAG_FAMILY: &str = "family";
pub const TAG_DIRECTION: &str = "direction";
pub const TAG_SRC_IP_TYPE: &str = "src_ip_type";
pub const TAG_DST_IP_TYPE: &str = "dst_ip_type";
pub const TAG_DST_DOMAIN: &str = "dst_domain";
pub const TAG_PID: &str = "pid";
pub const TAG_PROCESS_NAME: &str = "process_name";
pub const TAG_RCODE: &str = "rcode";
/// The errno name of a failed connection attempt (`ECONNREFUSED`, ...).
pub const TAG_ERROR_TYPE: &str = "error_type";
/// Health metrics: which exporter (`otlp`, `otlp-json`).
pub const TAG_EXPORTER: &str = "exporter";
/// Health metrics: which signal (`traces`, `metrics`).
pub const TAG_SIGNAL: &str = "signal";
/// Set by the SDK on the datapoint that collects everything beyond the cardinality limit.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

// ------------------------------------------------------------------ metrics: (name, unit)

/// The instrument a metric is recorded with: it decides the OTLP data type (and so how
/// Prometheus-style backends name it: `_total` for counters, `_bucket` for histograms, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic sum.
    Counter,
    /// A non-monotonic sum.
    UpDownCounter,
    Gauge,
    /// An explicit-bucket histogram.
    Histogram,
}

/// A metric's name, unit, description, instrument and the data point attributes it can carry
/// (besides the resource's, and `otel.metric.overflow` on the cardinality-limit overflow point).
#[derive(Clone, Copy, Debug)]
pub struct MetricName {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    #[allow(dead_code, reason = "checked against what the SDK exports, by tests")]
    pub kind: Kind,
    #[allow(dead_code, reason = "checked against what the SDK exports, by tests")]
    pub attributes: &'static [&'static str],
}

/// The tags of every netflow data point (`src_port` only with `--src-port`, or on incoming
/// flows; `src_ip`, `dst_port`, `dst_domain` and `process_name` only when known).
pub const FLOW_TAGS: &[&str] = &[
    TAG_SRC_IP,
    TAG_SRC_IP_TYPE,
    TAG_SRC_PORT,
    TAG_DST_IP,
    TAG_DST_IP_TYPE,
    TAG_DST_PORT,
    TAG_TRANSPORT,
    TAG_FAMILY,
    TAG_DIRECTION,
    TAG_DST_DOMAIN,
    TAG_PID,
    TAG_PROCESS_NAME,
];
/// The tags of `netflow.tcp_failed`: a flow's, and the errno name.
pub const FAILED_FLOW_TAGS: &[&str] = &[
    TAG_SRC_IP,
    TAG_SRC_IP_TYPE,
    TAG_SRC_PORT,
    TAG_DST_IP,
    TAG_DST_IP_TYPE,
    TAG_DST_PORT,
    TAG_TRANSPORT,
    TAG_FAMILY,
    TAG_DIRECTION,
    TAG_DST_DOMAIN,
    TAG_PID,
    TAG_PROCESS_NAME,
    TAG_ERROR_TYPE,
];
/// The tags of every dnsflow data point.
pub const DNS_TAGS: &[&str] = &[TAG_DST_DOMAIN, TAG_RCODE, TAG_PID, TAG_PROCESS_NAME];
/// The tags of the export health counters.
pub const EXPORT_TAGS: &[&str] = &[TAG_EXPORTER, TAG_SIGNAL];
/// The attributes of the per-interface kernel metrics.
pub const INTERFACE_TAGS: &[&str] = &[NETWORK_INTERFACE_NAME, NETWORK_IO_DIRECTION];

pub const NETFLOW_BYTES_WRITTEN: MetricName = MetricName {
    name: "netflow.bytes_written",
    unit: "By",
    description: "Bytes the monitored processes sent on sockets",
    kind: Kind::Counter,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_BYTES_READ: MetricName = MetricName {
    name: "netflow.bytes_read",
    unit: "By",
    description: "Bytes the monitored processes received on sockets",
    kind: Kind::Counter,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_TCP_ESTABLISHED: MetricName = MetricName {
    name: "netflow.tcp_established",
    unit: "{connection}",
    description: "TCP connections established (connected or accepted)",
    kind: Kind::Counter,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_TCP_CLOSED: MetricName = MetricName {
    name: "netflow.tcp_closed",
    unit: "{connection}",
    description: "TCP connections closed",
    kind: Kind::Counter,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_TCP_FAILED: MetricName = MetricName {
    name: "netflow.tcp_failed",
    unit: "{connection}",
    description: "Failed TCP connection attempts, by error_type",
    kind: Kind::Counter,
    attributes: FAILED_FLOW_TAGS,
};
pub const NETFLOW_RETRANSMITS: MetricName = MetricName {
    name: "netflow.retransmits",
    unit: "{segment}",
    description: "Retransmitted TCP segments of connections closed in the interval",
    kind: Kind::Counter,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_RTT: MetricName = MetricName {
    name: "netflow.rtt",
    unit: "us",
    description: "Mean smoothed RTT of the TCP connections closed in the interval",
    kind: Kind::Gauge,
    attributes: FLOW_TAGS,
};
pub const NETFLOW_RTT_VAR: MetricName = MetricName {
    name: "netflow.rtt_var",
    unit: "us",
    description: "Mean RTT variance of the TCP connections closed in the interval",
    kind: Kind::Gauge,
    attributes: FLOW_TAGS,
};
pub const DNSFLOW_COUNT: MetricName = MetricName {
    name: "dnsflow.count",
    unit: "{lookup}",
    description: "Name lookups, by dst_domain and rcode",
    kind: Kind::Counter,
    attributes: DNS_TAGS,
};
pub const DNSFLOW_LATENCY: MetricName = MetricName {
    name: "dnsflow.latency",
    unit: "s",
    description: "Name lookup latency",
    kind: Kind::Histogram,
    attributes: DNS_TAGS,
};
pub const DNSFLOW_LATENCY_MAX: MetricName = MetricName {
    name: "dnsflow.latency_max",
    unit: "s",
    description: "Slowest name lookup in the interval",
    kind: Kind::Gauge,
    attributes: DNS_TAGS,
};
pub const NETMON_EVENTS_DROPPED: MetricName = MetricName {
    name: "netmon.events_dropped",
    unit: "{event}",
    description: "Events lost because a ring was full (the program never waits for netmon)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_RECORDS_REJECTED: MetricName = MetricName {
    name: "netmon.records_rejected",
    unit: "{record}",
    description: "Shared-memory records that failed validation",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_SOCKETS_UNTRACKED: MetricName = MetricName {
    name: "netmon.sockets_untracked",
    unit: "{socket}",
    description: "Sockets that could not be tracked (socket table full)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_EXPORT_FAILURES: MetricName = MetricName {
    name: "netmon.export.failures",
    unit: "{request}",
    description: "Export requests that failed (each retry counts)",
    kind: Kind::Counter,
    attributes: EXPORT_TAGS,
};
pub const NETMON_EXPORT_DROPPED: MetricName = MetricName {
    name: "netmon.export.dropped",
    unit: "{item}",
    description: "Spans or metric data points dropped before delivery (queue full, or undeliverable)",
    kind: Kind::Counter,
    attributes: EXPORT_TAGS,
};
pub const NETMON_EXPORT_REJECTED: MetricName = MetricName {
    name: "netmon.export.rejected",
    unit: "{item}",
    description: "Spans or metric data points the receiver rejected (partial success)",
    kind: Kind::Counter,
    attributes: EXPORT_TAGS,
};

/// Bytes per Lambda invocation at the socket level (the semantic conventions' FaaS metric),
/// by `network.io.direction`: one observation per invocation and direction.
pub const FAAS_NET_IO: MetricName = MetricName {
    name: semconv_metric::FAAS_NET_IO,
    unit: "By",
    description: "Bytes each invocation sent and received on sockets",
    kind: Kind::Histogram,
    attributes: &[NETWORK_IO_DIRECTION],
};

/// Bucket bounds of `faas.net_io` (bytes): 1 KiB to 1 GiB, by powers of 4.
pub const FAAS_NET_IO_BUCKETS: [f64; 11] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

// ------------------------------------------------------------------ kernel metrics (/proc)
// `system.network.*` as the semantic conventions (and the Collector's hostmetrics receiver)
// name them; the TCP/UDP protocol counters of /proc/net/snmp and netstat have no convention.
// All are the network namespace's, counted from netmon's start (`crate::kernel`).

pub const NETWORK_INTERFACE_NAME: &str = semconv::NETWORK_INTERFACE_NAME;
pub const NETWORK_IO_DIRECTION: &str = semconv::NETWORK_IO_DIRECTION;
pub const NETWORK_CONNECTION_STATE: &str = semconv::NETWORK_CONNECTION_STATE;
pub const SYSTEM_DEVICE: &str = semconv::SYSTEM_DEVICE;

pub const SYSTEM_NETWORK_IO: MetricName = MetricName {
    name: semconv_metric::SYSTEM_NETWORK_IO,
    unit: "By",
    description: "Bytes received and sent per network interface (/proc/net/dev)",
    kind: Kind::Counter,
    attributes: INTERFACE_TAGS,
};
pub const SYSTEM_NETWORK_PACKET_COUNT: MetricName = MetricName {
    name: semconv_metric::SYSTEM_NETWORK_PACKET_COUNT,
    unit: "{packet}",
    description: "Packets received and sent per network interface (/proc/net/dev)",
    kind: Kind::Counter,
    attributes: &[SYSTEM_DEVICE, NETWORK_IO_DIRECTION],
};
pub const SYSTEM_NETWORK_ERRORS: MetricName = MetricName {
    name: semconv_metric::SYSTEM_NETWORK_ERRORS,
    unit: "{error}",
    description: "Receive and transmit errors per network interface (/proc/net/dev)",
    kind: Kind::Counter,
    attributes: INTERFACE_TAGS,
};
pub const SYSTEM_NETWORK_PACKET_DROPPED: MetricName = MetricName {
    name: semconv_metric::SYSTEM_NETWORK_PACKET_DROPPED,
    unit: "{packet}",
    description: "Packets dropped per network interface (/proc/net/dev)",
    kind: Kind::Counter,
    attributes: INTERFACE_TAGS,
};
pub const SYSTEM_NETWORK_CONNECTION_COUNT: MetricName = MetricName {
    name: semconv_metric::SYSTEM_NETWORK_CONNECTION_COUNT,
    unit: "{connection}",
    description: "Sockets of the network namespace by transport and state (/proc/net/tcp, udp)",
    kind: Kind::UpDownCounter,
    attributes: &[NETWORK_TRANSPORT, NETWORK_CONNECTION_STATE],
};
pub const NETMON_TCP_ACTIVE_OPENS: MetricName = MetricName {
    name: "netmon.tcp.active_opens",
    unit: "{connection}",
    description: "TCP connections opened by this side (Tcp:ActiveOpens)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_PASSIVE_OPENS: MetricName = MetricName {
    name: "netmon.tcp.passive_opens",
    unit: "{connection}",
    description: "TCP connections accepted (Tcp:PassiveOpens)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_ATTEMPT_FAILS: MetricName = MetricName {
    name: "netmon.tcp.attempt_fails",
    unit: "{connection}",
    description: "TCP connection attempts that failed (Tcp:AttemptFails)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_ESTAB_RESETS: MetricName = MetricName {
    name: "netmon.tcp.estab_resets",
    unit: "{connection}",
    description: "Established TCP connections reset (Tcp:EstabResets)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_SEGMENTS: MetricName = MetricName {
    name: "netmon.tcp.segments",
    unit: "{segment}",
    description: "TCP segments received and sent (Tcp:InSegs, Tcp:OutSegs)",
    kind: Kind::Counter,
    attributes: &[NETWORK_IO_DIRECTION],
};
pub const NETMON_TCP_RETRANS_SEGS: MetricName = MetricName {
    name: "netmon.tcp.retrans_segs",
    unit: "{segment}",
    description: "TCP segments retransmitted (Tcp:RetransSegs)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_IN_ERRORS: MetricName = MetricName {
    name: "netmon.tcp.in_errors",
    unit: "{segment}",
    description: "TCP segments received in error (Tcp:InErrs)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_RESETS_SENT: MetricName = MetricName {
    name: "netmon.tcp.resets_sent",
    unit: "{segment}",
    description: "TCP resets sent (Tcp:OutRsts)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_LISTEN_OVERFLOWS: MetricName = MetricName {
    name: "netmon.tcp.listen_overflows",
    unit: "{event}",
    description: "Times a listen queue overflowed (TcpExt:ListenOverflows)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_TCP_LISTEN_DROPS: MetricName = MetricName {
    name: "netmon.tcp.listen_drops",
    unit: "{segment}",
    description: "SYNs dropped at a listener (TcpExt:ListenDrops)",
    kind: Kind::Counter,
    attributes: &[],
};
pub const NETMON_UDP_DATAGRAMS: MetricName = MetricName {
    name: "netmon.udp.datagrams",
    unit: "{datagram}",
    description: "UDP datagrams received and sent, by network.type (Udp:InDatagrams, Udp:OutDatagrams; Udp6InDatagrams, Udp6OutDatagrams)",
    kind: Kind::Counter,
    attributes: &[NETWORK_TYPE, NETWORK_IO_DIRECTION],
};
pub const NETMON_UDP_NO_PORTS: MetricName = MetricName {
    name: "netmon.udp.no_ports",
    unit: "{datagram}",
    description: "UDP datagrams to a port nobody listened on, by network.type (Udp:NoPorts, Udp6NoPorts)",
    kind: Kind::Counter,
    attributes: &[NETWORK_TYPE],
};
pub const NETMON_UDP_ERRORS: MetricName = MetricName {
    name: "netmon.udp.errors",
    unit: "{datagram}",
    description: "UDP errors by error.type (receive, rcvbuf, sndbuf) and network.type (Udp:*Errors, Udp6*Errors)",
    kind: Kind::Counter,
    attributes: &[NETWORK_TYPE, ERROR_TYPE],
};

/// The kernel metrics that are monotonic counters (the rest: `SYSTEM_NETWORK_CONNECTION_COUNT`).
pub const KERNEL_COUNTERS: [MetricName; 17] = [
    SYSTEM_NETWORK_IO,
    SYSTEM_NETWORK_PACKET_COUNT,
    SYSTEM_NETWORK_ERRORS,
    SYSTEM_NETWORK_PACKET_DROPPED,
    NETMON_TCP_ACTIVE_OPENS,
    NETMON_TCP_PASSIVE_OPENS,
    NETMON_TCP_ATTEMPT_FAILS,
    NETMON_TCP_ESTAB_RESETS,
    NETMON_TCP_SEGMENTS,
    NETMON_TCP_RETRANS_SEGS,
    NETMON_TCP_IN_ERRORS,
    NETMON_TCP_RESETS_SENT,
    NETMON_TCP_LISTEN_OVERFLOWS,
    NETMON_TCP_LISTEN_DROPS,
    NETMON_UDP_DATAGRAMS,
    NETMON_UDP_NO_PORTS,
    NETMON_UDP_ERRORS,
];

/// Every metric netmon exports.
#[allow(dead_code, reason = "the list dashboards and tests check against")]
pub const ALL_METRICS: [MetricName; 36] = [
    NETFLOW_BYTES_WRITTEN,
    NETFLOW_BYTES_READ,
    NETFLOW_TCP_ESTABLISHED,
    NETFLOW_TCP_CLOSED,
    NETFLOW_TCP_FAILED,
    NETFLOW_RETRANSMITS,
    NETFLOW_RTT,
    NETFLOW_RTT_VAR,
    DNSFLOW_COUNT,
    DNSFLOW_LATENCY,
    DNSFLOW_LATENCY_MAX,
    NETMON_EVENTS_DROPPED,
    NETMON_RECORDS_REJECTED,
    NETMON_SOCKETS_UNTRACKED,
    NETMON_EXPORT_FAILURES,
    NETMON_EXPORT_DROPPED,
    NETMON_EXPORT_REJECTED,
    FAAS_NET_IO,
    SYSTEM_NETWORK_IO,
    SYSTEM_NETWORK_PACKET_COUNT,
    SYSTEM_NETWORK_ERRORS,
    SYSTEM_NETWORK_PACKET_DROPPED,
    SYSTEM_NETWORK_CONNECTION_COUNT,
    NETMON_TCP_ACTIVE_OPENS,
    NETMON_TCP_PASSIVE_OPENS,
    NETMON_TCP_ATTEMPT_FAILS,
    NETMON_TCP_ESTAB_RESETS,
    NETMON_TCP_SEGMENTS,
    NETMON_TCP_RETRANS_SEGS,
    NETMON_TCP_IN_ERRORS,
    NETMON_TCP_RESETS_SENT,
    NETMON_TCP_LISTEN_OVERFLOWS,
    NETMON_TCP_LISTEN_DROPS,
    NETMON_UDP_DATAGRAMS,
    NETMON_UDP_NO_PORTS,
    NETMON_UDP_ERRORS,
];

/// Bucket bounds of `dnsflow.latency` (seconds): 0.25 ms to 10 s.
pub const DNS_LATENCY_BUCKETS: [f64; 14] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn metric_names_are_unique_and_valid_instrument_names() {
        let mut seen = HashSet::new();
        for m in ALL_METRICS {
            assert!(seen.insert(m.name), "duplicate {}", m.name);
            // OTel instrument name syntax: a letter, then [A-Za-z0-9_.-/], at most 255.
            assert!(m.name.len() <= 255);
            assert!(m.name.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)),
                "{}",
                m.name
            );
            assert!(!m.unit.is_empty() && !m.description.is_empty());
        }
    }
}
