"""Device-backed fleet clients: the generated firmware trains instead of the numpy Trainer.

A device client's round, over the serial protocol (tinylora.device; firmware/app/tl_protocol.h):
push the global adapter (a form-1 file from :meth:`Fleet.adapter`) into an inactive slot and
activate it (U, D, F, X: the device loads its masters and zeroes its accumulators, as
:meth:`Fleet.load` does), send the round's samples as ``S <label> <hex>`` lines, one training
step each, in the order of :meth:`Fleet.local_samples`, pull the device's masters (G) and reply
with their federated part. The samples belong to the client's node (the device and the
SuperNode it is attached to); only the adapter update goes to the server.

The firmware is the project ``tinylora gen`` writes for the fleet's base: started from the
fleet's initial adapter (its seeded A, its calibrated scales) with the fleet's learning rate,
and for FFA-LoRA A's update multiplier 0 (A frozen). So a device's update equals the numpy
client's on the same samples byte for byte (tests/test_fleet_device.py).

``tinylora fleet --devices qemu-TARGET:K`` builds it once and runs K copies under QEMU
(:func:`qemu_devices`), each on a pseudo-terminal handed to a SuperNode as
``--node-config device="<port>"``.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tinylora import device, emulated_device
from tinylora.codegen import project as gen
from tinylora.codegen.project.model_code import model_code
from tinylora.errors import ConfigError
from tinylora.fleet.core import Fleet
from tinylora.formats.adapter import Adapter

#: The generated project's board (its adapter slots); the C is built for the QEMU target.
BOARD = "esp32"
#: Embedded samples of the project (boot training and E only; the fleet's samples come over S).
EMBEDDED = 8
TARGETS = emulated_device.CONSOLE_TARGETS


def parse(text: str | None, clients: int) -> tuple[str, int] | None:
    """``qemu-TARGET:K`` -> (TARGET, K); None for no devices."""
    if not text:
        return None
    kind, _, count = text.partition(":")
    target = kind.removeprefix("qemu-")
    if not kind.startswith("qemu-") or target not in TARGETS or not count.isdigit():
        raise ConfigError(f"bad --devices {text!r}: write qemu-TARGET:K with TARGET one of "
                          f"{', '.join(TARGETS)} and K a number of clients")
    if not 1 <= int(count) <= clients:
        raise ConfigError(f"--devices {text}: K must be in 1..{clients} (the number of --clients)")
    return target, int(count)


def project(fleet: Fleet, folder: Path, board: str = BOARD, command: str = "tinylora fleet") -> Path:
    """The fleet's firmware project for ``board`` (a PlatformIO project, as ``tinylora gen``
    writes) in ``folder``: what a real device of the fleet runs. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def code(model, trainer, *args, **kw):   # the fleet's trainer: A frozen for FFA-LoRA
        if fleet.spec.mode == "ffa":
            for ad in trainer.adapters.values():
                ad.k.m_update_a = (0, 0)
        return model_code(model, trainer, *args, **kw)

    with tempfile.TemporaryDirectory(prefix="tinylora-fleet-fw-") as tmp:   # gen --adapter embeds it
        initial = fleet.adapter(fleet.initial).save(Path(tmp) / "initial.tla")
        p = gen.plan_project(board, samples=EMBEDDED, epochs=1, lr=fleet.spec.lr, adapter=str(initial),
                             command=command, model_code_factory=code)
    gen.write_project(p, folder)
    return folder


def firmware(fleet: Fleet, target: str, workdir: Path, command: str = "tinylora fleet") -> Path:
    """The fleet's firmware (:func:`project` for the esp32 board) built for the QEMU ``target``: its ELF."""
    folder = project(fleet, Path(workdir) / "project", command=command)
    return emulated_device.build_app(target, folder, Path(workdir) / "build")


def local_round(port: str, fleet: Fleet, client: int, vec, rnd: int,
                timeout: float = 120.0) -> tuple[np.ndarray, int]:
    """One client's round on the device at ``port``: as :meth:`Fleet.local_round`."""
    x, y, n = fleet.local_samples(client, rnd)
    if n == 0:
        return np.asarray(vec, np.int16), 0
    with tempfile.TemporaryDirectory(prefix="tinylora-device-") as tmp:
        fleet.adapter(vec).save(Path(tmp) / "global.tla")
        device.push(port, Path(tmp) / "global.tla", timeout=timeout)
        link = device.Link.open(port, timeout=timeout)
        try:
            for xi, yi in zip(x, y):
                link.send(f"S {int(yi)} {np.asarray(xi, np.int8).tobytes().hex()}")
                link.reply(("R ",), f"training step of round {rnd}")
        finally:
            link.close()
        device.pull(port, Path(tmp) / "local.tla", timeout=timeout)
        return fleet.vector(Adapter.load(Path(tmp) / "local.tla")), n


@contextlib.contextmanager
def qemu_devices(fleet: Fleet, target: str, count: int, workdir: Path,
                 env: dict | None = None) -> Iterator[list[str]]:
    """``count`` copies of the fleet's firmware under QEMU; yields their serial ports. Every
    QEMU process is gone when the block exits (also on errors)."""
    elf = firmware(fleet, target, Path(workdir) / "firmware", command=f"tinylora fleet --devices qemu-{target}:{count}")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(emulated_device.serial_console(target, elf, env)) for _ in range(count)]
