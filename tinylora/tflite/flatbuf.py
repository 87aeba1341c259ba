"""A small, bounds-checked FlatBuffers reader (read-only, no schema compiler).

Only what a ``.tflite`` file needs: tables, scalars, strings, vectors of scalars
and vectors of tables, unions. Every offset is checked against the buffer, so a
damaged file raises :class:`FlatBufferError` (never IndexError or a struct
error from deep inside). Layout facts follow the FlatBuffers binary format:
a table starts with an int32 offset back to its vtable; the vtable holds uint16
sizes and per-field offsets; references are uint32 offsets relative to where
they are stored; vectors and strings start with a uint32 length.
"""
from __future__ import annotations

import struct

import numpy as np

from tinylora.errors import FlatBufferError

_SCALARS = {
    "bool": ("<?", 1), "int8": ("<b", 1), "uint8": ("<B", 1), "int16": ("<h", 2),
    "uint16": ("<H", 2), "int32": ("<i", 4), "uint32": ("<I", 4), "int64": ("<q", 8),
    "uint64": ("<Q", 8), "float32": ("<f", 4), "float64": ("<d", 8),
}
_NUMPY = {"int8": "<i1", "uint8": "<u1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
          "float32": "<f4", "float64": "<f8", "uint32": "<u4", "uint16": "<u2"}


class Buffer:
    """The raw bytes of one FlatBuffer, with checked reads."""

    def __init__(self, data: bytes):
        self.data = memoryview(bytes(data))
        self.size = len(self.data)

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatBufferError(
                f"{what}: bytes {pos}..{pos + length} lie outside the {self.size}-byte file")

    def scalar(self, pos: int, kind: str, what: str = "scalar"):
        fmt, size = _SCALARS[kind]
        self.check(pos, size, what)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self, identifier: bytes | None = None) -> Table:
        if self.size < 8:
            raise FlatBufferError(f"file is {self.size} bytes, too short for a FlatBuffer")
        if identifier is not None and bytes(self.data[4:8]) != identifier:
            raise FlatBufferError(
                f"file identifier is {bytes(self.data[4:8])!r}, expected {identifier!r}")
        return Table(self, self.scalar(0, "uint32", "root offset"), "root")


class Table:
    """A table at a position; fields are addressed by their schema slot number."""

    def __init__(self, buf: Buffer, pos: int, name: str):
        self.buf = buf
        self.pos = pos
        self.name = name
        soffset = buf.scalar(pos, "int32", f"{name} vtable offset")
        self.vtable = pos - soffset
        self.vtable_size = buf.scalar(self.vtable, "uint16", f"{name} vtable size")
        if self.vtable_size < 4 or self.vtable_size % 2:
            raise FlatBufferError(f"{name}: vtable size {self.vtable_size} is invalid")
        buf.check(self.vtable, self.vtable_size, f"{name} vtable")

    def _field(self, slot: int) -> int:
        """Absolute position of field `slot`, or 0 when the field is absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_size:
            return 0
        off = self.buf.scalar(self.vtable + entry, "uint16")
        return self.pos + off if off else 0

    def has(self, slot: int) -> bool:
        return self._field(slot) != 0

    def scalar(self, slot: int, kind: str, default=0):
        pos = self._field(slot)
        return default if not pos else self.buf.scalar(pos, kind, f"{self.name} field {slot}")

    def _ref(self, slot: int, what: str) -> int | None:
        pos = self._field(slot)
        if not pos:
            return None
        return pos + self.buf.scalar(pos, "uint32", f"{what} offset")

    def table(self, slot: int, name: str) -> Table | None:
        target = self._ref(slot, name)
        return None if target is None else Table(self.buf, target, name)

    def _vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int] | None:
        target = self._ref(slot, what)
        if target is None:
            return None
        length = self.buf.scalar(target, "uint32", f"{what} length")
        self.buf.check(target + 4, length * elem_size, what)
        return target + 4, length

    def string(self, slot: int, what: str = "string") -> str | None:
        vec = self._vector(slot, 1, what)
        if vec is None:
            return None
        start, length = vec
        return bytes(self.buf.data[start:start + length]).decode("utf-8", errors="replace")

    def array(self, slot: int, kind: str, what: str = "vector") -> np.ndarray | None:
        """A vector of scalars as a numpy array (a copy; little-endian)."""
        dtype = np.dtype(_NUMPY[kind])
        vec = self._vector(slot, dtype.itemsize, what)
        if vec is None:
            return None
        start, length = vec
        return np.frombuffer(self.buf.data, dtype=dtype, count=length, offset=start).copy()

    def tables(self, slot: int, name: str) -> list[Table]:
        """A vector of tables (empty list when absent)."""
        vec = self._vector(slot, 4, f"{name} vector")
        if vec is None:
            return []
        start, length = vec
        out = []
        for i in range(length):
            elem = start + 4 * i
            out.append(Table(self.buf, elem + self.buf.scalar(elem, "uint32"), f"{name}[{i}]"))
        return out
