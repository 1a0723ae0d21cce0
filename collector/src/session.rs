//! A monitoring session's shared-memory region: where it lives, creating it safely, removing
//! it afterwards, and finding the interceptor library to preload.

use anyhow::{Context, Result, anyhow};
use netmon_proto::region::{Geometry, Region, ensure_private_dir};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The interceptor's file name.
pub const INTERCEPTOR: &str = "libnetmon.so";

/// Default directory for regions: `/tmp/netmon-<uid>` (Lambda has no `/dev/shm`).
pub fn default_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/netmon-{}", nix::unistd::geteuid()))
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path contains a NUL byte: {}", p.display()))
}

/// A created region and its file, removed when dropped.
pub struct Session {
    pub region: Region,
    pub path: PathBuf,
}

impl Session {
    /// Creates `dir` (private, 0700) if needed and a fresh region file in it.
    pub fn create(dir: &Path, name: &str, geometry: Geometry) -> Result<Session> {
        let cdir = c_path(dir)?;
        ensure_private_dir(&cdir)
            .map_err(|e| anyhow!("shared-memory directory {}: {e}", dir.display()))?;
        let path = dir.join(name);
        // A stale file from a crashed run with the same pid: only ever our own (the directory
        // is private), so it is safe to replace.
        let _ = std::fs::remove_file(&path);
        let region = Region::create(&c_path(&path)?, geometry, std::process::id())
            .map_err(|e| anyhow!("cannot create shared memory {}: {e}", path.display()))?;
        Ok(Session { region, path })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Finds `libnetmon.so`: the explicit path if given, else next to the `netmon` binary, else in
/// `../lib` relative to it (the Lambda layer's `/opt/lib`).
pub fn locate_interceptor(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(anyhow!(
            "interceptor not found at {} (NETMON_LIB / --lib)",
            p.display()
        ));
    }
    let exe = std::env::current_exe().context("cannot locate the netmon binary")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for candidate in [dir.join(INTERCEPTOR), dir.join("../lib").join(INTERCEPTOR)] {
        if candidate.is_file() {
            return Ok(candidate.canonicalize().unwrap_or(candidate));
        }
    }
    Err(anyhow!(
        "{INTERCEPTOR} not found next to {}; build the whole workspace (`cargo build --release`) or set NETMON_LIB",
        exe.display()
    ))
}

/// `LD_PRELOAD` with the interceptor first, keeping whatever the environment already had.
pub fn preload_value(lib: &Path, existing: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
    let mut v = std::ffi::OsString::from(lib.as_os_str());
    if let Some(e) = existing.filter(|e| !e.is_empty()) {
        let already = e
            .as_bytes()
            .split(|b| *b == b':' || *b == b' ')
            .any(|p| p == lib.as_os_str().as_bytes());
        if already {
            return e.to_os_string();
        }
        v.push(":");
        v.push(e);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_keeps_existing_entries() {
        let lib = Path::new("/x/libnetmon.so");
        assert_eq!(preload_value(lib, None), "/x/libnetmon.so");
        assert_eq!(
            preload_value(lib, Some("/y/liba.so".as_ref())),
            "/x/libnetmon.so:/y/liba.so"
        );
        assert_eq!(
            preload_value(lib, Some("/y/liba.so:/x/libnetmon.so".as_ref())),
            "/y/liba.so:/x/libnetmon.so"
        );
    }

    #[test]
    fn session_file_is_private_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("shm");
        let path;
        {
            let s = Session::create(&dir, "t.shm", Geometry::default()).unwrap();
            path = s.path.clone();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        assert!(!path.exists());
    }

    #[test]
    fn refuses_a_symlinked_directory() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Session::create(&link, "t.shm", Geometry::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
