//! Delivery: one background worker per exporter, each with its own bounded queue, so a slow
//! or unreachable receiver delays nothing but itself. The monitored program never waits for
//! any of it (it only writes shared memory); the collector's reader only appends to queues.
//!
//! - Bounded memory: a full span queue drops its oldest spans, a full metrics queue its oldest
//!   collections; every drop is counted and reported.
//! - Bounded retry: a request that fails stays queued and is retried after a backoff of
//!   250 ms doubling to 5 s (longer if the receiver's `Retry-After` says so, up to 5 s),
//!   unless the receiver refused it for good (4xx), then it is dropped and counted. The
//!   metrics exporter also retries transient errors itself before failing.
//! - Partial success: the trace client reports rejected spans; the rejected counts the OTLP
//!   metrics exporter logs are captured (a per-thread `tracing` subscriber). Both are counted.
//! - Bounded shutdown: [`Exporters::shutdown`] delivers what is queued until a deadline, then
//!   abandons the rest (counted) and any request in flight.

use super::config::{OtlpSignal, Protocol, Signal};
use super::metrics::data_points;
use super::otlp_json::OtlpJsonFile;
use super::otlp_traces::{self, Envelope, Failure, TraceClient, TraceRequest};
use super::spans::SpanDraft;
use opentelemetry_otlp::{MetricExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An exporter that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Counters of one exporter and signal; read at any time by the pipeline.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Spans or data points delivered.
    pub exported: AtomicU64,
    /// Export requests that failed.
    pub failures: AtomicU64,
    /// Spans or data points dropped before delivery.
    pub dropped: AtomicU64,
    /// Spans or data points the receiver rejected (partial success).
    pub rejected: AtomicU64,
}

/// A snapshot of [`SignalStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalCounts {
    pub exported: u64,
    pub failures: u64,
    pub dropped: u64,
    pub rejected: u64,
}

impl SignalStats {
    pub fn snapshot(&self) -> SignalCounts {
        SignalCounts {
            exported: self.exported.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub struct SinkStats {
    pub traces: SignalStats,
    pub metrics: SignalStats,
}

impl SinkStats {
    fn of(&self, s: Signal) -> &SignalStats {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }
}

/// Where one exporter sends.
enum Target {
    Otlp {
        spans: Box<TraceClient>,
        metrics: Box<MetricExporter>,
        describe: String,
    },
    Json(Box<OtlpJsonFile>),
}

/// Queue limits and timing shared by every sink.
#[derive(Clone, Debug)]
pub struct QueueLimits {
    pub max_spans: usize,
    pub max_batch: usize,
    pub span_delay: Duration,
    pub max_points: usize,
    /// Upper bound of one request, beyond the exporter's own timeout.
    pub request_timeout: Duration,
}

#[derive(Default)]
struct Queue {
    spans: VecDeque<SpanDraft>,
    metrics: VecDeque<(Arc<ResourceMetrics>, usize)>,
    points: usize,
    /// Send spans now even if the batch is not full (a flush is waiting).
    flushing: bool,
    /// A batch is being exported.
    busy: bool,
    shutdown: Option<Instant>,
    finished: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.metrics.is_empty()
    }
}

struct Sink {
    name: &'static str,
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: Arc<SinkStats>,
    abort: tokio::sync::Notify,
    limits: QueueLimits,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker that panicked leaves a usable queue: the data is plain.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The exporters of a pipeline and their workers.
pub struct Exporters {
    sinks: Vec<Arc<Sink>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    pending: Vec<(Target, tokio::runtime::Runtime)>,
}

fn http_client(sig: &OtlpSignal) -> Result<reqwest::Client, BuildError> {
    // reqwest is built without a crypto provider of its own (no aws-lc); it uses the process
    // default, even for plain http. Installing fails harmlessly if one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder().timeout(sig.timeout);
    if !sig.endpoint.starts_with("https://") {
        return builder
            .build()
            .map_err(|e| BuildError(format!("cannot create the HTTP client: {e}")));
    }
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &sig.tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| BuildError(format!("OTLP CA certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| BuildError(format!("OTLP CA certificate: {e}")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match &sig.tls.client_pem {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BuildError(format!("OTLP client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| BuildError(format!("OTLP client key: {e}")))?;
            config
                .with_client_auth_cert(certs, key)
                .map_err(|e| BuildError(format!("OTLP client certificate: {e}")))?
        }
        None => config.with_no_client_auth(),
    };
    builder
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| BuildError(format!("cannot create the HTTP client: {e}")))
}

fn build_otlp(
    traces: &OtlpSignal,
    metrics: &OtlpSignal,
    temporality: opentelemetry_sdk::metrics::Temporality,
) -> Result<(TraceClient, MetricExporter), BuildError> {
    let e = |s: Signal| {
        move |err: opentelemetry_otlp::ExporterBuildError| {
            BuildError(format!("otlp {} exporter: {err}", s.as_str()))
        }
    };
    let headers =
        |sig: &OtlpSignal| -> HashMap<String, String> { sig.headers.iter().cloned().collect() };
    let spans = match traces.protocol {
        Protocol::Grpc => TraceClient::grpc(traces)?,
        Protocol::HttpProtobuf => TraceClient::http(traces, http_client(traces)?),
    };
    let metric = match metrics.protocol {
        Protocol::Grpc => {
            let mut b = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&metrics.endpoint)
                .with_timeout(metrics.timeout)
                .with_metadata(otlp_traces::metadata(metrics));
            if metrics.endpoint.starts_with("https://") {
                b = b.with_tls_config(otlp_traces::tls_config(metrics));
            }
            b.with_temporality(temporality)
                .build()
                .map_err(e(Signal::Metrics))?
        }
        Protocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&metrics.endpoint)
            .with_timeout(metrics.timeout)
            .with_headers(headers(metrics))
            .with_http_client(http_client(metrics)?)
            .with_temporality(temporality)
            .build()
            .map_err(e(Signal::Metrics))?,
    };
    Ok((spans, metric))
}

fn runtime() -> Result<tokio::runtime::Runtime, BuildError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError(format!("cannot start the export runtime: {e}")))
}

impl Exporters {
    /// Builds (and so validates) the exporters; nothing runs until [`start`](Self::start).
    pub fn build(
        otlp: Option<(&OtlpSignal, &OtlpSignal)>,
        otlp_json: Option<&std::path::Path>,
        temporality: opentelemetry_sdk::metrics::Temporality,
        limits: QueueLimits,
    ) -> Result<Exporters, BuildError> {
        let mut pending = Vec::new();
        let mut sinks = Vec::new();
        if let Some((traces, metrics)) = otlp {
            let rt = runtime()?;
            // tonic's lazy channel starts its connection task on the current runtime.
            let built = {
                let _guard = rt.enter();
                build_otlp(traces, metrics, temporality)?
            };
            let describe = if traces.endpoint == metrics.endpoint {
                format!("{} {}", traces.protocol.as_str(), traces.endpoint)
            } else {
                format!(
                    "{} {} and {}",
                    traces.protocol.as_str(),
                    traces.endpoint,
                    metrics.endpoint
                )
            };
            pending.push((
                Target::Otlp {
                    spans: Box::new(built.0),
                    metrics: Box::new(built.1),
                    describe,
                },
                rt,
            ));
            sinks.push(Arc::new(Sink::new("otlp", limits.clone())));
        }
        if let Some(path) = otlp_json {
            let file = OtlpJsonFile::create(path)
                .map_err(|e| BuildError(format!("cannot create {}: {e}", path.display())))?;
            pending.push((Target::Json(Box::new(file)), runtime()?));
            sinks.push(Arc::new(Sink::new("otlp-json", limits.clone())));
        }
        Ok(Exporters {
            sinks,
            workers: Vec::new(),
            pending,
        })
    }

    /// Starts one worker thread per exporter, with the resource every export carries.
    pub fn start(&mut self, resource: &Resource) {
        let envelope = Envelope::new(resource);
        for ((target, rt), sink) in self.pending.drain(..).zip(self.sinks.iter()) {
            let sink = sink.clone();
            let name = format!("netmon-export-{}", sink.name);
            let envelope = envelope.clone();
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker(sink, target, envelope, rt));
            match spawned {
                Ok(h) => self.workers.push(h),
                Err(e) => eprintln!("netmon: cannot start the export thread: {e}"),
            }
        }
    }

    /// The exporters' names and statistics.
    pub fn stats(&self) -> Vec<(&'static str, Arc<SinkStats>)> {
        self.sinks
            .iter()
            .map(|s| (s.name, s.stats.clone()))
            .collect()
    }

    /// Queues spans for every exporter (leaving `spans` empty); never blocks on delivery.
    pub fn push_spans(&self, spans: &mut Vec<SpanDraft>) {
        if spans.is_empty() {
            return;
        }
        let Some((last, others)) = self.sinks.split_last() else {
            spans.clear();
            return;
        };
        for sink in others {
            sink.push_spans(spans.iter().cloned());
        }
        last.push_spans(spans.drain(..));
    }

    /// Queues one metrics collection for every exporter.
    pub fn push_metrics(&self, rm: ResourceMetrics) {
        let points = data_points(&rm);
        let rm = Arc::new(rm);
        for sink in &self.sinks {
            sink.push_metrics(rm.clone(), points);
        }
    }

    /// Asks every worker to send what is queued now and waits until the queues are empty or
    /// the deadline passes; returns true if everything was delivered (or dropped).
    pub fn flush(&self, deadline: Instant) -> bool {
        for s in &self.sinks {
            s.lock().flushing = true;
            s.wake.notify_all();
        }
        let mut all = true;
        for s in &self.sinks {
            let mut q = s.lock();
            while (!q.is_empty() || q.busy) && !q.finished {
                let now = Instant::now();
                if now >= deadline {
                    all = false;
                    break;
                }
                q = s
                    .wake
                    .wait_timeout(q, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            q.flushing = false;
        }
        all
    }

    /// Delivers what is queued until `deadline`, then stops the workers; anything left is
    /// counted as dropped.
    pub fn shutdown(&mut self, deadline: Instant) {
        for s in &self.sinks {
            s.lock().shutdown = Some(deadline);
            s.wake.notify_all();
        }
        for s in &self.sinks {
            let mut q = s.lock();
            while !q.finished {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                q = s
                    .wake
                    .wait_timeout(q, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if !q.finished {
                // Cut the request in flight short; the worker then drops what is left.
                s.abort.notify_one();
                s.wake.notify_all();
            }
        }
        let grace = Instant::now() + Duration::from_millis(500);
        for s in &self.sinks {
            let mut q = s.lock();
            while !q.finished && Instant::now() < grace {
                q = s
                    .wake
                    .wait_timeout(q, Duration::from_millis(50))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        for h in self.workers.drain(..) {
            // Joined only if it is done: an abandoned request never holds netmon's exit.
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Sink {
    fn new(name: &'static str, limits: QueueLimits) -> Sink {
        Sink {
            name,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stats: Arc::new(SinkStats::default()),
            abort: tokio::sync::Notify::new(),
            limits,
        }
    }

    fn push_spans(&self, spans: impl ExactSizeIterator<Item = SpanDraft>) {
        let mut q = self.lock();
        if q.finished {
            self.stats
                .traces
                .dropped
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            return;
        }
        q.spans.extend(spans);
        let over = q.spans.len().saturating_sub(self.limits.max_spans);
        if over > 0 {
            q.spans.drain(..over);
            self.stats
                .traces
                .dropped
                .fetch_add(over as u64, Ordering::Relaxed);
        }
        let wake = q.spans.len() >= self.limits.max_batch;
        drop(q);
        if wake {
            self.wake.notify_all();
        }
    }

    fn push_metrics(&self, rm: Arc<ResourceMetrics>, points: usize) {
        let mut q = self.lock();
        if q.finished {
            self.stats
                .metrics
                .dropped
                .fetch_add(points as u64, Ordering::Relaxed);
            return;
        }
        q.metrics.push_back((rm, points));
        q.points += points;
        // Keep at least the newest collection, whatever its size.
        while q.points > self.limits.max_points && q.metrics.len() > 1 {
            if let Some((_, p)) = q.metrics.pop_front() {
                q.points -= p;
                self.stats
                    .metrics
                    .dropped
                    .fetch_add(p as u64, Ordering::Relaxed);
            }
        }
        drop(q);
        self.wake.notify_all();
    }
}

enum Work {
    /// Spans taken from the queue; they go back to it if the request fails.
    Spans(Vec<SpanDraft>),
    Metrics(Arc<ResourceMetrics>, usize),
}

/// Whether a failed request may succeed later. The OTLP exporter reports the HTTP status or
/// gRPC code in its message; 4xx (but 408 and 429) and the gRPC codes of a request that can
/// never be accepted are permanent.
pub fn is_permanent(message: &str) -> bool {
    if let Some(rest) = message.split("status code: ").nth(1) {
        let code: u16 = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        return (400..500).contains(&code) && code != 408 && code != 429;
    }
    if let Some(rest) = message.split("gRPC code: ").nth(1) {
        return [
            "InvalidArgument",
            "NotFound",
            "PermissionDenied",
            "Unauthenticated",
            "Unimplemented",
            "FailedPrecondition",
            "OutOfRange",
        ]
        .iter()
        .any(|c| rest.starts_with(c));
    }
    false
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

fn worker(sink: Arc<Sink>, target: Target, envelope: Envelope, rt: tokio::runtime::Runtime) {
    let _log = tracing::subscriber::set_default(SdkLogCapture {
        stats: sink.stats.clone(),
    });
    let describe = match &target {
        Target::Otlp { describe, .. } => format!("otlp export to {describe}"),
        Target::Json(_) => "otlp-json export".to_string(),
    };
    let limits = sink.limits.clone();
    // Span messages are written here, on this thread, over those of the last request.
    let mut request = TraceRequest::new(envelope);
    let mut next_spans = Instant::now() + limits.span_delay;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = BACKOFF_START;
    let mut failing: Option<u64> = None;
    loop {
        let work = {
            let mut q = sink.lock();
            loop {
                let now = Instant::now();
                if let Some(deadline) = q.shutdown
                    && (q.is_empty() || now >= deadline)
                {
                    let spans = q.spans.len() as u64;
                    let points = q.points as u64;
                    q.spans.clear();
                    q.metrics.clear();
                    q.points = 0;
                    sink.stats
                        .traces
                        .dropped
                        .fetch_add(spans, Ordering::Relaxed);
                    sink.stats
                        .metrics
                        .dropped
                        .fetch_add(points, Ordering::Relaxed);
                    if spans + points > 0 {
                        eprintln!(
                            "netmon: {describe}: {spans} spans and {points} metric data points not delivered before exit"
                        );
                    }
                    q.finished = true;
                    sink.wake.notify_all();
                    return;
                }
                let wait_retry = retry_at.filter(|t| *t > now && q.shutdown.is_none());
                if let Some(t) = wait_retry {
                    q = sink
                        .wake
                        .wait_timeout(q, t - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                    continue;
                }
                if let Some((rm, points)) = q.metrics.front() {
                    let w = Work::Metrics(rm.clone(), *points);
                    q.busy = true;
                    break w;
                }
                let spans_due = q.spans.len() >= limits.max_batch
                    || (!q.spans.is_empty()
                        && (now >= next_spans || q.flushing || q.shutdown.is_some()));
                if spans_due {
                    let n = q.spans.len().min(limits.max_batch);
                    let batch: Vec<SpanDraft> = q.spans.drain(..n).collect();
                    q.busy = true;
                    break Work::Spans(batch);
                }
                if q.is_empty() {
                    // Lets a flush see that everything was delivered.
                    sink.wake.notify_all();
                }
                let timeout = if q.spans.is_empty() {
                    Duration::from_secs(3600)
                } else {
                    next_spans.saturating_duration_since(now)
                };
                q = sink
                    .wake
                    .wait_timeout(q, timeout)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let (signal, items) = match &work {
            Work::Spans(s) => (Signal::Traces, s.len() as u64),
            Work::Metrics(_, p) => (Signal::Metrics, *p as u64),
        };
        let result = rt.block_on(async {
            let export = async {
                match (&target, &work) {
                    (Target::Otlp { spans, .. }, Work::Spans(drafts)) => {
                        spans.export(request.fill(drafts)).await
                    }
                    (Target::Otlp { metrics, .. }, Work::Metrics(rm, _)) => metrics
                        .export(rm)
                        .await
                        .map(|()| None)
                        .map_err(|e| Failure::new(e.to_string())),
                    (Target::Json(f), Work::Spans(drafts)) => f
                        .export_spans(request.fill(drafts))
                        .map(|()| None)
                        .map_err(Failure::new),
                    (Target::Json(f), Work::Metrics(rm, _)) => {
                        f.export_metrics(rm).map(|()| None).map_err(Failure::new)
                    }
                }
            };
            tokio::select! {
                r = tokio::time::timeout(limits.request_timeout, export) => {
                    r.unwrap_or_else(|_| Err(Failure::new("timed out".to_string())))
                }
                _ = sink.abort.notified() => Err(Failure::new("abandoned at exit".to_string())),
            }
        });
        if let Ok(Some(rejected)) = &result {
            note_rejected(&sink.stats, rejected.spans, 0, &rejected.message);
        }
        let permanent = result.as_ref().is_err_and(|f| is_permanent(&f.message));
        // Spans of a request that may still succeed go back to the queue.
        let requeue = match work {
            Work::Spans(drafts) if result.is_err() && !permanent => Some(drafts),
            _ => None,
        };
        let stats = sink.stats.of(signal);
        let mut q = sink.lock();
        q.busy = false;
        if signal == Signal::Traces {
            next_spans = Instant::now() + limits.span_delay;
        }
        match result {
            Ok(_) => {
                stats.exported.fetch_add(items, Ordering::Relaxed);
                if signal == Signal::Metrics
                    && let Some((_, p)) = q.metrics.pop_front()
                {
                    q.points -= p;
                }
                retry_at = None;
                backoff = BACKOFF_START;
                if let Some(n) = failing.take() {
                    eprintln!("netmon: {describe} works again after {n} failed requests");
                }
            }
            Err(failure) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if failing.is_none() {
                    eprintln!(
                        "netmon: {describe} of {} failed: {}; {}",
                        signal.as_str(),
                        failure.message,
                        if permanent {
                            "the receiver refused the data, it is dropped"
                        } else {
                            "retrying, queued telemetry is kept (oldest dropped when full)"
                        }
                    );
                }
                failing = Some(failing.unwrap_or(0) + 1);
                if permanent {
                    stats.dropped.fetch_add(items, Ordering::Relaxed);
                    if signal == Signal::Metrics
                        && let Some((_, p)) = q.metrics.pop_front()
                    {
                        q.points -= p;
                    }
                } else {
                    if let Some(batch) = requeue {
                        for s in batch.into_iter().rev() {
                            q.spans.push_front(s);
                        }
                        let over = q.spans.len().saturating_sub(limits.max_spans);
                        if over > 0 {
                            q.spans.drain(..over);
                            stats.dropped.fetch_add(over as u64, Ordering::Relaxed);
                        }
                    }
                    let wait = failure
                        .retry_after
                        .map_or(backoff, |r| r.clamp(backoff, BACKOFF_MAX));
                    retry_at = Some(Instant::now() + wait);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        sink.wake.notify_all();
    }
}

/// Counts what a receiver rejected (OTLP partial success); the first time, says so.
fn note_rejected(stats: &SinkStats, spans: u64, points: u64, message: &str) {
    let first = stats.traces.rejected.load(Ordering::Relaxed)
        + stats.metrics.rejected.load(Ordering::Relaxed)
        == 0;
    stats.traces.rejected.fetch_add(spans, Ordering::Relaxed);
    stats.metrics.rejected.fetch_add(points, Ordering::Relaxed);
    if first {
        eprintln!(
            "netmon: the OTLP receiver rejected part of an export ({spans} spans, {points} data points): {message}"
        );
    }
}

/// Captures the OTLP metrics exporter's internal log events on a worker thread: partial-success
/// responses carry the number of rejected items.
struct SdkLogCapture {
    stats: Arc<SinkStats>,
}

#[derive(Default)]
struct PartialSuccess {
    name: String,
    rejected_spans: u64,
    rejected_points: u64,
    message: String,
}

impl tracing::field::Visit for PartialSuccess {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "name" => self.name = format!("{value:?}").trim_matches('"').to_string(),
            "error_message" => self.message = format!("{value:?}").trim_matches('"').to_string(),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "name" => self.name = value.to_string(),
            "error_message" => self.message = value.to_string(),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "rejected_spans" => self.rejected_spans = value,
            "rejected_data_points" => self.rejected_points = value,
            _ => {}
        }
    }
}

impl tracing::Subscriber for SdkLogCapture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.is_event() && *m.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut v = PartialSuccess::default();
        event.record(&mut v);
        if !v.name.ends_with("PartialSuccess") {
            return;
        }
        note_rejected(&self.stats, v.rejected_spans, v.rejected_points, &v.message);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_told_from_transient_ones() {
        assert!(is_permanent("HTTP export failed with status code: 400"));
        assert!(is_permanent("HTTP export failed with status code: 404"));
        assert!(!is_permanent("HTTP export failed with status code: 429"));
        assert!(!is_permanent("HTTP export failed with status code: 503"));
        assert!(!is_permanent("HTTP export failed: network error"));
        assert!(is_permanent(
            "TonicTracesClient export failed with gRPC code: Unimplemented"
        ));
        assert!(!is_permanent(
            "TonicTracesClient export failed with gRPC code: Unavailable: transport error"
        ));
        assert!(!is_permanent("timed out"));
    }
}
