"""The `tinylora` command line."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__, tflite
from .errors import ModelError


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="a full-int8 .tflite file (default: the bundled digits CNN)")


def _model_path(arg: str | None) -> str:
    if arg is not None:
        return arg
    from .examples import example_model
    return str(example_model())


def _short(name: str, width: int = 28) -> str:
    """A readable layer name: the first of the converter's ';'-joined names, middle path part."""
    first = name.split(";")[0]
    parts = first.split("/")
    short = parts[1] if len(parts) > 2 else first
    return short if len(short) <= width else short[: width - 1] + "~"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _quant_text(t: tflite.Tensor | None) -> str:
    if t is None or not t.quantized:
        return "-"
    if t.scale.size == 1:
        return f"s={float(t.scale[0]):.4g} zp={int(t.zero_point[0])}"
    return f"per-ch x{t.scale.size}"


def cmd_inspect(args) -> int:
    from .layers import build_layer
    path = _model_path(args.model)
    graph = tflite.parse(path)
    rows, macs, problems = [], 0, []
    for op in graph.ops:
        ins = [graph.tensors[i] for i in op.inputs if 0 <= i < len(graph.tensors)]
        out = graph.tensors[op.outputs[0]] if op.outputs and 0 <= op.outputs[0] < len(graph.tensors) else None
        try:
            layer = build_layer(graph, op)
            status, op_macs = "yes", layer.macs
            act = layer.activation if hasattr(layer, "activation") else "NONE"
        except ModelError as e:
            status, op_macs, act = "NO", 0, op.options.get("activation", "-")
            problems.append(str(e))
        macs += op_macs
        w = ins[1] if len(ins) > 1 else None
        rows.append([str(op.index), op.name, _short(out.name if out else "?"),
                     "x".join(map(str, ins[0].shape)) if ins else "?",
                     "x".join(map(str, out.shape)) if out else "?",
                     _quant_text(ins[0] if ins else None), _quant_text(out),
                     _quant_text(w) if op.name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") else "-",
                     str(act), f"{op_macs:,}", status])
    print(f"{path}: {len(graph.ops)} ops, {len(graph.tensors)} tensors, {macs:,} MACs per inference")
    print(_table(rows, ["#", "op", "name", "input", "output", "input q", "output q", "weights q",
                        "act", "MACs", "supported"]))
    if problems:
        print("\nnot supported:")
        for p in problems:
            print(f"  {p}")
        return 1
    try:
        from .model import Model
        Model(graph, b"")
    except ModelError as e:
        print(f"\nnot supported: {e}")
        return 1
    print("\nevery op is supported: tinylora runs this model bit-exactly")
    return 0


def cmd_eval(args) -> int:
    from . import datasets, load_tflite
    model = load_tflite(_model_path(args.model))
    split = datasets.digits_split(seed=0)
    x = datasets.to_model_input(model, split["x_test"])
    logits = model.forward(x)
    acc = float(np.mean(np.argmax(logits, axis=-1) == split["y_test"]))
    print(f"int8 accuracy on the digits test split ({len(x)} images): {acc:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tinylora", formatter_class=fmt,
        description="Train LoRA adapters on microcontrollers, bit-exactly.",
        epilog="example:\n  tinylora inspect                # the bundled digits CNN\n"
               "  tinylora inspect model.tflite")
    parser.add_argument("--version", action="version", version=f"tinylora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("inspect", formatter_class=fmt,
                       help="list a model's layers, shapes, quantization, MACs and support",
                       description="Print every op of a .tflite model with its shapes, "
                                   "quantization, MACs and whether tinylora supports it.",
                       epilog="example:\n  tinylora inspect model.tflite\n\n"
                              "exit status 1 when an op is not supported")
    _model_arg(p)
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("eval", formatter_class=fmt,
                       help="int8 accuracy of a digits model on the bundled test split",
                       description="Run the int8 model (tinylora's bit-exact interpreter) on "
                                   "the bundled digits test split and print its accuracy.",
                       epilog="example:\n  tinylora eval")
    _model_arg(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ModelError as e:
        print(f"tinylora: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
