//! Fuzz target: the DNS wire parser the interceptor runs on port-53 datagrams
//! (`interceptor/src/dns.rs`, compiled in here as is). Any bytes: no panic, and the event it
//! fills stays within its bounds.
#![no_main]

#[allow(dead_code)]
#[path = "../../interceptor/src/dns.rs"]
mod dns;

use netmon_proto::{DNS_MAX_ANSWERS, DNS_MAX_NAME, DnsEvent, dns_source};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut ev = DnsEvent::empty(dns_source::UDP_RESPONSE);
    if let Some(m) = dns::parse_message(data, &mut ev) {
        assert!(m.after_question <= data.len());
        dns::add_wire_answers(data, &m, &mut ev);
    }
    assert!(ev.name_bytes().len() <= DNS_MAX_NAME);
    assert!(ev.answer_slice().len() <= DNS_MAX_ANSWERS);
    let _ = dns::is_ip_literal(data);
});
