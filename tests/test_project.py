"""`tinylora gen`: a complete PlatformIO project per board.

For every board: PlatformIO's own lint finds no errors and no warnings in platformio.ini, the
board / platform / framework names are the board data's, regenerating gives the same bytes,
and the training step's arena is within the board's budget (each board's arena bytes are
printed) and its checkpoints fit two slots of the board's storage. Then PlatformIO's real
build system -- offline, with the project's local QEMU platform -- builds the application
(`pio run`) and runs the on-device test suites (`pio test`: the training step's bit-exact
vectors and checkpoints, the frozen forward's vectors, storage, protocol) on emulated
Cortex-M4, Cortex-M7, Xtensa and RISC-V cores. The application itself runs under QEMU: it
trains at boot and every line it prints (accuracy, progress with the loss, checkpoints,
answers to serial samples) equals what numpy computes (``simulate_app``); with its storage
kept in a file, a second boot resumes from the checkpoint, also after a torn write.

Without PlatformIO, the cross compilers or QEMU, the PlatformIO tests skip with the reason;
with the environment variable CI set, a missing tool fails them instead.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

import tinylora
from tinylora import emulate, targets
from tinylora.codegen import project as gen
from tinylora.codegen.project import files as gen_files
from tinylora.codegen.project.adapters import slot_plan
from tinylora.errors import BudgetError, InputError
from tinylora.planning.boards import board_names, load_board
from tinylora.planning.flash import flash_layout

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
        assert "#define TL_APP_CAN_TRAIN 1 " in config
        assert p.trainer.step_count == 0   # generating trained copies, not the trainer
        # the arena holds the step's, one checkpoint and room to align the step's start
        assert p.code.arena_bytes == p.training_arena_bytes + p.code.checkpoint_bytes + 15
        unit = board.storage["erase_unit"]
        assert 2 * -(-p.code.checkpoint_bytes // unit) * unit <= board.storage["size"]
        rows.append(f"{name:14s} arena {p.arena_bytes:6d} B (training step {p.training_arena_bytes} B, "
                    f"checkpoint {p.code.checkpoint_bytes} B) budget {board.arena_budget:7d} B")
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
    for suite in ("test_training", "test_model", "test_storage", "test_protocol", "test_adapters"):
        assert (folder / "test" / suite / "test_main.c").is_file()
    src = folder / "lib/tinylora/src"
    for name in ("tl_trainer.c", "tl_trainer.h", "tl_app_model_train.c", "tl_train.c",
                 "tl_checkpoint.c"):
        assert (src / name).is_file(), name
    assert not (src / "tl_app_model_frozen.c").exists() and not (src / "tl_model.c").exists()
    assert (folder / "test/test_model/tl_model.c").is_file()   # the frozen forward: tests only
    readme = (folder / "README.md").read_text()
    for what in ("pio run -t upload", "pio device monitor", f"pio test -e {board}", "S <label> <hex>",
                 "test_training", "resumed at step", p.expected_output[0], p.expected_output[-2]):
        assert what in readme, what
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
        assert not (folder / "src/idf_component.yml").exists()
    # the board's library by default, one build_flags line the README names, its kernel
    # scratch planned in the arena; no stale "keep it off" / stub wording anywhere
    lib = targets.LIBRARIES[b.backend]
    assert p.backend == b.backend and f"\n    -D {lib.define}\n" in ini.split("[qemu]")[0]
    assert f"`-D {lib.define}`" in readme and "tinylora gen --backend portable" in readme
    assert f"largest: {p.kernel_scratch}" in readme
    assert (p.kernel_scratch > 0) == (b.backend == "cmsis-nn")   # ESP-NN (ANSI/opt): none
    assert f"custom_kernel_library_dir = ${{sysenv.{lib.env}}}" in ini
    text = "".join(f.read_text(errors="replace") for f in folder.rglob("*") if f.is_file())
    for stale in ("keep -D TL_USE", "test double", "#error stub", "does not yet give",
                  "tl_kernels_set_scratch", "tinylora.train.", "tinylora.arena."):
        assert stale not in text, stale


def test_gen_backend_portable_and_board_data():
    """``--backend portable``: no library flag, no kernel scratch, QEMU envs say portable; a
    library the board's platform cannot build is refused; the heap arena is board data."""
    p = gen.plan_project("nucleo_f411re", backend="portable")
    ini = p.files["platformio.ini"].decode()
    assert p.backend == "portable" and p.kernel_scratch == 0 and "TL_USE_CMSIS_NN" not in ini
    assert "custom_kernel_library" not in ini and "portable C (this project's backend)" in ini
    assert "-D TL_USE_" not in p.files["README.md"].decode().split("## Accelerated kernels")[1]
    default = gen.plan_project("nucleo_f411re")
    # the im2col scratch is planned (here it fits beside buffers that are not live then)
    assert default.kernel_scratch > 0 and "kernel scratch (cmsis-nn)" in default.plan_report
    assert default.training_arena_bytes >= p.training_arena_bytes
    with pytest.raises(InputError, match="does not build for board nucleo_f411re"):
        gen.plan_project("nucleo_f411re", backend="esp-nn")
    assert [load_board(b).heap_arena for b in ("esp32", "esp32s3", "nucleo_f411re")] == \
        [True, False, False]


def test_esp32_arena_stays_out_of_dram0_0_seg(projects):
    """ESP32 (the original): the arena comes from the internal heap at boot, not .bss."""
    _, folder = projects["esp32"]
    board_h = (folder / "lib/tl_board/src/tl_board.h").read_text()
    assert "#if defined(CONFIG_IDF_TARGET_ESP32)\n#define TL_BOARD_STATIC_ARENA 0" in board_h
    espidf = (folder / "lib/tl_board/src/tl_board_espidf.c").read_text()
    assert "heap_caps_malloc(size, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)" in espidf
    main = (folder / "src/main.c").read_text()
    assert "#if TL_BOARD_STATIC_ARENA" in main
    assert "arena = tl_board_arena(TL_STATIC_ARENA, TL_APP_ARENA_SIZE, &where);" in main
    assert "tl_app_model_init(arena, TL_APP_ARENA_SIZE)" in main
    # the training step has no arena of its own: it runs in the one tl_board_arena gives
    step_h = (folder / "lib/tinylora/src/tl_trainer.h").read_text()
    assert "#define TL_TRAINER_NO_STATIC_ARENA 1" in step_h
    glue = (folder / "lib/tinylora/src/tl_app_model_train.c").read_text()
    assert "tl_trainer_init(&tl_state, arena + pad)" in glue


# ------------------------------------------------------------------ the budget, and user edits

def test_a_plan_over_budget_writes_nothing(tmp_path):
    tiny = replace(load_board("nucleo_l476rg"), name="tiny", ram_app_kb=18, reserve_kb=16)
    assert tiny.arena_budget == 2048
    with pytest.raises(BudgetError, match="budget"):
        gen.generate_project(tiny, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoints_must_fit_the_boards_storage(tmp_path):
    small = load_board("nucleo_l476rg")
    small = replace(small, name="small", storage={**small.storage, "size": 0x800})
    with pytest.raises(BudgetError, match="checkpoint"):
        gen.generate_project(small, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_frozen_forward_still_plugs_in(tmp_path):
    """model_code_factory=frozen_model_code: a predictions-only build of the same app."""
    p = gen.plan_project("esp32s3", model_code_factory=gen.frozen_model_code)
    assert not p.code.can_train and "lib/tinylora/src/tl_app_model_frozen.c" in p.files
    assert not any(f.startswith("test/test_training/") for f in p.files)
    assert b"#define TL_APP_CAN_TRAIN 0 " in p.files["lib/tinylora/src/tl_app_config.h"]
    assert p.expected_output == [p.expected_output[0]] and p.expected_output[0].startswith("A 0 ")
    assert b"This build predicts but does not train" in p.files["README.md"]


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
    assert "arena 2,776 B within the budget of 114,688 B (training step plan 1,888 B;" in text
    assert (out / "platformio.ini").is_file()
    assert "Command: tinylora gen --board nucleo_f411re\n" in (out / "src/main.c").read_text()
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


def _run_firmware(q: gen.QemuEnv, elf: Path, serial: str = "", cwd: Path | None = None) -> tuple[int, str]:
    cmd = [str(elf) if a == gen._ELF else a for a in q.command]
    if q.emulation == "rv32imc":
        serial += "\x04"   # a UART has no end of input: EOT ends it (tl_board_qemu.c)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as inp:
        inp.write(serial.encode())   # the serial lines, on QEMU's standard input
        inp.seek(0)
        # a file, not a pipe: semihosting drops output on a full pipe
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, stdin=inp, timeout=150,
                              cwd=cwd)
        out.seek(0)
        return proc.returncode, out.read().decode("ascii", "replace")


def _lines(out: str) -> list[str]:
    """The application's result lines (all but the '#' information lines)."""
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def _serial(x, y):
    """Serial input for the application and the commands simulate_app takes for it."""
    # line ends LF, CRLF and CR alone (minicom, screen); a second C has nothing new (a '#'
    # reply); the last line has no line end
    text = (f"?\nS {y[0]} {x[0].tobytes().hex()}\r\nP {x[1].tobytes().hex().upper()}\n"
            f"Q\nS 99 00\rS {y[2]} {x[2].tobytes().hex()}\nE\rC\nC\nE")
    commands = [("?",), ("S", int(y[0]), x[0]), ("P", x[1]),
                ("!", "unknown command (S, P, E, C, ?, L, X, U, D, F or G)"),
                ("!", "bad label (a decimal class number)"),
                ("S", int(y[2]), x[2]), ("E",), ("C",), ("C",), ("E",)]
    return text, commands


STORAGE_FILE = "tinylora-storage.bin"


def _power_loss(project, q, folder, pio_core, x, y, tmp_path, monkeypatch):
    """The application with its QEMU storage kept in a file: a first boot trains and writes
    checkpoints; a power cut tears the newest one; the next boot resumes from the one before,
    trains the rest exactly as numpy does; a boot after that finds the training done."""
    from tinylora import pio
    with monkeypatch.context() as m:
        m.setenv("PLATFORMIO_BUILD_FLAGS", "-DTL_QEMU_STORAGE_FILE")
        assert "[SUCCESS]" in pio.run(folder, q.env, pio_core, timeout=300).output
    elf = folder / ".pio" / "build" / q.env / "firmware.elf"
    run_dir = tmp_path / f"run-{q.env}"
    run_dir.mkdir()
    storage = f"RAM (kept in {STORAGE_FILE})"
    every, ckpt = project.checkpoint_every, project.code.checkpoint_bytes

    def expected(resume_at=0):
        return gen.simulate_app(project.trainer, x, y, project.epochs, every, ckpt, storage,
                                resume_at=resume_at)

    code, out = _run_firmware(q, elf, cwd=run_dir)
    assert code == 0 and "none restored (no checkpoint stored yet)" in out, out
    assert _lines(out) == expected(), out
    # slot 0 holds the newest checkpoint (sequence 3: C 96), slot 1 the one before (C 64)
    medium = bytearray((run_dir / STORAGE_FILE).read_bytes())
    unit = gen.RAM_STORAGE["erase_unit"]
    slot = -(-ckpt // unit) * unit
    assert medium[:4] == b"TLCK" and medium[12] == 3 and medium[slot + 12] == 2
    medium[ckpt // 2: slot] = b"\xff" * (slot - ckpt // 2)   # its write cut half-way
    (run_dir / STORAGE_FILE).write_bytes(bytes(medium))
    code, out = _run_firmware(q, elf, cwd=run_dir)
    resumed = 2 * every
    assert code == 0 and f"resumed at step {resumed}\n" in out, out
    assert _lines(out) == expected(resumed), out
    code, out = _run_firmware(q, elf, cwd=run_dir)
    assert code == 0 and f"resumed at step {project.epochs * every}\n" in out, out
    assert "# training at boot: done before" in out
    assert _lines(out) == expected(project.epochs * every), out
    # both slots damaged: said so (not "no checkpoint stored yet"), and training starts over
    medium = bytearray((run_dir / STORAGE_FILE).read_bytes())
    medium[20] ^= 0x01
    medium[slot + 20] ^= 0x01
    (run_dir / STORAGE_FILE).write_bytes(bytes(medium))
    code, out = _run_firmware(q, elf, cwd=run_dir)
    assert code == 0 and "none restored (the stored checkpoints are damaged" in out, out
    assert _lines(out) == expected(), out


@pytest.mark.parametrize("q", gen.QEMU_ENVS, ids=[q.env for q in gen.QEMU_ENVS])
def test_pio_run_and_pio_test_on_qemu(projects, build_project, pio_core, q, tmp_path, monkeypatch):
    from tinylora import pio
    project, _ = projects[BUILD_BOARD]
    t0 = time.perf_counter()
    built = pio.run(build_project, q.env, pio_core, timeout=300)
    t1 = time.perf_counter()
    assert "[SUCCESS]" in built.output

    # the application: it trains at boot, then answers the serial lines (QEMU's standard
    # input is the serial port: semihosting, or the UART on RISC-V); every result line is numpy's
    model = tinylora.load_tflite(tinylora.example_model())
    x, y, _ = gen._default_samples(model, None, None, 32)
    serial, commands = _serial(x, y)
    code, out = _run_firmware(q, build_project / ".pio" / "build" / q.env / "firmware.elf", serial)
    assert code == 0, out
    want = gen.simulate_app(project.trainer, x, y, project.epochs, project.checkpoint_every,
                            project.code.checkpoint_bytes, "RAM", serial=commands)
    assert _lines(out) == want, out
    assert "\n# steps 96, last checkpoint at step 96" in out, out
    assert "\n# checkpoint: nothing new since step 98\n" in out, out
    boot = gen.simulate_app(project.trainer, x, y, project.epochs, project.checkpoint_every,
                            project.code.checkpoint_bytes, "RAM", serial=())
    assert boot == [line.replace("ESP32 partition tinylora", "RAM")   # as the README shows it
                    for line in project.expected_output]
    assert f"# arena {project.arena_bytes} bytes, static .bss" in out and out.endswith("# input ended\n"), out
    assert "A 0 17/32 53.1%" == want[0] and "A 0 23/32 71.8%" in want   # it learned
    assert "none restored (no checkpoint stored yet): starting from the base model" in out

    # the esp32s3 project's backend is ESP-NN: linked where it runs (generic-opt C)
    linked = LIBRARY_SYMBOLS.get((project.backend, q.emulation), set())
    assert linked <= _elf_symbols(q, build_project / ".pio" / "build" / q.env / "firmware.elf")
    t2 = time.perf_counter()
    if q.emulation != "xtensa":   # the Xtensa target has no host files
        _power_loss(project, q, build_project, pio_core, x, y, tmp_path, monkeypatch)
    t3 = time.perf_counter()
    tested = pio.test(build_project, q.env, pio_core, timeout=300)
    t4 = time.perf_counter()
    counts = pio.parse_test_summary(tested.output)
    assert counts["failed"] == counts["errored"] == counts["skipped"] == 0, tested.output[-3000:]
    cases = {**project.code.test_cases, **gen_files.STATIC_SUITE_CASES,
             "test_adapters": gen_files.adapter_suite_cases(
                 slot_plan(flash_layout(project.board), project.code.adapter_bytes, True).slots)}
    assert counts["total"] == counts["succeeded"] == sum(cases.values()), (counts, cases)
    assert cases["test_training"] >= 32 + 13 and "test_training" in tested.output
    print(f"\n{q.env}: pio run {t1 - t0:.1f} s; power-loss boots {t3 - t2:.1f} s; pio test "
          f"{counts['succeeded']}/{counts['total']} passed in {t4 - t3:.1f} s ({cases})")
    assert not list((pio_core / "platforms").glob("*.pio-link"))
    assert not list((pio_core / "packages").glob("*.pio-link"))


def test_pio_test_reports_a_wrong_byte(projects, build_project, pio_core, tmp_path):
    """The negative control: one wrong expected byte is one failed test case, in the frozen
    forward's vectors and in the training step's."""
    from tinylora import pio
    project, _ = projects[BUILD_BOARD]
    copy = tmp_path / "broken"
    shutil.copytree(build_project, copy, ignore=shutil.ignore_patterns(".pio"))
    test_c = copy / "test/test_model/test_main.c"
    text = test_c.read_text()
    start = text.index("tl_expected_outputs[")
    start = text.index("{\n", start) + 6
    end = text.index(",", start)
    value = int(text[start:end])
    test_c.write_text(text[:start] + str(value - 1 if value > -128 else value + 1) + text[end:])
    test_c = copy / "test/test_training/test_main.c"
    text = test_c.read_text()
    start = text.index("tl_expected_loss[")
    start = text.index("{\n", start) + 6
    for _ in range(5):                        # the loss of step 5
        start = text.index(",", start) + 2
    end = text.index(",", start)
    test_c.write_text(text[:start] + str(int(text[start:end]) + 1) + text[end:])
    result = pio.test(copy, "qemu_cm4", pio_core, timeout=300, check=False,
                      filters=["test_model", "test_training"])
    assert result.returncode != 0
    counts = pio.parse_test_summary(result.output)
    total = project.code.test_cases["test_model"] + project.code.test_cases["test_training"]
    # the wrong loss fails its step's case and the four checkpoint cases that train through
    # step 5 with tl_app_model_train, comparing every loss
    failed = sorted(re.findall(r"^\S+:\d+: (\w+)\b.*\[FAILED\]$", result.output, re.M))
    assert failed == ["forward_sample_00", "test_checkpoint_round_trip_program_unit_1",
                      "test_checkpoint_round_trip_program_unit_32",
                      "test_checkpoint_round_trip_program_unit_8",
                      "test_torn_write_keeps_the_previous_checkpoint", "training_step_05"], failed
    assert counts["failed"] == 6 and counts["succeeded"] == total - 6, counts
    assert "training_step_05: Q10 loss differs from tinylora.ref.trainer.Trainer.step" in result.output


def _elf_symbols(q: gen.QemuEnv, elf: Path) -> set[str]:
    from tinylora.targets import TOOLCHAINS
    out = subprocess.run([TOOLCHAINS[q.emulation].nm, str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return {parts[-1] for parts in (line.split() for line in out.splitlines()) if len(parts) == 3}


#: Kernels of the real libraries a QEMU build must link (the builds are --gc-sections: linked
#: means called), by the project's backend and the environment's core.
LIBRARY_SYMBOLS = {("cmsis-nn", "cortex-m7"): {"arm_convolve_s8", "arm_convolve_wrapper_s8"},
                   ("esp-nn", "xtensa"): {"esp_nn_conv_s8_opt", "esp_nn_depthwise_conv_s8_opt"},
                   ("esp-nn", "rv32imc"): {"esp_nn_conv_s8_opt", "esp_nn_depthwise_conv_s8_opt"}}


def test_pio_run_builds_an_stm32_project_on_qemu(projects, pio_core, tmp_path):
    """An STM32 project builds for the Cortex-M7 against the real CMSIS-NN (CMSIS_NN_DIR), not
    its empty vendoring point, and runs its training at boot as numpy says; without the
    variable the build stops and says how to fix it."""
    from tinylora import pio
    project, folder = projects["nucleo_f746zg"]
    assert project.backend == "cmsis-nn" and project.kernel_scratch > 0
    copy = tmp_path / "f746"
    shutil.copytree(folder, copy)
    result = pio.run(copy, "qemu_cm7", pio_core, timeout=300)
    assert "[SUCCESS]" in result.output and "/cmsis_nn/" not in result.output
    q = next(q for q in gen.QEMU_ENVS if q.env == "qemu_cm7")
    elf = copy / ".pio" / "build" / q.env / "firmware.elf"
    assert LIBRARY_SYMBOLS["cmsis-nn", "cortex-m7"] <= _elf_symbols(q, elf)
    code, out = _run_firmware(q, elf)
    assert code == 0 and "A 0 " in out, out
    shutil.rmtree(copy / ".pio")
    broken = subprocess.run([sys.executable, "-m", "platformio", "run", "-e", "qemu_cm7", "-d",
                             str(copy)], env={**pio.environment(pio_core), "CMSIS_NN_DIR": ""},
                            capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0
    assert "CMSIS_NN_DIR is not set" in broken.stdout + broken.stderr
    assert "tinylora gen --backend portable" in broken.stdout + broken.stderr


def test_pio_run_builds_the_frozen_forward_app(pio_core, tmp_path):
    """The predictions-only model code still builds into the same application and runs."""
    from tinylora import pio
    p = gen.plan_project(BUILD_BOARD, model_code_factory=gen.frozen_model_code)
    gen.write_project(p, tmp_path / "frozen")
    assert "[SUCCESS]" in pio.run(tmp_path / "frozen", "qemu_cm4", pio_core, timeout=300).output
    q = gen.QEMU_ENVS[0]
    code, out = _run_firmware(q, tmp_path / "frozen/.pio/build/qemu_cm4/firmware.elf", "E\n")
    assert code == 0 and "# training: not in this build" in out, out
    assert _lines(out) == p.expected_output + p.expected_output, out


def test_a_new_user_offline_runs_pio_test_on_a_fresh_core(projects, tmp_path, monkeypatch, capsys):
    """Exactly what the generated README tells a new user without PlatformIO's registry: an
    empty PlatformIO core (``PLATFORMIO_CORE_DIR``), ``tinylora pio-setup``, then ``pio test
    -e qemu_cm4`` in the project, with no other PlatformIO setting in the environment."""
    from tinylora.cli import main
    pio = _need_platformio()
    _need_toolchains()
    core = tmp_path / "fresh-core"
    core.mkdir()
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(core))
    assert main(["pio-setup"]) == 0
    assert f"PlatformIO core {core.resolve()}: tool-scons" in capsys.readouterr().out
    _, folder = projects[BUILD_BOARD]
    assert b"tinylora pio-setup" in (folder / "README.md").read_bytes()
    copy = tmp_path / "project"
    shutil.copytree(folder, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMIO_")}
    env["PLATFORMIO_CORE_DIR"] = str(core)
    t0 = time.perf_counter()
    proc = subprocess.run(pio._pio_command() + ["test", "-e", "qemu_cm4"], cwd=copy, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    print(f"\npio test -e qemu_cm4 on a fresh core after tinylora pio-setup: {seconds:.1f} s")
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = pio.parse_test_summary(proc.stdout)
    assert counts["total"] > 0 and counts["succeeded"] == counts["total"], counts
    assert seconds < 200, "something waited for the registry (60 s per attempt)"
