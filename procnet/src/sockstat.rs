//! `/proc/net/sockstat` and `/proc/net/sockstat6`: how many sockets of each protocol the
//! network namespace has in use. Two lines of it tell whether a socket table is worth reading:
//! walking an empty `/proc/net/tcp6` still visits every bucket of the kernel's (host-wide)
//! connection hash, several milliseconds on a large host.

use crate::ParseStats;
use crate::fields::{dec_u64, lines, tokens};

/// Sockets in use per protocol; `None` when the file did not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketsInUse {
    pub tcp: Option<u64>,
    /// TCP sockets in TIME_WAIT, IPv4 and IPv6 together.
    pub tcp_time_wait: Option<u64>,
    pub udp: Option<u64>,
    pub tcp6: Option<u64>,
    pub udp6: Option<u64>,
}

/// Parses `/proc/net/sockstat` or `/proc/net/sockstat6` into `out`, setting what it finds:
/// lines like `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1` (a protocol, then name/value pairs).
pub fn parse(text: &[u8], out: &mut SocketsInUse) -> ParseStats {
    let mut stats = ParseStats::default();
    for line in lines(text) {
        let mut t = tokens(line);
        let Some(proto) = t.next() else {
            stats.skipped += 1;
            continue;
        };
        let mut ok = proto.ends_with(b":");
        let mut pairs = 0;
        let (mut inuse, mut tw) = (None, None);
        while ok {
            match (t.next(), t.next()) {
                (None, _) => break,
                (Some(name), Some(value)) => match dec_u64(value) {
                    Some(v) => {
                        pairs += 1;
                        match name {
                            b"inuse" => inuse = Some(v),
                            b"tw" => tw = Some(v),
                            _ => {}
                        }
                    }
                    None => ok = false,
                },
                (Some(_), None) => ok = false,
            }
        }
        if !ok || pairs == 0 {
            stats.skipped += 1;
            continue;
        }
        stats.parsed += 1;
        match proto {
            b"TCP:" => {
                out.tcp = inuse.or(out.tcp);
                out.tcp_time_wait = tw.or(out.tcp_time_wait);
            }
            b"UDP:" => out.udp = inuse.or(out.udp),
            b"TCP6:" => out.tcp6 = inuse.or(out.tcp6),
            b"UDP6:" => out.udp6 = inuse.or(out.udp6),
            _ => {}
        }
    }
    if stats.parsed == 0 {
        stats.unknown_format = true;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_files() {
        let mut s = SocketsInUse::default();
        parse(
            b"sockets: used 34\nTCP: inuse 5 orphan 0 tw 10002 alloc 17 mem 0\nUDP: inuse 2 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n",
            &mut s,
        );
        parse(
            b"TCP6: inuse 1\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n",
            &mut s,
        );
        assert_eq!(
            s,
            SocketsInUse {
                tcp: Some(5),
                tcp_time_wait: Some(10002),
                udp: Some(2),
                tcp6: Some(1),
                udp6: Some(0),
            }
        );
    }
}
