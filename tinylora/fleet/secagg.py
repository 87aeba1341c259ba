"""Secure aggregation: the fleet on Flower's SecAgg+ workflow (legacy-API app pair).

Flower 1.42 runs ``SecAggPlusWorkflow`` inside ``DefaultWorkflow`` with a ``LegacyContext`` and a
legacy ``Strategy``, and its ``secaggplus_mod`` reads the legacy FitRes, so these apps use that
API; the local training and the integer rule are the same as :mod:`tinylora.fleet.apps`.

Exactness: every client uploads its int16 masters with weight 1 (max_weight 1), and the
workflow is configured with clipping_range c = 32768 and quantization_range 65536, so its
quantizer ``(clip(x, -c, c) + c) * 65536 / (2 c)`` maps an integer to an exact integer (the
stochastic rounding never fires on integers) and the masked sum mod 2^32 is exact for fewer than
65536 clients. The server sees only the float mean S / n of the unmasked sum S; S = round(mean
* n) recovers it exactly (|S| < 2^31, far below float64's 2^53), and the integer rule of
:func:`tinylora.fleet.core.integer_mean` gives the same int16 masters as plain aggregation.
"""
from __future__ import annotations

import numpy as np
from flwr.client import ClientApp as LegacyClientApp
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server import ServerApp as LegacyServerApp
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from tinylora.fleet import apps
from tinylora.fleet.core import Fleet, FleetSpec, integer_mean, round_half_away

CLIP, QRANGE = 32768.0, 65536


class _Client(NumPyClient):
    def __init__(self, client: int, port: str = ""):
        self.client, self.port = client, port

    def fit(self, parameters, config):
        spec = FleetSpec.from_config(config)
        vec, _ = apps.local_update(apps.fleet_of(spec), self.client, round_half_away(parameters[0]),
                                   int(config["server-round"]), self.port)
        return [vec.astype(np.float64)], 1, {"client": self.client}


def _client_fn(context: Context):
    return _Client(int(context.node_config["partition-id"]), apps.device_port(context)).to_client()


client_app = LegacyClientApp(client_fn=_client_fn, mods=[secaggplus_mod])


class SecAggIntegerFedAvg(LegacyFedAvg):
    """Receives SecAgg+'s unmasked mean; applies the integer rule to the recovered sum."""

    def __init__(self, fleet: Fleet, rounds: list, on_round=None):
        spec = fleet.spec
        super().__init__(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=spec.clients,
                         min_available_clients=spec.clients, accept_failures=True,
                         initial_parameters=ndarrays_to_parameters([fleet.initial.astype(np.float64)]),
                         on_fit_config_fn=lambda rnd: dict(spec.to_config(), **{"server-round": rnd}),
                         evaluate_fn=self._evaluate)
        self.fleet, self.rounds, self.on_round, self.kept = fleet, rounds, on_round, 0
        self.masters = fleet.initial

    def aggregate_fit(self, server_round, results, failures):
        if not results:
            return None, {}
        n = len(results)
        mean = parameters_to_ndarrays(results[0][1].parameters)[0]   # all carry the aggregate
        self.masters = integer_mean(np.rint(np.asarray(mean, np.float64) * n).astype(np.int64), n)
        self.kept = n
        return ndarrays_to_parameters([self.masters.astype(np.float64)]), {}

    def _evaluate(self, server_round, parameters, config):
        vec = self.masters if server_round else self.fleet.initial
        entry = dict(round=server_round, accuracy=self.fleet.accuracy(vec))
        if server_round:
            entry.update(clients=self.kept, dropped=[], secagg=True)
        self.rounds.append(entry)
        if self.on_round:
            self.on_round(self.rounds)
        return 0.0, {"accuracy": entry["accuracy"]}


def run_secagg(grid, context: Context, spec: FleetSpec, timeout: float, on_round=None) -> dict:
    fleet, rounds = apps.fleet_of(spec), []
    strategy = SecAggIntegerFedAvg(fleet, rounds, on_round)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=spec.rounds), strategy=strategy)
    workflow = SecAggPlusWorkflow(num_shares=spec.clients, reconstruction_threshold=max(2, spec.clients - 1),
                                  max_weight=1.0, clipping_range=CLIP, quantization_range=QRANGE,
                                  timeout=timeout)
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    steps = spec.local_steps * sum(r.get("clients", 0) for r in rounds[1:])
    adapter = fleet.adapter(strategy.masters, steps).to_bytes()
    return dict(rounds=rounds, adapter_hex=adapter.hex(), adapter_bytes=len(adapter))


server_app = LegacyServerApp()


@server_app.main()
def main(grid, context: Context) -> None:
    cfg = context.run_config
    out = str(cfg.get("report", ""))
    write = (lambda data: apps.write_json(out, data)) if out else (lambda data: None)
    report = run_secagg(grid, context, FleetSpec.from_config(cfg), float(cfg.get("timeout", 60.0)),
                        on_round=lambda rounds: write(dict(rounds=rounds)))
    write(dict(report, final=True, flower_version=apps.flwr.__version__))
