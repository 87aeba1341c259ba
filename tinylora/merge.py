"""Merge an adapter into its base model: a plain .tflite in which each adapted layer's weights are
W + (alpha / r) B A, requantized per output channel (docs/adapter.md, "Merging").

For an adapted layer with int8 weights W (scale s_w[c] per output channel c, zero point 0) and
the adapter's int8 A [r, K], B [C, r] (what the forward multiplies with, ``to_int8(master)``):

    W'[c, k] = s_w[c] W[c, k] + (alpha / r) s_A s_B (B A)[c, k]        (real terms)
    s'_w[c]  = max_k |W'[c, k]| / 127      (float32; the old scale for an all-zero row)
    Wq[c, k] = round(W'[c, k] / s'_w[c]), clamped to [-127, 127]      (int8 symmetric)
    bias'[c] = round(bias[c] s_w[c] / s'_w[c])   (int32: the real bias stays; its scale
                                                  becomes float32(s_x s'_w[c]))

A per-tensor weight scale stays per tensor (one s'_w, the maximum over all rows). Everything
else (ops, tensor shapes, activations' quantization, the output scale, metadata, the file
identifier) is the base model's, so the merged model runs at exactly the base model's cost.
The file is written with the FlatBuffers object API of the TFLite schema (``ai_edge_litert``)
and the ``flatbuffers`` Builder: ``pip install tinylora[merge]``.
"""
from __future__ import annotations

import hashlib

import numpy as np

from tinylora.errors import AdapterError, MissingDependencyError
from tinylora.formats.adapter import Adapter
from tinylora.ref import lora
from tinylora.ref.model import Model, load_tflite
from tinylora.version import __version__

FILE_IDENTIFIER = b"TFL3"
PROVENANCE = "tinylora_merge"     # the metadata entry that says where the file came from
BUFFER_ALIGN = 16                 # the schema's force_align for buffer data


def _schema():
    """(schema module, flatbuffers) or MissingDependencyError naming the extra."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:
        raise MissingDependencyError(f"tinylora merge writes .tflite files with the TFLite schema and "
                                     f"FlatBuffers ({e.name} is missing): pip install tinylora[merge]") from None
    return schema, flatbuffers


def merge(model, adapter) -> bytes:
    """The .tflite bytes of `model` (a Model, a path or bytes) with `adapter` (an Adapter, a
    path or bytes) merged into its weights. AdapterError if the adapter is not for this model."""
    schema, flatbuffers = _schema()
    if not isinstance(model, Model):
        model = load_tflite(model)
    if not isinstance(adapter, Adapter):
        adapter = Adapter.load(adapter)
    adapter.check(model)
    fb = schema.ModelT.InitFromPackedBuf(bytearray(model.source), 0)
    if len(fb.subgraphs) != 1:
        raise AdapterError("merge takes single-subgraph models (the ones tinylora trains)")
    for l in adapter.layers:
        _merge_layer(fb, l["index"], delta_real(l, adapter.form))
    _add_provenance(schema, fb, model, adapter)
    fb.buffers = [_AlignedBuffer(schema, b) for b in fb.buffers]
    builder = flatbuffers.Builder(len(model.source) + 4096)
    builder.Finish(fb.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def delta_real(layer: dict, form: str = "masters") -> np.ndarray:
    """(alpha / r) s_A s_B (B A) [C, K]: the adapter's change of the real weights, from the
    int8 A and B the forward uses."""
    a, b = np.asarray(layer["a"], np.int64), np.asarray(layer["b"], np.int64)
    if form == "masters":
        a, b = lora.to_int8(a), lora.to_int8(b)
    scale = float(layer["alpha"]) / layer["rank"] * float(layer["s_a"]) * float(layer["s_b"])
    return scale * (b @ a).astype(np.float64)


def _round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (the rounding the rest of tinylora uses)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def requantize_weights(w: np.ndarray, scale: np.ndarray, delta: np.ndarray):
    """(int8 weights [C, K], float32 scales) of s_w W + delta, symmetric, per channel when
    `scale` has one entry per row, else per tensor."""
    s = np.asarray(scale, np.float64)
    real = w.astype(np.float64) * (s[:, None] if s.size > 1 else s[0]) + delta
    peak = np.abs(real).max(axis=1) if s.size > 1 else np.array([np.abs(real).max()])
    new = np.where(peak > 0, peak / 127.0, np.abs(s)).astype(np.float32)
    div = new.astype(np.float64)[:, None] if s.size > 1 else float(new[0])
    q = np.clip(_round(real / div), -127, 127).astype(np.int8)
    return q, new


def _buffer_for(fb, tensor) -> object:
    """The tensor's buffer, made its own when another tensor shares it."""
    users = sum(1 for sg in fb.subgraphs for t in sg.tensors if t.buffer == tensor.buffer)
    if users > 1:
        fresh = type(fb.buffers[tensor.buffer])()
        fb.buffers.append(fresh)
        tensor.buffer = len(fb.buffers) - 1
    return fb.buffers[tensor.buffer]


def _merge_layer(fb, index: int, delta: np.ndarray) -> None:
    sg = fb.subgraphs[0]
    op = sg.operators[index]
    x_t, w_t = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
    c_out = delta.shape[0]
    w = np.frombuffer(bytes(fb.buffers[w_t.buffer].data), np.int8).reshape(c_out, -1)
    old = np.asarray(w_t.quantization.scale, np.float64)
    wq, new = requantize_weights(w, old, delta)
    _buffer_for(fb, w_t).data = wq.reshape(-1).view(np.uint8).copy()
    w_t.quantization.scale = [float(v) for v in new]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b_t = sg.tensors[op.inputs[2]]
        bias = np.frombuffer(bytes(fb.buffers[b_t.buffer].data), "<i4").astype(np.float64)
        ratio = np.broadcast_to(old, (c_out,)) / np.broadcast_to(new.astype(np.float64), (c_out,))
        b_new = np.clip(_round(bias * ratio), -(2**31), 2**31 - 1).astype("<i4")
        _buffer_for(fb, b_t).data = b_new.view(np.uint8).copy()
        s_x = float(x_t.quantization.scale[0])
        b_t.quantization.scale = [float(np.float32(s_x * float(v))) for v in np.broadcast_to(new, (c_out,))]


def _add_provenance(schema, fb, model: Model, adapter: Adapter) -> None:
    """A metadata entry naming the tool, the base model and the adapter (no timestamp)."""
    text = (f"merged by tinylora {__version__} (tinylora merge): base model sha256 "
            f"{hashlib.sha256(model.source).hexdigest()}, adapter sha256 "
            f"{hashlib.sha256(adapter.to_bytes()).hexdigest()} ({adapter.form} form), layers "
            f"{[l['index'] for l in adapter.layers]}")
    buf = schema.BufferT()
    buf.data = np.frombuffer(text.encode(), np.uint8).copy()
    fb.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = PROVENANCE, len(fb.buffers) - 1
    fb.metadata = [m for m in (fb.metadata or []) if m.name not in (PROVENANCE, PROVENANCE.encode())] + [entry]


class _AlignedBuffer:
    """A BufferT whose data the Builder places on a 16-byte boundary (the schema's force_align
    for buffer data, as the converter writes it)."""

    def __init__(self, schema, buf):
        self.schema, self.data, self.offset, self.size = schema, buf.data, buf.offset, buf.size

    def Pack(self, builder):  # noqa: N802 (the object API's name)
        data, schema = None, self.schema
        if self.data is not None and len(self.data):
            payload = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(payload), BUFFER_ALIGN)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head: builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)
