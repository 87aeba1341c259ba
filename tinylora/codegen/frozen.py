"""Model -> C: the frozen int8 forward pass as calls into the tl_ kernels.

:func:`generate_frozen_c` writes one C file holding the model's constants (weights, biases,
per-channel multipliers and shifts, op parameters) as ``const`` arrays and a function

    tl_status <prefix>_forward(const <in> *input, <out> *output, int8_t *scratch);

(``<in>`` / ``<out>``: ``int8_t``, or ``float`` for a model with a QUANTIZE float32 input /
DEQUANTIZE float32 output) that runs every layer through ``tl_fully_connected_s8`` /
``tl_conv2d_s8`` / ``tl_depthwise_conv2d_s8`` / ``tl_softmax_s8`` and the kernels of
``tl_ops.h`` (pooling, ADD, PAD, MEAN, CONCATENATION, QUANTIZE, DEQUANTIZE, LOGISTIC,
HARD_SWISH; :mod:`tinylora.codegen.frozen_ops`). Any DAG with one input and one output:
:func:`tinylora.planning.forward.plan_forward` places each tensor in ``scratch`` (caller-owned,
``<PREFIX>_SCRATCH_SIZE`` bytes) for its lifetime; RESHAPE moves no bytes. A chain of FC /
conv / depthwise / RESHAPE / SOFTMAX keeps the earlier plan (activations alternate between two
halves of ``scratch``), so its C keeps its bytes. Behind the activations lies the kernel
scratch of the optimised library ``backend`` (planning/kernel_scratch.py; none for
``portable``), handed to each call that needs it as a ``tl_context``. With ``inputs``, the file also embeds those
samples and ``void <prefix>_run_tests(void)``, which runs each and prints the outputs in the
``tl_report`` line protocol as ``T <prefix>_out_<i hex> <bytes>`` (float32 outputs as their
bits), to compare with :meth:`tinylora.Model.forward` byte for byte (see
:mod:`tinylora.emulate`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tinylora.codegen import c_array_rows, c_comment, c_identifier, provenance, render
from tinylora.codegen.frozen_ops import OPS, _Array, op_step
from tinylora.errors import ModelError
from tinylora.planning.forward import ForwardPlan, plan_forward
from tinylora.planning.kernel_scratch import layer_scratch, max_scratch
from tinylora.ref.layers import SUPPORTED_OPS as CHAIN_OPS
from tinylora.ref.layers import Layer, _padding_before
from tinylora.ref.model import Model

__all__ = ["generate_frozen_c", "FrozenPlan", "plan_frozen", "output_name"]

TEMPLATE = "c/frozen_model.c.j2"
FUNCTION = "tinylora.codegen.frozen.generate_frozen_c"


@dataclass
class FrozenPlan:
    """What the generated forward does: constants, steps and buffer sizes (no C text)."""
    prefix: str
    input_size: int
    output_size: int
    scratch_size: int
    arrays: list[_Array] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    input_ctype: str = "int8_t"        # "float": a model with a QUANTIZE float32 input
    output_ctype: str = "int8_t"       # "float": a model with a DEQUANTIZE float32 output
    forward: ForwardPlan | None = None  # the DAG planner's slots (None: a two-region chain)

    @property
    def uses_ops(self) -> bool:
        """Whether the forward calls the kernels of tl_ops.h (the ops of issue 11)."""
        return any("form" in s for s in self.steps)

    @property
    def const_bytes(self) -> int:
        return sum(a.values.size * (1 if a.ctype == "int8_t" else 4) for a in self.arrays)


#: C element type of a model's input / output by its dtype (int8 otherwise)
CTYPES = {"FLOAT32": "float", "UINT8": "uint8_t"}

def output_name(prefix: str, i: int) -> str:
    """The report name of sample ``i``'s output line."""
    return f"{prefix}_out_{i:x}"


def _dims(n: int, h: int, w: int, c: int) -> dict:
    return {"n": int(n), "h": int(h), "w": int(w), "c": int(c)}


def _requant_arrays(plan: FrozenPlan, tag: str, layer: Layer) -> tuple[str, str, str, str]:
    """Emit weights / bias / multiplier / shift arrays; returns their C expressions."""
    channels = layer.multiplier.size
    plan.arrays.append(_Array(f"{tag}_weights", "int8_t", np.asarray(layer.weights, np.int8),
                              f"{layer.kind} weights {list(layer.weights.shape)}"))
    bias = "NULL"
    if layer.bias is not None:
        plan.arrays.append(_Array(f"{tag}_bias", "int32_t", np.asarray(layer.bias, np.int64),
                                  f"bias [{channels}]"))
        bias = f"{tag}_bias"
    plan.arrays.append(_Array(f"{tag}_multiplier", "int32_t", np.asarray(layer.multiplier, np.int64),
                              f"requantization multipliers [{channels}] (Q31)"))
    plan.arrays.append(_Array(f"{tag}_shift", "int32_t", np.asarray(layer.shift, np.int64),
                              f"requantization shifts [{channels}] (> 0: left)"))
    return f"{tag}_weights", bias, f"{tag}_multiplier", f"{tag}_shift"


def _offsets(layer: Layer) -> dict:
    return {"input_offset": -int(layer.input_q.zero_point[0]),
            "output_offset": int(layer.output_q.zero_point[0])}


def _step_fc(plan: FrozenPlan, tag: str, layer: Layer) -> dict:
    if np.any(np.asarray(layer.weights_q.zero_point) != 0):
        raise ModelError(f"layer {layer.index} ({layer.kind}): weights have a non-zero zero point; "
                         "the C kernels take symmetric int8 weights")
    out_ch, depth = layer.weights.shape
    rows = int(np.prod(layer.input_shape)) // depth
    weights, bias, mult, shift = _requant_arrays(plan, tag, layer)
    params = {**_offsets(layer), "act_min": layer.act_min, "act_max": layer.act_max}
    return {"call": "tl_fully_connected_s8", "params_type": "tl_fc_params", "params": params,
            "input_dims": _dims(rows, 1, 1, depth), "filter_dims": _dims(out_ch, 1, 1, depth),
            "output_dims": _dims(rows, 1, 1, out_ch), "weights": weights, "bias": bias,
            "multiplier": mult, "shift": shift}


def _step_conv(plan: FrozenPlan, tag: str, layer: Layer) -> dict:
    o = layer.options
    h, w, c = layer.input_shape
    oh, ow, oc = layer.output_shape
    kh, kw = layer.kernel
    weights, bias, mult, shift = _requant_arrays(plan, tag, layer)
    params = {**_offsets(layer),
              "stride_h": o["stride_h"], "stride_w": o["stride_w"],
              "pad_h": _padding_before(h, kh, o["stride_h"], o["dilation_h"], oh),
              "pad_w": _padding_before(w, kw, o["stride_w"], o["dilation_w"], ow),
              "dilation_h": o["dilation_h"], "dilation_w": o["dilation_w"]}
    if layer.kind == "DEPTHWISE_CONV_2D":
        params["depth_multiplier"] = o["depth_multiplier"]
        call, ptype, filt = "tl_depthwise_conv2d_s8", "tl_dw_conv_params", _dims(1, kh, kw, oc)
    else:
        call, ptype, filt = "tl_conv2d_s8", "tl_conv_params", _dims(oc, kh, kw, c)
    params.update(act_min=layer.act_min, act_max=layer.act_max)
    return {"call": call, "params_type": ptype, "params": params,
            "input_dims": _dims(1, h, w, c), "filter_dims": filt,
            "output_dims": _dims(1, oh, ow, oc), "weights": weights, "bias": bias,
            "multiplier": mult, "shift": shift}


def _step_softmax(layer: Layer) -> dict:
    mult, shift, diff_min = layer.options["params"]
    depth = int(layer.input_shape[-1])
    if depth > 4095:
        raise ModelError(f"layer {layer.index} SOFTMAX: depth {depth} exceeds the C kernel's 4095")
    return {"call": "tl_softmax_s8", "params_type": "tl_softmax_params",
            "params": {"input_multiplier": mult, "input_left_shift": shift, "diff_min": diff_min},
            "rows": int(np.prod(layer.input_shape)) // depth, "depth": depth}


def _check_codegen(model: Model) -> None:
    """Raise one ModelError listing every layer the C cannot run (each with its fix)."""
    problems = [f"op {layer.index} {layer.kind}: no C kernel for this op"
                 for layer in model.layers if layer.kind not in CHAIN_OPS + OPS]
    if problems:
        raise ModelError(f"C code generation cannot run this model ({len(problems)} "
                         "problem(s)):\n  " + "\n  ".join(problems))


def _is_legacy_chain(model: Model) -> bool:
    """A chain of FC / conv / depthwise / RESHAPE / SOFTMAX: generated as before the DAG
    planner (two scratch regions in turn), so those models' C keeps its bytes."""
    return model.is_chain and all(layer.kind in CHAIN_OPS for layer in model.layers)


def _layer_step(plan: FrozenPlan, layer: Layer, shapes: dict) -> dict:
    tag = f"{plan.prefix}_l{layer.index}"
    if layer.kind == "FULLY_CONNECTED":
        step = _step_fc(plan, tag, layer)
    elif layer.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        step = _step_conv(plan, tag, layer)
    elif layer.kind == "SOFTMAX":
        step = _step_softmax(layer)
    else:
        step = op_step(layer, shapes, plan.arrays, tag)
    step.update(index=layer.index, kind=layer.kind,
                comment=c_comment(f"{layer.kind} {list(layer.input_shape)} -> "
                                  f"{list(layer.output_shape)} {layer.activation}"))
    return step


def _plan_chain(plan: FrozenPlan, model: Model) -> None:
    compute = [layer for layer in model.layers if layer.kind != "RESHAPE"]
    # Intermediate activations alternate between two regions of the scratch buffer.
    halves = [0, 0]
    for k, layer in enumerate(compute[:-1]):
        halves[k % 2] = max(halves[k % 2], int(np.prod(layer.output_shape)))
    plan.scratch_size = halves[0] + halves[1]
    region = ["scratch", f"scratch + {halves[0]}"]
    for k, layer in enumerate(compute):
        step = _layer_step(plan, layer, {})
        step.update(src="input" if k == 0 else region[(k - 1) % 2],
                    dst="output" if k == len(compute) - 1 else region[k % 2])
        plan.steps.append(step)


def _plan_dag(plan: FrozenPlan, model: Model) -> None:
    fp = plan_forward(model)
    plan.forward = fp
    plan.scratch_size = fp.scratch_bytes
    shapes = {model.input_tensor: tuple(model.input_shape)}
    shapes.update({layer.output: tuple(layer.output_shape) for layer in model.layers})
    for layer in model.layers:
        if layer.index in fp.aliased:
            continue
        step = _layer_step(plan, layer, shapes)
        srcs = [fp.slots[t].expr() for t in layer.inputs]
        if step.get("constant"):
            srcs.append(step["constant"])
        step.update(src=srcs if step.get("form") in ("add", "concat") else srcs[0],
                    dst=fp.slots[layer.output].expr())
        plan.steps.append(step)


def plan_frozen(model: Model, prefix: str = "tl_model", backend: str = "portable") -> FrozenPlan:
    """The generated forward's constants, steps and buffers for ``model``: any DAG of the
    supported ops with one input and one output (:func:`tinylora.planning.forward.plan_forward`
    places its tensors; a chain of FC / conv / softmax keeps its two-region plan), its frozen
    kernels built against ``backend`` (whose kernel scratch lies behind the activations)."""
    _check_codegen(model)
    prefix = c_identifier(prefix)
    plan = FrozenPlan(prefix, int(np.prod(model.input_shape)), int(np.prod(model.output_shape)), 0)
    plan.input_ctype = CTYPES.get(model.input_dtype, "int8_t")
    plan.output_ctype = CTYPES.get(model.output_dtype, "int8_t")
    if _is_legacy_chain(model):
        _plan_chain(plan, model)
    else:
        _plan_dag(plan, model)
    activations, kernel = plan.scratch_size, max_scratch(backend, plan.steps)
    plan.scratch_size += kernel
    for step in plan.steps:
        step["ctx"] = ({"buf": f"scratch + {activations}", "size": kernel}
                       if layer_scratch(backend, step) else None)
    return plan


def generate_frozen_c(model: Model, inputs=None, prefix: str = "tl_model",
                      command: str | None = None, backend: str = "portable") -> str:
    """C source of ``model``'s frozen forward (and, with ``inputs``, its test runner).

    ``inputs``: int8 samples, shape (N, *model.input_shape), embedded as test vectors.
    ``command`` is recorded in the provenance header. Deterministic: the same arguments
    always give the same bytes. ``backend``: the optimised library the program links (its
    kernel scratch is planned into ``scratch``).
    """
    plan = plan_frozen(model, prefix, backend)
    tests = None
    if inputs is not None:
        x, _ = model._check_input(np.asarray(inputs))
        rows = x.reshape(x.shape[0], -1)
        if plan.input_ctype == "float":  # exact: the float32 bits
            flat = [f"{v}u" for v in rows.view(np.uint32).reshape(-1).tolist()]
            rows = [", ".join(flat[i:i + 8]) + "," for i in range(0, len(flat), 8)]
            rows[-1] = rows[-1][:-1]
        else:
            rows = c_array_rows(rows)
        tests = {"count": int(x.shape[0]), "rows": rows, "report_name": f"{plan.prefix}_out",
                 "ctype": "uint32_t" if plan.input_ctype == "float" else plan.input_ctype}
    source_hash = hashlib.sha256(model.source).hexdigest() if model.source else "-"
    header = provenance(FUNCTION, command, [
        f"Model: sha256 {source_hash}, {len(model.layers)} layers "
        f"({', '.join(layer.kind for layer in model.layers)}), {model.macs} MACs.",
        f"Input {list(model.input_shape)} (scale {model.input_scale:.9g}, zero point "
        f"{model.input_zero_point}); output {list(model.output_shape)} (scale "
        f"{model.output_scale:.9g}, zero point {model.output_zero_point}).",
        "Bit-exact with tinylora.Model.forward (TFLM's int8 reference kernels).",
    ])
    return render(TEMPLATE, header=header, prefix=plan.prefix, macro=plan.prefix.upper(),
                  input_size=plan.input_size, output_size=plan.output_size,
                  scratch_size=plan.scratch_size,
                  arrays=[a.context() for a in plan.arrays], steps=plan.steps,
                  passthrough=not plan.steps, tests=tests, input_ctype=plan.input_ctype,
                  output_ctype=plan.output_ctype,
                  output_cast="(const int8_t *)" if plan.output_ctype == "uint8_t" else "",
                  floats="float" in (plan.input_ctype, plan.output_ctype),
                  uses_ops=plan.uses_ops)
