//! Socket tracking: the logic behind the lifecycle and byte hooks.
//!
//! Hooks call these functions after (or, for closes, just before) the real libc call. The byte
//! path ([`sent`], [`received`]) is the hot one: an fd-table load, a few loads from the socket
//! slot's first cache line and two atomic adds. Everything else is `#[cold]`.

use crate::dns;
use crate::events::emit;
use crate::real;
use crate::shared::{self, FD_HIGH, INHERITED, UNTRACKED, fd_entry, my_pid, note_fd, region};
use crate::thread::Guard;
use core::mem::{size_of, zeroed};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use netmon_proto::ring::{monotonic_ns, realtime_ns};
use netmon_proto::{
    Addr, ConnectEvent, DatagramEvent, DnsEvent, EventHeader, SocketSlot, connect_state,
    datagram_direction, dns_source, family, kind, pack_kind, role, socket_flags, socket_state,
    transport, unpack_kind,
};

pub const DNS_PORT: u16 = 53;
/// How many slots a claim probes from one starting point.
const CLAIM_PROBES: u32 = 512;
/// How many starting points a claim tries before giving up (the table is full or nearly so).
/// A thread preempted between taking its starting point and probing comes back behind the
/// other threads' claims: the window after its old start can be all taken, while the hint has
/// moved on to free slots. A fresh start is where the free slots are.
const CLAIM_STARTS: u32 = 3;

/// Where the bytes of a call are, for the few cases that look inside (DNS datagrams).
#[derive(Clone, Copy)]
pub enum Payload {
    None,
    Buf(*const u8, usize),
    Iov(*const libc::iovec, usize),
}

/// The peer address a datagram call names (sendto's destination, recvfrom's source).
#[derive(Clone, Copy)]
pub struct Peer(pub *const libc::sockaddr, pub libc::socklen_t);

impl Peer {
    pub const NONE: Peer = Peer(core::ptr::null(), 0);

    /// # Safety
    /// The pointer must be null or valid for the length.
    unsafe fn addr(&self) -> Option<Addr> {
        // SAFETY: forwarded from the caller.
        unsafe { Addr::from_sockaddr(self.0, self.1) }
    }
}

fn errno() -> i32 {
    // SAFETY: always valid for the calling thread.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: always valid for the calling thread.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` without letting it change `errno`.
fn keep_errno<R>(f: impl FnOnce() -> R) -> R {
    let e = errno();
    let r = f();
    set_errno(e);
    r
}

/// The socket slot this process owns for `fd`, if any (the hot-path lookup).
#[inline]
fn owned_slot(fd: i32) -> Option<(u32, &'static SocketSlot)> {
    let v = fd_entry(fd)?.load(Relaxed);
    if v == 0 {
        return None;
    }
    if v & INHERITED != 0 {
        return adopt_inherited(fd, v & !INHERITED);
    }
    let idx = v - 1;
    let slot = region()?.socket(idx)?;
    if slot.pid.load(Relaxed) != my_pid() {
        return None;
    }
    Some((idx, slot))
}

/// The current invocation epoch (0 outside Lambda).
#[inline]
fn current_epoch() -> u32 {
    region().map_or(0, |r| r.header().epoch.load(Relaxed))
}

/// Starts a new epoch on `slot` if the region's epoch moved on since its last byte: the
/// counters so far become the base (see `SocketSlot::epoch`). Safe from any context.
#[inline]
fn rebase(slot: &SocketSlot, epoch: u32) {
    let old = slot.epoch.load(Relaxed);
    if old != epoch
        && slot
            .epoch
            .compare_exchange(old, epoch, Relaxed, Relaxed)
            .is_ok()
    {
        slot.base_sent.store(slot.bytes_sent.load(Relaxed), Relaxed);
        slot.base_received
            .store(slot.bytes_received.load(Relaxed), Relaxed);
    }
}

/// Claims a free socket slot and publishes it with the given identity.
fn claim_slot(
    fd: i32,
    kind_word: u32,
    flags: u32,
    remote: &Addr,
    local: &Addr,
    conn: u32,
) -> Option<(u32, &'static SocketSlot)> {
    let region = region()?;
    let h = region.header();
    if fd_entry(fd).is_none() {
        // Beyond the fd table: nothing could point at the slot, which would stay claimed for
        // ever. Counted once, here; the caller marks nothing.
        h.fds_untracked.fetch_add(1, Relaxed);
        return None;
    }
    let n = region.geometry().sockets;
    for _ in 0..CLAIM_STARTS {
        let start = h.socket_hint.fetch_add(1, Relaxed) % n;
        if let Some(claimed) = claim_from(region, start, fd, kind_word, flags, remote, local, conn)
        {
            return Some(claimed);
        }
    }
    h.sockets_untracked.fetch_add(1, Relaxed);
    None
}

/// Claims the first free slot among [`CLAIM_PROBES`] from `start`.
#[allow(
    clippy::too_many_arguments,
    reason = "the slot's identity, written in one place"
)]
fn claim_from(
    region: &'static netmon_proto::region::Region,
    start: u32,
    fd: i32,
    kind_word: u32,
    flags: u32,
    remote: &Addr,
    local: &Addr,
    conn: u32,
) -> Option<(u32, &'static SocketSlot)> {
    let h = region.header();
    let n = region.geometry().sockets;
    for k in 0..CLAIM_PROBES.min(n) {
        let idx = (start + k) % n;
        let slot = region.socket(idx)?;
        if slot.state.load(Relaxed) != socket_state::FREE {
            continue;
        }
        // Acquire: pairs with the collector's Release when it freed the slot, so our writes
        // below don't race its last reads.
        if slot
            .state
            .compare_exchange(socket_state::FREE, socket_state::CLAIMING, Acquire, Relaxed)
            .is_err()
        {
            continue;
        }
        slot.generation.fetch_add(1, Relaxed);
        slot.pid.store(my_pid(), Relaxed);
        slot.fd.store(fd, Relaxed);
        slot.kind.store(kind_word, Relaxed);
        slot.flags.store(flags, Relaxed);
        slot.connect_state.store(conn, Relaxed);
        slot.connect_errno.store(0, Relaxed);
        slot.remote.store(remote);
        slot.local.store(local);
        for c in [
            &slot.bytes_sent,
            &slot.bytes_received,
            &slot.sends,
            &slot.receives,
        ] {
            c.store(0, Relaxed);
        }
        slot.open_ns.store(realtime_ns(), Relaxed);
        slot.close_ns.store(0, Relaxed);
        for c in [
            &slot.rtt_us,
            &slot.rtt_var_us,
            &slot.total_retrans,
            &slot.tcp_state,
            &slot.segs_out,
            &slot.segs_in,
        ] {
            c.store(0, Relaxed);
        }
        slot.dns_query_ns.store(0, Relaxed);
        let epoch = h.epoch.load(Relaxed);
        slot.epoch.store(epoch, Relaxed);
        slot.open_epoch.store(epoch, Relaxed);
        slot.base_sent.store(0, Relaxed);
        slot.base_received.store(0, Relaxed);
        slot.fd_refs.store(1, Relaxed);
        h.socket_high_water.fetch_max(idx + 1, Relaxed);
        // Release: pairs with the collector's Acquire load of state; identity is visible first.
        slot.state.store(socket_state::OPEN, Release);
        return Some((idx, slot));
    }
    None
}

/// Points `fd` at `value` (0 to untrack), releasing whatever it pointed at before.
fn set_fd(g: &Guard, fd: i32, value: u32) {
    let Some(e) = fd_entry(fd) else {
        // An untracked socket is already counted in sockets_untracked.
        if value != 0
            && value != UNTRACKED
            && let Some(r) = region()
        {
            r.header().fds_untracked.fetch_add(1, Relaxed);
        }
        return;
    };
    note_fd(fd);
    let prev = e.swap(value, Relaxed);
    if prev != 0 && prev != value {
        release(g, fd, prev, true);
    }
}

/// Drops one fd reference to the socket named by fd-table value `v`; finalises the slot when it
/// was the last. `fd` must still be open (TCP_INFO is read from it) unless the caller already
/// lost it.
fn release(g: &Guard, fd: i32, v: u32, implicit: bool) {
    if v == UNTRACKED {
        return;
    }
    if v & INHERITED != 0 {
        crate::inherit::forget(v & !INHERITED);
        return;
    }
    let Some(slot) = region().and_then(|r| r.socket(v - 1)) else {
        return;
    };
    if slot.pid.load(Relaxed) != my_pid() || slot.state.load(Relaxed) != socket_state::OPEN {
        return;
    }
    if slot.fd_refs.fetch_sub(1, Relaxed) > 1 {
        return;
    }
    finalize(g, v - 1, slot, fd, implicit);
}

/// Layout of the kernel's `struct tcp_info` up to `tcpi_segs_in` (Linux 4.2+); the kernel copies
/// as much as the caller asks for and reports how much it filled.
#[repr(C)]
#[derive(Default)]
struct TcpInfo {
    state: u8,
    ca_state: u8,
    retransmits: u8,
    probes: u8,
    backoff: u8,
    options: u8,
    wscale: u8,
    flags: u8,
    u32s_a: [u32; 4], // rto ato snd_mss rcv_mss
    u32s_b: [u32; 5], // unacked sacked lost retrans fackets
    u32s_c: [u32; 4], // last_data_sent last_ack_sent last_data_recv last_ack_recv
    pmtu: u32,
    rcv_ssthresh: u32,
    rtt: u32,
    rttvar: u32,
    u32s_d: [u32; 4], // snd_ssthresh snd_cwnd advmss reordering
    rcv_rtt: u32,
    rcv_space: u32,
    total_retrans: u32,
    u64s: [u64; 4], // pacing_rate max_pacing_rate bytes_acked bytes_received
    segs_out: u32,
    segs_in: u32,
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_CLOSE: u8 = 7;

fn read_tcp_info(fd: i32) -> Option<(TcpInfo, usize)> {
    let f = real::getsockopt()?;
    let mut info = TcpInfo::default();
    let mut len = size_of::<TcpInfo>() as libc::socklen_t;
    // SAFETY: valid out-buffer and length.
    let rc = unsafe {
        f(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut TcpInfo).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((info, len as usize))
}

fn read_so_error(fd: i32) -> Option<i32> {
    let f = real::getsockopt()?;
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid out-buffer and length.
    let rc = unsafe {
        f(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn local_addr(fd: i32) -> Option<Addr> {
    let f = real::getsockname()?;
    // SAFETY: zeroed storage is a valid out-buffer.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out-buffer and length.
    if unsafe {
        f(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    // SAFETY: the kernel filled `len` bytes.
    unsafe { Addr::from_sockaddr((&ss as *const libc::sockaddr_storage).cast(), len) }
}

/// Records the final state of a socket and marks its slot closed. Called while `fd` is open.
fn finalize(g: &Guard, idx: u32, slot: &SocketSlot, fd: i32, implicit: bool) {
    keep_errno(|| {
        let (_, tp, r) = unpack_kind(slot.kind.load(Relaxed));
        if tp == transport::TCP
            && let Some((info, len)) = read_tcp_info(fd)
        {
            // A connection both sides shut down is in TCP_CLOSE by the time the program closes
            // it (a timewait socket lives on in its place); its TCP_INFO is still the
            // connection's. A connect that failed is in TCP_CLOSE too, but was never made.
            let was_connected =
                r == role::INCOMING || slot.connect_state.load(Relaxed) == connect_state::CONNECTED;
            let full = len >= size_of::<TcpInfo>();
            slot.rtt_us.store(info.rtt, Relaxed);
            slot.rtt_var_us.store(info.rttvar, Relaxed);
            slot.total_retrans.store(info.total_retrans, Relaxed);
            slot.tcp_state.store(info.state as u32, Relaxed);
            if full {
                slot.segs_out.store(info.segs_out, Relaxed);
                slot.segs_in.store(info.segs_in, Relaxed);
            }
            if slot.remote.is_set()
                && info.state != TCP_SYN_SENT
                && (info.state != TCP_CLOSE || was_connected)
                || info.state == TCP_ESTABLISHED
            {
                slot.flags.fetch_or(socket_flags::TCP_INFO, Relaxed);
            }
            if slot.connect_state.load(Relaxed) == connect_state::PENDING {
                // The program never asked how its connect ended. Reading SO_ERROR is safe
                // now: the socket is going away.
                let err = match info.state {
                    TCP_SYN_SENT => libc::ETIMEDOUT,
                    TCP_CLOSE => read_so_error(fd).filter(|e| *e != 0).unwrap_or(0),
                    _ => 0,
                };
                let ok = info.state != TCP_SYN_SENT && info.state != TCP_CLOSE;
                resolve_pending(g, idx, slot, fd, ok, err);
            }
        }
        if !slot.local.is_set()
            && slot.remote.is_set()
            && let Some(a) = local_addr(fd)
        {
            slot.local.store(&a);
        }
        if implicit {
            slot.flags.fetch_or(socket_flags::IMPLICIT_CLOSE, Relaxed);
        }
        slot.close_ns.store(realtime_ns(), Relaxed);
        // Release: pairs with the collector's Acquire load; the final values above are visible.
        slot.state.store(socket_state::CLOSED, Release);
    });
}

/// Settles a pending non-blocking connect (`err` is 0 when the reason of a failure is
/// unknown). Emits `CONNECT_RESULT`.
fn resolve_pending(g: &Guard, idx: u32, slot: &SocketSlot, fd: i32, ok: bool, err: i32) {
    let err = if ok { 0 } else { err };
    let new = if ok {
        connect_state::CONNECTED
    } else {
        connect_state::FAILED
    };
    if slot
        .connect_state
        .compare_exchange(connect_state::PENDING, new, Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    slot.connect_errno.store(err, Relaxed);
    let (_, tp, _) = unpack_kind(slot.kind.load(Relaxed));
    let mut ev = connect_event(kind::CONNECT_RESULT, idx, slot, fd, err, 0, tp);
    emit(g, &mut ev);
}

fn connect_event(
    k: u16,
    idx: u32,
    slot: &SocketSlot,
    fd: i32,
    err: i32,
    duration_ns: u64,
    tp: u8,
) -> ConnectEvent {
    ConnectEvent {
        header: EventHeader::new(k, 1, 0, 0, 0),
        socket: idx,
        socket_generation: slot.generation.load(Relaxed),
        fd,
        errno: err,
        duration_ns,
        remote: slot.remote.load(),
        local: slot.local.load(),
        transport: tp,
        _pad: [0; 7],
    }
}

fn ip_family(domain: i32) -> Option<u8> {
    match domain {
        libc::AF_INET => Some(family::IPV4),
        libc::AF_INET6 => Some(family::IPV6),
        _ => None,
    }
}

fn ip_transport(ty: i32, protocol: i32) -> Option<u8> {
    match (ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC), protocol) {
        (libc::SOCK_STREAM, 0) | (libc::SOCK_STREAM, libc::IPPROTO_TCP) => Some(transport::TCP),
        (libc::SOCK_DGRAM, 0) | (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => Some(transport::UDP),
        _ => None,
    }
}

/// After `socket()` returned `fd`.
#[cold]
pub fn on_socket(fd: i32, domain: i32, ty: i32, protocol: i32) {
    if fd < 0 {
        return;
    }
    // No vfork check here (it costs a system call): a vfork child may only exec or _exit,
    // and one that creates sockets anyway just adds a socket to our table.
    let Some(g) = Guard::enter() else { return };
    keep_errno(|| match (ip_family(domain), ip_transport(ty, protocol)) {
        (Some(fam), Some(tp)) => {
            let v = claim_slot(
                fd,
                pack_kind(fam, tp, role::UNKNOWN),
                0,
                &Addr::NONE,
                &Addr::NONE,
                connect_state::NONE,
            )
            .map_or(UNTRACKED, |(i, _)| i + 1);
            set_fd(&g, fd, v);
        }
        _ => set_fd(&g, fd, 0),
    });
}

/// After `socketpair()`: both fds are new and never IP sockets.
#[cold]
pub fn on_socketpair(fds: *const i32) {
    if fds.is_null() {
        return;
    }
    let Some(g) = Guard::enter() else { return };
    if !shared::is_owner_process() {
        return;
    }
    for i in 0..2 {
        // SAFETY: socketpair succeeded, so fds points to two ints.
        let fd = unsafe { *fds.add(i) };
        set_fd(&g, fd, 0);
    }
}

/// Asks the kernel what kind of socket `fd` is (for sockets we never saw created).
fn probe_socket(fd: i32, remote: &Addr) -> Option<u32> {
    let f = real::getsockopt()?;
    let mut ty: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid out-buffer and length.
    let rc = unsafe {
        f(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut i32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let tp = ip_transport(ty, 0)?;
    Some(pack_kind(remote.family, tp, role::UNKNOWN))
}

/// After `connect(fd, addr)` returned `rc` with `err`.
#[cold]
pub fn on_connect(
    fd: i32,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    rc: i32,
    err: i32,
    wall_ns: u64,
    start_mono: u64,
) {
    let duration = monotonic_ns().wrapping_sub(start_mono);
    let Some(g) = Guard::enter() else { return };
    // SAFETY: addr/len come from the program's connect call, which the kernel accepted or
    // rejected; from_sockaddr checks the length before reading.
    let Some(remote) = (unsafe { Addr::from_sockaddr(addr, len) }) else {
        return;
    };
    keep_errno(|| {
        let err = if rc == 0 { 0 } else { err };
        let (idx, slot) = match owned_slot(fd) {
            Some(s) => s,
            // Found no slot when it was created, or beyond the fd table: counted when it was
            // created, and stays untracked.
            None if fd_entry(fd).is_none_or(|e| e.load(Relaxed) == UNTRACKED) => return,
            None => {
                // A socket we did not see created (a raw system call, inherited across exec).
                let Some(k) = probe_socket(fd, &remote) else {
                    return;
                };
                match claim_slot(fd, k, 0, &Addr::NONE, &Addr::NONE, connect_state::NONE) {
                    Some((i, s)) => {
                        set_fd(&g, fd, i + 1);
                        (i, s)
                    }
                    None => {
                        set_fd(&g, fd, UNTRACKED);
                        return;
                    }
                }
            }
        };
        let (fam, tp, _) = unpack_kind(slot.kind.load(Relaxed));
        match err {
            // Status polls of an earlier non-blocking connect, not new attempts.
            libc::EALREADY => return,
            libc::EISCONN => {
                resolve_pending(&g, idx, slot, fd, true, 0);
                return;
            }
            _ => {}
        }
        slot.remote.store(&remote);
        slot.kind.store(pack_kind(fam, tp, role::OUTGOING), Relaxed);
        if remote.port == DNS_PORT && tp == transport::UDP {
            slot.flags.fetch_or(socket_flags::DNS, Relaxed);
        }
        if crate::platform::is_runtime_api(&remote) {
            slot.flags.fetch_or(socket_flags::PLATFORM, Relaxed);
        }
        let state = match err {
            0 => connect_state::CONNECTED,
            // Interrupted blocking connects complete asynchronously, like non-blocking ones.
            libc::EINPROGRESS | libc::EINTR => connect_state::PENDING,
            _ => connect_state::FAILED,
        };
        slot.connect_errno.store(err, Relaxed);
        slot.connect_state.store(state, Relaxed);
        // The kernel has bound the local address by now (also for a connect in progress). Read
        // it here, not at close: metrics of a live connection carry `src_ip` from its first
        // export, so a flow is one series from start to end.
        if state != connect_state::FAILED
            && let Some(a) = local_addr(fd)
        {
            slot.local.store(&a);
        }
        let mut ev = connect_event(kind::CONNECT, idx, slot, fd, err, duration, tp);
        ev.header.time_ns = wall_ns;
        emit(&g, &mut ev);
    });
}

/// After `accept`/`accept4` returned `fd` on listening socket `listener`.
#[cold]
pub fn on_accept(listener: i32, fd: i32, addr: *const libc::sockaddr, len: *const libc::socklen_t) {
    if fd < 0 {
        return;
    }
    let Some(g) = Guard::enter() else { return };
    if !shared::is_owner_process() {
        return;
    }
    keep_errno(|| {
        let mut remote = Addr::NONE;
        if !addr.is_null() && !len.is_null() {
            // SAFETY: accept filled *len bytes at addr (bounded by the caller's buffer size,
            // which from_sockaddr's length check respects only if *len was not truncated; the
            // kernel reports the full size, so clamp to sockaddr_storage).
            let l = unsafe { *len }.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
            // SAFETY: see above.
            if let Some(a) = unsafe { Addr::from_sockaddr(addr, l) } {
                remote = a;
            }
        }
        let local = local_addr(fd).unwrap_or(Addr::NONE);
        if !remote.is_set() {
            // accept(fd, NULL, NULL): ask the kernel.
            if let Some(p) = peer_addr(fd) {
                remote = p;
            }
        }
        let fam = if local.is_set() {
            local.family
        } else {
            remote.family
        };
        if fam == family::NONE {
            // Not an IP socket (AF_UNIX listener): make sure no stale entry remains.
            set_fd(&g, fd, 0);
            return;
        }
        let tp = owned_slot(listener)
            .map_or(transport::TCP, |(_, s)| unpack_kind(s.kind.load(Relaxed)).1);
        let Some((idx, slot)) = claim_slot(
            fd,
            pack_kind(fam, tp, role::INCOMING),
            0,
            &remote,
            &local,
            connect_state::CONNECTED,
        ) else {
            set_fd(&g, fd, UNTRACKED);
            return;
        };
        set_fd(&g, fd, idx + 1);
        let mut ev = connect_event(kind::ACCEPT, idx, slot, fd, 0, 0, tp);
        emit(&g, &mut ev);
    });
}

fn peer_addr(fd: i32) -> Option<Addr> {
    // SAFETY: zeroed storage is a valid out-buffer.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername is not hooked; valid out-buffer and length.
    if unsafe {
        libc::getpeername(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    // SAFETY: the kernel filled `len` bytes.
    unsafe { Addr::from_sockaddr((&ss as *const libc::sockaddr_storage).cast(), len) }
}

/// Before `close(fd)`: untracks it and, if it was the last reference, finalises its slot.
#[inline]
pub fn before_close(fd: i32) {
    let Some(e) = fd_entry(fd) else { return };
    if e.load(Relaxed) == 0 {
        return;
    }
    close_tracked(fd, false);
}

#[cold]
fn close_tracked(fd: i32, implicit: bool) {
    let Some(g) = Guard::enter() else { return };
    if !shared::is_owner_process() {
        return;
    }
    let Some(e) = fd_entry(fd) else { return };
    let v = e.swap(0, Relaxed);
    if v != 0 {
        release(&g, fd, v, implicit);
    }
}

/// Before `close_range(first, last)` / `closefrom(first)`.
#[cold]
pub fn before_close_range(first: u32, last: u32, flags: i32) {
    if flags & libc::CLOSE_RANGE_CLOEXEC as i32 != 0 {
        return; // only marks close-on-exec
    }
    let high = FD_HIGH.load(Relaxed);
    if first >= high {
        return;
    }
    let end = last.min(high.saturating_sub(1));
    for fd in first..=end {
        if fd_entry(fd as i32).is_some_and(|e| e.load(Relaxed) != 0) {
            close_tracked(fd as i32, true);
        }
    }
}

/// Before `dup2(old, new)`/`dup3`: if `new` is a tracked socket other than `old`, the call will
/// close it implicitly (Java closes sockets this way), so finalise it while it is still open.
#[cold]
pub fn before_dup2(old: i32, new: i32) {
    if old == new {
        return;
    }
    let Some(e) = fd_entry(new) else { return };
    if e.load(Relaxed) == 0 {
        return;
    }
    // Only if dup2 is going to succeed: `old` must be open.
    let Some(fcntl) = real::fcntl() else { return };
    // SAFETY: F_GETFD takes no argument and only queries.
    if unsafe { fcntl(old, libc::F_GETFD) } < 0 {
        return;
    }
    close_tracked(new, true);
}

/// After `dup`, `dup2`, `dup3` or `fcntl(F_DUPFD*)` made `new` refer to `old`'s file.
#[cold]
pub fn on_dup(old: i32, new: i32) {
    if new < 0 || old == new {
        return;
    }
    let Some(g) = Guard::enter() else { return };
    if !shared::is_owner_process() {
        return;
    }
    keep_errno(|| match owned_slot(old) {
        // A reference only from an fd the table can hold, or the slot would never close.
        Some((idx, slot)) if fd_entry(new).is_some() => {
            slot.fd_refs.fetch_add(1, Relaxed);
            set_fd(&g, new, idx + 1);
        }
        // A copy beyond the fd table: its bytes are not counted, which is counted.
        Some(_) => {
            if let Some(r) = region() {
                r.header().fds_untracked.fetch_add(1, Relaxed);
            }
        }
        // The same untracked socket: counted once already.
        None if fd_entry(old).is_some_and(|e| e.load(Relaxed) == UNTRACKED) => {
            set_fd(&g, new, UNTRACKED)
        }
        None => set_fd(&g, new, 0),
    });
}

/// After `shutdown(fd, how)` succeeded.
#[cold]
pub fn on_shutdown(fd: i32) {
    if let Some((_, slot)) = owned_slot(fd) {
        slot.flags.fetch_or(socket_flags::SHUTDOWN, Relaxed);
    }
}

/// After the program read `SO_ERROR` itself: that is how it learns a non-blocking connect's
/// outcome (libuv, Java NIO, asyncio, curl), so we learn it at the same moment.
#[cold]
pub fn on_so_error(fd: i32, value: i32) {
    let Some((idx, slot)) = owned_slot(fd) else {
        return;
    };
    if slot.connect_state.load(Relaxed) != connect_state::PENDING {
        return;
    }
    let Some(g) = Guard::enter() else { return };
    keep_errno(|| {
        if value == 0 {
            // 0 also means "still connecting" if asked too early: confirm with the TCP state.
            let (_, tp, _) = unpack_kind(slot.kind.load(Relaxed));
            if tp == transport::TCP
                && read_tcp_info(fd).is_some_and(|(i, _)| i.state == TCP_SYN_SENT)
            {
                return;
            }
        }
        resolve_pending(&g, idx, slot, fd, value == 0, value);
    });
}

/// After a send-side call moved `n > 0` bytes on `fd`.
#[inline]
pub fn sent(fd: i32, n: usize, payload: Payload, peer: Peer) {
    moved(fd, n, payload, peer, true);
}

/// After a receive-side call moved `n > 0` bytes on `fd`.
#[inline]
pub fn received(fd: i32, n: usize, payload: Payload, peer: Peer) {
    moved(fd, n, payload, peer, false);
}

/// The byte-counting hot path: one fd-table load, a few loads from the slot's first cache
/// line, two relaxed atomic adds.
#[inline(always)]
fn moved(fd: i32, n: usize, payload: Payload, peer: Peer, outgoing: bool) {
    let Some((idx, slot)) = owned_slot(fd) else {
        return;
    };
    if needs_attention(slot, &peer) {
        return bytes_cold(idx, slot, fd, n, payload, peer, outgoing);
    }
    let (bytes, calls) = if outgoing {
        (&slot.bytes_sent, &slot.sends)
    } else {
        (&slot.bytes_received, &slot.receives)
    };
    bytes.fetch_add(n as u64, Relaxed);
    calls.fetch_add(1, Relaxed);
}

/// After a byte-path call failed with `err` (a refused non-blocking connect shows up here when
/// the program never reads `SO_ERROR`).
#[inline]
pub fn io_failed(fd: i32, err: i32) {
    if err == libc::EAGAIN || err == libc::EINTR {
        return;
    }
    let Some((idx, slot)) = owned_slot(fd) else {
        return;
    };
    if slot.connect_state.load(Relaxed) == connect_state::PENDING {
        io_failed_cold(idx, slot, fd, err);
    }
}

#[cold]
fn io_failed_cold(idx: u32, slot: &SocketSlot, fd: i32, err: i32) {
    if let Some(g) = Guard::enter() {
        keep_errno(|| resolve_pending(&g, idx, slot, fd, false, err));
    }
}

#[inline]
fn needs_attention(slot: &SocketSlot, peer: &Peer) -> bool {
    slot.flags.load(Relaxed) & (socket_flags::DNS | socket_flags::PLATFORM) != 0
        || slot.epoch.load(Relaxed) != current_epoch()
        || slot.connect_state.load(Relaxed) == connect_state::PENDING
        || (!peer.0.is_null() && unpack_kind(slot.kind.load(Relaxed)).1 == transport::UDP)
}

/// Bytes that need more than counting: the first bytes of a new invocation epoch, a pending
/// connect that just proved itself, a datagram to or from a peer other than the socket's, a DNS
/// message, or the Runtime API.
#[cold]
fn bytes_cold(
    idx: u32,
    slot: &SocketSlot,
    fd: i32,
    n: usize,
    payload: Payload,
    peer: Peer,
    outgoing: bool,
) {
    rebase(slot, current_epoch());
    let (bytes, count) = if outgoing {
        (&slot.bytes_sent, &slot.sends)
    } else {
        (&slot.bytes_received, &slot.receives)
    };
    let Some(g) = Guard::enter() else {
        // Inside our own side work (a signal handler interrupted it): count, nothing more.
        bytes.fetch_add(n as u64, Relaxed);
        count.fetch_add(1, Relaxed);
        return;
    };
    keep_errno(|| {
        if slot.connect_state.load(Relaxed) == connect_state::PENDING {
            resolve_pending(&g, idx, slot, fd, true, 0);
        }
        let (fam, tp, r) = unpack_kind(slot.kind.load(Relaxed));
        let peer_addr = if tp == transport::UDP {
            // SAFETY: the pointer/length pair comes from the program's own call.
            unsafe { peer.addr() }
        } else {
            None
        };
        let mut on_slot = true;
        if let Some(p) = peer_addr {
            if !slot.remote.is_set() {
                slot.remote.store(&p);
                let new_role = if r == role::UNKNOWN {
                    if outgoing {
                        role::OUTGOING
                    } else {
                        role::INCOMING
                    }
                } else {
                    r
                };
                slot.kind.store(pack_kind(fam, tp, new_role), Relaxed);
                if p.port == DNS_PORT {
                    slot.flags.fetch_or(socket_flags::DNS, Relaxed);
                }
            } else if !slot.remote.load().same_endpoint(&p) {
                let mut ev = DatagramEvent {
                    header: EventHeader::new(kind::DATAGRAM, 1, 0, 0, 0),
                    socket: idx,
                    socket_generation: slot.generation.load(Relaxed),
                    bytes: n as u64,
                    peer: p,
                    direction: if outgoing {
                        datagram_direction::SENT
                    } else {
                        datagram_direction::RECEIVED
                    },
                    _pad: [0; 3],
                };
                // If the event is dropped, count on the slot: totals stay exact.
                on_slot = !emit(&g, &mut ev);
            }
        }
        if on_slot {
            bytes.fetch_add(n as u64, Relaxed);
            count.fetch_add(1, Relaxed);
        }
        let dns_peer = peer_addr.map_or(slot.remote.load(), |p| p);
        if tp == transport::UDP && dns_peer.port == DNS_PORT {
            dns_datagram(&g, idx, slot, payload, n, outgoing);
        }
        if slot.flags.load(Relaxed) & socket_flags::PLATFORM != 0 {
            let mut buf = [0u8; 1024];
            let len = gather(payload, n, &mut buf);
            if let Some(data) = buf.get(..len) {
                crate::platform::on_platform_data(&g, data, outgoing);
            }
        }
    });
}

/// Parses a DNS query (sent) or response (received) datagram into an event.
fn dns_datagram(g: &Guard, idx: u32, slot: &SocketSlot, payload: Payload, n: usize, query: bool) {
    let mut buf = [0u8; 512];
    let len = gather(payload, n, &mut buf);
    let Some(data) = buf.get(..len) else { return };
    let source = if query {
        dns_source::UDP_QUERY
    } else {
        dns_source::UDP_RESPONSE
    };
    let mut ev = DnsEvent::empty(source);
    let Some(m) = dns::parse_message(data, &mut ev) else {
        return;
    };
    if m.is_response == query {
        return;
    }
    let now = monotonic_ns();
    ev.query_id = m.id;
    ev.socket = idx;
    ev.socket_generation = slot.generation.load(Relaxed);
    if query {
        slot.dns_query_ns.store(now, Relaxed);
    } else {
        ev.rcode = m.rcode as i16;
        let started = slot.dns_query_ns.load(Relaxed);
        if started != 0 {
            ev.duration_ns = now.wrapping_sub(started);
            ev.header.time_ns = realtime_ns().wrapping_sub(ev.duration_ns);
        }
        dns::add_wire_answers(data, &m, &mut ev);
    }
    emit(g, &mut ev);
}

/// Copies up to `n` bytes of the payload into `out`.
fn gather(payload: Payload, n: usize, out: &mut [u8]) -> usize {
    let want = n.min(out.len());
    match payload {
        Payload::None => 0,
        Payload::Buf(p, len) => {
            let k = want.min(len);
            if p.is_null() {
                return 0;
            }
            // SAFETY: the program's buffer holds at least `len` bytes and the call reported
            // `n` valid ones; we copy min of both.
            unsafe { core::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), k) };
            k
        }
        Payload::Iov(iov, cnt) => {
            if iov.is_null() {
                return 0;
            }
            let mut done = 0;
            for i in 0..cnt.min(64) {
                if done >= want {
                    break;
                }
                // SAFETY: iov points to `cnt` iovecs from the program's call.
                let v = unsafe { &*iov.add(i) };
                if v.iov_base.is_null() {
                    continue;
                }
                let k = v.iov_len.min(want - done);
                // SAFETY: each iovec describes a readable buffer of iov_len bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        v.iov_base.cast::<u8>(),
                        out.as_mut_ptr().add(done),
                        k,
                    )
                };
                done += k;
            }
            done
        }
    }
}

/// An inherited socket used for the first time in this (forked) process: give it a slot of its
/// own, so the child's bytes are the child's.
#[cold]
fn adopt_inherited(fd: i32, snapshot: u32) -> Option<(u32, &'static SocketSlot)> {
    let g = Guard::enter()?;
    if !shared::is_owner_process() {
        return None;
    }
    let s = crate::inherit::take(snapshot)?;
    let claimed = keep_errno(|| {
        claim_slot(
            fd,
            s.kind,
            socket_flags::INHERITED | (s.flags & (socket_flags::DNS | socket_flags::PLATFORM)),
            &s.remote,
            &s.local,
            s.connect_state,
        )
    });
    if let Some(e) = fd_entry(fd) {
        e.store(claimed.map_or(UNTRACKED, |(idx, _)| idx + 1), Relaxed);
    }
    let (idx, slot) = claimed?;
    drop(g);
    Some((idx, slot))
}

/// In a fork child: every tracked fd becomes an inherited snapshot (identity copied from the
/// parent's slot, which stays the parent's).
pub fn fork_child() {
    let high = FD_HIGH.load(Relaxed) as usize;
    let Some(region) = region() else { return };
    for fd in 0..high {
        let Some(e) = fd_entry(fd as i32) else { break };
        let v = e.load(Relaxed);
        if v == 0 {
            continue;
        }
        if v & INHERITED != 0 || v == UNTRACKED {
            // Inherited by our parent and never used there: the snapshot table was copied by
            // fork, so the entry stays valid as is. An untracked socket stays untracked (it was
            // counted once, in the process that created it).
            continue;
        }
        let snap = region.socket(v - 1).and_then(|slot| {
            crate::inherit::put(crate::inherit::Snapshot {
                kind: slot.kind.load(Relaxed),
                flags: slot.flags.load(Relaxed),
                connect_state: slot.connect_state.load(Relaxed),
                remote: slot.remote.load(),
                local: slot.local.load(),
            })
        });
        e.store(snap.map_or(0, |n| INHERITED | n), Relaxed);
    }
}

/// `errno` helpers for the hooks.
pub fn current_errno() -> i32 {
    errno()
}

/// At process exit: programs often leave sockets to the kernel (Java, short scripts); record
/// their final state (TCP_INFO, close time) while the fds are still open.
pub fn finalize_all() {
    let Some(g) = Guard::enter() else { return };
    if region().is_none() || !shared::is_owner_process() {
        return;
    }
    keep_errno(|| {
        let high = FD_HIGH.load(Relaxed) as usize;
        for fd in 0..high {
            let Some(e) = fd_entry(fd as i32) else { break };
            if e.load(Relaxed) == 0 {
                continue;
            }
            let v = e.swap(0, Relaxed);
            if v != 0 {
                release(&g, fd as i32, v, true);
            }
        }
    });
}
