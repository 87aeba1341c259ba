"""Round trips between the host and a generated project's application on QEMU (Cortex-M4, -M7,
Xtensa, rv32imc: its UART), its console on a pseudo-terminal (tinylora push / pull): train on
the device, pull, the file equals the numpy trainer's adapter after the same samples; train on
the host, push, the device predicts what numpy predicts with that adapter; X - gives the base
model again."""
import copy

import numpy as np
import pytest

from tinylora import bench, device, emulate, emulated_device, tasks
from tinylora.codegen import project as gen
from tinylora.formats.adapter import Adapter

SAMPLES, BOARD = 8, "esp32"


TARGETS = emulated_device.CONSOLE_TARGETS


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The esp32 project (14 adapter slots), generated once."""
    folder = tmp_path_factory.mktemp("roundtrip") / "p"
    p = gen.plan_project(BOARD, samples=SAMPLES, epochs=1, command="tests/test_device_roundtrip.py")
    gen.write_project(p, folder)
    return p, folder


@pytest.fixture(scope="module", params=TARGETS)
def built(request, project, tmp_path_factory):
    """Its application built for an emulated target: (Project, target, ELF)."""
    p, folder = project
    elf = emulated_device.build_app(request.param, folder, tmp_path_factory.mktemp(request.param))
    return p, request.param, elf


@pytest.fixture
def port(built):
    with emulated_device.serial_console(built[1], built[2]) as path:
        yield path


def _samples():
    t = tasks.task("sensor", 0)
    return t["x_train"], t["y_train"].astype(np.int64)


def _predictions(port: str, x: np.ndarray) -> list[int]:
    link = device.Link.open(port, timeout=120)
    try:
        out = []
        for row in x:
            link.send(f"P {row.astype(np.int8).tobytes().hex()}")
            out.append(int(link.reply(("R ",), "predict").split()[2]))
        return out
    finally:
        link.close()


def test_train_on_the_device_pull_equals_numpy(built, port, tmp_path):
    p = built[0]
    xr, yr = _samples()
    x, y = p.trainer.model.quantize(xr[:SAMPLES]), yr[:SAMPLES]
    t = copy.deepcopy(p.trainer)
    for i in range(SAMPLES):     # the boot training: one pass over the embedded samples
        t.step(x[i:i + 1], int(y[i]))
    assert device.pull(port, tmp_path / "device.tla", timeout=120) > 0
    assert (tmp_path / "device.tla").read_bytes() == Adapter.from_trainer(t).to_bytes()


def test_train_on_the_host_push_predicts_as_numpy(built, port, tmp_path):
    p = built[0]
    xr, yr = _samples()
    t = copy.deepcopy(p.trainer)
    xt = p.trainer.model.quantize(xr[SAMPLES:SAMPLES + 24])
    for i in range(len(xt)):
        t.step(xt[i:i + 1], int(yr[SAMPLES + i]))
    Adapter.from_trainer(t).save(tmp_path / "host.tla")
    probe = p.trainer.model.quantize(xr[:SAMPLES])
    assert device.push(port, tmp_path / "host.tla", timeout=120) == 0
    want = [int(np.argmax(t.logits(probe[i:i + 1]))) for i in range(SAMPLES)]
    assert _predictions(port, probe) == want
    assert device.pull(port, tmp_path / "back.tla", timeout=120) > 0
    assert (tmp_path / "back.tla").read_bytes() == (tmp_path / "host.tla").read_bytes()
    link = device.Link.open(port, timeout=120)
    try:
        link.send("X -")
        assert link.reply(("x ",), "base") == "x -"
    finally:
        link.close()
    base = [int(np.argmax(np.asarray(p.trainer.model.forward(probe[i:i + 1])))) for i in range(SAMPLES)]
    assert _predictions(port, probe) == base


SWITCH = ("switch_slot", "switch_base", "verify", "crc", "select")


def test_switch_cost(project, tmp_path):
    """Exact instructions of a hot swap on Cortex-M4 (QEMU -icount; benchmarks/adapter_switch_main.c):
    printed with -s. The slot's full check is done once (its upload), not at the switch."""
    p, folder = project
    lib = folder / "lib" / "tinylora" / "src"
    sources = [*sorted(lib.glob("*.c")), folder / "lib/tl_app/src/tl_adapter.c",
               emulate.firmware_dir() / "testing" / "tl_report.c",
               emulate.firmware_dir().parent / "benchmarks" / "adapter_switch_main.c"]
    elf = emulate.build("cortex-m4", sources, tmp_path, runtime=False,
                        include_dirs=[lib, folder / "lib/tl_app/src", folder / "lib/tl_board/src"])
    counts = {k: int(v[0]) for k, v in bench.measure("cortex-m4", elf, SWITCH).items()}
    size = p.code.adapter_bytes
    print(f"\nhot swap on cortex-m4, {size} B adapter file (bundled model, rank 3): {counts}")
    assert all(v > 0 for v in counts.values()), counts
    # recording the choice no longer checks the file; the switch's own guard is one CRC pass
    # over the bytes it copies, a fraction of the full check (the file read twice, its fields)
    assert counts["select"] < counts["verify"] and counts["crc"] < counts["verify"]
    # 187,139 instructions with the bit-at-a-time CRC and the full check at every switch
    assert counts["switch_slot"] < 187_139 // 3, counts


# ------------------------------------------------------------ gen --adapter

def _host_adapter(p, tmp_path) -> Adapter:
    xr, yr = _samples()
    t = copy.deepcopy(p.trainer)
    xt = p.trainer.model.quantize(xr[40:56])
    for i in range(len(xt)):
        t.step(xt[i:i + 1], int(yr[40 + i]))
    return Adapter.from_trainer(t)


def test_gen_adapter_refuses_another_model_and_the_deploy_form(project, tmp_path):
    from tinylora.errors import InputError, TinyLoRAError
    ad = _host_adapter(project[0], tmp_path)
    ad.save(tmp_path / "deploy.tla", form="deploy")
    with pytest.raises(InputError, match="deploy-form"):
        gen.plan_project(BOARD, samples=SAMPLES, epochs=1, adapter=str(tmp_path / "deploy.tla"))
    ad.model_sha256 = bytes(32)
    ad.save(tmp_path / "foreign.tla")
    with pytest.raises(TinyLoRAError, match="another base model"):
        gen.plan_project(BOARD, samples=SAMPLES, epochs=1, adapter=str(tmp_path / "foreign.tla"))


def test_gen_adapter_starts_from_it_and_keeps_it_in_slot_0(project, tmp_path):
    host = _host_adapter(project[0], tmp_path)
    host.save(tmp_path / "host.tla")
    p = gen.plan_project(BOARD, samples=SAMPLES, epochs=1, adapter=str(tmp_path / "host.tla"),
                         command="tests/test_device_roundtrip.py")
    assert Adapter.from_trainer(p.trainer).to_bytes() == host.to_bytes()   # its masters, scales
    folder = tmp_path / "p"
    gen.write_project(p, folder)
    libs = [folder / "lib" / n / "src" for n in ("tinylora", "tl_app", "tl_board")]
    elf = emulated_device.build_app("cortex-m4", folder, tmp_path / "build")
    x, y = p.trainer.model.quantize(_samples()[0][:SAMPLES]), _samples()[1][:SAMPLES]
    t = copy.deepcopy(p.trainer)
    for i in range(SAMPLES):   # the boot training continues from the adapter
        t.step(x[i:i + 1], int(y[i]))
    for suite in ("test_training", "test_adapters"):   # the project's own suites, on QEMU
        run = emulate.run("cortex-m4", emulate.build(
            "cortex-m4", [folder / "test" / suite / "test_main.c", folder / "test" / "tl_unit.c",
                          *(c for d in libs for c in sorted(d.glob("*.c")))],
            tmp_path / suite, runtime=False, include_dirs=[*libs, folder / "test"]), timeout=300)
        assert run.returncode == 0 and b" 0 Failures" in run.stdout, run.stdout.decode()[-3000:]
    with emulated_device.serial_console("cortex-m4", elf) as port:
        device.pull(port, tmp_path / "after_boot.tla", timeout=120)
        assert (tmp_path / "after_boot.tla").read_bytes() == Adapter.from_trainer(t).to_bytes()
        link = device.Link.open(port, timeout=120)
        try:
            link.send("L")
            assert link.reply(("l 0",), "list") == "l 0 ok"
            link.send("X 0")
            assert link.reply(("x ",), "select") == "x 0"
        finally:
            link.close()
        device.pull(port, tmp_path / "slot0.tla", timeout=120)
        assert (tmp_path / "slot0.tla").read_bytes() == host.to_bytes()   # back to the host's


# ------------------------------------------------------------ push's checks on the host

def test_push_checks_the_file_with_the_adapter_reader(project, tmp_path):
    """push refuses what no device takes before it opens the port (device.check_file is
    Adapter.load plus the device's form): InputError naming the file and the problem."""
    from tinylora.errors import InputError
    from tinylora.formats import adapter_v1
    p = project[0]
    good = _host_adapter(p, tmp_path)
    data = good.to_bytes()
    assert device.check_file(data, "x") == good
    flipped = bytearray(data)
    flipped[100] ^= 0x04
    v1 = adapter_v1.encode(good.layers, 0x1234)
    cases = [(data[:-9], "truncated or padded"), (bytes(flipped), "CRC32 mismatch"),
             (p.trainer.model.source, "not a tinylora adapter"),
             (v1, "version-1 adapter file.* convert it"),
             (good.to_bytes(form="deploy"), "deploy-form adapter .* masters")]
    for k, (bad, why) in enumerate(cases):
        path = tmp_path / f"bad{k}.tla"
        path.write_bytes(bad)
        with pytest.raises(InputError, match=f"^{path}: .*{why}"):
            device.push("/nonexistent/port", path)
