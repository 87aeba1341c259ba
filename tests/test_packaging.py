"""The wheel carries what `pip install` users need: data, firmware, templates, boards."""
import subprocess
import sys
import zipfile

import pytest

from tinylora import __version__


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(root)],
                   check=True, capture_output=True)
    (path,) = out.glob("tinylora-*.whl")
    return zipfile.ZipFile(path).namelist()


def test_wheel_ships_data_firmware_templates_and_boards(wheel):
    names = set(wheel)
    for required in ("tinylora/data/digits_cnn.tflite", "tinylora/data/digits.npz",
                     "tinylora/data/digits_cnn.json", "tinylora/_data/boards/esp32s3.toml",
                     "tinylora/_data/firmware/src/tl_quant.c", "tinylora/_data/firmware/include/tl_quant.h",
                     "tinylora/_data/firmware/app/main.c",
                     "tinylora/_data/firmware/boards/tl_board_qemu.c"):
        assert required in names, required
    assert any(n.startswith("tinylora/_data/templates/") and n.endswith(".j2") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
    assert any(f"tinylora-{__version__}.dist-info" in n for n in names)
