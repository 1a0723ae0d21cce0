//! The export pipeline: reads a [`Tracker`] as often as the caller likes, keeps its own
//! cursors (lookups seen, sockets' last byte counters, attempts turned into spans), so every
//! export carries only what is new — including byte deltas of long-lived connections — and
//! hands spans and metric collections to the background [`Exporters`].
//!
//! The API is the same for every mode: `netmon run` calls [`Pipeline::collect`] after each
//! poll and [`Pipeline::shutdown`] at exit; a long-running mode calls [`Pipeline::flush`]
//! when it must not hold data (e.g. before a Lambda environment freezes).

use super::config::{Signal, TelemetryConfig};
use super::export::{BuildError, Exporters, QueueLimits, SignalCounts};
use super::flows::{Aggregates, DnsKey, FlowKey, Names, socket_key};
use super::metrics::{ExportHealth, Metrics};
use super::spans::{
    self, AttemptResult, ProcessInfo, ProcessTrace, SpanDraft, TraceParent, attempt_result,
    canonical_ip,
};
use crate::tracker::{Direction, Health, Outcome, Tracker, Transport};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the pipeline remembers about one socket.
#[derive(Default)]
struct SocketCursor {
    bytes_sent: u64,
    bytes_received: u64,
    /// Attempts already turned into spans (or skipped).
    attempts_done: usize,
    domain: Option<u32>,
    domain_resolved: bool,
    established: bool,
    closed: bool,
    /// Collections since the close was seen: late events of a closed socket arrive within one.
    closed_collects: u8,
}

struct ProcessState {
    trace: ProcessTrace,
    ppid: u32,
    executable: String,
    first_ns: u64,
    last_ns: u64,
}

/// The trace of one Lambda invocation (epoch), see [`Pipeline::begin_invocation`].
struct InvocationTrace {
    trace: ProcessTrace,
    sampled: bool,
    /// The invocation's own root span, when Lambda gave no trace header to join.
    root: Option<spans::InvocationInfo>,
}

/// The trace context Lambda gave an invocation (from its X-Ray header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: TraceId,
    pub span_id: Option<SpanId>,
    pub sampled: bool,
}

/// Delivery statistics of one exporter, for the run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExporterReport {
    pub exporter: String,
    pub spans_exported: u64,
    pub spans_dropped: u64,
    pub spans_rejected: u64,
    pub metric_points_exported: u64,
    pub metric_points_dropped: u64,
    pub metric_points_rejected: u64,
    pub failed_requests: u64,
}

/// Settings of a pipeline beyond the exporters.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub metric_interval: Duration,
    pub ephemeral_ports: bool,
    pub cardinality_limit: usize,
    /// Spans join this trace (W3C `TRACEPARENT` of the environment).
    pub traceparent: Option<TraceParent>,
}

/// See the module documentation.
pub struct Pipeline {
    opts: PipelineOptions,
    exporters: Exporters,
    metrics: Metrics,
    ids: RandomIdGenerator,
    spans_enabled: bool,
    lookups_seen: usize,
    sockets_seen: usize,
    active: HashMap<(u32, u32), SocketCursor>,
    datagrams: HashMap<(u32, u32, crate::tracker::Endpoint, Direction), (u64, u64)>,
    names: Names,
    name_index: HashMap<(Option<u32>, IpAddr), u32>,
    processes: HashMap<u32, ProcessState>,
    process_names: HashMap<u32, String>,
    agg: Aggregates,
    spans: Vec<SpanDraft>,
    health_published: Health,
    health_now: Health,
    export_published: HashMap<(&'static str, Signal), SignalCounts>,
    next_metrics: Instant,
    /// Lambda: the trace of each invocation epoch. Empty outside Lambda, where spans belong
    /// to their process's trace.
    invocations: std::collections::BTreeMap<u32, InvocationTrace>,
    /// Kernel metrics from `/proc` (`crate::kernel`), handed over by the caller.
    kernel: crate::kernel::MetricCursor,
}

/// Spans handed to the exporters at once during a read (a default batch).
const SPAN_HANDOFF: usize = 512;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Pipeline {
    /// Builds the exporters the configuration names (validating them: an unreachable
    /// receiver is not an error, a malformed setting is). Nothing is sent before [`start`].
    ///
    /// [`start`]: Pipeline::start
    pub fn exporters(config: &TelemetryConfig) -> Result<Exporters, BuildError> {
        let otlp = match (&config.traces, &config.metrics) {
            (Some(t), Some(m)) => Some((t, m)),
            _ => None,
        };
        let timeout = config
            .traces
            .iter()
            .chain(config.metrics.iter())
            .map(|s| s.timeout)
            .max()
            .unwrap_or(Duration::from_secs(10));
        Exporters::build(
            otlp,
            config.otlp_json.as_deref(),
            QueueLimits {
                max_spans: config.batching.max_queue_spans,
                max_batch: config.batching.max_batch_spans,
                span_delay: config.batching.span_delay,
                max_points: config.batching.max_queue_points,
                request_timeout: timeout + Duration::from_secs(1),
            },
        )
    }

    /// Starts the exporters' workers and returns the pipeline.
    pub fn start(
        mut exporters: Exporters,
        resource: Resource,
        temporality: super::config::Temporality,
        opts: PipelineOptions,
    ) -> Pipeline {
        exporters.start(&resource);
        let metrics = Metrics::new(resource, temporality, opts.cardinality_limit);
        Pipeline {
            spans_enabled: opts.traceparent.is_none_or(|t| t.sampled),
            next_metrics: Instant::now() + opts.metric_interval,
            agg: Aggregates::new(opts.cardinality_limit),
            opts,
            exporters,
            metrics,
            ids: RandomIdGenerator::default(),
            lookups_seen: 0,
            sockets_seen: 0,
            active: HashMap::new(),
            datagrams: HashMap::new(),
            names: Names::default(),
            name_index: HashMap::new(),
            processes: HashMap::new(),
            process_names: HashMap::new(),
            spans: Vec::new(),
            health_published: Health::default(),
            health_now: Health::default(),
            export_published: HashMap::new(),
            kernel: crate::kernel::MetricCursor::default(),
            invocations: std::collections::BTreeMap::new(),
        }
    }

    /// Lambda: spans recorded in invocation epoch `epoch` (0 is the init phase) join `parent`
    /// — the invocation's X-Ray trace, as children of its segment — and are dropped when it is
    /// not sampled; without a parent they get a root span of their own (`invocation`/`init`),
    /// emitted by [`end_invocation`](Self::end_invocation).
    pub fn begin_invocation(
        &mut self,
        epoch: u32,
        request_id: Option<&str>,
        parent: Option<RemoteParent>,
        coldstart: bool,
        start_ns: u64,
    ) {
        let (trace, sampled, root) = match parent {
            Some(p) => (
                ProcessTrace {
                    trace_id: p.trace_id,
                    root_span_id: p.span_id.unwrap_or_else(|| self.ids.new_span_id()),
                    parent: p.span_id,
                },
                p.sampled,
                None,
            ),
            None => (
                ProcessTrace {
                    trace_id: self.ids.new_trace_id(),
                    root_span_id: self.ids.new_span_id(),
                    parent: None,
                },
                true,
                Some(spans::InvocationInfo {
                    request_id: request_id.map(str::to_string),
                    coldstart,
                    start_ns,
                    end_ns: start_ns,
                }),
            ),
        };
        self.invocations.insert(
            epoch,
            InvocationTrace {
                trace,
                sampled,
                root,
            },
        );
    }

    /// Lambda: the invocation of `epoch` is over; its root span (if it has one) is queued.
    pub fn end_invocation(&mut self, epoch: u32, end_ns: u64) {
        let Some(inv) = self.invocations.get_mut(&epoch) else {
            return;
        };
        if let Some(mut root) = inv.root.take()
            && inv.sampled
            && self.spans_enabled
        {
            root.end_ns = end_ns.max(root.start_ns);
            self.spans.push(SpanDraft::invocation(root, &inv.trace));
        }
        // Older epochs will see no more spans.
        self.invocations.retain(|e, _| *e >= epoch);
    }

    /// Lambda: one invocation's socket-level bytes, for the per-invocation distribution
    /// (`faas.net_io`), exported with the next metrics.
    pub fn record_invocation(&self, sent: u64, received: u64) {
        self.metrics.record_invocation(sent, received);
    }

    /// The trace for a span recorded by `pid` in `epoch` covering `[start, end]`, or `None`
    /// when it must not be exported (an unsampled invocation).
    fn trace_of_event(
        &mut self,
        pid: u32,
        epoch: u32,
        start: u64,
        end: u64,
    ) -> Option<ProcessTrace> {
        if self.invocations.is_empty() {
            return Some(self.trace_for(pid, start, end));
        }
        // An epoch not announced (its start was lost) joins the newest one before it.
        let inv = self
            .invocations
            .range(..=epoch)
            .next_back()
            .or_else(|| self.invocations.iter().next())
            .map(|(_, i)| i)?;
        inv.sampled.then_some(inv.trace)
    }

    fn process(&mut self, pid: u32) -> &mut ProcessState {
        let traceparent = self.opts.traceparent;
        let ids = &self.ids;
        self.processes.entry(pid).or_insert_with(|| {
            let now = now_ns();
            ProcessState {
                trace: ProcessTrace {
                    trace_id: traceparent.map_or_else(|| ids.new_trace_id(), |t| t.trace_id),
                    root_span_id: ids.new_span_id(),
                    parent: traceparent.map(|t| t.span_id),
                },
                ppid: 0,
                executable: String::new(),
                first_ns: now,
                last_ns: now,
            }
        })
    }

    /// The trace of a process, widening its root span to cover `[start, end]`.
    fn trace_for(&mut self, pid: u32, start: u64, end: u64) -> ProcessTrace {
        let p = self.process(pid);
        p.first_ns = p.first_ns.min(start);
        p.last_ns = p.last_ns.max(end);
        p.trace
    }

    /// Takes the kernel metrics' newest data points (from `crate::kernel`); exported with the
    /// next metrics.
    pub fn collect_kernel(&mut self, points: Vec<crate::kernel::MetricPoint>) {
        self.kernel.update(points);
    }

    /// Reads what is new in the tracker. Cheap and never blocks on delivery; exports happen
    /// on the exporters' own threads.
    pub fn collect(&mut self, t: &Tracker, health: Health) {
        self.read(t, health, false);
        if Instant::now() >= self.next_metrics {
            self.export_metrics();
        }
    }

    fn read(&mut self, t: &Tracker, health: Health, final_pass: bool) {
        self.health_now = health;
        for p in t.processes.values() {
            if self.process_names.get(&p.pid) != Some(&p.executable) {
                self.process_names.insert(p.pid, p.executable.clone());
            }
            let st = self.process(p.pid);
            st.ppid = p.ppid;
            st.executable.clone_from(&p.executable);
        }
        self.read_lookups(t);
        self.read_sockets(t, final_pass);
        self.read_datagrams(t);
        self.exporters.push_spans(&mut self.spans);
    }

    /// Queues a span, handing spans to the exporters every [`SPAN_HANDOFF`]: their workers
    /// start on a large read before it ends, and no read collects a large vector.
    fn queue_span(&mut self, span: SpanDraft) {
        self.spans.push(span);
        if self.spans.len() >= SPAN_HANDOFF {
            self.exporters.push_spans(&mut self.spans);
        }
    }

    fn read_lookups(&mut self, t: &Tracker) {
        let from = self.lookups_seen.saturating_sub(t.lookups_pruned);
        let Some(new) = t.lookups.get(from..) else {
            return;
        };
        self.lookups_seen = t.lookups_pruned + t.lookups.len();
        for l in new {
            let domain = self.names.intern(&l.name);
            for a in &l.answers {
                let a = canonical_ip(*a);
                self.name_index.insert((Some(l.pid), a), domain);
                self.name_index.insert((None, a), domain);
            }
            self.agg.lookup(
                DnsKey {
                    domain,
                    rcode: l.rcode,
                    pid: l.pid,
                    overflow: false,
                },
                l.duration_ns as f64 / 1e9,
            );
            if self.spans_enabled {
                let end = l.start_ns.saturating_add(l.duration_ns);
                if let Some(trace) = self.trace_of_event(l.pid, l.epoch, l.start_ns, end) {
                    let id = self.ids.new_span_id();
                    self.queue_span(SpanDraft::dns(l, &trace, id));
                }
            }
        }
    }

    fn domain_of(&self, pid: u32, ip: IpAddr, port: u16) -> Option<u32> {
        if port == crate::tracker::DNS_PORT {
            return None; // the resolver itself, not a destination it resolved
        }
        let ip = canonical_ip(ip);
        self.name_index
            .get(&(Some(pid), ip))
            .or_else(|| self.name_index.get(&(None, ip)))
            .copied()
    }

    fn read_sockets(&mut self, t: &Tracker, final_pass: bool) {
        let from = self.sockets_seen.saturating_sub(t.socket_order_pruned);
        if let Some(new) = t.socket_order.get(from..) {
            for key in new {
                self.active.entry(*key).or_default();
            }
            self.sockets_seen = t.socket_order_pruned + t.socket_order.len();
        }
        // Taken out of `self` so that the loop may call `&mut self` methods; `retain` keeps
        // the sockets that may still have news.
        let mut active = std::mem::take(&mut self.active);
        active.retain(|key, c| {
            let Some(s) = t.sockets.get(key) else {
                return false;
            };
            if s.platform {
                return false;
            }
            if !c.domain_resolved
                && let Some(r) = s.remote
            {
                c.domain = self.domain_of(s.pid, r.ip, r.port);
                c.domain_resolved = true;
            }
            let flow = socket_key(s, c.domain, self.opts.ephemeral_ports);
            if let Some(k) = flow {
                self.socket_flow(s, c, k);
            }
            // Attempts: spans, and failures for the flow.
            while c.attempts_done < s.attempts.len() {
                let i = c.attempts_done;
                let result = attempt_result(s, i, final_pass);
                match result {
                    AttemptResult::Pending => break,
                    AttemptResult::Poll => {}
                    AttemptResult::Succeeded | AttemptResult::Failed(_) => {
                        if let (AttemptResult::Failed(e), Some(k), Transport::Tcp) =
                            (&result, flow, s.transport)
                        {
                            self.agg.flow(k).fail(*e);
                        }
                        let a = &s.attempts[i];
                        let end = a.start_ns.saturating_add(a.duration_ns);
                        let trace = if self.spans_enabled && !s.inherited {
                            self.trace_of_event(s.pid, a.epoch, a.start_ns, end)
                        } else {
                            None
                        };
                        if let Some(trace) = trace {
                            let id = self.ids.new_span_id();
                            let domain = c.domain.and_then(|d| self.names.shared(d));
                            self.queue_span(SpanDraft::attempt(s, a, result, domain, &trace, id));
                        }
                    }
                }
                c.attempts_done += 1;
            }
            if c.closed {
                c.closed_collects = c.closed_collects.saturating_add(1);
            }
            let settled = c.attempts_done == s.attempts.len();
            !(final_pass || (c.closed && c.closed_collects >= 2 && settled))
        });
        self.active = active;
    }

    /// Folds a socket's news into its flow: new bytes, establishment, close.
    fn socket_flow(&mut self, s: &crate::tracker::SocketRecord, c: &mut SocketCursor, k: FlowKey) {
        let sent = s.bytes_sent.saturating_sub(c.bytes_sent);
        let received = s.bytes_received.saturating_sub(c.bytes_received);
        let tcp = s.transport == Transport::Tcp;
        let established = tcp
            && !c.established
            && !s.inherited
            && (s.outcome == Outcome::Connected || s.direction() == Direction::Incoming);
        let closing = !c.closed && s.close_ns.is_some();
        if sent == 0 && received == 0 && !established && !closing {
            return;
        }
        let acc = self.agg.flow(k);
        // Saturating here and below: each counter from the region is bounded by the tracker,
        // their sum over a flow's sockets (or every flow past the cardinality limit) is not.
        acc.bytes_written = acc.bytes_written.saturating_add(sent);
        acc.bytes_read = acc.bytes_read.saturating_add(received);
        c.bytes_sent = s.bytes_sent.max(c.bytes_sent);
        c.bytes_received = s.bytes_received.max(c.bytes_received);
        if established {
            acc.established += 1;
            c.established = true;
        }
        if closing {
            c.closed = true;
            if tcp && c.established {
                acc.closed += 1;
            }
            if let Some(r) = s.retransmits {
                acc.retransmits = acc.retransmits.saturating_add(u64::from(r));
            }
            if let (Some(rtt), Some(var)) = (s.rtt_us, s.rtt_var_us) {
                acc.rtt_sum += f64::from(rtt);
                acc.rtt_var_sum += f64::from(var);
                acc.rtt_n += 1;
            }
        }
    }

    fn read_datagrams(&mut self, t: &Tracker) {
        for (key, d) in &t.datagrams {
            let seen = self.datagrams.entry(*key).or_insert((0, 0));
            let sent = d.bytes_sent.saturating_sub(seen.0);
            let received = d.bytes_received.saturating_sub(seen.1);
            if sent == 0 && received == 0 {
                continue;
            }
            *seen = (d.bytes_sent.max(seen.0), d.bytes_received.max(seen.1));
            let domain = self.domain_of(d.pid, d.peer.ip, d.peer.port);
            let k = FlowKey {
                direction: Direction::Outgoing,
                transport: Transport::Udp,
                src_ip: None,
                src_port: None,
                dst_ip: canonical_ip(d.peer.ip),
                dst_port: Some(d.peer.port),
                pid: d.pid,
                domain,
                overflow: false,
            };
            let acc = self.agg.flow(k);
            acc.bytes_written = acc.bytes_written.saturating_add(sent);
            acc.bytes_read = acc.bytes_read.saturating_add(received);
        }
    }

    /// Hands the accumulated metrics to the SDK, collects and queues them.
    fn export_metrics(&mut self) {
        self.next_metrics = Instant::now() + self.opts.metric_interval;
        self.metrics
            .publish(&mut self.agg, &self.names, &self.process_names);
        self.metrics.publish_kernel(&self.kernel.deltas());
        // Only a new high is news: the region's loss counters are any monitored process's to
        // write, and one lowered and raised again must not be counted twice.
        let (h, p) = (self.health_now, self.health_published);
        self.metrics.publish_region_health(
            h.events_dropped.saturating_sub(p.events_dropped),
            h.records_rejected.saturating_sub(p.records_rejected),
            h.sockets_untracked.saturating_sub(p.sockets_untracked),
        );
        self.health_published = Health {
            events_dropped: h.events_dropped.max(p.events_dropped),
            records_rejected: h.records_rejected.max(p.records_rejected),
            sockets_untracked: h.sockets_untracked.max(p.sockets_untracked),
        };
        for (name, stats) in self.exporters.stats() {
            for signal in [Signal::Traces, Signal::Metrics] {
                let now = match signal {
                    Signal::Traces => stats.traces.snapshot(),
                    Signal::Metrics => stats.metrics.snapshot(),
                };
                let before = self
                    .export_published
                    .insert((name, signal), now)
                    .unwrap_or_default();
                self.metrics.publish_export_health(
                    name,
                    signal.as_str(),
                    &ExportHealth {
                        failures: now.failures.saturating_sub(before.failures),
                        dropped: now.dropped.saturating_sub(before.dropped),
                        rejected: now.rejected.saturating_sub(before.rejected),
                    },
                );
            }
        }
        if let Some(rm) = self.metrics.collect() {
            self.exporters.push_metrics(rm);
        }
    }

    /// Exports everything collected so far and waits (until `deadline`) for delivery.
    pub fn flush(&mut self, deadline: Instant) -> bool {
        self.export_metrics();
        self.exporters.flush(deadline)
    }

    /// The last read (what is still unsettled is settled now), the process spans, the last
    /// metrics; then delivery until `deadline`. Returns the exporters' statistics.
    pub fn shutdown(
        mut self,
        t: &Tracker,
        health: Health,
        deadline: Instant,
    ) -> Vec<ExporterReport> {
        self.read(t, health, true);
        if self.spans_enabled && self.invocations.is_empty() {
            let end = now_ns();
            let mut roots: Vec<SpanDraft> = self
                .processes
                .iter()
                .map(|(pid, p)| {
                    let parent_process = self
                        .processes
                        .get(&p.ppid)
                        .map(|pp| (pp.trace.trace_id, pp.trace.root_span_id));
                    SpanDraft::process(
                        ProcessInfo {
                            pid: *pid,
                            ppid: p.ppid,
                            executable: p.executable.clone(),
                            start_ns: p.first_ns,
                            end_ns: p.last_ns.max(end),
                            parent_process,
                        },
                        &p.trace,
                    )
                })
                .collect();
            self.exporters.push_spans(&mut roots);
        }
        self.export_metrics();
        self.exporters.shutdown(deadline);
        self.metrics.shutdown();
        self.report()
    }

    /// Delivery statistics so far.
    pub fn report(&self) -> Vec<ExporterReport> {
        self.exporters
            .stats()
            .into_iter()
            .map(|(name, s)| {
                let t = s.traces.snapshot();
                let m = s.metrics.snapshot();
                ExporterReport {
                    exporter: name.to_string(),
                    spans_exported: t.exported,
                    spans_dropped: t.dropped,
                    spans_rejected: t.rejected,
                    metric_points_exported: m.exported,
                    metric_points_dropped: m.dropped,
                    metric_points_rejected: m.rejected,
                    failed_requests: t.failures + m.failures,
                }
            })
            .collect()
    }

    /// Whether the pipeline may still read this socket's record (spans of pending attempts,
    /// the bytes of its last collects); see [`Tracker::retire`].
    pub fn holds_socket(&self, key: &crate::tracker::SocketKey) -> bool {
        self.active.contains_key(key)
    }

    /// Absolute positions in the tracker's `lookups` and `socket_order` read so far.
    pub fn read_positions(&self) -> (usize, usize) {
        (self.lookups_seen, self.sockets_seen)
    }

    /// The trace a process's spans belong to (for tests and for modes that link to it).
    #[allow(
        dead_code,
        reason = "for modes that link their own spans to a process; tested"
    )]
    pub fn trace_of(&self, pid: u32) -> Option<(TraceId, SpanId)> {
        self.processes
            .get(&pid)
            .map(|p| (p.trace.trace_id, p.trace.root_span_id))
    }
}
