//! Delivery: one background worker per exporter, each with its own bounded queue, so a slow
//! or unreachable receiver delays nothing but itself. The monitored program never waits for
//! any of it (it only writes shared memory); the collector's reader only appends to queues.
//!
//! - Bounded memory: a full span queue drops its oldest spans, a full metrics queue its oldest
//!   collections; every drop is counted and reported.
//! - Retry as the OTLP specification says ("Failures"): only what it calls retryable (HTTP
//!   429, 502, 503, 504; the gRPC codes of its table, `RESOURCE_EXHAUSTED` only with
//!   `RetryInfo`; no answer at all) stays queued and is retried, after a backoff of 250 ms
//!   doubling to 5 s — longer if the receiver's `Retry-After` or `RetryInfo` says so, up to
//!   5 s. Anything else the receiver refused is dropped at once and counted. Traces and
//!   metrics back off separately: one signal's failures never hold the other's data.
//! - Partial success: what the receiver rejected is counted, at most the request's own items.
//!   So for each signal, whatever happens: items queued = exported + dropped + rejected.
//! - Bounded shutdown: [`Exporters::shutdown`] delivers what is queued until a deadline,
//!   backing off as always, and stops early when no retry is due before it; it then abandons
//!   the rest (counted) and any request in flight.

use super::config::{OtlpSignal, Protocol, Signal};
use super::metrics::data_points;
use super::otlp_client::{Failure, OtlpClient};
use super::otlp_json::OtlpJsonFile;
use super::otlp_traces::{Envelope, TraceRequest};
use super::spans::SpanDraft;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use std::collections::VecDeque;
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
        spans: Box<OtlpClient>,
        metrics: Box<OtlpClient>,
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
    /// Spans of the batch being exported (taken out of `spans`; a metrics collection being
    /// exported stays at the front of `metrics`).
    in_flight_spans: usize,
    shutdown: Option<Instant>,
    finished: bool,
    /// The worker did not stop in time at shutdown: what it held is counted as dropped, and it
    /// must count nothing more.
    abandoned: bool,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.metrics.is_empty()
    }
}

struct Sink {
    name: &'static str,
    /// The exporter and where it sends, for messages.
    describe: String,
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

/// One client per signal: each may have its own endpoint, protocol, headers and timeout.
fn build_otlp(
    traces: &OtlpSignal,
    metrics: &OtlpSignal,
) -> Result<(OtlpClient, OtlpClient), BuildError> {
    let client = |sig: &OtlpSignal, signal: Signal| match sig.protocol {
        Protocol::Grpc => OtlpClient::grpc(sig, signal),
        Protocol::HttpProtobuf => Ok(OtlpClient::http(sig, http_client(sig)?)),
    };
    Ok((
        client(traces, Signal::Traces)?,
        client(metrics, Signal::Metrics)?,
    ))
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
        limits: QueueLimits,
    ) -> Result<Exporters, BuildError> {
        let mut pending = Vec::new();
        let mut sinks = Vec::new();
        if let Some((traces, metrics)) = otlp {
            let rt = runtime()?;
            // tonic's lazy channel starts its connection task on the current runtime.
            let built = {
                let _guard = rt.enter();
                build_otlp(traces, metrics)?
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
                },
                rt,
            ));
            sinks.push(Arc::new(Sink::new(
                "otlp",
                format!("otlp export to {describe}"),
                limits.clone(),
            )));
        }
        if let Some(path) = otlp_json {
            let file = OtlpJsonFile::create(path)
                .map_err(|e| BuildError(format!("cannot create {}: {e}", path.display())))?;
            pending.push((Target::Json(Box::new(file)), runtime()?));
            sinks.push(Arc::new(Sink::new(
                "otlp-json",
                "otlp-json export".to_string(),
                limits.clone(),
            )));
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
            if !q.finished {
                // A worker stuck where the abort cannot reach (a blocking write): it is left
                // behind, and what it held is counted here, once.
                q.abandoned = true;
                let spans = (q.spans.len() + q.in_flight_spans) as u64;
                let points = q.points as u64;
                drop_all(s, &mut q, spans, points);
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
    fn new(name: &'static str, describe: String, limits: QueueLimits) -> Sink {
        Sink {
            name,
            describe,
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
        let was_empty = q.spans.is_empty();
        q.spans.extend(spans);
        let over = q.spans.len().saturating_sub(self.limits.max_spans);
        if over > 0 {
            q.spans.drain(..over);
            self.stats
                .traces
                .dropped
                .fetch_add(over as u64, Ordering::Relaxed);
        }
        // An idle worker sleeps until woken: the first spans set its batch timer, a full batch
        // goes at once.
        let wake = was_empty || q.spans.len() >= self.limits.max_batch;
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

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Retry timing of one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Backoff {
    /// Nothing of the signal is sent before this (after a retryable failure).
    until: Option<Instant>,
    /// The wait after the next failure.
    next: Duration,
}

impl Backoff {
    const fn new() -> Backoff {
        Backoff {
            until: None,
            next: BACKOFF_START,
        }
    }

    /// The earliest time a request that is due at `due` may go.
    fn allows(&self, due: Instant) -> Instant {
        self.until.map_or(due, |t| t.max(due))
    }

    /// A retryable failure at `now`: wait the backoff, or what the receiver asked (`retry_after`)
    /// within [backoff, BACKOFF_MAX].
    fn failed(&mut self, now: Instant, retry_after: Option<Duration>) {
        let wait = retry_after.map_or(self.next, |r| r.clamp(self.next, BACKOFF_MAX));
        self.until = Some(now + wait);
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }
}

/// What the worker does next, decided under the queue lock.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Metrics,
    /// A batch of spans.
    Spans,
    /// Nothing more can be delivered: drop what is left and stop.
    Finish,
    /// Sleep until this time (or a wake-up).
    Wait(Option<Instant>),
}

/// The worker's decision at `now`. Metrics go first; spans when a batch is full, their delay
/// has passed, or a flush or the shutdown waits; each signal only once its backoff allows. At
/// shutdown the worker stops at the deadline, or before it once nothing can be sent in time.
fn next_work(
    q: &Queue,
    now: Instant,
    next_spans: Instant,
    max_batch: usize,
    backoff: &[Backoff; 2],
) -> Next {
    let metrics_at = (!q.metrics.is_empty()).then(|| backoff[METRICS].allows(now));
    let spans_at = (!q.spans.is_empty()).then(|| {
        let due = if q.spans.len() >= max_batch || q.flushing || q.shutdown.is_some() {
            now
        } else {
            next_spans.max(now)
        };
        backoff[TRACES].allows(due)
    });
    if let Some(deadline) = q.shutdown
        && (now >= deadline
            || [metrics_at, spans_at]
                .iter()
                .flatten()
                .all(|t| *t >= deadline))
    {
        return Next::Finish;
    }
    if metrics_at.is_some_and(|t| t <= now) {
        return Next::Metrics;
    }
    if spans_at.is_some_and(|t| t <= now) {
        return Next::Spans;
    }
    Next::Wait(
        [metrics_at, spans_at, q.shutdown]
            .into_iter()
            .flatten()
            .min(),
    )
}

const TRACES: usize = 0;
const METRICS: usize = 1;

/// Drops everything `q` holds (`spans` spans and `points` data points, the in-flight ones
/// included when the caller says so), counted, and marks the sink finished.
fn drop_all(sink: &Sink, q: &mut Queue, spans: u64, points: u64) {
    q.spans.clear();
    q.metrics.clear();
    q.points = 0;
    q.in_flight_spans = 0;
    sink.stats
        .traces
        .dropped
        .fetch_add(spans, Ordering::Relaxed);
    sink.stats
        .metrics
        .dropped
        .fetch_add(points, Ordering::Relaxed);
    if spans > 0 || points > 0 {
        eprintln!(
            "netmon: {}: {spans} spans and {points} metric data points not delivered before exit",
            sink.describe
        );
    }
    q.finished = true;
    sink.wake.notify_all();
}

fn worker(sink: Arc<Sink>, target: Target, envelope: Envelope, rt: tokio::runtime::Runtime) {
    let describe = &sink.describe;
    let limits = sink.limits.clone();
    // Span messages are written here, on this thread, over those of the last request.
    let mut request = TraceRequest::new(envelope);
    let mut next_spans = Instant::now() + limits.span_delay;
    let mut backoff = [Backoff::new(); 2];
    let mut failing: Option<u64> = None;
    loop {
        let work = {
            let mut q = sink.lock();
            loop {
                if q.abandoned {
                    return;
                }
                let now = Instant::now();
                match next_work(&q, now, next_spans, limits.max_batch, &backoff) {
                    Next::Finish => {
                        let (spans, points) = (q.spans.len() as u64, q.points as u64);
                        drop_all(&sink, &mut q, spans, points);
                        return;
                    }
                    Next::Metrics => {
                        if let Some((rm, points)) = q.metrics.front() {
                            let w = Work::Metrics(rm.clone(), *points);
                            q.busy = true;
                            break w;
                        }
                    }
                    Next::Spans => {
                        let n = q.spans.len().min(limits.max_batch);
                        let batch: Vec<SpanDraft> = q.spans.drain(..n).collect();
                        q.busy = true;
                        q.in_flight_spans = n;
                        break Work::Spans(batch);
                    }
                    Next::Wait(until) => {
                        if q.is_empty() {
                            // Lets a flush see that everything was delivered.
                            sink.wake.notify_all();
                        }
                        let timeout = until.map_or(Duration::from_secs(3600), |t| {
                            t.saturating_duration_since(now)
                        });
                        q = sink
                            .wake
                            .wait_timeout(q, timeout)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                }
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
                        spans.export_spans(request.fill(drafts)).await
                    }
                    (Target::Otlp { metrics, .. }, Work::Metrics(rm, _)) => {
                        let request = Arc::new(ExportMetricsServiceRequest::from(&**rm));
                        metrics.export_metrics(&request).await
                    }
                    (Target::Json(f), Work::Spans(drafts)) => f
                        .export_spans(request.fill(drafts))
                        .map(|()| None)
                        .map_err(Failure::transient),
                    (Target::Json(f), Work::Metrics(rm, _)) => f
                        .export_metrics(rm)
                        .map(|()| None)
                        .map_err(Failure::transient),
                }
            };
            tokio::select! {
                r = tokio::time::timeout(limits.request_timeout, export) => {
                    r.unwrap_or_else(|_| Err(Failure::transient("timed out".to_string())))
                }
                _ = sink.abort.notified() => {
                    Err(Failure::transient("abandoned at exit".to_string()))
                }
            }
        });
        // A receiver cannot reject more than the request carried.
        let rejected = match &result {
            Ok(Some(r)) => Some((r.items.min(items), r.message.as_str())),
            _ => None,
        };
        let s = match signal {
            Signal::Traces => TRACES,
            Signal::Metrics => METRICS,
        };
        let stats = sink.stats.of(signal);
        let mut q = sink.lock();
        q.busy = false;
        q.in_flight_spans = 0;
        if q.abandoned {
            return; // counted by the shutdown
        }
        if signal == Signal::Traces {
            next_spans = Instant::now() + limits.span_delay;
        }
        let done = match result {
            Ok(_) => {
                let rejected_items = rejected.map_or(0, |(n, _)| n);
                stats
                    .exported
                    .fetch_add(items - rejected_items, Ordering::Relaxed);
                if let Some((n, message)) = rejected {
                    note_rejected(&sink.stats, signal, n, message);
                }
                backoff[s] = Backoff::new();
                if let Some(n) = failing.take() {
                    eprintln!("netmon: {describe} works again after {n} failed requests");
                }
                true
            }
            Err(failure) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                if failing.is_none() {
                    eprintln!(
                        "netmon: {describe} of {} failed: {}; {}",
                        signal.as_str(),
                        failure.message,
                        if failure.permanent {
                            "the receiver refused the data, it is dropped"
                        } else {
                            "retrying, queued telemetry is kept (oldest dropped when full)"
                        }
                    );
                }
                failing = Some(failing.unwrap_or(0) + 1);
                if failure.permanent {
                    stats.dropped.fetch_add(items, Ordering::Relaxed);
                    // The receiver answered: the next request need not wait.
                    backoff[s] = Backoff::new();
                } else {
                    if let Work::Spans(batch) = work {
                        for span in batch.into_iter().rev() {
                            q.spans.push_front(span);
                        }
                        let over = q.spans.len().saturating_sub(limits.max_spans);
                        if over > 0 {
                            q.spans.drain(..over);
                            stats.dropped.fetch_add(over as u64, Ordering::Relaxed);
                        }
                    }
                    backoff[s].failed(Instant::now(), failure.retry_after);
                }
                failure.permanent
            }
        };
        if done
            && signal == Signal::Metrics
            && let Some((_, p)) = q.metrics.pop_front()
        {
            q.points -= p;
        }
        sink.wake.notify_all();
    }
}

/// Counts what a receiver rejected (OTLP partial success); the first time, says so.
fn note_rejected(stats: &SinkStats, signal: Signal, items: u64, message: &str) {
    let first = stats.traces.rejected.load(Ordering::Relaxed) == 0
        && stats.metrics.rejected.load(Ordering::Relaxed) == 0;
    stats
        .of(signal)
        .rejected
        .fetch_add(items, Ordering::Relaxed);
    if first && items > 0 {
        let what = match signal {
            Signal::Traces => "spans",
            Signal::Metrics => "metric data points",
        };
        let message = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        eprintln!("netmon: the OTLP receiver rejected {items} {what} of an export{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::OtlpSignal;
    use super::super::spans::{ProcessInfo, ProcessTrace};
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use prost::Message;

    fn queue(spans: usize, metrics: bool) -> Queue {
        let mut q = Queue::default();
        q.spans.extend((0..spans).map(|i| draft(i as u32)));
        if metrics {
            q.metrics
                .push_back((Arc::new(ResourceMetrics::default()), 3));
            q.points = 3;
        }
        q
    }

    #[test]
    fn one_signal_backing_off_never_holds_the_other() {
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut backoff = [Backoff::new(); 2];
        backoff[METRICS].failed(now, None);
        let q = queue(5, true);
        // Spans are due (full batch) while metrics wait.
        assert_eq!(next_work(&q, now, later, 5, &backoff), Next::Spans);
        // Not due yet: sleep until the earlier of the two.
        let until = backoff[METRICS].until.unwrap();
        assert_eq!(
            next_work(&q, now, later, 10, &backoff),
            Next::Wait(Some(until))
        );
        // Metrics first once both may go.
        assert_eq!(next_work(&q, until, later, 5, &backoff), Next::Metrics);
        // Spans back off without holding metrics.
        let mut backoff = [Backoff::new(); 2];
        backoff[TRACES].failed(now, None);
        assert_eq!(next_work(&q, now, now, 5, &backoff), Next::Metrics);
        assert_eq!(
            next_work(&queue(5, false), now, now, 5, &backoff),
            Next::Wait(backoff[TRACES].until)
        );
    }

    #[test]
    fn backoff_doubles_and_honours_the_receivers_delay_within_bounds() {
        let now = Instant::now();
        let mut b = Backoff::new();
        b.failed(now, None);
        assert_eq!(b.until, Some(now + BACKOFF_START));
        b.failed(now, None);
        assert_eq!(b.until, Some(now + BACKOFF_START * 2));
        b.failed(now, Some(Duration::from_secs(3)));
        assert_eq!(b.until, Some(now + Duration::from_secs(3)));
        b.failed(now, Some(Duration::from_secs(3600)));
        assert_eq!(b.until, Some(now + BACKOFF_MAX));
        b.failed(now, Some(Duration::ZERO));
        assert_eq!(
            b.until,
            Some(now + Duration::from_secs(4)),
            "never sooner than the backoff"
        );
    }

    #[test]
    fn shutdown_ends_when_nothing_can_be_sent_before_the_deadline() {
        let now = Instant::now();
        let mut q = queue(3, true);
        q.shutdown = Some(now + Duration::from_secs(1));
        let mut backoff = [Backoff::new(); 2];
        // Spans are due at once at shutdown, whatever their delay.
        assert_eq!(
            next_work(&q, now, now + Duration::from_secs(9), 10, &backoff),
            Next::Metrics
        );
        backoff[METRICS].until = Some(now + Duration::from_millis(300));
        assert_eq!(next_work(&q, now, now, 10, &backoff), Next::Spans);
        backoff[TRACES].until = Some(now + Duration::from_millis(200));
        // Both retries are before the deadline: wait for them, never retry sooner.
        assert_eq!(
            next_work(&q, now, now, 10, &backoff),
            Next::Wait(backoff[TRACES].until)
        );
        // Neither is: stop now.
        backoff[METRICS].until = Some(now + Duration::from_secs(5));
        backoff[TRACES].until = Some(now + Duration::from_secs(5));
        assert_eq!(next_work(&q, now, now, 10, &backoff), Next::Finish);
        // The deadline ends it whatever is due.
        assert_eq!(
            next_work(
                &q,
                now + Duration::from_secs(1),
                now,
                10,
                &[Backoff::new(); 2]
            ),
            Next::Finish
        );
    }

    fn draft(pid: u32) -> SpanDraft {
        let trace = ProcessTrace {
            trace_id: opentelemetry::trace::TraceId::from(1_u128),
            root_span_id: opentelemetry::trace::SpanId::from(u64::from(pid) + 1),
            parent: None,
        };
        SpanDraft::process(
            ProcessInfo {
                pid,
                ppid: 1,
                executable: "x".into(),
                start_ns: 1,
                end_ns: 2,
                parent_process: None,
            },
            &trace,
        )
    }

    fn limits(span_delay: Duration) -> QueueLimits {
        QueueLimits {
            max_spans: 100,
            max_batch: 10,
            span_delay,
            max_points: 100,
            request_timeout: Duration::from_secs(2),
        }
    }

    /// Spans pushed to an idle worker go after the batch delay, not when something else
    /// happens to wake it.
    #[test]
    fn an_idle_worker_sends_spans_after_the_batch_delay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("otlp.jsonl");
        let mut e = Exporters::build(None, Some(&path), limits(Duration::from_millis(20))).unwrap();
        e.start(&Resource::builder_empty().build());
        // Let the worker go to sleep on its empty queue.
        std::thread::sleep(Duration::from_millis(100));
        e.push_spans(&mut vec![draft(1)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the span waited for a wake-up");
            std::thread::sleep(Duration::from_millis(10));
        }
        e.shutdown(Instant::now() + Duration::from_secs(1));
        assert_eq!(e.stats()[0].1.traces.snapshot().exported, 1);
    }

    /// An OTLP/HTTP receiver answering `/v1/traces` with `answer(n)` for its n-th request; it
    /// returns when each request came and the spans it carried.
    fn http_receiver(
        answer: impl Fn(usize) -> tiny_http::ResponseBox + Send + 'static,
    ) -> (u16, std::sync::mpsc::Receiver<(Instant, usize)>) {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for n in 0.. {
                let Ok(mut req) = server.recv() else { return };
                let mut body = Vec::new();
                std::io::Read::read_to_end(req.as_reader(), &mut body).unwrap();
                let spans = ExportTraceServiceRequest::decode(body.as_slice())
                    .map_or(0, |r| r.resource_spans[0].scope_spans[0].spans.len());
                if tx.send((Instant::now(), spans)).is_err() {
                    return;
                }
                let _ = req.respond(answer(n));
            }
        });
        (port, rx)
    }

    fn http_exporters(port: u16) -> Exporters {
        let sig = |path: &str| OtlpSignal {
            protocol: Protocol::HttpProtobuf,
            endpoint: format!("http://127.0.0.1:{port}{path}"),
            headers: vec![],
            timeout: Duration::from_secs(1),
            tls: Default::default(),
        };
        let mut e = Exporters::build(
            Some((&sig("/v1/traces"), &sig("/v1/metrics"))),
            None,
            limits(Duration::from_millis(10)),
        )
        .unwrap();
        e.start(&Resource::builder_empty().build());
        e
    }

    fn status(code: u16) -> tiny_http::ResponseBox {
        tiny_http::Response::empty(code).boxed()
    }

    /// A retryable status is retried after a backoff, also during the exit-time delivery (which
    /// once retried in a tight loop), and the spans are counted as dropped at the deadline.
    #[test]
    fn retryable_failures_back_off_until_the_deadline() {
        let (port, requests) = http_receiver(|_| status(503));
        let mut e = http_exporters(port);
        e.push_spans(&mut (0..3).map(draft).collect());
        let first = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        e.shutdown(started + Duration::from_millis(1200));
        let elapsed = started.elapsed();
        let times: Vec<Instant> = std::iter::once(first.0)
            .chain(requests.try_iter().map(|r| r.0))
            .collect();
        // 250 ms, then 500 ms: two retries fit in the window, the third (1 s later) would not.
        assert!((2..=3).contains(&times.len()), "{} requests", times.len());
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(240),
                "{:?}",
                w[1] - w[0]
            );
        }
        assert!(
            elapsed < Duration::from_millis(1200),
            "no retry was due: {elapsed:?}"
        );
        let t = e.stats()[0].1.traces.snapshot();
        assert_eq!((t.exported, t.dropped, t.rejected), (0, 3, 0), "{t:?}");
        assert_eq!(t.failures, times.len() as u64);
    }

    /// A status the specification says must not be retried (500 is one) drops the request's
    /// spans at once, counted; the next batch still goes.
    #[test]
    fn refused_requests_are_dropped_not_retried() {
        let (port, requests) = http_receiver(|n| status(if n == 0 { 500 } else { 400 }));
        let mut e = http_exporters(port);
        e.push_spans(&mut (0..3).map(draft).collect());
        assert_eq!(requests.recv_timeout(Duration::from_secs(5)).unwrap().1, 3);
        e.push_spans(&mut (3..5).map(draft).collect());
        assert_eq!(requests.recv_timeout(Duration::from_secs(5)).unwrap().1, 2);
        let started = Instant::now();
        e.shutdown(started + Duration::from_secs(3));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(requests.try_iter().count(), 0, "retried");
        let t = e.stats()[0].1.traces.snapshot();
        assert_eq!((t.exported, t.dropped, t.failures), (0, 5, 2), "{t:?}");
    }

    /// A partial success counts the rejected spans, never more than the request carried;
    /// exported + rejected is what was sent.
    #[test]
    fn partial_success_counts_at_most_the_requests_spans() {
        let (port, requests) = http_receiver(|n| {
            let partial = ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: if n == 0 { i64::MAX } else { 1 },
                    error_message: "too old".into(),
                }),
            };
            tiny_http::Response::from_data(partial.encode_to_vec()).boxed()
        });
        let mut e = http_exporters(port);
        e.push_spans(&mut (0..3).map(draft).collect());
        requests.recv_timeout(Duration::from_secs(5)).unwrap();
        e.push_spans(&mut (3..5).map(draft).collect());
        requests.recv_timeout(Duration::from_secs(5)).unwrap();
        e.shutdown(Instant::now() + Duration::from_secs(3));
        let t = e.stats()[0].1.traces.snapshot();
        assert_eq!(
            (t.exported, t.rejected, t.dropped, t.failures),
            (1, 4, 0, 0),
            "{t:?}"
        );
    }
}
