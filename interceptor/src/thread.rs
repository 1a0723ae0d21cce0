//! Per-thread state and the re-entrancy guard.
//!
//! The guard keeps side work (building and pushing events) from re-entering itself: `dlsym`,
//! `getsockopt` or a signal handler calling `write` while a hook is half-way through pushing an
//! event would otherwise be a second producer on a single-producer ring. Only side work is
//! guarded; the real libc function is always called outside it, exactly once.

use core::cell::Cell;

pub struct ThreadState {
    in_hook: Cell<bool>,
    /// Ring claimed by this thread, valid while `ring_pid` equals this process's pid.
    pub ring: Cell<u32>,
    pub ring_pid: Cell<u32>,
    /// Cached kernel thread id, valid while `tid_pid` equals this process's pid.
    tid: Cell<u32>,
    tid_pid: Cell<u32>,
}

thread_local! {
    // const-initialised and without Drop: no lazy-init check and no destructor registration
    // (which could allocate) on access.
    static STATE: ThreadState = const {
        ThreadState {
            in_hook: Cell::new(false),
            ring: Cell::new(u32::MAX),
            ring_pid: Cell::new(0),
            tid: Cell::new(0),
            tid_pid: Cell::new(0),
        }
    };
}

/// Proof that this thread is inside guarded side work; dropping it leaves.
pub struct Guard {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Guard {
    /// Enters guarded side work, or returns `None` if this thread is already inside it (the
    /// caller then skips its side work).
    #[inline]
    pub fn enter() -> Option<Guard> {
        STATE
            .try_with(|s| {
                if s.in_hook.get() {
                    None
                } else {
                    s.in_hook.set(true);
                    Some(Guard {
                        _not_send: core::marker::PhantomData,
                    })
                }
            })
            .ok()
            .flatten()
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
        STATE.try_with(f).ok()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = STATE.try_with(|s| s.in_hook.set(false));
    }
}

impl ThreadState {
    /// The kernel thread id of the calling thread (cached; refreshed after fork).
    pub fn tid(&self, pid: u32) -> u32 {
        if self.tid_pid.get() != pid || self.tid.get() == 0 {
            // SAFETY: gettid has no preconditions.
            self.tid.set(unsafe { libc::gettid() } as u32);
            self.tid_pid.set(pid);
        }
        self.tid.get()
    }
}
