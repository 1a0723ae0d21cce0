//! Process-wide state: the mapped region, this process's pid, and the fd → socket-slot table.
//!
//! The fd table is a fixed array in `.bss` (no allocation ever): entry `fd` is 0 for "not a
//! tracked socket", `slot + 1` for a socket this process owns, [`UNTRACKED`] for a socket that
//! found no free slot, or [`INHERITED`]` | n` for a socket inherited across `fork` whose
//! identity sits in snapshot `n` until first use.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use netmon_proto::region::Region;

/// File descriptors at or above this are not tracked (counted in `fds_untracked`).
pub const FD_MAX: usize = 1 << 16;
/// Marks an fd-table entry as an inherited socket snapshot.
pub const INHERITED: u32 = 1 << 31;
/// An IP socket that found no free slot when it was created (or first connected): counted once
/// in `sockets_untracked` and never given a slot later, so a socket's traffic is either all
/// counted or none of it is, and each socket whose traffic is missing is counted exactly once.
/// Above every `slot + 1` (slots are fewer than `MAX_SOCKETS`), so it names no slot.
pub const UNTRACKED: u32 = INHERITED - 1;
const _: () = assert!(netmon_proto::MAX_SOCKETS < UNTRACKED);

pub static FD_TABLE: [AtomicU32; FD_MAX] = [const { AtomicU32::new(0) }; FD_MAX];
/// One past the highest fd ever entered in the table (bounds fork and `close_range` scans).
pub static FD_HIGH: AtomicU32 = AtomicU32::new(0);

/// This process's pid, as of the constructor or the last `fork` (not updated in a `vfork`
/// child, which shares our memory: lifecycle hooks compare it with the real pid).
pub static MY_PID: AtomicU32 = AtomicU32::new(0);

struct RegionCell {
    ready: AtomicBool,
    region: UnsafeCell<MaybeUninit<Region>>,
}

// SAFETY: `region` is written once, before `ready` is set with Release, and only read after
// `ready` is observed with Acquire; Region itself is Sync.
unsafe impl Sync for RegionCell {}

static REGION: RegionCell = RegionCell {
    ready: AtomicBool::new(false),
    region: UnsafeCell::new(MaybeUninit::uninit()),
};

/// The region, once the constructor attached to one.
#[inline]
pub fn region() -> Option<&'static Region> {
    // Acquire: pairs with the Release store in `install`.
    if REGION.ready.load(Ordering::Acquire) {
        // SAFETY: initialised before ready was set, never written again.
        Some(unsafe { (*REGION.region.get()).assume_init_ref() })
    } else {
        None
    }
}

/// Installs the region. Called once, from the constructor, before any other thread of ours
/// can observe it.
pub fn install(region: Region) {
    if REGION.ready.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: ready is false so nobody reads the cell; the constructor runs once.
    unsafe { (*REGION.region.get()).write(region) };
    // Release: pairs with the Acquire load in `region`.
    REGION.ready.store(true, Ordering::Release);
}

#[inline]
pub fn my_pid() -> u32 {
    MY_PID.load(Ordering::Relaxed)
}

/// The calling process's real pid (a system call: glibc does not cache it).
pub fn real_pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// True in the process that owns the accounting (false in a `vfork` child, which runs on our
/// memory until it execs or exits and must not change our state).
pub fn is_owner_process() -> bool {
    real_pid() == my_pid()
}

#[inline]
pub fn fd_entry(fd: i32) -> Option<&'static AtomicU32> {
    if fd < 0 {
        return None;
    }
    FD_TABLE.get(fd as usize)
}

pub fn note_fd(fd: i32) {
    if fd >= 0 {
        FD_HIGH.fetch_max(fd as u32 + 1, Ordering::Relaxed);
    }
}
