//! Human names for the numeric codes the interceptor records (errno, getaddrinfo's `EAI_*`,
//! `h_errno`, DNS rcodes), and the DNS rcode each libc failure corresponds to.
//!
//! Also compiled into the fuzz target `fuzz/fuzz_targets/region_reader.rs`: no `crate::` uses.

/// `ECONNREFUSED`, `ETIMEDOUT`, ...; "unknown" for 0 (the reason could not be learned).
pub fn errno_name(e: i32) -> String {
    if e == 0 {
        return "unknown".into();
    }
    let s = format!("{:?}", nix::errno::Errno::from_raw(e));
    if s == "UnknownErrno" {
        format!("errno {e}")
    } else {
        s
    }
}

/// glibc's `EAI_*` values (netdb.h).
const EAI: &[(i32, &str, i32)] = &[
    // (value, name, closest DNS rcode)
    (-1, "EAI_BADFLAGS", -1),
    (-2, "EAI_NONAME", 3),
    (-3, "EAI_AGAIN", 2),
    (-4, "EAI_FAIL", 2),
    (-5, "EAI_NODATA", 0),
    (-6, "EAI_FAMILY", -1),
    (-7, "EAI_SOCKTYPE", -1),
    (-8, "EAI_SERVICE", -1),
    (-9, "EAI_ADDRFAMILY", 0),
    (-10, "EAI_MEMORY", -1),
    (-11, "EAI_SYSTEM", -1),
    (-12, "EAI_OVERFLOW", -1),
];

pub fn eai_name(status: i32) -> String {
    EAI.iter()
        .find(|(v, _, _)| *v == status)
        .map_or_else(|| format!("EAI {status}"), |(_, n, _)| (*n).to_string())
}

/// The DNS rcode a getaddrinfo status stands for: NXDOMAIN for `EAI_NONAME`, SERVFAIL for
/// `EAI_AGAIN`/`EAI_FAIL` (which also covers timeouts: libc does not tell them apart), 0 for
/// success and "no data".
pub fn eai_rcode(status: i32) -> i32 {
    if status == 0 {
        return 0;
    }
    EAI.iter()
        .find(|(v, _, _)| *v == status)
        .map_or(-1, |(_, _, r)| *r)
}

/// `h_errno` values (netdb.h).
pub fn h_errno_name(status: i32) -> String {
    match status {
        1 => "HOST_NOT_FOUND".into(),
        2 => "TRY_AGAIN".into(),
        3 => "NO_RECOVERY".into(),
        4 => "NO_DATA".into(),
        e => format!("h_errno {e}"),
    }
}

pub fn h_errno_rcode(status: i32) -> i32 {
    match status {
        0 | 4 => 0,
        1 => 3,
        2 | 3 => 2,
        _ => -1,
    }
}

/// RFC 1035/6895 response code names.
pub fn rcode_name(rcode: i32) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        -1 => "TIMEOUT".into(),
        r => format!("RCODE{r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(0), "unknown");
        assert_eq!(eai_name(-2), "EAI_NONAME");
        assert_eq!(eai_rcode(-2), 3);
        assert_eq!(eai_rcode(-3), 2);
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(h_errno_rcode(1), 3);
    }
}
