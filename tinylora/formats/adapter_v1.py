"""Reading the version-1 adapter file (what `tinylora train --out` wrote before format 2; never
written any more). It names its base model by CRC32 only and states no loss, so the converted
adapter needs its model (:meth:`tinylora.formats.adapter.Adapter.check`) before it can be saved.

Bytes (little-endian): "TLAD", u16 version 1, u16 layer count, u32 CRC32 of the model file; per
layer u16 index, u16 rank, u32 K, u32 C, f32 s_A, s_B, s_h, alpha, then A [r, K] and B [C, r]
int16 masters; finally the CRC32 of everything before it.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from tinylora.errors import AdapterError

_LAYER = struct.Struct("<HHII4f")


def parse(data: bytes) -> tuple:
    """(layers, model_sha256=None, loss=None, form, updates, model_crc32) of a version-1 file."""
    if len(data) < 16:
        raise AdapterError(f"adapter file (version 1) is truncated: {len(data)} bytes")
    if struct.unpack_from("<I", data, len(data) - 4)[0] != zlib.crc32(data[:-4]):
        raise AdapterError("adapter file (version 1) is damaged (CRC32 mismatch)")
    _version, count, crc = struct.unpack_from("<HHI", data, 4)
    if count == 0:
        raise AdapterError("adapter file (version 1) names no layer")
    pos, end, layers = 12, len(data) - 4, []
    for n in range(count):
        if pos + _LAYER.size > end:
            raise AdapterError(f"adapter file (version 1) is truncated: layer {n + 1} of {count} is missing")
        index, r, depth, c_out, s_a, s_b, s_h, alpha = _LAYER.unpack_from(data, pos)
        pos += _LAYER.size
        size = 2 * (r * depth + c_out * r)
        if not (1 <= r <= 255 and depth >= 1 and c_out >= 1) or pos + size > end:
            raise AdapterError(f"adapter layer {index}: rank {r}, K {depth}, C {c_out} do not fit the "
                               "file: it is damaged")
        if not all(np.isfinite(v) and v > 0 for v in (s_a, s_b, s_h)) or not np.isfinite(alpha):
            raise AdapterError(f"adapter layer {index}: scales must be finite and > 0")
        a = np.frombuffer(data, "<i2", r * depth, pos).astype(np.int64).reshape(r, depth)
        b = np.frombuffer(data, "<i2", c_out * r, pos + 2 * r * depth).astype(np.int64).reshape(c_out, r)
        pos += size
        layers.append(dict(index=index, rank=r, s_a=s_a, s_b=s_b, s_h=s_h, alpha=alpha, a=a, b=b))
    if pos != end:
        raise AdapterError(f"adapter file (version 1) has {end - pos} bytes after its last layer: damaged")
    if [l["index"] for l in layers] != sorted({l["index"] for l in layers}):
        raise AdapterError("adapter file (version 1) names a layer twice or out of order: damaged")
    return layers, None, None, "masters", 0, crc


def encode(layers: list[dict], model_crc32: int) -> bytes:
    """Version-1 bytes (for tests of the conversion only: tinylora writes format 2)."""
    out = bytearray(b"TLAD" + struct.pack("<HHI", 1, len(layers), model_crc32))
    for l in layers:
        r, depth = l["a"].shape
        out += _LAYER.pack(l["index"], r, depth, l["b"].shape[0], l["s_a"], l["s_b"], l["s_h"], l["alpha"])
        out += np.asarray(l["a"]).astype("<i2").tobytes() + np.asarray(l["b"]).astype("<i2").tobytes()
    return bytes(out) + struct.pack("<I", zlib.crc32(bytes(out)))
