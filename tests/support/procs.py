"""Processes a test started and must not leave behind, found through /proc."""
from __future__ import annotations

import pathlib


def pids_where(predicate) -> list[int]:
    """Processes (by pid) whose (cmdline bytes, environ list) satisfy ``predicate``."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd, env = (d / "cmdline").read_bytes(), (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if predicate(cmd, env):
            out.append(int(d.name))
    return out


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line contains ``marker`` (e.g. the folder of their ELF)."""
    return pids_where(lambda cmd, env: b"qemu-system" in cmd and marker.encode() in cmd)
