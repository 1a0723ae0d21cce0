//! The mapping itself: creating it (collector), attaching to it (interceptor), and
//! bounds-checked access to the header, rings and socket slots.
//!
//! The region is a memfd sealed against shrinking and growing, not a file in a directory: a
//! `MAP_SHARED` mapping of a file that someone truncates raises `SIGBUS` on the next access
//! past the new end, and that would crash the monitored program (and the collector). The
//! collector keeps the memfd open; other processes open it through
//! `/proc/<collector-pid>/fd/<fd>` (or a symlink to that path), check that it is sealed, map it
//! and close the descriptor again.
//!
//! Geometry (offsets, counts) is validated once, when the region is created or opened, and kept
//! in the [`Region`] value: nothing later re-reads sizes from the shared header, so a process that
//! scribbles over the header cannot make anyone index out of bounds.

use crate::layout::*;
use core::ffi::CStr;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Why a region could not be created or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// A system call failed; `errno` and which step.
    Os { step: &'static str, errno: i32 },
    /// The path or the object it leads to is not what we created (wrong owner, wrong mode, not
    /// a regular file, not sealed).
    Unsafe(&'static str),
    /// The header is not a netmon header or a version we don't speak.
    BadHeader(&'static str),
    /// Requested sizes are out of range.
    BadSize(&'static str),
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::Os { step, errno } => write!(f, "{step} failed (errno {errno})"),
            RegionError::Unsafe(why) => write!(f, "refusing unsafe path: {why}"),
            RegionError::BadHeader(why) => write!(f, "not a usable netmon region: {why}"),
            RegionError::BadSize(why) => write!(f, "invalid region size: {why}"),
        }
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn os(step: &'static str) -> RegionError {
    RegionError::Os {
        step,
        errno: errno(),
    }
}

/// The seals every region carries: its size can never change (a shrink would turn accesses
/// into `SIGBUS`), and nobody can add further seals (`F_SEAL_FUTURE_WRITE` would stop new
/// processes from mapping it writable).
pub const REGION_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Sizes of a region to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub rings: u32,
    /// Slots per ring; rounded up to a power of two.
    pub ring_capacity: u32,
    pub sockets: u32,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            rings: DEFAULT_RINGS,
            ring_capacity: DEFAULT_RING_CAPACITY,
            sockets: DEFAULT_SOCKETS,
        }
    }
}

/// Offsets derived from a [`Geometry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offsets {
    rings_offset: u64,
    ring_stride: u64,
    sockets_offset: u64,
    total_size: u64,
}

impl Geometry {
    fn validate(&self) -> Result<Geometry, RegionError> {
        if self.rings == 0 || self.rings > MAX_RINGS {
            return Err(RegionError::BadSize("ring count must be 1..=4096"));
        }
        if self.ring_capacity < MAX_EVENT_SLOTS as u32 || self.ring_capacity > MAX_RING_CAPACITY {
            return Err(RegionError::BadSize(
                "ring capacity must be 4..=1048576 slots",
            ));
        }
        if self.sockets == 0 || self.sockets > MAX_SOCKETS {
            return Err(RegionError::BadSize("socket count must be 1..=4194304"));
        }
        Ok(Geometry {
            ring_capacity: self.ring_capacity.next_power_of_two(),
            ..*self
        })
    }

    fn offsets(&self) -> Offsets {
        let rings_offset = HEADER_SIZE as u64;
        let ring_stride = RING_CONTROL_SIZE as u64 + self.ring_capacity as u64 * SLOT_SIZE as u64;
        let sockets_offset = rings_offset + ring_stride * self.rings as u64;
        let total_size = sockets_offset + self.sockets as u64 * SOCKET_SLOT_SIZE as u64;
        Offsets {
            rings_offset,
            ring_stride,
            sockets_offset,
            total_size,
        }
    }

    /// Size in bytes of a region with this geometry.
    pub fn total_size(&self) -> Result<u64, RegionError> {
        Ok(self.validate()?.offsets().total_size)
    }
}

/// A mapped region.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    geometry: Geometry,
    offsets: Offsets,
    /// The memfd, kept open by the process that created the region (other processes reach it
    /// through `/proc/<pid>/fd/<fd>`); -1 in processes that attached to it.
    fd: i32,
}

// SAFETY: all shared state in the mapping is accessed through atomics or through the ring
// protocol (single producer per ring, slot contents published by Release/Acquire on head/tail).
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len)
            .field("geometry", &self.geometry)
            .finish()
    }
}

/// Makes `dir` a private directory: creates it mode 0700, or accepts an existing one only if it
/// is a real directory (not a symlink), owned by the effective user, with no group/other access.
pub fn ensure_private_dir(dir: &CStr) -> Result<(), RegionError> {
    // SAFETY: dir is a valid C string.
    let rc = unsafe { libc::mkdir(dir.as_ptr(), 0o700) };
    if rc != 0 && errno() != libc::EEXIST {
        return Err(os("mkdir"));
    }
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid C string and out-pointer; lstat does not follow a final symlink.
    if unsafe { libc::lstat(dir.as_ptr(), &mut st) } != 0 {
        return Err(os("lstat"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(RegionError::Unsafe(
            "the shared-memory directory is not a directory (symlink?)",
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if st.st_uid != unsafe { libc::geteuid() } {
        return Err(RegionError::Unsafe(
            "the shared-memory directory is owned by another user",
        ));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(RegionError::Unsafe(
            "the shared-memory directory is accessible to group or others",
        ));
    }
    Ok(())
}

impl Region {
    /// Creates a new region in a sealed memfd and maps it. The memfd is mode 0600, close-on-exec
    /// (no child inherits it), its size is fixed by seals, and its header is initialised with
    /// the magic written last. The descriptor stays open until the region is dropped:
    /// [`Region::fd`] is how other processes find it.
    pub fn create(geometry: Geometry, collector_pid: u32) -> Result<Region, RegionError> {
        let geometry = geometry.validate()?;
        let offsets = geometry.offsets();
        // SAFETY: a valid C string and flags; the kernel returns a new descriptor or -1.
        let fd = unsafe {
            libc::memfd_create(
                c"netmon".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(os("memfd_create"));
        }
        match Self::create_on(fd, geometry, offsets, collector_pid) {
            Ok(region) => Ok(region),
            Err(e) => {
                // SAFETY: fd is ours and nothing else refers to it.
                unsafe { libc::close(fd) };
                Err(e)
            }
        }
    }

    fn create_on(
        fd: i32,
        geometry: Geometry,
        offsets: Offsets,
        collector_pid: u32,
    ) -> Result<Region, RegionError> {
        // SAFETY: fd is a valid descriptor. A memfd starts out 0777; only the owner may open it
        // through /proc.
        if unsafe { libc::fchmod(fd, 0o600) } != 0 {
            return Err(os("fchmod"));
        }
        // SAFETY: fd is a valid descriptor.
        if unsafe { libc::ftruncate(fd, offsets.total_size as libc::off_t) } != 0 {
            return Err(os("ftruncate"));
        }
        // SAFETY: fd is a valid memfd created with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, REGION_SEALS) } != 0 {
            return Err(os("fcntl(F_ADD_SEALS)"));
        }
        let mut region = Self::map(fd, offsets.total_size as usize, geometry, offsets)?;
        region.fd = fd;
        let h = region.header_mut_ptr();
        // SAFETY: the mapping is at least HEADER_SIZE bytes, fresh (zero-filled) and not yet
        // visible to any producer (magic is still 0), so plain writes are fine.
        unsafe {
            (*h).abi_version = ABI_VERSION;
            (*h).header_size = HEADER_SIZE as u32;
            (*h).total_size = offsets.total_size;
            (*h).ring_count = geometry.rings;
            (*h).ring_capacity = geometry.ring_capacity;
            (*h).slot_size = SLOT_SIZE as u32;
            (*h).socket_count = geometry.sockets;
            (*h).rings_offset = offsets.rings_offset;
            (*h).ring_stride = offsets.ring_stride;
            (*h).sockets_offset = offsets.sockets_offset;
            (*h).collector_pid = collector_pid;
            (*h).created_ns = crate::ring::realtime_ns();
        }
        // Release: pairs with the Acquire load of `magic` in `open`; everything above is visible
        // to whoever sees the magic.
        region.header().magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// The memfd of a region this process created (`None` for an attached one).
    pub fn fd(&self) -> Option<i32> {
        (self.fd >= 0).then_some(self.fd)
    }

    /// Opens and maps an existing region: `path` is `/proc/<pid>/fd/<fd>` of the process that
    /// created it, or a symlink to that. Symlinks are followed — what counts is the object
    /// reached: it must be a memfd owned by the effective user, inaccessible to group and
    /// others, sealed against shrinking and growing (so it can never raise `SIGBUS`), with a
    /// header that matches this ABI and the size. The descriptor is closed before returning:
    /// only the mapping remains.
    pub fn open(path: &CStr) -> Result<Region, RegionError> {
        // SAFETY: valid C string. O_NONBLOCK and O_NOCTTY: a path that leads to a FIFO or a
        // terminal must neither block nor change our controlling terminal before it is refused.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            return Err(os("open"));
        }
        let result = Self::open_fd(fd);
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        result
    }

    fn open_fd(fd: i32) -> Result<Region, RegionError> {
        // SAFETY: zeroed stat is a valid out-buffer.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: valid fd and out-pointer.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(os("fstat"));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(RegionError::Unsafe("not a regular file"));
        }
        // SAFETY: geteuid has no preconditions.
        if st.st_uid != unsafe { libc::geteuid() } {
            return Err(RegionError::Unsafe("owned by another user"));
        }
        if st.st_mode & 0o077 != 0 {
            return Err(RegionError::Unsafe("accessible to group or others"));
        }
        // SAFETY: valid fd; F_GET_SEALS takes no argument and fails (EINVAL) on files that
        // cannot be sealed.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        if seals < 0 || seals & REGION_SEALS != REGION_SEALS {
            return Err(RegionError::Unsafe(
                "not a sealed memfd (a truncation could crash the program with SIGBUS)",
            ));
        }
        let size = st.st_size as u64;
        if size < HEADER_SIZE as u64 {
            return Err(RegionError::BadHeader("file shorter than a header"));
        }
        // Copy the header out with pread first: sizes are checked before anything is mapped.
        let mut raw = [0u8; HEADER_SIZE];
        // SAFETY: valid fd, buffer of HEADER_SIZE bytes.
        let n = unsafe { libc::pread(fd, raw.as_mut_ptr().cast(), HEADER_SIZE, 0) };
        if n != HEADER_SIZE as isize {
            return Err(os("pread"));
        }
        let word = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let magic = u64::from_le_bytes([
            raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
        ]);
        if magic != MAGIC {
            return Err(RegionError::BadHeader("bad magic"));
        }
        if word(8) != ABI_VERSION {
            return Err(RegionError::BadHeader("ABI version mismatch"));
        }
        if word(12) != HEADER_SIZE as u32 || word(32) != SLOT_SIZE as u32 {
            return Err(RegionError::BadHeader("unexpected header or slot size"));
        }
        let geometry = Geometry {
            rings: word(24),
            ring_capacity: word(28),
            sockets: word(36),
        };
        if !geometry.ring_capacity.is_power_of_two() {
            return Err(RegionError::BadHeader(
                "ring capacity is not a power of two",
            ));
        }
        let geometry = geometry
            .validate()
            .map_err(|_| RegionError::BadHeader("sizes out of range"))?;
        let offsets = geometry.offsets();
        if offsets.total_size > size {
            return Err(RegionError::BadHeader("file shorter than its header says"));
        }
        Self::map(fd, offsets.total_size as usize, geometry, offsets)
    }

    fn map(
        fd: i32,
        len: usize,
        geometry: Geometry,
        offsets: Offsets,
    ) -> Result<Region, RegionError> {
        // SAFETY: mapping a file we hold open; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os("mmap"));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(RegionError::Os {
            step: "mmap",
            errno: 0,
        })?;
        Ok(Region {
            base,
            len,
            geometry,
            offsets,
            fd: -1,
        })
    }

    fn header_mut_ptr(&self) -> *mut Header {
        self.base.as_ptr().cast()
    }

    /// The shared header. Only its atomics are meant to be read after creation; sizes come
    /// from [`Region::geometry`].
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (len >= HEADER_SIZE checked at map time) and
        // the mapping is page-aligned.
        unsafe { &*self.header_mut_ptr() }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ring `index`: its control block and slot memory.
    pub fn ring(&self, index: u32) -> Option<crate::ring::RingRef<'_>> {
        if index >= self.geometry.rings {
            return None;
        }
        let off = self.offsets.rings_offset + self.offsets.ring_stride * index as u64;
        // SAFETY: index < rings, so the control block and its `ring_capacity` slots lie inside
        // the mapping (total_size was computed from the same geometry). Offsets are multiples of
        // 64, so the RingControl is aligned.
        unsafe {
            let control = &*(self.base.as_ptr().add(off as usize) as *const RingControl);
            let slots = self.base.as_ptr().add(off as usize + RING_CONTROL_SIZE);
            Some(crate::ring::RingRef::new(
                control,
                slots,
                self.geometry.ring_capacity,
            ))
        }
    }

    /// Socket slot `index`.
    pub fn socket(&self, index: u32) -> Option<&SocketSlot> {
        if index >= self.geometry.sockets {
            return None;
        }
        let off = self.offsets.sockets_offset + SOCKET_SLOT_SIZE as u64 * index as u64;
        // SAFETY: index < sockets, so the slot lies inside the mapping; offsets are multiples of
        // 64 so it is aligned.
        Some(unsafe { &*(self.base.as_ptr().add(off as usize) as *const SocketSlot) })
    }
}

impl Region {
    /// Counts one finished invocation and wakes every process waiting in
    /// [`wait_invocation_done`](Self::wait_invocation_done). One system call; never blocks.
    pub fn signal_invocation_done(&self) {
        let word = &self.header().invocations_done;
        word.fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE on a 4-byte aligned word inside our shared mapping (not
        // FUTEX_PRIVATE: the waiters are other processes).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                core::ptr::null::<libc::timespec>(),
            )
        };
    }

    /// Waits until the finished-invocation count differs from `seen`, or `timeout` passes.
    /// Returns the current count.
    pub fn wait_invocation_done(&self, seen: u32, timeout: core::time::Duration) -> u32 {
        let word = &self.header().invocations_done;
        let current = word.load(Ordering::Acquire);
        if current != seen {
            return current;
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a 4-byte aligned word in our mapping with a valid relative
        // timeout; it returns at once if the word no longer equals `seen`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &ts as *const libc::timespec,
            )
        };
        word.load(Ordering::Acquire)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len describe our own mapping, and no reference into it outlives self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        if self.fd >= 0 {
            // SAFETY: the memfd is ours (created in `create`) and closed only here.
            unsafe { libc::close(self.fd) };
        }
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    extern crate std;
    use super::*;
    use std::ffi::CString;
    use std::format;
    use std::vec::Vec;

    fn temp_path(name: &str) -> CString {
        let dir = std::env::temp_dir();
        CString::new(format!(
            "{}/netmon-proto-test-{}-{}",
            dir.display(),
            std::process::id(),
            name
        ))
        .unwrap()
    }

    fn proc_path(fd: i32) -> CString {
        CString::new(format!("/proc/self/fd/{fd}")).unwrap()
    }

    /// A memfd holding `bytes`, mode 0600, with `seals` added; the caller closes it.
    fn memfd_with(bytes: &[u8], seals: i32) -> i32 {
        let fd = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0);
        assert_eq!(unsafe { libc::fchmod(fd, 0o600) }, 0);
        let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
        assert_eq!(n, bytes.len() as isize);
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) }, 0);
        fd
    }

    fn bytes_of(r: &Region) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(r.base.as_ptr(), r.len) }.to_vec()
    }

    #[test]
    fn create_then_open_agree() {
        let g = Geometry {
            rings: 3,
            ring_capacity: 10,
            sockets: 7,
        };
        let a = Region::create(g, 1).unwrap();
        assert_eq!(a.geometry().ring_capacity, 16);
        let b = Region::open(&proc_path(a.fd().unwrap())).unwrap();
        assert_eq!(b.fd(), None);
        assert_eq!(a.geometry(), b.geometry());
        a.socket(6).unwrap().bytes_sent.store(42, Ordering::Relaxed);
        assert_eq!(b.socket(6).unwrap().bytes_sent.load(Ordering::Relaxed), 42);
        assert!(b.socket(7).is_none());
        assert!(b.ring(3).is_none());
    }

    #[test]
    fn the_region_cannot_be_shrunk_grown_or_resealed() {
        let a = Region::create(Geometry::default(), 1).unwrap();
        let fd = a.fd().unwrap();
        let len = a.len() as libc::off_t;
        // Through our descriptor and through a new one, as another process would open it.
        let other = unsafe { libc::open(proc_path(fd).as_ptr(), libc::O_RDWR) };
        assert!(other >= 0);
        for f in [fd, other] {
            for size in [0, 4096, len - 1, len + 4096] {
                assert_eq!(unsafe { libc::ftruncate(f, size) }, -1);
                assert_eq!(errno(), libc::EPERM);
            }
            let punch_past_end = unsafe { libc::fallocate(f, 0, len, 4096) };
            assert_eq!(punch_past_end, -1);
            assert_eq!(
                unsafe { libc::fcntl(f, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) },
                -1
            );
        }
        unsafe { libc::close(other) };
        a.socket(0).unwrap().bytes_sent.store(1, Ordering::Relaxed);
    }

    #[test]
    fn open_follows_symlinks_to_the_memfd() {
        let a = Region::create(Geometry::default(), 1).unwrap();
        let link = temp_path("link");
        std::os::unix::fs::symlink(
            proc_path(a.fd().unwrap()).to_str().unwrap(),
            link.to_str().unwrap(),
        )
        .unwrap();
        let b = Region::open(&link);
        unsafe { libc::unlink(link.as_ptr()) };
        assert_eq!(b.unwrap().geometry(), a.geometry());
    }

    #[test]
    fn open_refuses_unsealed_files_even_with_a_valid_header() {
        let a = Region::create(Geometry::default(), 1).unwrap();
        let content = bytes_of(&a);
        // A regular file in a directory: the design this replaced. Truncating it would raise
        // SIGBUS in every process that maps it.
        let p = temp_path("plain");
        std::fs::write(p.to_str().unwrap(), &content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.to_str().unwrap(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let err = Region::open(&p).unwrap_err();
        unsafe { libc::unlink(p.as_ptr()) };
        assert!(matches!(err, RegionError::Unsafe(_)), "{err:?}");
        // A memfd that only refuses to shrink is not enough either (all seals are required).
        let fd = memfd_with(&content, libc::F_SEAL_SHRINK);
        let err = Region::open(&proc_path(fd)).unwrap_err();
        unsafe { libc::close(fd) };
        assert!(matches!(err, RegionError::Unsafe(_)), "{err:?}");
        // Sealed, but readable by others.
        let fd = memfd_with(&content, REGION_SEALS);
        assert_eq!(unsafe { libc::fchmod(fd, 0o644) }, 0);
        let err = Region::open(&proc_path(fd)).unwrap_err();
        unsafe { libc::close(fd) };
        assert_eq!(err, RegionError::Unsafe("accessible to group or others"));
        // The same content sealed properly is accepted.
        let fd = memfd_with(&content, REGION_SEALS);
        let ok = Region::open(&proc_path(fd));
        unsafe { libc::close(fd) };
        assert!(ok.is_ok());
    }

    #[test]
    fn open_rejects_garbage_and_short_regions() {
        let fd = memfd_with(&[0xAAu8; 4096], REGION_SEALS);
        assert_eq!(
            Region::open(&proc_path(fd)).unwrap_err(),
            RegionError::BadHeader("bad magic")
        );
        unsafe { libc::close(fd) };
        let fd = memfd_with(&[0u8; 10], REGION_SEALS);
        assert!(matches!(
            Region::open(&proc_path(fd)).unwrap_err(),
            RegionError::BadHeader(_)
        ));
        unsafe { libc::close(fd) };
        // A header claiming more than the memfd holds.
        let a = Region::create(
            Geometry {
                rings: 2,
                ring_capacity: 8,
                sockets: 4,
            },
            1,
        )
        .unwrap();
        let fd = memfd_with(&bytes_of(&a)[..1024], REGION_SEALS);
        assert_eq!(
            Region::open(&proc_path(fd)).unwrap_err(),
            RegionError::BadHeader("file shorter than its header says")
        );
        unsafe { libc::close(fd) };
    }

    #[test]
    fn open_neither_blocks_on_fifos_nor_accepts_other_objects() {
        let fifo = temp_path("fifo");
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = Region::open(&fifo).unwrap_err();
        unsafe { libc::unlink(fifo.as_ptr()) };
        assert_eq!(err, RegionError::Unsafe("not a regular file"));
        assert!(matches!(
            Region::open(c"/dev/null").unwrap_err(),
            RegionError::Unsafe(_)
        ));
        assert!(matches!(
            Region::open(&temp_path("missing")).unwrap_err(),
            RegionError::Os { .. }
        ));
    }

    #[test]
    fn private_dir_checks() {
        let d = temp_path("dir");
        ensure_private_dir(&d).unwrap();
        ensure_private_dir(&d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.to_str().unwrap(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert!(ensure_private_dir(&d).is_err());
        std::fs::remove_dir(d.to_str().unwrap()).unwrap();
    }
}
