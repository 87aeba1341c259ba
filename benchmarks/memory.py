"""Memory of a training step: the static arena plans of issue 4, against inference and TFLM.

    python benchmarks/memory.py

For the bundled digits CNN (default LoRAConfig, rank 3 on both FULLY_CONNECTED layers):
training-step arena and its lower bound with recompute none / all / auto, the inference-only
arena from the same planner, TFLM's own arena for the same model (the tflite-micro
interpreter's print_allocations(): head = activations, tail = TFLM's persistent bookkeeping),
the checkpoint size, and auto-rank's choice for each budget.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import tinylora
from tinylora import LoRAConfig, Trainer, tasks
from tinylora.planning.arena import checked_plan, inference_plan
from tinylora.planning.autorank import auto_rank

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def tflm_figures(model_bytes: bytes) -> dict[str, int]:
    from support.oracles import tflm_arena_report
    text = tflm_arena_report(model_bytes)
    return {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}


def main() -> None:
    path = tinylora.example_model()
    model = tinylora.load_tflite(path)
    task = tasks.task("sensor")
    calib = model.quantize(task["x_train"][:32])
    rows = []
    for rc in ("none", "all", "auto"):
        t = Trainer(model, LoRAConfig(), recompute=rc, calibration=calib)
        p = checked_plan(t)
        rows.append((f"training step, recompute {rc} ({t.recompute})", p.total_bytes, p.lower_bound_bytes,
                     f"persistent {p.persistent_bytes}, scratch {p.scratch_bytes}"))
    inf = inference_plan(model)
    rows.append(("inference only (same planner)", inf.total_bytes, inf.lower_bound_bytes, "activations"))
    tf = tflm_figures(path.read_bytes())
    rows.append(("TFLM interpreter, same model", tf.get("total", -1), None,
                 f"head {tf.get('head')} (activations), tail {tf.get('tail')} (TFLM bookkeeping)"))
    print(f"bundled model {path.name}: frozen weights and constants in flash "
          f"{tinylora.plan(model).flash_bytes:,} B\n")
    print(f"{'arena':45s} {'bytes':>8s} {'lower bound':>12s} {'ratio':>6s}  detail")
    for name, total, lb, detail in rows:
        ratio = f"{total / lb:.3f}" if lb else "-"
        print(f"{name:45s} {total:8,d} {'-' if lb is None else f'{lb:,}':>12s} {ratio:>6s}  {detail}")
    t = Trainer(model, LoRAConfig(), calibration=calib)
    print(f"\ncheckpoint of the default configuration: {len(t.checkpoint())} B (limit 1024)")
    print("\nauto-rank (sensitivity from 32 calibration samples):")
    for kb in (16, 32, 64, 128, 512):
        r = auto_rank(model, budget=kb * 1024, calibration=calib, labels=task["y_train"][:32])
        print(f"  {kb:4d} KB: ranks {dict(sorted(r.config.rank.items()))}, recompute {r.recompute}, "
              f"arena {r.plan.total_bytes:,} B")
    smallest = None
    for budget in range(256, 4096, 16):
        try:
            auto_rank(model, budget=budget, calibration=calib)
            smallest = budget
            break
        except tinylora.BudgetError as e:
            last_error = str(e)
    print(f"  smallest budget auto-rank can fill: {smallest:,} B; below it: {last_error}")


if __name__ == "__main__":
    main()
