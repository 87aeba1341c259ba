"""The Flower ServerApp / ClientApp pair (Flower's Message API, flwr >= 1.42).

What crosses the network: one int16 Array "masters", the federated slice of the adapter file's
payload (B of every adapted layer for FFA-LoRA; A and B for mode "both"), plus the base model's
SHA-256 in the reply's ConfigRecord. Under DP the same integers travel as float32 (exact for
int16), because Flower's clipping mod scales the update in floating point; the server rounds
every update back to integers (half away from zero) before the integer aggregation of
:mod:`tinylora.fleet.core`, and rounds the noised aggregate back to int16 masters.

Run with ``tinylora fleet`` (a local deployment), ``flwr run`` against any SuperLink
(docs/fleet.md), or ``flwr.simulation.run_simulation(server_app, client_app, N)``.
"""
from __future__ import annotations

import json
import os
import time

import flwr
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

from tinylora.fleet import devices, faults
from tinylora.fleet.core import Fleet, FleetSpec, aggregate, round_half_away

_FLEETS: dict[FleetSpec, Fleet] = {}   # per process: a ClientApp process serves many rounds


def fleet_of(spec: FleetSpec) -> Fleet:
    if spec not in _FLEETS:
        _FLEETS[spec] = Fleet(spec)
    return _FLEETS[spec]


def _wire(vec, spec: FleetSpec) -> ArrayRecord:
    return ArrayRecord({"masters": Array(np.asarray(vec, np.float32 if spec.dp else np.int16))})


# --------------------------------------------------------------------------- client


def dp_mod(msg: Message, ctxt: Context, call_next):
    """Flower's fixedclipping_mod when the server asks for clipping (DP runs), else a no-op."""
    if "clipping_norm" in msg.content["config"]:
        return fixedclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


client_app = ClientApp(mods=[dp_mod])


def device_port(context: Context) -> str:
    """The serial port of the node's device (node config ``device``), "" for a numpy client."""
    return str(context.node_config.get("device", ""))


def local_update(fleet: Fleet, client: int, vec, rnd: int, port: str = "") -> tuple[np.ndarray, int]:
    """One client's round: on the device at ``port`` (tinylora.fleet.devices), else the numpy Trainer."""
    if port:
        return devices.local_round(port, fleet, client, vec, rnd)
    return fleet.local_round(client, vec, rnd)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = msg.content["config"]
    spec = FleetSpec.from_config(cfg)
    client, rnd = int(context.node_config["partition-id"]), int(cfg["server-round"])
    fleet = fleet_of(spec)
    incoming = msg.content["arrays"]["masters"].numpy()
    port = device_port(context)
    vec, n = local_update(fleet, client, round_half_away(incoming), rnd, port)
    vec, header = faults.apply(str(cfg.get("faults", "")), client, rnd, vec, fleet.header)
    content = RecordDict({"arrays": _wire(vec, spec),
                          "metrics": MetricRecord({"num-examples": max(n, 1), "client": client}),
                          "meta": ConfigRecord({"adapter-header": header, "client": client,
                                                  "trained-on": "device" if port else "numpy"})})
    return Message(content=content, reply_to=msg)


# --------------------------------------------------------------------------- server


class IntegerFedAvg(FedAvg):
    """FedAvg whose aggregation is the integer weighted mean of tinylora.fleet.core."""

    def __init__(self, spec: FleetSpec):
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=spec.clients,
                         min_available_nodes=spec.clients)
        self.spec = spec

    def aggregate_train(self, server_round, replies):
        ups = []
        for r in replies:
            v = round_half_away(r.content["arrays"]["masters"].numpy())
            ups.append((v, 1 if self.spec.dp else int(r.content["metrics"]["num-examples"])))
        mean = aggregate(ups)
        return _wire(mean, self.spec), MetricRecord({"clients": len(ups)})


def _bytes_sent(reply: Message) -> int:
    """The update's bytes: the serialised int16 (or float32) Array and the adapter header."""
    return len(reply.content["arrays"]["masters"].data) + len(reply.content["meta"]["adapter-header"])


def _last_line(text: str) -> str:
    """The useful end of a remote traceback (Flower forwards the whole text)."""
    lines = [l.strip(" '>\"") for l in str(text).splitlines() if l.strip(" '>\"")]
    return (lines[-1] if lines else str(text))[-240:]


def _screen(fleet: Fleet, replies, sent: dict[int, int]) -> tuple[list, list[dict]]:
    """Split the replies into aggregatable ones and dropped clients (with the reason)."""
    good, dropped, seen = [], [], set()
    for r in replies:
        node = r.metadata.src_node_id
        seen.add(node)
        if r.has_error():
            dropped.append(dict(node=node, reason=f"client failed: {_last_line(r.error.reason)}"))
            continue
        try:
            meta = r.content["meta"]
            values = r.content["arrays"]["masters"].numpy()
            why = fleet.check_update(values, meta["adapter-header"])
        except (KeyError, ValueError, TypeError) as e:
            why, meta = f"malformed update ({type(e).__name__}: {e})", {}
        if why:
            dropped.append(dict(node=node, client=meta.get("client"), reason=why))
        else:
            good.append(r)
    dropped += [dict(node=n, reason="no reply before the round timeout") for n in sent if n not in seen]
    return good, dropped


def run_rounds(grid: Grid, spec: FleetSpec, timeout: float, faults_spec: str = "", on_round=None) -> dict:
    """R rounds with held-out accuracy after each; returns the report (also for --json).
    on_round(rounds so far) after round 0 and each round."""
    fleet = fleet_of(spec)
    np.random.seed(spec.seed)   # Flower's DP noise comes from numpy's global generator
    inner = IntegerFedAvg(spec)
    strategy = inner if not spec.dp else DifferentialPrivacyClientSideFixedClipping(
        inner, spec.dp_noise, spec.clip, spec.clients)
    vec = fleet.initial
    rounds = [dict(round=0, accuracy=fleet.accuracy(vec))]
    if on_round:
        on_round(rounds)
    for rnd in range(1, spec.rounds + 1):
        t0 = time.perf_counter()
        config = ConfigRecord({**spec.to_config(), "faults": faults_spec})
        messages = list(strategy.configure_train(rnd, _wire(vec, spec), config, grid))
        sent = {m.metadata.dst_node_id: 1 for m in messages}
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        good, dropped = _screen(fleet, replies, sent)
        if good:
            agg, _ = strategy.aggregate_train(rnd, good)
            if agg is not None:
                vec = np.clip(round_half_away(agg["masters"].numpy()), -32768, 32767).astype(np.int16)
        sizes = {int(r.content["meta"]["client"]): _bytes_sent(r) for r in good}
        on_device = sorted(int(r.content["meta"]["client"]) for r in good
                           if r.content["meta"].get("trained-on") == "device")
        rounds.append(dict(round=rnd, accuracy=fleet.accuracy(vec), clients=sorted(sizes), devices=on_device,
                           bytes_sent=sizes, dropped=dropped, seconds=round(time.perf_counter() - t0, 2)))
        if on_round:
            on_round(rounds)
    steps = spec.local_steps * sum(len(r["clients"]) for r in rounds[1:])
    adapter = fleet.adapter(vec, steps).to_bytes()
    return dict(rounds=rounds, adapter_hex=adapter.hex(), adapter_bytes=len(adapter))


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    out = str(cfg.get("report", ""))
    write = (lambda data: write_json(out, data)) if out else (lambda data: None)
    report = run_rounds(grid, FleetSpec.from_config(cfg), float(cfg.get("timeout", 60.0)),
                        str(cfg.get("faults", "")), on_round=lambda rounds: write(dict(rounds=rounds)))
    write(dict(report, final=True, flower_version=flwr.__version__))


def write_json(path: str, data: dict) -> None:
    """Atomically (the deployment polls the file while the run goes on)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
