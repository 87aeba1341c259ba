"""Device clients of a fleet (issue 14): the generated firmware under QEMU trains one client's
round over the serial protocol; time per round next to the numpy client, and whether the two
updates are the same bytes.

    python benchmarks/fleet_devices.py                 # sensor, 8 clients, 32 local steps
    python benchmarks/fleet_devices.py --local-steps 64

Per QEMU target: the time to generate and build the fleet's firmware, one device round (push
the global adapter, 32 S lines, pull), the numpy client's round on the same samples, and
"equal": the two updates byte for byte (must be yes).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tinylora.fleet import devices
from tinylora.fleet.core import Fleet, FleetSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="sensor")
    ap.add_argument("--local-steps", type=int, default=32)
    args = ap.parse_args()
    fleet = Fleet(FleetSpec(task=args.task, clients=8, local_steps=args.local_steps))
    print(f"task {args.task}, 8 clients, {args.local_steps} local steps, client 0, round 1")
    print(f"{'target':10s}  {'firmware':>8s}  {'device round':>12s}  {'numpy round':>11s}  equal")
    for target in devices.TARGETS:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            with devices.qemu_devices(fleet, target, 1, Path(tmp)) as ports:
                built = time.perf_counter() - t0
                t0 = time.perf_counter()
                got, _ = devices.local_round(ports[0], fleet, 0, fleet.initial, 1)
                on_device = time.perf_counter() - t0
        t0 = time.perf_counter()
        want, _ = fleet.local_round(0, fleet.initial, 1)
        in_numpy = time.perf_counter() - t0
        same = "yes" if got.tobytes() == want.tobytes() else "NO"
        print(f"{target:10s}  {built:7.1f}s  {on_device:11.2f}s  {in_numpy:10.2f}s  {same}")
        if not np.array_equal(got, want):
            raise SystemExit(f"{target}: the device's update differs from numpy's")


if __name__ == "__main__":
    main()
