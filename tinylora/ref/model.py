"""The frozen int8 base model: a validated chain of layers with a batched forward pass."""
from __future__ import annotations

import numpy as np

from tinylora.errors import InputError
from tinylora.ref import checks
from tinylora.ref.graph import build_dag, is_chain
from tinylora.ref.layers import Layer
from tinylora.tflite import reader as tflite

#: Per-op rounding rules. TFLM, CMSIS-NN and ESP-NN use double rounding everywhere;
#: desktop LiteRT >= 1.3's BUILTIN_REF resolver uses single rounding in FULLY_CONNECTED.
ROUNDING_RULES = {
    "tflm": {},
    "litert": {"FULLY_CONNECTED": "single"},
}


class Model:
    """A frozen int8 model read from a .tflite file.

    ``layers`` run in the file's order; each reads the tensors of ``layer.inputs`` (a DAG;
    ``is_chain`` when each reads the previous one's output). ``input_shape``/``output_shape``
    exclude the batch dimension; ``input_dtype``/``output_dtype`` are "INT8", or "FLOAT32" for
    a model with QUANTIZE/DEQUANTIZE ends, or "UINT8" for one converted with uint8 ends
    (QUANTIZE uint8 <-> int8; the core stays int8).
    """

    # defaults for a Model put together by hand around made-up layers (tests): an int8 chain
    input_dtype = output_dtype = "INT8"
    input_tensor = output_tensor = -1
    is_chain = True

    def __init__(self, graph: tflite.Graph, source: bytes):
        self.graph = graph
        self.source = source
        self.layers: list[Layer] = build_dag(graph)
        self.input_tensor, self.output_tensor = graph.inputs[0], graph.outputs[0]
        self.is_chain = is_chain(self.layers, self.input_tensor) and \
            self.layers[-1].output == self.output_tensor
        first = next(l for l in self.layers if self.input_tensor in l.inputs)
        last = next(l for l in reversed(self.layers) if l.output == self.output_tensor)
        self.input_shape = first.input_shape
        self.output_shape = last.output_shape
        self.input_dtype, self.output_dtype = first.input_dtype, last.output_dtype
        self.input_scale = float(first.input_q.scale[0])
        self.input_zero_point = int(first.input_q.zero_point[0])
        self.output_scale = float(last.output_q.scale[0])
        self.output_zero_point = int(last.output_q.zero_point[0])

    def __repr__(self) -> str:
        kinds = ", ".join(layer.kind for layer in self.layers)
        return f"Model(input={self.input_shape}, output={self.output_shape}, layers=[{kinds}])"

    @property
    def classes(self) -> int:
        """How many outputs (classes) the model has: labels are in [0, classes)."""
        return int(np.prod(self.output_shape))

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def forward(self, x, rounding: str = "tflm", upto: int | None = None) -> np.ndarray:
        """Run the int8 model on `x` of shape (N, *input_shape) or input_shape.

        ``rounding`` picks the per-op rounding rule ("tflm", the default and what the
        devices compute, or "litert" for desktop LiteRT's reference kernels).
        ``upto`` stops after that many layers (the activation feeding layer ``upto``).
        """
        x, single = self._check_input(x)
        rule = ROUNDING_RULES[rounding]
        env, out = {self.input_tensor: x}, x
        for layer in self.layers[:upto]:
            xs = [env[t] for t in layer.inputs] if layer.inputs else [out]  # made-up: a chain
            out = env[layer.output] = layer.run(xs, rule.get(layer.kind, "double"))
        if upto is None:
            out = env.get(self.output_tensor, out)
        return out[0] if single else out

    def quantize(self, x_real) -> np.ndarray:
        """Real-valued input -> int8 model input (round half away from zero, saturate)."""
        v = checks.finite(x_real, "real-valued input").astype(np.float64) / self.input_scale
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + self.input_zero_point
        if self.input_dtype == "UINT8":
            return np.clip(q, 0, 255).astype(np.uint8)
        return np.clip(q, -128, 127).astype(np.int8)

    def _check_input(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        if self.input_dtype == "FLOAT32":
            if not np.issubdtype(x.dtype, np.floating):
                raise InputError(f"model input must be float32 values (the model quantizes its "
                                 f"input itself), got dtype {x.dtype}")
            x = x.astype(np.float32)
        elif not np.issubdtype(x.dtype, np.integer):
            raise InputError(f"model input must be int8 values, got dtype {x.dtype}; "
                             "quantize real inputs with Model.quantize(x)")
        if self.input_dtype == "INT8" and x.size and (x.min() < -128 or x.max() > 127):
            raise InputError("model input holds values outside int8 [-128, 127]")
        if self.input_dtype == "UINT8" and x.size and (x.min() < 0 or x.max() > 255):
            raise InputError("model input holds values outside uint8 [0, 255] (the model was "
                             "converted with a uint8 input)")
        shape = tuple(x.shape)
        dt = {"FLOAT32": np.float32, "UINT8": np.uint8}.get(self.input_dtype, np.int8)
        if shape == self.input_shape:
            return x.astype(dt)[None], True
        if shape[1:] == self.input_shape:
            return x.astype(dt), False
        raise InputError(f"input shape {shape} does not match the model's input {self.input_shape} "
                         f"(one sample) or (N, {', '.join(map(str, self.input_shape))}) (a batch)")


def load_tflite(source) -> Model:
    """Read a .tflite file (path, bytes or binary file) into a frozen int8 :class:`Model`.

    Raises :class:`~tinylora.ModelError` naming the op, its index and the fix for
    anything tinylora cannot run exactly.
    """
    data = tflite.read_bytes(source)
    return Model(tflite.parse(data), data)
