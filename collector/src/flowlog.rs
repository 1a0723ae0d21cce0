//! `--flow-log FILE`: the run's traffic as AWS VPC Flow Logs records in the default (version 2)
//! format, so queries written for Flow Logs (CloudWatch Logs Insights, Athena) run unchanged on
//! one program's traffic.
//!
//! One record per socket (one 5-tuple) per direction per aggregation interval, as Flow Logs
//! write them: the outbound record (local → peer) carries the bytes sent, the inbound one
//! (peer → local) the bytes received. Fields netmon cannot know are `-`. The mapping and how it
//! differs from real Flow Logs is in the README ("Flow log").

use crate::kernel::ObservedSocket;
use crate::tracker::{Direction, Outcome, SocketRecord, Tracker, Transport};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The field names of the default format, in order; the first line of the file, as in the
/// files Flow Logs deliver to S3.
pub const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

/// The default format's version.
pub const VERSION: u8 = 2;

/// IANA protocol numbers.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The default aggregation interval (Flow Logs allow 60 s or 600 s).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    Reject,
}

/// One record. `None` fields are written as `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub interface: Option<String>,
    pub src: (Option<IpAddr>, Option<u16>),
    pub dst: (Option<IpAddr>, Option<u16>),
    pub protocol: u8,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    /// Unix seconds.
    pub start: u64,
    pub end: u64,
    pub action: Option<Action>,
}

struct Dash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Dash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = self.action.map(|a| match a {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
        });
        write!(
            f,
            "{VERSION} - {} {} {} {} {} {} {} {} {} {} {} OK",
            Dash(self.interface.as_deref()),
            Dash(self.src.0),
            Dash(self.dst.0),
            Dash(self.src.1),
            Dash(self.dst.1),
            self.protocol,
            Dash(self.packets),
            Dash(self.bytes),
            self.start,
            self.end,
            Dash(action),
        )
    }
}

/// The interface each local address belongs to (Flow Logs' `interface-id` is the ENI; netmon
/// writes the Linux interface name).
#[derive(Default)]
pub struct Interfaces(Vec<(IpAddr, String)>);

impl Interfaces {
    pub fn of_this_host() -> Self {
        let mut v = Vec::new();
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let Some(addr) = a.address else { continue };
                let ip = if let Some(v4) = addr.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    IpAddr::V6(v6.ip())
                } else {
                    continue;
                };
                v.push((ip, a.interface_name));
            }
        }
        Self(v)
    }

    fn of(&self, ip: Option<IpAddr>) -> Option<String> {
        let ip = ip?.to_canonical();
        if ip.is_loopback() {
            // All of 127.0.0.0/8 is on the loopback interface, not only 127.0.0.1.
            if let Some((_, name)) = self.0.iter().find(|(a, _)| a.is_loopback()) {
                return Some(name.clone());
            }
        }
        self.0
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, n)| n.clone())
    }
}

/// An unconnected UDP socket's traffic with one peer: pid, invocation epoch, peer, direction.
type DatagramKey = (u32, u32, IpAddr, u16, Direction);

/// What was already written for one socket.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    sent: u64,
    received: u64,
    packets_out: u64,
    packets_in: u64,
    closed: bool,
}

/// Writes the records of one run, interval by interval.
pub struct FlowLog {
    out: BufWriter<File>,
    path: PathBuf,
    interval_ns: u64,
    window_start_ns: u64,
    interfaces: Interfaces,
    sockets: HashMap<(u32, u32), Written>,
    datagrams: HashMap<DatagramKey, (u64, u64)>,
}

fn secs(ns: u64) -> u64 {
    ns / 1_000_000_000
}

impl FlowLog {
    /// Creates (truncates) `path` and writes the header line; the first interval starts at
    /// `start_ns` (Unix ns).
    pub fn create(path: &Path, interval: Duration, start_ns: u64) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{HEADER}")?;
        out.flush()?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            interval_ns: interval.as_nanos().max(1) as u64,
            window_start_ns: start_ns,
            interfaces: Interfaces::of_this_host(),
            sockets: HashMap::new(),
            datagrams: HashMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an interval has ended by `now_ns` (then [`poll`](Self::poll) writes it).
    pub fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.window_start_ns + self.interval_ns
    }

    /// Whether every record of this (closed) socket has been written, so the tracker may let
    /// go of it ([`crate::tracker::Tracker::retire`]); the log then forgets it too.
    pub fn done_with(&mut self, key: &(u32, u32), s: &SocketRecord) -> bool {
        let never_written = s.remote.is_none()
            || s.platform
            || (s.close_ns.is_some() && s.outcome == Outcome::Pending);
        let done = never_written || self.sockets.get(key).is_some_and(|w| w.closed);
        if done {
            self.sockets.remove(key);
        }
        done
    }

    /// Writes every interval that ended by `now_ns`.
    pub fn poll(
        &mut self,
        tracker: &Tracker,
        unseen: &[&ObservedSocket],
        now_ns: u64,
    ) -> io::Result<()> {
        while now_ns >= self.window_start_ns + self.interval_ns {
            let end = self.window_start_ns + self.interval_ns;
            self.write_window(tracker, unseen, end)?;
            self.window_start_ns = end;
        }
        Ok(())
    }

    /// Writes the last, partial interval (up to `now_ns`) and flushes.
    pub fn finish(
        &mut self,
        tracker: &Tracker,
        unseen: &[&ObservedSocket],
        now_ns: u64,
    ) -> io::Result<()> {
        self.poll(tracker, unseen, now_ns)?;
        self.write_window(tracker, unseen, now_ns.max(self.window_start_ns))?;
        self.out.flush()
    }

    fn write(&mut self, r: &Record) -> io::Result<()> {
        writeln!(self.out, "{r}")
    }

    fn write_window(
        &mut self,
        tracker: &Tracker,
        unseen: &[&ObservedSocket],
        end_ns: u64,
    ) -> io::Result<()> {
        let start_ns = self.window_start_ns;
        let mut records = Vec::new();
        let mut keys: Vec<&(u32, u32)> = tracker.sockets.keys().collect();
        keys.sort_by_key(|k| (tracker.sockets[*k].open_ns, **k));
        for key in keys {
            let s = &tracker.sockets[key];
            let written = self.sockets.get(key).copied();
            if let Some(w) =
                socket_records(s, written, start_ns, end_ns, &self.interfaces, &mut records)
            {
                self.sockets.insert(*key, w);
            }
        }
        let mut dkeys: Vec<_> = tracker.datagrams.keys().collect();
        dkeys.sort();
        for key in dkeys {
            let d = &tracker.datagrams[key];
            let k = (d.pid, key.1, d.peer.ip, d.peer.port, d.direction);
            let (bytes, count) = match d.direction {
                Direction::Outgoing => (d.bytes_sent, d.count),
                Direction::Incoming => (d.bytes_received, d.count),
            };
            let (wb, wc) = self.datagrams.get(&k).copied().unwrap_or_default();
            if bytes == wb && count == wc {
                continue;
            }
            let peer = (Some(d.peer.ip.to_canonical()), Some(d.peer.port));
            let (src, dst) = match d.direction {
                Direction::Outgoing => ((None, None), peer),
                Direction::Incoming => (peer, (None, None)),
            };
            records.push(Record {
                interface: None,
                src,
                dst,
                protocol: PROTO_UDP,
                packets: Some(count.saturating_sub(wc)),
                bytes: Some(bytes.saturating_sub(wb)),
                start: secs(start_ns),
                end: secs(end_ns),
                action: Some(Action::Accept),
            });
            self.datagrams.insert(k, (bytes, count));
        }
        for o in unseen {
            if o.first_seen_ns >= end_ns || o.last_seen_ns < start_ns {
                continue;
            }
            let local = o.local.ip().to_canonical();
            let remote = o.remote.ip().to_canonical();
            let base = Record {
                interface: self.interfaces.of(Some(local)),
                src: (Some(local), Some(o.local.port())),
                dst: (Some(remote), Some(o.remote.port())),
                protocol: match o.transport {
                    netmon_procnet::Transport::Tcp => PROTO_TCP,
                    netmon_procnet::Transport::Udp => PROTO_UDP,
                },
                packets: None,
                bytes: None,
                start: secs(o.first_seen_ns.max(start_ns)),
                end: secs(o.last_seen_ns.min(end_ns)),
                action: o.connected.then_some(Action::Accept),
            };
            if o.connected {
                records.push(Record {
                    src: base.dst,
                    dst: base.src,
                    ..base.clone()
                });
            }
            records.push(base);
        }
        for r in &records {
            self.write(r)?;
        }
        self.out.flush()
    }
}

/// The records of one socket for the interval `[start_ns, end_ns)`, and what has then been
/// written for it; `None` when there is nothing to write (yet).
fn socket_records(
    s: &SocketRecord,
    written: Option<Written>,
    start_ns: u64,
    end_ns: u64,
    interfaces: &Interfaces,
    out: &mut Vec<Record>,
) -> Option<Written> {
    let remote = s.remote?;
    if s.platform || s.open_ns >= end_ns {
        return None;
    }
    // A connect still in progress is written once its outcome is known.
    if s.outcome == Outcome::Pending {
        return None;
    }
    let first = written.is_none();
    let w = written.unwrap_or_default();
    if w.closed {
        return None;
    }
    let closed = s.close_ns.is_some();
    let (packets_out, packets_in) = match s.transport {
        // Segment counts come from TCP_INFO, read when the socket closes.
        Transport::Tcp => (
            s.rtt_us.is_some().then_some(u64::from(s.segs_out)),
            s.rtt_us.is_some().then_some(u64::from(s.segs_in)),
        ),
        Transport::Udp => (Some(s.sends), Some(s.receives)),
    };
    let sent = s.bytes_sent.saturating_sub(w.sent);
    let received = s.bytes_received.saturating_sub(w.received);
    let pk_out = packets_out.map(|p| p.saturating_sub(w.packets_out));
    let pk_in = packets_in.map(|p| p.saturating_sub(w.packets_in));
    let failed = matches!(s.outcome, Outcome::Failed(_));
    let connection_event = first || closed;
    let proto = match s.transport {
        Transport::Tcp => PROTO_TCP,
        Transport::Udp => PROTO_UDP,
    };
    let local = s.local.map(|l| (l.ip.to_canonical(), l.port));
    let peer = (Some(remote.ip.to_canonical()), Some(remote.port));
    let me = (local.map(|l| l.0), local.map(|l| l.1));
    let record = |src, dst, packets, bytes, action| Record {
        interface: interfaces.of(me.0),
        src,
        dst,
        protocol: proto,
        packets,
        bytes: Some(bytes),
        start: secs(s.open_ns.max(start_ns)),
        end: secs(s.close_ns.unwrap_or(end_ns).min(end_ns).max(start_ns)),
        action: Some(action),
    };
    if failed {
        if first {
            out.push(record(me, peer, pk_out, sent, Action::Reject));
        }
    } else {
        let tcp_connected = s.transport == Transport::Tcp;
        if sent > 0 || pk_out.is_some_and(|p| p > 0) || connection_event {
            out.push(record(me, peer, pk_out, sent, Action::Accept));
        }
        if received > 0 || pk_in.is_some_and(|p| p > 0) || (connection_event && tcp_connected) {
            out.push(record(peer, me, pk_in, received, Action::Accept));
        }
    }
    Some(Written {
        sent: s.bytes_sent,
        received: s.bytes_received,
        packets_out: packets_out.unwrap_or(w.packets_out),
        packets_in: packets_in.unwrap_or(w.packets_in),
        closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Endpoint, SocketRecord};
    use netmon_proto::role;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_700_000_000 * S;

    fn tcp(remote_port: u16, local_port: u16) -> SocketRecord {
        let mut s = SocketRecord::new(7, Transport::Tcp, false, role::OUTGOING);
        s.remote = Some(Endpoint {
            ip: "10.0.0.9".parse().unwrap(),
            port: remote_port,
        });
        s.local = Some(Endpoint {
            ip: "127.0.0.1".parse().unwrap(),
            port: local_port,
        });
        s.outcome = Outcome::Connected;
        s.open_ns = T0 + S / 2;
        s
    }

    fn lines(path: &Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn record_format_has_fourteen_fields_and_dashes_for_unknowns() {
        let r = Record {
            interface: None,
            src: (Some("10.0.0.5".parse().unwrap()), Some(40000)),
            dst: (Some("10.0.0.9".parse().unwrap()), None),
            protocol: PROTO_TCP,
            packets: None,
            bytes: Some(1229),
            start: 10,
            end: 12,
            action: Some(Action::Reject),
        };
        let text = r.to_string();
        assert_eq!(
            text,
            "2 - - 10.0.0.5 10.0.0.9 40000 - 6 - 1229 10 12 REJECT OK"
        );
        assert_eq!(text.split(' ').count(), HEADER.split(' ').count());
    }

    #[test]
    fn intervals_carry_deltas_per_direction_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.log");
        let mut log = FlowLog::create(&path, Duration::from_secs(10), T0).unwrap();
        let mut t = Tracker::new();
        let mut a = tcp(443, 40000);
        a.bytes_sent = 100;
        a.bytes_received = 5000;
        t.sockets.insert((0, 1), a);
        let mut refused = tcp(9, 40001);
        refused.outcome = Outcome::Failed(111);
        t.sockets.insert((1, 1), refused);
        log.poll(&t, &[], T0 + 11 * S).unwrap();
        // Second interval: more bytes, then the close with TCP_INFO segment counts.
        let a = t.sockets.get_mut(&(0, 1)).unwrap();
        a.bytes_sent = 150;
        a.bytes_received = 9000;
        a.close_ns = Some(T0 + 15 * S);
        a.rtt_us = Some(200);
        a.segs_out = 12;
        a.segs_in = 20;
        log.finish(&t, &[], T0 + 17 * S).unwrap();
        let recs = lines(&path);
        let fields = |r: &Vec<String>| {
            (
                r[3].clone(),
                r[5].clone(),
                r[6].clone(),
                r[8].clone(),
                r[9].clone(),
                r[10].clone(),
                r[11].clone(),
                r[12].clone(),
            )
        };
        let got: Vec<_> = recs.iter().map(fields).collect();
        let s = |v: &str| v.to_string();
        let t0 = T0 / S;
        assert_eq!(
            got,
            vec![
                (
                    s("127.0.0.1"),
                    s("40000"),
                    s("443"),
                    s("-"),
                    s("100"),
                    (t0).to_string(),
                    (t0 + 10).to_string(),
                    s("ACCEPT")
                ),
                (
                    s("10.0.0.9"),
                    s("443"),
                    s("40000"),
                    s("-"),
                    s("5000"),
                    (t0).to_string(),
                    (t0 + 10).to_string(),
                    s("ACCEPT")
                ),
                (
                    s("127.0.0.1"),
                    s("40001"),
                    s("9"),
                    s("-"),
                    s("0"),
                    (t0).to_string(),
                    (t0 + 10).to_string(),
                    s("REJECT")
                ),
                (
                    s("127.0.0.1"),
                    s("40000"),
                    s("443"),
                    s("12"),
                    s("50"),
                    (t0 + 10).to_string(),
                    (t0 + 15).to_string(),
                    s("ACCEPT")
                ),
                (
                    s("10.0.0.9"),
                    s("443"),
                    s("40000"),
                    s("20"),
                    s("4000"),
                    (t0 + 10).to_string(),
                    (t0 + 15).to_string(),
                    s("ACCEPT")
                ),
            ]
        );
        assert!(
            recs.iter()
                .all(|r| r.len() == 14 && r[0] == "2" && r[13] == "OK")
        );
    }

    #[test]
    fn sums_equal_the_socket_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flows.log");
        let mut log = FlowLog::create(&path, Duration::from_secs(1), T0).unwrap();
        let mut t = Tracker::new();
        for i in 0..20u16 {
            let mut s = tcp(8000 + i, 41000 + i);
            s.open_ns = T0 + u64::from(i) * S / 4;
            t.sockets.insert((u32::from(i), 1), s);
        }
        let (mut sent, mut received) = (0u64, 0u64);
        for step in 1..=12u64 {
            for (k, s) in t.sockets.iter_mut() {
                if s.open_ns <= T0 + step * S / 2 && s.close_ns.is_none() {
                    s.bytes_sent += u64::from(k.0) * 10 + step;
                    s.bytes_received += 1000 + step;
                    if (u64::from(k.0) + step).is_multiple_of(7) {
                        s.close_ns = Some(T0 + step * S / 2);
                    }
                }
            }
            log.poll(&t, &[], T0 + step * S / 2).unwrap();
        }
        for s in t.sockets.values() {
            sent += s.bytes_sent;
            received += s.bytes_received;
        }
        log.finish(&t, &[], T0 + 7 * S).unwrap();
        let recs = lines(&path);
        let sum = |outbound: bool| -> u64 {
            recs.iter()
                .filter(|r| (r[3] == "127.0.0.1") == outbound)
                .map(|r| r[9].parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!((sum(true), sum(false)), (sent, received));
        let starts: std::collections::BTreeSet<&String> = recs.iter().map(|r| &r[10]).collect();
        assert!(starts.len() >= 5, "{starts:?}");
    }
}
