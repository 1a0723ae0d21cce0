"""A hostile monitored process: it maps netmon's shared memory itself (NETMON_SHM, as the
interceptor does) and writes random bytes over everything that is not another process's: the
header's counters, its own rings and the free ones, its own socket slots — while another
program (`workload steady`) runs beside it under the same netmon.

    scribbler.py SYNC SEED

Makes some TCP traffic of its own first (so it owns a ring and socket slots), waits for
SYNC.pid (the other program is at its rendezvous), scribbles, creates SYNC.go, scribbles again
while the other program runs, and makes more traffic. Offsets follow proto/src/layout.rs.
"""

import mmap
import os
import random
import socket
import struct
import sys
import time

HEADER_COUNTERS = (80, 128)  # dropped_no_ring .. invocations_done
RING_CONTROL = 192
SOCKET_SLOT = 192


def traffic(rounds: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        for _ in range(rounds):
            with socket.create_connection(server.getsockname()) as c:
                s, _ = server.accept()
                with s:
                    c.sendall(b"s" * 100)
                    s.recv(100)


def scribble(m: mmap.mmap, rng: random.Random, me: int) -> dict:
    rings, _capacity, _slot_size, sockets = struct.unpack_from("<IIII", m, 24)
    rings_offset, ring_stride, sockets_offset = struct.unpack_from("<QQQ", m, 40)
    lo, hi = HEADER_COUNTERS
    m[lo:hi] = rng.randbytes(hi - lo)
    done = {"rings": 0, "slots": 0}
    for i in range(rings):
        at = rings_offset + i * ring_stride
        state, owner = struct.unpack_from("<II", m, at)
        if state == 0 or owner == me:
            m[at : at + ring_stride] = rng.randbytes(ring_stride)
            done["rings"] += 1
    for i in range(sockets):
        at = sockets_offset + i * SOCKET_SLOT
        (pid,) = struct.unpack_from("<I", m, at + 8)
        if pid == me:
            m[at : at + SOCKET_SLOT] = rng.randbytes(SOCKET_SLOT)
            done["slots"] += 1
    return done


def main() -> int:
    sync, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    traffic(20)
    deadline = time.monotonic() + 30
    while not (os.path.exists(sync + ".pid") and open(sync + ".pid").read().endswith("\n")):
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.01)
    fd = os.open(os.environ["NETMON_SHM"], os.O_RDWR)
    size = os.fstat(fd).st_size
    m = mmap.mmap(fd, size)
    os.close(fd)
    first = scribble(m, rng, os.getpid())
    open(sync + ".go", "w").close()
    traffic(20)
    second = scribble(m, rng, os.getpid())
    traffic(20)
    print(f"scribbled {first} {second}", file=sys.stderr)
    return 0 if first["rings"] and first["slots"] else 4


if __name__ == "__main__":
    sys.exit(main())
