//! Architecture-specific pieces, kept in one place (Lambda runs on x86_64 and arm64).
//!
//! Stable Rust cannot *define* a C-variadic function, but `fcntl(int, int, ...)` and
//! `syscall(long, ...)` must be hooked. On the System V x86_64 ABI and the Linux AArch64 ABI,
//! variadic integer/pointer arguments travel in the same registers as fixed ones, so a hook
//! declared with fixed trailing `usize` parameters receives whatever the caller passed (a
//! garbage value where it passed nothing, which is only ever forwarded, never interpreted).
//! The real functions are then *called* as variadic, which stable Rust supports. This does not
//! hold on Apple's AArch64 ABI, which is why this module refuses to build elsewhere.

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("libnetmon supports glibc on x86_64 and aarch64 Linux only");

/// Raw system call numbers the `syscall()` hook recognises.
pub const SYS_CLOSE: libc::c_long = libc::SYS_close;
pub const SYS_CLOSE_RANGE: libc::c_long = libc::SYS_close_range;

/// The argument word type for variadic arguments read as fixed parameters.
pub type VarArg = usize;
