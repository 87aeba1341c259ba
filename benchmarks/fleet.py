"""Fleet (federated) LoRA: accuracy by round vs each device alone vs all data pooled. Prints tables.

    python benchmarks/fleet.py                 # 2 tasks x 8 clients, DP at two noise levels, 100-client simulation
    python benchmarks/fleet.py --quick         # fewer rounds, no simulation
    python benchmarks/fleet.py --sim-clients 0 # skip the Flower simulation-engine run

Same budget of local steps everywhere: a federated client runs `--local-steps` SGD steps per
round; "alone" trains one device for rounds x local-steps steps on its own shard (mean, min and
max accuracy over the devices); "pooled" trains one model for clients x rounds x local-steps
steps on the union of the shards (the upper bound; best of three learning rates). All
accuracies are on the same held-out set (every client's domain). The federated runs go through
the real ServerApp / ClientApp code on an in-process Flower Grid; the large run uses Flower's
simulation engine (ray).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import numpy as np
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation

from tinylora.fleet import apps
from tinylora.fleet.core import Fleet, FleetSpec
from tinylora.fleet.local import InProcessGrid
from tinylora.fleet.privacy import epsilon


def federated(spec: FleetSpec) -> tuple[list[float], int]:
    report = apps.run_rounds(InProcessGrid(spec.clients), spec, 60.0)
    sent = max(b for r in report["rounds"][1:] for b in r["bytes_sent"].values())
    return [r["accuracy"] for r in report["rounds"]], sent


def alone(spec: FleetSpec, fleet: Fleet) -> list[float]:
    """Each device trains its own adapter for the whole budget; accuracy per device."""
    out = []
    for c in range(spec.clients):
        g = fleet.initial
        for rnd in range(1, spec.rounds + 1):
            g, _ = fleet.local_round(c, g, rnd)
        out.append(fleet.accuracy(g))
    return out


def pooled(spec: FleetSpec) -> tuple[float, float]:
    """One model on the union of the shards, best of lr, lr/4, lr/16 (one model takes sequential
    steps, the fleet averages): (accuracy, its lr)."""
    best = (-1.0, 0.0)
    for lr in (spec.lr, spec.lr / 4, spec.lr / 16):
        fleet = Fleet(dataclasses.replace(spec, lr=lr))
        x = np.concatenate([s[0] for s in fleet.data["shards"]])
        y = np.concatenate([s[1] for s in fleet.data["shards"]])
        steps = spec.clients * spec.rounds * spec.local_steps
        idx = np.random.default_rng(spec.seed).permutation(np.resize(np.arange(len(y)), steps))
        t = fleet.load(fleet.trainer(), fleet.initial)
        t.fit(fleet.model.quantize(x[idx]), y[idx], shuffle=False)
        best = max(best, (float(np.mean(t.predict(fleet.x_test) == fleet.data["y_test"])), lr))
    return best


def _curve(accs: list[float]) -> str:
    return " ".join(f"{100 * a:.1f}" for a in accs)


def task_table(task: str, args) -> None:
    base = dict(task=task, clients=args.clients, rounds=args.rounds, seed=args.seed,
                local_steps=args.local_steps)
    ffa = FleetSpec(mode="ffa", lr=args.lr_ffa, rank=args.rank, **base)
    boths = [FleetSpec(mode="both", lr=args.lr_both, rank=r, **base) for r in args.both_ranks]
    print(f"\n## task {task}: {args.clients} clients, {args.rounds} rounds x {args.local_steps} local steps, "
          f"seed {args.seed}; accuracy % on the held-out set, by round (0 = base)")
    rows = []
    for name, spec in [(f"federated FFA-LoRA rank {ffa.rank} (A frozen, B averaged)", ffa)] + [
            (f"federated rank {b.rank}, A and B averaged separately", b) for b in boths]:
        t0 = time.perf_counter()
        accs, sent = federated(spec)
        rows.append((name, f"lr {spec.lr:g}", _curve(accs), f"{sent} B", f"{time.perf_counter() - t0:.0f} s"))
    for noise in args.dp_noise:
        spec = FleetSpec(mode="ffa", lr=args.lr_ffa, rank=args.rank, dp_noise=noise, clip=args.clip, **base)
        accs, sent = federated(spec)
        eps = epsilon(noise, spec.rounds)
        rows.append((f"FFA + DP sigma {noise:g}, clip {args.clip:g} (eps {eps:.3g} at delta 1e-5)",
                     f"lr {spec.lr:g}", _curve(accs), f"{sent} B", ""))
    for spec in [ffa] + boths[-1:]:
        fleet = Fleet(spec)
        a = alone(spec, fleet)
        rows.append((f"each device alone ({spec.mode}, rank {spec.rank}): mean [min, max]", f"lr {spec.lr:g}",
                     f"{100 * np.mean(a):.1f} [{100 * min(a):.1f}, {100 * max(a):.1f}]", "0 B", ""))
        acc, lr = pooled(spec)
        rows.append((f"pooled, one model on all data ({spec.mode}, rank {spec.rank}), best lr", f"lr {lr:g}",
                     f"{100 * acc:.1f}", "-", ""))
    header = ("run", "lr", "accuracy % by round", "bytes/client/round", "time")
    widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(len(header))]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)), flush=True)


def simulation(args) -> None:
    """>= 100 clients on Flower's simulation engine (ray)."""
    spec = FleetSpec(task="sensor", clients=args.sim_clients, rounds=args.sim_rounds, seed=args.seed,
                     local_steps=args.sim_steps, lr=args.lr_ffa, rank=args.rank)
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    app = ServerApp()

    @app.main()
    def main(grid, context):
        with open(out, "w") as f:
            json.dump(apps.run_rounds(grid, spec, 3600.0), f)

    t0 = time.perf_counter()
    run_simulation(app, apps.client_app, num_supernodes=spec.clients,
                   backend_config={"client_resources": {"num_cpus": 1}})
    wall = time.perf_counter() - t0
    with open(out) as f:
        report = json.load(f)
    accs = [r["accuracy"] for r in report["rounds"]]
    kept = [len(r["clients"]) for r in report["rounds"][1:]]
    print(f"\n## Flower simulation engine: {spec.clients} clients (task sensor, {spec.rounds} rounds x "
          f"{spec.local_steps} local steps, FFA-LoRA lr {spec.lr:g})\naccuracy % by round: {_curve(accs)}; "
          f"clients aggregated per round: {kept}; wall time {wall:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-steps", type=int, default=32)
    ap.add_argument("--rank", type=int, default=8, help="FFA-LoRA rank")
    ap.add_argument("--both-ranks", type=int, nargs="+", default=[2, 4], help="ranks of the A-and-B runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr-ffa", type=float, default=0.2)
    ap.add_argument("--lr-both", type=float, default=0.05)
    ap.add_argument("--dp-noise", type=float, nargs="*", default=[0.5, 1.0])
    ap.add_argument("--clip", type=float, default=20000.0,
                    help="DP clipping norm, int16 master units (a round's update norms: about 2e4 to 5e4)")
    ap.add_argument("--sim-clients", type=int, default=100)
    ap.add_argument("--sim-rounds", type=int, default=3)
    ap.add_argument("--sim-steps", type=int, default=8)
    ap.add_argument("--tasks", nargs="*", default=["sensor", "remap"], help="none: only the simulation")
    ap.add_argument("--quick", action="store_true", help="4 rounds, no simulation")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.sim_clients = 4, 0
    for task in args.tasks:
        task_table(task, args)
    if args.sim_clients:
        simulation(args)


if __name__ == "__main__":
    main()
