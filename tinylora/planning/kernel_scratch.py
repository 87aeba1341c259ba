"""Kernel scratch of the optimised libraries, mirrored from their sources.

The bytes one frozen layer's library call needs as scratch (``cmsis_nn_context.buf`` /
``esp_nn_set_*_scratch_buf``), exactly as the libraries compute them for the builds tinylora
makes, so that scratch can be planned before any C runs:

* CMSIS-NN v7.0.0 on a DSP core without MVE (Cortex-M4/M7, GCC):
  ``arm_convolve_wrapper_s8_get_buffer_size`` (_dsp branch: 1x1 stride 1 without padding ->
  ``arm_convolve_1x1_s8_fast_get_buffer_size_dsp``, 0 unless the Arm compiler; 1x1 otherwise
  -> 0; a 1xN row -> ``arm_convolve_1_x_n_s8_get_buffer_size`` = the im2col size; else
  ``arm_convolve_s8_get_buffer_size`` = 2 * (kh * kw * c rounded up to 4) int16),
  ``arm_depthwise_conv_wrapper_s8_get_buffer_size`` (channel multiplier 1, one image,
  dilation 1: 0 for 3x3 with padding <= 1, else c * kh * kw int16; otherwise 0),
  ``arm_fully_connected_s8_get_buffer_size`` (0 without MVE), ``arm_avgpool_s8_get_buffer_size``
  (one int32 per channel on DSP cores);
* ESP-NN v1.1.2 ANSI and generic-opt: every ``esp_nn_get_*_scratch_size`` returns 0.

tinylora's C asks for the library's bytes plus 15 (it rounds the scratch start up to 16:
``tl_scratch_need``); :func:`layer_scratch` returns that, the number the C size queries
(``tl_*_scratch_size``) give. The argument is a frozen step of
:func:`tinylora.codegen.frozen.plan_frozen` (kind, params, dims as the C receives them), or
:func:`frozen_call` of a layer (the same geometry, for the arena planner).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.layers import _padding_before

__all__ = ["SCRATCH_ALIGN", "library_scratch", "layer_scratch", "max_scratch", "frozen_call",
           "frozen_layer_scratch", "buffer_name"]

SCRATCH_ALIGN = 16
_LIBRARY_BACKENDS = ("cmsis-nn", "esp-nn", "esp-nn-ansi")


def _cmsis_conv(p: Mapping, i: Mapping, f: Mapping) -> int:
    dilation1 = p["dilation_w"] == 1 and p["dilation_h"] == 1
    if p["pad_w"] == 0 and p["pad_h"] == 0 and f["w"] == 1 and f["h"] == 1 and dilation1:
        return 0  # 1x1 fast path: 0 under GCC; strided 1x1: 0
    rhs_cols = f["w"] * f["h"] * i["c"]
    aligned = rhs_cols + (4 - rhs_cols % 4) % 4
    # the 1xN branch (input height 1, filter height 1, ...) has the same size off MVE
    return 2 * aligned * 2


def _cmsis_dw(p: Mapping, i: Mapping, f: Mapping, o: Mapping) -> int:
    # tinylora calls the wrapper one image at a time (n = 1)
    if i["c"] == o["c"] and p["dilation_w"] == 1 and p["dilation_h"] == 1:
        if f["w"] == 3 and f["h"] == 3 and p["pad_h"] <= 1 and p["pad_w"] <= 1:
            return 0
        return i["c"] * f["w"] * f["h"] * 2
    return 0


def library_scratch(backend: str, step: Mapping) -> int:
    """The library's own scratch bytes for one frozen step (0: none)."""
    if backend not in _LIBRARY_BACKENDS:
        if backend == "portable":
            return 0
        raise InputError(f"unknown backend {backend!r}; expected portable or one of {', '.join(_LIBRARY_BACKENDS)}")
    if backend != "cmsis-nn":
        return 0  # ESP-NN ANSI / generic-opt: no scratch
    kind = step["kind"]
    if kind == "CONV_2D":
        return _cmsis_conv(step["params"], step["input_dims"], step["filter_dims"])
    if kind == "DEPTHWISE_CONV_2D":
        return _cmsis_dw(step["params"], step["input_dims"], step["filter_dims"], step["output_dims"])
    if kind == "AVERAGE_POOL_2D":  # arm_avgpool_s8_get_buffer_size on DSP cores: an int32 a channel
        return 4 * step["output_dims"]["c"]
    return 0  # FULLY_CONNECTED without MVE, SOFTMAX, the other ops (portable or no scratch)


def layer_scratch(backend: str, step: Mapping) -> int:
    """Bytes tinylora's C needs registered for this step (library bytes + alignment slack)."""
    need = library_scratch(backend, step)
    return need + SCRATCH_ALIGN - 1 if need > 0 else 0


def max_scratch(backend: str, steps: Iterable[Mapping]) -> int:
    """The scratch a model needs: the largest over its frozen steps (one call at a time)."""
    return max((layer_scratch(backend, s) for s in steps), default=0)


def _dims(n: int, h: int, w: int, c: int) -> dict:
    return {"n": int(n), "h": int(h), "w": int(w), "c": int(c)}


def frozen_call(layer) -> dict | None:
    """The geometry of a layer's frozen kernel call (kind, params, dims; None: no library call),
    as tinylora.codegen.frozen passes it to the C."""
    if layer.kind == "FULLY_CONNECTED":
        out_ch, depth = layer.weights.shape
        rows = int(np.prod(layer.input_shape)) // depth
        return {"kind": layer.kind, "params": {}, "input_dims": _dims(rows, 1, 1, depth),
                "filter_dims": _dims(out_ch, 1, 1, depth), "output_dims": _dims(rows, 1, 1, out_ch)}
    if layer.kind == "AVERAGE_POOL_2D":
        return {"kind": layer.kind, "params": {}, "input_dims": _dims(1, *layer.input_shape),
                "output_dims": _dims(1, *layer.output_shape)}
    if layer.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return None
    o = layer.options
    h, w, c = layer.input_shape
    oh, ow, oc = layer.output_shape
    kh, kw = layer.kernel
    params = {"stride_h": o["stride_h"], "stride_w": o["stride_w"],
              "pad_h": _padding_before(h, kh, o["stride_h"], o["dilation_h"], oh),
              "pad_w": _padding_before(w, kw, o["stride_w"], o["dilation_w"], ow),
              "dilation_h": o["dilation_h"], "dilation_w": o["dilation_w"]}
    depthwise = layer.kind == "DEPTHWISE_CONV_2D"
    if depthwise:
        params["depth_multiplier"] = o["depth_multiplier"]
    return {"kind": layer.kind, "params": params, "input_dims": _dims(1, h, w, c),
            "filter_dims": _dims(1, kh, kw, oc) if depthwise else _dims(oc, kh, kw, c),
            "output_dims": _dims(1, oh, ow, oc)}


def buffer_name(layer: int) -> str:
    """The arena buffer holding layer ``layer``'s kernel scratch during its frozen call (the
    generated step hands it to the kernel as a ``tl_context``)."""
    return f"k{layer}"


def frozen_layer_scratch(backend: str, layer) -> int:
    """:func:`layer_scratch` of a layer's frozen kernel call (0: none or no call)."""
    call = frozen_call(layer)
    return 0 if call is None else layer_scratch(backend, call)
