"""Flash budgets (issue 10 item 3): each board's flash layout is consistent, plan and gen refuse a
program image that does not fit the program region, and the generated project's build refuses it too."""
import dataclasses
import re
import shutil

import numpy as np
import pytest
from support import randmodel

from tinylora.codegen.project import plan_project
from tinylora.codegen.project.files import _partition_rows
from tinylora.codegen.project.flash import c_array_bytes
from tinylora.errors import BoardError, BudgetError
from tinylora.planning.boards import board_names, load_board
from tinylora.planning.flash import check_flash, flash_budget, flash_layout

#: Datasheet sector maps (reference manuals' flash module organisation), KB
SECTORS = {"nucleo_f411re": [16] * 4 + [64] + [128] * 3,          # RM0383
           "nucleo_f746zg": [32] * 4 + [128] + [256] * 3,         # RM0385, single bank
           "nucleo_h743zi": [128] * 16,                            # RM0433, 2 banks x 8
           "nucleo_l476rg": [2] * 512}                             # RM0351, 2 banks x 256 pages


@pytest.mark.parametrize("name", board_names())
def test_board_flash_layout_is_consistent(name):
    b = load_board(name)
    layout = flash_layout(b)
    bounds = set(layout.boundaries)
    end = layout.base + b.flash_kb * 1024
    regions = sorted(layout.regions, key=lambda r: r.start)
    for r in regions:
        assert layout.base <= r.start < r.end <= end, r
        assert r.start in bounds and r.end in bounds, f"{r} not on sector boundaries"
    for a, c in zip(regions, regions[1:], strict=False):
        assert a.end <= c.start, f"{a} overlaps {c}"
    ckpt = layout.region("checkpoints")
    assert ckpt.size == b.storage["size"] and ckpt.size >= 2 * b.storage["erase_unit"]
    assert set(layout.sector_sizes(ckpt)) == {b.storage["erase_unit"]}
    esp = b.platform == "espressif32"
    assert layout.app.size >= 128 * 1024 and layout.app.start == layout.base + (0x10000 if esp else 0)
    if name in SECTORS:
        sizes = [s * 1024 for s in SECTORS[name]]
        assert [layout.boundaries[i + 1] - layout.boundaries[i] for i in range(len(sizes))] == sizes
        # the storage backend erases sector first_sector of its bank: the same place
        per_bank = len(sizes) // (2 if name in ("nucleo_h743zi", "nucleo_l476rg") else 1)
        index = (b.storage["bank"] - 1) * per_bank + b.storage["first_sector"]
        assert layout.boundaries[index] == b.storage["address"]
    if layout.adapter_slots:
        slots = layout.region("adapter slots")   # two active-record sectors, then the slots
        record = layout.boundaries[layout.boundaries.index(slots.start) + 1] - slots.start
        assert slots.size == 2 * record + layout.adapter_slots * layout.adapter_slot_size
        if "first_sector" in b.adapters:   # the STM32 backend erases by sector number
            per_bank = len(layout.boundaries) // 2 if b.platform == "ststm32" else 0
            at = (b.adapters["bank"] - 1) * per_bank + b.adapters["first_sector"]
            assert layout.boundaries[at] == slots.start
        first = slots.start + 2 * record
        assert all(first + k * layout.adapter_slot_size in bounds for k in range(layout.adapter_slots + 1))
    if esp:   # partitions.csv is written from the same layout
        rows = _partition_rows(layout, b.storage)
        assert rows[2].split(",")[3].strip() == hex(layout.app.start)
        assert rows[3].split(",")[3].strip() == hex(ckpt.start)
        assert layout.region("bootloader and tables").end == 0x10000


def _broken(name, **flash):
    b = load_board(name)
    return dataclasses.replace(b, flash={**b.flash, **flash})


@pytest.mark.parametrize("change, text", [
    ({"app_size": 0x60000}, "overlaps"),            # into checkpoint sector 6
    ({"app_size": 0x3F000}, "sector boundaries"),   # ends inside sector 5
    ({"app_address": 0x07FF0000}, "not inside the flash"),
    ({"sectors_kb": [16] * 4 + [64] + [128] * 2}, "add up to"),
])
def test_broken_layouts_are_refused(change, text):
    with pytest.raises(BoardError, match=text):
        flash_layout(_broken("nucleo_f411re", **change))


def test_c_array_bytes_counts_initialisers():
    text = ("static const int8_t a[4] = {\n 1, -2, 3, 4,\n};\nconst int32_t tl_x_l3_bias[2] = { 5, 6 };\n"
            "static const int16_t b[N * 2] = { 1, 2, 3 };\n")
    assert c_array_bytes(text) == 4 + 8 + 6
    assert c_array_bytes(text, skip_frozen=True) == 4 + 6


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A random MLP with 288*1024 + 1024*10 int8 weights (~305 KB): more than nucleo_f411re's
    256 KB program region holds, well within nucleo_h743zi's 1.25 MB."""
    data = randmodel.random_model(np.random.default_rng(7), "mlp", input_size=288, widths=[1024, 10],
                                  edge="none", softmax=True)
    path = tmp_path_factory.mktemp("big") / "big_mlp.tflite"
    path.write_bytes(data)
    return str(path)


def test_too_big_model_is_refused_with_a_breakdown(big_model):
    with pytest.raises(BudgetError) as e:
        plan_project("nucleo_f411re", big_model, samples=4, epochs=1)
    text = str(e.value)
    assert "\n" not in text
    for part in ("code (estimate) 65,536 B", "frozen weights", "LoRA constants", "embedded samples",
                 "test vectors", "program region is 262,144 B", "checkpoints 0x08040000",
                 "Fix: a smaller model", "--samples", "a board with a larger program region"):
        assert part in text, (part, text)
    weights = int(re.search(r"frozen weights ([\d,]+) B", text).group(1).replace(",", ""))
    assert weights >= 288 * 1024 + 1024 * 10
    need = int(re.search(r"needs ([\d,]+) B", text).group(1).replace(",", ""))
    assert need > 256 * 1024


def test_esp32s3_refuses_weights_beyond_its_app_partition():
    """The issue's case: 3.6 MB of weights against the 2 MB factory partition."""
    budget = flash_budget(load_board("esp32s3"), 3_600_000, 10_000, 2_080)
    assert not budget.fits and budget.limit == 0x200000
    with pytest.raises(BudgetError, match=r"program region is 2,097,152 B \(0x00010000..0x00210000"):
        check_flash(budget)
    assert check_flash(flash_budget(load_board("esp32s3"), 1_500_000, 10_000, 2_080)).fits


def test_too_big_model_fits_h743(big_model):
    p = plan_project("nucleo_h743zi", big_model, samples=4, epochs=1)
    assert p.flash.fits and p.flash.need > 300 * 1024 and p.flash.limit == 0x140000
    assert "board_upload.maximum_size = 1310720" in p.files["platformio.ini"].decode()


def test_plan_prints_the_flash_breakdown_and_refuses(big_model, capsys):
    from tinylora.cli import main
    assert main(["plan", "--board", "nucleo_h743zi"]) == 0
    out = capsys.readouterr().out
    assert "flash of nucleo_h743zi" in out and "fits in the 1,310,720 B program region" in out
    assert main(["plan", "--board", "nucleo_f411re", "--model", big_model]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tinylora: error: the program image needs" in err


def test_generated_build_check_trips(tmp_path, pio_core):
    """The project's own size check: a board whose code estimate is too small passes gen, but
    PlatformIO's build of the QEMU environment refuses the image beyond the program region."""
    from tinylora import pio
    from tinylora.codegen.project import write_project
    board = _broken("nucleo_f411re", app_size=0x8000, code_kb=4)   # sectors 0-1, 32 KB
    p = plan_project(board, samples=4, epochs=1)
    assert p.flash.fits
    write_project(p, tmp_path / "small")
    result = pio.run(tmp_path / "small", "qemu_cm4", pio_core, timeout=300, check=False)
    assert result.returncode != 0
    assert "greater than maximum allowed (32768 bytes)" in result.output, result.output[-3000:]


@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    from tinylora import emulate, pio
    ok, why = pio.available()
    assert ok, why
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        assert shutil.which(tool), f"{tool} is needed for the build check test"
    assert emulate.available("cortex-m4")[0]
    core = tmp_path_factory.mktemp("pio-core")
    pio.prepare_core(core)
    return core


def test_more_adapter_slots_than_the_firmware_tracks_are_refused():
    b = load_board("esp32")
    b = dataclasses.replace(b, adapters={**b.adapters, "slots": 65, "slot_size": 0x1000})
    with pytest.raises(BoardError, match="slots = 65; the firmware keeps a checked state for at most 64"):
        flash_layout(b)
