"""`tinylora eval` (any model, with or without an adapter, any .npz) and `tinylora merge`
(docs/adapter.md); the argparse front end is :mod:`tinylora.cli`."""
from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

from tinylora import datasets
from tinylora.commands import check_out_file
from tinylora.errors import ConfigError, InputError
from tinylora.examples import example_model
from tinylora.formats.adapter import Adapter
from tinylora.merge import merge
from tinylora.ref.loss import choose_loss
from tinylora.ref.model import Model, load_tflite
from tinylora.ref.trainer import Trainer


def eval_loss(model: Model, adapter: Adapter | None, loss: str | None) -> str:
    """"xent" (accuracy) or "mse" (errors): --loss, else the adapter's, else the model's last op
    (SOFTMAX: a classifier); ConfigError asking for --loss when none of them says."""
    if loss is None and adapter is not None:
        loss = adapter.loss
    try:
        return choose_loss(loss, model.layers[-1].kind)
    except ConfigError:
        raise ConfigError(f"the model ends in {model.layers[-1].kind}, not SOFTMAX: say what its "
                          "outputs are with --loss xent (class scores: accuracy) or --loss mse "
                          "(values: mean squared and absolute error)") from None


def outputs(model: Model, x: np.ndarray, adapter: Adapter | None = None) -> np.ndarray:
    """The int8 outputs tinylora computes for int8 inputs x: the model's, or with the adapter
    (then of the layer before a final softmax: the same argmax)."""
    if adapter is None:
        return model.forward(x)
    return Trainer(model, adapter=adapter).logits(x)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, adapter: Adapter | None = None,
             loss: str = "xent") -> dict:
    """{"accuracy"} for class labels y, or {"mse", "mae"} in real output units for targets y
    (real values, or int8 values in the output's quantization)."""
    out = outputs(model, x, adapter)
    if loss == "xent":
        return {"accuracy": float(np.mean(np.argmax(out.reshape(len(x), -1), axis=-1) == y))}
    q = model.layers[-1].output_q
    scale, zp = float(q.scale[0]), int(q.zero_point[0])
    real = (out.astype(np.float64) - zp) * scale if np.issubdtype(out.dtype, np.integer) else out
    target = np.asarray(y, np.float64)
    if np.issubdtype(np.asarray(y).dtype, np.integer):
        target = (target - zp) * scale
    err = real.reshape(len(x), -1) - target.reshape(len(x), -1)
    return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err)))}


def _regression_data(path: str, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(int8 x, targets) of an .npz for an MSE model: x_test/y_test, else x/y."""
    try:
        z = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise InputError(f"--data {path} is not a readable .npz file ({e})") from None
    xn, yn = ("x_test", "y_test") if "x_test" in z else ("x", "y")
    if xn not in z or yn not in z:
        raise InputError(f"{path} lacks {xn} and {yn} (it holds {sorted(z)}): give x and y, or "
                         "x_test and y_test")
    x, y = z[xn], z[yn]
    shape = model.layers[-1].output_shape
    if len(x) != len(y) or tuple(y.shape[1:]) != tuple(shape):
        raise InputError(f"{path}: {yn} has shape {y.shape}; an MSE model needs one target of the "
                         f"output's shape {shape} per sample of {xn} ({len(x)} samples)")
    x = x if np.issubdtype(x.dtype, np.integer) else model.quantize(x)
    return x, y


def cmd_eval(args) -> int:
    if args.model and args.model_option and args.model != args.model_option:
        raise InputError(f"two models given ({args.model} and --model {args.model_option}): give one")
    args.model = args.model or args.model_option
    model = load_tflite(args.model or str(example_model()))
    adapter = Adapter.load(args.adapter).check(model) if args.adapter else None
    loss = eval_loss(model, adapter, args.loss) if (args.data or args.adapter or args.loss) else "xent"
    if args.data is None:
        if loss != "xent":
            raise InputError("the bundled digits split has class labels: give --data D.npz with "
                             "targets to measure an MSE model")
        split = datasets.digits_split(seed=0)
        x, y, what = datasets.to_model_input(model, split["x_test"]), split["y_test"], "the digits test split"
    elif loss == "xent":
        _, _, x, y = datasets.load_npz(args.data, model)
        what = args.data
    else:
        (x, y), what = _regression_data(args.data, model), args.data
    result = evaluate(model, x, y, adapter, loss)
    with_adapter = f" with adapter {args.adapter}" if adapter is not None else ""
    if loss == "xent":
        print(f"int8 accuracy on {what} ({len(x)} {'images' if args.data is None else 'samples'})"
              f"{with_adapter}: {result['accuracy']:.4f}")
    else:
        print(f"int8 outputs on {what} ({len(x)} samples){with_adapter}: mean squared error "
              f"{result['mse']:.6g}, mean absolute error {result['mae']:.6g} (real output units)")
    return 0


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """A temporary file in the same folder, then os.replace: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def cmd_merge(args) -> int:
    out = check_out_file(args.out)
    model = load_tflite(args.model or str(example_model()))
    adapter = Adapter.load(args.adapter)
    merged = merge(model, adapter)
    write_atomic(out, merged)
    layers = ", ".join(str(l["index"]) for l in adapter.layers)
    print(f"merged the adapter {args.adapter} ({adapter.form} form) into layers {layers} of "
          f"{args.model or 'the bundled model'}: wrote {out} ({len(merged):,} bytes; the same ops "
          "and tensor shapes, so the base model's cost)")
    return 0
