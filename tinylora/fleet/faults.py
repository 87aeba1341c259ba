"""Fault injection for the bad-client tests and demos: ``--faults "CLIENT:ROUND:KIND,..."``.

KIND is ``raise`` (the client fails mid-round), ``truncate`` (it sends half its update),
``wrong-model`` (an update for another base model) or ``stall`` (it replies after STALL_SECONDS,
past any sensible round timeout). Nothing happens without the option.
"""
from __future__ import annotations

import time

import numpy as np

from tinylora.errors import ConfigError, FleetError

KINDS = ("raise", "truncate", "wrong-model", "stall")
STALL_SECONDS = 600.0


def parse(spec: str) -> dict[tuple[int, int], str]:
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or parts[2] not in KINDS:
            raise ConfigError(f"bad fault {item!r}: write CLIENT:ROUND:KIND with KIND one of {', '.join(KINDS)}")
        out[int(parts[0]), int(parts[1])] = parts[2]
    return out


def apply(spec: str, client: int, rnd: int, vec: np.ndarray, header: bytes) -> tuple[np.ndarray, bytes]:
    """The (update, adapter header) a client sends, after its fault for this round, if any."""
    kind = parse(spec).get((client, rnd))
    if kind == "raise":
        raise FleetError(f"client {client} failed in round {rnd} (injected fault)")
    if kind == "stall":
        time.sleep(STALL_SECONDS)
    if kind == "truncate":
        vec = vec[: len(vec) // 2]
    if kind == "wrong-model":
        header = header[:12] + bytes(32) + header[44:]   # another base model's SHA-256
    return vec, header
