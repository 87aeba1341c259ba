"""Reading .tflite files: the bytes become a plain :class:`Graph` of tensors and ops.

This layer knows the TFLite schema (field slots and enums, facts of
``schema.fbs``) and nothing about arithmetic. :mod:`tinylora.ref.model` turns a
``Graph`` into an executable, validated :class:`~tinylora.model.Model`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tinylora.errors import ModelError
from tinylora.tflite import flatbuf
from tinylora.tflite.opnames import BUILTIN_OPS

FILE_IDENTIFIER = b"TFL3"

#: TensorType enum -> (name, numpy dtype or None when tinylora cannot hold it)
TENSOR_TYPES = {
    0: ("FLOAT32", "<f4"), 1: ("FLOAT16", "<f2"), 2: ("INT32", "<i4"), 3: ("UINT8", "<u1"),
    4: ("INT64", "<i8"), 5: ("STRING", None), 6: ("BOOL", "<u1"), 7: ("INT16", "<i2"),
    8: ("COMPLEX64", None), 9: ("INT8", "<i1"), 10: ("FLOAT64", "<f8"), 11: ("COMPLEX128", None),
    12: ("UINT64", "<u8"), 13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", "<u4"),
    16: ("UINT16", "<u2"), 17: ("INT4", None), 18: ("BFLOAT16", None),
}
PADDING = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

# Schema slots (field numbers) of the tables tinylora reads.
_MODEL = dict(version=0, operator_codes=1, subgraphs=2, description=3, buffers=4)
_SUBGRAPH = dict(tensors=0, inputs=1, outputs=2, operators=3, name=4)
_TENSOR = dict(shape=0, type=1, buffer=2, name=3, quantization=4)
_QUANT = dict(scale=2, zero_point=3, quantized_dimension=6)
_BUFFER = dict(data=0, offset=1, size=2)
_OPERATOR = dict(opcode_index=0, inputs=1, outputs=2, options_type=3, options=4)
_OPCODE = dict(deprecated_builtin_code=0, custom_code=1, version=2, builtin_code=3)

# op name -> (BuiltinOptions union type, [(field, slot, kind, default, enum table)])
_OPTIONS = {
    "CONV_2D": (1, [("padding", 0, "int8", 0, PADDING), ("stride_w", 1, "int32", 1, None),
                    ("stride_h", 2, "int32", 1, None), ("activation", 3, "int8", 0, ACTIVATIONS),
                    ("dilation_w", 4, "int32", 1, None), ("dilation_h", 5, "int32", 1, None)]),
    "DEPTHWISE_CONV_2D": (2, [("padding", 0, "int8", 0, PADDING), ("stride_w", 1, "int32", 1, None),
                              ("stride_h", 2, "int32", 1, None),
                              ("depth_multiplier", 3, "int32", 1, None),
                              ("activation", 4, "int8", 0, ACTIVATIONS),
                              ("dilation_w", 5, "int32", 1, None),
                              ("dilation_h", 6, "int32", 1, None)]),
    "FULLY_CONNECTED": (8, [("activation", 0, "int8", 0, ACTIVATIONS),
                            ("weights_format", 1, "int8", 0, None),
                            ("keep_num_dims", 2, "bool", False, None)]),
    "SOFTMAX": (9, [("beta", 0, "float32", 0.0, None)]),
    "RESHAPE": (17, []),
    "AVERAGE_POOL_2D": (5, _POOL := [("padding", 0, "int8", 0, PADDING),
                                     ("stride_w", 1, "int32", 1, None),
                                     ("stride_h", 2, "int32", 1, None),
                                     ("filter_width", 3, "int32", 1, None),
                                     ("filter_height", 4, "int32", 1, None),
                                     ("activation", 5, "int8", 0, ACTIVATIONS)]),
    "MAX_POOL_2D": (5, _POOL),
    "ADD": (11, [("activation", 0, "int8", 0, ACTIVATIONS)]),
    "CONCATENATION": (10, [("axis", 0, "int32", 0, None),
                           ("activation", 1, "int8", 0, ACTIVATIONS)]),
    "MEAN": (27, [("keep_dims", 0, "bool", False, None)]),
}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str                      # TensorType name, e.g. "INT8"
    data: np.ndarray | None         # constant data (weights, bias, shapes), else None
    scale: np.ndarray | None        # float32 quantization scales, None when not quantized
    zero_point: np.ndarray | None   # int64 zero points
    quantized_dimension: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0


@dataclass
class Op:
    index: int
    name: str                       # builtin name, e.g. "FULLY_CONNECTED", or "CUSTOM(name)"
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Graph:
    """One .tflite file as read: every op and tensor, before any validation of semantics."""
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    num_subgraphs: int
    description: str

    def tensor(self, index: int, what: str) -> Tensor | None:
        if index == -1:
            return None
        if not 0 <= index < len(self.tensors):
            raise ModelError(f"{what} refers to tensor {index}, but the model has "
                             f"{len(self.tensors)} tensors: the file is corrupt")
        return self.tensors[index]


#: The largest file read as a model (a microcontroller model is far smaller; /dev/zero is endless).
MAX_FILE_BYTES = 64 << 20


def _read_capped(f, what: str) -> bytes:
    data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ModelError(f"{what} is larger than {MAX_FILE_BYTES >> 20} MB, the most tinylora reads "
                         "as a model: is it a .tflite file for a microcontroller?")
    return bytes(data)


def read_bytes(source) -> bytes:
    """Accept a path, bytes-like object or binary file; return the bytes (at most
    MAX_FILE_BYTES: ModelError beyond)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(source, "rb") as f:
                return _read_capped(f, f"model file {name!r}")
        except OSError as e:
            raise ModelError(f"cannot read model file {name!r}: {e.strerror or e}") from None
    if hasattr(source, "read"):
        return _read_capped(source, "the model stream")
    raise ModelError(f"expected a .tflite path or bytes, got {type(source).__name__}")


def parse(source) -> Graph:
    """Read a .tflite file into a :class:`Graph`; structural damage raises ModelError."""
    data = read_bytes(source)
    if len(data) >= 8 and data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"not a TFLite model: file identifier is {data[4:8]!r}, expected "
                         f"{FILE_IDENTIFIER!r} (is this a .tflite flatbuffer?)")
    try:
        return _parse(flatbuf.Buffer(data), data)
    except flatbuf.FlatBufferError as e:
        raise ModelError(f"corrupt or truncated .tflite file ({len(data)} bytes): {e}") from None
    except (UnicodeDecodeError, OverflowError, MemoryError, ValueError) as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"corrupt .tflite file ({len(data)} bytes): {e}") from None


def _parse(buf: flatbuf.Buffer, data: bytes) -> Graph:
    root = buf.root(FILE_IDENTIFIER)
    version = root.scalar(_MODEL["version"], "uint32")
    if version != 3:
        raise ModelError(f"TFLite schema version {version} is not supported (expected 3)")
    opnames = [_opcode_name(t) for t in root.tables(_MODEL["operator_codes"], "operator_code")]
    buffers = root.tables(_MODEL["buffers"], "buffer")
    subgraphs = root.tables(_MODEL["subgraphs"], "subgraph")
    if not subgraphs:
        raise ModelError("the model has no subgraph: the file is empty or corrupt")
    sg = subgraphs[0]
    tensors = [_tensor(i, t, buffers, data) for i, t in enumerate(sg.tables(_SUBGRAPH["tensors"], "tensor"))]
    ops = []
    for i, t in enumerate(sg.tables(_SUBGRAPH["operators"], "operator")):
        code = t.scalar(_OPERATOR["opcode_index"], "uint32")
        if code >= len(opnames):
            raise ModelError(f"op {i} uses operator code {code}, but the model defines "
                             f"{len(opnames)}: the file is corrupt")
        ops.append(Op(i, opnames[code], _ints(t, _OPERATOR["inputs"]),
                      _ints(t, _OPERATOR["outputs"]), _options(opnames[code], t)))
    return Graph(tensors, ops, _ints(sg, _SUBGRAPH["inputs"]), _ints(sg, _SUBGRAPH["outputs"]),
                 len(subgraphs), root.string(_MODEL["description"]) or "")


def _ints(table: flatbuf.Table, slot: int) -> list[int]:
    arr = table.array(slot, "int32")
    return [] if arr is None else [int(v) for v in arr]


def _opcode_name(t: flatbuf.Table) -> str:
    code = max(t.scalar(_OPCODE["deprecated_builtin_code"], "int8"),
               t.scalar(_OPCODE["builtin_code"], "int32"))
    if code == 32:  # CUSTOM
        return f"CUSTOM({t.string(_OPCODE['custom_code']) or '?'})"
    return BUILTIN_OPS.get(code, f"UNKNOWN_OP_{code}")


def _tensor(index: int, t: flatbuf.Table, buffers: list, data: bytes) -> Tensor:
    shape_arr = t.array(_TENSOR["shape"], "int32", "tensor shape")
    shape = () if shape_arr is None else tuple(int(v) for v in shape_arr)
    type_code = t.scalar(_TENSOR["type"], "int8")
    type_name, np_dtype = TENSOR_TYPES.get(type_code, (f"TYPE_{type_code}", None))
    name = t.string(_TENSOR["name"], "tensor name") or f"tensor_{index}"
    buffer_index = t.scalar(_TENSOR["buffer"], "uint32")
    raw = None
    if buffer_index:
        if buffer_index >= len(buffers):
            raise ModelError(f"tensor {index} ({name!r}) refers to buffer {buffer_index}, but the "
                             f"model has {len(buffers)}: the file is corrupt")
        raw = _buffer_bytes(buffers[buffer_index], data)
    const = None
    if raw is not None and len(raw):
        if np_dtype is None:
            const = np.frombuffer(raw, dtype=np.uint8).copy()
        else:
            dt = np.dtype(np_dtype)
            if len(raw) % dt.itemsize:
                raise ModelError(f"tensor {index} ({name!r}): {len(raw)} data bytes is not a "
                                 f"whole number of {type_name} values: the file is corrupt")
            const = np.frombuffer(raw, dtype=dt).copy()
    scale = zero_point = None
    qdim = 0
    q = t.table(_TENSOR["quantization"], "quantization")
    if q is not None:
        s = q.array(_QUANT["scale"], "float32", "quantization scale")
        z = q.array(_QUANT["zero_point"], "int64", "quantization zero point")
        if s is not None and s.size:
            scale = s.astype(np.float32)
            zero_point = z.astype(np.int64) if z is not None and z.size else np.zeros(1, np.int64)
        qdim = q.scalar(_QUANT["quantized_dimension"], "int32")
    return Tensor(index, name, shape, type_name, const, scale, zero_point, qdim)


def _buffer_bytes(b: flatbuf.Table, data: bytes) -> bytes | None:
    arr = b.array(_BUFFER["data"], "uint8", "buffer data")
    if arr is not None and arr.size:
        return arr.tobytes()
    offset = b.scalar(_BUFFER["offset"], "uint64")
    size = b.scalar(_BUFFER["size"], "uint64")
    if offset > 1:  # data stored after the flatbuffer (models over 2 GB)
        if offset + size > len(data):
            raise flatbuf.FlatBufferError(f"external buffer at {offset}+{size}")
        return data[offset:offset + size]
    return None


def _options(opname: str, t: flatbuf.Table) -> dict:
    spec = _OPTIONS.get(opname)
    if spec is None:
        return {}
    union_type, fields = spec
    table = None
    if t.scalar(_OPERATOR["options_type"], "uint8") == union_type:
        table = t.table(_OPERATOR["options"], f"{opname} options")
    out = {}
    for name, slot, kind, default, enum in fields:
        value = default if table is None else table.scalar(slot, kind, default)
        if enum is not None:
            value = enum.get(value, f"UNKNOWN({value})")
        out[name] = value
    return out
