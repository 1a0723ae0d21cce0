//! How Prometheus-style backends name what netmon exports over OTLP: Prometheus's OTLP receiver
//! (`UnderscoreEscapingWithSuffixes`, its default), Mimir, the OpenTelemetry Collector's
//! `prometheusremotewrite` exporter, and VictoriaMetrics with `-opentelemetry.usePrometheusNaming`
//! all turn `netflow.bytes_written` into `netflow_bytes_written_total` and `dst_domain` stays
//! `dst_domain`. The dashboards use these names; `dashboards/README.md` lists them, and the
//! tests below pin every one to what VictoriaMetrics stored in an end-to-end run.

use super::schema::{Kind, MetricName};

/// A label name: every character outside `[a-zA-Z0-9_]` becomes `_`; a leading digit gets a
/// `key_` prefix.
pub fn label(attribute: &str) -> String {
    let mut s: String = attribute
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

/// The word a UCUM unit adds to a metric name (`None` for annotations like `{connection}`).
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "bit" => "bits",
        "%" => "percent",
        "Hz" => "hertz",
        _ => return None,
    })
}

/// The word a per-unit (after `/`) adds: `By/s` is `bytes_per_second`.
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The metric name as those backends store it (for a histogram, the base of `_bucket`,
/// `_sum` and `_count`): the name's words joined by `_`, the unit's word unless the name has
/// it already, `total` for counters, `ratio` for gauges of unit `1`.
pub fn metric(m: &MetricName) -> String {
    let mut words: Vec<String> = m
        .name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .flat_map(|w| w.split('_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = match m.unit.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (m.unit, None),
    };
    if let Some(w) = unit_word(main)
        && !words.iter().any(|x| x == w)
    {
        words.push(w.to_string());
    }
    if let Some(w) = per.and_then(per_unit_word) {
        words.push("per".into());
        words.push(w.to_string());
    }
    match m.kind {
        Kind::Counter => {
            words.retain(|w| w != "total");
            words.push("total".into());
        }
        Kind::Gauge if m.unit == "1" => {
            words.retain(|w| w != "ratio");
            words.push("ratio".into());
        }
        _ => {}
    }
    words.join("_")
}

/// Every series name a metric becomes.
pub fn series(m: &MetricName) -> Vec<String> {
    let base = metric(m);
    match m.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{base}{s}"))
            .collect(),
        _ => vec![base],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::schema::{self, ALL_METRICS};
    use std::collections::HashSet;

    /// What VictoriaMetrics 1.112 (`-opentelemetry.usePrometheusNaming`) stored for an
    /// end-to-end run of `netmon run` and of the Lambda extension (`/api/v1/label/__name__/values`).
    const STORED: &[(&str, &str)] = &[
        ("netflow.bytes_written", "netflow_bytes_written_total"),
        ("netflow.bytes_read", "netflow_bytes_read_total"),
        ("netflow.tcp_established", "netflow_tcp_established_total"),
        ("netflow.tcp_closed", "netflow_tcp_closed_total"),
        ("netflow.tcp_failed", "netflow_tcp_failed_total"),
        ("netflow.rtt", "netflow_rtt_microseconds"),
        ("netflow.rtt_var", "netflow_rtt_var_microseconds"),
        ("dnsflow.count", "dnsflow_count_total"),
        ("dnsflow.latency", "dnsflow_latency_seconds"),
        ("dnsflow.latency_max", "dnsflow_latency_max_seconds"),
        ("netmon.events_dropped", "netmon_events_dropped_total"),
        ("netmon.records_rejected", "netmon_records_rejected_total"),
        ("netmon.sockets_untracked", "netmon_sockets_untracked_total"),
        ("netmon.export.failures", "netmon_export_failures_total"),
        ("netmon.export.dropped", "netmon_export_dropped_total"),
        ("netmon.export.rejected", "netmon_export_rejected_total"),
        ("faas.net_io", "faas_net_io_bytes"),
        ("system.network.io", "system_network_io_bytes_total"),
        (
            "system.network.packet.count",
            "system_network_packet_count_total",
        ),
        (
            "system.network.connection.count",
            "system_network_connection_count",
        ),
        ("netmon.tcp.active_opens", "netmon_tcp_active_opens_total"),
        ("netmon.tcp.attempt_fails", "netmon_tcp_attempt_fails_total"),
        ("netmon.tcp.passive_opens", "netmon_tcp_passive_opens_total"),
        ("netmon.tcp.resets_sent", "netmon_tcp_resets_sent_total"),
        ("netmon.tcp.segments", "netmon_tcp_segments_total"),
        ("netmon.udp.datagrams", "netmon_udp_datagrams_total"),
    ];

    #[test]
    fn names_are_the_ones_victoria_metrics_stored() {
        for (otel, stored) in STORED {
            let m = ALL_METRICS
                .iter()
                .find(|m| m.name == *otel)
                .unwrap_or_else(|| panic!("{otel} is not in the schema"));
            assert_eq!(metric(m), *stored, "{otel}");
        }
        assert_eq!(
            series(&schema::DNSFLOW_LATENCY),
            [
                "dnsflow_latency_seconds_bucket",
                "dnsflow_latency_seconds_sum",
                "dnsflow_latency_seconds_count"
            ]
        );
    }

    #[test]
    fn every_metric_gets_a_distinct_name() {
        let mut seen = HashSet::new();
        for m in ALL_METRICS {
            for s in series(&m) {
                assert!(seen.insert(s.clone()), "{} collides on {s}", m.name);
            }
        }
    }

    #[test]
    fn labels() {
        assert_eq!(label("dst_domain"), "dst_domain");
        assert_eq!(label("service.name"), "service_name");
        assert_eq!(label("network.io.direction"), "network_io_direction");
        assert_eq!(label("otel.metric.overflow"), "otel_metric_overflow");
        assert_eq!(label("1st"), "key_1st");
    }

    #[test]
    fn rules_for_units_and_kinds() {
        let m = |name, unit, kind| MetricName {
            name,
            unit,
            description: "",
            kind,
            attributes: &[],
        };
        assert_eq!(metric(&m("a.b", "1", Kind::Gauge)), "a_b_ratio");
        assert_eq!(
            metric(&m("a.rate", "By/s", Kind::Gauge)),
            "a_rate_bytes_per_second"
        );
        assert_eq!(metric(&m("a.total.x", "{x}", Kind::Counter)), "a_x_total");
        assert_eq!(
            metric(&m("a-b.c", "ms", Kind::Histogram)),
            "a_b_c_milliseconds"
        );
    }
}
