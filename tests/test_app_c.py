"""The application's plain C (firmware/app, firmware/boards) built and run without a
generated model: the serial protocol's line ends, the replies of the main loop and the
emulated targets' blocking input. A test double stands in for the model
(tests/fakes/app); the generated projects' own suites run in tests/test_project.py."""
import subprocess
import time
from pathlib import Path

import pytest

from tinylora import emulate
from tinylora.codegen import project as gen

FW = emulate.firmware_dir()
FAKES = Path(__file__).parent / "fakes" / "app"
APP_SOURCES = [FW / "app" / "main.c", FW / "app" / "tl_protocol.c", FW / "src" / "tl_storage.c",
               FW / "app" / "tl_adapter.c", FW / "app" / "tl_app_adapters.c",
               FW / "src" / "tl_checkpoint.c", FW / "src" / "tl_quant.c",
               FW / "boards" / "tl_board_qemu.c", FW / "boards" / "tl_board_common.c",
               FAKES / "tl_app_model_fake.c"]
INCLUDES = [FAKES, FW / "app", FW / "boards"]


def _build(target: str, out: Path, defines=None) -> Path:
    return emulate.build(target, APP_SOURCES, out, defines, runtime=False, include_dirs=INCLUDES)


@pytest.fixture(scope="module")
def host_app(tmp_path_factory):
    return _build("host", tmp_path_factory.mktemp("app"))


def _run_host(exe: Path, text: bytes) -> str:
    proc = subprocess.run([str(exe)], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc
    return proc.stdout.decode("ascii")


def _replies(out: str) -> list[str]:
    """The lines after the boot (from '# ready' on), without '# ready' and '# input ended'."""
    lines = out.splitlines()
    lines = lines[lines.index(next(x for x in lines if x.startswith("# ready"))) + 1:]
    assert lines[-1] == "# input ended", out
    return lines[:-1]


def test_cr_lf_and_crlf_all_end_lines(host_app):
    # minicom / screen send CR alone; CRLF is one line end, not two; LF alone as before
    out = _run_host(host_app, b"P 05000000\rP 07000000\r\nP 08000000\nE\r\r\n")
    assert _replies(out) == ["R - 2 -", "R - 1 -", "R - 2 -", "A 0 2/2 100.0%"], out


def test_an_eot_byte_ends_the_input(host_app):
    # Ctrl-D: what ends piped input on a UART console (QEMU RISC-V); what follows is not read
    assert _replies(_run_host(host_app, b"P 05000000\nP 04000000\x04P 07000000\n")) == [
        "R - 2 -", "R - 1 -"]


def test_a_last_line_without_a_line_end_is_processed(host_app):
    assert _replies(_run_host(host_app, b"S 1 01000000\nP 04000000")) == [
        "R 1 1 0.500", "R - 1 -", "C 3 4 RAM"]
    assert _replies(_run_host(host_app, b"S 1 01000000\nS 2 01")) == [
        "R 1 1 0.500", "! wrong number of hex digits", "C 3 4 RAM"]


def test_checkpoint_command_always_gets_a_reply(host_app):
    out = _replies(_run_host(host_app, b"C\nS 0 02000000\nC\nC\n"))
    assert out == ["# checkpoint: nothing new since step 2", "R 0 2 0.500", "C 3 4 RAM",
                   "# checkpoint: nothing new since step 3"], out


def test_checkpoint_command_in_a_build_that_cannot_train(tmp_path):
    exe = _build("host", tmp_path, {"TL_APP_CAN_TRAIN": 0})
    assert _replies(_run_host(exe, b"C\n")) == ["# checkpoint: none in this build (it does not train)"]


def test_host_banner_names_the_core(host_app):
    assert _run_host(host_app, b"").startswith("# tinylora on QEMU host (the fake project): model fake\n")


@pytest.mark.parametrize("q", gen.QEMU_ENVS, ids=lambda q: q.env)
def test_emulated_input_blocks_until_it_arrives(q, tmp_path):
    """A slow producer (a person at a terminal): every line is answered, however late it
    comes, and only the real end of the input ends the program (on RISC-V, whose console is
    the virt machine's UART, an EOT byte: a UART has no end of input)."""
    ok, why = emulate.available(q.emulation)
    assert ok, why
    elf = _build(q.emulation, tmp_path)
    cmd = [str(elf) if a == gen._ELF else a for a in q.command]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    end = b"\x04" if q.emulation == "rv32imc" else b""
    for line in (b"P 05000000\n", b"P 07000000\r", b"E\n" + end):
        time.sleep(1.5)
        proc.stdin.write(line)
        proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    text = out.decode("ascii")
    core = {"xtensa": "Xtensa", "rv32imc": "RISC-V"}.get(q.emulation, "Arm Cortex-M")
    assert text.startswith(f"# tinylora on QEMU {core} (the fake project)"), text
    assert _replies(text) == ["R - 2 -", "R - 1 -", "A 0 2/2 100.0%"], text


# ------------------------------------------------------------ every firmware C file compiles

WARNINGS = emulate.WARNINGS
FAKE_DIR = Path(__file__).parent / "fakes"
# host: everything but the emulated targets' startup files; the board files also with the
# ESP-IDF and STM32Cube test doubles, for every family branch they hold
BOARD_VARIANTS = {
    "host": [],
    "esp-idf": ["-DESP_PLATFORM", f"-I{FAKE_DIR / 'esp_idf'}"],
    "esp-idf-nvs": ["-DESP_PLATFORM", "-DTL_STORAGE_NVS", f"-I{FAKE_DIR / 'esp_idf'}"],
    **{f"stm32-{f.lower()}": ["-DUSE_HAL_DRIVER", f"-DTL_STM32_{f}", f"-I{FAKE_DIR / 'stm32'}"]
       for f in ("F4", "F7", "H7", "L4")},
}
CROSS = {"targets/cortex-m": "arm-none-eabi-gcc", "targets/xtensa": "xtensa-lx106-elf-gcc"}


def _firmware_c() -> list[Path]:
    return sorted(FW.rglob("*.c"))


def test_every_firmware_c_file_is_listed():
    # the compile test below covers these folders; a new folder needs a decision there
    folders = {p.parent.relative_to(FW).as_posix() for p in _firmware_c()}
    assert folders <= {"src", "app", "app/test", "boards", "testing", "targets/cortex-m",
                       "targets/xtensa", "targets/stdio"}, folders


@pytest.mark.parametrize("variant", sorted(BOARD_VARIANTS))
def test_firmware_c_compiles_warning_free(variant, tmp_path):
    """Every firmware/**/*.c with -std=c99 -Wall -Wextra -Werror -pedantic: on the host, the
    board files also against the ESP-IDF / STM32Cube header test doubles (tests/fakes)."""
    includes = [f"-I{d}" for d in (FAKES, FW / "app", FW / "boards", FW / "app" / "test",
                                   FW / "include", FW / "testing")]
    failures = []
    for src in _firmware_c():
        rel = src.relative_to(FW).as_posix()
        folder = src.parent.relative_to(FW).as_posix()
        if variant != "host" and folder != "boards":
            continue
        cc = CROSS.get(folder, "gcc")
        flags = ["-mlongcalls"] if cc.startswith("xtensa") else (["-mthumb", "-mcpu=cortex-m4"]
                                                                  if cc.startswith("arm") else [])
        cmd = [cc, *WARNINGS, *flags, *BOARD_VARIANTS[variant], *includes, "-c", str(src), "-o",
               str(tmp_path / (src.stem + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"{rel}:\n{proc.stderr}")
    assert not failures, "\n".join(failures)


def test_firmware_c_is_clang_formatted():
    root = Path(__file__).parent.parent
    proc = subprocess.run(["bash", str(root / "scripts" / "lint_c.sh")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
