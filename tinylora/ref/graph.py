"""A .tflite graph as a DAG of frozen layers: one input, one output, any supported ops between
(residual ADDs, CONCATENATIONs), run in the file's order (TFLite stores ops topologically).

:func:`build_node` validates one op; :func:`build_dag` validates the whole graph and raises one
ModelError listing EVERY problem (each op with its index and the fix), not just the first.
"""
from __future__ import annotations

from tinylora.errors import ModelError
from tinylora.ref.layers import SUPPORTED_OPS as CHAIN_OPS
from tinylora.ref.layers import Layer, _Checker, build_layer
from tinylora.ref.oplayers import NEW_OPS, build_new_layer, tensor_io
from tinylora.tflite.reader import Graph, Op

SUPPORTED_OPS = CHAIN_OPS + NEW_OPS
RECURRENT_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM", "SVDF",
                 "UNIDIRECTIONAL_SEQUENCE_RNN", "RNN", "BIDIRECTIONAL_SEQUENCE_RNN")


def build_node(graph: Graph, op: Op) -> Layer:
    """Validate one op and return its layer (ModelError names the op, its index and the fix)."""
    ck = _Checker(op)
    if op.name in RECURRENT_OPS:
        ck.fail(f"recurrent operator {op.name} is not supported (tinylora runs feed-forward "
                "int8 graphs)", "use a convolutional model (e.g. DS-CNN for keyword spotting)")
    int16 = [graph.tensors[i].name for i in op.inputs + op.outputs
             if 0 <= i < len(graph.tensors) and graph.tensors[i].dtype == "INT16"
             and graph.tensors[i].data is None]
    if int16:
        ck.fail(f"tensor {int16[0]!r} has int16 activations (16x8 quantization), which tinylora "
                "does not support", "convert with int8 activations (TFLITE_BUILTINS_INT8)")
    if op.name not in SUPPORTED_OPS:
        ck.fail(f"operator {op.name} is not supported (tinylora supports "
                f"{', '.join(SUPPORTED_OPS)})")
    if op.name not in NEW_OPS:
        layer = build_layer(graph, op)
        layer.inputs, layer.output = (op.inputs[0],), op.outputs[0]
        return layer
    ck.require(len(op.inputs) >= 1 and len(op.outputs) == 1,
               f"has {len(op.inputs)} inputs and {len(op.outputs)} outputs")
    inp = graph.tensor(op.inputs[0], f"op {op.index} {op.name} input")
    out = graph.tensor(op.outputs[0], f"op {op.index} {op.name} output")
    in_shape, in_q, in_dt = tensor_io(ck, inp, "input", floats=op.name == "QUANTIZE",
                                      uint8=op.name == "QUANTIZE")
    out_shape, out_q, out_dt = tensor_io(ck, out, "output", floats=op.name == "DEQUANTIZE",
                                         uint8=op.name == "QUANTIZE")
    multi = op.name in ("ADD", "CONCATENATION")
    inputs = tuple(i for i in op.inputs if i >= 0 and graph.tensors[i].data is None) if multi \
        else (op.inputs[0],)
    common = dict(index=op.index, name=out.name, kind=op.name, input_shape=in_shape,
                  output_shape=out_shape, input_q=in_q, output_q=out_q, options=dict(op.options),
                  inputs=inputs, output=op.outputs[0], input_dtype=in_dt, output_dtype=out_dt)
    return build_new_layer(graph, op, common, ck)


def build_dag(graph: Graph) -> list[Layer]:
    """Every op as a layer, checked as a DAG from the one input to the one output."""
    if graph.num_subgraphs != 1:
        raise ModelError(f"the model has {graph.num_subgraphs} subgraphs (control flow); tinylora "
                         "supports single-subgraph models")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                         "outputs; tinylora supports one input and one output")
    if not graph.ops:
        raise ModelError("the model has no operators")
    problems, layers = [], []
    shapes = {graph.inputs[0]: None}  # tensor -> (shape, dtype) once written
    for op in graph.ops:
        try:
            layer = build_node(graph, op)
        except ModelError as e:
            problems.append(str(e))
            shapes.update({t: None for t in op.outputs})
            continue
        for k, t in enumerate(layer.inputs):
            if t not in shapes:
                problems.append(f"op {op.index} {op.name}: reads tensor {t}, which no earlier op "
                                "writes and which is not the model input: the graph is not a "
                                "DAG in execution order (the file is corrupt)")
            elif shapes[t] is not None and k == 0 and shapes[t] != (layer.input_shape,
                                                                    layer.input_dtype):
                problems.append(f"op {op.index} {op.name}: expects input {layer.input_shape} "
                                f"{layer.input_dtype}, tensor {t} holds {shapes[t][0]} "
                                f"{shapes[t][1]}: the file is corrupt")
        shapes[layer.output] = (layer.output_shape, layer.output_dtype)
        layers.append(layer)
    if not problems and graph.outputs[0] not in {l.output for l in layers}:
        problems.append(f"the model output is tensor {graph.outputs[0]}, which no op writes")
    if problems:
        if len(problems) == 1:
            raise ModelError(problems[0])
        raise ModelError(f"the model cannot run on tinylora ({len(problems)} problems):\n  "
                         + "\n  ".join(problems))
    return layers


def is_chain(layers: list[Layer], graph_input: int) -> bool:
    """True when each layer reads only the previous layer's output (the first, the input)."""
    prev = graph_input
    for layer in layers:
        if layer.inputs != (prev,):
            return False
        prev = layer.output
    return True


def require_chain_ops(model, purpose: str, forward_any: bool = False) -> None:
    """Training and the C generator handle a chain of the original ops today (issue 11 adds
    the rest): raise one ModelError listing every layer that stands in the way of ``purpose``.
    ``forward_any``: any single-input int8 op may run forward (the numpy trainer's frozen
    prefix below the adapters; the trainer itself refuses ops without a backward above)."""
    problems = []
    if not model.is_chain:
        problems.append("the graph branches (residual ADD or CONCATENATION): only its forward "
                        "pass runs (Model.forward)")
    for layer in model.layers:
        float_end = "FLOAT32" in (layer.input_dtype, layer.output_dtype)
        if float_end or (layer.kind not in CHAIN_OPS and not forward_any):
            problems.append(f"op {layer.index} {layer.kind}: no {purpose} for this op yet"
                            + (" (a float32 end: convert with int8 input and output)"
                               if float_end else ""))
        elif layer.options.get("requantizes"):
            problems.append(f"op {layer.index} RESHAPE changes the quantization: no {purpose} "
                            "through it yet")
        elif layer.options.get("signed_multipliers"):
            problems.append(f"op {layer.index} {layer.kind}: negative weight scales that do not "
                            f"fold into the weights (a weight of -128): no {purpose} for it yet")
    if problems:
        n = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ModelError(f"this model runs in tinylora's reference (Model.forward) but not yet "
                         f"in {purpose} ({n}):\n  " + "\n  ".join(problems)
                         + f"\n  {purpose} supports chains of {', '.join(CHAIN_OPS)} today")
