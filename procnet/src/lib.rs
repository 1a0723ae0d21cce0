//! Readers for the Linux `/proc` network files netmon samples: interface counters
//! (`net/dev`), socket tables (`net/{tcp,tcp6,udp,udp6}`, or the same over netlink
//! `sock_diag`), protocol counters (`net/snmp`,
//! `net/netstat`), sockets in use (`net/sockstat{,6}`), the sockets a process holds
//! (`<pid>/fd`) and its children.
//!
//! Every reader takes a root directory (`/proc`, or a fixture directory in tests) or the text
//! of one file. The text is untrusted: a malformed line is skipped and counted in
//! [`ParseStats`], never a panic. The parsers allocate nothing beyond the `Vec`s the caller
//! hands them, so a [`Sampler`] pass costs no allocation once its buffers are warm.
#![forbid(unsafe_code)]

pub mod dev;
pub mod fd;
mod fields;
#[doc(hidden)]
pub mod invariants;
pub mod process;
pub mod sampler;
pub mod snmp;
pub mod sockdiag;
pub mod sockets;
pub mod sockstat;

pub use dev::{Interface, InterfaceCounters, InterfaceName};
pub use fd::SocketFd;
pub use sampler::{ConnectionCounts, SampleHealth, Sampler, Snapshot};
pub use snmp::{ProtocolCounters, TcpCounters, UdpCounters};
pub use sockets::{Family, SocketEntry, Transport};
pub use sockstat::SocketsInUse;

/// What a parser made of its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Lines (for `snmp`: sections) read.
    pub parsed: u64,
    /// Malformed lines (sections) skipped.
    pub skipped: u64,
    /// The header was missing or not a layout the parser knows; nothing was read.
    pub unknown_format: bool,
}
