//! Event records carried by the rings.
//!
//! An event occupies 1..=[`MAX_EVENT_SLOTS`] consecutive ring slots; its first bytes are an
//! [`EventHeader`] whose `slots` field says how many. Every event type is plain integers, so any
//! bit pattern read back from the mapping is a valid value; the reader still checks `kind`,
//! `slots` and every length before using them.

use crate::layout::{Addr, MAX_EVENT_SLOTS, SLOT_SIZE};
use core::mem::size_of;

/// Event kinds ([`EventHeader::kind`]).
pub mod kind {
    /// [`super::ProcessEvent`]: a process attached (start, fork child, or after exec).
    pub const PROCESS: u16 = 1;
    /// [`super::DnsEvent`]: a name lookup through libc, or a DNS datagram seen on a socket.
    pub const DNS: u16 = 2;
    /// [`super::ConnectEvent`]: a `connect` call returned.
    pub const CONNECT: u16 = 3;
    /// [`super::ConnectEvent`]: the outcome of a non-blocking connect became known.
    pub const CONNECT_RESULT: u16 = 4;
    /// [`super::ConnectEvent`]: `accept` returned a new connection.
    pub const ACCEPT: u16 = 5;
    /// [`super::DatagramEvent`]: a datagram to or from a peer other than the socket's own.
    pub const DATAGRAM: u16 = 6;
    /// [`super::InvocationEvent`]: the Lambda runtime received or finished an invocation.
    pub const INVOCATION: u16 = 7;
}

/// First bytes of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    pub kind: u16,
    /// Number of ring slots the event occupies.
    pub slots: u8,
    pub flags: u8,
    pub pid: u32,
    pub tid: u32,
    /// The invocation epoch ([`crate::Header::epoch`]) when the event was recorded.
    pub epoch: u32,
    /// Wall-clock start of the call, ns since the Unix epoch.
    pub time_ns: u64,
}

/// Process flags ([`ProcessEvent`] header `flags`).
pub mod process_flags {
    /// The process is a fork child of `ppid`, attached in its `fork` handler.
    pub const FORKED: u8 = 1 << 0;
}

/// A process attached to the region.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    pub header: EventHeader,
    pub ppid: u32,
    pub exe_len: u16,
    pub _pad: u16,
    /// Short executable name (`program_invocation_short_name`), truncated to fit.
    pub exe: [u8; 96],
}

/// Which API produced a [`DnsEvent`].
pub mod dns_source {
    pub const GETADDRINFO: u8 = 1;
    pub const GETHOSTBYNAME: u8 = 2;
    pub const GETADDRINFO_A: u8 = 3;
    /// A DNS query datagram sent to port 53 by the program itself (c-ares, JNDI, ...).
    pub const UDP_QUERY: u8 = 4;
    /// A DNS response datagram received from port 53.
    pub const UDP_RESPONSE: u8 = 5;
}

/// DNS event flags (header `flags`).
pub mod dns_flags {
    /// The name did not fit and was truncated.
    pub const NAME_TRUNCATED: u8 = 1 << 0;
    /// There were more answers than fit.
    pub const ANSWERS_TRUNCATED: u8 = 1 << 1;
}

/// Maximum answers carried by one [`DnsEvent`].
pub const DNS_MAX_ANSWERS: usize = 8;
/// Maximum name length carried by one [`DnsEvent`] (a full DNS name is at most 253).
pub const DNS_MAX_NAME: usize = 256;

/// One name lookup (libc resolver) or one DNS datagram (port 53).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    pub header: EventHeader,
    /// Time from call to return (libc) or from query to response (datagrams); 0 for queries.
    pub duration_ns: u64,
    /// [`dns_source`] value.
    pub source: u8,
    pub answer_count: u8,
    pub name_len: u16,
    /// libc: the function's return value (getaddrinfo: 0 or `EAI_*`; gethostbyname*: `h_errno`
    /// or the `_r` return value). Datagrams: 0.
    pub status: i32,
    /// DNS response code when known (datagrams), else -1.
    pub rcode: i16,
    /// DNS message id (datagrams), else 0.
    pub query_id: u16,
    /// Socket slot of the datagram, or `u32::MAX`.
    pub socket: u32,
    pub socket_generation: u32,
    pub _pad: u32,
    pub answers: [Addr; DNS_MAX_ANSWERS],
    pub name: [u8; DNS_MAX_NAME],
}

/// A connection attempt (`CONNECT`), its late outcome (`CONNECT_RESULT`) or an accepted
/// connection (`ACCEPT`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// Socket slot, or `u32::MAX` when the socket is not tracked.
    pub socket: u32,
    pub socket_generation: u32,
    pub fd: i32,
    /// 0 on success, else the `errno` value (`EINPROGRESS` for a pending non-blocking connect).
    pub errno: i32,
    /// How long the call took.
    pub duration_ns: u64,
    pub remote: Addr,
    pub local: Addr,
    /// `transport` value.
    pub transport: u8,
    pub _pad: [u8; 7],
}

/// Datagram direction ([`DatagramEvent::direction`]).
pub mod datagram_direction {
    pub const SENT: u8 = 1;
    pub const RECEIVED: u8 = 2;
}

/// Bytes exchanged with a peer that is not the socket's recorded remote (unconnected UDP).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DatagramEvent {
    pub header: EventHeader,
    pub socket: u32,
    pub socket_generation: u32,
    pub bytes: u64,
    pub peer: Addr,
    pub direction: u8,
    pub _pad: [u8; 3],
}

/// What an [`InvocationEvent`] reports.
pub mod invocation_phase {
    /// The runtime received an invocation (response to `GET .../invocation/next`); the epoch in
    /// the header is the new one.
    pub const START: u8 = 1;
    /// The runtime posted the invocation's response.
    pub const RESPONSE: u8 = 2;
    /// The runtime posted an invocation error.
    pub const ERROR: u8 = 3;
}

/// Maximum request-id length carried (Lambda's are 36-character UUIDs).
pub const REQUEST_ID_MAX: usize = 64;

/// A Lambda invocation boundary, seen on the runtime's Runtime API connection.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InvocationEvent {
    pub header: EventHeader,
    /// [`invocation_phase`] value.
    pub phase: u8,
    pub request_id_len: u8,
    pub _pad: [u8; 6],
    /// `Lambda-Runtime-Deadline-Ms` for `START`, else 0.
    pub deadline_ms: u64,
    pub request_id: [u8; REQUEST_ID_MAX],
}

impl InvocationEvent {
    pub fn request_id_bytes(&self) -> &[u8] {
        let n = (self.request_id_len as usize).min(REQUEST_ID_MAX);
        &self.request_id[..n]
    }
}

const _: () = assert!(size_of::<EventHeader>() == 24);
const _: () = assert!(size_of::<InvocationEvent>() <= SLOT_SIZE);
const _: () = assert!(size_of::<ProcessEvent>() <= SLOT_SIZE);
const _: () = assert!(size_of::<ConnectEvent>() <= SLOT_SIZE);
const _: () = assert!(size_of::<DatagramEvent>() <= SLOT_SIZE);
const _: () = assert!(size_of::<DnsEvent>() <= SLOT_SIZE * MAX_EVENT_SLOTS);

/// Number of ring slots an event of type `T` occupies.
pub const fn slots_for<T>() -> usize {
    size_of::<T>().div_ceil(SLOT_SIZE)
}

/// The expected slot count for an event kind, or `None` for an unknown kind.
pub const fn slots_for_kind(k: u16) -> Option<usize> {
    match k {
        kind::PROCESS => Some(slots_for::<ProcessEvent>()),
        kind::DNS => Some(slots_for::<DnsEvent>()),
        kind::CONNECT | kind::CONNECT_RESULT | kind::ACCEPT => Some(slots_for::<ConnectEvent>()),
        kind::DATAGRAM => Some(slots_for::<DatagramEvent>()),
        kind::INVOCATION => Some(slots_for::<InvocationEvent>()),
        _ => None,
    }
}

/// Marker for event structs: `#[repr(C)]`, only integers and arrays of integers, so every bit
/// pattern is valid and they can be copied to and from byte buffers.
///
/// # Safety
/// Implementors must be `#[repr(C)]` plain-old-data without padding-dependent invariants and
/// must start with an [`EventHeader`].
pub unsafe trait Event: Copy {
    const KIND: u16;
    const SLOTS: usize;

    /// The event's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Self is plain data per the trait contract; any byte view of it is valid.
        unsafe { core::slice::from_raw_parts(self as *const Self as *const u8, size_of::<Self>()) }
    }

    /// Reads an event from a byte buffer of at least `size_of::<Self>()` bytes.
    fn read_from(buf: &[u8]) -> Option<Self> {
        if buf.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; Self is plain data for which every bit pattern is valid;
        // read_unaligned tolerates the buffer's alignment.
        Some(unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const Self) })
    }
}

// SAFETY: repr(C), integers and arrays only, first field EventHeader.
unsafe impl Event for ProcessEvent {
    const KIND: u16 = kind::PROCESS;
    const SLOTS: usize = slots_for::<ProcessEvent>();
}
// SAFETY: as above.
unsafe impl Event for DnsEvent {
    const KIND: u16 = kind::DNS;
    const SLOTS: usize = slots_for::<DnsEvent>();
}
// SAFETY: as above.
unsafe impl Event for ConnectEvent {
    const KIND: u16 = kind::CONNECT;
    const SLOTS: usize = slots_for::<ConnectEvent>();
}
// SAFETY: as above.
unsafe impl Event for InvocationEvent {
    const KIND: u16 = kind::INVOCATION;
    const SLOTS: usize = slots_for::<InvocationEvent>();
}
// SAFETY: as above.
unsafe impl Event for DatagramEvent {
    const KIND: u16 = kind::DATAGRAM;
    const SLOTS: usize = slots_for::<DatagramEvent>();
}

impl EventHeader {
    pub const fn new(kind: u16, slots: usize, pid: u32, tid: u32, time_ns: u64) -> Self {
        EventHeader {
            kind,
            slots: slots as u8,
            flags: 0,
            pid,
            tid,
            epoch: 0,
            time_ns,
        }
    }
}

impl DnsEvent {
    /// An empty event; the caller fills in the fields.
    pub const fn empty(source: u8) -> Self {
        DnsEvent {
            header: EventHeader::new(kind::DNS, slots_for::<DnsEvent>(), 0, 0, 0),
            duration_ns: 0,
            source,
            answer_count: 0,
            name_len: 0,
            status: 0,
            rcode: -1,
            query_id: 0,
            socket: u32::MAX,
            socket_generation: 0,
            _pad: 0,
            answers: [Addr::NONE; DNS_MAX_ANSWERS],
            name: [0; DNS_MAX_NAME],
        }
    }

    /// Copies `name` in, truncating (and flagging) when too long.
    pub fn set_name(&mut self, name: &[u8]) {
        let n = name.len().min(DNS_MAX_NAME);
        self.name[..n].copy_from_slice(&name[..n]);
        self.name_len = n as u16;
        if n < name.len() {
            self.header.flags |= dns_flags::NAME_TRUNCATED;
        }
    }

    /// Adds an answer unless it is already there; flags truncation when full.
    pub fn push_answer(&mut self, a: Addr) {
        let count = self.answer_count as usize;
        if self.answers[..count.min(DNS_MAX_ANSWERS)]
            .iter()
            .any(|x| x.family == a.family && x.bytes == a.bytes)
        {
            return;
        }
        if count >= DNS_MAX_ANSWERS {
            self.header.flags |= dns_flags::ANSWERS_TRUNCATED;
            return;
        }
        self.answers[count] = Addr { port: 0, ..a };
        self.answer_count += 1;
    }

    /// The name as stored (bounded by the buffer whatever `name_len` says).
    pub fn name_bytes(&self) -> &[u8] {
        let n = (self.name_len as usize).min(DNS_MAX_NAME);
        &self.name[..n]
    }

    /// The answers as stored (bounded by the array whatever `answer_count` says).
    pub fn answer_slice(&self) -> &[Addr] {
        let n = (self.answer_count as usize).min(DNS_MAX_ANSWERS);
        &self.answers[..n]
    }
}

impl ProcessEvent {
    pub fn exe_bytes(&self) -> &[u8] {
        let n = (self.exe_len as usize).min(self.exe.len());
        &self.exe[..n]
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts() {
        assert_eq!(ConnectEvent::SLOTS, 1);
        assert_eq!(ProcessEvent::SLOTS, 1);
        assert_eq!(DatagramEvent::SLOTS, 1);
        const { assert!(DnsEvent::SLOTS <= MAX_EVENT_SLOTS) };
        assert_eq!(slots_for_kind(kind::DNS), Some(DnsEvent::SLOTS));
        assert_eq!(slots_for_kind(99), None);
    }

    #[test]
    fn dns_answers_dedupe_and_truncate() {
        let mut e = DnsEvent::empty(dns_source::GETADDRINFO);
        for i in 0..20u8 {
            e.push_answer(Addr::from_ipv4([10, 0, 0, i], 80));
            e.push_answer(Addr::from_ipv4([10, 0, 0, i], 443));
        }
        assert_eq!(e.answer_slice().len(), DNS_MAX_ANSWERS);
        assert_eq!(e.answer_slice()[0].port, 0);
        assert!(e.header.flags & dns_flags::ANSWERS_TRUNCATED != 0);
    }

    #[test]
    fn event_round_trips_through_bytes() {
        let mut e = DnsEvent::empty(dns_source::GETHOSTBYNAME);
        e.set_name(b"api.example.com");
        let back = DnsEvent::read_from(e.as_bytes()).unwrap();
        assert_eq!(back.name_bytes(), b"api.example.com");
        assert!(DnsEvent::read_from(&e.as_bytes()[..10]).is_none());
    }
}
