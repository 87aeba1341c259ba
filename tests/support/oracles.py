"""Reference interpreters used as oracles by the tests.

``tflm_run(model_bytes, x)``
    tflite-micro's reference kernels (the bit-exact oracle for what runs on the chip).
``litert_ref_run(model_bytes, x)``
    LiteRT with ``OpResolverType.BUILTIN_REF`` (reference kernels, no delegates). Note: its
    FULLY_CONNECTED uses single rounding, so it can differ by one from TFLM there; its
    convolutions use double rounding like TFLM.
``tflm_arena_report(model_bytes)``
    What TFLM's ``print_allocations()`` writes to stderr, as a string.

Both runners take a batch ``x`` of int8 inputs, shape ``(N, *input_shape)`` (or a single
sample of shape ``input_shape``) for a model whose input has batch dimension 1, run the samples
one by one on one interpreter and return the stacked int8 outputs ``(N, *output_shape)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

__all__ = [
    "SOFTMAX_MAX_DEPTH",
    "tflm_run",
    "litert_ref_run",
    "tflm_arena_report",
    "tflm_interpreter",
    "litert_ref_interpreter",
]


def _model_shapes(model_bytes):
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = m.subgraphs[0]
    return [tuple(int(s) for s in sg.tensors[i].shape) for i in sg.inputs], [
        tuple(int(s) for s in sg.tensors[i].shape) for i in sg.outputs
    ], m


def _arena_size(model_bytes) -> int:
    """A generous arena: the interpreter's own default (10x the model) or, for models whose
    activations dwarf their weights, room for every activation tensor twice over."""
    _, _, m = _model_shapes(model_bytes)
    act = 0
    for t in m.subgraphs[0].tensors:
        if t.buffer == 0 or m.buffers[t.buffer].data is None:
            act += int(np.prod(t.shape)) * 4
    return max(10 * len(model_bytes), 2 * act + 64 * 1024)


def _as_batch(x, in_shape):
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"inputs must be int8, got {x.dtype}")
    sample = tuple(in_shape[1:]) if in_shape and in_shape[0] == 1 else tuple(in_shape)
    if x.shape == sample:
        x = x[None]
    if x.shape[1:] != sample:
        raise ValueError(f"input shape {x.shape} does not match model input {in_shape}")
    return x


# Both interpreters abort the process (an assert in gemmlowp's RoundingDivideByPOT) on an int8
# SOFTMAX whose sum of exps reaches 512, which needs a depth of at least 512.
SOFTMAX_MAX_DEPTH = 512


def _check_safe(model_bytes) -> None:
    """Refuse models that could crash the interpreter process instead of raising."""
    from ai_edge_litert import schema_py_generated as fb

    _, _, m = _model_shapes(model_bytes)
    sg = m.subgraphs[0]
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == fb.BuiltinOperator.SOFTMAX:
            depth = int(sg.tensors[op.inputs[0]].shape[-1])
            if depth >= SOFTMAX_MAX_DEPTH:
                raise ValueError(
                    f"SOFTMAX depth {depth} >= {SOFTMAX_MAX_DEPTH} may abort the interpreter process"
                )


@contextlib.contextmanager
def _capture_fd2():
    """Redirect the process-level stderr (fd 2, where TFLM's C++ prints) into a buffer.

    Yields a list that receives the captured text when the block ends."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace").replace("\r\n", "\n"))


def tflm_interpreter(model_bytes, arena_size: int | None = None):
    """A tflite-micro interpreter for ``model_bytes``.

    Raises RuntimeError carrying TFLM's own error text (which it prints to stderr) when TFLM
    rejects the model."""
    from tflite_micro.python.tflite_micro import runtime

    _check_safe(model_bytes)
    if arena_size is None:
        arena_size = _arena_size(model_bytes)
    try:
        with _capture_fd2() as log:
            return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
    except RuntimeError as e:
        raise RuntimeError(f"{e}: {log[0].strip() if log else ''}") from None


def tflm_run(model_bytes, x_int8_batch) -> np.ndarray:
    """Run each sample through tflite-micro; return int8 outputs (N, *output_shape)."""
    ins, outs, _ = _model_shapes(model_bytes)
    x = _as_batch(x_int8_batch, ins[0])
    interp = tflm_interpreter(model_bytes)
    out_shape = outs[0][1:] if outs[0] and outs[0][0] == 1 else outs[0]
    y = np.empty((x.shape[0],) + tuple(out_shape), np.int8)
    for i in range(x.shape[0]):
        interp.set_input(np.ascontiguousarray(x[i][None]), 0)
        interp.invoke()
        y[i] = np.asarray(interp.get_output(0)).reshape(out_shape)
    return y


def tflm_outputs(model_bytes, x) -> np.ndarray:
    """Each sample of x through tflite-micro in the model's own input type (int8, uint8 or
    float32 ends), flattened: (N, outputs) in the model's output type."""
    interp = tflm_interpreter(model_bytes)
    out = []
    for sample in x:
        interp.set_input(np.ascontiguousarray(sample[None]), 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(out)


def litert_ref_interpreter(model_bytes):
    """A LiteRT interpreter with reference kernels and no delegates, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _check_safe(model_bytes)
    interp = Interpreter(
        model_content=bytes(model_bytes),
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    return interp


def litert_ref_run(model_bytes, x_int8_batch) -> np.ndarray:
    """Run each sample through LiteRT's reference kernels; return int8 (N, *output_shape)."""
    ins, outs, _ = _model_shapes(model_bytes)
    x = _as_batch(x_int8_batch, ins[0])
    interp = litert_ref_interpreter(model_bytes)
    in_idx = interp.get_input_details()[0]["index"]
    out_idx = interp.get_output_details()[0]["index"]
    out_shape = outs[0][1:] if outs[0] and outs[0][0] == 1 else outs[0]
    y = np.empty((x.shape[0],) + tuple(out_shape), np.int8)
    for i in range(x.shape[0]):
        interp.set_tensor(in_idx, np.ascontiguousarray(x[i][None]))
        interp.invoke()
        y[i] = interp.get_tensor(out_idx).reshape(out_shape)
    return y


def tflm_arena_report(model_bytes, arena_size: int | None = None) -> str:
    """Text that TFLM's ``print_allocations()`` writes (to the C stderr) after one invoke."""
    ins, _, _ = _model_shapes(model_bytes)
    interp = tflm_interpreter(model_bytes, arena_size)
    interp.set_input(np.zeros(ins[0], np.int8), 0)
    interp.invoke()
    with _capture_fd2() as log:
        interp.print_allocations()
    return log[0]
