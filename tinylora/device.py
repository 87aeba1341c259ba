"""The host side of a device's adapter slots: ``tinylora push`` and ``tinylora pull`` over the
serial line protocol of the generated application (firmware/app/tl_protocol.h: L, X, U, D, F,
G; replies in firmware/app/tl_app_adapters.c). pyserial is imported lazily (``pip install
tinylora[device]``)."""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from tinylora.errors import AdapterError, DeviceError, InputError
from tinylora.formats.adapter import Adapter

#: Bytes per D line (TL_PROTO_CHUNK_MAX of tl_protocol.h).
CHUNK = 64


def check_file(data: bytes, what: str) -> Adapter:
    """The checks a host can make without the model, by the one adapter reader
    (:meth:`Adapter.load`: size, length field, magic, version, CRC, form, loss, the layer
    descriptors and the payload's size), and what a device holds: a format-2 file in the
    masters form (int16, what it trains on). The device checks the rest against its build
    (model hash, layers, config). InputError names the problem; returns the adapter."""
    try:
        adapter = Adapter.load(data)
    except AdapterError as e:
        raise InputError(f"{what}: {e}") from None
    if adapter.model_sha256 is None:
        raise InputError(f"{what}: a version-1 adapter file, which names its model by CRC32 only; "
                         "a device reads format 2: convert it with Adapter.load(path).check(model).save(path)")
    if adapter.form != "masters":
        raise InputError(f"{what}: a deploy-form adapter (int8 values); a device holds the int16 "
                         "masters it trains on: push the masters file (Adapter.save's default form)")
    return adapter


@dataclass
class Link:
    """A line-oriented conversation with the application on ``port``."""
    serial: object
    timeout: float

    @classmethod
    def open(cls, port: str, baud: int = 115200, timeout: float = 30.0) -> Link:
        try:
            import serial  # noqa: PLC0415 - optional dependency, lazy
        except ImportError:
            raise DeviceError("pyserial is missing: pip install 'tinylora[device]'") from None
        try:
            return cls(serial.Serial(port, baud, timeout=0.2), timeout)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"cannot open {port}: {e}; check the port (pio device list) "
                              "and that no monitor holds it") from None

    def close(self) -> None:
        self.serial.close()

    def send(self, line: str) -> None:
        self.serial.write(line.encode("ascii") + b"\n")
        self.serial.flush()

    def reply(self, prefixes: tuple[str, ...], what: str) -> str:
        """The next line starting with one of ``prefixes`` or "! " (a refusal: DeviceError);
        other lines (progress, information) are skipped."""
        deadline, buf = time.monotonic() + self.timeout, b""
        while time.monotonic() < deadline:
            buf += self.serial.readline()
            if not buf.endswith(b"\n"):
                continue
            line, buf = buf.decode("ascii", "replace").strip(), b""
            if line.startswith("! "):
                raise DeviceError(f"{what}: the device refused: {line[2:]}")
            if line.startswith(prefixes):
                return line
        raise DeviceError(f"{what}: no answer within {self.timeout:g} s: is the tinylora "
                          "application running on that port (115200 baud)?")


def _slots(link: Link) -> tuple[list[str], str]:
    """The L listing: each slot's state, the active slot ('-': the base model)."""
    link.send("L")
    states, active = [], None
    while active is None:
        line = link.reply(("l ",), "list slots")
        _, key, state = line.split(" ", 2)
        if key == "active":
            active = state
        else:
            states.append(state)
    return states, active


def push(port: str, path: str | Path, slot: int | None = None, activate: bool = True,
         timeout: float = 30.0) -> int:
    """Upload the adapter file at ``path`` into ``slot`` (default: the first slot that is not
    active), chunk by chunk, and activate it. Returns the slot."""
    data = Path(path).read_bytes()
    check_file(data, str(path))
    link = Link.open(port, timeout=timeout)
    try:
        states, active = _slots(link)
        if slot is None:
            free = [k for k in range(len(states)) if str(k) != active]
            if not free:
                raise DeviceError(f"the device has {len(states)} adapter slot(s), none inactive: "
                                  "choose one with --slot after X - (the base model)")
            slot = free[0]
        if not 0 <= slot < len(states):
            raise DeviceError(f"slot {slot} is beyond the device's {len(states)} adapter slot(s) "
                              f"(0..{len(states) - 1})")
        link.send(f"U {slot} {len(data)}")
        link.reply(("u ",), f"upload into slot {slot}")
        for i in range(0, len(data), CHUNK):
            part = data[i:i + CHUNK]
            link.send(f"D {i // CHUNK} {zlib.crc32(part):08x} {part.hex()}")
            link.reply((f"d {i // CHUNK}",), f"chunk {i // CHUNK}")
        link.send("F")
        link.reply(("f ",), "upload check")
        if activate:
            link.send(f"X {slot}")
            link.reply(("x ",), f"activate slot {slot}")
        return slot
    finally:
        link.close()


def pull(port: str, out: str | Path, timeout: float = 30.0) -> int:
    """The device's current adapter (its masters as a form-1 file) into ``out``; its size."""
    link = Link.open(port, timeout=timeout)
    try:
        link.send("G")
        size = int(link.reply(("g ",), "pull").split()[1])
        data = b""
        while True:
            line = link.reply(("D ", "g end"), "pull")
            if line == "g end":
                break
            _, index, crc, hexdata = line.split()
            part = bytes.fromhex(hexdata)
            if int(index) != len(data) // CHUNK or zlib.crc32(part) != int(crc, 16):
                raise DeviceError(f"pull: chunk {index} arrived damaged or out of order; pull again")
            data += part
    finally:
        link.close()
    if len(data) != size:
        raise DeviceError(f"pull: {len(data)} of {size} bytes arrived; pull again")
    check_file(data, "the device's adapter")
    Path(out).write_bytes(data)
    return size


def cmd_push(args) -> int:
    slot = push(args.port, args.adapter, args.slot, activate=not args.no_activate,
                timeout=args.timeout)
    state = "stored" if args.no_activate else "active"
    print(f"{args.adapter}: slot {slot} of the device on {args.port}, {state}")
    return 0


def cmd_pull(args) -> int:
    size = pull(args.port, args.out, timeout=args.timeout)
    print(f"{args.out}: the device's adapter, {size:,} bytes (form 1, int16 masters)")
    return 0
