"""Build C with the tinylora runtime and run it on the host or on emulated microcontrollers.

Targets (``TARGETS``; their compilers, flags and QEMU commands are :data:`tinylora.targets.TOOLCHAINS`):

=================  ==================================================================
``host``           the machine's gcc, run natively
``host-sanitize``  gcc with ``-fsanitize=undefined,address`` (any UB or bad access fails)
``cortex-m4``      arm-none-eabi-gcc, QEMU ``mps2-an386`` (Cortex-M4F, DSP extension)
``cortex-m7``      arm-none-eabi-gcc, QEMU ``mps2-an500`` (Cortex-M7, DSP extension)
``xtensa``         xtensa-lx106-elf-gcc, QEMU ``sim`` with ``-cpu lx106`` (ESP32's ISA family)
``rv32imc``        riscv64-unknown-elf-gcc, QEMU ``virt`` (ESP32-C3's ISA)
=================  ==================================================================

Every build compiles with ``-std=c99 -Wall -Wextra -Werror -pedantic`` (and ``-O2``; the
sanitizer build ``-O1 -g``) together with the runtime (``firmware/tl_*.c``), the test reporter
(``firmware/testing``) and the target's startup / semihosting files
(``firmware/targets/<dir>``). On the Cortex-M targets the kernels take the DSP path unless
``defines={"TL_NO_DSP": 1}``.

Programs print results in the line protocol of ``firmware/testing/tl_report.h``
(``T <name> <hex>``, ``E <name> <status>``, ``DONE <n>``), read by :func:`parse_report`.

The toolchains are Debian packages (``scripts/setup.sh test`` installs them as root);
:func:`available` says whether a target can run here and, if not, why.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinylora.errors import EmulationError, InputError
from tinylora.resources import resource_dir
from tinylora.targets import TOOLCHAINS, WARNINGS, Toolchain

__all__ = ["TARGETS", "EmulationError", "Report", "RunResult", "available", "build", "run",
           "build_and_run", "parse_report", "firmware_dir", "runtime_sources", "compile_objects"]

#: Every target name, in a stable order (the toolchains of tinylora.targets).
TARGETS = tuple(TOOLCHAINS)
_SETUP_HINT = "run scripts/setup.sh test as root"


def firmware_dir() -> Path:
    """The hand-written C runtime (``firmware/`` in a checkout, ``tinylora/_data/firmware`` installed)."""
    return resource_dir("firmware")


def runtime_sources() -> list[Path]:
    """The runtime's C files every build links: kernels (portable, and the optimised-library
    glue, empty unless TL_USE_CMSIS_NN / TL_USE_ESP_NN), the other ops, quant helpers, test reporter."""
    fw = firmware_dir()
    return [fw / "src" / "tl_quant.c", fw / "src" / "tl_kernels.c", fw / "src" / "tl_ops.c",
            fw / "src" / "tl_kernels_cmsis_nn.c", fw / "src" / "tl_kernels_esp_nn.c",
            fw / "testing" / "tl_report.c"]


def _spec(target: str) -> Toolchain:
    try:
        return TOOLCHAINS[target]
    except KeyError:
        raise InputError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}") from None


@functools.cache
def available(target: str) -> tuple[bool, str]:
    """(True, "") if ``target`` can be built and run here, else (False, why and how to fix)."""
    spec = _spec(target)
    tools = [spec.cc] + ([spec.qemu[0]] if spec.qemu else [])
    for tool in tools:
        if shutil.which(tool) is None:
            return False, f"{tool} not found: {_SETUP_HINT} (Debian packages: {spec.apt})"
    for name in spec.needs_files:
        try:
            found = subprocess.run([spec.cc, *spec.cflags, f"-print-file-name={name}"],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:  # pragma: no cover - broken toolchain
            return False, f"{spec.cc} does not run ({e}): {_SETUP_HINT}"
        if not os.path.isabs(found):
            return False, f"{spec.cc} cannot find {name}: {_SETUP_HINT} (Debian packages: {spec.apt})"
    return True, ""


def _define_flags(defines: Mapping[str, object] | None) -> list[str]:
    flags = []
    for key, value in sorted((defines or {}).items()):
        flags.append(f"-D{key}" if value is None or value is True else f"-D{key}={value}")
    return flags


def build(target: str, sources: Sequence[Path | str], out_dir: Path | str,
          defines: Mapping[str, object] | None = None, *, name: str | None = None,
          runtime: bool = True, include_dirs: Sequence[Path | str] = (),
          libs: Sequence[Path | str] = ()) -> Path:
    """Compile and link ``sources`` (plus the runtime and the target's support files, then the
    static libraries ``libs``, e.g. :func:`tinylora.libraries.build_library`).

    ``defines`` maps macro names to values (``None``/``True``: defined without a value).
    Returns the executable (host) or ELF (emulated targets) in ``out_dir``. Raises
    :class:`EmulationError` with the compiler's messages if the build fails.
    """
    spec = _spec(target)
    ok, why = available(target)
    if not ok:
        raise EmulationError(f"target {target} is not available: {why}")
    fw = firmware_dir()
    targets_dir = fw / "targets"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (name or f"{target}.elf")
    files = [str(Path(s)) for s in sources]
    if runtime:
        files += [str(p) for p in runtime_sources()]
    files += [str(targets_dir / s) for s in spec.support]
    files += [str(Path(lib)) for lib in libs]
    includes = [f"-I{d}" for d in (fw / "include", fw / "testing", *include_dirs)]
    ldflags = [f.replace("{targets}", str(targets_dir)) for f in spec.ldflags]
    cmd = [spec.cc, *WARNINGS, *spec.cflags, *_define_flags(defines), *includes, *files,
           *ldflags, "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulationError(f"{target} build failed ({proc.returncode}):\n$ {' '.join(cmd)}\n"
                             f"{proc.stdout}{proc.stderr}")
    return out


def compile_objects(target: str, sources: Sequence[Path | str], out_dir: Path | str,
                    defines: Mapping[str, object] | None = None, *,
                    include_dirs: Sequence[Path | str] = ()) -> list[Path]:
    """Compile each source to an object file (``-c``, the target's flags, no linking): for
    inspecting what the code itself needs (``nm``), without the runtime library or startup.
    Returns the objects in ``out_dir``; raises :class:`EmulationError` if one fails."""
    spec = _spec(target)
    ok, why = available(target)
    if not ok:
        raise EmulationError(f"target {target} is not available: {why}")
    fw = firmware_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{d}" for d in (fw / "include", fw / "testing", *include_dirs)]
    objects = []
    for src in sources:
        obj = out_dir / (Path(src).stem + ".o")
        cmd = [spec.cc, *WARNINGS, *spec.cflags, *_define_flags(defines), *includes, "-c",
               str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulationError(f"{target} compile failed ({proc.returncode}):\n$ {' '.join(cmd)}\n"
                                 f"{proc.stdout}{proc.stderr}")
        objects.append(obj)
    return objects


class RunResult(tuple):
    """``(returncode, stdout)``; ``.stderr`` holds the program's / emulator's error output."""

    def __new__(cls, returncode: int, stdout: bytes, stderr: bytes = b""):
        self = super().__new__(cls, (returncode, stdout))
        self.stderr = stderr
        return self

    @property
    def returncode(self) -> int:
        return self[0]

    @property
    def stdout(self) -> bytes:
        return self[1]


def run(target: str, elf: Path | str, timeout: float = 120.0, icount: bool = False,
        icount_shift: int = 0) -> RunResult:
    """Run a built program; returns ``(returncode, stdout bytes)`` (a :class:`RunResult`).

    ``icount=True`` adds QEMU's ``-icount shift=<icount_shift>`` (one instruction per
    2^shift virtual ns; default 0), which makes SysTick / ``rdinstret`` / CCOUNT counts exact
    and repeatable; ignored on host targets. Raises :class:`EmulationError` on timeout.
    """
    spec = _spec(target)
    if spec.qemu is None:
        cmd = [str(elf)]
    else:
        cmd = list(spec.qemu[:-1]) + (["-icount", f"shift={int(icount_shift)}"] if icount else []) + \
            [spec.qemu[-1], str(elf)]
    env = dict(os.environ, **spec.env)
    # stdout goes to a file, not a pipe: QEMU's stdio is non-blocking, and a semihosting
    # write into a full pipe silently drops output (measured: truncated reports).
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            out.seek(0)
            raise EmulationError(f"{target}: {' '.join(cmd)} timed out after {timeout:g} s; "
                                 f"output ends: {out.read()[-500:]!r}") from None
        out.seek(0)
        stdout = out.read()
    return RunResult(proc.returncode, stdout, proc.stderr)


def build_and_run(target: str, sources: Sequence[Path | str], out_dir: Path | str,
                  defines: Mapping[str, object] | None = None, *, timeout: float = 120.0,
                  icount: bool = False, name: str | None = None) -> RunResult:
    """:func:`build` then :func:`run`."""
    elf = build(target, sources, out_dir, defines, name=name)
    return run(target, elf, timeout=timeout, icount=icount)


@dataclass
class Report:
    """A parsed test-program output: ``values[name]`` is the raw bytes of each ``T`` line,
    ``errors[name]`` the tl_status of each ``E`` line."""
    values: dict[str, bytes]
    errors: dict[str, int]
    lines: int

    def int8(self, name: str):
        return np.frombuffer(self.values[name], dtype=np.int8)

    def int32(self, name: str):
        return np.frombuffer(self.values[name], dtype="<i4")


def parse_report(stdout: bytes, returncode: int | None = None) -> Report:
    """Parse the ``T``/``E``/``DONE`` protocol; raises :class:`EmulationError` if it is broken
    (no DONE line, a count mismatch, a duplicate name, or a non-zero ``returncode`` with no
    ``E`` line to explain it)."""
    values: dict[str, bytes] = {}
    errors: dict[str, int] = {}
    done = None
    for raw in stdout.decode("ascii", "replace").splitlines():
        parts = raw.split()
        if not parts:
            continue
        if parts[0] == "T" and len(parts) in (2, 3):
            name = parts[1]
            if name in values:
                raise EmulationError(f"result {name!r} reported twice")
            try:
                values[name] = bytes.fromhex(parts[2] if len(parts) == 3 else "")
            except ValueError:
                raise EmulationError(f"result {name!r} is not hex: {raw[:120]!r}") from None
        elif parts[0] == "E" and len(parts) == 3:
            errors[parts[1]] = int(parts[2], 16)
        elif parts[0] == "DONE" and len(parts) == 2:
            done = int(parts[1], 16)
    tail = stdout[-400:].decode("ascii", "replace")
    if done is None:
        raise EmulationError(f"no DONE line (exit status {returncode}); output ends: {tail!r}")
    if done != len(values) + len(errors):
        raise EmulationError(f"DONE says {done} results, read {len(values) + len(errors)}")
    if returncode not in (None, 0) and not errors:
        raise EmulationError(f"exit status {returncode} after DONE; output ends: {tail!r}")
    return Report(values, errors, done)
