//! `/proc/<pid>/fd`: the sockets a process holds. Each fd is a symlink; a socket's target reads
//! `socket:[INODE]`, the inode the socket tables print, which ties a table line to a process.

use crate::fields::dec_u64;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A socket fd of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketFd {
    pub fd: i32,
    pub inode: u64,
}

/// The inode of a `socket:[INODE]` link target; `None` for anything else (files, pipes,
/// `anon_inode:...`).
pub fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let inner = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    dec_u64(inner)
}

/// An fd number as `/proc/<pid>/fd` names it.
pub fn parse_fd_name(name: &[u8]) -> Option<i32> {
    if name.len() > 1 && name[0] == b'0' {
        return None;
    }
    dec_u64(name).and_then(|v| i32::try_from(v).ok())
}

/// What a scan of one process's fds found besides sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdScan {
    /// fds looked at.
    pub fds: u64,
    /// Entries that were not fd numbers, or fds that closed while being read.
    pub skipped: u64,
}

/// Appends the socket fds of process `pid` under `root` (normally `/proc`) to `out`.
/// Fails when the process is gone or its fds are not readable (another user's process).
pub fn read_socket_fds(root: &Path, pid: u32, out: &mut Vec<SocketFd>) -> io::Result<FdScan> {
    let dir = root.join(pid.to_string()).join("fd");
    let mut scan = FdScan::default();
    for entry in std::fs::read_dir(&dir)? {
        let Ok(entry) = entry else {
            scan.skipped += 1;
            continue;
        };
        scan.fds += 1;
        let Some(fd) = parse_fd_name(entry.file_name().as_bytes()) else {
            scan.skipped += 1;
            continue;
        };
        match std::fs::read_link(entry.path()) {
            Ok(target) => {
                if let Some(inode) = parse_socket_link(target.as_os_str().as_bytes()) {
                    out.push(SocketFd { fd, inode });
                }
            }
            // Closed between listing and reading: nothing to attribute.
            Err(_) => scan.skipped += 1,
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[453607]"), Some(453607));
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12"), None);
        assert_eq!(parse_socket_link(b"pipe:[12]"), None);
        assert_eq!(parse_socket_link(b"/dev/null"), None);
        assert_eq!(parse_socket_link(b"socket:[-1]"), None);
    }

    #[test]
    fn fd_names() {
        assert_eq!(parse_fd_name(b"0"), Some(0));
        assert_eq!(parse_fd_name(b"1023"), Some(1023));
        assert_eq!(parse_fd_name(b"007"), None);
        assert_eq!(parse_fd_name(b"2147483648"), None);
        assert_eq!(parse_fd_name(b"."), None);
    }

    #[test]
    fn finds_own_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut out = Vec::new();
        let scan = read_socket_fds(Path::new("/proc"), std::process::id(), &mut out).unwrap();
        assert!(scan.fds >= 1);
        use std::os::fd::AsRawFd;
        assert!(out.iter().any(|s| s.fd == listener.as_raw_fd()), "{out:?}");
    }
}
