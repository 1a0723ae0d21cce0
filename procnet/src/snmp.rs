//! `/proc/net/snmp`, `/proc/net/netstat` and `/proc/net/snmp6`: the network namespace's
//! protocol counters. The first two are pairs of lines, `Prefix: Name1 Name2 ...` then
//! `Prefix: value1 value2 ...`; `snmp6` is one `Name value` per line.
//!
//! Hand-written rather than procfs-core's `Snmp`, which needs every one of ~90 fields to be
//! present (a kernel without `Udp:IgnoredMulti` fails the whole read), builds a map of
//! `String`s on every read, and has no reader for `/proc/net/netstat`. This one picks out the
//! counters netmon reports by name, leaves a missing one `None`, skips and counts a malformed
//! section, and allocates nothing.

use crate::ParseStats;
use crate::fields::{dec_u64, lines, tokens};
use serde::Serialize;

/// TCP counters of the network namespace (cumulative since boot, or a delta).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpCounters {
    /// Connections opened by this side (SYN sent): `Tcp:ActiveOpens`.
    pub active_opens: Option<u64>,
    /// Connections accepted (SYN received): `Tcp:PassiveOpens`.
    pub passive_opens: Option<u64>,
    /// Connection attempts that failed: `Tcp:AttemptFails`.
    pub attempt_fails: Option<u64>,
    /// Established connections reset: `Tcp:EstabResets`.
    pub estab_resets: Option<u64>,
    /// Segments received and sent: `Tcp:InSegs`, `Tcp:OutSegs`.
    pub in_segs: Option<u64>,
    pub out_segs: Option<u64>,
    /// Segments retransmitted: `Tcp:RetransSegs`.
    pub retrans_segs: Option<u64>,
    /// Segments received in error: `Tcp:InErrs`.
    pub in_errs: Option<u64>,
    /// Resets sent: `Tcp:OutRsts`.
    pub out_rsts: Option<u64>,
    /// Times a listen queue overflowed, and SYNs dropped at a listener:
    /// `TcpExt:ListenOverflows`, `TcpExt:ListenDrops` (from `/proc/net/netstat`).
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
}

/// UDP counters of the network namespace for one IP version: IPv4 in `/proc/net/snmp`
/// (`Udp:`), IPv6 in `/proc/net/snmp6` (`Udp6*`). TCP counters cover both versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UdpCounters {
    pub in_datagrams: Option<u64>,
    pub out_datagrams: Option<u64>,
    /// Datagrams to a port nobody listened on.
    pub no_ports: Option<u64>,
    pub in_errors: Option<u64>,
    pub rcvbuf_errors: Option<u64>,
    pub sndbuf_errors: Option<u64>,
}

/// The counters of `/proc/net/snmp` and `/proc/net/netstat` netmon reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProtocolCounters {
    pub tcp: TcpCounters,
    pub udp: UdpCounters,
    pub udp6: UdpCounters,
}

type Field = fn(&mut ProtocolCounters) -> &mut Option<u64>;

/// `(prefix, name, field)` of every counter read.
const FIELDS: [(&[u8], &[u8], Field); 17] = [
    (b"Tcp:", b"ActiveOpens", |c| &mut c.tcp.active_opens),
    (b"Tcp:", b"PassiveOpens", |c| &mut c.tcp.passive_opens),
    (b"Tcp:", b"AttemptFails", |c| &mut c.tcp.attempt_fails),
    (b"Tcp:", b"EstabResets", |c| &mut c.tcp.estab_resets),
    (b"Tcp:", b"InSegs", |c| &mut c.tcp.in_segs),
    (b"Tcp:", b"OutSegs", |c| &mut c.tcp.out_segs),
    (b"Tcp:", b"RetransSegs", |c| &mut c.tcp.retrans_segs),
    (b"Tcp:", b"InErrs", |c| &mut c.tcp.in_errs),
    (b"Tcp:", b"OutRsts", |c| &mut c.tcp.out_rsts),
    (b"TcpExt:", b"ListenOverflows", |c| {
        &mut c.tcp.listen_overflows
    }),
    (b"TcpExt:", b"ListenDrops", |c| &mut c.tcp.listen_drops),
    (b"Udp:", b"InDatagrams", |c| &mut c.udp.in_datagrams),
    (b"Udp:", b"OutDatagrams", |c| &mut c.udp.out_datagrams),
    (b"Udp:", b"NoPorts", |c| &mut c.udp.no_ports),
    (b"Udp:", b"InErrors", |c| &mut c.udp.in_errors),
    (b"Udp:", b"RcvbufErrors", |c| &mut c.udp.rcvbuf_errors),
    (b"Udp:", b"SndbufErrors", |c| &mut c.udp.sndbuf_errors),
];

fn field(prefix: &[u8], name: &[u8]) -> Option<Field> {
    FIELDS
        .iter()
        .find(|(p, n, _)| *p == prefix && *n == name)
        .map(|(_, _, f)| *f)
}

/// Reads one `names`/`values` pair; `false` if it is malformed (then nothing of it is kept).
fn section(names: &[u8], values: &[u8], out: &mut ProtocolCounters) -> bool {
    let mut n = tokens(names);
    let mut v = tokens(values);
    let (Some(prefix), Some(vprefix)) = (n.next(), v.next()) else {
        return false;
    };
    if prefix != vprefix || !prefix.ends_with(b":") {
        return false;
    }
    // Check the shape first, so a malformed section changes nothing.
    if n.clone().count() != v.clone().count() {
        return false;
    }
    let mut found: [Option<(Field, u64)>; FIELDS.len()] = [None; FIELDS.len()];
    let mut k = 0;
    for (name, value) in n.zip(v) {
        if let Some(f) = field(prefix, name) {
            let Some(x) = dec_u64(value) else {
                return false;
            };
            if k < found.len() {
                found[k] = Some((f, x));
                k += 1;
            }
        }
    }
    for (f, x) in found.into_iter().flatten() {
        *f(out) = Some(x);
    }
    true
}

/// Parses the text of `/proc/net/snmp` or `/proc/net/netstat` into `out`, setting the
/// counters it finds and leaving the others as they were (so both files fill one struct).
/// Counts sections (line pairs), not lines.
pub fn parse(text: &[u8], out: &mut ProtocolCounters) -> ParseStats {
    let mut stats = ParseStats::default();
    let mut it = lines(text).peekable();
    while let Some(names) = it.next() {
        let prefix = tokens(names).next();
        // A values line must follow with the same prefix; if the next line starts another
        // section, this one lost its values: skip it alone and resynchronise.
        let values = match it.peek() {
            Some(next) if tokens(next).next() == prefix => it.next(),
            _ => None,
        };
        match values {
            Some(values) if section(names, values, out) => stats.parsed += 1,
            _ => stats.skipped += 1,
        }
    }
    if stats.parsed == 0 {
        stats.unknown_format = true;
    }
    stats
}

type Udp6Field = fn(&mut UdpCounters) -> &mut Option<u64>;

/// The `/proc/net/snmp6` counters read, by name.
const UDP6_FIELDS: [(&[u8], Udp6Field); 6] = [
    (b"Udp6InDatagrams", |c| &mut c.in_datagrams),
    (b"Udp6OutDatagrams", |c| &mut c.out_datagrams),
    (b"Udp6NoPorts", |c| &mut c.no_ports),
    (b"Udp6InErrors", |c| &mut c.in_errors),
    (b"Udp6RcvbufErrors", |c| &mut c.rcvbuf_errors),
    (b"Udp6SndbufErrors", |c| &mut c.sndbuf_errors),
];

/// Parses the text of `/proc/net/snmp6` (`Name value` lines, IPv6 and ICMPv6 and UDPv6
/// counters) into `out`, setting the UDP counters it finds. A line that is not a name and a
/// decimal value is skipped and counted.
pub fn parse_snmp6(text: &[u8], out: &mut UdpCounters) -> ParseStats {
    let mut stats = ParseStats::default();
    for line in lines(text) {
        let mut t = tokens(line);
        let (Some(name), Some(value), None) = (t.next(), t.next(), t.next()) else {
            stats.skipped += 1;
            continue;
        };
        let Some(value) = dec_u64(value) else {
            stats.skipped += 1;
            continue;
        };
        stats.parsed += 1;
        if let Some((_, f)) = UDP6_FIELDS.iter().find(|(n, _)| *n == name) {
            *f(out) = Some(value);
        }
    }
    if stats.parsed == 0 {
        stats.unknown_format = true;
    }
    stats
}

impl TcpCounters {
    /// What changed since `earlier`; `None` where either side is unknown.
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        Self {
            active_opens: d(self.active_opens, earlier.active_opens),
            passive_opens: d(self.passive_opens, earlier.passive_opens),
            attempt_fails: d(self.attempt_fails, earlier.attempt_fails),
            estab_resets: d(self.estab_resets, earlier.estab_resets),
            in_segs: d(self.in_segs, earlier.in_segs),
            out_segs: d(self.out_segs, earlier.out_segs),
            retrans_segs: d(self.retrans_segs, earlier.retrans_segs),
            in_errs: d(self.in_errs, earlier.in_errs),
            out_rsts: d(self.out_rsts, earlier.out_rsts),
            listen_overflows: d(self.listen_overflows, earlier.listen_overflows),
            listen_drops: d(self.listen_drops, earlier.listen_drops),
        }
    }
}

impl UdpCounters {
    /// What changed since `earlier`; `None` where either side is unknown.
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        Self {
            in_datagrams: d(self.in_datagrams, earlier.in_datagrams),
            out_datagrams: d(self.out_datagrams, earlier.out_datagrams),
            no_ports: d(self.no_ports, earlier.no_ports),
            in_errors: d(self.in_errors, earlier.in_errors),
            rcvbuf_errors: d(self.rcvbuf_errors, earlier.rcvbuf_errors),
            sndbuf_errors: d(self.sndbuf_errors, earlier.sndbuf_errors),
        }
    }
}

impl ProtocolCounters {
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            tcp: self.tcp.since(&earlier.tcp),
            udp: self.udp.since(&earlier.udp),
            udp6: self.udp6.since(&earlier.udp6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_counters_by_name() {
        let text = b"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 177068 176890 81 4704 0 2903946 2902899 466 0 4954 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 539 41 0 581 0 0 0 0 0
";
        let mut c = ProtocolCounters::default();
        let s = parse(text, &mut c);
        assert_eq!((s.parsed, s.skipped), (2, 0));
        assert_eq!(c.tcp.active_opens, Some(177068));
        assert_eq!(c.tcp.retrans_segs, Some(466));
        assert_eq!(c.tcp.listen_drops, None);
        assert_eq!(c.udp.no_ports, Some(41));
        let netstat = b"TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\n";
        parse(netstat, &mut c);
        assert_eq!(
            (c.tcp.listen_overflows, c.tcp.listen_drops),
            (Some(7), Some(9))
        );
        assert_eq!(c.tcp.active_opens, Some(177068));
    }

    #[test]
    fn snmp6_udp_counters() {
        let text = b"Ip6InReceives                   \t1317
Udp6InDatagrams                 \t634
Udp6NoPorts                     \t2
Udp6InErrors                    \t0
Udp6OutDatagrams                \t636
Udp6RcvbufErrors                \t1
Udp6SndbufErrors                \t0
Udp6IgnoredMulti                \t0
garbage line here
Udp6InCsumErrors x
";
        let mut u = UdpCounters::default();
        let s = parse_snmp6(text, &mut u);
        assert_eq!((s.parsed, s.skipped, s.unknown_format), (8, 2, false));
        assert_eq!(
            (u.in_datagrams, u.out_datagrams, u.no_ports, u.rcvbuf_errors),
            (Some(634), Some(636), Some(2), Some(1))
        );
        let mut u = UdpCounters::default();
        assert!(parse_snmp6(b"", &mut u).unknown_format);
        assert_eq!(u, UdpCounters::default());
    }

    #[test]
    fn a_section_without_values_is_skipped_alone() {
        let text = b"Tcp: ActiveOpens\nUdp: NoPorts\nUdp: 3\n";
        let mut c = ProtocolCounters::default();
        let s = parse(text, &mut c);
        assert_eq!((s.parsed, s.skipped), (1, 1));
        assert_eq!(c.udp.no_ports, Some(3));
        assert_eq!(c.tcp.active_opens, None);
    }
}
