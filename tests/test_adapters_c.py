"""The adapter slots of the firmware (firmware/app/tl_adapter.c, tl_app_adapters.c) on the host
and under QEMU with the test double of the model (tests/fakes/app): the project's own
test_adapters suite (format-2 refusals, uploads and selections torn at every byte), and the
serial commands L, X, U, D, F, G of the application."""
import subprocess
import zlib
from pathlib import Path

import pytest

from tinylora import emulate

FW = emulate.firmware_dir()
FAKES = Path(__file__).parent / "fakes" / "app"
COMMON = [FW / "src" / "tl_storage.c", FW / "src" / "tl_checkpoint.c", FW / "src" / "tl_quant.c",
          FW / "app" / "tl_adapter.c", FW / "boards" / "tl_board_qemu.c",
          FW / "boards" / "tl_board_common.c", FAKES / "tl_app_model_fake.c"]
APP = [FW / "app" / "main.c", FW / "app" / "tl_protocol.c", FW / "app" / "tl_app_adapters.c"]
SUITE = [FW / "app" / "test" / "test_adapters.c", FW / "app" / "test" / "tl_unit.c"]
INCLUDES = [FAKES, FW / "app", FW / "boards", FW / "app" / "test"]


def _build(target, out, sources, defines=None):
    return emulate.build(target, COMMON + sources, out, defines, runtime=False, include_dirs=INCLUDES)


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_adapter_suite_passes(target, tmp_path):
    ok, why = emulate.available(target)
    assert ok, why
    result = emulate.run(target, _build(target, tmp_path, SUITE), timeout=300)
    out = result.stdout.decode()
    assert result.returncode == 0 and "8 Tests 0 Failures" in out and "OK" in out, out


def test_a_build_without_slots_says_so(tmp_path):
    exe = _build("host", tmp_path, SUITE, {"TL_ADAPTER_SLOTS": 0})
    out = subprocess.run([str(exe)], capture_output=True, timeout=60).stdout.decode()
    assert "1 Tests 0 Failures" in out, out


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return _build("host", tmp_path_factory.mktemp("app"), APP)


def _talk(exe, text: str) -> list[str]:
    proc = subprocess.run([str(exe)], input=text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc
    lines = proc.stdout.decode().splitlines()
    return lines[next(i for i, x in enumerate(lines) if x.startswith("# ready")) + 1:-1]


def _pulled(lines: list[str]) -> bytes:
    """The file of a G reply (its D lines, each CRC checked)."""
    start = lines.index(next(x for x in lines if x.startswith("g ")))
    size, data = int(lines[start].split()[1]), b""
    for k, line in enumerate(lines[start + 1:]):
        if line == "g end":
            break
        _, index, crc, hexdata = line.split()
        chunk = bytes.fromhex(hexdata)
        assert int(index) == k and int(crc, 16) == zlib.crc32(chunk)
        data += chunk
    assert len(data) == size
    return data


def _upload(file: bytes, slot: int, chunk: int = 64) -> str:
    lines = [f"U {slot} {len(file)}"]
    for i in range(0, len(file), chunk):
        part = file[i:i + chunk]
        lines.append(f"D {i // chunk} {zlib.crc32(part):08x} {part.hex()}")
    return "\n".join(lines + ["F"]) + "\n"


def _reseal(file: bytes) -> bytes:
    return file[:-4] + zlib.crc32(file[:-4]).to_bytes(4, "little")


def test_pull_upload_select_over_the_serial_protocol(app):
    base = _pulled(_talk(app, "G\n"))
    assert base[:4] == b"TLAD" and int.from_bytes(base[4:6], "little") == 2
    # the fake predicts (first byte + first master) % 3: an adapter with master 1 shifts it
    shifted = bytearray(base)
    at = 64 + 28
    shifted[at:at + 2] = (1).to_bytes(2, "little")
    shifted = _reseal(bytes(shifted))
    out = _talk(app, _upload(shifted, 1) + "P 05000000\nX 1\nP 05000000\nL\nX -\nP 05000000\n")
    n = len(range(0, len(shifted), 64))
    assert out[:n + 2] == ["u 1 106"] + [f"d {i}" for i in range(n)] + ["f 1"], out
    assert out[n + 2:] == ["R - 2 -", "x 1", "R - 0 -", "l 0 nothing stored", "l 1 ok",
                           "l 2 nothing stored", "l active 1", "x -", "R - 2 -"], out


def test_bad_uploads_get_clear_replies(app):
    base = _pulled(_talk(app, "G\n"))
    foreign = bytearray(base)
    foreign[12] ^= 1
    lines = _talk(app, "U 7 106\nU 0 105\n"
                  f"U 0 106\nD 1 {zlib.crc32(base[:64]):08x} {base[:64].hex()}\n"
                  f"D 0 00000000 {base[:64].hex()}\nF\n" + _upload(_reseal(bytes(foreign)), 0)
                  + "X 0\nX 9\nL\n")
    assert lines[0] == "! upload refused: no such slot on this board, or it is the active one (status 21)"
    assert lines[1] == "! upload refused: other layers or sizes than this build's (status 13)"
    assert lines[2] == "u 0 106"
    assert lines[3] == "! chunk refused: chunk out of order (or no upload in progress) (status 22)"
    assert lines[4] == "! chunk refused: CRC mismatch (status 8)"
    assert lines[5] == "! upload failed: wrong length (status 9)"
    assert lines[-7] == "! upload failed: made for another base model (SHA-256 differs) (status 12)"
    assert lines[-6] == "! select refused: made for another base model (SHA-256 differs) (status 12)"
    assert lines[-5] == "! select refused: no such slot on this board, or it is the active one (status 21)"
    assert lines[-4:] == ["l 0 made for another base model (SHA-256 differs)", "l 1 nothing stored",
                          "l 2 nothing stored", "l active -"], lines


def test_the_device_sends_what_it_learned(app):
    before = _pulled(_talk(app, "G\n"))
    after = _pulled(_talk(app, "S 1 01000000\nG\n"))   # boot training and one more step
    assert before != after and after[:64 + 28] == before[:64 + 28]


def test_protocol_suite_passes_on_the_host(tmp_path):
    """The project's test_protocol suite (adapter command fields included) with the fake model's
    sizes."""
    exe = _build("host", tmp_path, [FW / "app" / "test" / "test_protocol.c", FW / "app" / "test" / "tl_unit.c",
                                    FW / "app" / "tl_protocol.c"])
    out = subprocess.run([str(exe)], capture_output=True, timeout=60).stdout.decode()
    assert "9 Tests 0 Failures" in out, out


# ------------------------------------------------------------ push / pull through a pseudo-terminal

@pytest.fixture
def qemu_device(tmp_path):
    """The application (fake model) on QEMU Cortex-M4, its console on a pseudo-terminal: the
    semihosting console is QEMU's standard input and output, here the pty's controller side;
    tinylora push / pull open the other side as a serial port. Yields the port's path."""
    import os
    import pty
    import tty
    ok, why = emulate.available("cortex-m4")
    assert ok, why
    elf = _build("cortex-m4", tmp_path, APP)
    spec = emulate.TOOLCHAINS["cortex-m4"]
    controller, port = pty.openpty()
    tty.setraw(port)   # no echo of the device's output back into its input
    proc = subprocess.Popen([*spec.qemu[:-1], spec.qemu[-1], str(elf)], stdin=controller,
                            stdout=controller, stderr=subprocess.PIPE, env=dict(os.environ, **spec.env))
    try:
        yield os.ttyname(port)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        os.close(port)
        os.close(controller)


def test_push_and_pull_through_a_pty(qemu_device, tmp_path):
    from tinylora import device
    base = tmp_path / "base.tla"
    assert device.pull(qemu_device, base) == 106
    shifted = bytearray(base.read_bytes())
    shifted[64 + 28:64 + 30] = (1).to_bytes(2, "little")   # the fake adds master 0 to its class
    (tmp_path / "shifted.tla").write_bytes(_reseal(bytes(shifted)))
    assert device.push(qemu_device, tmp_path / "shifted.tla") == 0   # the first inactive slot
    assert device.pull(qemu_device, tmp_path / "back.tla") == 106
    assert (tmp_path / "back.tla").read_bytes() == _reseal(bytes(shifted))   # it runs that adapter
    link = device.Link.open(qemu_device)
    try:
        link.send("P 05000000")
        assert link.reply(("R ",), "predict") == "R - 0 -"    # (5 + 1) % 3
        link.send("X -")
        assert link.reply(("x ",), "base") == "x -"
        link.send("P 05000000")
        assert link.reply(("R ",), "predict") == "R - 2 -"    # the base model again
    finally:
        link.close()
    foreign = bytearray(_reseal(bytes(shifted)))
    foreign[12] ^= 1
    (tmp_path / "foreign.tla").write_bytes(_reseal(bytes(foreign)))
    with pytest.raises(device.DeviceError, match="another base model"):
        device.push(qemu_device, tmp_path / "foreign.tla", slot=1)
    with pytest.raises(device.DeviceError, match="beyond the device's 3 adapter slot"):
        device.push(qemu_device, tmp_path / "shifted.tla", slot=5)
    (tmp_path / "cut.tla").write_bytes(base.read_bytes()[:-9])
    with pytest.raises(device.InputError, match="truncated"):
        device.push(qemu_device, tmp_path / "cut.tla")
