"""The tinylora command line: every subcommand, its help and its errors."""
import numpy as np
import pytest
from support import edit as E

from tinylora import Adapter, load_tflite
from tinylora.cli import build_parser, main


@pytest.mark.parametrize("command", ["inspect", "eval", "train", "plan", "boards"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


def test_top_level_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for c in ("inspect", "train", "plan", "boards"):
        assert c in out
    assert build_parser().prog == "tinylora"


def test_inspect_bundled(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert "10,752 MACs" in out and "every op is supported" in out and "DEPTHWISE_CONV_2D" in out


def test_inspect_unsupported_op_lists_it(example_bytes, tmp_path, capsys):
    bad = tmp_path / "pool.tflite"
    bad.write_bytes(E.edit(example_bytes, lambda m: E.set_op(m, 3, E.BUILTIN.AVERAGE_POOL_2D)))
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "AVERAGE_POOL_2D" in out and "NO" in out and "op 3 AVERAGE_POOL_2D" in out


def test_corrupt_model_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 40)
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylora: error:") and "Traceback" not in err


def test_train_on_an_npz(example_bytes, tmp_path, capsys):
    m = load_tflite(example_bytes)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "a.bin"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "1", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test accuracy (adapted)" in text and "checkpoint" in text
    assert Adapter.from_bytes(out.read_bytes(), m).layers[0]["rank"] == 3


def test_train_rejects_bad_data(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", images=np.zeros(3))
    assert main(["train", "--data", str(tmp_path / "d.npz")]) == 2
    assert "x_train, y_train" in capsys.readouterr().err
