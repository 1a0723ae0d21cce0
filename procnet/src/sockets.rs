//! `/proc/net/{tcp,tcp6,udp,udp6}`: the network namespace's sockets, one line each, with
//! addresses, state and inode (the inode links a line to a process's fd).
//!
//! Hand-written rather than procfs-core's `TcpNetEntries`/`UdpNetEntries`: on an 8,001-line
//! `/proc/net/tcp` those took 2.1 ms and 24,005 allocations per read (a `String` per line and a
//! `Vec` per address), this parser 1.2 ms and none (BENCHMARKS.md, "/proc sampling"); and one
//! bad line makes them reject the whole table, where this parser skips and counts it.

use crate::ParseStats;
use crate::fields::{dec_u32, dec_u64, hex, lines, split_once_exact, tokens};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

/// The socket states the kernel prints in the `st` column (`include/net/tcp_states.h`).
/// UDP sockets use two of them: 1 (connected) and 7 (not connected).
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
    pub const BOUND_INACTIVE: u8 = 13;
    /// States are counted in arrays of this size; a larger code is a malformed line.
    pub const COUNT: usize = 16;

    /// The OpenTelemetry `network.connection.state` value for a state code.
    pub fn name(code: u8) -> &'static str {
        match code {
            ESTABLISHED => "established",
            SYN_SENT => "syn_sent",
            SYN_RECV | NEW_SYN_RECV => "syn_received",
            FIN_WAIT1 => "fin_wait_1",
            FIN_WAIT2 => "fin_wait_2",
            TIME_WAIT => "time_wait",
            CLOSE => "close",
            CLOSE_WAIT => "close_wait",
            LAST_ACK => "last_ack",
            LISTEN => "listen",
            CLOSING => "closing",
            BOUND_INACTIVE => "bound_inactive",
            _ => "unknown",
        }
    }
}

/// One line of a socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// A [`state`] code.
    pub state: u8,
    pub tx_queue: u32,
    pub rx_queue: u32,
    pub uid: u32,
    /// 0 for sockets no process holds (TIME_WAIT, request sockets).
    pub inode: u64,
}

/// The header columns every kernel since 2.6 prints, in order (IPv6 tables say
/// `remote_address`). Data lines merge `tx_queue:rx_queue` and `tr:tm->when` into one field
/// each, and may carry more columns after `inode`, which are ignored.
const HEADER: [&[u8]; 12] = [
    b"sl",
    b"local_address",
    b"rem_address",
    b"st",
    b"tx_queue",
    b"rx_queue",
    b"tr",
    b"tm->when",
    b"retrnsmt",
    b"uid",
    b"timeout",
    b"inode",
];

fn header_known(line: &[u8]) -> bool {
    let mut t = tokens(line);
    HEADER.iter().all(|want| {
        t.next().is_some_and(|got| {
            got == *want || (*want == b"rem_address" && got == b"remote_address")
        })
    })
}

/// An address as the kernel prints it: the `__be32` words of the address in host byte order
/// as `%08X`, a colon, the port as `%04X`.
fn address(s: &[u8], family: Family) -> Option<SocketAddr> {
    let (ip, port) = split_once_exact(s, b':')?;
    let port = hex(port, 4)? as u16;
    let word = |w: &[u8]| -> Option<[u8; 4]> {
        if w.len() != 8 {
            return None;
        }
        Some((hex(w, 8)? as u32).to_ne_bytes())
    };
    let ip = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        Family::V6 => {
            if ip.len() != 32 {
                return None;
            }
            let mut b = [0u8; 16];
            for (i, chunk) in ip.chunks_exact(8).enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(chunk)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    Some(SocketAddr::new(ip, port))
}

fn parse_line(line: &[u8], transport: Transport, family: Family) -> Option<SocketEntry> {
    let mut t = tokens(line);
    let sl = t.next()?;
    if sl.len() < 2 || !sl.ends_with(b":") || dec_u64(&sl[..sl.len() - 1]).is_none() {
        return None;
    }
    let local = address(t.next()?, family)?;
    let remote = address(t.next()?, family)?;
    let st = hex(t.next()?, 2)? as u8;
    if usize::from(st) >= state::COUNT {
        return None;
    }
    let (tx, rx) = split_once_exact(t.next()?, b':')?;
    let (tx_queue, rx_queue) = (hex(tx, 8)? as u32, hex(rx, 8)? as u32);
    let _timer = t.next()?;
    let _retransmits = t.next()?;
    let uid = dec_u32(t.next()?)?;
    let _timeout = t.next()?;
    let inode = dec_u64(t.next()?)?;
    Some(SocketEntry {
        transport,
        local,
        remote,
        state: st,
        tx_queue,
        rx_queue,
        uid,
        inode,
    })
}

/// Parses the text of one socket table, appending its sockets to `out`.
pub fn parse(
    text: &[u8],
    transport: Transport,
    family: Family,
    out: &mut Vec<SocketEntry>,
) -> ParseStats {
    let mut stats = ParseStats::default();
    let mut it = lines(text);
    if !it.next().is_some_and(header_known) {
        stats.unknown_format = true;
        return stats;
    }
    for line in it {
        match parse_line(line, transport, family) {
            Some(e) => {
                out.push(e);
                stats.parsed += 1;
            }
            None => stats.skipped += 1,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_line() {
        let text = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:E50D 0100007F:9B60 01 00000010:00000020 00:00000000 00000000  1000        0 453607 1 00000000754902f0 20 0 0 10 -1
";
        let mut out = Vec::new();
        let s = parse(text, Transport::Tcp, Family::V4, &mut out);
        assert_eq!((s.parsed, s.skipped), (1, 0));
        let e = out[0];
        assert_eq!(e.local, "127.0.0.1:58637".parse().unwrap());
        assert_eq!(e.remote, "127.0.0.1:39776".parse().unwrap());
        assert_eq!(
            (e.state, e.tx_queue, e.rx_queue, e.uid, e.inode),
            (1, 16, 32, 1000, 453607)
        );
    }

    #[test]
    fn ipv6_line() {
        let text = b"  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1020: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 20977 2 0000000000000000 0
";
        let mut out = Vec::new();
        let s = parse(text, Transport::Udp, Family::V6, &mut out);
        assert_eq!((s.parsed, s.skipped), (1, 0));
        assert_eq!(out[0].local, "[::1]:53".parse().unwrap());
        assert_eq!(out[0].state, state::CLOSE);
    }

    #[test]
    fn wrong_family_width_is_malformed() {
        let text = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:E50D 0100007F:9B60 01 00000000:00000000 00:00000000 00000000     0        0 1
";
        let mut out = Vec::new();
        let s = parse(text, Transport::Tcp, Family::V6, &mut out);
        assert_eq!((s.parsed, s.skipped), (0, 1));
    }
}
