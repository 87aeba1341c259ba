"""Fleet (federated) LoRA on Flower: integer aggregation to the bit, non-IID client data, the
apps through Flower's strategy and DP wrappers, and a real local deployment with bad clients."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from support import procs

import tinylora
from tinylora import cli, tasks
from tinylora.errors import ConfigError, FleetError, MissingDependencyError
from tinylora.fleet import apps, command, deploy, faults, privacy, secagg
from tinylora.fleet.core import Fleet, FleetSpec, aggregate, round_half_away
from tinylora.fleet.local import InProcessGrid
from tinylora.formats.adapter import Adapter

SMALL = dict(task="remap", clients=3, local_steps=12, lr=0.05)


@pytest.fixture(scope="module")
def fleet():
    return Fleet(FleetSpec(rounds=2, **SMALL))


def test_aggregate_is_the_stated_integer_rule():
    # weights 1 and 2: (1*u0 + 2*u1) / 3, halves away from zero, saturated to int16
    u0 = np.array([1, -1, 0, 32767, -32768, 2], np.int16)
    u1 = np.array([1, -2, 1, 32767, -32768, -1], np.int16)
    got = aggregate([(u0, 1), (u1, 2)])
    # sums 3, -5, 2, 98301, -98304, 0 over W = 3: 1, -1.67 -> -2, 0.67 -> 1, 32767, -32768, 0
    assert got.dtype == np.int16
    assert got.tolist() == [1, -2, 1, 32767, -32768, 0]
    # exact halves: (1 + 0) / 2 = 0.5 -> 1 and (-1 + 0) / 2 -> -1 (away from zero)
    assert aggregate([(np.array([1, -1]), 1), (np.array([0, 0]), 1)]).tolist() == [1, -1]
    assert round_half_away([0.5, -0.5, 1.49, -2.5]).tolist() == [1, -1, 1, -3]
    with pytest.raises(ConfigError, match="no client sent a valid update"):
        aggregate([])


def test_fleet_task_is_non_iid_disjoint_and_seeded():
    t = tasks.fleet_task("sensor", 8, seed=3)
    again = tasks.fleet_task("sensor", 8, seed=3)
    assert len(t["shards"]) == 8
    for c, ((x, y), (x2, y2)) in enumerate(zip(t["shards"], again["shards"])):
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
        assert set(np.unique(y)) <= set(tasks.client_classes(c))   # label skew
    total = sum(len(y) for _, y in t["shards"])
    assert total == len(tinylora.datasets.digits_split(3)["y_train"])
    # each client's sensor differs: the same digit through two clients' gain patterns
    x0 = tasks._client_sensor(t["x_orig"][:1], 3, 0)
    x1 = tasks._client_sensor(t["x_orig"][:1], 3, 1)
    assert not np.array_equal(x0, x1)
    with pytest.raises(tinylora.TinyLoRAError, match="at least 1 client"):
        tasks.fleet_task("remap", 0)


def test_ffa_freezes_a_and_federates_b_only(fleet):
    t0 = fleet.trainer()
    a0 = {i: ad.a_master.copy() for i, ad in t0.adapters.items()}
    vec, n = fleet.local_round(0, fleet.initial, 1)
    assert n == len(fleet.data["shards"][0][1])
    b_size = sum(ad.b_master.size for ad in t0.adapters.values())
    assert vec.shape == (b_size,) and np.any(vec != 0)            # B learned
    t = fleet.load(fleet.trainer(), vec)
    assert all(np.array_equal(ad.a_master, a0[i]) for i, ad in t.adapters.items())   # A frozen
    both = Fleet(FleetSpec(rounds=1, mode="both", **SMALL))
    v2, _ = both.local_round(0, both.initial, 1)
    a_size = sum(ad.a_master.size for ad in t0.adapters.values())
    assert v2.shape == (a_size + b_size,)
    assert not np.array_equal(v2[:a_size], both.initial[:a_size])   # "both" moves A


def test_update_checks_name_the_problem(fleet):
    vec = fleet.initial
    assert fleet.check_update(vec, fleet.header) is None
    assert "truncated" in fleet.check_update(vec[:-3], fleet.header)
    other = fleet.header[:12] + bytes(32) + fleet.header[44:]
    assert "another base model" in fleet.check_update(vec, other)
    other_cfg = fleet.header[:66] + b"\x07\x00" + fleet.header[68:]   # layer 0's rank field
    assert "config" in fleet.check_update(vec, other_cfg)
    assert "non-finite" in fleet.check_update(vec.astype(np.float32) * np.inf, fleet.header)
    with pytest.raises(ConfigError, match="CLIENT:ROUND:KIND"):
        faults.parse("1:1:explode")


def test_apps_round_equals_the_integer_rule_to_the_bit(fleet):
    """ServerApp + ClientApp through Flower's FedAvg plumbing == core.aggregate by hand."""
    spec = fleet.spec
    report = apps.run_rounds(InProcessGrid(spec.clients), spec, 10.0, "1:2:raise")
    g = fleet.initial
    for rnd, who in ((1, (0, 1, 2)), (2, (0, 2))):
        g = aggregate([fleet.local_round(c, g, rnd) for c in who])
    adapter = Adapter.load(bytes.fromhex(report["adapter_hex"]))
    assert adapter.to_bytes() == fleet.adapter(g, updates=5 * spec.local_steps).to_bytes()
    r2 = report["rounds"][2]
    assert r2["clients"] == [0, 2] and "injected fault" in r2["dropped"][0]["reason"]
    assert report["rounds"][2]["accuracy"] == fleet.accuracy(g)


def test_dp_through_flower_wrappers_is_seeded_and_integer():
    spec = FleetSpec(rounds=1, dp_noise=0.8, clip=500.0, **SMALL)
    a = apps.run_rounds(InProcessGrid(spec.clients), spec, 10.0)
    b = apps.run_rounds(InProcessGrid(spec.clients), spec, 10.0)
    assert a["adapter_hex"] == b["adapter_hex"]        # numpy's generator is seeded per run
    f = Fleet(spec)
    g = Adapter.load(bytes.fromhex(a["adapter_hex"]))
    b_masters = np.concatenate([l["b"].reshape(-1) for l in g.layers])
    # each update clipped to L2 <= 500 master units, mean of 3 + noise of sd 0.8*500/3 per entry
    plain = aggregate([f.local_round(c, f.initial, 1) for c in range(3)])
    assert np.linalg.norm(plain) > 500                  # clipping matters here
    assert np.std(b_masters.astype(float)) < 3 * 0.8 * 500 / 3 + 500 / math.sqrt(len(b_masters)) * 3
    assert a["rounds"][1]["bytes_sent"][0] == 4 * len(b_masters) + 128 + len(f.header)


def test_secagg_plus_aggregate_equals_the_plain_integer_aggregate():
    """Flower's SecAgg+ workflow (masking, key shares, unmasking) on the same updates gives the
    plain integer rule's masters to the bit (uniform weights; see tinylora/fleet/secagg.py)."""
    spec = FleetSpec(rounds=2, **SMALL)
    grid = InProcessGrid(spec.clients, client_app=secagg.client_app)
    ctx = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    report = secagg.run_secagg(grid, ctx, spec, 30.0)
    f = Fleet(spec)
    g = f.initial
    for rnd in (1, 2):
        g = aggregate([(f.local_round(c, g, rnd)[0], 1) for c in range(spec.clients)])
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    assert all(r["clients"] == 3 for r in report["rounds"][1:])
    assert report["adapter_hex"] == f.adapter(g, 2 * 3 * spec.local_steps).to_bytes().hex()
    assert report["rounds"][2]["accuracy"] == f.accuracy(g)


def test_secagg_refuses_dp_and_faults(capsys):
    assert cli.main(["fleet", "--secagg", "--dp-noise", "1", "--clip", "100"]) == 2
    assert "--secagg" in capsys.readouterr().err


def test_round_lines_name_bytes_and_dropped_clients():
    line = command._round_line(dict(round=2, accuracy=0.5, bytes_sent={"0": 920, "2": 920},
                                    dropped=[dict(node=7, client=1, reason="update has 3 masters")]))
    assert "round   2  accuracy 0.5000" in line and "client 0: 920 B, client 2: 920 B" in line
    assert "dropped client 1: update has 3 masters" in line
    assert command._round_line(dict(round=0, accuracy=0.25)) == "round   0  accuracy 0.2500"


def test_epsilon_from_the_rdp_accountant():
    e1, e2 = privacy.epsilon(1.0, 10), privacy.epsilon(2.0, 10)
    assert 0 < e2 < e1 < math.inf
    # the classic Gaussian RDP bound (Mironov 2017): eps <= min_a R a / (2 s^2) + log(1/d) / (a - 1)
    classic = min(10 * a / 2 + math.log(1e5) / (a - 1) for a in np.linspace(1.01, 64, 5000))
    assert 0.5 * classic < e1 <= classic
    assert privacy.epsilon(1.0, 10, sampling_rate=0.1) < e1   # sampling amplifies privacy


def test_missing_flower_is_a_clear_error(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a))
    assert cli.main(["fleet", "--clients", "2"]) == 2
    assert "pip install tinylora[fleet]" in capsys.readouterr().err
    with pytest.raises(MissingDependencyError):
        command.require_flower()


def test_fleet_command_on_a_local_deployment(tmp_path, capsys):
    """SuperLink + 3 SuperNodes, client 0 the generated firmware under QEMU Cortex-M4: a client
    raising, a truncated update, a wrong-model update and a stalled client; the rounds complete
    with the others, the adapter is the integer rule's (the device's updates are the numpy
    client's), and no process is left (Flower's nor QEMU)."""
    out = tmp_path / "global.tla"
    rc = cli.main(["fleet", "--clients", "3", "--rounds", "2", "--task", "remap", "--local-steps", "12",
                   "--lr", "0.05", "--round-timeout", "25", "--out", str(out), "--json",
                   "--devices", "qemu-cortex-m4:1",
                   "--faults", "1:1:raise,2:1:truncate,1:2:stall,2:2:wrong-model"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["engine"] == "flower" and res["flower_version"].startswith("1.")
    assert [r["round"] for r in res["rounds"]] == [0, 1, 2]
    assert 0 < res["bytes_per_client_round"] < 1024
    r1, r2 = res["rounds"][1], res["rounds"][2]
    assert sorted(r1["bytes_sent"]) == ["0"] and sorted(r2["bytes_sent"]) == ["0"]
    assert r1["devices"] == [0] and r2["devices"] == [0]
    reasons = " | ".join(d["reason"] for d in r1["dropped"] + r2["dropped"])
    for expected in ("injected fault", "truncated", "no reply before the round timeout", "another base model"):
        assert expected in reasons
    fleet = Fleet(FleetSpec(rounds=2, **SMALL))
    g = fleet.initial
    for rnd in (1, 2):
        g = aggregate([fleet.local_round(0, g, rnd)])
    assert out.read_bytes() == fleet.adapter(g, updates=2 * 12).to_bytes()
    Adapter.load(out).check(fleet.model)
    assert res["rounds"][2]["accuracy"] == fleet.accuracy(g)
    assert _fleet_pids() == [] and procs.qemu_pids("tinylora-fleet-") == []


def test_a_failed_run_leaves_no_process(tmp_path):
    spec = FleetSpec(rounds=50, **SMALL)
    with pytest.raises(FleetError, match="did not finish within 1 s"):
        with deploy.LocalDeployment(0, tmp_path) as d:    # a SuperLink alone: the run cannot finish
            assert len(deploy.marked_pids(d.run_id)) >= 1
            d.run(dict(spec.to_config(), timeout=60.0, faults=""), timeout=1.0)
    assert deploy.marked_pids(d.run_id) == [] and all(p.poll() is not None for p in d.procs)


def _fleet_pids() -> list[int]:
    """Every process carrying a fleet deployment's marker (any run)."""
    return procs.pids_where(lambda cmd, env: any(v.startswith(deploy.MARKER.encode() + b"=") for v in env))
