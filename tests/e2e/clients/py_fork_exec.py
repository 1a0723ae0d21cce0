#!/usr/bin/env python3
"""fork + vfork/exec + posix_spawn: each process makes its own connections.

- the parent connects to the raw server;
- an os.fork() child connects to the raw server;
- subprocess.Popen starts curl (CPython uses vfork + exec for this);
- os.posix_spawnp starts curl (glibc's clone(CLONE_VM|CLONE_VFORK) + exec).
Both curls download from the HTTP server. The pids go to --out as JSON.
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--raw-port", type=int, required=True)
ap.add_argument("--http-url", required=True)
ap.add_argument("--send", type=int, default=1000)
ap.add_argument("--recv", type=int, default=2000)
ap.add_argument("--download", type=int, default=5000)
ap.add_argument("--out", required=True)
args = ap.parse_args()


def raw_exchange() -> None:
    with socket.create_connection(("127.0.0.1", args.raw_port), timeout=30) as s:
        s.sendall(struct.pack("!II", args.send, args.recv) + b"p" * args.send)
        got = 0
        while data := s.recv(65536):
            got += len(data)
    if got != args.recv:
        raise SystemExit(f"pid {os.getpid()}: received {got}, expected {args.recv}")


pids = {"parent": os.getpid()}
raw_exchange()

child = os.fork()
if child == 0:
    try:
        raw_exchange()
    except BaseException as e:  # noqa: BLE001 - report and fail the child
        print(f"fork child failed: {e!r}", file=sys.stderr)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(child, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("fork child failed")
pids["fork_child"] = child

curl = ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", f"{args.http_url}/download?size={args.download}"]
p = subprocess.Popen(curl)
pids["subprocess_curl"] = p.pid
if p.wait() != 0:
    sys.exit(f"subprocess curl failed: {p.returncode}")

spawned = os.posix_spawnp("curl", curl, os.environ)
pids["posix_spawn_curl"] = spawned
_, status = os.waitpid(spawned, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("posix_spawn curl failed")

with open(args.out, "w") as f:
    json.dump(pids, f)
print(json.dumps(pids))
