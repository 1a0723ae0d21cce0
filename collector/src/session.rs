//! A monitoring session's shared-memory region: creating it, making it reachable for the
//! processes to monitor, removing what was published afterwards, and finding the interceptor
//! library to preload.
//!
//! The region is a sealed memfd (see `netmon_proto::region`): nothing is written to the file
//! system for `netmon run`, whose children find it at `/proc/<netmon-pid>/fd/<fd>` through
//! `NETMON_SHM`. The Lambda extension, whose runtime is not its child, also publishes a symlink
//! to that path at a fixed place in a private directory.

use anyhow::{Context, Result, anyhow};
use netmon_proto::region::{Geometry, Region, RegionError, ensure_private_dir};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The interceptor's file name.
pub const INTERCEPTOR: &str = "libnetmon.so";

/// Default directory for published regions: `/tmp/netmon-<uid>` (Lambda has no `/dev/shm`).
pub fn default_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/netmon-{}", nix::unistd::geteuid()))
}

/// A region error in words: the system's text for an errno, not its number.
fn describe(e: RegionError) -> String {
    match e {
        RegionError::Os { step, errno } => {
            format!(
                "{step} failed: {}",
                std::io::Error::from_raw_os_error(errno)
            )
        }
        other => other.to_string(),
    }
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path contains a NUL byte: {}", p.display()))
}

/// A created region and the path monitored processes open it by (`NETMON_SHM`).
pub struct Session {
    pub region: Region,
    pub path: PathBuf,
    /// The symlink [`publish`](Self::publish) made and its target, removed when dropped.
    published: Option<(PathBuf, PathBuf)>,
}

impl Session {
    /// Creates the region and checks that it can be opened the way the interceptor will open
    /// it, so a missing `/proc` is one clear error here rather than a program silently not
    /// monitored.
    pub fn create(geometry: Geometry) -> Result<Session> {
        let region = Region::create(geometry, std::process::id())
            .map_err(|e| anyhow!("cannot create the shared memory: {}", describe(e)))?;
        let fd = region
            .fd()
            .ok_or_else(|| anyhow!("the shared memory has no descriptor"))?;
        let path = PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()));
        Region::open(&c_path(&path)?).map_err(|e| {
            anyhow!(
                "the shared memory cannot be opened through {} ({}); netmon needs /proc",
                path.display(),
                describe(e)
            )
        })?;
        Ok(Session {
            region,
            path,
            published: None,
        })
    }

    /// Makes the region reachable at `dir/name` for processes netmon does not start itself
    /// (the Lambda runtime): a symlink to `/proc/<pid>/fd/<fd>` in a private directory (created
    /// 0700, or refused unless it is a real directory of ours that nobody else can access).
    /// Whatever was at `dir/name` is replaced atomically, never followed or written through.
    pub fn publish(&mut self, dir: &Path, name: &str) -> Result<()> {
        ensure_private_dir(&c_path(dir)?)
            .map_err(|e| anyhow!("shared-memory directory {}: {}", dir.display(), describe(e)))?;
        let link = dir.join(name);
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&self.path, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &link))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow!(
                    "cannot publish the shared memory at {}: {e}",
                    link.display()
                )
            })?;
        self.published = Some((link.clone(), self.path.clone()));
        self.path = link;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Only our own link: another collector may have replaced it since.
        if let Some((link, target)) = &self.published
            && std::fs::read_link(link).is_ok_and(|t| &t == target)
        {
            let _ = std::fs::remove_file(link);
        }
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
    fn run_sessions_write_nothing_to_the_file_system() {
        let s = Session::create(Geometry::default()).unwrap();
        let fd = s.region.fd().unwrap();
        assert_eq!(
            s.path,
            PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()))
        );
        let target = std::fs::read_link(&s.path).unwrap();
        assert!(
            target.to_string_lossy().starts_with("/memfd:netmon"),
            "{target:?}"
        );
    }

    #[test]
    fn published_link_is_private_replaces_what_was_there_and_is_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("shm");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A planted symlink at the link's path must be replaced, not written through.
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("t.shm")).unwrap();
        let link;
        {
            let mut s = Session::create(Geometry::default()).unwrap();
            let target = s.path.clone();
            s.publish(&dir, "t.shm").unwrap();
            link = s.path.clone();
            assert_eq!(link, dir.join("t.shm"));
            assert_eq!(std::fs::read_link(&link).unwrap(), target);
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            let b = Region::open(&c_path(&link).unwrap()).unwrap();
            assert_eq!(b.geometry(), s.region.geometry());
            let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn publish_creates_the_directory_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("new");
        let mut s = Session::create(Geometry::default()).unwrap();
        s.publish(&dir, "t.shm").unwrap();
        let dmode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
    }

    #[test]
    fn publish_refuses_unsafe_directories() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mut s = Session::create(Geometry::default()).unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = s.publish(&link, "t.shm").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o733)).unwrap();
        let err = s.publish(&open, "t.shm").unwrap_err();
        assert!(err.to_string().contains("group or others"), "{err}");
        // Owned by another user (only root can make one here).
        if nix::unistd::geteuid().is_root() {
            let theirs = d.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = s.publish(&theirs, "t.shm").unwrap_err();
            assert!(err.to_string().contains("another user"), "{err}");
        }
        assert_eq!(
            s.path,
            PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                s.region.fd().unwrap()
            ))
        );
        for dir in [&real, &open] {
            assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
        }
    }
}
