//! `netmon extension`: the AWS Lambda external extension (`/opt/extensions/netmon`).
//!
//! Lifecycle: create the shared-memory region (before registering, so it exists before the
//! runtime starts), register for INVOKE and SHUTDOWN, subscribe to the Telemetry API as a
//! fallback, then loop on `event/next`. For each INVOKE it waits until the runtime has finished
//! — woken by the interceptor the moment the runtime posts its response, or by the Telemetry
//! API's `platform.runtimeDone` when no interceptor is loaded, bounded by the deadline — reads
//! the region and reports the invocation. On SHUTDOWN it reports what is left and exits within
//! the deadline.

use super::api::{ApiBase, Extension, NextEvent};
use super::invocation::{self, InvocationReport};
use super::telemetry_api::{self, PlatformEvent};
use super::xray;
use crate::session::{self, Session};
use crate::telemetry::pipeline::RemoteParent;
use crate::telemetry::{self, ExportFlags, Pipeline, resource::Workload};
use crate::tracker::{InvocationPhase, Tracker};
use anyhow::{Context, Result};
use netmon_proto::region::Geometry;
use netmon_proto::{MAX_EVENT_SLOTS, MAX_RING_CAPACITY, MAX_RINGS, MAX_SOCKETS};
use opentelemetry::trace::{SpanId, TraceId};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings from `NETMON_*` variables. A bad value is reported and replaced by its default
/// (unless `NETMON_ON_ERROR=fail`): a monitoring extension must not take the function down.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub shm_dir: std::path::PathBuf,
    pub geometry: Geometry,
    /// Also print each report as CloudWatch Embedded Metric Format.
    pub emf: bool,
    /// Subscribe to the Telemetry API (the fallback when the interceptor is not loaded).
    pub telemetry_api: bool,
    /// Report configuration errors through `init/error` (fails the init) instead of
    /// continuing with defaults.
    pub fail_on_error: bool,
    pub flush: FlushPolicy,
    /// Bound on a flush at the end of an invocation.
    pub flush_timeout: Duration,
    /// Exporters (`NETMON_EXPORTERS`; `otlp` by default when an OTLP endpoint is set).
    pub exporters: Option<String>,
}

/// When telemetry leaves the environment. Time the extension spends before calling `next`
/// is billed and delays the freeze; anything not sent before the freeze waits for the next
/// invocation (or SHUTDOWN, where everything left is flushed within the deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Export from background threads while the function runs; never wait before `next`
    /// (near-zero added duration; data of the last invocation may leave on the next one).
    Background,
    /// Also wait for delivery at the end of every invocation, bounded by the flush timeout
    /// (data leaves at once; the wait is billed).
    End,
}

impl Config {
    /// Reads the configuration; returns it and the errors found (one line each).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
        let mut errors = Vec::new();
        let defaults = Geometry::default();
        let mut flag = |name: &str, default: bool| match get(name).as_deref().map(str::trim) {
            None | Some("") => default,
            Some("1" | "true" | "on" | "yes") => true,
            Some("0" | "false" | "off" | "no") => false,
            Some(v) => {
                errors.push(format!(
                    "{name}={v:?} is not a boolean (use 1 or 0); using {}",
                    default as u8
                ));
                default
            }
        };
        let emf = flag("NETMON_EMF", false);
        let telemetry_api = flag("NETMON_TELEMETRY_API", true);
        let mut number = |name: &str, default: u32, min: u32, max: u32| match get(name)
            .as_deref()
            .map(str::trim)
        {
            None | Some("") => default,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= min && n <= max => n,
                _ => {
                    errors.push(format!(
                        "{name}={v:?} must be a number in {min}..={max}; using {default}"
                    ));
                    default
                }
            },
        };
        // The same ranges as `netmon run`'s flags and the region's own limits.
        let geometry = Geometry {
            rings: number("NETMON_RINGS", defaults.rings, 1, MAX_RINGS),
            ring_capacity: number(
                "NETMON_RING_SLOTS",
                defaults.ring_capacity,
                MAX_EVENT_SLOTS as u32,
                MAX_RING_CAPACITY,
            ),
            sockets: number("NETMON_SOCKETS", defaults.sockets, 1, MAX_SOCKETS),
        };
        let flush_timeout =
            Duration::from_millis(number("NETMON_FLUSH_TIMEOUT_MS", 1000, 1, 600_000).into());
        let fail_on_error = match get("NETMON_ON_ERROR").as_deref().map(str::trim) {
            None | Some("") | Some("continue") => false,
            Some("fail") => true,
            Some(v) => {
                errors.push(format!(
                    "NETMON_ON_ERROR={v:?} must be continue or fail; using continue"
                ));
                false
            }
        };
        let flush = match get("NETMON_FLUSH").as_deref().map(str::trim) {
            None | Some("") | Some("background") => FlushPolicy::Background,
            Some("end") => FlushPolicy::End,
            Some(v) => {
                errors.push(format!(
                    "NETMON_FLUSH={v:?} must be background or end; using background"
                ));
                FlushPolicy::Background
            }
        };
        let exporters = get("NETMON_EXPORTERS")
            .filter(|v| !v.trim().is_empty())
            .or_else(|| {
                [
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                ]
                .iter()
                .any(|k| get(k).is_some_and(|v| !v.trim().is_empty()))
                .then(|| "otlp".to_string())
            });
        let shm_dir = get("NETMON_SHM_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(session::default_dir, Into::into);
        (
            Config {
                shm_dir,
                geometry,
                emf,
                telemetry_api,
                fail_on_error,
                flush,
                flush_timeout,
                exporters,
            },
            errors,
        )
    }
}

/// The extension's name, which Lambda requires to match its file name in `/opt/extensions`.
fn extension_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "netmon".into())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Time left until `deadline_ms` (ms since the epoch), less `margin`.
fn until(deadline_ms: u64, margin: Duration) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(now_ms())).saturating_sub(margin)
}

/// How the end of an invocation was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DoneBy {
    Interceptor,
    TelemetryApi,
    Deadline,
}

struct State {
    session: Option<Session>,
    tracker: Tracker,
    pipeline: Option<Pipeline>,
    flush: FlushPolicy,
    flush_timeout: Duration,
    /// Epochs whose trace context the pipeline knows.
    announced: std::collections::BTreeSet<u32>,
    init_ended: bool,
    invocations_seen: u64,
    /// The Telemetry API has delivered something: its `platform.runtimeDone` can be waited for.
    telemetry_live: bool,
    /// Interface counters (rx, tx) at the start of the current phase (init, then each
    /// invocation), from `/proc/net/dev`.
    dev_mark: Option<(u64, u64)>,
    /// The init phase's interface bytes, measured when the first invocation starts.
    init_dev: Option<(u64, u64)>,
    platform: Option<Receiver<PlatformEvent>>,
    function_name: String,
    emf: bool,
    /// Position (absolute, see `Tracker::invocations_pruned`) in the invocation marks already
    /// looked at.
    marks_seen: usize,
    init_reported: bool,
}

impl State {
    fn poll(&mut self) {
        if let Some(s) = &self.session {
            self.tracker.poll(&s.region);
        }
    }

    /// Whether any process loaded the interceptor into this environment.
    fn interceptor_attached(&self) -> bool {
        self.session.as_ref().is_some_and(|s| {
            s.region
                .header()
                .attached_processes
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        })
    }

    fn health(&self) -> crate::tracker::Health {
        self.session
            .as_ref()
            .map(|s| self.tracker.health(&s.region))
            .unwrap_or_default()
    }

    /// Hands what is new to the exporters (they send it from their own threads).
    fn collect(&mut self) {
        let health = self.health();
        if let Some(p) = &mut self.pipeline {
            p.collect(&self.tracker, health);
        }
    }

    /// Tells the pipeline which trace the spans of `request_id`'s epoch join, once the
    /// interceptor has announced the epoch. Returns the epoch.
    fn announce(
        &mut self,
        request_id: &str,
        parent: Option<RemoteParent>,
        start_ns: u64,
    ) -> Option<u32> {
        let epoch = self.epoch_of(request_id)?;
        if self.announced.insert(epoch)
            && let Some(p) = &mut self.pipeline
        {
            if epoch > 0 && !self.init_ended {
                // The init phase ends where the first invocation starts.
                p.end_invocation(0, start_ns);
                self.init_ended = true;
            }
            p.begin_invocation(
                epoch,
                Some(request_id),
                parent,
                self.invocations_seen == 1,
                start_ns,
            );
        }
        Some(epoch)
    }

    /// Waits until the runtime has finished `request_id`, or the deadline; meanwhile hands
    /// new data to the exporters every 100 ms, so it leaves while the function runs.
    fn wait_runtime_done(
        &mut self,
        request_id: &str,
        deadline_ms: u64,
        parent: Option<RemoteParent>,
        start_ns: u64,
    ) -> DoneBy {
        let mut next_collect = Instant::now() + Duration::from_millis(100);
        loop {
            if !self.telemetry_live && !self.interceptor_attached() {
                // Nothing can tell when the runtime is done: don't hold the invocation.
                return DoneBy::Deadline;
            }
            let announced = self.announce(request_id, parent, start_ns).is_some();
            if announced && Instant::now() >= next_collect {
                self.collect();
                next_collect = Instant::now() + Duration::from_millis(100);
            }
            let seen = self.session.as_ref().map(|s| {
                s.region
                    .header()
                    .invocations_done
                    .load(std::sync::atomic::Ordering::Acquire)
            });
            self.poll();
            let from = self
                .marks_seen
                .saturating_sub(self.tracker.invocations_pruned);
            let done = self.tracker.invocations[from.min(self.tracker.invocations.len())..]
                .iter()
                .any(|m| m.request_id == request_id && m.phase != InvocationPhase::Start);
            if done {
                return DoneBy::Interceptor;
            }
            if let Some(rx) = &self.platform {
                while let Ok(e) = rx.try_recv() {
                    match &e {
                        PlatformEvent::Delivered => self.telemetry_live = true,
                        PlatformEvent::RuntimeDone { request_id: r, .. } if r == request_id => {
                            return DoneBy::TelemetryApi;
                        }
                        _ => {}
                    }
                }
            }
            let left = until(deadline_ms, Duration::ZERO);
            if left.is_zero() {
                return DoneBy::Deadline;
            }
            // The interceptor wakes us the moment the runtime posts its response; the slice
            // bounds how late a Telemetry API record is noticed.
            let slice = left.min(Duration::from_millis(5));
            match (&self.session, seen) {
                (Some(s), Some(seen)) => {
                    s.region.wait_invocation_done(seen, slice);
                }
                _ => std::thread::sleep(slice),
            }
        }
    }

    /// The epoch the interceptor opened for `request_id`, if it saw the invocation start.
    fn epoch_of(&self, request_id: &str) -> Option<u32> {
        self.tracker
            .invocations
            .iter()
            .rev()
            .find(|m| m.phase == InvocationPhase::Start && m.request_id == request_id)
            .map(|m| m.epoch)
    }

    /// Interface bytes since the last mark, and a new mark.
    fn dev_interval(&mut self) -> Option<(u64, u64)> {
        let now = read_dev()?;
        let before = self.dev_mark.replace(now)?;
        Some((
            now.0.saturating_sub(before.0),
            now.1.saturating_sub(before.1),
        ))
    }

    fn emit(&self, mut r: InvocationReport) {
        if let Some(s) = &self.session {
            r.dropped = self.tracker.health(&s.region).events_dropped;
        }
        println!("{}", r.log_line());
        if self.emf {
            println!("{}", r.emf(&self.function_name, now_ms()));
        }
    }

    /// Reports the invocation `request_id` (and, the first time, the init phase), and ends
    /// its trace.
    fn report(&mut self, request_id: &str, parent: Option<RemoteParent>, start_ns: u64) {
        let epoch = self.announce(request_id, parent, start_ns);
        self.collect();
        if let (Some(p), Some(e)) = (&mut self.pipeline, epoch) {
            p.end_invocation(e, now_ns());
        }
        if !self.init_reported {
            self.init_reported = true;
            let mut init = invocation::report(&self.tracker, 0, None);
            init.socket_level = epoch.is_some();
            init.dev_bytes = self.init_dev.take();
            self.emit(init);
        }
        let mut r = match epoch {
            Some(e) => invocation::report(&self.tracker, e, Some(request_id)),
            // No interceptor in the runtime: socket-level numbers are unknown.
            None => InvocationReport {
                request_id: Some(request_id.to_string()),
                socket_level: false,
                ..Default::default()
            },
        };
        r.dev_bytes = self.dev_interval();
        if let Some(p) = &self.pipeline
            && r.socket_level
        {
            p.record_invocation(r.tx_bytes, r.rx_bytes);
        }
        self.emit(r);
        self.marks_seen = self.tracker.invocations_pruned + self.tracker.invocations.len();
        // Forget what is reported and exported: an environment may serve millions of
        // invocations. Two epochs back, so the pipeline has read every closed socket twice.
        if let Some(e) = epoch
            && e >= 2
        {
            self.tracker.prune(e - 1);
        }
    }
}

/// Runs the extension until SHUTDOWN. Returns the exit code.
pub fn run() -> Result<i32> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .context("AWS_LAMBDA_RUNTIME_API is not set: `netmon extension` runs inside AWS Lambda (see `netmon run` elsewhere)")?;
    let base = ApiBase::from_env_value(&api)?;
    let (config, errors) = Config::from_env(|k| std::env::var(k).ok());
    for e in &errors {
        eprintln!("netmon: configuration error: {e}");
    }
    let started = Instant::now();
    let started_ns = now_ns();
    // The region first: it must exist before the runtime starts, and Lambda starts the
    // runtime only once every extension has registered.
    let session = match Session::create(config.geometry)
        .and_then(|mut s| s.publish(&config.shm_dir, "lambda.shm").map(|()| s))
    {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("netmon: {e:#}; continuing without socket-level data");
            None
        }
    };
    let ext = Extension::register(&base, &extension_name(), &["INVOKE", "SHUTDOWN"])?;
    if config.fail_on_error && !errors.is_empty() {
        let message = format!("netmon: {}", errors.join("; "));
        ext.init_error("Extension.ConfigInvalid", &message)?;
        return Ok(1);
    }
    let mut platform = None;
    let mut _listener = None;
    if config.telemetry_api {
        let (tx, rx) = channel();
        match telemetry_api::Listener::start(tx) {
            Ok(l) => match ext.subscribe_telemetry(&l.destination, 25) {
                Ok(()) => {
                    platform = Some(rx);
                    _listener = Some(l);
                }
                Err(e) => {
                    eprintln!("netmon: Telemetry API unavailable ({e:#}); continuing without it")
                }
            },
            Err(e) => eprintln!("netmon: {e:#}; continuing without the Telemetry API"),
        }
    }
    if std::env::var_os("NETMON_DEBUG").is_some() {
        eprintln!(
            "netmon: extension registered in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|_| ext.registration.function_name.clone());
    let pipeline = start_pipeline(&config, &function_name);
    let mut state = State {
        session,
        tracker: Tracker::new(),
        pipeline,
        flush: config.flush,
        flush_timeout: config.flush_timeout,
        announced: Default::default(),
        init_ended: false,
        invocations_seen: 0,
        telemetry_live: false,
        dev_mark: read_dev(),
        init_dev: None,
        platform,
        function_name,
        emf: config.emf,
        marks_seen: 0,
        init_reported: false,
    };
    if let Some(p) = &mut state.pipeline {
        // The init phase: everything before the first invocation.
        p.begin_invocation(0, None, None, true, started_ns);
    }
    let result = event_loop(&ext, &mut state);
    if let Err(e) = &result {
        let _ = ext.exit_error("Extension.Error", &format!("netmon: {e:#}"));
    }
    result
}

fn event_loop(ext: &Extension, state: &mut State) -> Result<i32> {
    loop {
        match ext.next()? {
            NextEvent::Invoke {
                request_id,
                deadline_ms,
                tracing,
                ..
            } => {
                let start_ns = now_ns();
                state.invocations_seen += 1;
                // The environment was frozen since the last report: the interval starts now.
                let since = state.dev_interval();
                if state.invocations_seen == 1 {
                    state.init_dev = since;
                }
                let parent = tracing
                    .as_ref()
                    .and_then(|t| xray::parse(&t.value))
                    .map(|c| RemoteParent {
                        trace_id: TraceId::from_bytes(c.trace_id),
                        span_id: c.parent_span_id.map(SpanId::from_bytes),
                        sampled: c.sampled,
                    });
                state.wait_runtime_done(&request_id, deadline_ms, parent, start_ns);
                state.poll();
                state.report(&request_id, parent, start_ns);
                if state.flush == FlushPolicy::End
                    && let Some(p) = &mut state.pipeline
                {
                    let budget = state.flush_timeout.min(until(deadline_ms, Duration::ZERO));
                    p.flush(Instant::now() + budget);
                }
            }
            NextEvent::Shutdown { deadline_ms, .. } => {
                // Leave a margin for the process to exit before Lambda's SIGKILL.
                let budget = until(deadline_ms, Duration::from_millis(150));
                if let Some(s) = &state.session {
                    state.tracker.finish(&s.region);
                }
                let health = state.health();
                if let Some(p) = state.pipeline.take() {
                    let reports = p.shutdown(&state.tracker, health, Instant::now() + budget);
                    for r in reports {
                        let lost = r.spans_dropped
                            + r.spans_rejected
                            + r.metric_points_dropped
                            + r.metric_points_rejected;
                        if lost > 0 {
                            eprintln!(
                                "netmon: exporter {}: {} spans and {} metric points could not be delivered",
                                r.exporter,
                                r.spans_dropped + r.spans_rejected,
                                r.metric_points_dropped + r.metric_points_rejected
                            );
                        }
                    }
                }
                return Ok(0);
            }
        }
    }
}

/// Builds the export pipeline, or `None` (log lines only) when no exporter is configured or
/// the settings are invalid (reported, never fatal to the function).
fn start_pipeline(config: &Config, function_name: &str) -> Option<Pipeline> {
    let exporters = config.exporters.clone()?;
    let flags = ExportFlags {
        exporters: Some(exporters),
        otlp_json: std::env::var_os("NETMON_OTLP_JSON").map(Into::into),
        src_port: false,
        cardinality_limit: telemetry::config::DEFAULT_CARDINALITY_LIMIT,
        flush_timeout: config.flush_timeout,
    };
    let mut prepared = match telemetry::prepare(&flags) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("netmon: configuration error: {e}; exporting nothing");
            return None;
        }
    };
    prepared.start(&Workload {
        executable: function_name.to_string(),
        pid: None,
    })
}

/// Interface bytes (rx, tx) from `/proc/net/dev`, see [`invocation::interface_bytes`].
fn read_dev() -> Option<(u64, u64)> {
    invocation::interface_bytes(&std::fs::read("/proc/net/dev").ok()?)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> (Config, Vec<String>) {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_bad_values() {
        let (c, e) = config(&[]);
        assert!(e.is_empty());
        assert!(!c.emf && c.telemetry_api && !c.fail_on_error);
        let (c, e) = config(&[
            ("NETMON_EMF", "1"),
            ("NETMON_RINGS", "0"),
            ("NETMON_ON_ERROR", "explode"),
        ]);
        assert!(c.emf);
        assert_eq!(c.geometry.rings, Geometry::default().rings);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("NETMON_RINGS=\"0\""), "{e:?}");
        let (_, e) = config(&[("NETMON_EMF", "maybe")]);
        assert_eq!(
            e,
            ["NETMON_EMF=\"maybe\" is not a boolean (use 1 or 0); using 0"]
        );
    }
}
