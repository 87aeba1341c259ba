"""A generated project's application on QEMU, reached as a serial device: its console (QEMU's
standard input and output: semihosting on Cortex-M and Xtensa, the virt machine's UART on
RISC-V; firmware/boards/tl_board_qemu.c) on a pseudo-terminal whose other side is an ordinary
serial port for :mod:`tinylora.device` (push, pull, S lines). Used by the device round-trip
tests and by ``tinylora fleet --devices qemu-TARGET:K``."""
from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import tty
from collections.abc import Iterator, Mapping
from pathlib import Path

from tinylora import emulate
from tinylora.errors import InputError
from tinylora.targets import TOOLCHAINS

#: The emulated targets whose application console reads input: every QEMU target.
CONSOLE_TARGETS = ("cortex-m4", "cortex-m7", "xtensa", "rv32imc")


def build_app(target: str, folder: Path, out_dir: Path) -> Path:
    """The application of the project generated in ``folder`` built for ``target``: its ELF."""
    if target not in CONSOLE_TARGETS:
        raise InputError(f"target {target!r} has no serial console under QEMU; "
                         f"choose one of {', '.join(CONSOLE_TARGETS)}")
    folder = Path(folder)
    libs = [folder / "lib" / n / "src" for n in ("tinylora", "tl_app", "tl_board")]
    sources = sorted((folder / "src").glob("*.c")) + [c for d in libs for c in sorted(d.glob("*.c"))]
    return emulate.build(target, sources, out_dir, runtime=False, include_dirs=[*libs, folder / "src"])


@contextlib.contextmanager
def serial_console(target: str, elf: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``elf`` on QEMU with its console on the controller side of a pseudo-terminal; yields
    the other side's path (a serial port, raw mode: no echo). QEMU is killed on exit."""
    spec = TOOLCHAINS[target]
    controller, port = pty.openpty()
    tty.setraw(port)   # no echo of the device's output back into its input
    proc = None
    try:
        proc = subprocess.Popen([*spec.qemu, str(elf)], stdin=controller, stdout=controller,
                                stderr=subprocess.DEVNULL, env=dict(os.environ, **spec.env, **(env or {})))
        yield os.ttyname(port)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=30)
        os.close(port)
        os.close(controller)
