//! Export configuration: which exporters, and the standard `OTEL_*` variables (endpoint,
//! protocol, headers, timeout, TLS files, compression, temporality, batching), validated
//! strictly at start-up so a typo is one clear error instead of silently lost telemetry.
//!
//! Parsing is a pure function of the flags and an environment lookup, so it is tested without
//! touching the process environment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// An invalid setting, phrased for the user.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Where telemetry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExporterKind {
    /// The human summary on stderr.
    Console,
    /// OTLP over gRPC or HTTP/protobuf.
    Otlp,
    /// A file of OTLP JSON export requests, one per line.
    OtlpJson,
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Aggregation temporality of sums and histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    Delta,
    Cumulative,
    LowMemory,
}

/// The two signals netmon exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
    fn env_infix(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

/// PEM contents of the TLS files named by `OTEL_EXPORTER_OTLP_*CERTIFICATE` / `*CLIENT_KEY`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trusted CA certificate(s); when absent the system's roots are trusted.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mutual TLS.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// The OTLP settings of one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSignal {
    pub protocol: Protocol,
    /// Full URL: for HTTP including the `/v1/traces` or `/v1/metrics` path.
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls: TlsFiles,
}

/// Batching and queueing of the export pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Spans wait at most this long before they are sent (`OTEL_BSP_SCHEDULE_DELAY`).
    pub span_delay: Duration,
    /// Spans kept per exporter while the receiver is unreachable (`OTEL_BSP_MAX_QUEUE_SIZE`);
    /// beyond it the oldest are dropped and counted.
    pub max_queue_spans: usize,
    /// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch_spans: usize,
    /// Metrics are collected and sent this often (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub metric_interval: Duration,
    /// Metric data points kept per exporter while the receiver is unreachable.
    pub max_queue_points: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            span_delay: Duration::from_millis(5000),
            max_queue_spans: 16384,
            max_batch_spans: 512,
            metric_interval: Duration::from_millis(60000),
            max_queue_points: 100_000,
        }
    }
}

/// Everything the telemetry pipeline needs to know, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    pub exporters: BTreeSet<ExporterKind>,
    pub traces: Option<OtlpSignal>,
    pub metrics: Option<OtlpSignal>,
    pub otlp_json: Option<PathBuf>,
    pub temporality: Temporality,
    pub batching: Batching,
    /// Attribute sets per metric before the overflow data point takes the rest.
    pub cardinality_limit: usize,
    /// Put `src_port` on netflow metrics (ephemeral ports multiply the series).
    pub src_port: bool,
    /// The longest `netmon run` waits at exit for queued telemetry to be delivered.
    pub flush_timeout: Duration,
}

impl TelemetryConfig {
    /// True if anything beyond the console summary is exported.
    pub fn exports(&self) -> bool {
        self.exporters
            .iter()
            .any(|e| matches!(e, ExporterKind::Otlp | ExporterKind::OtlpJson))
    }

    pub fn console(&self) -> bool {
        self.exporters.contains(&ExporterKind::Console)
    }
}

/// What the command line says about exporting (flags and their `NETMON_*` variables).
#[derive(Clone, Debug, Default)]
pub struct ExportFlags {
    /// `--exporter` / `NETMON_EXPORTERS`: comma-separated exporter names.
    pub exporters: Option<String>,
    /// `--otlp-json FILE` / `NETMON_OTLP_JSON`.
    pub otlp_json: Option<PathBuf>,
    pub src_port: bool,
    pub cardinality_limit: usize,
    pub flush_timeout: Duration,
}

/// Default cardinality limit per metric (the OpenTelemetry SDK's).
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;
/// Default bound on the exit-time flush.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_millis(5000);

/// Reads variables: `Ok(None)` when unset or empty, an error when not valid UTF-8.
pub trait Env {
    fn var(&self, key: &str) -> Result<Option<String>, ConfigError>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match std::env::var(key) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => err(format!("{key} is not valid UTF-8")),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self(key).filter(|v| !v.trim().is_empty()))
    }
}

/// Parses `console,otlp,otlp-json`.
pub fn parse_exporters(list: &str) -> Result<BTreeSet<ExporterKind>, ConfigError> {
    let mut out = BTreeSet::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.insert(match name.to_ascii_lowercase().as_str() {
            "console" => ExporterKind::Console,
            "otlp" => ExporterKind::Otlp,
            "otlp-json" | "otlp_json" => ExporterKind::OtlpJson,
            _ => {
                return err(format!(
                    "unknown exporter {name:?} in --exporter/NETMON_EXPORTERS (choose from console, otlp, otlp-json)"
                ));
            }
        });
    }
    if out.is_empty() {
        return err(
            "--exporter/NETMON_EXPORTERS names no exporter (choose from console, otlp, otlp-json)",
        );
    }
    Ok(out)
}

fn parse_ms(env: &dyn Env, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    match env.var(key)? {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => err(format!(
                "{key}={v:?} is not a positive number of milliseconds"
            )),
        },
    }
}

fn parse_count(env: &dyn Env, key: &str, default: usize) -> Result<usize, ConfigError> {
    match env.var(key)? {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => err(format!("{key}={v:?} is not a positive integer")),
        },
    }
}

/// `OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>`, else `OTEL_EXPORTER_OTLP_<NAME>`: (variable, value).
fn signal_var(
    env: &dyn Env,
    signal: Signal,
    name: &str,
) -> Result<Option<(String, String)>, ConfigError> {
    let specific = format!("OTEL_EXPORTER_OTLP_{}_{name}", signal.env_infix());
    if let Some(v) = env.var(&specific)? {
        return Ok(Some((specific, v)));
    }
    let generic = format!("OTEL_EXPORTER_OTLP_{name}");
    Ok(env.var(&generic)?.map(|v| (generic, v)))
}

fn parse_protocol(var: &str, value: &str) -> Result<Protocol, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        _ => err(format!(
            "{var}={value:?} is not supported (use grpc or http/protobuf)"
        )),
    }
}

/// Checks an endpoint URL and returns it in the form the exporter takes.
fn check_endpoint(
    var: &str,
    value: &str,
    protocol: Protocol,
    insecure: bool,
) -> Result<String, ConfigError> {
    let value = value.trim();
    // user:password@ in the URL would be printed with every delivery warning (and land in
    // CloudWatch Logs in Lambda): refused without echoing the value.
    let authority = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return err(format!(
            "{var}: credentials in the endpoint URL are not supported (they would be logged); put them in OTEL_EXPORTER_OTLP_HEADERS"
        ));
    }
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else if protocol == Protocol::Grpc {
        // The OTLP spec: a gRPC endpoint without scheme uses TLS unless INSECURE=true.
        format!("{}://{value}", if insecure { "http" } else { "https" })
    } else {
        return err(format!(
            "{var}={value:?} is not a URL (expected http://HOST:PORT or https://HOST:PORT)"
        ));
    };
    let uri: http::Uri = match with_scheme.parse() {
        Ok(u) => u,
        Err(e) => return err(format!("{var}={value:?} is not a valid URL: {e}")),
    };
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return err(format!("{var}={value:?}: the scheme must be http or https"));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return err(format!("{var}={value:?} has no host"));
    }
    Ok(with_scheme)
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C Baggage format, as the OTLP spec says).
/// Header values are often credentials: errors name the header, never echo its value.
pub fn parse_headers(var: &str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (n, item) in value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let Some((k, v)) = item.split_once('=') else {
            return err(format!(
                "{var}: item {} is not key=value (not shown: it may be a secret)",
                n + 1
            ));
        };
        let k = k.trim();
        let valid_name = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return err(format!("{var}: {k:?} is not a valid header name"));
        }
        let v = percent_decode(v.trim()).ok_or_else(|| {
            ConfigError(format!(
                "{var}: the value of {k:?} is not percent-encoded correctly (%XX, two hex digits)"
            ))
        })?;
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return err(format!(
                "{var}: the value of {k:?} contains a control character"
            ));
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// Decodes `%XX` escapes (the W3C baggage encoding of `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES`); `None` for a malformed escape or invalid UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly (from_str_radix alone would also take a sign: "%+1").
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn read_pem(var: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(Path::new(path.trim()))
        .map_err(|e| ConfigError(format!("{var}: cannot read {path}: {e}")))
}

fn otlp_signal(env: &dyn Env, signal: Signal) -> Result<OtlpSignal, ConfigError> {
    let protocol = match signal_var(env, signal, "PROTOCOL")? {
        Some((var, v)) => parse_protocol(&var, &v)?,
        None => Protocol::Grpc,
    };
    let insecure = signal_var(env, signal, "INSECURE")?
        .is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("true"));
    let specific = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.env_infix());
    let endpoint = if let Some(v) = env.var(&specific)? {
        check_endpoint(&specific, &v, protocol, insecure)?
    } else if let Some(v) = env.var("OTEL_EXPORTER_OTLP_ENDPOINT")? {
        let base = check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &v, protocol, insecure)?;
        match protocol {
            Protocol::Grpc => base,
            Protocol::HttpProtobuf => {
                format!("{}{}", base.trim_end_matches('/'), signal.http_path())
            }
        }
    } else {
        match protocol {
            Protocol::Grpc => "http://localhost:4317".to_string(),
            Protocol::HttpProtobuf => format!("http://localhost:4318{}", signal.http_path()),
        }
    };
    let headers = match signal_var(env, signal, "HEADERS")? {
        Some((var, v)) => parse_headers(&var, &v)?,
        None => Vec::new(),
    };
    let timeout = match signal_var(env, signal, "TIMEOUT")? {
        Some((var, v)) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return err(format!(
                    "{var}={v:?} is not a positive number of milliseconds"
                ));
            }
        },
        None => Duration::from_millis(10_000),
    };
    if let Some((var, v)) = signal_var(env, signal, "COMPRESSION")?
        && !v.trim().eq_ignore_ascii_case("none")
    {
        return err(format!(
            "{var}={v:?} is not supported: netmon sends uncompressed (use none)"
        ));
    }
    let mut tls = TlsFiles::default();
    if let Some((var, path)) = signal_var(env, signal, "CERTIFICATE")? {
        tls.ca_pem = Some(read_pem(&var, &path)?);
    }
    match (
        signal_var(env, signal, "CLIENT_CERTIFICATE")?,
        signal_var(env, signal, "CLIENT_KEY")?,
    ) {
        (Some((cv, cp)), Some((kv, kp))) => {
            tls.client_pem = Some((read_pem(&cv, &cp)?, read_pem(&kv, &kp)?));
        }
        (None, None) => {}
        (Some((var, _)), None) | (None, Some((var, _))) => {
            return err(format!(
                "{var} is set but its pair is not: mutual TLS needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
            ));
        }
    }
    if (tls.ca_pem.is_some() || tls.client_pem.is_some()) && endpoint.starts_with("http://") {
        return err(format!(
            "TLS files are configured for {} but its endpoint {endpoint} is http://; use https://",
            signal.as_str()
        ));
    }
    Ok(OtlpSignal {
        protocol,
        endpoint,
        headers,
        timeout,
        tls,
    })
}

/// Validates the flags and the `OTEL_*` variables.
pub fn resolve(flags: &ExportFlags, env: &dyn Env) -> Result<TelemetryConfig, ConfigError> {
    let exporters = match &flags.exporters {
        Some(list) => parse_exporters(list)?,
        None => {
            let mut s = BTreeSet::from([ExporterKind::Console]);
            if flags.otlp_json.is_some() {
                s.insert(ExporterKind::OtlpJson);
            }
            s
        }
    };
    let otlp_json = match (
        exporters.contains(&ExporterKind::OtlpJson),
        &flags.otlp_json,
    ) {
        (true, Some(p)) => Some(p.clone()),
        (true, None) => {
            return err(
                "the otlp-json exporter needs a file: --otlp-json FILE (or NETMON_OTLP_JSON)",
            );
        }
        (false, Some(_)) => {
            return err(
                "--otlp-json is set but --exporter/NETMON_EXPORTERS does not include otlp-json",
            );
        }
        (false, None) => None,
    };
    if flags.cardinality_limit == 0 {
        return err("--cardinality-limit must be at least 1");
    }
    let (traces, metrics) = if exporters.contains(&ExporterKind::Otlp) {
        (
            Some(otlp_signal(env, Signal::Traces)?),
            Some(otlp_signal(env, Signal::Metrics)?),
        )
    } else {
        (None, None)
    };
    let temporality = match env.var("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")? {
        None => Temporality::Delta,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "delta" => Temporality::Delta,
            "cumulative" => Temporality::Cumulative,
            "lowmemory" => Temporality::LowMemory,
            _ => {
                return err(format!(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={v:?} is not supported (use delta, cumulative or lowmemory)"
                ));
            }
        },
    };
    let d = Batching::default();
    let batching = Batching {
        span_delay: parse_ms(env, "OTEL_BSP_SCHEDULE_DELAY", d.span_delay)?,
        max_queue_spans: parse_count(env, "OTEL_BSP_MAX_QUEUE_SIZE", d.max_queue_spans)?,
        max_batch_spans: parse_count(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", d.max_batch_spans)?,
        metric_interval: parse_ms(env, "OTEL_METRIC_EXPORT_INTERVAL", d.metric_interval)?,
        max_queue_points: d.max_queue_points,
    };
    if batching.max_batch_spans > batching.max_queue_spans {
        return err(format!(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({}) must not exceed OTEL_BSP_MAX_QUEUE_SIZE ({})",
            batching.max_batch_spans, batching.max_queue_spans
        ));
    }
    Ok(TelemetryConfig {
        exporters,
        traces,
        metrics,
        otlp_json,
        temporality,
        batching,
        cardinality_limit: flags.cardinality_limit,
        src_port: flags.src_port,
        flush_timeout: flags.flush_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn credentials_in_the_endpoint_are_refused_without_echoing_them() {
        for url in [
            "https://user:s3cr3t@collector:4318",
            "user:s3cr3t@collector:4317",
            "http://s3cr3t@collector/v1",
        ] {
            let e = resolve(
                &flags(Some("otlp")),
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", url)]),
            )
            .unwrap_err();
            assert!(
                e.0.contains("credentials") && !e.0.contains("s3cr3t"),
                "{e}"
            );
        }
        // An @ after the host is a path or query character, not userinfo.
        assert!(
            resolve(
                &flags(Some("otlp")),
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317/a@b")]),
            )
            .is_ok()
        );
    }

    #[test]
    fn header_errors_never_echo_a_value() {
        for bad in [
            "authorization=Bearer%zzs3cr3t",
            "x=1,Bearer s3cr3t",
            "k=s3cr3t%0A",
        ] {
            let e = parse_headers("OTEL_EXPORTER_OTLP_HEADERS", bad).unwrap_err();
            assert!(!e.0.contains("s3cr3t"), "{e}");
        }
    }

    fn flags(exporters: Option<&str>) -> ExportFlags {
        ExportFlags {
            exporters: exporters.map(str::to_string),
            otlp_json: None,
            src_port: false,
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn no_exporter_means_console_only() {
        let c = resolve(&flags(None), &env(&[])).unwrap();
        assert_eq!(c.exporters, BTreeSet::from([ExporterKind::Console]));
        assert!(!c.exports() && c.console());
        assert_eq!(c.temporality, Temporality::Delta);
    }

    #[test]
    fn grpc_is_the_default_and_endpoints_resolve_per_signal() {
        let c = resolve(
            &flags(Some("otlp,console")),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]),
        )
        .unwrap();
        let t = c.traces.unwrap();
        assert_eq!(t.protocol, Protocol::Grpc);
        assert_eq!(t.endpoint, "http://127.0.0.1:4317");
        assert_eq!(t.timeout, Duration::from_secs(10));

        let c = resolve(
            &flags(Some("otlp")),
            &env(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "http://vm:8428/opentelemetry/v1/metrics",
                ),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization=Bearer%20abc, x-tenant=7",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ]),
        )
        .unwrap();
        let t = c.traces.unwrap();
        let m = c.metrics.unwrap();
        assert_eq!(t.endpoint, "http://h:4318/v1/traces");
        assert_eq!(m.endpoint, "http://vm:8428/opentelemetry/v1/metrics");
        assert_eq!(
            t.headers,
            vec![
                ("authorization".to_string(), "Bearer abc".to_string()),
                ("x-tenant".to_string(), "7".to_string())
            ]
        );
        assert_eq!(m.timeout, Duration::from_millis(2500));
        assert!(!c.exporters.contains(&ExporterKind::Console));
    }

    #[test]
    fn schemeless_grpc_endpoint_follows_insecure() {
        let c = resolve(
            &flags(Some("otlp")),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
                ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.traces.unwrap().endpoint, "http://collector:4317");
    }

    #[test]
    fn bad_values_are_one_clear_error() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x:1")], "scheme"),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
                ],
                "not a URL",
            ),
            (
                &[(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                    "sometimes",
                )],
                "TEMPORALITY",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")], "key=value"),
            (
                &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
                "uncompressed",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")],
                "cannot read",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/x")],
                "CLIENT_CERTIFICATE",
            ),
            (
                &[("OTEL_BSP_MAX_QUEUE_SIZE", "-1")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
        ];
        for (vars, needle) in cases {
            let e = resolve(&flags(Some("otlp")), &env(vars)).unwrap_err();
            assert!(e.0.contains(needle), "{vars:?}: {e}");
            assert!(!e.0.contains('\n'));
        }
        assert!(
            parse_exporters("otlp,zipkin")
                .unwrap_err()
                .0
                .contains("zipkin")
        );
    }

    #[test]
    fn otlp_json_needs_a_file_and_a_file_implies_it() {
        let e = resolve(&flags(Some("otlp-json")), &env(&[])).unwrap_err();
        assert!(e.0.contains("--otlp-json FILE"));
        let mut f = flags(None);
        f.otlp_json = Some("/tmp/x.jsonl".into());
        let c = resolve(&f, &env(&[])).unwrap();
        assert!(c.exporters.contains(&ExporterKind::OtlpJson) && c.console());
        f.exporters = Some("console".into());
        assert!(resolve(&f, &env(&[])).is_err());
    }

    #[test]
    fn otlp_variables_are_ignored_without_the_otlp_exporter() {
        let c = resolve(
            &flags(None),
            &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]),
        )
        .unwrap();
        assert!(c.traces.is_none());
    }

    #[test]
    fn temporality_and_batching_from_env() {
        let c = resolve(
            &flags(None),
            &env(&[
                (
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                    "Cumulative",
                ),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(c.temporality, Temporality::Cumulative);
        assert_eq!(c.batching.span_delay, Duration::from_millis(200));
        assert_eq!(c.batching.metric_interval, Duration::from_millis(500));
    }
}
