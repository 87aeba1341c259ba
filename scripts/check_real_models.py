"""Build the real-world look-alikes (tests/support/real_models.py) and check each one the way a
user would: ``tinylora inspect``, the forward against TFLM on N random inputs (bytes compared,
float ends too), ``tinylora verify --forward 20`` on host and Cortex-M4, ``tinylora verify``
with the default LoRA config on host, and ``tinylora gen --board nucleo_f746zg``.

    python scripts/check_real_models.py OUT_DIR [--only NAME ...] [--inputs 200] [--quick]

Prints one table row per model; each cell is ``ok`` or the first line of what went wrong
(exit codes: 0 pass, 1 mismatch, 2 refusal with a message). ``--quick`` skips cortex-m4 and gen.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tests.support import oracles, real_models  # noqa: E402
from tinylora import cli, load_tflite  # noqa: E402


def random_inputs(model, rng, n):
    shape = (n,) + tuple(model.input_shape)
    if model.input_dtype == "FLOAT32":
        x = (rng.standard_normal(shape) * 2).astype(np.float32)
        x[-2:] *= 1000
        return x
    info = np.iinfo(np.dtype(model.input_dtype.lower()))
    return rng.integers(info.min, info.max + 1, size=shape).astype(model.input_dtype.lower())


def forward_diff(data, n, seed=0) -> str:
    model = load_tflite(data)
    x = random_inputs(model, np.random.default_rng(seed), n)
    want = oracles.tflm_outputs(data, x)
    got = np.concatenate([model.forward(x[i:i + 50]).reshape(len(x[i:i + 50]), -1)
                          for i in range(0, n, 50)])
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"dtype/shape {got.dtype}{got.shape} vs TFLM {want.dtype}{want.shape}"
    diff = int((got.view(np.uint8) != want.view(np.uint8)).sum())
    return f"{diff}/{got.nbytes}"


def run_cli(argv) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except Exception as e:  # a traceback is a bug: report it as such
            return 99, f"CRASH {type(e).__name__}: {e}"
    text = (err.getvalue() + out.getvalue()).strip()
    return rc, text


def cell(rc, text, ok_word="ok") -> str:
    if rc == 0:
        return ok_word
    lines = [l for l in text.splitlines() if l.strip()]
    msg = next((l for l in lines if "error" in l.lower() or "differ" in l.lower()),
               lines[-1] if lines else "")
    return f"rc{rc}: {msg.strip()[:150]}"


def check(name, path: Path, args) -> list[str]:
    data = path.read_bytes()
    row = [name]
    rc, text = run_cli(["inspect", str(path)])
    row.append(cell(rc, text))
    if name in real_models.REFUSED:
        word = real_models.REFUSED[name]
        row.append("refused, names " + word if rc != 0 and word in text else f"NOT REFUSED: {text[-200:]}")
        return row
    try:
        row.append(forward_diff(data, args.inputs))
    except Exception as e:
        row.append(f"CRASH {type(e).__name__}: {str(e)[:150]}")
    targets = ["host"] if args.quick else ["host", "cortex-m4"]
    for t in targets:
        row.append(cell(*run_cli(["verify", "--forward", "20", "--model", str(path),
                                  "--target", t])))
    row.append(cell(*run_cli(["verify", "--model", str(path), "--target", "host",
                              "--steps", "8"])))
    if not args.quick:
        out = Path(args.out_dir) / "gen" / name
        rc, text = run_cli(["gen", "--board", "nucleo_f746zg", "--model", str(path),
                            "--out", str(out), "--force"])
        row.append(cell(rc, text, "fits"))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    cols = ["model", "inspect", "forward bytes differing", "verify --forward host"]
    cols += [] if args.quick else ["verify --forward cortex-m4"]
    cols += ["verify host (default LoRA)"] + ([] if args.quick else ["gen nucleo_f746zg"])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols), flush=True)
    for name in args.only or list(real_models.MODELS):
        path = args.out_dir / f"{name}.tflite"
        if not path.is_file():
            path.write_bytes(real_models.build(name, args.out_dir / "cache"))
        t = time.perf_counter()
        row = check(name, path, args)
        print("| " + " | ".join(row) + f" |  ({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
