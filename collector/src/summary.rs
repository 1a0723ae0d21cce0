//! The run summary: DNS per name, flows per destination, totals — as JSON (`--json`) and as the
//! human text `netmon run` prints. Pure functions of the [`Tracker`]'s state.

use crate::names;
use crate::tracker::{
    Direction, DnsLookup, DnsSource, Health, Outcome, SocketRecord, Tracker, Transport,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

#[derive(Debug, Serialize, PartialEq)]
pub struct RunSummary {
    pub command: Vec<String>,
    pub pid: u32,
    pub exit_code: i32,
    pub duration_ms: f64,
    pub processes: Vec<ProcessSummary>,
    pub dns: Vec<DnsSummary>,
    pub flows: Vec<FlowSummary>,
    pub totals: Totals,
    pub dropped_events: u64,
    pub records_rejected: u64,
    pub sockets_untracked: u64,
    /// What `/proc` showed over the run (`netmon run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<crate::kernel::KernelSummary>,
    /// Delivery per exporter (absent when nothing is exported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export: Vec<crate::telemetry::ExporterReport>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ProcessSummary {
    pub pid: u32,
    pub ppid: u32,
    pub executable: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DnsSummary {
    pub name: String,
    pub answers: Vec<String>,
    pub count: u64,
    pub failures: u64,
    /// The last failure's reason, if any lookup failed.
    pub error: Option<String>,
    /// The last lookup's DNS rcode (-1: timeout).
    pub rcode: i32,
    pub source: String,
    pub latency_ms_avg: f64,
    pub latency_ms_max: f64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FlowSummary {
    pub direction: String,
    pub transport: String,
    pub family: String,
    pub dst_domain: Option<String>,
    pub dst_ip: String,
    /// The peer's port for outgoing flows; null for incoming ones (the peer's port is
    /// ephemeral; `src_port` is the local port it connected to).
    pub dst_port: Option<u16>,
    pub src_ip: Option<String>,
    pub src_port: Option<u16>,
    pub connections: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    /// Null for `/proc` flows: bytes and packets are not known at that level.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub packets_sent: Option<u64>,
    pub packets_received: Option<u64>,
    pub rtt_us: Option<f64>,
    pub rtt_var_us: Option<f64>,
    pub retransmits: Option<u64>,
    pub pids: Vec<u32>,
    /// [`SOURCE_INTERCEPTOR`] or [`SOURCE_PROC`].
    pub source: &'static str,
    /// `/proc` flows: sockets by the last state each was seen in.
    pub states: Option<BTreeMap<String, u64>>,
}

/// A flow the interceptor recorded.
pub const SOURCE_INTERCEPTOR: &str = "interceptor";
/// A flow only `/proc` showed (a program that bypasses libc): bytes unknown.
pub const SOURCE_PROC: &str = "proc";

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Successful TCP connections (UDP sockets are not connections); failed attempts are
    /// `failed_connections`.
    pub connections: u64,
    pub failed_connections: u64,
    pub dns_lookups: u64,
    pub dns_failures: u64,
}

/// What a flow is keyed by: direction, transport, peer ip, service port (the peer's for
/// outgoing, ours for incoming).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    direction: Direction,
    transport: Transport,
    peer: IpAddr,
    service_port: u16,
}

#[derive(Clone, Default)]
struct FlowAcc {
    src_ip: Option<IpAddr>,
    connections: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_received: u64,
    packets_sent: u64,
    packets_received: u64,
    rtt_sum: f64,
    rtt_var_sum: f64,
    rtt_n: u64,
    retransmits: Option<u64>,
    pids: BTreeSet<u32>,
}

fn family_of(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// One name's lookups, folded in any order.
#[derive(Clone, Default)]
struct DnsAcc {
    count: u64,
    failures: u64,
    /// The latest failure: (start, reason).
    error: Option<(u64, String)>,
    /// The latest lookup: (start, rcode, source).
    last: Option<(u64, i32, DnsSource)>,
    sum_ns: u64,
    max_ns: u64,
    answers: BTreeSet<IpAddr>,
}

/// Adds one lookup to its name's summary. Of lookups that started at the same time, the one
/// added last counts as the latest.
fn add_lookup(dns: &mut BTreeMap<String, DnsAcc>, l: &DnsLookup) {
    let a = match dns.get_mut(&l.name) {
        Some(a) => a,
        None => dns.entry(l.name.clone()).or_default(),
    };
    a.count += 1;
    a.answers.extend(l.answers.iter().copied());
    if let Some(e) = &l.error {
        a.failures += 1;
        if a.error.as_ref().is_none_or(|(at, _)| l.start_ns >= *at) {
            a.error = Some((l.start_ns, e.clone()));
        }
    }
    if a.last.is_none_or(|(at, _, _)| l.start_ns >= at) {
        a.last = Some((l.start_ns, l.rcode, l.source));
    }
    a.sum_ns = a.sum_ns.saturating_add(l.duration_ns);
    a.max_ns = a.max_ns.max(l.duration_ns);
}

/// What the summary keeps of the sockets and lookups the tracker has let go of: `netmon run`
/// retires closed sockets and read lookups as it goes (`Tracker::retire`), so a long run's
/// memory stays bounded by what is open, not by everything that ever was.
#[derive(Clone, Default)]
pub struct Retired {
    flows: BTreeMap<FlowKey, FlowAcc>,
    dns: BTreeMap<String, DnsAcc>,
}

impl Retired {
    pub fn socket(&mut self, s: &SocketRecord) {
        add_socket(&mut self.flows, s);
    }

    pub fn lookup(&mut self, l: &DnsLookup) {
        add_lookup(&mut self.dns, l);
    }
}

/// Adds one socket to the flow it belongs to.
fn add_socket(flows: &mut BTreeMap<FlowKey, FlowAcc>, s: &SocketRecord) {
    let Some(remote) = s.remote else { return };
    if s.platform {
        return; // the Lambda Runtime API: the platform's traffic, not the program's
    }
    let direction = s.direction();
    let service_port = match direction {
        Direction::Outgoing => remote.port,
        Direction::Incoming => s.local.map_or(0, |l| l.port),
    };
    let key = FlowKey {
        direction,
        transport: s.transport,
        peer: remote.ip,
        service_port,
    };
    let acc = flows.entry(key).or_default();
    if let Some(l) = s.local {
        acc.src_ip = Some(l.ip);
    }
    acc.pids.insert(s.pid);
    // Saturating sums here and below: the counters come from shared memory that any
    // monitored process can scribble on (the tracker bounds each one, not their sum).
    acc.bytes_sent = acc.bytes_sent.saturating_add(s.bytes_sent);
    acc.bytes_received = acc.bytes_received.saturating_add(s.bytes_received);
    let (packets_sent, packets_received) = match s.transport {
        Transport::Tcp => (s.segs_out as u64, s.segs_in as u64),
        Transport::Udp => (s.sends, s.receives),
    };
    acc.packets_sent = acc.packets_sent.saturating_add(packets_sent);
    acc.packets_received = acc.packets_received.saturating_add(packets_received);
    if let Some(rtt) = s.rtt_us {
        acc.rtt_sum += rtt as f64;
        acc.rtt_var_sum += s.rtt_var_us.unwrap_or(0) as f64;
        acc.rtt_n += 1;
    }
    if let Some(r) = s.retransmits {
        let total = acc.retransmits.get_or_insert(0);
        *total = total.saturating_add(u64::from(r));
    }
    if s.inherited {
        return; // the parent counted this connection
    }
    match &s.outcome {
        Outcome::Failed(e) => {
            acc.failed += 1;
            *acc.errors.entry(names::errno_name(*e)).or_default() += 1;
        }
        Outcome::Connected => acc.connections += 1,
        Outcome::None | Outcome::Pending if s.transport == Transport::Udp => acc.connections += 1,
        _ => {}
    }
}

/// Inputs to a summary that don't come from the region.
pub struct RunInfo {
    pub command: Vec<String>,
    /// Pid of the command netmon started.
    pub pid: u32,
    pub exit_code: i32,
    pub duration_ms: f64,
}

/// The summary of everything the tracker holds plus what it retired.
pub fn build(t: &Tracker, retired: &Retired, health: Health, info: RunInfo) -> RunSummary {
    let names = t.name_index();
    let domain_of = |pid: &BTreeSet<u32>, ip: &IpAddr, port: u16| -> Option<String> {
        if port == crate::tracker::DNS_PORT {
            return None; // the resolver itself, not a destination it resolved
        }
        pid.iter()
            .find_map(|p| names.get(&(Some(*p), *ip)))
            .or_else(|| names.get(&(None, *ip)))
            .cloned()
    };
    let mut flows = retired.flows.clone();
    for s in t.sockets.values() {
        add_socket(&mut flows, s);
    }
    for d in t.datagrams.values() {
        let key = FlowKey {
            direction: Direction::Outgoing,
            transport: Transport::Udp,
            peer: d.peer.ip,
            service_port: d.peer.port,
        };
        let acc = flows.entry(key).or_default();
        acc.pids.insert(d.pid);
        acc.bytes_sent = acc.bytes_sent.saturating_add(d.bytes_sent);
        acc.bytes_received = acc.bytes_received.saturating_add(d.bytes_received);
        match d.direction {
            Direction::Outgoing => acc.packets_sent = acc.packets_sent.saturating_add(d.count),
            Direction::Incoming => {
                acc.packets_received = acc.packets_received.saturating_add(d.count)
            }
        }
    }

    let mut totals = Totals::default();
    let flows: Vec<FlowSummary> = flows
        .into_iter()
        .map(|(k, a)| {
            let outgoing = k.direction == Direction::Outgoing;
            totals.bytes_sent = totals.bytes_sent.saturating_add(a.bytes_sent);
            totals.bytes_received = totals.bytes_received.saturating_add(a.bytes_received);
            if k.transport == Transport::Tcp {
                totals.connections += a.connections;
                totals.failed_connections += a.failed;
            }
            FlowSummary {
                direction: k.direction.as_str().into(),
                transport: k.transport.as_str().into(),
                family: family_of(&k.peer).into(),
                dst_domain: if outgoing {
                    domain_of(&a.pids, &k.peer, k.service_port)
                } else {
                    None
                },
                dst_ip: k.peer.to_string(),
                dst_port: outgoing.then_some(k.service_port),
                src_ip: a.src_ip.map(|ip| ip.to_string()),
                src_port: (!outgoing).then_some(k.service_port),
                connections: a.connections,
                failed: a.failed,
                errors: a.errors,
                bytes_sent: Some(a.bytes_sent),
                bytes_received: Some(a.bytes_received),
                packets_sent: Some(a.packets_sent),
                packets_received: Some(a.packets_received),
                rtt_us: (a.rtt_n > 0).then(|| a.rtt_sum / a.rtt_n as f64),
                rtt_var_us: (a.rtt_n > 0).then(|| a.rtt_var_sum / a.rtt_n as f64),
                retransmits: a.retransmits,
                pids: a.pids.into_iter().collect(),
                source: SOURCE_INTERCEPTOR,
                states: None,
            }
        })
        .collect();

    let mut dns = retired.dns.clone();
    for l in &t.lookups {
        add_lookup(&mut dns, l);
    }
    let dns: Vec<DnsSummary> = dns
        .into_iter()
        .map(|(name, a)| {
            totals.dns_lookups += a.count;
            totals.dns_failures += a.failures;
            DnsSummary {
                name,
                answers: a.answers.into_iter().map(|a| a.to_string()).collect(),
                count: a.count,
                failures: a.failures,
                error: a.error.map(|(_, e)| e),
                rcode: a.last.as_ref().map_or(0, |l| l.1),
                source: a
                    .last
                    .map_or_else(String::new, |l| l.2.as_str().to_string()),
                latency_ms_avg: a.sum_ns as f64 / a.count.max(1) as f64 / 1e6,
                latency_ms_max: a.max_ns as f64 / 1e6,
            }
        })
        .collect();

    RunSummary {
        command: info.command,
        pid: info.pid,
        exit_code: info.exit_code,
        duration_ms: info.duration_ms,
        processes: t
            .processes
            .values()
            .map(|p| ProcessSummary {
                pid: p.pid,
                ppid: p.ppid,
                executable: p.executable.clone(),
            })
            .collect(),
        dns,
        flows,
        totals,
        dropped_events: health.events_dropped,
        records_rejected: health.records_rejected,
        sockets_untracked: health.sockets_untracked,
        kernel: None,
        export: Vec::new(),
    }
}

/// `1.2 KiB`, `48.3 MiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Formats rows as columns separated by three spaces, trailing cells unpadded.
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("   ");
                }
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$}", w = widths[i]);
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// The human summary `netmon run` prints on stderr.
pub fn render_text(s: &RunSummary) -> String {
    let mut out = String::new();
    let main = s
        .processes
        .iter()
        .find(|p| p.pid == s.pid)
        .map(|p| format!("{} (pid {})", p.executable, p.pid))
        .unwrap_or_else(|| {
            let program = s.command.first().map_or("", String::as_str);
            format!("{program} (pid {})", s.pid)
        });
    let others = s.processes.iter().filter(|p| p.pid != s.pid).count() as u64;
    let _ = write!(out, "netmon: {main}");
    if others > 0 {
        let mut active: BTreeSet<u32> = s
            .flows
            .iter()
            .flat_map(|f| f.pids.iter().copied())
            .collect();
        active.remove(&s.pid);
        let _ = write!(
            out,
            " and {} ({} on the network)",
            plural(others, "other process", "other processes"),
            active.len()
        );
    }
    let _ = writeln!(
        out,
        ", {:.2} s, exit {}",
        s.duration_ms / 1000.0,
        s.exit_code
    );

    let mut rows: Vec<Vec<String>> = Vec::new();
    for d in &s.dns {
        let answers = if d.answers.is_empty() {
            "-".to_string()
        } else {
            d.answers.join(", ")
        };
        let mut count = plural(d.count, "lookup", "lookups");
        if d.failures > 0 {
            let _ = write!(
                count,
                ", {} failed ({})",
                d.failures,
                d.error.as_deref().unwrap_or("?")
            );
        }
        rows.push(vec![
            "DNS".into(),
            format!("{} -> {}", d.name, answers),
            String::new(),
            count,
            ms(d.latency_ms_avg),
        ]);
    }
    for f in &s.flows {
        let endpoint = match (f.direction.as_str(), f.dst_port, f.src_port) {
            ("incoming", _, Some(p)) => format!("{} -> :{p}", f.dst_ip),
            (_, Some(p), _) => {
                if f.family == "IPv6" {
                    format!("[{}]:{p}", f.dst_ip)
                } else {
                    format!("{}:{p}", f.dst_ip)
                }
            }
            _ => f.dst_ip.clone(),
        };
        let target = match &f.dst_domain {
            Some(d) => format!("{d} {endpoint}"),
            None => endpoint,
        };
        let attempts = f.connections + f.failed;
        let mut conns = if f.failed == 0 {
            plural(f.connections, "conn", "conns")
        } else {
            let errors: Vec<String> = f
                .errors
                .iter()
                .map(|(e, n)| {
                    if *n > 1 {
                        format!("{e} x{n}")
                    } else {
                        e.clone()
                    }
                })
                .collect();
            format!(
                "{}/{} conn failed ({})",
                f.failed,
                attempts,
                errors.join(", ")
            )
        };
        if f.transport == "udp" && f.failed == 0 {
            conns = plural(f.connections, "socket", "sockets");
        }
        if let Some(states) = &f.states {
            let seen: Vec<&str> = states.keys().map(String::as_str).collect();
            let _ = write!(conns, ", seen in /proc ({})", seen.join(", "));
        }
        let mut row = vec![
            f.transport.to_uppercase(),
            target,
            f.direction.clone(),
            conns,
            match (f.bytes_sent, f.bytes_received) {
                (Some(sent), Some(received)) => {
                    format!("{} out   {} in", human_bytes(sent), human_bytes(received))
                }
                _ => "bytes unknown".to_string(),
            },
        ];
        if let Some(rtt) = f.rtt_us {
            row.push(format!("rtt {}", ms(rtt / 1000.0)));
        }
        rows.push(row);
    }
    for line in columns(&rows) {
        let _ = writeln!(out, "  {line}");
    }
    let t = &s.totals;
    let _ = write!(
        out,
        "  total {} out, {} in, {}",
        human_bytes(t.bytes_sent),
        human_bytes(t.bytes_received),
        plural(t.connections, "connection", "connections"),
    );
    if t.failed_connections > 0 {
        let _ = write!(out, ", {} failed", t.failed_connections);
    }
    let _ = write!(
        out,
        ", {}",
        plural(t.dns_lookups, "DNS lookup", "DNS lookups")
    );
    if t.dns_failures > 0 {
        let _ = write!(out, " ({} failed)", t.dns_failures);
    }
    let _ = write!(
        out,
        ", {}",
        plural(s.dropped_events, "event dropped", "events dropped")
    );
    if s.sockets_untracked > 0 {
        let _ = write!(
            out,
            ", {}",
            plural(s.sockets_untracked, "socket untracked", "sockets untracked")
        );
    }
    if s.records_rejected > 0 {
        let _ = write!(
            out,
            ", {}",
            plural(s.records_rejected, "record rejected", "records rejected")
        );
    }
    out.push('\n');
    if let Some(k) = &s.kernel {
        out.push_str(&crate::kernel::render_text(k));
    }
    for e in &s.export {
        let _ = write!(
            out,
            "  export {}: {} spans, {} metric points",
            e.exporter, e.spans_exported, e.metric_points_exported
        );
        let spans_lost = e.spans_dropped.saturating_add(e.spans_rejected);
        let points_lost = e
            .metric_points_dropped
            .saturating_add(e.metric_points_rejected);
        if spans_lost > 0 || points_lost > 0 {
            let _ = write!(
                out,
                ", not delivered: {spans_lost} spans, {points_lost} metric points"
            );
        }
        if e.failed_requests > 0 {
            let _ = write!(out, ", {} failed requests", e.failed_requests);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Endpoint, Outcome, SocketRecord};
    use netmon_proto::role;

    fn info() -> RunInfo {
        RunInfo {
            command: vec!["x".into()],
            pid: 1,
            exit_code: 0,
            duration_ms: 1.0,
        }
    }

    /// A tracker with `n` closed and `n` open connections to two peers, failures, and
    /// lookups of three names with failures and answers.
    fn busy_tracker(n: u32) -> Tracker {
        let mut t = Tracker::new();
        for i in 0..2 * n {
            let mut s = SocketRecord::new(10 + i % 3, Transport::Tcp, false, role::OUTGOING);
            s.remote = Some(Endpoint {
                ip: [10, 0, 0, (i % 2) as u8].into(),
                port: 443,
            });
            s.local = Some(Endpoint {
                ip: [10, 1, 0, 1].into(),
                port: 40_000 + i as u16,
            });
            s.outcome = if i % 7 == 0 {
                Outcome::Failed(111)
            } else {
                Outcome::Connected
            };
            s.bytes_sent = u64::from(i) * 10;
            s.bytes_received = u64::from(i) * 100;
            s.segs_out = i;
            s.rtt_us = (i % 5 != 0).then_some(100 + i);
            s.retransmits = Some(i % 3);
            s.close_ns = (i < n).then_some(u64::from(i) + 1);
            t.sockets.insert((i, 1), s);
            t.socket_order.push((i, 1));
        }
        for i in 0..3 * n {
            t.lookups.push(DnsLookup {
                pid: 10,
                tid: 10,
                epoch: 0,
                name: format!("n{}.example", i % 3),
                source: if i % 2 == 0 {
                    DnsSource::Getaddrinfo
                } else {
                    DnsSource::Udp
                },
                start_ns: u64::from(i % 5),
                duration_ns: u64::from(i) * 1000,
                answers: vec![[10, 0, 0, (i % 4) as u8].into()],
                rcode: (i % 4) as i32,
                error: (i % 4 == 3).then(|| format!("E{i}")),
            });
        }
        t
    }

    #[test]
    fn retiring_changes_nothing_in_the_summary() {
        let whole = build(
            &busy_tracker(50),
            &Retired::default(),
            Health::default(),
            info(),
        );
        let mut t = busy_tracker(50);
        let mut retired = Retired::default();
        // In two rounds, as a run does: some lookups and half the closed sockets, then the rest.
        for (lookups, every) in [(40, 2), (usize::MAX, 1)] {
            let gone = t.retire(
                |k, _| k.0 % every == 0,
                lookups,
                usize::MAX,
                |l| retired.lookup(l),
            );
            for s in &gone {
                retired.socket(s);
            }
        }
        assert_eq!(t.sockets.len(), 50, "open sockets stay");
        assert!(t.lookups.is_empty() && t.socket_order.is_empty());
        assert_eq!((t.lookups_pruned, t.socket_order_pruned), (150, 100));
        let parts = build(&t, &retired, Health::default(), info());
        assert_eq!(parts, whole);
        assert!(
            whole.flows.iter().any(|f| f.failed > 0) && whole.dns.iter().any(|d| d.failures > 0)
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1229), "1.2 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["DNS".to_string(), "a".into(), "x".into()],
            vec!["TCP".to_string(), "longer".into(), "y".into()],
        ];
        let lines = columns(&rows);
        assert_eq!(lines[0], "DNS   a        x");
        assert_eq!(lines[1], "TCP   longer   y");
    }
}
