"""A small program that does a little of everything on the network, for `netmon run`.

It starts a local HTTP server (a separate, unmonitored process), resolves `localhost`,
downloads 1 MiB, uploads 256 KiB over a keep-alive connection, and tries a port where
nothing listens. Everything stays on 127.0.0.1; no network access is needed.
"""

import http.client
import http.server
import os
import socket
import subprocess
import sys
import time

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * int(self.path.rsplit("=", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = len(self.rfile.read(int(self.headers["Content-Length"])))
        body = str(n).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def main() -> int:
    # The server is not the program under study: keep netmon out of it.
    env = dict(os.environ, NETMON_DISABLE="1")
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, env=env, text=True)
    try:
        port = int(server.stdout.readline())
        host = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        conn = http.client.HTTPConnection(host, port)
        conn.request("GET", "/download?size=1048576")
        got = len(conn.getresponse().read())
        conn.request("POST", "/upload", body=b"y" * 262144)
        sent = conn.getresponse().read().decode()
        conn.close()
        print(f"downloaded {got} bytes, uploaded {sent} bytes")
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError as e:
            print(f"port 9: {e.strerror}")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    time.sleep(0)
    sys.exit(main())
