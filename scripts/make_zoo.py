"""Build the reference TinyML model zoo (tests/support/zoo.py) as .tflite files and report them.

    python scripts/make_zoo.py OUT_DIR [--twice] [--only NAME ...]

Writes OUT_DIR/<name>.tflite for each entry and prints one row per model: file size, build
time, params, MACs, TFLM's arena (print_allocations' "Arena allocation total" and "head",
the planned activations) and the ops with
their counts. ``--twice`` converts every entry a second time and fails unless the bytes are
identical (the zoo must be reproducible).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.support import zoo  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--twice", action="store_true", help="convert twice, require identical bytes")
    ap.add_argument("--only", nargs="*", default=None, help="entries to build (default: all)")
    args = ap.parse_args(argv)
    names = args.only or list(zoo.MODELS)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    rows = []
    failed = False
    for name in names:
        t = time.perf_counter()
        data = zoo.convert(name)
        dt = time.perf_counter() - t
        (args.out_dir / f"{name}.tflite").write_bytes(data)
        if args.twice and zoo.convert(name) != data:
            print(f"{name}: NOT reproducible (two conversions differ)", file=sys.stderr)
            failed = True
        d = zoo.describe(data)
        arena = zoo.tflm_arena(data)
        ops = ", ".join(f"{k} x{v}" for k, v in d["ops"].items())
        rows.append((name, len(data), dt, d["params"], d["macs"], arena["total"], arena["head"],
                     ops))
    print("| model | .tflite bytes | build s | params | MACs | TFLM arena total B | head B | ops |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} |")
    print(f"total build time {time.perf_counter() - total:.1f} s for {len(names)} models"
          + (" (each converted twice)" if args.twice else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
