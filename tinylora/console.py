"""Console output of the command line: tables, short layer names, a progress bar."""
from __future__ import annotations

import sys

from tinylora.ref.trainer import short_name


def short(name: str, width: int = 28) -> str:
    """A readable layer name (train.short_name), cut to `width` characters."""
    text = short_name(name)
    return text if len(text) <= width else text[: width - 1] + "~"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


class Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.last = stream, width, -1

    def __call__(self, epoch: int, done: int, total: int) -> None:
        if not self.stream.isatty():   # logs and pipes get the per-epoch table instead
            return
        pct = done * 100 // total
        if pct == self.last and done != total:
            return
        self.last = pct
        fill = done * self.width // total
        self.stream.write(f"\repoch {epoch + 1}  [{'#' * fill}{'.' * (self.width - fill)}] {pct:3d}%")
        if done == total:
            self.stream.write("\n")
            self.last = -1
        self.stream.flush()
