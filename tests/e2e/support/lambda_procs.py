"""Processes of one local Lambda execution environment: start, track, freeze, thaw, kill, log capture.

AWS Lambda runs the runtime and the external extensions in one sandbox and, once every one of
them has called `next`, freezes the whole sandbox (cgroup freezer): background threads and child
processes stop too. We reproduce that without cgroups: every process we start leads its own
process group (RAPID starts extensions with `Setpgid: true`), and the environment's members are
found by a /proc walk — our roots, everything in their process groups, and every descendant of
those by parent pid. Freezing sends SIGSTOP to each member and waits until the kernel reports
all of them stopped (state `T`), re-walking so that a process forked during the freeze is caught.

A process that leaves its process group and loses its parent (a daemon: setsid, parent exits) is
reparented to init and would escape that walk; two more rules keep it: a process once seen as a
member stays one while it lives (same pid and start time), and an orphan (parent pid 1) whose
environment carries the sandbox's marker variable is a member.

The stdout and stderr of each process go to one pipe (RAPID hands the same writer to both), read
line by line into a `LogSink`, like the function's CloudWatch log stream.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    state: str
    start: int  # start time in clock ticks after boot: tells a reused pid apart


def read_proc_table() -> dict[int, ProcStat]:
    """pid -> (ppid, pgrp, state, start time) for every process, from /proc/PID/stat."""
    table: dict[int, ProcStat] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may itself contain spaces or parentheses.
        rest = data[data.rfind(b")") + 2 :].split()  # rest[0] is field 3 (state)
        if len(rest) < 20:
            continue
        pid = int(name)
        table[pid] = ProcStat(pid, int(rest[1]), int(rest[2]), rest[0].decode(), int(rest[19]))
    return table


def has_environment_entry(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set size) of one process, 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class FreezeError(RuntimeError):
    pass


class ProcessTree:
    """The set of processes that make up one execution environment."""

    # Stopped, traced-stopped, zombie, dead: nothing more to wait for.
    _SETTLED = frozenset("TtZX")

    def __init__(self, marker: tuple[str, str]) -> None:
        self._roots: set[int] = set()
        self._known: dict[int, int] = {}  # pid -> start time of every process seen as a member
        self._marker = f"{marker[0]}={marker[1]}".encode()
        self._lock = threading.Lock()

    def add_root(self, pid: int) -> None:
        """A process we started in its own process group (pgid == pid)."""
        with self._lock:
            self._roots.add(pid)

    def clear(self) -> None:
        with self._lock:
            self._roots.clear()
            self._known.clear()

    def members(self) -> dict[int, ProcStat]:
        """Every live process of the environment (zombies included, to be reaped by their parent)."""
        with self._lock:
            roots, known = set(self._roots), dict(self._known)
        if not roots:
            return {}
        table = read_proc_table()
        me = os.getpid()
        chosen = {
            pid
            for pid, st in table.items()
            if pid in roots
            or st.pgrp in roots
            or known.get(pid) == st.start
            or (st.ppid == 1 and has_environment_entry(pid, self._marker))
        }
        children: dict[int, list[int]] = {}
        for pid, st in table.items():
            children.setdefault(st.ppid, []).append(pid)
        stack = list(chosen)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in chosen:
                    chosen.add(child)
                    stack.append(child)
        chosen.discard(me)
        with self._lock:
            self._known.update({pid: table[pid].start for pid in chosen})
        return {pid: table[pid] for pid in chosen}

    def freeze(self, timeout: float = 5.0) -> list[int]:
        """SIGSTOP every member; return when all are stopped (like the Lambda freezer)."""
        deadline = time.monotonic() + timeout
        while True:
            running = [pid for pid, st in self.members().items() if st.state not in self._SETTLED]
            if not running:
                return sorted(self.members())
            for pid in running:
                _signal(pid, signal.SIGSTOP)
            if time.monotonic() > deadline:
                raise FreezeError(f"processes did not stop within {timeout}s: {running}")
            time.sleep(0.0005)

    def thaw(self) -> None:
        """SIGCONT every member (stopped processes cannot fork, so one walk finds them all)."""
        for pid in self.members():
            _signal(pid, signal.SIGCONT)

    def signal_group(self, pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every member until none is left alive (zombies are their parents' business)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [pid for pid, st in self.members().items() if st.state not in "ZX"]
            if not alive:
                return
            for pid in alive:
                _signal(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise FreezeError(f"processes survived SIGKILL for {timeout}s: {alive}")
            time.sleep(0.002)

    def peak_rss_mib(self) -> int:
        """Sum of the members' peak RSS, rounded up to MiB (Lambda's maxMemoryUsedMB)."""
        kib = sum(peak_rss_kib(pid) for pid in self.members())
        return (kib + 1023) // 1024


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class LogLine:
    """One line of the environment's log stream."""

    time: float  # epoch seconds when the line was read
    source: str  # "runtime", "extension:<name>", "platform"
    phase: str  # "init", a request id, or "shutdown"
    text: str

    def __str__(self) -> str:
        return f"{self.phase[:8]:8} {self.source:24} {self.text}"


class LogSink:
    """All lines of the environment, in arrival order, like one CloudWatch log stream.

    Each line is tagged with the phase current when it was read; the lifecycle drains every pipe
    (after freezing) before it moves to the next phase, so a line lands in the phase in which its
    process wrote it.
    """

    def __init__(self, path: Path, on_line: Callable[[LogLine], None] | None = None) -> None:
        self._lines: list[LogLine] = []
        self._lock = threading.Lock()
        self._phase = "init"
        self._file = open(path, "a", encoding="utf-8")
        self.path = path
        self.on_line = on_line

    @property
    def phase(self) -> str:
        return self._phase

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase

    def add(self, source: str, text: str, phase: str | None = None) -> None:
        with self._lock:
            line = LogLine(time.time(), source, phase or self._phase, text)
            self._lines.append(line)
            if not self._file.closed:  # a straggler after close() is kept in memory only
                self._file.write(f"{line}\n")
                self._file.flush()
        if self.on_line is not None:
            self.on_line(line)

    def lines(self, phase: str | None = None, source: str | None = None) -> list[LogLine]:
        with self._lock:
            found = list(self._lines)
        if phase is not None:
            found = [ln for ln in found if ln.phase == phase]
        if source is not None:
            found = [ln for ln in found if ln.source == source or ln.source.startswith(source + ":")]
        return found

    def close(self) -> None:
        with self._lock:
            self._file.close()


class PipeReader(threading.Thread):
    """Reads one process's combined stdout/stderr into the sink, line by line."""

    def __init__(self, fd: int, source: str, sink: LogSink) -> None:
        super().__init__(name=f"log-{source}", daemon=True)
        self.fd = fd
        self.source = source
        self.sink = sink
        self._partial = b""
        self._busy = threading.Lock()
        self._eof = threading.Event()

    def run(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                with self._busy:
                    if not chunk:
                        self._flush_partial()
                        break
                    data = self._partial + chunk
                    *complete, self._partial = data.split(b"\n")
                    for raw in complete:
                        self.sink.add(self.source, raw.decode("utf-8", "replace").rstrip("\r"))
        finally:
            self._eof.set()
            try:
                os.close(self.fd)
            except OSError:
                pass

    def _flush_partial(self) -> None:
        if self._partial:
            self.sink.add(self.source, self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def drain(self, timeout: float = 2.0) -> None:
        """Wait until everything written so far has been read (the writer must be stopped)."""
        deadline = time.monotonic() + timeout
        while not self._eof.is_set() and time.monotonic() < deadline:
            if _pending_bytes(self.fd) == 0:
                with self._busy:  # a chunk already read is fully processed
                    if _pending_bytes(self.fd) == 0:
                        self._flush_partial()
                        return
            time.sleep(0.001)

    def wait_eof(self, timeout: float) -> None:
        self._eof.wait(timeout)


def _pending_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]


# --------------------------------------------------------------------------- launching


@dataclass
class Launched:
    """A process we started: its Popen, log reader and exit status (filled in by a reaper)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen
    reader: PipeReader
    exited_at: float | None = None
    returncode: int | None = None
    exited: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.exited.is_set()

    def exit_description(self) -> str:
        """Like RAPID: `exit status N` or `signal: killed`."""
        rc = self.returncode
        if rc is None:
            return "still running"
        if rc < 0:
            try:
                return f"signal: {signal.Signals(-rc).name[3:].lower()}"
            except ValueError:
                return f"signal: {-rc}"
        return f"exit status {rc}"


def launch(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    source: str,
    sink: LogSink,
    tree: ProcessTree,
    on_exit: Callable[[Launched], None],
) -> Launched:
    """Start argv in its own process group, stdout+stderr into the sink; raises OSError if exec fails."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            close_fds=True,
            process_group=0,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    tree.add_root(proc.pid)
    reader = PipeReader(read_fd, source, sink)
    reader.start()
    launched = Launched(name, argv, proc, reader)

    def reap() -> None:
        launched.returncode = proc.wait()
        launched.exited_at = time.monotonic()
        launched.exited.set()
        on_exit(launched)

    threading.Thread(target=reap, name=f"reap-{name}", daemon=True).start()
    return launched
