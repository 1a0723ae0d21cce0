#!/usr/bin/env python3
"""asyncio streams client for the raw server protocol (8-byte header, L bytes up, R bytes down)."""
import argparse
import asyncio
import json
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--send", type=int, required=True, help="request payload bytes (after the 8-byte header)")
ap.add_argument("--recv", type=int, required=True, help="response bytes")
ap.add_argument("--conns", type=int, default=1, help="concurrent connections")
args = ap.parse_args()


async def one() -> int:
    reader, writer = await asyncio.open_connection(args.host, args.port)
    writer.write(struct.pack("!II", args.send, args.recv))
    chunk = b"a" * 65536
    left = args.send
    while left:
        n = min(left, len(chunk))
        writer.write(chunk[:n])
        left -= n
        await writer.drain()
    await writer.drain()
    got = 0
    while data := await reader.read(65536):
        got += len(data)
    writer.close()
    await writer.wait_closed()
    return got


async def main() -> None:
    results = await asyncio.gather(*(one() for _ in range(args.conns)))
    bad = [r for r in results if r != args.recv]
    if bad:
        sys.exit(f"received {bad}, expected {args.recv} on each connection")
    print(json.dumps({"connections": args.conns, "sent": args.send, "received": args.recv}))


asyncio.run(main())
