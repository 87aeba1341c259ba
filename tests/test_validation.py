"""Issue 10, input validation: every finding has a test here that failed before its fix. Labels are
class numbers, NaN/inf are refused with their index, --data files and adapter blobs are checked,
CLI ranges are argparse types, and the CLI answers bad input with one line and exit 2."""
import ast
import pathlib
import struct
import zlib

import numpy as np
import pytest

import tinylora
from tinylora import InputError, LoRAConfig, TinyLoRAError, Trainer, datasets
from tinylora.cli import main
from tinylora.planning.arena import checked_plan
from tinylora.tflite import reader

X1 = np.zeros((8, 8, 1), np.int8)


@pytest.fixture(scope="module")
def trainer(model):
    return Trainer(model, LoRAConfig(rank=2))


def _cli(capsys, *argv):
    """(exit status, stdout, stderr) of one in-process CLI run; argparse's exits included."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylora: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------ labels

@pytest.mark.parametrize("label, text", [(-1, r"\[0, 10\)"), (10, r"\[0, 10\)"), (3.9, "whole class"),
                                         (np.nan, "non-finite"), (np.eye(10)[3], "one class number"),
                                         (True, "booleans")])
def test_step_refuses_a_label_that_is_not_a_class(trainer, label, text):
    before = trainer.checkpoint()
    with pytest.raises(InputError, match=text):
        trainer.step(X1, label)
    assert trainer.checkpoint() == before   # nothing trained


def test_step_takes_integral_float_and_numpy_labels(model):
    a, b = Trainer(model, LoRAConfig(rank=2)), Trainer(model, LoRAConfig(rank=2))
    assert a.step(X1, 3.0) == b.step(X1, np.int64(3))


@pytest.mark.parametrize("Y, text", [([0, 1, -1], r"Y\[2\] is -1"), ([0, 1.5, 2], r"Y\[1\] is 1.5"),
                                     ([0, 1], "2 labels for 3 samples"), (np.eye(10)[:3], "one-hot")])
def test_fit_refuses_bad_labels(trainer, Y, text):
    with pytest.raises(InputError, match=text):
        trainer.fit(np.zeros((3, 8, 8, 1), np.int8), Y)


def test_fit_refuses_no_samples_and_negative_epochs(trainer):
    with pytest.raises(InputError, match="at least one sample"):
        trainer.fit([], [])
    with pytest.raises(InputError, match="epochs"):
        trainer.fit(np.zeros((2, 8, 8, 1), np.int8), [0, 1], epochs=-1)


def test_lr_error_names_the_learning_rate(model):
    for lr in (-1, 0, float("nan"), float("inf")):
        with pytest.raises(tinylora.ConfigError, match="lr"):
            Trainer(model, LoRAConfig(rank=2), lr=lr)


# ------------------------------------------------------------------------------- non-finite

def test_quantize_refuses_nan_and_inf_naming_the_index(model):
    x = np.zeros((3, 8, 8, 1), np.float32)
    x[2, 4, 1, 0] = np.inf
    with pytest.raises(InputError, match=r"index \(2, 4, 1, 0\)"):
        model.quantize(x)
    with pytest.raises(InputError, match="non-finite"):
        Trainer(model, LoRAConfig(rank=2)).predict(np.full((1, 8, 8, 1), np.nan))


# ------------------------------------------------------------------------------- --data files

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


XS = np.zeros((4, 8, 8, 1), np.float32)


@pytest.mark.parametrize("arrays, text", [
    (dict(x=np.array(1.0), y=np.array(1)), r"x has shape \(\)"),
    (dict(x=XS[:0], y=np.zeros(0, int)), r"x has shape \(0, 8, 8, 1\)"),
    (dict(x=XS, y=np.zeros(3, int)), "3 labels for 4 samples"),
    (dict(x=XS, y=np.eye(10)[:4]), "one-hot"),
    (dict(x=XS, y=np.array([0, 1, 3.9, 2])), r"y\[2\] is 3.9"),
    (dict(x=XS, y=np.array([0, 1, 2, 10])), r"y\[3\] is 10"),
    (dict(x=np.where(np.arange(4)[:, None, None, None] == 1, np.nan, XS), y=np.zeros(4, int)),
     r"index \(1, 0, 0, 0\)"),
    (dict(x_train=XS, y_train=np.zeros(4, int), x_test=XS, y_test=np.zeros(2, int)), "y_test"),
    (dict(x=np.array(["a"] * 4), y=np.zeros(4, int)), "real numbers"),
])
def test_load_npz_refuses_bad_arrays_by_name(model, tmp_path, arrays, text):
    with pytest.raises(InputError, match=text):
        datasets.load_npz(_npz(tmp_path / "d.npz", **arrays), model)


def test_load_npz_says_what_a_wrong_file_is(model, tmp_path):
    good = pathlib.Path(_npz(tmp_path / "good.npz", x=XS, y=np.zeros(4, int))).read_bytes()
    cases = {"junk.npz": (b"hello" * 20, "not a zip archive"), "a.npy": (None, "an .npy array"),
             "obj.npz": (None, "Python objects")}
    np.save(tmp_path / "a.npy", XS)
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object), y=np.zeros(2))
    (tmp_path / "junk.npz").write_bytes(cases["junk.npz"][0])
    for name, (_, text) in cases.items():
        with pytest.raises(InputError, match=text) as e:
            datasets.load_npz(str(tmp_path / name), model)
        assert "allow_pickle" not in str(e.value)
    for cut in (10, len(good) // 2, len(good) - 30, len(good) - 1):
        (tmp_path / "t.npz").write_bytes(good[:cut])
        with pytest.raises(InputError, match="damaged|truncated"):
            datasets.load_npz(str(tmp_path / "t.npz"), model)


def test_gen_refuses_mismatched_data_and_writes_nothing(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", x=XS, y=np.zeros(3, int))
    rc, _, err = _cli(capsys, "gen", "--board", "esp32", "--data", data, "--out", str(tmp_path / "p"))
    assert rc == 2 and "3 labels for 4 samples" in _one_line_error(err)
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------------------- the CLI

@pytest.mark.parametrize("argv, text", [
    (["train", "--lr", "-1"], "argument --lr: -1 is out of range"),
    (["train", "--epochs", "-1"], "argument --epochs"),
    (["train", "--rank", "0"], "argument --rank"),
    (["train", "--density", "nan"], "argument --density"),
    (["plan", "--budget", "-5"], "argument --budget"),
    (["gen", "--board", "esp32", "--samples", "0"], "argument --samples"),
    (["verify", "--target", "host", "--steps", "x"], "'x' is not a whole number"),
    (["plan", "--nope"], "unrecognized arguments"),
])
def test_bad_numbers_are_one_line_argparse_errors(capsys, argv, text):
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2 and text in _one_line_error(err) and out == ""


def test_train_checks_out_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, text in ((tmp_path, "is a folder"), (tmp_path / "file" / "a.bin", "is a file, not a folder")):
        rc, stdout, err = _cli(capsys, "train", "--out", str(out), "--quiet")
        assert rc == 2 and text in _one_line_error(err)
        assert "epoch" not in stdout   # refused before any training


def test_plan_plot_to_a_missing_folder(tmp_path, capsys):
    rc, out, err = _cli(capsys, "plan", "--plot", str(tmp_path / "nope" / "arena.svg"))
    assert rc == 2 and "does not exist" in _one_line_error(err) and out == ""


def test_inspect_caps_what_it_reads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reader, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.tflite"
    big.write_bytes(b"\0" * 1001)
    rc, _, err = _cli(capsys, "inspect", str(big))
    assert rc == 2 and "larger than" in _one_line_error(err)


def test_inspect_of_dev_zero_ends(capsys):
    rc, _, err = _cli(capsys, "inspect", "/dev/zero")
    assert rc == 2 and f"{reader.MAX_FILE_BYTES >> 20} MB" in _one_line_error(err)


def test_budget_suggestions_are_distinct_and_new(model):
    t = Trainer(model, LoRAConfig(rank=4), recompute="all")
    with pytest.raises(tinylora.BudgetError) as e:
        checked_plan(t, budget=1500)
    msg = str(e.value)
    fits = msg.split("These would fit: ")[1].split(". ")[0].split("; ") if "would fit" in msg else []
    labels = [f.rsplit(" (", 1)[0] for f in fits]
    assert len(labels) == len(set(labels)) and "recompute all" not in labels
    assert "use fewer target layers" not in msg and "--recompute all" not in msg


# ------------------------------------------------------------------------------- adapters

def _crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _crafted(blob: bytes, offset: int, fmt: str, value) -> bytes:
    body = bytearray(blob[:-4])
    struct.pack_into(fmt, body, offset, value)
    return _crc(bytes(body))


def test_inspect_recognises_an_adapter(trainer, tmp_path, capsys):
    path = tmp_path / "adapter.bin"
    path.write_bytes(trainer.adapter.to_bytes())
    rc, out, _ = _cli(capsys, "inspect", str(path))
    assert rc == 0 and "tinylora adapter" in out and "layer 5: rank 2, A 2x64, B 32x2" in out


# ------------------------------------------------------------------------------- one base class

def test_every_raise_in_the_package_is_a_tinylora_error():
    root = pathlib.Path(tinylora.__file__).parent
    names = {n: c for n, c in vars(tinylora.errors).items() if isinstance(c, type)}
    bad = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        # helpers of the module that build an error (annotated to return a TinyLoRAError class)
        makers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                  and isinstance(f.returns, ast.Name) and f.returns.id in names
                  and issubclass(names[f.returns.id], TinyLoRAError)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                f = node.exc.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?")
                if name == "ArgumentTypeError" or name in makers:   # argparse: the one-line error
                    continue
                if not (name in names and issubclass(names[name], TinyLoRAError)):
                    bad.append(f"{path.relative_to(root)}:{node.lineno} raises {name}")
    assert not bad, bad
