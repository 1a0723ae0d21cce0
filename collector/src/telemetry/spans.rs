//! Spans from tracker records (pure functions): one per DNS lookup, one per connection attempt,
//! one root span per process (DESIGN §6). Timestamps are the real call times the interceptor
//! recorded (nanoseconds since the Unix epoch).
//!
//! Built in two steps, for speed (BENCHMARKS.md, "OpenTelemetry export"):
//! - the pipeline decides which spans there are and copies what each says into a
//!   [`SpanDraft`]: plain data (a connection span's draft owns no heap memory), cheap to keep in
//!   the export queues by the hundred thousand;
//! - an export worker writes each batch's `opentelemetry-proto` messages from the drafts
//!   ([`SpanDraft::write_to`]) right before sending them, over the messages of its previous
//!   batch: their strings, id bytes and attribute lists are reused, so a steady stream of
//!   spans allocates nothing per span. (Built fresh, each span was two dozen small
//!   allocations, and freeing them cost more than encoding and sending.)
//!
//! Spans are OTLP messages from the start rather than SDK `SpanData` that the OTLP exporter
//! would clone and convert again. Field for field they are what the SDK's transform produced:
//! ids as bytes, no parent id for a root, flags with the sampled bit and the "is the parent
//! remote" bits, a status on every span. Resource and scope are per request
//! (`otlp_traces::Envelope`).

use super::schema;
use crate::names;
use crate::tracker::{Attempt, Direction, DnsLookup, Endpoint, Outcome, SocketRecord, Transport};
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, SpanFlags};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// `connect` was interrupted or is still in progress: its outcome comes later.
const EINPROGRESS: i32 = libc_errno::EINPROGRESS;
const EALREADY: i32 = libc_errno::EALREADY;
const EISCONN: i32 = libc_errno::EISCONN;
const EINTR: i32 = libc_errno::EINTR;

mod libc_errno {
    // Linux values (asm-generic/errno.h); the collector runs on Linux only.
    pub const EINTR: i32 = 4;
    pub const EALREADY: i32 = 114;
    pub const EINPROGRESS: i32 = 115;
    pub const EISCONN: i32 = 106;
}

/// A W3C `traceparent` the spans join (`00-<trace id>-<parent span id>-<flags>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// Parses a W3C `traceparent` header value; `None` if it is not valid.
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || *version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if *version == "00" && !rest.is_empty() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceParent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Where a process's spans go: its trace, its root span, and the root span's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessTrace {
    pub trace_id: TraceId,
    pub root_span_id: SpanId,
    /// The remote parent of the root span (from `TRACEPARENT`).
    pub parent: Option<SpanId>,
}

/// The instrumentation scope of netmon's spans and metrics.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(schema::SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The canonical text of an address: IPv4-mapped IPv6 shown as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn network_type(ip: IpAddr) -> &'static str {
    match canonical_ip(ip) {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

// Writing to a `String` cannot fail: the `fmt::Result`s below are ignored.

fn write_ip(out: &mut String, ip: IpAddr) {
    let _ = write!(out, "{}", canonical_ip(ip));
}

/// `peer.service` of a destination: the name it was resolved from, else `ip:port` (IPv6
/// literals bracketed).
fn write_peer_service(out: &mut String, domain: Option<&str>, remote: Endpoint) {
    let _ = match (domain, canonical_ip(remote.ip)) {
        (Some(d), _) => out.write_str(d),
        (None, IpAddr::V4(v4)) => write!(out, "{v4}:{}", remote.port),
        (None, IpAddr::V6(v6)) => write!(out, "[{v6}]:{}", remote.port),
    };
}

/// OTLP span flags: the W3C trace flags (always sampled: unsampled spans are not built) and
/// whether the parent is remote.
fn flags(parent_is_remote: bool) -> u32 {
    let mut f = u32::from(TraceFlags::SAMPLED.to_u8()) | SpanFlags::ContextHasIsRemoteMask as u32;
    if parent_is_remote {
        f |= SpanFlags::ContextIsRemoteMask as u32;
    }
    f
}

/// A span's identity and place in its trace.
struct Identity {
    trace: TraceId,
    span: SpanId,
    parent: SpanId,
    parent_is_remote: bool,
}

impl Identity {
    /// A child of the trace's root span.
    fn child(trace: &ProcessTrace, span: SpanId) -> Identity {
        Identity {
            trace: trace.trace_id,
            span,
            parent: trace.root_span_id,
            parent_is_remote: false,
        }
    }

    /// The trace's root span.
    fn root(trace: &ProcessTrace) -> Identity {
        Identity {
            trace: trace.trace_id,
            span: trace.root_span_id,
            parent: trace.parent.unwrap_or(SpanId::INVALID),
            parent_is_remote: trace.parent.is_some(),
        }
    }
}

fn set_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

fn set_bytes(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.extend_from_slice(src);
}

/// Writes one span over whatever message `span` held before, reusing its allocations; the
/// result is the same as writing into `Span::default()`. Attributes are written in order;
/// [`finish`](Self::finish) drops those the previous span had beyond them.
struct SpanWriter<'a> {
    span: &'a mut Span,
    attributes: usize,
}

impl<'a> SpanWriter<'a> {
    fn new(
        span: &'a mut Span,
        id: Identity,
        kind: SpanKind,
        name: &str,
        start_ns: u64,
        end_ns: u64,
    ) -> SpanWriter<'a> {
        set_bytes(&mut span.trace_id, &id.trace.to_bytes());
        set_bytes(&mut span.span_id, &id.span.to_bytes());
        span.trace_state.clear();
        if id.parent == SpanId::INVALID {
            span.parent_span_id.clear();
        } else {
            set_bytes(&mut span.parent_span_id, &id.parent.to_bytes());
        }
        span.flags = flags(id.parent_is_remote);
        set_str(&mut span.name, name);
        span.kind = kind as i32;
        span.start_time_unix_nano = start_ns;
        span.end_time_unix_nano = end_ns.max(start_ns);
        span.dropped_attributes_count = 0;
        span.events.clear();
        span.dropped_events_count = 0;
        span.links.clear();
        span.dropped_links_count = 0;
        // The SDK's transform always sets a status, `Unset` unless the span failed.
        let status = span.status.get_or_insert_default();
        status.message.clear();
        status.code = StatusCode::Unset as i32;
        SpanWriter {
            span,
            attributes: 0,
        }
    }

    /// The value of the next attribute, named `key`.
    fn value(&mut self, key: &str) -> &mut Option<any_value::Value> {
        if self.attributes == self.span.attributes.len() {
            self.span.attributes.push(KeyValue::default());
        }
        let kv = &mut self.span.attributes[self.attributes];
        self.attributes += 1;
        set_str(&mut kv.key, key);
        kv.key_strindex = 0;
        &mut kv.value.get_or_insert_default().value
    }

    /// A string attribute whose text `write` appends to an empty string (the previous
    /// attribute's, if it was a string).
    fn string_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let value = self.value(key);
        if !matches!(value, Some(any_value::Value::StringValue(_))) {
            *value = Some(any_value::Value::StringValue(String::new()));
        }
        if let Some(any_value::Value::StringValue(text)) = value {
            text.clear();
            write(text);
        }
    }

    fn string(&mut self, key: &str, value: &str) {
        self.string_with(key, |s| s.push_str(value));
    }

    fn ip(&mut self, key: &str, ip: IpAddr) {
        self.string_with(key, |s| write_ip(s, ip));
    }

    fn int(&mut self, key: &str, value: impl Into<i64>) {
        *self.value(key) = Some(any_value::Value::IntValue(value.into()));
    }

    fn other(&mut self, key: &str, value: any_value::Value) {
        *self.value(key) = Some(value);
    }

    /// Status ERROR with `error.type`, both saying `reason`.
    fn error(&mut self, reason: &str) {
        self.string(schema::ERROR_TYPE, reason);
        let status = self.span.status.get_or_insert_default();
        status.code = StatusCode::Error as i32;
        set_str(&mut status.message, reason);
    }

    fn finish(self) {
        self.span.attributes.truncate(self.attributes);
    }
}

/// The span of one name lookup, a child of its process's root span.
fn write_dns(span: &mut Span, l: &DnsLookup, trace: &ProcessTrace, span_id: SpanId) {
    let mut w = SpanWriter::new(
        span,
        Identity::child(trace, span_id),
        SpanKind::Client,
        schema::SPAN_DNS_LOOKUP,
        l.start_ns,
        l.start_ns.saturating_add(l.duration_ns),
    );
    w.string(schema::DNS_QUESTION_NAME, &l.name);
    if !l.answers.is_empty() {
        let values = l
            .answers
            .iter()
            .map(|a| {
                let mut text = String::new();
                write_ip(&mut text, *a);
                AnyValue {
                    value: Some(any_value::Value::StringValue(text)),
                }
            })
            .collect();
        w.other(
            schema::DNS_ANSWERS,
            any_value::Value::ArrayValue(ArrayValue { values }),
        );
    }
    w.string(schema::NETMON_DNS_SOURCE, l.source.as_str());
    w.int(schema::NETMON_DNS_RCODE, l.rcode);
    w.int(schema::PROCESS_PID, l.pid);
    w.int(schema::THREAD_ID, l.tid);
    if let Some(e) = &l.error {
        w.error(e);
    }
    w.finish();
}

/// How a connection attempt ended, as far as is known now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    Succeeded,
    /// Failed with this errno (0: the reason could not be learned).
    Failed(i32),
    /// Not settled yet: wait.
    Pending,
    /// A call that only polled an earlier attempt (`EALREADY`, `EISCONN`): no span of its own.
    Poll,
}

/// Settles attempt `index` of a socket. `final_pass` is true when nothing more will be learned
/// (the program exited): an unsettled attempt then counts as failed for an unknown reason.
pub fn attempt_result(s: &SocketRecord, index: usize, final_pass: bool) -> AttemptResult {
    let Some(a) = s.attempts.get(index) else {
        return AttemptResult::Pending;
    };
    let last = index + 1 == s.attempts.len();
    match a.errno {
        0 => AttemptResult::Succeeded,
        EALREADY | EISCONN => AttemptResult::Poll,
        EINPROGRESS | EINTR => {
            if !last {
                // A later call on the same socket: this one ended without a result of its own.
                return match s.outcome {
                    Outcome::Connected => AttemptResult::Succeeded,
                    Outcome::Failed(e) => AttemptResult::Failed(e),
                    _ => AttemptResult::Failed(0),
                };
            }
            match s.outcome {
                Outcome::Connected => AttemptResult::Succeeded,
                Outcome::Failed(e) => AttemptResult::Failed(e),
                _ if final_pass || s.close_ns.is_some() => AttemptResult::Failed(0),
                _ => AttemptResult::Pending,
            }
        }
        e => AttemptResult::Failed(e),
    }
}

/// What the span of a connection attempt says about its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Connection {
    pid: u32,
    transport: Transport,
    incoming: bool,
    is_ipv6: bool,
    remote: Option<Endpoint>,
    local: Option<Endpoint>,
}

impl Connection {
    fn of(s: &SocketRecord) -> Connection {
        Connection {
            pid: s.pid,
            transport: s.transport,
            incoming: s.direction() == Direction::Incoming,
            is_ipv6: s.is_ipv6,
            remote: s.remote,
            local: s.local,
        }
    }
}

/// The span of one connection attempt (kind CLIENT) or accepted connection (kind SERVER).
/// `domain` is the name the peer's address was resolved from, if a lookup in the run gave it.
fn write_attempt(
    span: &mut Span,
    c: &Connection,
    a: &Attempt,
    result: AttemptResult,
    domain: Option<&str>,
    id: Identity,
) {
    let (kind, name) = if c.incoming {
        (SpanKind::Server, schema::SPAN_ACCEPT)
    } else {
        (SpanKind::Client, schema::SPAN_CONNECT)
    };
    let end = a.start_ns.saturating_add(a.duration_ns);
    let mut w = SpanWriter::new(span, id, kind, name, a.start_ns, end);
    let transport = match c.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    w.string(schema::NETWORK_TRANSPORT, transport);
    if let Some(r) = c.remote {
        w.string(schema::NETWORK_TYPE, network_type(r.ip));
        w.ip(schema::NETWORK_PEER_ADDRESS, r.ip);
        w.int(schema::NETWORK_PEER_PORT, r.port);
        if c.incoming {
            w.ip(schema::CLIENT_ADDRESS, r.ip);
            w.int(schema::CLIENT_PORT, r.port);
        } else {
            if let Some(d) = domain {
                w.string(schema::SERVER_ADDRESS, d);
            }
            w.int(schema::SERVER_PORT, r.port);
            w.string_with(schema::PEER_SERVICE, |s| write_peer_service(s, domain, r));
            w.string_with(schema::SERVICE_PEER_NAME, |s| {
                write_peer_service(s, domain, r)
            });
        }
    } else {
        w.string(
            schema::NETWORK_TYPE,
            if c.is_ipv6 { "ipv6" } else { "ipv4" },
        );
    }
    if let Some(l) = c.local {
        w.ip(schema::NETWORK_LOCAL_ADDRESS, l.ip);
        w.int(schema::NETWORK_LOCAL_PORT, l.port);
        if c.incoming {
            w.ip(schema::SERVER_ADDRESS, l.ip);
            w.int(schema::SERVER_PORT, l.port);
        }
    }
    w.int(schema::PROCESS_PID, c.pid);
    if let AttemptResult::Failed(e) = result {
        w.error(&names::errno_name(e));
    }
    w.finish();
}

/// A Lambda invocation (or the init phase, `request_id: None`) as a root span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvocationInfo {
    pub request_id: Option<String>,
    pub coldstart: bool,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The root span of an invocation (kind SERVER, as FaaS semantic conventions have it) or of
/// the init phase; netmon's DNS and connection spans of that invocation are its children.
fn write_invocation(span: &mut Span, inv: &InvocationInfo, trace: &ProcessTrace) {
    let (kind, name) = match inv.request_id {
        Some(_) => (SpanKind::Server, schema::SPAN_INVOCATION),
        None => (SpanKind::Internal, schema::SPAN_INIT),
    };
    let id = Identity {
        parent: SpanId::INVALID,
        parent_is_remote: false,
        ..Identity::root(trace)
    };
    let mut w = SpanWriter::new(span, id, kind, name, inv.start_ns, inv.end_ns);
    w.other(
        schema::FAAS_COLDSTART,
        any_value::Value::BoolValue(inv.coldstart),
    );
    if let Some(request_id) = &inv.request_id {
        w.string(schema::FAAS_INVOCATION_ID, request_id);
        w.string(schema::FAAS_TRIGGER, "other");
    }
    w.finish();
}

/// What a process root span says about its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub executable: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// The parent process's span, when the parent is monitored too: a link, since each
    /// process has its own trace.
    pub parent_process: Option<(TraceId, SpanId)>,
}

/// The root span of a process (kind INTERNAL), or a child of `TRACEPARENT` when given.
fn write_process(span: &mut Span, p: &ProcessInfo, trace: &ProcessTrace) {
    let mut w = SpanWriter::new(
        span,
        Identity::root(trace),
        SpanKind::Internal,
        schema::SPAN_PROCESS,
        p.start_ns,
        p.end_ns,
    );
    w.int(schema::PROCESS_PID, p.pid);
    w.int(schema::PROCESS_PARENT_PID, p.ppid);
    w.string(schema::PROCESS_EXECUTABLE_NAME, &p.executable);
    w.finish();
    if let Some((trace_id, span_id)) = p.parent_process {
        span.links.push(Link {
            trace_id: trace_id.to_bytes().to_vec(),
            span_id: span_id.to_bytes().to_vec(),
            trace_state: String::new(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: flags(false),
        });
    }
}

/// A span decided on by the pipeline, written as an OTLP message by
/// [`write_to`](Self::write_to) on an export thread (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct SpanDraft {
    trace: ProcessTrace,
    span_id: SpanId,
    what: What,
}

#[derive(Clone, Debug, PartialEq)]
enum What {
    Dns(DnsLookup),
    Attempt {
        connection: Connection,
        attempt: Attempt,
        result: AttemptResult,
        /// Shared with the pipeline's interned names: no copy per span.
        domain: Option<Arc<str>>,
    },
    Invocation(InvocationInfo),
    Process(ProcessInfo),
}

impl SpanDraft {
    /// The span of one name lookup, a child of its process's root span.
    pub fn dns(l: &DnsLookup, trace: &ProcessTrace, span_id: SpanId) -> SpanDraft {
        SpanDraft {
            trace: *trace,
            span_id,
            what: What::Dns(l.clone()),
        }
    }

    /// The span of attempt `a` of socket `s` (kind CLIENT), or of an accepted connection
    /// (kind SERVER). `domain` is the name the peer's address was resolved from, if a lookup
    /// in the run gave it.
    pub fn attempt(
        s: &SocketRecord,
        a: &Attempt,
        result: AttemptResult,
        domain: Option<Arc<str>>,
        trace: &ProcessTrace,
        span_id: SpanId,
    ) -> SpanDraft {
        SpanDraft {
            trace: *trace,
            span_id,
            what: What::Attempt {
                connection: Connection::of(s),
                attempt: a.clone(),
                result,
                domain,
            },
        }
    }

    /// The root span of a Lambda invocation or of the init phase.
    pub fn invocation(inv: InvocationInfo, trace: &ProcessTrace) -> SpanDraft {
        SpanDraft {
            trace: *trace,
            span_id: trace.root_span_id,
            what: What::Invocation(inv),
        }
    }

    /// The root span of a process.
    pub fn process(p: ProcessInfo, trace: &ProcessTrace) -> SpanDraft {
        SpanDraft {
            trace: *trace,
            span_id: trace.root_span_id,
            what: What::Process(p),
        }
    }

    /// Writes the OTLP span over `span`, reusing what it holds.
    pub fn write_to(&self, span: &mut Span) {
        match &self.what {
            What::Dns(l) => write_dns(span, l, &self.trace, self.span_id),
            What::Attempt {
                connection,
                attempt,
                result,
                domain,
            } => write_attempt(
                span,
                connection,
                attempt,
                *result,
                domain.as_deref(),
                Identity::child(&self.trace, self.span_id),
            ),
            What::Invocation(inv) => write_invocation(span, inv, &self.trace),
            What::Process(p) => write_process(span, p, &self.trace),
        }
    }

    /// The OTLP span.
    pub fn build(&self) -> Span {
        let mut span = Span::default();
        self.write_to(&mut span);
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::DnsSource;
    use netmon_proto::role;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn trace() -> ProcessTrace {
        ProcessTrace {
            trace_id: TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            root_span_id: SpanId::from(0xb7ad6b7169203331_u64),
            parent: None,
        }
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn str_attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
        match attr(s, key)? {
            any_value::Value::StringValue(v) => Some(v),
            _ => None,
        }
    }

    fn int_attr(s: &Span, key: &str) -> Option<i64> {
        match attr(s, key)? {
            any_value::Value::IntValue(v) => Some(*v),
            _ => None,
        }
    }

    fn error(message: &str) -> Option<Status> {
        Some(Status {
            message: message.into(),
            code: StatusCode::Error as i32,
        })
    }

    pub(crate) fn socket(remote: &str, port: u16, role: u8) -> SocketRecord {
        let mut s = SocketRecord::new(7, Transport::Tcp, false, role);
        s.remote = Some(Endpoint {
            ip: remote.parse().unwrap(),
            port,
        });
        s.local = Some(Endpoint {
            ip: "10.0.0.5".parse().unwrap(),
            port: 40000,
        });
        s.role = role;
        s
    }

    #[test]
    fn traceparent_parsing() {
        let tp =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(tp.trace_id, trace().trace_id);
        assert_eq!(tp.span_id, trace().root_span_id);
        assert!(tp.sampled);
        assert!(
            !parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
                .unwrap()
                .sampled
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dns_span_has_semconv_attributes_and_error() {
        let l = DnsLookup {
            pid: 7,
            tid: 8,
            epoch: 0,
            name: "api.example.internal".into(),
            source: DnsSource::Getaddrinfo,
            start_ns: 1_700_000_000_000_000_000,
            duration_ns: 400_000,
            answers: vec![
                "10.0.3.7".parse().unwrap(),
                "::ffff:10.0.3.8".parse().unwrap(),
            ],
            rcode: 0,
            error: None,
        };
        let s = SpanDraft::dns(&l, &trace(), SpanId::from(5_u64)).build();
        assert_eq!(s.name, schema::SPAN_DNS_LOOKUP);
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(s.trace_id, trace().trace_id.to_bytes());
        assert_eq!(s.span_id, 5_u64.to_be_bytes());
        assert_eq!(s.parent_span_id, trace().root_span_id.to_bytes());
        // Sampled, parent known to be local.
        assert_eq!(s.flags, 0x101);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 400_000);
        let Some(any_value::Value::ArrayValue(answers)) = attr(&s, "dns.answers") else {
            panic!("no dns.answers");
        };
        let answers: Vec<_> = answers.values.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            answers,
            [
                Some(any_value::Value::StringValue("10.0.3.7".into())),
                Some(any_value::Value::StringValue("10.0.3.8".into()))
            ]
        );
        assert_eq!(
            str_attr(&s, "dns.question.name"),
            Some("api.example.internal")
        );
        assert_eq!(int_attr(&s, "process.pid"), Some(7));
        assert_eq!(int_attr(&s, "thread.id"), Some(8));
        assert_eq!(s.status, Some(Status::default()));

        let failed = DnsLookup {
            error: Some("NXDOMAIN".into()),
            rcode: 3,
            answers: vec![],
            ..l
        };
        let s = SpanDraft::dns(&failed, &trace(), SpanId::from(6_u64)).build();
        assert_eq!(str_attr(&s, "error.type"), Some("NXDOMAIN"));
        assert_eq!(s.status, error("NXDOMAIN"));
        assert!(attr(&s, "dns.answers").is_none());
    }

    #[test]
    fn connect_span_names_the_destination() {
        let mut s = socket("93.184.216.34", 443, role::OUTGOING);
        s.attempts = vec![Attempt {
            epoch: 0,
            start_ns: 1000,
            duration_ns: 500,
            errno: 0,
        }];
        let r = attempt_result(&s, 0, false);
        assert_eq!(r, AttemptResult::Succeeded);
        let sp = SpanDraft::attempt(
            &s,
            &s.attempts[0],
            r,
            Some("example.com".into()),
            &trace(),
            SpanId::from(9_u64),
        )
        .build();
        assert_eq!(sp.name, "connect");
        assert_eq!(sp.kind, SpanKind::Client as i32);
        assert_eq!(str_attr(&sp, "peer.service"), Some("example.com"));
        assert_eq!(str_attr(&sp, "service.peer.name"), Some("example.com"));
        assert_eq!(str_attr(&sp, "server.address"), Some("example.com"));
        assert_eq!(int_attr(&sp, "server.port"), Some(443));
        assert_eq!(str_attr(&sp, "network.peer.address"), Some("93.184.216.34"));
        assert_eq!(str_attr(&sp, "network.type"), Some("ipv4"));
        assert_eq!(str_attr(&sp, "network.transport"), Some("tcp"));
        assert_eq!(int_attr(&sp, "network.local.port"), Some(40000));
        assert_eq!(sp.start_time_unix_nano, 1000);
        assert_eq!(sp.end_time_unix_nano, 1500);
        assert_eq!(sp.status, Some(Status::default()));

        // Unknown name: peer.service is ip:port, no server.address.
        let sp =
            SpanDraft::attempt(&s, &s.attempts[0], r, None, &trace(), SpanId::from(9_u64)).build();
        assert_eq!(str_attr(&sp, "peer.service"), Some("93.184.216.34:443"));
        assert!(attr(&sp, "server.address").is_none());
        let mut v6 = socket("2001:db8::1", 80, role::OUTGOING);
        v6.attempts = s.attempts.clone();
        let sp = SpanDraft::attempt(&v6, &v6.attempts[0], r, None, &trace(), SpanId::from(9_u64))
            .build();
        assert_eq!(str_attr(&sp, "peer.service"), Some("[2001:db8::1]:80"));
        assert_eq!(str_attr(&sp, "network.type"), Some("ipv6"));
    }

    /// Every kind of span, written over every other (as an export worker reuses its messages),
    /// is the span written fresh.
    #[test]
    fn a_span_written_over_another_is_the_same_as_a_new_one() {
        let lookup = DnsLookup {
            pid: 7,
            tid: 8,
            epoch: 0,
            name: "api.example.internal".into(),
            source: DnsSource::Getaddrinfo,
            start_ns: 1_700_000_000_000_000_000,
            duration_ns: 400_000,
            answers: vec!["10.0.3.7".parse().unwrap()],
            rcode: 3,
            error: Some("NXDOMAIN".into()),
        };
        let mut out = socket("93.184.216.34", 443, role::OUTGOING);
        out.attempts = vec![Attempt {
            epoch: 0,
            start_ns: 1000,
            duration_ns: 500,
            errno: 111,
        }];
        let mut inc = socket("10.1.1.1", 51000, role::INCOMING);
        inc.attempts = out.attempts.clone();
        let joined = ProcessTrace {
            parent: Some(SpanId::from(11_u64)),
            ..trace()
        };
        let process = ProcessInfo {
            pid: 7,
            ppid: 1,
            executable: "curl".into(),
            start_ns: 100,
            end_ns: 200,
            parent_process: Some((TraceId::from(3_u128), SpanId::from(4_u64))),
        };
        let id = SpanId::from(5_u64);
        let drafts = [
            SpanDraft::dns(&lookup, &trace(), id),
            SpanDraft::dns(
                &DnsLookup {
                    answers: vec![],
                    error: None,
                    ..lookup.clone()
                },
                &trace(),
                id,
            ),
            SpanDraft::attempt(
                &out,
                &out.attempts[0],
                AttemptResult::Failed(111),
                Some("example.com".into()),
                &trace(),
                id,
            ),
            SpanDraft::attempt(
                &out,
                &out.attempts[0],
                AttemptResult::Succeeded,
                None,
                &trace(),
                id,
            ),
            SpanDraft::attempt(
                &inc,
                &inc.attempts[0],
                AttemptResult::Succeeded,
                None,
                &trace(),
                id,
            ),
            SpanDraft::invocation(
                InvocationInfo {
                    request_id: Some("req-1".into()),
                    coldstart: true,
                    start_ns: 10,
                    end_ns: 20,
                },
                &trace(),
            ),
            SpanDraft::invocation(
                InvocationInfo {
                    request_id: None,
                    coldstart: false,
                    start_ns: 10,
                    end_ns: 20,
                },
                &trace(),
            ),
            SpanDraft::process(process.clone(), &trace()),
            SpanDraft::process(
                ProcessInfo {
                    parent_process: None,
                    ..process
                },
                &joined,
            ),
        ];
        for before in &drafts {
            for after in &drafts {
                let mut span = before.build();
                after.write_to(&mut span);
                assert_eq!(span, after.build(), "{after:?} written over {before:?}");
            }
        }
    }

    #[test]
    fn failed_and_pending_attempts() {
        let mut s = socket("127.0.0.1", 9, role::OUTGOING);
        s.attempts = vec![Attempt {
            epoch: 0,
            start_ns: 10,
            duration_ns: 5,
            errno: 111,
        }];
        s.outcome = Outcome::Failed(111);
        let r = attempt_result(&s, 0, false);
        assert_eq!(r, AttemptResult::Failed(111));
        let sp =
            SpanDraft::attempt(&s, &s.attempts[0], r, None, &trace(), SpanId::from(1_u64)).build();
        assert_eq!(str_attr(&sp, "error.type"), Some("ECONNREFUSED"));
        assert_eq!(sp.status, error("ECONNREFUSED"));

        // Non-blocking: in progress until the outcome is known.
        s.attempts[0].errno = EINPROGRESS;
        s.outcome = Outcome::Pending;
        assert_eq!(attempt_result(&s, 0, false), AttemptResult::Pending);
        assert_eq!(attempt_result(&s, 0, true), AttemptResult::Failed(0));
        s.outcome = Outcome::Connected;
        assert_eq!(attempt_result(&s, 0, false), AttemptResult::Succeeded);
        s.attempts.push(Attempt {
            epoch: 0,
            start_ns: 20,
            duration_ns: 1,
            errno: EISCONN,
        });
        assert_eq!(attempt_result(&s, 1, false), AttemptResult::Poll);
        assert_eq!(attempt_result(&s, 0, false), AttemptResult::Succeeded);
    }

    #[test]
    fn accepted_connection_is_a_server_span() {
        let mut s = socket("10.1.1.1", 51000, role::INCOMING);
        s.attempts = vec![Attempt {
            epoch: 0,
            start_ns: 10,
            duration_ns: 5,
            errno: 0,
        }];
        let sp = SpanDraft::attempt(
            &s,
            &s.attempts[0],
            AttemptResult::Succeeded,
            None,
            &trace(),
            SpanId::from(2_u64),
        )
        .build();
        assert_eq!(sp.name, "accept");
        assert_eq!(sp.kind, SpanKind::Server as i32);
        assert_eq!(str_attr(&sp, "client.address"), Some("10.1.1.1"));
        assert_eq!(str_attr(&sp, "server.address"), Some("10.0.0.5"));
        assert_eq!(int_attr(&sp, "server.port"), Some(40000));
        assert!(attr(&sp, "peer.service").is_none());
    }

    #[test]
    fn process_span_is_root_or_child_of_traceparent() {
        let p = ProcessInfo {
            pid: 7,
            ppid: 1,
            executable: "curl".into(),
            start_ns: 100,
            end_ns: 200,
            parent_process: Some((TraceId::from(3_u128), SpanId::from(4_u64))),
        };
        let sp = SpanDraft::process(p.clone(), &trace()).build();
        assert!(sp.parent_span_id.is_empty());
        assert_eq!(sp.span_id, trace().root_span_id.to_bytes());
        assert_eq!(sp.kind, SpanKind::Internal as i32);
        assert_eq!(sp.flags, 0x101);
        assert_eq!(str_attr(&sp, "process.executable.name"), Some("curl"));
        assert_eq!(int_attr(&sp, "process.parent_pid"), Some(1));
        assert_eq!(sp.links.len(), 1);
        assert_eq!(sp.links[0].trace_id, 3_u128.to_be_bytes());
        assert_eq!(sp.links[0].span_id, 4_u64.to_be_bytes());
        assert_eq!(sp.links[0].flags, 0x101);
        let joined = ProcessTrace {
            parent: Some(SpanId::from(11_u64)),
            ..trace()
        };
        let sp = SpanDraft::process(p.clone(), &joined).build();
        assert_eq!(sp.parent_span_id, 11_u64.to_be_bytes());
        // Sampled, parent remote.
        assert_eq!(sp.flags, 0x301);
    }
}
