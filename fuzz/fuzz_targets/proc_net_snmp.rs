//! Fuzz target: the `snmp` and `snmp6` invariants of netmon_procnet on arbitrary bytes (the
//! protocol counter files: `/proc/net/snmp`, `/proc/net/netstat`, `/proc/net/snmp6`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    netmon_procnet::invariants::snmp(data);
    netmon_procnet::invariants::snmp6(data);
});
