//! Fuzz target: the `sockets` invariants of netmon_procnet on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netmon_procnet::invariants::sockets(data);
});
