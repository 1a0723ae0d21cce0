//! The fixed structures of the mapping: header, ring control blocks, socket slots, addresses.

use core::mem::size_of;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

/// `b"NETMON\0\0"` as a little-endian integer; written last by the creator, so a reader that
/// sees it also sees an initialised header.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NETMON\0\0");
/// Bumped on every change to any structure in this crate or to how the region is shared
/// (3: a sealed memfd reached through `/proc/<pid>/fd/<fd>` instead of a file in a directory).
pub const ABI_VERSION: u32 = 3;
/// Size of one event slot in a ring; events take 1..=[`MAX_EVENT_SLOTS`] consecutive slots.
pub const SLOT_SIZE: usize = 128;
/// The largest event spans this many slots.
pub const MAX_EVENT_SLOTS: usize = 4;
/// Size of the header at offset 0.
pub const HEADER_SIZE: usize = 256;
/// Size of a ring control block (three cache lines: owner, producer, consumer).
pub const RING_CONTROL_SIZE: usize = 192;
/// Size of one socket slot.
pub const SOCKET_SLOT_SIZE: usize = 192;

/// Limits a reader enforces before trusting the sizes in a header.
pub const MAX_RINGS: u32 = 4096;
pub const MAX_RING_CAPACITY: u32 = 1 << 20;
pub const MAX_SOCKETS: u32 = 1 << 22;

/// Defaults used by the collector when it creates a region.
pub const DEFAULT_RINGS: u32 = 128;
pub const DEFAULT_RING_CAPACITY: u32 = 2048;
pub const DEFAULT_SOCKETS: u32 = 32768;

/// The file's first 256 bytes.
#[repr(C, align(64))]
pub struct Header {
    /// [`MAGIC`], stored with `Release` after everything else is initialised; producers load it
    /// with `Acquire` before trusting any other field.
    pub magic: AtomicU64,
    pub abi_version: u32,
    pub header_size: u32,
    pub total_size: u64,
    pub ring_count: u32,
    /// Slots per ring; a power of two.
    pub ring_capacity: u32,
    pub slot_size: u32,
    pub socket_count: u32,
    pub rings_offset: u64,
    /// Bytes from one ring control block to the next.
    pub ring_stride: u64,
    pub sockets_offset: u64,
    /// Pid of the collector that created the region (informational).
    pub collector_pid: u32,
    pub _pad0: u32,
    /// Wall-clock time of creation, ns since the Unix epoch.
    pub created_ns: u64,
    /// Events lost because every ring was taken.
    pub dropped_no_ring: AtomicU64,
    /// Sockets not tracked because every socket slot was taken.
    pub sockets_untracked: AtomicU64,
    /// Sockets not tracked because their fd number is beyond the interceptor's fd table.
    pub fds_untracked: AtomicU64,
    /// Where producers start looking for a free socket slot (a hint, any value is safe).
    pub socket_hint: AtomicU32,
    /// One past the highest socket slot index ever claimed, so the collector scans only those.
    pub socket_high_water: AtomicU32,
    /// Number of processes that attached to the region (constructor or fork).
    pub attached_processes: AtomicU64,
    /// The current invocation epoch: 0 during init, incremented by the interceptor each time
    /// the Lambda runtime receives an invocation (see [`SocketSlot::epoch`]).
    pub epoch: AtomicU32,
    /// Incremented (then futex-woken) each time the runtime finishes an invocation, so the
    /// collector can wait for it without polling.
    pub invocations_done: AtomicU32,
    pub _reserved: [u64; 13],
}

/// Ring ownership states ([`RingControl::state`]).
pub mod ring_state {
    /// Free: a producer may claim it (CAS to `OWNED`).
    pub const FREE: u32 = 0;
    /// Owned by one producer thread (`owner_pid`/`owner_tid`).
    pub const OWNED: u32 = 1;
    /// Its thread exited; the collector drains it, then sets it back to `FREE`.
    pub const RETIRED: u32 = 2;
}

/// Control block of one single-producer / single-consumer ring. Three cache lines so the
/// producer's and consumer's hot counters never share one.
#[repr(C, align(64))]
pub struct RingControl {
    pub state: AtomicU32,
    pub owner_pid: AtomicU32,
    pub owner_tid: AtomicU32,
    /// Incremented on every claim, so the collector notices a new owner.
    pub claims: AtomicU32,
    pub _pad0: [u64; 6],
    /// Total slots ever published; written only by the owner (`Release`, pairs with the
    /// collector's `Acquire` load in `reader::RingReader`).
    pub head: AtomicU64,
    /// Events the owner dropped because the ring was full.
    pub dropped: AtomicU64,
    pub _pad1: [u64; 6],
    /// Total slots ever consumed; written only by the collector (`Release`, pairs with the
    /// producer's `Acquire` load in `ring::Producer::push`).
    pub tail: AtomicU64,
    pub _pad2: [u64; 7],
}

/// Socket slot states ([`SocketSlot::state`]).
pub mod socket_state {
    /// Free: a producer may claim it (CAS to `CLAIMING`).
    pub const FREE: u32 = 0;
    /// Being filled in by its producer; readers skip it.
    pub const CLAIMING: u32 = 1;
    /// Published and open: counters move.
    pub const OPEN: u32 = 2;
    /// Closed by its owner: counters are final. The collector reads it, then frees it.
    pub const CLOSED: u32 = 3;
}

/// Transport values.
pub mod transport {
    pub const TCP: u8 = 1;
    pub const UDP: u8 = 2;
}

/// Role of a socket: who initiated the conversation.
pub mod role {
    pub const UNKNOWN: u8 = 0;
    /// We called `connect` (or sent the first datagram).
    pub const OUTGOING: u8 = 1;
    /// It came out of `accept`.
    pub const INCOMING: u8 = 2;
}

/// Outcome of the last `connect` on a socket ([`SocketSlot::connect_state`]).
pub mod connect_state {
    pub const NONE: u32 = 0;
    /// Non-blocking connect in progress (`EINPROGRESS`).
    pub const PENDING: u32 = 1;
    pub const CONNECTED: u32 = 2;
    /// Failed: `connect_errno` says why.
    pub const FAILED: u32 = 3;
}

/// Socket flags ([`SocketSlot::flags`]).
pub mod socket_flags {
    /// The slot continues a socket the process inherited across `fork`; its connection was
    /// already counted by the parent.
    pub const INHERITED: u32 = 1 << 0;
    /// The peer is a DNS server (port 53): datagrams are parsed as DNS.
    pub const DNS: u32 = 1 << 1;
    /// `shutdown` was called.
    pub const SHUTDOWN: u32 = 1 << 2;
    /// TCP_INFO fields are valid.
    pub const TCP_INFO: u32 = 1 << 3;
    /// The slot was closed by an implicit close (`dup2` onto it, `close_range`, exec).
    pub const IMPLICIT_CLOSE: u32 = 1 << 4;
    /// A connection to the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`): the platform's traffic,
    /// not the function's. Its HTTP requests and responses mark invocation boundaries.
    pub const PLATFORM: u32 = 1 << 5;
}

/// Address families as stored here (independent of the platform's `AF_*` values).
pub mod family {
    pub const NONE: u8 = 0;
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 6;
}

/// An IP address and port, plain data (used inside events).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    /// [`family`] value.
    pub family: u8,
    pub _pad: u8,
    /// Host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes, IPv6 in all 16; network byte order.
    pub bytes: [u8; 16],
}

/// An [`Addr`] that can be updated in shared memory after the slot is published.
#[repr(C)]
pub struct AtomicAddr {
    /// `family << 16 | port`.
    pub family_port: AtomicU32,
    pub _pad: u32,
    pub hi: AtomicU64,
    pub lo: AtomicU64,
}

/// Per-socket counters and identity, in shared memory.
///
/// Written by the one process that owns it (`pid`); its fields are atomics because the
/// collector reads them while they change. Identity fields are written before `state` is set to
/// `OPEN` with `Release`; the collector loads `state` with `Acquire` first.
#[repr(C, align(64))]
pub struct SocketSlot {
    // First cache line: everything the interceptor's byte-counting path touches.
    pub state: AtomicU32,
    /// Incremented on every claim: (index, generation) names one socket for its whole life.
    pub generation: AtomicU32,
    pub pid: AtomicU32,
    /// `family << 16 | transport << 8 | role`.
    pub kind: AtomicU32,
    /// [`socket_flags`] bits.
    pub flags: AtomicU32,
    pub connect_state: AtomicU32,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Number of send / receive calls that moved at least one byte (datagrams for UDP).
    pub sends: AtomicU64,
    pub receives: AtomicU64,
    /// The invocation epoch ([`Header::epoch`]) of the last byte counted. When a byte moves in
    /// a newer epoch, the owner first copies the counters to `base_*`: the bytes of the current
    /// epoch are then `bytes_* - base_*`, exactly, even on a connection kept alive across
    /// invocations.
    pub epoch: AtomicU32,
    pub _pad0: u32,
    // Second and third lines: identity and the values read at close.
    pub fd: AtomicI32,
    pub connect_errno: AtomicI32,
    pub remote: AtomicAddr,
    pub local: AtomicAddr,
    /// Wall-clock ns: socket creation (or accept) and close.
    pub open_ns: AtomicU64,
    pub close_ns: AtomicU64,
    /// From `TCP_INFO` just before close (valid when `socket_flags::TCP_INFO` is set).
    pub rtt_us: AtomicU32,
    pub rtt_var_us: AtomicU32,
    pub total_retrans: AtomicU32,
    pub tcp_state: AtomicU32,
    pub segs_out: AtomicU32,
    pub segs_in: AtomicU32,
    /// Start of the last DNS query sent on this socket (monotonic ns), for response latency.
    pub dns_query_ns: AtomicU64,
    /// Number of fds of the owner process that refer to this socket (`dup`).
    pub fd_refs: AtomicU32,
    /// The epoch the socket was created in.
    pub open_epoch: AtomicU32,
    /// Counters at the start of `epoch` (see there).
    pub base_sent: AtomicU64,
    pub base_received: AtomicU64,
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(size_of::<RingControl>() == RING_CONTROL_SIZE);
const _: () = assert!(size_of::<SocketSlot>() == SOCKET_SLOT_SIZE);
const _: () = assert!(size_of::<Addr>() == 20);
const _: () = assert!(size_of::<AtomicAddr>() == 24);

/// Packs a family, transport and role into [`SocketSlot::kind`].
pub const fn pack_kind(family: u8, transport: u8, role: u8) -> u32 {
    (family as u32) << 16 | (transport as u32) << 8 | role as u32
}

/// Unpacks [`SocketSlot::kind`] into (family, transport, role).
pub const fn unpack_kind(kind: u32) -> (u8, u8, u8) {
    ((kind >> 16) as u8, (kind >> 8) as u8, kind as u8)
}

impl AtomicAddr {
    /// Stores `addr`; fields are written with `Relaxed` ordering, publication is the caller's
    /// job (a later `Release` store that the reader pairs with).
    pub fn store(&self, addr: &Addr) {
        let (hi, lo) = addr.bytes.split_at(8);
        let mut h = [0u8; 8];
        let mut l = [0u8; 8];
        h.copy_from_slice(hi);
        l.copy_from_slice(lo);
        self.hi
            .store(u64::from_ne_bytes(h), core::sync::atomic::Ordering::Relaxed);
        self.lo
            .store(u64::from_ne_bytes(l), core::sync::atomic::Ordering::Relaxed);
        self.family_port.store(
            (addr.family as u32) << 16 | addr.port as u32,
            core::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn load(&self) -> Addr {
        use core::sync::atomic::Ordering::Relaxed;
        let fp = self.family_port.load(Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.hi.load(Relaxed).to_ne_bytes());
        bytes[8..].copy_from_slice(&self.lo.load(Relaxed).to_ne_bytes());
        Addr {
            family: (fp >> 16) as u8,
            _pad: 0,
            port: fp as u16,
            bytes,
        }
    }

    pub fn is_set(&self) -> bool {
        self.family_port.load(core::sync::atomic::Ordering::Relaxed) >> 16 != 0
    }
}

impl Addr {
    pub const NONE: Addr = Addr {
        family: family::NONE,
        _pad: 0,
        port: 0,
        bytes: [0; 16],
    };

    /// Builds an address from a `sockaddr` of `len` bytes. IPv4-mapped IPv6 addresses become
    /// IPv4. Returns `None` for non-IP families or a short buffer.
    ///
    /// # Safety
    /// `sa` must be null or point to at least `len` readable bytes.
    pub unsafe fn from_sockaddr(sa: *const libc::sockaddr, len: libc::socklen_t) -> Option<Addr> {
        if sa.is_null() {
            return None;
        }
        let len = len as usize;
        if len < size_of::<libc::sa_family_t>() {
            return None;
        }
        // SAFETY: the caller guarantees `len` readable bytes; sa_family is the first field.
        let fam = unsafe { core::ptr::read_unaligned(&(*sa).sa_family) };
        match fam as i32 {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: length checked above; read_unaligned tolerates any alignment.
                let sin = unsafe { core::ptr::read_unaligned(sa as *const libc::sockaddr_in) };
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&sin.sin_addr.s_addr.to_ne_bytes());
                Some(Addr {
                    family: family::IPV4,
                    _pad: 0,
                    port: u16::from_be(sin.sin_port),
                    bytes,
                })
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: length checked above; read_unaligned tolerates any alignment.
                let sin6 = unsafe { core::ptr::read_unaligned(sa as *const libc::sockaddr_in6) };
                Some(Addr::from_ipv6(
                    sin6.sin6_addr.s6_addr,
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => None,
        }
    }

    /// An IPv6 address, turned into IPv4 when it is IPv4-mapped (`::ffff:a.b.c.d`).
    pub fn from_ipv6(b: [u8; 16], port: u16) -> Addr {
        if b[..10] == [0; 10] && b[10] == 0xff && b[11] == 0xff {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&b[12..]);
            return Addr {
                family: family::IPV4,
                _pad: 0,
                port,
                bytes,
            };
        }
        Addr {
            family: family::IPV6,
            _pad: 0,
            port,
            bytes: b,
        }
    }

    pub fn from_ipv4(b: [u8; 4], port: u16) -> Addr {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&b);
        Addr {
            family: family::IPV4,
            _pad: 0,
            port,
            bytes,
        }
    }

    pub fn is_set(&self) -> bool {
        self.family != family::NONE
    }

    /// Same host and port (ignores padding).
    pub fn same_endpoint(&self, other: &Addr) -> bool {
        self.family == other.family && self.port == other.port && self.bytes == other.bytes
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[10, 1, 2, 3]);
        let a = Addr::from_ipv6(b, 443);
        assert_eq!(a.family, family::IPV4);
        assert_eq!(&a.bytes[..4], &[10, 1, 2, 3]);
        assert_eq!(a.port, 443);
    }

    #[test]
    fn atomic_addr_round_trips() {
        let a = Addr::from_ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            8443,
        );
        let slot = AtomicAddr {
            family_port: AtomicU32::new(0),
            _pad: 0,
            hi: AtomicU64::new(0),
            lo: AtomicU64::new(0),
        };
        assert!(!slot.is_set());
        slot.store(&a);
        assert_eq!(slot.load(), a);
        assert!(slot.is_set());
    }

    #[test]
    fn kind_packs() {
        let k = pack_kind(family::IPV6, transport::UDP, role::INCOMING);
        assert_eq!(
            unpack_kind(k),
            (family::IPV6, transport::UDP, role::INCOMING)
        );
    }
}
