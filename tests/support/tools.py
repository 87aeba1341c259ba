"""A missing cross compiler, emulator or tool: a failure when CI is set (CI installs them all),
a skip that says why on a user's machine without them."""
from __future__ import annotations

import os

import pytest

from tinylora import emulate

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (CI is set, so a missing tool is an error)")
    pytest.skip(why)


def require(toolchain: str) -> None:
    """Skip (fail under CI) unless ``toolchain``'s compiler and emulator are installed."""
    ok, why = emulate.available(toolchain)
    if not ok:
        missing(why)
