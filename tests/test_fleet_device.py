"""Issue 14's device-backed client: the generated firmware under QEMU as a Flower client. Its
update (push the global adapter, S lines for the round's samples, pull) equals the numpy
client's on the same samples byte for byte, through the ClientApp."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from support import procs

from tinylora import cli, device
from tinylora.errors import ConfigError, FleetError
from tinylora.fleet import apps, devices, secagg
from tinylora.fleet.core import FleetSpec, aggregate
from tinylora.fleet.local import InProcessGrid
from tinylora.formats.adapter import Adapter


def _train_message(spec: FleetSpec, vec, rnd: int, node: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"masters": Array(np.asarray(vec, np.int16))}),
                          "config": ConfigRecord({**spec.to_config(), "server-round": rnd, "faults": ""})})
    return Message(content=content, message_type="train", dst_node_id=node)


@pytest.mark.parametrize(("mode", "target"), [("ffa", "cortex-m4"), ("both", "xtensa"), ("ffa", "rv32imc")])
def test_qemu_client_update_equals_the_numpy_client(mode, target, tmp_path):
    """One QEMU client and one numpy client with the same partition: two rounds (the second from
    a global adapter with trained masters), the replies' masters are the same bytes."""
    spec = FleetSpec(task="sensor", clients=3, local_steps=16, mode=mode, lr=0.2 if mode == "ffa" else 0.05)
    fleet = apps.fleet_of(spec)
    grid = InProcessGrid(2)
    grid.contexts[1001].node_config["partition-id"] = 0    # the same data as node 1000
    with devices.qemu_devices(fleet, target, 1, tmp_path) as ports:
        grid.contexts[1000].node_config["device"] = ports[0]
        vec = fleet.initial
        for rnd in (1, 2):
            dev, ref = grid.send_and_receive([_train_message(spec, vec, rnd, 1000),
                                              _train_message(spec, vec, rnd, 1001)])
            assert not dev.has_error(), dev.error.reason
            assert dev.content["meta"]["trained-on"] == "device" and ref.content["meta"]["trained-on"] == "numpy"
            got, want = dev.content["arrays"]["masters"], ref.content["arrays"]["masters"]
            assert got.numpy().dtype == np.int16 and got.data == want.data
            assert not np.array_equal(got.numpy(), vec)       # the device trained
            assert np.array_equal(got.numpy(), fleet.local_round(0, vec, rnd)[0])
            vec = got.numpy()


def test_secagg_with_a_qemu_client_equals_the_plain_aggregate(tmp_path):
    """Flower's SecAgg+ workflow with client 1 on QEMU Cortex-M7: the global adapter equals the
    plain integer aggregate of the numpy clients' updates."""
    spec = FleetSpec(task="remap", clients=3, rounds=1, local_steps=8, lr=0.05)
    fleet = apps.fleet_of(spec)
    grid = InProcessGrid(spec.clients, client_app=secagg.client_app)
    with devices.qemu_devices(fleet, "cortex-m7", 1, tmp_path) as ports:
        grid.contexts[1001].node_config["device"] = ports[0]
        ctx = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
        report = secagg.run_secagg(grid, ctx, spec, 60.0)
        device.pull(ports[0], tmp_path / "device.tla", timeout=60)   # the device did client 1's round
        on_device = fleet.vector(Adapter.load(tmp_path / "device.tla"))
    assert np.array_equal(on_device, fleet.local_round(1, fleet.initial, 1)[0])
    g = aggregate([(fleet.local_round(c, fleet.initial, 1)[0], 1) for c in range(spec.clients)])
    assert report["rounds"][1]["clients"] == 3
    assert report["adapter_hex"] == fleet.adapter(g, 3 * spec.local_steps).to_bytes().hex()


def test_a_device_with_another_fleets_firmware_is_dropped(tmp_path):
    """A device flashed for another config (rank 4, the fleet's is 8) refuses the global adapter:
    the round goes on with the numpy client, and the report says why client 0 was dropped."""
    spec = FleetSpec(task="remap", clients=2, rounds=1, local_steps=8, lr=0.05)
    other = apps.fleet_of(FleetSpec(task="remap", clients=2, rank=4, local_steps=8, lr=0.05))
    grid = InProcessGrid(spec.clients)
    with devices.qemu_devices(other, "cortex-m4", 1, tmp_path) as ports:
        grid.contexts[1000].node_config["device"] = ports[0]
        report = apps.run_rounds(grid, spec, 60.0)
    r1, fleet = report["rounds"][1], apps.fleet_of(spec)
    assert r1["clients"] == [1] and r1["devices"] == []
    assert "client failed" in r1["dropped"][0]["reason"] and "refused" in r1["dropped"][0]["reason"]
    want = fleet.adapter(aggregate([fleet.local_round(1, fleet.initial, 1)]), spec.local_steps)
    assert report["adapter_hex"] == want.to_bytes().hex()


def test_qemu_devices_are_stopped_on_errors(tmp_path):
    fleet = apps.fleet_of(FleetSpec(task="remap", clients=2, local_steps=4))
    with pytest.raises(FleetError, match="boom"):
        with devices.qemu_devices(fleet, "cortex-m4", 2, tmp_path) as ports:
            assert len(set(ports)) == 2 and len(procs.qemu_pids(str(tmp_path))) == 2
            raise FleetError("boom")
    assert procs.qemu_pids(str(tmp_path)) == []


def test_the_fleets_firmware_project_regenerates_byte_identically(tmp_path):
    fleet = apps.fleet_of(FleetSpec(task="remap", clients=2, local_steps=4))
    a, b = devices.project(fleet, tmp_path / "a"), devices.project(fleet, tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) > 10 and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert not any(str(tmp_path).encode() in (a / f).read_bytes() for f in files)   # no temporary paths


def test_devices_option_names_the_problem(capsys):
    with pytest.raises(ConfigError, match="qemu-TARGET:K"):
        devices.parse("qemu-host:1", 3)         # not an emulated device
    assert devices.parse("qemu-rv32imc:1", 3) == ("rv32imc", 1)   # its console is the UART
    with pytest.raises(ConfigError, match="1..3"):
        devices.parse("qemu-cortex-m4:4", 3)
    assert devices.parse("qemu-xtensa:2", 3) == ("xtensa", 2) and devices.parse(None, 3) is None
    assert cli.main(["fleet", "--clients", "2", "--devices", "cortex-m4"]) == 2
    assert "qemu-TARGET:K" in capsys.readouterr().err


def test_devices_without_pyserial_is_a_clear_error(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "serial" else real(name, *a))
    assert cli.main(["fleet", "--clients", "2", "--devices", "qemu-cortex-m4:1"]) == 2
    assert "pip install 'tinylora[device]'" in capsys.readouterr().err
