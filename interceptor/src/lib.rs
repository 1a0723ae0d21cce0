//! `libnetmon.so`: loaded with `LD_PRELOAD`, it hooks the libc network calls of any program
//! and records what the program does on the network — name lookups, connection attempts and
//! their outcome, bytes per socket, TCP quality at close — into the shared-memory region the
//! collector created (`NETMON_SHM`).
//!
//! Invariants (each has a test in `tests/`):
//! - the program's behaviour never changes: same return values, same `errno`, same blocking;
//! - hooks never block, never lock, never allocate, never panic; side work is guarded against
//!   re-entrancy and the real function is called exactly once, outside the guard;
//! - `fork` gives the child its own accounting; a `vfork` child cannot change ours;
//! - inert inside `netmon` itself, in setuid/setgid programs, with `NETMON_DISABLE=1`, and when
//!   no region is configured or the region is not one we can trust.
//!
//! Code map: [`hooks`] (the exported functions, thin) → [`sockets`] / [`dns`] (the logic) →
//! [`events`] and [`shared`] (the region). [`real`] finds the real libc functions, [`thread`]
//! holds the per-thread guard, [`arch`] the architecture-specific parts.

mod arch;
mod async_dns;
mod dns;
mod events;
pub mod hooks;
mod inherit;
mod platform;
mod real;
mod runtime_api;
mod shared;
mod sockets;
mod thread;

use core::ffi::{CStr, c_char};
use core::sync::atomic::Ordering;
use netmon_proto::region::Region;

/// The name the collector binary runs under; the interceptor stays inert inside it.
const COLLECTOR_NAME: &[u8] = b"netmon";

unsafe extern "C" {
    static program_invocation_short_name: *const c_char;
}

/// The program's short name (`argv[0]` without directories).
pub(crate) fn program_name() -> &'static [u8] {
    // SAFETY: glibc initialises this before any constructor runs; it is a C string or null.
    unsafe { dns::c_str_bytes(program_invocation_short_name, 256) }
}

fn env(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: getenv with a valid C string; we only read the result during initialisation.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returns a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) })
    }
}

/// Whether this process must not be monitored.
fn must_stay_inert() -> bool {
    // SAFETY: getauxval has no preconditions.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        return true; // setuid/setgid or otherwise privileged: never touch it
    }
    if env(c"NETMON_DISABLE").is_some_and(|v| v.to_bytes() == b"1") {
        return true;
    }
    program_name() == COLLECTOR_NAME
}

extern "C" fn init() {
    let Some(g) = thread::Guard::enter() else {
        return;
    };
    if must_stay_inert() {
        return;
    }
    let Some(path) = env(c"NETMON_SHM") else {
        return;
    };
    real::resolve_all();
    let Ok(region) = Region::open(path) else {
        return;
    };
    if let Some(api) = env(c"AWS_LAMBDA_RUNTIME_API") {
        platform::configure(api.to_bytes());
    }
    events::create_ring_key();
    shared::MY_PID.store(shared::real_pid(), Ordering::Relaxed);
    shared::install(region);
    // SAFETY: registering a plain function as fork-child handler.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
    events::emit_process(&g, false);
}

/// Runs in the child of every `fork` (not `vfork`, not `posix_spawn`), single-threaded.
extern "C" fn after_fork_child() {
    if shared::region().is_none() {
        return;
    }
    shared::MY_PID.store(shared::real_pid(), Ordering::Relaxed);
    sockets::fork_child();
    if let Some(g) = thread::Guard::enter() {
        events::emit_process(&g, true);
    }
}

/// Runs at normal process exit (`exit`, return from `main`).
extern "C" fn fini() {
    sockets::finalize_all();
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
