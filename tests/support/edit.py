"""Edit a .tflite file through the schema's object API (test fixtures for bad input)."""
from __future__ import annotations

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

BUILTIN = schema.BuiltinOperator
TENSOR = schema.TensorType


def unpack(data: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model: schema.ModelT) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def edit(data: bytes, fn) -> bytes:
    """Unpack, let `fn(model)` change it in place, pack again."""
    model = unpack(data)
    fn(model)
    return pack(model)


def op_code(model, op_index: int):
    sg = model.subgraphs[0]
    return model.operatorCodes[sg.operators[op_index].opcodeIndex]


def set_op(model, op_index: int, builtin: int) -> None:
    """Point op `op_index` at a new operator code `builtin`."""
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    model.subgraphs[0].operators[op_index].opcodeIndex = len(model.operatorCodes) - 1
