"""Where the non-Python parts of the package live (C runtime, templates, board data).

In a wheel they are installed under ``tinylora/_data/<name>``; in a source checkout (an
editable install, or the tests) they are the top-level ``<repo>/<name>`` directories.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``<package>/_data/<name>`` if it exists, else ``<repo root>/<name>``."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
