"""`tinylora fleet`: federated LoRA over a local Flower deployment (the command's body)."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import pathlib
import tempfile

from tinylora.errors import FleetError, MissingDependencyError
from tinylora.fleet import devices, faults
from tinylora.fleet.core import Fleet, FleetSpec
from tinylora.fleet.deploy import LocalDeployment
from tinylora.fleet.privacy import epsilon
from tinylora.formats.adapter import Adapter


def require_flower() -> None:
    if importlib.util.find_spec("flwr") is None:
        raise MissingDependencyError("fleet learning runs on Flower, which is not installed: "
                         "pip install tinylora[fleet]")


def _round_line(r: dict) -> str:
    line = f"round {r['round']:3d}  accuracy {r['accuracy']:.4f}"
    if r.get("secagg") and r["round"]:
        return line + f"  ({r['clients']} clients, SecAgg+: the server saw only their sum)"
    if r["round"]:
        sent = ", ".join(f"client {c}: {b} B" for c, b in sorted(r["bytes_sent"].items(), key=lambda kv: int(kv[0])))
        line += f"  sent [{sent or 'nothing'}]"
        if r.get("devices"):
            line += f"  (on devices: {', '.join(f'client {c}' for c in r['devices'])})"
        for d in r["dropped"]:
            who = f"client {d['client']}" if d.get("client") is not None else f"node {d['node']}"
            line += f"\n           dropped {who}: {d['reason']}"
    return line


@contextlib.contextmanager
def _devices(spec: FleetSpec, on_devices: tuple[str, int] | None, tmp: str):
    """The QEMU devices of --devices (their serial ports), or none."""
    if not on_devices:
        yield []
        return
    with devices.qemu_devices(Fleet(spec), *on_devices, pathlib.Path(tmp) / "devices") as ports:
        yield ports


def run(args) -> int:
    """Parse-level checks, then the deployment; prints per round, --json last."""
    require_flower()
    spec = FleetSpec(task=args.task, clients=args.clients, rounds=args.rounds, seed=args.seed,
                     rank=args.rank, lr=args.lr, local_steps=args.local_steps, mode=args.mode,
                     dp_noise=args.dp_noise or 0.0, clip=args.clip or 0.0)
    faults.parse(args.faults)
    if args.secagg and (spec.dp or args.faults):
        raise FleetError("--secagg runs Flower's SecAgg+ workflow without --dp-noise/--clip and --faults "
                         "(docs/fleet.md): drop one of them")
    say = (lambda s: None) if args.json else print
    say(f"fleet: {spec.clients} clients, {spec.rounds} rounds, task {spec.task}, mode {spec.mode}, "
        f"{spec.local_steps} local steps per round (local Flower deployment)")
    on_devices = devices.parse(getattr(args, "devices", None), spec.clients)
    if on_devices and importlib.util.find_spec("serial") is None:
        raise MissingDependencyError("--devices talks to the devices over pyserial, which is not installed: "
                                     "pip install 'tinylora[device]'")
    if on_devices:
        say(f"clients 0..{on_devices[1] - 1}: the generated firmware under QEMU {on_devices[0]} (serial protocol)")
    try:
        with tempfile.TemporaryDirectory(prefix="tinylora-fleet-") as tmp, \
                _devices(spec, on_devices, tmp) as ports, \
                LocalDeployment(spec.clients, tmp, {i: f'device="{p}"' for i, p in enumerate(ports)}) as d:
            config = dict(spec.to_config(), timeout=float(args.round_timeout), faults=args.faults)
            report = d.run(config, on_round=lambda r: say(_round_line(r)),
                           module="tinylora.fleet.secagg" if args.secagg else "tinylora.fleet.apps")
    except KeyboardInterrupt:   # the deployment has stopped every process it started
        raise FleetError("interrupted: the fleet run stopped, and so did every Flower process it started") from None
    sent = [b for r in report["rounds"][1:] for b in r.get("bytes_sent", {}).values()]
    out = dict(engine="flower", flower_version=report["flower_version"],
               rounds=[{k: r[k] for k in ("round", "accuracy")} | {k: r[k] for k in ("bytes_sent", "dropped", "devices")
                                                                  if k in r} for r in report["rounds"]],
               bytes_per_client_round=max(sent) if sent else None, adapter_bytes=report["adapter_bytes"],
               secagg=bool(args.secagg))
    if spec.dp:
        out["dp"] = dict(noise_multiplier=spec.dp_noise, clip=spec.clip, delta=1e-5,
                         epsilon=epsilon(spec.dp_noise, spec.rounds))
        say(f"DP: noise multiplier {spec.dp_noise}, clip {spec.clip}: (epsilon {out['dp']['epsilon']:.3g}, "
            f"delta 1e-5) after {spec.rounds} rounds (RDP accountant, every client every round)")
    if args.out:
        Adapter.load(bytes.fromhex(report["adapter_hex"])).save(args.out)
        say(f"global adapter ({report['adapter_bytes']} bytes, adapter file format 2) -> {args.out}")
    if args.json:
        print(json.dumps(out))
    return 0
