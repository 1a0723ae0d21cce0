//! The exported libc hooks — the only `extern "C"` functions of the library.
//!
//! Every hook has the same shape: look up the real function, call it exactly once, remember its
//! result and `errno`, hand what it learned to [`crate::sockets`] or [`crate::dns`] (which never
//! change `errno`), return the real result. If the real function cannot be found, the hook fails
//! the call with `ENOSYS` rather than crash.
//!
//! # Safety
//! Each hook has the contract of the libc function it replaces: the caller passes the pointers
//! and lengths that function requires. The hooks only read what the real call has validated.

use crate::arch::{SYS_CLOSE, SYS_CLOSE_RANGE, VarArg};
use crate::dns::{self, Gaicb};
use crate::events::emit;
use crate::real;
use crate::sockets::{self, Payload, Peer, current_errno};
use crate::thread::Guard;
use core::ffi::{c_char, c_int, c_long, c_uint, c_void};
use libc::{
    addrinfo, hostent, iovec, mmsghdr, msghdr, off_t, size_t, sockaddr, socklen_t, ssize_t,
    timespec,
};
use netmon_proto::ring::{monotonic_ns, realtime_ns};
use netmon_proto::{DnsEvent, dns_source};

fn enosys<T: From<i8>>() -> T {
    // SAFETY: errno is always writable for the calling thread.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    T::from(-1)
}

#[inline]
fn count_sent(fd: c_int, n: ssize_t, payload: Payload, peer: Peer) {
    if n > 0 {
        sockets::sent(fd, n as usize, payload, peer);
    } else if n < 0 {
        sockets::io_failed(fd, current_errno());
    }
}

#[inline]
fn count_received(fd: c_int, n: ssize_t, payload: Payload, peer: Peer) {
    if n > 0 {
        sockets::received(fd, n as usize, payload, peer);
    } else if n < 0 {
        sockets::io_failed(fd, current_errno());
    }
}

/// The peer a `recvfrom`-style call filled in (its length is the kernel's, capped to the
/// caller's buffer which we cannot know: cap at sockaddr_storage).
fn filled_peer(addr: *const sockaddr, len: *const socklen_t) -> Peer {
    if addr.is_null() || len.is_null() {
        return Peer::NONE;
    }
    // SAFETY: the real call succeeded and wrote *len.
    let l = unsafe { *len }.min(size_of::<libc::sockaddr_storage>() as socklen_t);
    Peer(addr, l)
}

fn msg_peer(m: *const msghdr) -> Peer {
    if m.is_null() {
        return Peer::NONE;
    }
    // SAFETY: m is the program's msghdr, valid for the call.
    let m = unsafe { &*m };
    Peer(m.msg_name as *const sockaddr, m.msg_namelen)
}

fn msg_payload(m: *const msghdr) -> Payload {
    if m.is_null() {
        return Payload::None;
    }
    // SAFETY: m is the program's msghdr, valid for the call.
    let m = unsafe { &*m };
    Payload::Iov(m.msg_iov, m.msg_iovlen)
}

// ---- sockets: lifecycle -------------------------------------------------------------------

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let Some(f) = real::socket() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let fd = unsafe { f(domain, ty, protocol) };
    sockets::on_socket(fd, domain, ty, protocol);
    fd
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    let Some(f) = real::socketpair() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(domain, ty, protocol, sv) };
    if rc == 0 {
        sockets::on_socketpair(sv);
    }
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(f) = real::connect() else {
        return enosys();
    };
    let wall = realtime_ns();
    let start = monotonic_ns();
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(fd, addr, len) };
    let err = current_errno();
    sockets::on_connect(fd, addr, len, rc, err, wall, start);
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let Some(f) = real::accept() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let new = unsafe { f(fd, addr, len) };
    sockets::on_accept(fd, new, addr, len);
    new
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let Some(f) = real::accept4() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let new = unsafe { f(fd, addr, len, flags) };
    sockets::on_accept(fd, new, addr, len);
    new
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let Some(f) = real::close() else {
        return enosys();
    };
    sockets::before_close(fd);
    // SAFETY: forwarding the caller's argument.
    unsafe { f(fd) }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    let Some(f) = real::shutdown() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(fd, how) };
    if rc == 0 {
        sockets::on_shutdown(fd);
    }
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let Some(f) = real::close_range() else {
        return enosys();
    };
    sockets::before_close_range(first, last, flags);
    // SAFETY: forwarding the caller's arguments.
    unsafe { f(first, last, flags) }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(first: c_int) {
    let Some(f) = real::closefrom() else { return };
    if first >= 0 {
        sockets::before_close_range(first as u32, u32::MAX, 0);
    }
    // SAFETY: forwarding the caller's argument.
    unsafe { f(first) }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(old: c_int) -> c_int {
    let Some(f) = real::dup() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's argument.
    let new = unsafe { f(old) };
    sockets::on_dup(old, new);
    new
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let Some(f) = real::dup2() else {
        return enosys();
    };
    sockets::before_dup2(old, new);
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(old, new) };
    sockets::on_dup(old, rc);
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let Some(f) = real::dup3() else {
        return enosys();
    };
    sockets::before_dup2(old, new);
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(old, new, flags) };
    sockets::on_dup(old, rc);
    rc
}

fn fcntl_common(f: real::VariadicFcntl, fd: c_int, cmd: c_int, arg: VarArg) -> c_int {
    // SAFETY: forwarding the caller's arguments; the third is passed on as the word it was.
    let rc = unsafe { f(fd, cmd, arg) };
    if (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && rc >= 0 {
        sockets::on_dup(fd, rc);
    }
    rc
}

/// `fcntl(int, int, ...)`; see [`crate::arch`] for how the variadic argument is received.
///
/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: VarArg) -> c_int {
    let Some(f) = real::fcntl() else {
        return enosys();
    };
    fcntl_common(f, fd, cmd, arg)
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: VarArg) -> c_int {
    let Some(f) = real::fcntl64().or_else(real::fcntl) else {
        return enosys();
    };
    fcntl_common(f, fd, cmd, arg)
}

/// The part of the `syscall` hook written in Rust: reached (from the assembly entry in
/// [`crate::arch`]) only for `SYS_close` and `SYS_close_range` — Node's libuv closes sockets
/// with `syscall(SYS_close, fd)` — or before the real `syscall` is resolved.
///
/// # Safety
/// The caller passes what `syscall` takes.
pub(crate) unsafe extern "C" fn syscall_tracked(
    n: c_long,
    a1: VarArg,
    a2: VarArg,
    a3: VarArg,
    a4: VarArg,
    a5: VarArg,
    a6: VarArg,
) -> c_long {
    let Some(f) = real::syscall() else {
        return enosys();
    };
    match n {
        SYS_CLOSE => sockets::before_close(a1 as c_int),
        SYS_CLOSE_RANGE => sockets::before_close_range(a1 as u32, a2 as u32, a3 as c_int),
        _ => {}
    }
    // SAFETY: forwarding all six argument words; the kernel reads only the ones it needs.
    unsafe { f(n, a1, a2, a3, a4, a5, a6) }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    let Some(f) = real::getsockopt() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(fd, level, name, val, len) };
    if rc == 0 && level == libc::SOL_SOCKET && name == libc::SO_ERROR && !val.is_null() {
        // SAFETY: the call succeeded, so val holds an int.
        let v = unsafe { core::ptr::read_unaligned(val as *const c_int) };
        sockets::on_so_error(fd, v);
    }
    rc
}

// ---- sockets: bytes ------------------------------------------------------------------------

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    let Some(f) = real::send() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, flags) };
    count_sent(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    let Some(f) = real::sendto() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, flags, addr, alen) };
    count_sent(fd, n, Payload::Buf(buf.cast(), len), Peer(addr, alen));
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    let Some(f) = real::sendmsg() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, msg, flags) };
    count_sent(fd, n, msg_payload(msg), msg_peer(msg));
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    let Some(f) = real::sendmmsg() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, msgs, vlen, flags) };
    if n < 0 {
        sockets::io_failed(fd, current_errno());
    }
    for i in 0..n.max(0) as usize {
        // SAFETY: the kernel processed n <= vlen messages of the caller's array.
        let m = unsafe { &*msgs.add(i) };
        count_sent(
            fd,
            m.msg_len as ssize_t,
            msg_payload(&m.msg_hdr),
            msg_peer(&m.msg_hdr),
        );
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    let Some(f) = real::recv() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, flags) };
    if flags & libc::MSG_PEEK == 0 {
        count_received(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let Some(f) = real::recvfrom() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, flags, addr, alen) };
    if flags & libc::MSG_PEEK == 0 {
        let peer = if n >= 0 {
            filled_peer(addr, alen)
        } else {
            Peer::NONE
        };
        count_received(fd, n, Payload::Buf(buf.cast(), len), peer);
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let Some(f) = real::recvmsg() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, msg, flags) };
    if flags & libc::MSG_PEEK == 0 {
        count_received(fd, n, msg_payload(msg), msg_peer(msg));
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    let Some(f) = real::recvmmsg() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, msgs, vlen, flags, timeout) };
    if n < 0 {
        sockets::io_failed(fd, current_errno());
    }
    if flags & libc::MSG_PEEK == 0 {
        for i in 0..n.max(0) as usize {
            // SAFETY: the kernel filled n <= vlen messages of the caller's array.
            let m = unsafe { &*msgs.add(i) };
            count_received(
                fd,
                m.msg_len as ssize_t,
                msg_payload(&m.msg_hdr),
                msg_peer(&m.msg_hdr),
            );
        }
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    let Some(f) = real::read() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len) };
    count_received(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    let Some(f) = real::write() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len) };
    count_sent(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    let Some(f) = real::readv() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, iov, cnt) };
    count_received(fd, n, Payload::Iov(iov, cnt.max(0) as usize), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    let Some(f) = real::writev() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, iov, cnt) };
    count_sent(fd, n, Payload::Iov(iov, cnt.max(0) as usize), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile(
    out: c_int,
    input: c_int,
    off: *mut off_t,
    count: size_t,
) -> ssize_t {
    let Some(f) = real::sendfile() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(out, input, off, count) };
    count_sent(out, n, Payload::None, Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendfile64(
    out: c_int,
    input: c_int,
    off: *mut libc::off64_t,
    count: size_t,
) -> ssize_t {
    let Some(f) = real::sendfile64() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(out, input, off, count) };
    count_sent(out, n, Payload::None, Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn splice(
    fd_in: c_int,
    off_in: *mut libc::loff_t,
    fd_out: c_int,
    off_out: *mut libc::loff_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let Some(f) = real::splice() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd_in, off_in, fd_out, off_out, len, flags) };
    if n > 0 {
        sockets::received(fd_in, n as usize, Payload::None, Peer::NONE);
        sockets::sent(fd_out, n as usize, Payload::None, Peer::NONE);
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
) -> ssize_t {
    let Some(f) = real::__read_chk() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, buflen) };
    count_received(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    let Some(f) = real::__recv_chk() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, buflen, flags) };
    if flags & libc::MSG_PEEK == 0 {
        count_received(fd, n, Payload::Buf(buf.cast(), len), Peer::NONE);
    }
    n
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    let Some(f) = real::__recvfrom_chk() else {
        return enosys();
    };
    // SAFETY: forwarding the caller's arguments.
    let n = unsafe { f(fd, buf, len, buflen, flags, addr, alen) };
    if flags & libc::MSG_PEEK == 0 {
        let peer = if n >= 0 {
            filled_peer(addr, alen)
        } else {
            Peer::NONE
        };
        count_received(fd, n, Payload::Buf(buf.cast(), len), peer);
    }
    n
}

// ---- name resolution -----------------------------------------------------------------------

/// Records one libc lookup of `name` that started at `wall`/`start`.
fn record_lookup(
    g: &Guard,
    source: u8,
    name: &[u8],
    status: c_int,
    wall: u64,
    start: u64,
    fill: impl FnOnce(&mut DnsEvent),
) {
    let mut ev = DnsEvent::empty(source);
    ev.header.time_ns = wall;
    ev.duration_ns = monotonic_ns().wrapping_sub(start);
    ev.status = status;
    ev.set_name(name);
    fill(&mut ev);
    emit(g, &mut ev);
}

/// True when `name` needs no lookup (null, empty or an IP literal).
fn no_lookup(name: &[u8]) -> bool {
    name.is_empty() || dns::is_ip_literal(name)
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let Some(f) = real::getaddrinfo() else {
        return libc::EAI_SYSTEM;
    };
    let wall = realtime_ns();
    let start = monotonic_ns();
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(node, service, hints, res) };
    // SAFETY: node is null or a C string (getaddrinfo's contract).
    let name = unsafe { dns::c_str_bytes(node, 1024) };
    if no_lookup(name) {
        return rc;
    }
    if let Some(g) = Guard::enter() {
        let e = current_errno();
        record_lookup(&g, dns_source::GETADDRINFO, name, rc, wall, start, |ev| {
            if rc == 0 && !res.is_null() {
                // SAFETY: on success *res is the result list.
                unsafe { dns::add_addrinfo_answers(ev, *res) };
            }
        });
        // SAFETY: restoring errno for the calling thread.
        unsafe { *libc::__errno_location() = e };
    }
    rc
}

fn h_errno() -> c_int {
    // SAFETY: __h_errno_location always returns this thread's h_errno.
    unsafe { *__h_errno_location() }
}

unsafe extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

fn hostent_lookup(
    source_name: *const c_char,
    wall: u64,
    start: u64,
    h: *const hostent,
    status: c_int,
) {
    // SAFETY: the name argument is a C string (the function's contract).
    let name = unsafe { dns::c_str_bytes(source_name, 1024) };
    if no_lookup(name) {
        return;
    }
    if let Some(g) = Guard::enter() {
        let e = current_errno();
        record_lookup(
            &g,
            dns_source::GETHOSTBYNAME,
            name,
            status,
            wall,
            start,
            |ev| {
                // SAFETY: h is null or the hostent the real call returned.
                unsafe { dns::add_hostent_answers(ev, h) }
            },
        );
        // SAFETY: restoring errno for the calling thread.
        unsafe { *libc::__errno_location() = e };
    }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    let Some(f) = real::gethostbyname() else {
        return core::ptr::null_mut();
    };
    let (wall, start) = (realtime_ns(), monotonic_ns());
    // SAFETY: forwarding the caller's argument.
    let h = unsafe { f(name) };
    let status = if h.is_null() { h_errno() } else { 0 };
    hostent_lookup(name, wall, start, h, status);
    h
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent {
    let Some(f) = real::gethostbyname2() else {
        return core::ptr::null_mut();
    };
    let (wall, start) = (realtime_ns(), monotonic_ns());
    // SAFETY: forwarding the caller's arguments.
    let h = unsafe { f(name, af) };
    let status = if h.is_null() { h_errno() } else { 0 };
    hostent_lookup(name, wall, start, h, status);
    h
}

fn hostent_r_status(rc: c_int, result: *mut *mut hostent, h_errnop: *const c_int) -> c_int {
    // SAFETY: result and h_errnop are the caller's out-pointers, written by the real call.
    let found = !result.is_null() && !unsafe { *result }.is_null();
    if found {
        0
    } else if !h_errnop.is_null()
        // SAFETY: as above.
        && unsafe { *h_errnop } != 0
    {
        // SAFETY: as above.
        unsafe { *h_errnop }
    } else if rc != 0 {
        rc
    } else {
        1 // HOST_NOT_FOUND
    }
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    let Some(f) = real::gethostbyname_r() else {
        return libc::ENOSYS;
    };
    let (wall, start) = (realtime_ns(), monotonic_ns());
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(name, ret, buf, buflen, result, h_errnop) };
    if rc != libc::ERANGE {
        let status = hostent_r_status(rc, result, h_errnop);
        let h = if status == 0 {
            // SAFETY: on success *result is the filled hostent.
            unsafe { *result }
        } else {
            core::ptr::null_mut()
        };
        hostent_lookup(name, wall, start, h, status);
    }
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    let Some(f) = real::gethostbyname2_r() else {
        return libc::ENOSYS;
    };
    let (wall, start) = (realtime_ns(), monotonic_ns());
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(name, af, ret, buf, buflen, result, h_errnop) };
    if rc != libc::ERANGE {
        let status = hostent_r_status(rc, result, h_errnop);
        let h = if status == 0 {
            // SAFETY: on success *result is the filled hostent.
            unsafe { *result }
        } else {
            core::ptr::null_mut()
        };
        hostent_lookup(name, wall, start, h, status);
    }
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo_a(
    mode: c_int,
    list: *mut *mut Gaicb,
    n: c_int,
    sev: *mut libc::sigevent,
) -> c_int {
    let Some(f) = real::getaddrinfo_a() else {
        return libc::EAI_SYSTEM;
    };
    let (wall, start) = (realtime_ns(), monotonic_ns());
    // SAFETY: forwarding the caller's arguments.
    let rc = unsafe { f(mode, list, n, sev) };
    if rc == 0 && !list.is_null() {
        for i in 0..n.max(0) as usize {
            // SAFETY: list holds n request pointers (getaddrinfo_a's contract).
            let req = unsafe { *list.add(i) };
            crate::async_dns::started(req, wall, start);
        }
        if mode == dns::GAI_WAIT {
            for i in 0..n.max(0) as usize {
                // SAFETY: as above; with GAI_WAIT every request has completed.
                let req = unsafe { *list.add(i) };
                crate::async_dns::maybe_finished(req, None);
            }
        }
    }
    rc
}

/// # Safety
/// See the module docs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gai_error(req: *mut Gaicb) -> c_int {
    let Some(f) = real::gai_error() else {
        return libc::EAI_SYSTEM;
    };
    // SAFETY: forwarding the caller's argument.
    let rc = unsafe { f(req) };
    if rc != dns::EAI_INPROGRESS {
        crate::async_dns::maybe_finished(req, Some(rc));
    }
    rc
}

pub(crate) fn record_async_lookup(req: *mut Gaicb, status: c_int, wall: u64, start: u64) {
    if req.is_null() {
        return;
    }
    // SAFETY: req is a gaicb the program passed to getaddrinfo_a and is polling.
    let r = unsafe { &*req };
    // SAFETY: ar_name is a C string.
    let name = unsafe { dns::c_str_bytes(r.ar_name, 1024) };
    if no_lookup(name) {
        return;
    }
    if let Some(g) = Guard::enter() {
        let e = current_errno();
        record_lookup(
            &g,
            dns_source::GETADDRINFO_A,
            name,
            status,
            wall,
            start,
            |ev| {
                if status == 0 {
                    // SAFETY: on completion ar_result is the result list.
                    unsafe { dns::add_addrinfo_answers(ev, r.ar_result) };
                }
            },
        );
        // SAFETY: restoring errno for the calling thread.
        unsafe { *libc::__errno_location() = e };
    }
}
