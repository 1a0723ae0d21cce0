"""Fault injection helpers for the e2e tests (root only where noted)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path


@contextlib.contextmanager
def full_tmpfs(where: Path):
    """A tiny tmpfs mounted at `where` (root only) and filled up — no free block, no free
    inode: creating a file or a directory there fails with ENOSPC. Unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=16,mode=1777", "netmon-full", str(where)], check=True
    )
    try:
        try:
            (where / "big").write_bytes(b"x" * (1 << 20))
        except OSError:
            pass
        for i in range(1000):
            try:
                (where / f"f{i}").touch()
            except OSError:
                break
        try:
            (where / "probe").mkdir()
        except OSError:
            pass
        else:
            raise AssertionError(f"{where} is not full")
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
