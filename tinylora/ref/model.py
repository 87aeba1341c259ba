"""The frozen int8 base model: a validated chain of layers with a batched forward pass."""
from __future__ import annotations

import numpy as np

from tinylora.errors import InputError, ModelError
from tinylora.ref import checks
from tinylora.ref.layers import SUPPORTED_OPS, Layer, build_layer
from tinylora.tflite import reader as tflite

#: Per-op rounding rules. TFLM, CMSIS-NN and ESP-NN use double rounding everywhere;
#: desktop LiteRT >= 1.3's BUILTIN_REF resolver uses single rounding in FULLY_CONNECTED.
ROUNDING_RULES = {
    "tflm": {},
    "litert": {"FULLY_CONNECTED": "single"},
}


class Model:
    """A frozen int8 model read from a .tflite file.

    ``layers`` run in order, each consuming the previous layer's output.
    ``input_shape``/``output_shape`` exclude the batch dimension.
    """

    def __init__(self, graph: tflite.Graph, source: bytes):
        self.graph = graph
        self.source = source
        self.layers: list[Layer] = _build_chain(graph)
        first, last = self.layers[0], self.layers[-1]
        self.input_shape = first.input_shape
        self.output_shape = last.output_shape
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
        for layer in self.layers[:upto]:
            x = layer.forward(x, rule.get(layer.kind, "double"))
        return x[0] if single else x

    def quantize(self, x_real) -> np.ndarray:
        """Real-valued input -> int8 model input (round half away from zero, saturate)."""
        v = checks.finite(x_real, "real-valued input").astype(np.float64) / self.input_scale
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def _check_input(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.integer):
            raise InputError(f"model input must be int8 values, got dtype {x.dtype}; "
                             "quantize real inputs with Model.quantize(x)")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise InputError("model input holds values outside int8 [-128, 127]")
        shape = tuple(x.shape)
        if shape == self.input_shape:
            return x.astype(np.int8)[None], True
        if shape[1:] == self.input_shape:
            return x.astype(np.int8), False
        raise InputError(f"input shape {shape} does not match the model's input {self.input_shape} "
                         f"(one sample) or (N, {', '.join(map(str, self.input_shape))}) (a batch)")


def _build_chain(graph: tflite.Graph) -> list[Layer]:
    if graph.num_subgraphs != 1:
        raise ModelError(f"the model has {graph.num_subgraphs} subgraphs (control flow); tinylora "
                         "supports single-subgraph models")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                         "outputs; tinylora supports one input and one output")
    if not graph.ops:
        raise ModelError("the model has no operators")
    current = graph.inputs[0]
    layers = []
    for op in graph.ops:
        if op.inputs and op.inputs[0] != current:
            raise ModelError(f"op {op.index} {op.name}: reads tensor {op.inputs[0]}, not the "
                             f"previous op's output {current}: tinylora supports sequential "
                             f"models (a chain of {', '.join(SUPPORTED_OPS)})")
        layer = build_layer(graph, op)
        if layers and layer.input_shape != layers[-1].output_shape:
            raise ModelError(f"op {op.index} {op.name}: expects input shape {layer.input_shape}, the "
                             f"previous op writes {layers[-1].output_shape}: the file is corrupt")
        current = op.outputs[0]
        layers.append(layer)
    if current != graph.outputs[0]:
        raise ModelError(f"the model output is tensor {graph.outputs[0]}, but the last op writes "
                         f"tensor {current}: tinylora supports sequential models")
    return layers


def load_tflite(source) -> Model:
    """Read a .tflite file (path, bytes or binary file) into a frozen int8 :class:`Model`.

    Raises :class:`~tinylora.ModelError` naming the op, its index and the fix for
    anything tinylora cannot run exactly.
    """
    data = tflite.read_bytes(source)
    return Model(tflite.parse(data), data)
