//! Spans from tracker records (pure functions): one per DNS lookup, one per connection attempt,
//! one root span per process (DESIGN §6). Timestamps are the real call times the interceptor
//! recorded (nanoseconds since the Unix epoch).

use super::schema;
use crate::names;
use crate::tracker::{Attempt, Direction, DnsLookup, Endpoint, Outcome, SocketRecord, Transport};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Nanoseconds since the Unix epoch as a `SystemTime`.
pub fn wall_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The canonical text of an address: IPv4-mapped IPv6 shown as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn ip_string(ip: IpAddr) -> String {
    canonical_ip(ip).to_string()
}

/// `host:port`, bracketing IPv6 literals.
pub fn host_port(ip: IpAddr, port: u16) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn network_type(ip: IpAddr) -> &'static str {
    match canonical_ip(ip) {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

fn span_context(trace: &ProcessTrace, span_id: SpanId) -> SpanContext {
    SpanContext::new(
        trace.trace_id,
        span_id,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: &ProcessTrace,
    span_id: SpanId,
    parent: SpanId,
    parent_is_remote: bool,
    kind: SpanKind,
    name: &'static str,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<KeyValue>,
    status: Status,
    links: SpanLinks,
    scope: &InstrumentationScope,
) -> SpanData {
    SpanData {
        span_context: span_context(trace, span_id),
        parent_span_id: parent,
        parent_span_is_remote: parent_is_remote,
        span_kind: kind,
        name: Cow::Borrowed(name),
        start_time: wall_time(start_ns),
        end_time: wall_time(end_ns.max(start_ns)),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// The span of one name lookup, a child of its process's root span.
pub fn dns_span(
    l: &DnsLookup,
    trace: &ProcessTrace,
    span_id: SpanId,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attrs = Vec::with_capacity(8);
    attrs.push(KeyValue::new(schema::DNS_QUESTION_NAME, l.name.clone()));
    if !l.answers.is_empty() {
        let answers: Vec<StringValue> = l
            .answers
            .iter()
            .map(|a| StringValue::from(ip_string(*a)))
            .collect();
        attrs.push(KeyValue::new(
            schema::DNS_ANSWERS,
            Value::Array(Array::String(answers)),
        ));
    }
    attrs.push(KeyValue::new(schema::NETMON_DNS_SOURCE, l.source.as_str()));
    attrs.push(KeyValue::new(schema::NETMON_DNS_RCODE, i64::from(l.rcode)));
    attrs.push(KeyValue::new(schema::PROCESS_PID, i64::from(l.pid)));
    attrs.push(KeyValue::new(schema::THREAD_ID, i64::from(l.tid)));
    let status = match &l.error {
        Some(e) => {
            attrs.push(KeyValue::new(schema::ERROR_TYPE, e.clone()));
            Status::error(e.clone())
        }
        None => Status::Unset,
    };
    span(
        trace,
        span_id,
        trace.root_span_id,
        false,
        SpanKind::Client,
        schema::SPAN_DNS_LOOKUP,
        l.start_ns,
        l.start_ns.saturating_add(l.duration_ns),
        attrs,
        status,
        SpanLinks::default(),
        scope,
    )
}

/// How a connection attempt ended, as far as is known now.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// `peer.service` of a destination: the name it was resolved from, else `ip:port`.
pub fn peer_service(domain: Option<&str>, remote: Endpoint) -> String {
    match domain {
        Some(d) => d.to_string(),
        None => host_port(remote.ip, remote.port),
    }
}

/// The span of one connection attempt (kind CLIENT) or accepted connection (kind SERVER).
/// `domain` is the name the peer's address was resolved from, if a lookup in the run gave it.
pub fn attempt_span(
    s: &SocketRecord,
    a: &Attempt,
    result: &AttemptResult,
    domain: Option<&str>,
    trace: &ProcessTrace,
    span_id: SpanId,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attrs = Vec::with_capacity(14);
    let transport = match s.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    attrs.push(KeyValue::new(schema::NETWORK_TRANSPORT, transport));
    let incoming = s.direction() == Direction::Incoming;
    if let Some(r) = s.remote {
        attrs.push(KeyValue::new(schema::NETWORK_TYPE, network_type(r.ip)));
        attrs.push(KeyValue::new(schema::NETWORK_PEER_ADDRESS, ip_string(r.ip)));
        attrs.push(KeyValue::new(schema::NETWORK_PEER_PORT, i64::from(r.port)));
        if incoming {
            attrs.push(KeyValue::new(schema::CLIENT_ADDRESS, ip_string(r.ip)));
            attrs.push(KeyValue::new(schema::CLIENT_PORT, i64::from(r.port)));
        } else {
            if let Some(d) = domain {
                attrs.push(KeyValue::new(schema::SERVER_ADDRESS, d.to_string()));
            }
            attrs.push(KeyValue::new(schema::SERVER_PORT, i64::from(r.port)));
            let peer = peer_service(domain, r);
            attrs.push(KeyValue::new(schema::PEER_SERVICE, peer.clone()));
            attrs.push(KeyValue::new(schema::SERVICE_PEER_NAME, peer));
        }
    } else {
        attrs.push(KeyValue::new(
            schema::NETWORK_TYPE,
            if s.is_ipv6 { "ipv6" } else { "ipv4" },
        ));
    }
    if let Some(l) = s.local {
        attrs.push(KeyValue::new(
            schema::NETWORK_LOCAL_ADDRESS,
            ip_string(l.ip),
        ));
        attrs.push(KeyValue::new(schema::NETWORK_LOCAL_PORT, i64::from(l.port)));
        if incoming {
            attrs.push(KeyValue::new(schema::SERVER_ADDRESS, ip_string(l.ip)));
            attrs.push(KeyValue::new(schema::SERVER_PORT, i64::from(l.port)));
        }
    }
    attrs.push(KeyValue::new(schema::PROCESS_PID, i64::from(s.pid)));
    let status = match result {
        AttemptResult::Failed(e) => {
            let name = names::errno_name(*e);
            attrs.push(KeyValue::new(schema::ERROR_TYPE, name.clone()));
            Status::error(name)
        }
        _ => Status::Unset,
    };
    let (kind, name) = if incoming {
        (SpanKind::Server, schema::SPAN_ACCEPT)
    } else {
        (SpanKind::Client, schema::SPAN_CONNECT)
    };
    span(
        trace,
        span_id,
        trace.root_span_id,
        false,
        kind,
        name,
        a.start_ns,
        a.start_ns.saturating_add(a.duration_ns),
        attrs,
        status,
        SpanLinks::default(),
        scope,
    )
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
pub fn invocation_span(
    inv: &InvocationInfo,
    trace: &ProcessTrace,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attrs = vec![KeyValue::new(schema::FAAS_COLDSTART, inv.coldstart)];
    let name = match &inv.request_id {
        Some(id) => {
            attrs.push(KeyValue::new(schema::FAAS_INVOCATION_ID, id.clone()));
            attrs.push(KeyValue::new(schema::FAAS_TRIGGER, "other"));
            schema::SPAN_INVOCATION
        }
        None => schema::SPAN_INIT,
    };
    span(
        trace,
        trace.root_span_id,
        SpanId::INVALID,
        false,
        if inv.request_id.is_some() {
            SpanKind::Server
        } else {
            SpanKind::Internal
        },
        name,
        inv.start_ns,
        inv.end_ns,
        attrs,
        Status::Unset,
        SpanLinks::default(),
        scope,
    )
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
pub fn process_span(
    p: &ProcessInfo,
    trace: &ProcessTrace,
    scope: &InstrumentationScope,
) -> SpanData {
    let attrs = vec![
        KeyValue::new(schema::PROCESS_PID, i64::from(p.pid)),
        KeyValue::new(schema::PROCESS_PARENT_PID, i64::from(p.ppid)),
        KeyValue::new(schema::PROCESS_EXECUTABLE_NAME, p.executable.clone()),
    ];
    let mut links = SpanLinks::default();
    if let Some((trace_id, span_id)) = p.parent_process {
        links
            .links
            .push(opentelemetry::trace::Link::with_context(SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )));
    }
    span(
        trace,
        trace.root_span_id,
        trace.parent.unwrap_or(SpanId::INVALID),
        trace.parent.is_some(),
        SpanKind::Internal,
        schema::SPAN_PROCESS,
        p.start_ns,
        p.end_ns,
        attrs,
        Status::Unset,
        links,
        scope,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::DnsSource;
    use netmon_proto::role;

    fn trace() -> ProcessTrace {
        ProcessTrace {
            trace_id: TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            root_span_id: SpanId::from(0xb7ad6b7169203331_u64),
            parent: None,
        }
    }

    fn attr(s: &SpanData, key: &str) -> Option<Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
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
        let s = dns_span(&l, &trace(), SpanId::from(5_u64), &scope());
        assert_eq!(s.name, schema::SPAN_DNS_LOOKUP);
        assert_eq!(s.span_kind, SpanKind::Client);
        assert_eq!(s.parent_span_id, trace().root_span_id);
        assert_eq!(
            s.end_time.duration_since(s.start_time).unwrap(),
            Duration::from_micros(400)
        );
        assert_eq!(
            attr(&s, "dns.answers").unwrap().to_string(),
            r#"["10.0.3.7","10.0.3.8"]"#
        );
        assert_eq!(s.status, Status::Unset);

        let failed = DnsLookup {
            error: Some("NXDOMAIN".into()),
            rcode: 3,
            answers: vec![],
            ..l
        };
        let s = dns_span(&failed, &trace(), SpanId::from(6_u64), &scope());
        assert_eq!(attr(&s, "error.type").unwrap().as_str(), "NXDOMAIN");
        assert_eq!(s.status, Status::error("NXDOMAIN"));
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
        let sp = attempt_span(
            &s,
            &s.attempts[0],
            &r,
            Some("example.com"),
            &trace(),
            SpanId::from(9_u64),
            &scope(),
        );
        assert_eq!(sp.name, "connect");
        assert_eq!(sp.span_kind, SpanKind::Client);
        assert_eq!(attr(&sp, "peer.service").unwrap().as_str(), "example.com");
        assert_eq!(attr(&sp, "server.address").unwrap().as_str(), "example.com");
        assert_eq!(attr(&sp, "server.port").unwrap(), Value::I64(443));
        assert_eq!(
            attr(&sp, "network.peer.address").unwrap().as_str(),
            "93.184.216.34"
        );
        assert_eq!(attr(&sp, "network.type").unwrap().as_str(), "ipv4");
        assert_eq!(attr(&sp, "network.local.port").unwrap(), Value::I64(40000));

        // Unknown name: peer.service is ip:port, no server.address.
        let sp = attempt_span(
            &s,
            &s.attempts[0],
            &r,
            None,
            &trace(),
            SpanId::from(9_u64),
            &scope(),
        );
        assert_eq!(
            attr(&sp, "peer.service").unwrap().as_str(),
            "93.184.216.34:443"
        );
        assert!(attr(&sp, "server.address").is_none());
        let v6 = socket("2001:db8::1", 80, role::OUTGOING);
        assert_eq!(peer_service(None, v6.remote.unwrap()), "[2001:db8::1]:80");
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
        let sp = attempt_span(
            &s,
            &s.attempts[0],
            &r,
            None,
            &trace(),
            SpanId::from(1_u64),
            &scope(),
        );
        assert_eq!(attr(&sp, "error.type").unwrap().as_str(), "ECONNREFUSED");
        assert_eq!(sp.status, Status::error("ECONNREFUSED"));

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
        let sp = attempt_span(
            &s,
            &s.attempts[0],
            &AttemptResult::Succeeded,
            None,
            &trace(),
            SpanId::from(2_u64),
            &scope(),
        );
        assert_eq!(sp.name, "accept");
        assert_eq!(sp.span_kind, SpanKind::Server);
        assert_eq!(attr(&sp, "client.address").unwrap().as_str(), "10.1.1.1");
        assert_eq!(attr(&sp, "server.port").unwrap(), Value::I64(40000));
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
        let sp = process_span(&p, &trace(), &scope());
        assert_eq!(sp.parent_span_id, SpanId::INVALID);
        assert_eq!(sp.span_context.span_id(), trace().root_span_id);
        assert_eq!(sp.links.len(), 1);
        let joined = ProcessTrace {
            parent: Some(SpanId::from(11_u64)),
            ..trace()
        };
        let sp = process_span(&p, &joined, &scope());
        assert_eq!(sp.parent_span_id, SpanId::from(11_u64));
        assert!(sp.parent_span_is_remote);
    }
}
