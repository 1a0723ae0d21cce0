#!/usr/bin/env python3
"""http.client client: upload and download over one keep-alive connection."""
import argparse
import http.client
import json
import ssl
import sys
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--upload", type=int, required=True)
ap.add_argument("--download", type=int, required=True)
ap.add_argument("--cafile")
args = ap.parse_args()

u = urllib.parse.urlsplit(args.url)
if u.scheme == "https":
    ctx = ssl.create_default_context(cafile=args.cafile)
    conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30, context=ctx)
else:
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

body = b"h" * args.upload
conn.request("POST", "/upload", body=body, headers={"Content-Type": "application/octet-stream"})
resp = conn.getresponse()
received = json.loads(resp.read())["received"]
if received != args.upload:
    sys.exit(f"server received {received} bytes, sent {args.upload}")

conn.request("GET", f"/download?size={args.download}")
resp = conn.getresponse()
got = len(resp.read())
if got != args.download:
    sys.exit(f"downloaded {got} bytes, expected {args.download}")
conn.close()
print(json.dumps({"uploaded": args.upload, "downloaded": got}))
