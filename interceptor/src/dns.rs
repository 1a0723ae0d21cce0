//! Name-resolution results (libc structures) and DNS wire messages (port 53 datagrams) turned
//! into [`DnsEvent`]s. Everything here is bounds-checked and allocation-free: a malformed
//! packet yields `None`, never a panic.
//!
//! Also compiled into the fuzz target `fuzz/fuzz_targets/dns_message.rs`: keep it free of other
//! modules of this crate.

use core::ffi::{c_char, c_int};
use netmon_proto::{Addr, DnsEvent};

/// glibc's `struct gaicb` (for `getaddrinfo_a`), not in the libc crate.
#[repr(C)]
pub struct Gaicb {
    pub ar_name: *const c_char,
    pub ar_service: *const c_char,
    pub ar_request: *const libc::addrinfo,
    pub ar_result: *mut libc::addrinfo,
    pub _reserved: [c_int; 5],
}

/// glibc's `GAI_WAIT` and `EAI_INPROGRESS` (netdb.h), not in the libc crate.
pub const GAI_WAIT: c_int = 0;
pub const EAI_INPROGRESS: c_int = -100;

/// Upper bound on list walks, in case a list is corrupt or circular.
const MAX_WALK: usize = 64;

/// Length of a NUL-terminated string, at most `max`.
///
/// # Safety
/// `s` must be null or point to a readable string.
pub unsafe fn c_str_bytes<'a>(s: *const c_char, max: usize) -> &'a [u8] {
    if s.is_null() {
        return &[];
    }
    let mut n = 0;
    // SAFETY: the caller guarantees a NUL-terminated string; we stop at NUL or max.
    while n < max && unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the first n bytes were just read.
    unsafe { core::slice::from_raw_parts(s.cast(), n) }
}

/// True if `name` is an IPv4 or IPv6 literal (no lookup happens for those).
pub fn is_ip_literal(name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    if name.contains(&b':') {
        return true;
    }
    name.iter().all(|c| c.is_ascii_digit() || *c == b'.') && name.contains(&b'.')
}

/// Adds the addresses of a `getaddrinfo` result list.
///
/// # Safety
/// `res` must be null or a list returned by getaddrinfo.
pub unsafe fn add_addrinfo_answers(ev: &mut DnsEvent, mut res: *const libc::addrinfo) {
    let mut walked = 0;
    while !res.is_null() && walked < MAX_WALK {
        // SAFETY: res is a node of a valid list.
        let ai = unsafe { &*res };
        // SAFETY: ai_addr/ai_addrlen describe a sockaddr from getaddrinfo.
        if let Some(a) = unsafe { Addr::from_sockaddr(ai.ai_addr, ai.ai_addrlen) } {
            ev.push_answer(a);
        }
        res = ai.ai_next;
        walked += 1;
    }
}

/// Adds the addresses of a `hostent`.
///
/// # Safety
/// `h` must be null or a valid hostent.
pub unsafe fn add_hostent_answers(ev: &mut DnsEvent, h: *const libc::hostent) {
    if h.is_null() {
        return;
    }
    // SAFETY: h is a valid hostent.
    let h = unsafe { &*h };
    if h.h_addr_list.is_null() {
        return;
    }
    for i in 0..MAX_WALK {
        // SAFETY: h_addr_list is a NULL-terminated array; we stop at NULL.
        let p = unsafe { *h.h_addr_list.add(i) };
        if p.is_null() {
            break;
        }
        let a = match (h.h_addrtype, h.h_length) {
            (libc::AF_INET, 4) => {
                let mut b = [0u8; 4];
                // SAFETY: h_length bytes are readable at p.
                unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), b.as_mut_ptr(), 4) };
                Addr::from_ipv4(b, 0)
            }
            (libc::AF_INET6, 16) => {
                let mut b = [0u8; 16];
                // SAFETY: h_length bytes are readable at p.
                unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), b.as_mut_ptr(), 16) };
                Addr::from_ipv6(b, 0)
            }
            _ => continue,
        };
        ev.push_answer(a);
    }
}

/// A parsed DNS message header and question.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub is_response: bool,
    pub rcode: u8,
    pub answer_count: u16,
    /// Offset just past the question section.
    pub after_question: usize,
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Reads a possibly compressed name at `at` into `out` (dotted form). Returns the offset just
/// after the name in the original position and the name length.
fn read_name(p: &[u8], at: usize, out: &mut [u8]) -> Option<(usize, usize)> {
    let mut pos = at;
    let mut end_after = None;
    let mut len = 0;
    let mut jumps = 0;
    loop {
        let l = *p.get(pos)? as usize;
        if l == 0 {
            pos += 1;
            break;
        }
        if l & 0xC0 == 0xC0 {
            let target = ((l & 0x3F) << 8) | *p.get(pos + 1)? as usize;
            if end_after.is_none() {
                end_after = Some(pos + 2);
            }
            jumps += 1;
            if jumps > 16 || target >= p.len() {
                return None;
            }
            pos = target;
            continue;
        }
        if l & 0xC0 != 0 {
            return None;
        }
        let label = p.get(pos + 1..pos + 1 + l)?;
        if len != 0 {
            *out.get_mut(len)? = b'.';
            len += 1;
        }
        out.get_mut(len..len + l)?.copy_from_slice(label);
        len += l;
        pos += 1 + l;
    }
    Some((end_after.unwrap_or(pos), len))
}

/// Parses the header and first question of a DNS message, writing the question name into
/// `ev`. Returns `None` if it is not a plausible DNS message.
pub fn parse_message(p: &[u8], ev: &mut DnsEvent) -> Option<Message> {
    let id = be16(p, 0)?;
    let flags = be16(p, 2)?;
    let qdcount = be16(p, 4)?;
    let ancount = be16(p, 6)?;
    if qdcount != 1 {
        return None;
    }
    let mut name = [0u8; netmon_proto::DNS_MAX_NAME];
    let (after_name, len) = read_name(p, 12, &mut name)?;
    let after_question = after_name.checked_add(4)?;
    if after_question > p.len() {
        return None;
    }
    ev.set_name(name.get(..len)?);
    Some(Message {
        id,
        is_response: flags & 0x8000 != 0,
        rcode: (flags & 0x000F) as u8,
        answer_count: ancount,
        after_question,
    })
}

/// Adds the A and AAAA records of a response's answer section.
pub fn add_wire_answers(p: &[u8], m: &Message, ev: &mut DnsEvent) {
    let mut pos = m.after_question;
    let mut scratch = [0u8; netmon_proto::DNS_MAX_NAME];
    for _ in 0..m.answer_count.min(64) {
        let Some((after, _)) = read_name(p, pos, &mut scratch) else {
            return;
        };
        let (Some(ty), Some(rdlen)) = (be16(p, after), be16(p, after + 8)) else {
            return;
        };
        let start = after + 10;
        let Some(rdata) = p.get(start..start + rdlen as usize) else {
            return;
        };
        match (ty, rdata.len()) {
            (1, 4) => ev.push_answer(Addr::from_ipv4([rdata[0], rdata[1], rdata[2], rdata[3]], 0)),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                ev.push_answer(Addr::from_ipv6(b, 0));
            }
            _ => {}
        }
        pos = start + rdlen as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmon_proto::dns_source;

    fn query(name: &str, id: u16) -> Vec<u8> {
        let mut p = vec![];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        p
    }

    #[test]
    fn parses_query_and_response_with_compression() {
        let q = query("api.example.com", 0xBEEF);
        let mut ev = DnsEvent::empty(dns_source::UDP_QUERY);
        let m = parse_message(&q, &mut ev).unwrap();
        assert_eq!(m.id, 0xBEEF);
        assert!(!m.is_response);
        assert_eq!(ev.name_bytes(), b"api.example.com");

        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2; // two answers
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ip);
        }
        let mut ev = DnsEvent::empty(dns_source::UDP_RESPONSE);
        let m = parse_message(&r, &mut ev).unwrap();
        assert!(m.is_response);
        assert_eq!(m.rcode, 0);
        add_wire_answers(&r, &m, &mut ev);
        assert_eq!(ev.answer_slice().len(), 2);
        assert_eq!(&ev.answer_slice()[1].bytes[..4], &[10, 0, 0, 2]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let mut ev = DnsEvent::empty(dns_source::UDP_RESPONSE);
        assert!(parse_message(&[], &mut ev).is_none());
        assert!(parse_message(&[0; 11], &mut ev).is_none());
        // Pointer loop.
        let mut p = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(parse_message(&p, &mut ev).is_none());
        // Every prefix of a valid message, and random bytes, are handled.
        let q = query("a.b.c", 1);
        for n in 0..q.len() {
            let _ = parse_message(&q[..n], &mut ev);
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut buf = [0u8; 64];
            for b in buf.iter_mut() {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            buf[4] = 0;
            buf[5] = 1;
            if let Some(m) = parse_message(&buf, &mut ev) {
                add_wire_answers(&buf, &m, &mut ev);
            }
        }
    }

    #[test]
    fn ip_literals() {
        assert!(is_ip_literal(b"127.0.0.1"));
        assert!(is_ip_literal(b"::1"));
        assert!(!is_ip_literal(b"localhost"));
        assert!(!is_ip_literal(b"1e100.net"));
    }
}
