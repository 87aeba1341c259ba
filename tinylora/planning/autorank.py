"""Choose per-layer LoRA ranks (and recomputation) that use a memory budget well.

Sensitivity of a candidate layer = the mean, over calibration samples, of the Frobenius norm
of the full weight gradient dL/dW (what a rank-r update approximates), measured by float
autodiff at the int8 model's own forward. Ranks then grow greedily, one step at a time, on
the layer whose step buys the most value per byte of arena, value = sum of
sensitivity * log2(1 + rank) (diminishing returns), for as long as the plan fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinylora.errors import BudgetError, ConfigError
from tinylora.planning.arena import ArenaPlan, plan_trainer
from tinylora.planning.boards import load_board
from tinylora.ref import lora
from tinylora.ref.config import rank_cap
from tinylora.ref.floatref import FloatLoRA
from tinylora.ref.layers import Reshape
from tinylora.ref.trainer import LoRAConfig, Trainer, short_name


@dataclass
class AutoRank:
    config: LoRAConfig
    recompute: str
    plan: ArenaPlan
    sensitivity: dict[int, float]
    explanation: str


def candidates(model) -> list[int]:
    """Layers that can carry an adapter with a backward path to the logits."""
    t = Trainer(model, LoRAConfig(rank=1))
    out = []
    for layer in model.layers[: t.logits_layer + 1]:
        if not lora.is_adaptable(layer):
            continue
        above = model.layers[layer.index + 1: t.logits_layer + 1]
        if all(isinstance(l, Reshape) or lora.is_adaptable(l) for l in above):
            out.append(layer.index)
    return out


def sensitivity(model, calibration, labels=None, layers=None) -> dict[int, float]:
    layers = layers or candidates(model)
    t = Trainer(model, LoRAConfig(rank=1, targets=tuple(layers)), calibration=calibration)
    x = np.asarray(calibration)
    if labels is None:
        labels = np.argmax(t.logits(x), axis=-1)
    f = FloatLoRA(t, 0.0)
    total = {i: 0.0 for i in layers}
    for xi, yi in zip(x, labels):
        collect = {}
        f.gradients_at(t.trace(xi, int(yi)), int(yi), collect)
        for i in layers:
            g, rows = collect[i]
            total[i] += float(np.linalg.norm(np.einsum("nrc,nrk->ck", g, rows)))
    return {i: v / max(len(x), 1) for i, v in total.items()}


def _cost(model, ranks: dict[int, int], recompute: str, opts: dict) -> int:
    t = Trainer(model, LoRAConfig(rank=dict(ranks), targets=tuple(sorted(ranks))),
                recompute=recompute, **opts)
    return plan_trainer(t).total_bytes


def auto_rank(model, budget: int | None = None, board: str | None = None, calibration=None,
              labels=None, max_rank: int = 16, **trainer_options) -> AutoRank:
    """Per-layer ranks and a recompute mode that fit `budget` (or the board's arena budget)."""
    source = "given"
    if board is not None:
        b = load_board(board)
        budget, source = b.arena_budget, f"{b.name} arena budget"
    if budget is None:
        budget, source = 512 * 1024, "default 512 KB"
    layers = candidates(model)
    if not layers:
        raise ConfigError("no layer of this model can carry a LoRA adapter (FULLY_CONNECTED or "
                          "1x1 CONV_2D with a backward path to the logits)")
    if calibration is None:
        raise ConfigError("auto_rank needs a few calibration samples (int8 inputs) to measure "
                          "layer sensitivity")
    sens = sensitivity(model, calibration, labels, layers)
    opts = {k: v for k, v in trainer_options.items() if k != "recompute"}
    caps = {i: min(max_rank, rank_cap(model.layers[i])) for i in layers}   # low-rank only
    best = None
    smallest = None
    for rc in ("none", "all"):
        ranks: dict[int, int] = {}
        cost = 0
        while True:
            options = []
            for i in layers:
                r = ranks.get(i, 0)
                if r >= caps[i]:
                    continue
                trial = {**ranks, i: r + 1}
                try:
                    c = _cost(model, trial, rc, opts)
                except ConfigError:
                    continue
                if smallest is None or c < smallest[0]:
                    smallest = (c, trial, rc)
                if c > budget:
                    continue
                gain = sens[i] * (math.log2(r + 2) - math.log2(r + 1))
                options.append((gain / max(c - cost, 1), -i, trial, c))
            if not options:
                break
            _, _, ranks, cost = max(options)
        if ranks:
            value = sum(sens[i] * math.log2(1 + r) for i, r in ranks.items())
            if best is None or value > best[0] + 1e-12:
                best = (value, ranks, rc, cost)
    if best is None:
        c, trial, rc = smallest
        raise BudgetError(f"no configuration fits {budget:,} B ({source}): the smallest, rank "
                          f"{list(trial.values())[0]} on layer {list(trial)[0]} with recompute "
                          f"{rc}, needs {c:,} B")
    _, ranks, rc, cost = best
    cfg = LoRAConfig(rank=dict(ranks), targets=tuple(sorted(ranks)))
    t = Trainer(model, cfg, recompute=rc, **opts)
    plan = plan_trainer(t, budget, source)
    lines = [f"sensitivity (mean ||dL/dW||_F over {len(calibration)} calibration samples):"]
    lines += [f"  layer {i} {short_name(model.layers[i].name)}: {sens[i]:.4g}" for i in layers]
    lines.append(f"chose ranks {dict(sorted(ranks.items()))} with recompute '{rc}': arena "
                 f"{plan.total_bytes:,} B of {budget:,} B ({source})")
    capped = [i for i in ranks if ranks[i] >= caps[i]]
    if capped:
        lines.append(f"  layers {capped} reached their rank cap (max_rank {max_rank}, or the "
                     "low-rank rule: rank <= ceil(min(in, out) / 4), adapter <= half the layer)")
    else:
        lines.append("  stopped where one more rank step would exceed the budget")
    return AutoRank(cfg, rc, plan, sens, "\n".join(lines))
