"""Issue 10's property: `gen`, `train`, `plan` and `inspect` driven in-process (tinylora.cli.main)
with generated bad arguments and files (random bytes, truncated or edited files, wrong shapes and
dtypes, NaN, bad labels, bad numbers, odd paths) end with exit 0 or one `tinylora: error:` line
and exit 2, never a traceback; and no file outside the output folder changes (the surrounding
tree is hashed before and after every run). Derandomised, bounded example counts."""
import contextlib
import hashlib
import io
import os
import pathlib
import shutil
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinylora
from tinylora import LoRAConfig, Trainer
from tinylora.cli import main

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def tree():
    """root/outside (files that must not change), root/inputs (the generated inputs, written
    before hashing), root/out (the working folder and the only place output may go)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="tinylora-prop-"))
    model = tinylora.example_model().read_bytes()
    (root / "outside" / "sub").mkdir(parents=True)
    (root / "outside" / "model.tflite").write_bytes(model)
    (root / "outside" / "sub" / "notes.txt").write_text("keep me\n")
    (root / "inputs").mkdir()
    (root / "out").mkdir()
    trainer = Trainer(tinylora.load_tflite(model), LoRAConfig(rank=2))
    yield {"root": root, "model": model, "adapter": trainer.adapter.to_bytes()}
    shutil.rmtree(root, ignore_errors=True)


def _digest(root: pathlib.Path) -> dict[str, str]:
    """Every path under root except out/, with its content hash (folders too)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        rel = pathlib.Path(dirpath).relative_to(root)
        if rel.parts[:1] == ("out",):
            continue
        out[str(rel) + "/"] = "dir"
        for f in files:
            out[str(rel / f)] = hashlib.sha256((pathlib.Path(dirpath) / f).read_bytes()).hexdigest()
    return out


def _run(tree, argv: list[str], allowed=(0, 2)) -> None:
    root = tree["root"]
    before, cwd = _digest(root), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(root / "out")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:   # argparse: --help, or a bad argument
                rc = e.code
    finally:
        os.chdir(cwd)
        for p in (root / "out").iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    text = err.getvalue()
    assert rc in allowed, (argv, rc, text)
    assert "Traceback" not in text, (argv, text)
    errors = [line for line in text.splitlines() if line.startswith("tinylora: error:")]
    if rc == 2:
        assert len(errors) == 1 and text.strip().splitlines()[-1] == errors[0], (argv, text)
    assert _digest(root) == before, (argv, "a file outside the output folder changed")


# ------------------------------------------------------------------------------------ inputs

X_KINDS = ["ok", "int", "0-d", "empty", "shape", "nan", "inf", "big-int", "complex", "bool", "str"]
Y_KINDS = ["ok", "-1", "3.9", "classes", "one-hot", "short", "0-d", "nan", "float-ok", "str"]


# (x kind, y kind, array names): every bad kind with good partners, then good data both ways
DATA_KINDS = ([(k, "ok", ("x", "y")) for k in X_KINDS[1:]]
              + [("ok", k, ("x_train", "y_train")) for k in Y_KINDS[1:]]
              + [("ok", "ok", ("x",)), ("ok", "ok", ("y_train",))]
              + [("ok", "ok", ("x", "y")), ("int", "ok", ("x", "y"))] * 4)


def _x(kind: str, n: int, rng) -> np.ndarray:
    x = rng.uniform(0, 1, (n, 8, 8, 1)).astype(np.float32)
    return {"ok": x, "int": (x * 100).astype(np.int8), "0-d": np.array(1.0), "empty": x[:0],
            "shape": x.reshape(n, -1)[:, :10], "nan": np.where(x > 0.9, np.nan, x),
            "inf": np.where(x > 0.9, -np.inf, x), "big-int": (x * 1000).astype(np.int32),
            "complex": x.astype(np.complex64), "bool": x > 0.5, "str": np.array(["x"] * n)}[kind]


def _y(kind: str, n: int, rng) -> np.ndarray:
    y = rng.integers(0, 10, n)
    return {"ok": y, "-1": np.r_[y[:-1], -1], "3.9": np.r_[y[:-1], 3.9], "classes": np.r_[y[:-1], 10],
            "one-hot": np.eye(10)[y], "short": y[:-1], "0-d": np.array(1), "nan": np.r_[y[:-1], np.nan],
            "float-ok": y.astype(np.float64), "str": np.array(["a"] * n)}[kind]


@st.composite
def data_files(draw, tree):
    """A path to a --data file: a generated .npz, random bytes, a truncated .npz, a folder..."""
    inputs = tree["root"] / "inputs"
    kind = draw(st.sampled_from(["npz"] * 6 + ["bytes", "truncated", "truncated", "folder", "missing"]))
    path = inputs / f"d{draw(st.integers(0, 3))}.npz"
    if kind == "folder":
        return str(inputs)
    if kind == "missing":
        return str(inputs / "missing.npz")
    if kind == "bytes":
        path.write_bytes(draw(st.binary(max_size=300)))
        return str(path)
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    n = draw(st.integers(1, 5))
    xk, yk, keys = draw(st.sampled_from(DATA_KINDS))
    arrays = dict(zip(keys, (_x(xk, n, rng), _y(yk, n, rng))))
    np.savez(path, **arrays)
    if kind == "truncated":
        blob = path.read_bytes()
        path.write_bytes(blob[: draw(st.integers(0, len(blob) - 1))])
    return str(path)


@st.composite
def model_files(draw, tree):
    """A path to a --model (or inspect) file: the bundled model, edited or cut, random bytes, an
    adapter (whole or damaged), a folder, a missing path."""
    inputs, model = tree["root"] / "inputs", tree["model"]
    kind = draw(st.sampled_from(["model", "cut", "flip", "bytes", "adapter", "bad-adapter", "crafted",
                                 "folder", "missing", "outside"]))
    path = inputs / "m.bin"
    if kind == "model":
        path.write_bytes(model)
    elif kind == "cut":
        path.write_bytes(model[: draw(st.integers(0, len(model) - 1))])
    elif kind == "flip":
        blob = bytearray(model)
        for _ in range(draw(st.integers(1, 4))):
            blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
        path.write_bytes(bytes(blob))
    elif kind == "bytes":
        path.write_bytes(draw(st.binary(max_size=300)))
    elif kind == "adapter":
        path.write_bytes(tree["adapter"])
    elif kind in ("bad-adapter", "crafted"):   # crafted: the CRC made right again
        blob = bytearray(tree["adapter"])
        blob[draw(st.integers(4, len(blob) - 5))] ^= draw(st.integers(1, 255))
        if kind == "crafted":
            blob[-4:] = zlib.crc32(bytes(blob[:-4])).to_bytes(4, "little")
        path.write_bytes(bytes(blob))
    else:
        return {"folder": str(inputs), "missing": str(inputs / "none.tflite"),
                "outside": str(tree["root"] / "outside" / "model.tflite")}[kind]
    return str(path)


NUMBERS = ["-1", "0", "1", "2", "3.5", "nan", "inf", "-inf", "1e309", "abc", "", "99999999999999999999"]
OUT_PATHS = ["a.bin", "sub/dir/a.bin", ".", "..", "../outside", "../outside/model.tflite/a.bin",
             "/dev/null/a.bin", "../inputs", "x" * 300]


def _options(draw, options: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """At most one option gets a bad value (so runs get past argparse to the files); the others
    are left out or given a good value. options: name -> (good values, bad values)."""
    bad = draw(st.sampled_from([None] * len(options) + list(options)))
    argv = []
    for name, (good, wrong) in options.items():
        if name == bad:
            argv += [name, draw(st.sampled_from(wrong))]
        elif good and draw(st.booleans()):
            argv += [name, draw(st.sampled_from(good))]
    return argv


# ------------------------------------------------------------------------------------ properties

@settings(max_examples=80, **SETTINGS)
@given(data=st.data())
def test_train_with_bad_inputs(tree, data):
    d = data.draw
    argv = ["train", "--quiet", "--data", d(data_files(tree))]
    argv += _options(d, {"--epochs": (["1", "2"], ["-1", "0", "x", "1.5", ""]),
                         "--rank": (["1", "2"], ["-3", "0", "256", "x"]),
                         "--lr": (["0.5", "0.01", "0.999"], ["-1", "0", "nan", "inf", "1", "1e309"]),
                         "--seed": (["0", "4294967295"], ["-1", "4294967296", "x"]),
                         "--density": (["1", "0.5", "1e-9"], ["0", "nan", "2"]),
                         "--out": (OUT_PATHS[:2], OUT_PATHS[2:])})
    if d(st.booleans()):
        argv += ["--model", d(model_files(tree))]
    _run(tree, argv)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_plan_with_bad_inputs(tree, data):
    d = data.draw
    argv = ["plan"]
    if d(st.booleans()):
        argv += ["--model", d(model_files(tree))]
    argv += _options(d, {"--budget": (["100", "5000", "2600"], NUMBERS),
                         "--rank": (["1", "2", "255"], ["0", "256", "x"]),
                         "--recompute": (["all", "auto", "none"], ["some", ""]),
                         "--plot": (["p.svg", "sub.svg"], ["nope/p.svg", "p.txt", ".", "../outside/sub/notes.txt",
                                                          "/dev/null/p.svg", "../outside/sub"])})
    if "--budget" not in argv and d(st.booleans()):
        argv += ["--board", d(st.sampled_from(["esp32", "nope", "", "../boards/esp32", "../../pyproject"]))]
    _run(tree, argv)


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_inspect_with_bad_files(tree, data):
    # exit 1 is inspect's documented answer for a readable model with an unsupported op
    _run(tree, ["inspect", data.draw(model_files(tree))], allowed=(0, 1, 2))


@settings(max_examples=15, **SETTINGS)
@given(data=st.data())
def test_gen_with_bad_inputs(tree, data):
    d = data.draw
    argv = ["gen", "--board", d(st.sampled_from(["esp32", "esp32", "nope", "", "../boards/esp32"]))]
    argv += ["--out", d(st.sampled_from(["proj", "proj", "../outside/model.tflite", "/dev/null/p"]))]
    argv += ["--data", d(data_files(tree))]
    argv += _options(d, {"--samples": (["2"], ["0", "-1", "x", "4097"]), "--epochs": (["1"], ["0", "1001", "x"]),
                         "--lr": (["0.5"], ["0", "1", "nan", "-1"]), "--rank": (["1"], ["0", "256", "x"])})
    _run(tree, argv)


@pytest.mark.parametrize("xk, yk, keys", sorted(set(DATA_KINDS)))
def test_train_and_gen_on_every_kind_of_data(tree, xk, yk, keys):
    """Every kind of generated --data at least once (hypothesis draws some kinds more often)."""
    rng = np.random.default_rng(1)
    path = tree["root"] / "inputs" / "kind.npz"
    np.savez(path, **dict(zip(keys, (_x(xk, 3, rng), _y(yk, 3, rng)))))
    _run(tree, ["train", "--quiet", "--epochs", "1", "--data", str(path), "--out", "a.bin"])
    if (xk, yk) != ("ok", "ok") or keys != ("x", "y"):   # a valid gen is covered above and in test_project
        _run(tree, ["gen", "--board", "esp32", "--samples", "2", "--data", str(path), "--out", "p"])
