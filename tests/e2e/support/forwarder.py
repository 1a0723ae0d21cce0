#!/usr/bin/env python3
"""Byte-counting TCP forwarder: the independent witness for netmon's byte counts.

It runs as its own process (never under netmon), listens on 127.0.0.1, and
forwards every accepted connection to one backend. For each connection it counts
the bytes it read from the client (client->server) and the bytes it wrote to the
client (server->client) at the raw socket level, so for TLS these are the
encrypted bytes on the wire. When a connection is fully done (both directions
ended), its record is added to a JSON stats file, replaced atomically:

    {"open": 0, "accepted": 2,
     "connections": [{"client_to_server": 123, "server_to_client": 456}, ...],
     "total_client_to_server": 123, "total_server_to_client": 456}

The totals include connections still open and are rewritten as bytes flow, so a test can
read exact per-interval counts of a kept-alive connection.

Half-close is forwarded: EOF from one side becomes shutdown(SHUT_WR) on the other.

Usage:
    forwarder.py --target HOST:PORT --stats FILE [--port-file FILE]
The listening port is printed on stdout (one line) once the socket listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading

CHUNK = 256 * 1024


class Stats:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.open = 0
        self.accepted = 0
        self.connections: list[dict] = []
        self.total = {"client_to_server": 0, "server_to_client": 0}
        self._write()

    def moved(self, direction: str, n: int) -> None:
        with self.lock:
            self.total[direction] += n
            self._write()

    def opened(self) -> None:
        with self.lock:
            self.open += 1
            self.accepted += 1
            self._write()

    def closed(self, record: dict) -> None:
        with self.lock:
            self.open -= 1
            self.connections.append(record)
            self._write()

    def _write(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "open": self.open,
                    "accepted": self.accepted,
                    "connections": self.connections,
                    "total_client_to_server": self.total["client_to_server"],
                    "total_server_to_client": self.total["server_to_client"],
                },
                f,
            )
        os.replace(tmp, self.path)


def pump(
    src: socket.socket,
    dst: socket.socket,
    counter: list[int],
    errors: list[str],
    name: str,
    stats: "Stats | None" = None,
) -> None:
    """Copy src -> dst until EOF on src; count bytes that dst's socket accepted."""
    direction = "client_to_server" if name == "c2s" else "server_to_client"
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = dst.send(view)
                counter[0] += n
                if stats is not None:
                    stats.moved(direction, n)
                view = view[n:]
    except OSError as e:
        errors.append(f"{name}: {e!r}")
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(client: socket.socket, target: tuple[str, int], stats: Stats, timeout: float) -> None:
    record = {"client_to_server": 0, "server_to_client": 0, "errors": []}
    c2s = [0]
    s2c = [0]
    errors: list[str] = []
    try:
        client.settimeout(timeout)
        try:
            backend = socket.create_connection(target, timeout=timeout)
        except OSError as e:
            errors.append(f"backend connect: {e!r}")
            return
        with backend:
            t = threading.Thread(target=pump, args=(backend, client, s2c, errors, "s2c", stats), daemon=True)
            t.start()
            pump(client, backend, c2s, errors, "c2s", stats)
            t.join(timeout)
    finally:
        try:
            client.close()
        except OSError:
            pass
        record["client_to_server"] = c2s[0]
        record["server_to_client"] = s2c[0]
        record["errors"] = errors
        stats.closed(record)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="backend HOST:PORT")
    ap.add_argument("--stats", required=True, help="JSON stats file to maintain")
    ap.add_argument("--port-file", help="also write the listening port here")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-socket idle timeout (s)")
    args = ap.parse_args()

    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    stats = Stats(args.stats)

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lport = lsock.getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(lport))
        os.replace(tmp, args.port_file)
    print(lport, flush=True)

    while True:
        try:
            conn, _ = lsock.accept()
        except InterruptedError:
            continue
        stats.opened()
        threading.Thread(target=handle, args=(conn, target, stats, args.timeout), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
