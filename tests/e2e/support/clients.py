"""The client matrix: real programs that upload and download through the forwarder.

Each client exits non-zero unless the server received exactly the upload and it
downloaded exactly the requested size, so a passing client moved the payload it claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .harness import CLIENTS, PYTHON

UPLOAD = 3 * 1024 * 1024
DOWNLOAD = 3 * 1024 * 1024


@dataclass(frozen=True)
class HttpClient:
    name: str
    scheme: str  # "http" or "https"
    requires: tuple[str, ...]
    argv: Callable[[str, int, int, Path, Path], list[str]]  # (base_url, up, down, cert, workdir)
    env: Callable[[Path], dict] = lambda cert: {}
    # Largest protocol overhead the self-check accepts on top of the payload, per direction.
    max_overhead: int = 64 * 1024

    @property
    def id(self) -> str:
        return f"{self.name}-{self.scheme}"


def _py(script):
    def argv(url, up, down, cert, workdir):
        out = [PYTHON, str(CLIENTS / script), "--url", url, "--upload", str(up), "--download", str(down)]
        return out + (["--cafile", str(cert)] if url.startswith("https") else [])

    return argv


def _node(script, pass_ca):
    def argv(url, up, down, cert, workdir):
        out = ["node", str(CLIENTS / script), url, str(up), str(down)]
        return out + ([str(cert)] if pass_ca and url.startswith("https") else [])

    return argv


def _curl(url, up, down, cert, workdir):
    body = workdir / f"curl-upload-{up}.bin"
    if not body.exists() or body.stat().st_size != up:
        body.write_bytes(b"c" * up)
    tls = ["--cacert", str(cert)] if url.startswith("https") else []
    return [
        "curl", "-sS", "--fail", "--max-time", "60", *tls, "-o", "/dev/null",
        f"{url}/download?size={down}",
        "--next", "-sS", "--fail", "--max-time", "60", *tls, "-o", "/dev/null",
        "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{body}", f"{url}/upload",
    ]


def _java(url, up, down, cert, workdir):
    out = ["java", str(CLIENTS / "Client.java"), url, str(up), str(down)]
    return out + ([str(cert)] if url.startswith("https") else [])


def _matrix() -> list[HttpClient]:
    out = []
    for scheme in ("http", "https"):
        need_tls = ("openssl",) if scheme == "https" else ()
        out += [
            HttpClient("python-urllib", scheme, need_tls, _py("py_urllib.py")),
            HttpClient("python-http.client", scheme, need_tls, _py("py_httpclient.py")),
            HttpClient("node-http", scheme, ("node", *need_tls), _node("node_http.js", pass_ca=True)),
            HttpClient(
                "node-fetch",
                scheme,
                ("node", *need_tls),
                _node("node_fetch.js", pass_ca=False),
                env=lambda cert: {"NODE_EXTRA_CA_CERTS": str(cert)},
            ),
            HttpClient("curl", scheme, ("curl", *need_tls), _curl),
            HttpClient("java-httpclient", scheme, ("java", *need_tls), _java),
        ]
    return out


HTTP_CLIENTS = _matrix()


@dataclass(frozen=True)
class RawClient:
    name: str
    requires: tuple[str, ...]
    argv: Callable[[int, int, int], list[str]]  # (port, send, recv)


RAW_CLIENTS = [
    RawClient(
        "python-asyncio",
        (),
        lambda port, send, recv: [
            PYTHON, str(CLIENTS / "py_asyncio_raw.py"), "--port", str(port),
            "--send", str(send), "--recv", str(recv), "--conns", "2",
        ],
    ),
    RawClient(
        "node-net",
        ("node",),
        lambda port, send, recv: ["node", str(CLIENTS / "node_net.js"), "127.0.0.1", str(port), str(send), str(recv)],
    ),
]
RAW_CONNS = {"python-asyncio": 2, "node-net": 1}


def params(items) -> list:
    """pytest params with ids and a requires(...) mark for each client's tools."""
    import pytest

    return [pytest.param(c, id=getattr(c, "id", c.name), marks=[pytest.mark.requires(*c.requires)]) for c in items]
