"""Issue 14's device-backed client: the generated firmware under QEMU as a Flower client. Its
update (push the global adapter, S lines for the round's samples, pull) equals the numpy
client's on the same samples byte for byte, through the ClientApp."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from tinylora import cli
from tinylora.errors import ConfigError
from tinylora.fleet import apps, devices
from tinylora.fleet.core import FleetSpec
from tinylora.fleet.local import InProcessGrid


def _train_message(spec: FleetSpec, vec, rnd: int, node: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"masters": Array(np.asarray(vec, np.int16))}),
                          "config": ConfigRecord({**spec.to_config(), "server-round": rnd, "faults": ""})})
    return Message(content=content, message_type="train", dst_node_id=node)


@pytest.mark.parametrize("mode", ["ffa", "both"])
def test_qemu_client_update_equals_the_numpy_client(mode, tmp_path):
    """One QEMU Cortex-M4 client and one numpy client with the same partition: two rounds (the
    second from a global adapter with trained B), the replies' masters are the same bytes."""
    spec = FleetSpec(task="sensor", clients=3, local_steps=16, mode=mode, lr=0.2 if mode == "ffa" else 0.05)
    fleet = apps.fleet_of(spec)
    grid = InProcessGrid(2)
    grid.contexts[1001].node_config["partition-id"] = 0    # the same data as node 1000
    with devices.qemu_devices(fleet, "cortex-m4", 1, tmp_path) as ports:
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


def test_devices_option_names_the_problem(capsys):
    with pytest.raises(ConfigError, match="qemu-TARGET:K"):
        devices.parse("qemu-rv32imc:1", 3)      # QEMU's RISC-V console reads no input
    with pytest.raises(ConfigError, match="1..3"):
        devices.parse("qemu-cortex-m4:4", 3)
    assert devices.parse("qemu-xtensa:2", 3) == ("xtensa", 2) and devices.parse(None, 3) is None
    assert cli.main(["fleet", "--clients", "2", "--devices", "cortex-m4"]) == 2
    assert "qemu-TARGET:K" in capsys.readouterr().err
