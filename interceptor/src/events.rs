//! Writing events: claiming this thread's ring and pushing records into it.

use crate::shared::{my_pid, region};
use crate::thread::Guard;
use core::sync::atomic::{AtomicU32, Ordering};
use netmon_proto::ring::realtime_ns;
use netmon_proto::{Event, EventHeader, ProcessEvent, kind, process_flags, ring_state};

/// Key whose destructor retires a thread's ring when the thread exits, or `u32::MAX` when none
/// could be created without risking allocation (the collector then reaps rings of dead threads).
static RING_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// glibc stores the first 32 keys' values in the thread descriptor itself; later keys may make
/// `pthread_setspecific` allocate, which a hook must not do.
const STATIC_KEYS: u32 = 32;

pub fn create_ring_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and a destructor with the right signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(retire_ring)) } == 0 {
        if key < STATIC_KEYS {
            RING_KEY.store(key, Ordering::Relaxed);
        } else {
            // SAFETY: the key was just created and never used.
            unsafe { libc::pthread_key_delete(key) };
        }
    }
}

/// Thread-exit destructor: hands the ring back for the collector to drain.
extern "C" fn retire_ring(value: *mut libc::c_void) {
    let index = (value as usize).wrapping_sub(1) as u32;
    let Some(ring) = region().and_then(|r| r.ring(index)) else {
        return;
    };
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let c = ring.control;
    if c.owner_pid.load(Ordering::Relaxed) == my_pid() && c.owner_tid.load(Ordering::Relaxed) == tid
    {
        // Release: our last pushes happen-before the collector sees RETIRED.
        let _ = c.state.compare_exchange(
            ring_state::OWNED,
            ring_state::RETIRED,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// Claims a ring for the calling thread: a free one, or a retired one the collector has
/// drained. Starts at `tid % rings` so threads rarely contend.
fn claim_ring(tid: u32, pid: u32) -> Option<u32> {
    let region = region()?;
    let n = region.geometry().rings;
    for k in 0..n {
        let i = (tid.wrapping_add(k)) % n;
        let ring = region.ring(i)?;
        let c = ring.control;
        let state = c.state.load(Ordering::Relaxed);
        let claimable =
            state == ring_state::FREE || (state == ring_state::RETIRED && ring.pending() == 0);
        if !claimable {
            continue;
        }
        // Acquire: pairs with the collector's Release when it freed the ring.
        if c.state
            .compare_exchange(
                state,
                ring_state::OWNED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            c.owner_pid.store(pid, Ordering::Relaxed);
            c.owner_tid.store(tid, Ordering::Relaxed);
            c.claims.fetch_add(1, Ordering::Relaxed);
            let key = RING_KEY.load(Ordering::Relaxed);
            if key != u32::MAX {
                // SAFETY: key was created by us and is < 32, so this stores into the thread
                // descriptor without allocating.
                unsafe { libc::pthread_setspecific(key, (i as usize + 1) as *const libc::c_void) };
            }
            return Some(i);
        }
    }
    region
        .header()
        .dropped_no_ring
        .fetch_add(1, Ordering::Relaxed);
    None
}

/// Fills in the header (pid, tid, and time if unset) and pushes `ev` into this thread's ring.
/// Returns false if it was dropped (counted).
pub fn emit<E: Event>(g: &Guard, ev: &mut E) -> bool {
    let Some(region) = region() else {
        return false;
    };
    let pid = my_pid();
    let Some(Some((ring, tid))) = g.with_state(|s| {
        let tid = s.tid(pid);
        if s.ring_pid.get() != pid {
            let r = claim_ring(tid, pid)?;
            s.ring.set(r);
            s.ring_pid.set(pid);
        }
        Some((s.ring.get(), tid))
    }) else {
        return false;
    };
    let Some(r) = region.ring(ring) else {
        return false;
    };
    // SAFETY: every Event starts with an EventHeader (trait contract), and E is plain data.
    let header = unsafe { &mut *(ev as *mut E as *mut EventHeader) };
    header.kind = if header.kind == 0 {
        E::KIND
    } else {
        header.kind
    };
    header.slots = E::SLOTS as u8;
    header.pid = pid;
    header.tid = tid;
    header.epoch = region.header().epoch.load(Ordering::Relaxed);
    if header.time_ns == 0 {
        header.time_ns = realtime_ns();
    }
    r.push(ev.as_bytes(), E::SLOTS)
}

/// Announces this process (constructor, or fork child).
pub fn emit_process(g: &Guard, forked: bool) {
    let mut ev = ProcessEvent {
        header: EventHeader::new(kind::PROCESS, ProcessEvent::SLOTS, 0, 0, 0),
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() } as u32,
        exe_len: 0,
        _pad: 0,
        exe: [0; 96],
    };
    if forked {
        ev.header.flags |= process_flags::FORKED;
    }
    let name = crate::program_name();
    let n = name.len().min(ev.exe.len());
    ev.exe[..n].copy_from_slice(&name[..n]);
    ev.exe_len = n as u16;
    if let Some(r) = region() {
        r.header()
            .attached_processes
            .fetch_add(1, Ordering::Relaxed);
    }
    emit(g, &mut ev);
}
