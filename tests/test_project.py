"""`tinylora gen`: a complete PlatformIO project per board.

For every board: PlatformIO's own lint finds no errors and no warnings in platformio.ini, the
board / platform / framework names are the board data's, regenerating gives the same bytes,
and the training step's arena is within the board's budget (each board's arena bytes are
printed). Then PlatformIO's real build system -- offline, with the project's local QEMU
platform -- builds the application (`pio run`) and runs the on-device test suite
(`pio test`) on emulated Cortex-M4, Cortex-M7, Xtensa and RISC-V cores.

Without PlatformIO, the cross compilers or QEMU, the PlatformIO tests skip with the reason;
with the environment variable CI set, a missing tool fails them instead.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import tinylora
from tinylora import emulate
from tinylora.boards import board_names, load_board
from tinylora.codegen import project as gen
from tinylora.errors import BudgetError

BOARDS = board_names()
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
#: The project the PlatformIO builds run on (the walk-through's board).
BUILD_BOARD = "esp32s3"


def _missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (CI is set, so a missing tool is an error)")
    pytest.skip(why)


def _need_platformio():
    from tinylora import pio
    ok, why = pio.available()
    if not ok:
        _missing(why)
    try:
        import platformio  # noqa: F401  (lint runs in-process)
    except ImportError:
        _missing("PlatformIO is not importable here: pip install platformio")
    return pio


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """Every board's project, generated once: {board: (Project, folder)}."""
    root = tmp_path_factory.mktemp("projects")
    out = {}
    for name in BOARDS:
        p, _ = gen.generate_project(name, root / name, command=f"tinylora gen --board {name}")
        out[name] = (p, root / name)
    return out


# ------------------------------------------------------------------ every board

def test_every_plan_is_within_its_board_budget(projects):
    rows = []
    for name, (p, _) in projects.items():
        board = load_board(name)
        assert p.budget == board.arena_budget
        assert 0 < p.training_arena_bytes <= p.arena_bytes <= board.arena_budget
        assert p.code.arena_bytes <= p.arena_bytes
        config = (Path(_) / "lib/tinylora/src/tl_app_config.h").read_text()
        assert f"#define TL_APP_ARENA_SIZE {p.arena_bytes}u" in config
        rows.append(f"{name:14s} arena {p.arena_bytes:6d} B (training step {p.training_arena_bytes} B) "
                    f"budget {board.arena_budget:7d} B")
    print("\n" + "\n".join(rows))


@pytest.mark.parametrize("board", BOARDS)
def test_platformio_ini_is_lint_clean(projects, board):
    pio = _need_platformio()
    _, folder = projects[board]
    assert pio.lint(folder) == {"errors": [], "warnings": []}


@pytest.mark.parametrize("board", BOARDS)
def test_names_are_the_board_datas(projects, board):
    """PlatformIO accepts any board name offline, so the generator checks them itself."""
    _, folder = projects[board]
    assert gen.check_names(folder, board) == []
    b = load_board(board)
    try:
        from platformio.project.config import ProjectConfig
    except ImportError:
        return
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        config = ProjectConfig(str(folder / "platformio.ini"))
        assert config.get(f"env:{board}", "platform") == b.platform
        assert config.get(f"env:{board}", "board") == b.pio_board
        assert config.get(f"env:{board}", "framework") == [b.framework]
        assert config.get("platformio", "default_envs") == [board]
        for q in gen.QEMU_ENVS:
            assert config.get(f"env:{q.env}", "platform") == f"symlink://{folder}/{gen.PLATFORM_DIR}"
            assert (folder / gen.PLATFORM_DIR / "boards" / f"{q.board}.json").is_file()
    finally:
        os.chdir(cwd)


def test_check_names_finds_a_wrong_board(projects, tmp_path):
    _, folder = projects["nucleo_f411re"]
    copy = tmp_path / "p"
    shutil.copytree(folder, copy)
    ini = copy / "platformio.ini"
    ini.write_text(ini.read_text().replace("board = nucleo_f411re", "board = nucleo_f411rx"))
    assert any("nucleo_f411rx" in p for p in gen.check_names(copy, "nucleo_f411re"))


@pytest.mark.parametrize("board", BOARDS)
def test_regeneration_is_byte_identical(projects, board, tmp_path):
    p, folder = projects[board]
    gen.generate_project(board, tmp_path / "again", command=f"tinylora gen --board {board}")
    first = {f.relative_to(folder).as_posix(): f.read_bytes() for f in folder.rglob("*") if f.is_file()}
    second = {f.relative_to(tmp_path / "again").as_posix(): f.read_bytes()
              for f in (tmp_path / "again").rglob("*") if f.is_file()}
    assert first == second
    assert set(first) == set(p.files) | {gen.MANIFEST}
    # ... and regenerating in place changes nothing
    before = {rel: (folder / rel).stat().st_mtime_ns for rel in first}
    _, report = gen.generate_project(board, folder, command=f"tinylora gen --board {board}")
    assert report.written == [] and report.removed == []
    assert {rel: (folder / rel).stat().st_mtime_ns for rel in first} == before


@pytest.mark.parametrize("board", BOARDS)
def test_project_contents_follow_the_board(projects, board):
    p, folder = projects[board]
    b = load_board(board)
    ini = (folder / "platformio.ini").read_text()
    assert "test_framework = custom" in ini and (folder / "test/test_custom_runner.py").is_file()
    assert (folder / "lib/tinylora/library.json").is_file()
    assert json.loads((folder / "lib/tinylora/library.json").read_text())["name"] == "tinylora"
    for suite in ("test_model", "test_storage", "test_protocol"):
        assert (folder / "test" / suite / "test_main.c").is_file()
    readme = (folder / "README.md").read_text()
    for what in ("pio run -t upload", "pio device monitor", f"pio test -e {board}", "S <label> <hex>"):
        assert what in readme
    if b.platform == "espressif32":
        manifest = (folder / "src/idf_component.yml").read_text()
        assert "espressif/esp-nn:" in manifest and f'version: "{gen.ESP_NN_VERSION}"' in manifest
        assert "board_build.partitions = partitions.csv" in ini
        assert "tinylora, 0x40, 0x00" in (folder / "partitions.csv").read_text()
        assert not (folder / "lib/cmsis_nn").exists()
    else:
        lib = json.loads((folder / "lib/cmsis_nn/library.json").read_text())
        assert lib["build"]["srcDir"] == "Source" and lib["build"]["includeDir"] == "Include"
        assert "TL_USE_CMSIS_NN" in (folder / "lib/cmsis_nn/README.md").read_text()
        assert "\n    -D TL_USE_CMSIS_NN" not in ini          # off by default: an #error today
        assert not (folder / "src/idf_component.yml").exists()


def test_esp32_arena_stays_out_of_dram0_0_seg(projects):
    """ESP32 (the original): the arena comes from the internal heap at boot, not .bss."""
    _, folder = projects["esp32"]
    board_h = (folder / "lib/tl_board/src/tl_board.h").read_text()
    assert "#if defined(CONFIG_IDF_TARGET_ESP32)\n#define TL_BOARD_STATIC_ARENA 0" in board_h
    espidf = (folder / "lib/tl_board/src/tl_board_espidf.c").read_text()
    assert "heap_caps_malloc(size, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)" in espidf
    main = (folder / "src/main.c").read_text()
    assert "#if TL_BOARD_STATIC_ARENA" in main


# ------------------------------------------------------------------ the budget, and user edits

def test_a_plan_over_budget_writes_nothing(tmp_path):
    tiny = replace(load_board("nucleo_l476rg"), name="tiny", ram_app_kb=18, reserve_kb=16)
    assert tiny.arena_budget == 2048
    with pytest.raises(BudgetError, match="budget"):
        gen.generate_project(tiny, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_user_code_regions_survive_and_other_edits_are_refused(tmp_path):
    out = tmp_path / "p"
    gen.generate_project("esp32s3", out)
    main = out / "src/main.c"
    original = main.read_bytes()
    mine = "    tl_print(\"# hello from my setup\\n\");\n"
    text = original.decode().replace("    /* USER CODE BEGIN setup */\n",
                                     "    /* USER CODE BEGIN setup */\n" + mine)
    ini = out / "platformio.ini"
    ini_text = ini.read_text().replace("; USER CODE BEGIN env:esp32s3\n",
                                       "; USER CODE BEGIN env:esp32s3\nupload_port = /dev/ttyUSB1\n")
    main.write_text(text)
    ini.write_text(ini_text)
    _, report = gen.generate_project("esp32s3", out)
    assert main.read_text() == text and ini.read_text() == ini_text
    assert report.preserved_regions == {"platformio.ini": ["env:esp32s3"], "src/main.c": ["setup"]}
    assert report.written == []

    # an edit outside the regions: refused, and nothing at all is written
    readme = out / "README.md"
    readme.write_text(readme.read_text() + "my notes\n")
    main.write_text(text.replace("static void tl_line_end(void)", "static void tl_line_end2(void)"))
    snapshot = {f: f.read_bytes() for f in out.rglob("*") if f.is_file()}
    with pytest.raises(gen.ProjectError) as e:
        gen.generate_project("esp32s3", out, rank=2)
    assert "src/main.c" in str(e.value) and "README.md" in str(e.value)
    assert {f: f.read_bytes() for f in out.rglob("*") if f.is_file()} == snapshot

    # --force overwrites, keeping the regions
    gen.generate_project("esp32s3", out, force=True)
    assert main.read_text() == text
    assert "my notes" not in readme.read_text()


def test_changing_the_board_removes_what_it_no_longer_needs(tmp_path):
    out = tmp_path / "p"
    gen.generate_project("esp32s3", out)
    assert (out / "src/idf_component.yml").is_file()
    _, report = gen.generate_project("nucleo_f746zg", out)
    assert "src/idf_component.yml" in report.removed and not (out / "partitions.csv").exists()
    assert (out / "lib/cmsis_nn/library.json").is_file()
    fresh = tmp_path / "fresh"
    gen.generate_project("nucleo_f746zg", fresh)
    for f in fresh.rglob("*"):
        if f.is_file():
            assert (out / f.relative_to(fresh)).read_bytes() == f.read_bytes(), f


def test_a_folder_tinylora_did_not_write_is_not_overwritten(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "platformio.ini").write_text("[env:mine]\nplatform = native\n")
    with pytest.raises(gen.ProjectError, match="was not written by tinylora"):
        gen.generate_project("esp32s3", out)
    assert (out / "platformio.ini").read_text() == "[env:mine]\nplatform = native\n"
    assert not (out / "src").exists()


def test_regions_are_excluded_from_the_manifest_hashes():
    a = b"x\n/* USER CODE BEGIN r */\nmine\n/* USER CODE END r */\ny\n"
    b = b"x\n/* USER CODE BEGIN r */\n/* USER CODE END r */\ny\n"
    assert gen.canonical(a) == gen.canonical(b) == b
    assert gen.canonical(b"no regions") == b"no regions"


def test_cli_gen(tmp_path, capsys):
    from tinylora.cli import main
    out = tmp_path / "cli"
    assert main(["gen", "--board", "nucleo_f411re", "--out", str(out)]) in (0,)
    text = capsys.readouterr().out
    assert "arena 2,608 B within the budget of 114,688 B" in text
    assert (out / "platformio.ini").is_file()
    assert "Command: tinylora gen --board nucleo_f411re --rank 3" in (out / "src/main.c").read_text()
    assert main(["gen", "--board", "nucleo_f411rx", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'nucleo_f411re'" in capsys.readouterr().err


# ------------------------------------------------------------------ PlatformIO's real build system

def _need_toolchains():
    for q in gen.QEMU_ENVS:
        ok, why = emulate.available(q.emulation)
        if not ok:
            _missing(why)
    if shutil.which("timeout") is None:
        _missing("timeout (coreutils) not found: the QEMU test commands start with it")


@pytest.fixture(scope="module")
def pio_core(tmp_path_factory):
    pio = _need_platformio()
    _need_toolchains()
    core = tmp_path_factory.mktemp("pio-core")
    t0 = time.perf_counter()
    pio.prepare_core(core)
    print(f"\nPlatformIO core with SCons prepared in {time.perf_counter() - t0:.1f} s")
    return core


@pytest.fixture(scope="module")
def build_project(projects, tmp_path_factory):
    _, folder = projects[BUILD_BOARD]
    copy = tmp_path_factory.mktemp("build") / BUILD_BOARD
    shutil.copytree(folder, copy)
    return copy


def _run_firmware(q: gen.QemuEnv, elf: Path, serial: str = "") -> tuple[int, str]:
    cmd = [str(elf) if a == gen._ELF else a for a in q.command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as inp:
        inp.write(serial.encode())   # the serial lines, on QEMU's standard input
        inp.seek(0)
        # a file, not a pipe: semihosting drops output on a full pipe
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, stdin=inp, timeout=150)
        out.seek(0)
        return proc.returncode, out.read().decode("ascii", "replace")


@pytest.mark.parametrize("q", gen.QEMU_ENVS, ids=[q.env for q in gen.QEMU_ENVS])
def test_pio_run_and_pio_test_on_qemu(build_project, pio_core, q):
    from tinylora import pio
    t0 = time.perf_counter()
    built = pio.run(build_project, q.env, pio_core, timeout=300)
    t1 = time.perf_counter()
    assert "[SUCCESS]" in built.output

    # the application itself: the accuracy of the model on its embedded samples, then the
    # serial protocol (QEMU's standard input is the serial port; none on RISC-V)
    model = tinylora.load_tflite(tinylora.example_model())
    x, y, _ = gen._default_samples(model, None, None, 32)
    predicted = np.argmax(model.forward(x), axis=-1)
    correct = int(np.sum(predicted == y))
    serial = (f"?\nS {y[0]} {x[0].tobytes().hex()}\r\nP {x[1].tobytes().hex().upper()}\n"
              "X\nS 99 00\nE\n")
    code, out = _run_firmware(q, build_project / ".pio" / "build" / q.env / "firmware.elf", serial)
    assert code == 0, out
    assert f"\nA 1 {correct}/32 " in out, out
    assert "# arena 2608 bytes, static .bss" in out and out.endswith("# input ended\n"), out
    if q.emulation != "rv32imc":
        assert "\n# steps 0, last checkpoint at step 0" in out, out
        assert f"\nR {y[0]} {predicted[0]} -\n" in out and f"\nR - {predicted[1]} -\n" in out, out
        assert out.count("\n! ") == 2 and "! bad label" in out, out
        assert f"\nA 0 {correct}/32 " in out, out

    t2 = time.perf_counter()
    tested = pio.test(build_project, q.env, pio_core, timeout=300)
    t3 = time.perf_counter()
    counts = pio.parse_test_summary(tested.output)
    assert counts["failed"] == counts["errored"] == counts["skipped"] == 0, tested.output[-3000:]
    assert counts["total"] == counts["succeeded"] == 32 + 3 + 7 + 7, counts
    print(f"\n{q.env}: pio run {t1 - t0:.1f} s; pio test {counts['succeeded']}/{counts['total']} "
          f"passed in {t3 - t2:.1f} s")
    assert not list((pio_core / "platforms").glob("*.pio-link"))
    assert not list((pio_core / "packages").glob("*.pio-link"))


def test_pio_test_reports_a_wrong_byte(build_project, pio_core, tmp_path):
    """The negative control: one wrong expected byte is one failed test case."""
    from tinylora import pio
    copy = tmp_path / "broken"
    shutil.copytree(build_project, copy, ignore=shutil.ignore_patterns(".pio"))
    test_c = copy / "test/test_model/test_main.c"
    text = test_c.read_text()
    start = text.index("tl_expected_outputs[")
    start = text.index("{\n", start) + 6
    end = text.index(",", start)
    value = int(text[start:end])
    test_c.write_text(text[:start] + str(value - 1 if value > -128 else value + 1) + text[end:])
    result = pio.test(copy, "qemu_cm4", pio_core, timeout=300, check=False, filters=["test_model"])
    assert result.returncode != 0
    counts = pio.parse_test_summary(result.output)
    assert counts["failed"] == 1 and counts["succeeded"] == 34, counts
    assert "forward_sample_00" in result.output and "FAILED" in result.output


def test_pio_run_builds_an_stm32_project_on_qemu(projects, pio_core, tmp_path):
    """An STM32 project (with its empty CMSIS-NN vendoring point) builds for the Cortex-M7."""
    from tinylora import pio
    _, folder = projects["nucleo_f746zg"]
    copy = tmp_path / "f746"
    shutil.copytree(folder, copy)
    result = pio.run(copy, "qemu_cm7", pio_core, timeout=300)
    assert "[SUCCESS]" in result.output and "cmsis_nn" not in result.output
