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

/// Raw system call numbers the `syscall()` hook handles itself.
pub const SYS_CLOSE: libc::c_long = libc::SYS_close;
pub const SYS_CLOSE_RANGE: libc::c_long = libc::SYS_close_range;

/// The argument word type for variadic arguments read as fixed parameters.
pub type VarArg = usize;

// `syscall(long, ...)` is hooked with a naked entry point that tail-jumps to the real
// function for every number but `SYS_close` and `SYS_close_range`. A Rust frame around the real
// call would break `syscall(SYS_vfork)` and `syscall(SYS_clone, CLONE_VM | CLONE_VFORK, ...)`:
// the child returns through the shared stack, and the parent later returns into whatever the
// child left there. With a tail jump the hook owns no stack at all, exactly like glibc's own.

/// # Safety
/// Same contract as glibc's `syscall`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall() {
    core::arch::naked_asm!(
        "cmp rdi, {close}",
        "je 2f",
        "cmp rdi, {close_range}",
        "je 2f",
        // r11 is a scratch register in the SysV ABI; rax (%al: vector-register count of a
        // variadic call) is left untouched for the real function.
        "mov r11, qword ptr [rip + {real}]",
        "test r11, r11",
        "jz 2f",
        "jmp r11",
        "2:",
        "jmp {tracked}",
        close = const libc::SYS_close,
        close_range = const libc::SYS_close_range,
        real = sym crate::real::SYSCALL,
        tracked = sym crate::hooks::syscall_tracked,
    )
}

/// # Safety
/// Same contract as glibc's `syscall`.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall() {
    core::arch::naked_asm!(
        "cmp x0, #{close}",
        "b.eq 2f",
        "cmp x0, #{close_range}",
        "b.eq 2f",
        // x16 is the intra-procedure-call scratch register.
        "adrp x16, {real}",
        "ldr x16, [x16, :lo12:{real}]",
        "cbz x16, 2f",
        "br x16",
        "2:",
        "b {tracked}",
        close = const libc::SYS_close,
        close_range = const libc::SYS_close_range,
        real = sym crate::real::SYSCALL,
        tracked = sym crate::hooks::syscall_tracked,
    )
}
