//! Fuzz target: the `sockstat` invariants of netmon_procnet on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netmon_procnet::invariants::sockstat(data);
});
