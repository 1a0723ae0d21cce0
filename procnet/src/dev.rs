//! `/proc/net/dev`: byte, packet, error and drop counters per network interface.
//!
//! Hand-written rather than procfs-core's `InterfaceDeviceStatus`, which rejects the whole file
//! when one line is bad, assumes the column order, and allocates a map and a `String` per
//! interface on every read. This parser finds its columns by the header's names (so a kernel
//! that adds columns is still read correctly), skips and counts bad lines, and fills a `Vec`
//! the caller reuses, so a sampling pass allocates nothing once warm.

use crate::ParseStats;
use crate::fields::{dec_u64, lines, tokens};
use serde::{Serialize, Serializer};
use std::fmt;

/// The longest interface name Linux allows (`IFNAMSIZ` - 1).
pub const MAX_NAME: usize = 15;

/// More interfaces than any host has; lines beyond it are skipped and counted.
pub const MAX_INTERFACES: usize = 65_536;

/// An interface name, stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl InterfaceName {
    /// A valid Linux interface name: 1 to 15 bytes of UTF-8 without whitespace, `/` or `:`.
    pub fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty()
            || name.len() > MAX_NAME
            || name
                .iter()
                .any(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b':')
            || std::str::from_utf8(name).is_err()
        {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME];
        bytes[..name.len()].copy_from_slice(name);
        Some(Self {
            bytes,
            len: name.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Checked to be UTF-8 in `new`; the fallback is unreachable.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for InterfaceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The counters netmon reports for one interface (`/proc/net/dev` has more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl InterfaceCounters {
    /// What changed since `earlier`. A counter that went backwards (the interface was
    /// recreated) counts from zero.
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |now: u64, before: u64| if now >= before { now - before } else { now };
        Self {
            rx_bytes: d(self.rx_bytes, earlier.rx_bytes),
            rx_packets: d(self.rx_packets, earlier.rx_packets),
            rx_errors: d(self.rx_errors, earlier.rx_errors),
            rx_dropped: d(self.rx_dropped, earlier.rx_dropped),
            tx_bytes: d(self.tx_bytes, earlier.tx_bytes),
            tx_packets: d(self.tx_packets, earlier.tx_packets),
            tx_errors: d(self.tx_errors, earlier.tx_errors),
            tx_dropped: d(self.tx_dropped, earlier.tx_dropped),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// One line of `/proc/net/dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: InterfaceName,
    pub counters: InterfaceCounters,
}

/// Where the counters netmon wants sit in a data line, learned from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Columns {
    /// Receive columns, then transmit columns.
    total: usize,
    /// Indexes of bytes, packets, errs, drop: receive then transmit.
    wanted: [usize; 8],
}

fn group_indexes(group: &[u8]) -> Option<([usize; 4], usize)> {
    let mut idx = [usize::MAX; 4];
    let mut n = 0;
    for (i, name) in tokens(group).enumerate() {
        let slot = match name {
            b"bytes" => 0,
            b"packets" => 1,
            b"errs" => 2,
            b"drop" => 3,
            _ => {
                n = i + 1;
                continue;
            }
        };
        if idx[slot] != usize::MAX {
            return None; // the same column twice: not a layout we know
        }
        idx[slot] = i;
        n = i + 1;
    }
    idx.iter().all(|i| *i != usize::MAX).then_some((idx, n))
}

/// Reads the second header line: `face |bytes packets ...|bytes packets ...`.
fn columns(header: &[u8]) -> Option<Columns> {
    let mut groups = header.split(|b| *b == b'|');
    let face = groups.next()?;
    let rx = groups.next()?;
    let tx = groups.next()?;
    if groups.next().is_some() || !tokens(face).eq([&b"face"[..]]) {
        return None;
    }
    let (r, nr) = group_indexes(rx)?;
    let (t, nt) = group_indexes(tx)?;
    Some(Columns {
        total: nr + nt,
        wanted: [
            r[0],
            r[1],
            r[2],
            r[3],
            nr + t[0],
            nr + t[1],
            nr + t[2],
            nr + t[3],
        ],
    })
}

fn parse_line(line: &[u8], cols: &Columns) -> Option<Interface> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = InterfaceName::new(line[..colon].trim_ascii())?;
    let mut values = [0u64; 8];
    let mut n = 0;
    for (i, tok) in tokens(&line[colon + 1..]).enumerate() {
        let v = dec_u64(tok)?;
        if let Some(w) = cols.wanted.iter().position(|c| *c == i) {
            values[w] = v;
        }
        n = i + 1;
    }
    if n != cols.total {
        return None;
    }
    Some(Interface {
        name,
        counters: InterfaceCounters {
            rx_bytes: values[0],
            rx_packets: values[1],
            rx_errors: values[2],
            rx_dropped: values[3],
            tx_bytes: values[4],
            tx_packets: values[5],
            tx_errors: values[6],
            tx_dropped: values[7],
        },
    })
}

/// Parses the text of `/proc/net/dev` into `out` (cleared first).
pub fn parse(text: &[u8], out: &mut Vec<Interface>) -> ParseStats {
    out.clear();
    let mut stats = ParseStats::default();
    let mut it = lines(text);
    let (Some(_title), Some(header)) = (it.next(), it.next()) else {
        stats.unknown_format = true;
        return stats;
    };
    let Some(cols) = columns(header) else {
        stats.unknown_format = true;
        return stats;
    };
    for line in it {
        match parse_line(line, &cols) {
            Some(i) if out.len() < MAX_INTERFACES => {
                out.push(i);
                stats.parsed += 1;
            }
            _ => stats.skipped += 1,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2776770   11307    0    0    0     0          0         0  2776770   11307    0    0    0     0       0          0
  eth0: 1215645    2751    1    2    0     0          0         0  1787013    3233    3    4    0     0       0          0
";

    #[test]
    fn reads_counters_by_column_name() {
        let mut out = Vec::new();
        let s = parse(SAMPLE, &mut out);
        assert_eq!((s.parsed, s.skipped, s.unknown_format), (2, 0, false));
        assert_eq!(out[1].name.as_str(), "eth0");
        assert_eq!(
            out[1].counters,
            InterfaceCounters {
                rx_bytes: 1215645,
                rx_packets: 2751,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 1787013,
                tx_packets: 3233,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn deltas_restart_when_a_counter_goes_back() {
        let a = InterfaceCounters {
            rx_bytes: 100,
            tx_bytes: 50,
            ..Default::default()
        };
        let b = InterfaceCounters {
            rx_bytes: 160,
            tx_bytes: 20,
            ..Default::default()
        };
        let d = b.since(&a);
        assert_eq!((d.rx_bytes, d.tx_bytes), (60, 20));
    }

    #[test]
    fn names_are_validated() {
        assert!(InterfaceName::new(b"veth-netmon0").is_some());
        assert!(InterfaceName::new(b"").is_none());
        assert!(InterfaceName::new(b"sixteen-chars-xx").is_none());
        assert!(InterfaceName::new(b"a b").is_none());
        assert!(InterfaceName::new(b"\xff").is_none());
    }
}
