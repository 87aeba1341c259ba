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
  ``arm_fully_connected_s8_get_buffer_size`` (0 without MVE);
* ESP-NN v1.1.2 ANSI and generic-opt: every ``esp_nn_get_*_scratch_size`` returns 0.

tinylora's C asks for the library's bytes plus 15 (it rounds the scratch start up to 16:
``tl_scratch_need``); :func:`layer_scratch` returns that, the number the C size queries
(``tl_*_scratch_size``) give. The argument is a frozen step of
:func:`tinylora.codegen.frozen.plan_frozen` (kind, params, dims as the C receives them).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from tinylora.errors import InputError

__all__ = ["SCRATCH_ALIGN", "library_scratch", "layer_scratch", "max_scratch"]

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
    return 0  # FULLY_CONNECTED without MVE, SOFTMAX (portable)


def layer_scratch(backend: str, step: Mapping) -> int:
    """Bytes tinylora's C needs registered for this step (library bytes + alignment slack)."""
    need = library_scratch(backend, step)
    return need + SCRATCH_ALIGN - 1 if need > 0 else 0


def max_scratch(backend: str, steps: Iterable[Mapping]) -> int:
    """The scratch a model needs: the largest over its frozen steps (one call at a time)."""
    return max((layer_scratch(backend, s) for s in steps), default=0)
