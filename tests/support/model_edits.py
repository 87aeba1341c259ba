"""Flatbuffer edits that turn a TF-converted model into what other converters write
(tests/support/real_models.py): each keeps the model's meaning, so TFLM still runs it.

``EDITS``: name -> function(bytes) -> bytes
- ``new_shape_only``: every RESHAPE carries its shape in ReshapeOptions.new_shape and has no
  shape input tensor (older converters, and hand-written models).
- ``negative_scales``: MCUNet's negative per-channel weight scales: on every CONV_2D, every
  third output channel has its scale and its weights negated (the same real weights); on the
  last such conv one weight is -128, so the sign cannot fold into the weights; the final
  RESHAPE's output gets its own scale and zero point (TFLM copies the bytes).
- ``zero_pads``: a PAD whose paddings are all zero (MCUNet has many) before every ADD's
  second input.
- ``drop_bias``: every CONV_2D and FULLY_CONNECTED without a bias (input -1), as converters
  write a layer without one (Keras folds BatchNormalization into a bias). Not depthwise:
  the tflite-micro package's interpreter crashes (SIGSEGV) on a DEPTHWISE_CONV_2D without bias.
- ``conv_to_depthwise``: a CONV_2D over one input channel as DEPTHWISE_CONV_2D with a depth
  multiplier (TFLM's micro_speech model).
- ``svdf`` / ``lstm``: the first FULLY_CONNECTED relabelled SVDF / UNIDIRECTIONAL_SEQUENCE_LSTM
  (recurrent ops to refuse; TF's calibrator crashes on a real int8 LSTM here).
"""
from __future__ import annotations

import copy

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tests.support.edit import edit, set_op

OP = schema.BuiltinOperator


def _code(model, op) -> int:
    oc = model.operatorCodes[op.opcodeIndex]
    return max(oc.builtinCode, oc.deprecatedBuiltinCode)


def _buffer(model, tensor):
    return model.buffers[tensor.buffer]


def _new_shape_only(model) -> None:
    sg = model.subgraphs[0]
    for op in sg.operators:
        if _code(model, op) != OP.RESHAPE or len(op.inputs) < 2:
            continue
        shape_t = sg.tensors[op.inputs[1]]
        shape = np.frombuffer(bytes(_buffer(model, shape_t).data), "<i4")
        options = schema.ReshapeOptionsT()
        options.newShape = [int(v) for v in shape]
        op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        op.builtinOptions = options
        op.inputs = [op.inputs[0]]


def _negative_scales(model) -> None:
    sg = model.subgraphs[0]
    convs = [op for op in sg.operators if _code(model, op) == OP.CONV_2D]
    for k, op in enumerate(convs):
        w_t = sg.tensors[op.inputs[1]]
        buf = _buffer(model, w_t)
        w = np.frombuffer(bytes(buf.data), np.int8).reshape(w_t.shape).copy()
        scales = np.asarray(w_t.quantization.scale, np.float32).copy()
        if scales.size != w.shape[0]:
            continue
        flip = np.arange(w.shape[0]) % 3 == 1
        scales[flip] *= -1
        w[flip] = -w[flip]
        if k == len(convs) - 1:
            c = int(np.flatnonzero(flip)[0])
            row = w[c].reshape(-1)
            j = int(np.argmin(row))
            row[j] = -128      # was -127 at most: a 1/127 change of one weight
            w[c] = row.reshape(w[c].shape)
        w_t.quantization.scale = [float(s) for s in scales]
        buf.data = np.frombuffer(w.tobytes(), np.uint8).copy()
    last = sg.operators[-1]
    if _code(model, last) == OP.RESHAPE:   # MCUNet's last RESHAPE changes the quantization
        q = copy.deepcopy(sg.tensors[last.outputs[0]].quantization)
        q.scale = [float(q.scale[0]) * 1.5]
        q.zeroPoint = [int(q.zeroPoint[0]) // 2 + 3]
        sg.tensors[last.outputs[0]].quantization = q


def _zero_pads(model) -> None:
    sg = model.subgraphs[0]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = OP.PAD
    code.version = 1
    model.operatorCodes.append(code)
    pad_code = len(model.operatorCodes) - 1
    out = []
    for op in sg.operators:
        if _code(model, op) == OP.ADD:
            src = sg.tensors[op.inputs[1]]
            padded = copy.deepcopy(src)
            padded.name = (src.name or b"t") + b"/zero_pad"
            sg.tensors.append(padded)
            paddings = schema.TensorT()
            paddings.shape = [len(src.shape), 2]
            paddings.type = schema.TensorType.INT32
            paddings.name = b"zero_paddings"
            buf = schema.BufferT()
            buf.data = np.zeros(len(src.shape) * 2 * 4, np.uint8)
            model.buffers.append(buf)
            paddings.buffer = len(model.buffers) - 1
            sg.tensors.append(paddings)
            pad = schema.OperatorT()
            pad.opcodeIndex = pad_code
            pad.inputs = [op.inputs[1], len(sg.tensors) - 1]
            pad.outputs = [len(sg.tensors) - 2]
            pad.builtinOptionsType = schema.BuiltinOptions.PadOptions
            pad.builtinOptions = schema.PadOptionsT()
            out.append(pad)
            op.inputs = [op.inputs[0], len(sg.tensors) - 2]
        out.append(op)
    sg.operators = out


def _drop_bias(model) -> None:
    sg = model.subgraphs[0]
    for op in sg.operators:
        if _code(model, op) in (OP.CONV_2D, OP.FULLY_CONNECTED) and len(op.inputs) > 2:
            op.inputs = [op.inputs[0], op.inputs[1], -1]


def _conv_to_depthwise(model) -> None:
    """A CONV_2D on one input channel rewritten as the DEPTHWISE_CONV_2D with depth_multiplier
    = filters that it equals (TFLM's own micro_speech model has this form)."""
    sg = model.subgraphs[0]
    for op in sg.operators:
        if _code(model, op) != OP.CONV_2D:
            continue
        w_t = sg.tensors[op.inputs[1]]
        if w_t.shape[3] != 1:
            continue
        buf = _buffer(model, w_t)
        w = np.frombuffer(bytes(buf.data), np.int8).reshape(w_t.shape)    # [O, H, W, 1]
        buf.data = np.frombuffer(np.transpose(w, (3, 1, 2, 0)).copy().tobytes(), np.uint8).copy()
        w_t.shape = [1, int(w.shape[1]), int(w.shape[2]), int(w.shape[0])]
        w_t.quantization.quantizedDimension = 3
        conv = op.builtinOptions
        dw = schema.DepthwiseConv2DOptionsT()
        dw.padding, dw.strideW, dw.strideH = conv.padding, conv.strideW, conv.strideH
        dw.depthMultiplier = int(w.shape[0])
        dw.fusedActivationFunction = conv.fusedActivationFunction
        dw.dilationWFactor = dw.dilationHFactor = 1
        op.builtinOptionsType = schema.BuiltinOptions.DepthwiseConv2DOptions
        op.builtinOptions = dw
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = OP.DEPTHWISE_CONV_2D
        code.version = 1
        model.operatorCodes.append(code)
        op.opcodeIndex = len(model.operatorCodes) - 1


def _relabel(builtin):
    def fn(model) -> None:
        sg = model.subgraphs[0]
        first_fc = next(i for i, op in enumerate(sg.operators)
                        if _code(model, op) == OP.FULLY_CONNECTED)
        set_op(model, first_fc, builtin)
        sg.operators[first_fc].builtinOptionsType = 0
        sg.operators[first_fc].builtinOptions = None
    return fn


EDITS = {
    "new_shape_only": lambda data: edit(data, _new_shape_only),
    "negative_scales": lambda data: edit(data, _negative_scales),
    "zero_pads": lambda data: edit(data, _zero_pads),
    "drop_bias": lambda data: edit(data, _drop_bias),
    "conv_to_depthwise": lambda data: edit(data, _conv_to_depthwise),
    "svdf": lambda data: edit(data, _relabel(OP.SVDF)),
    "lstm": lambda data: edit(data, _relabel(OP.UNIDIRECTIONAL_SEQUENCE_LSTM)),
}
