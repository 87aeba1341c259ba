"""USER CODE regions and manifest hashes: what a user may edit in a generated file."""
from __future__ import annotations

import hashlib
import re

from tinylora.errors import ProjectError

# ---------------------------------------------------------------------------------- user regions

_BEGIN = re.compile(r"^\s*(?:/\*|;|#)\s*USER CODE BEGIN (\S+)")


_END = re.compile(r"^\s*(?:/\*|;|#)\s*USER CODE END (\S+)")


def _split_regions(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(lines with every region emptied, {region name: its lines})."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    regions: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if current is None:
            out.append(line)
            m = _BEGIN.match(line)
            if m:
                current = m.group(1)
                if current in regions:
                    raise ProjectError(f"USER CODE region {current!r} appears twice")
                regions[current] = []
        else:
            m = _END.match(line)
            if m and m.group(1) == current:
                out.append(line)
                current = None
            elif _BEGIN.match(line):
                raise ProjectError(f"USER CODE region {current!r} is not closed")
            else:
                regions[current].append(line)
    if current is not None:
        raise ProjectError(f"USER CODE region {current!r} is not closed")
    return out, regions


def _region_names(text: str) -> list[str]:
    return list(_split_regions(text)[1])


def canonical(data: bytes) -> bytes:
    """A file's bytes with the contents of its USER CODE regions removed (what the manifest
    hashes: edits inside the regions are the user's, edits elsewhere are not)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    if "USER CODE BEGIN" not in text:
        return data
    try:
        return "".join(_split_regions(text)[0]).encode("utf-8")
    except ProjectError:
        return data + b"\0broken-regions"


def _merge(new: bytes, old: bytes, path: str) -> bytes:
    """``new`` with the contents of ``old``'s USER CODE regions."""
    old_regions = _split_regions(old.decode("utf-8"))[1]
    lines, new_regions = _split_regions(new.decode("utf-8"))
    lost = [n for n, body in old_regions.items() if n not in new_regions and "".join(body).strip()]
    if lost:
        raise ProjectError(f"{path}: USER CODE region(s) {', '.join(lost)} would be lost "
                           "(the new file has no such region)")
    out = []
    for line in lines:
        out.append(line)
        m = _BEGIN.match(line)
        if m:
            out.extend(old_regions.get(m.group(1), []))
    return "".join(out).encode("utf-8")


def _digest(data: bytes) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()
