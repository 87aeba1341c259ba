"""What to train: :class:`LoRAConfig` (rank, alpha, target layers) and the recompute modes."""
from __future__ import annotations

from dataclasses import dataclass

from tinylora.errors import ConfigError
from tinylora.ref.layers import Layer

RECOMPUTE_MODES = ("none", "all", "auto")

#: The default rank rule (``LoRAConfig(rank=None)``): rank DEFAULT_RANK, lowered per layer until
#: rank <= ceil(min(in, out) / RANK_DIVISOR) and the adapter's r * (in + out) parameters are at
#: most PARAM_SHARE of the layer's in * out weights; never below 1. A rank near min(in, out) is
#: not low-rank: it costs as much state as the layer it adapts.
DEFAULT_RANK = 3
RANK_DIVISOR = 4
PARAM_SHARE = 0.5


def rank_cap(layer: Layer) -> int:
    """The largest low-rank rank of ``layer`` (FULLY_CONNECTED or 1x1 CONV_2D): at most
    ceil(min(in, out) / RANK_DIVISOR), with r * (in + out) <= PARAM_SHARE * in * out; >= 1.
    The default rank and auto-rank's ceiling."""
    c_out, depth = int(layer.weights.shape[0]), int(layer.weights.shape[-1])
    r = -(-min(depth, c_out) // RANK_DIVISOR)
    while r > 1 and r * (depth + c_out) > PARAM_SHARE * depth * c_out:
        r -= 1
    return max(r, 1)


def default_rank(layer: Layer) -> int:
    """The rank the default rule gives ``layer``: DEFAULT_RANK within :func:`rank_cap`."""
    return min(DEFAULT_RANK, rank_cap(layer))


@dataclass(frozen=True)
class LoRAConfig:
    """Where adapters go and how big they are.

    rank:    an int for every target, or {layer name or index: rank} for per-layer ranks;
             default None: the default rule (:func:`default_rank`: 3, lowered where the layer
             is too small for rank 3 to be low-rank).
    alpha:   LoRA's alpha (the adapter output is scaled by alpha / rank); default rank.
    targets: layer names or indices; default: every FULLY_CONNECTED layer. 1x1 CONV_2D
             layers may be named too (the same math per pixel).
    loss:    "xent" (class labels) or "mse" (int8 targets in the model's output space);
             default: "xent" when the model ends in SOFTMAX, otherwise tinylora asks.
    """
    rank: int | dict | None = None
    alpha: float | None = None
    targets: tuple | None = None
    loss: str | None = None     # "xent" | "mse"; None: inferred (SOFTMAX last -> "xent")

    def rank_of(self, layer: Layer) -> int:
        if self.rank is None:
            return default_rank(layer)
        if isinstance(self.rank, dict):
            for key in (layer.index, layer.name, short_name(layer.name)):
                if key in self.rank:
                    return int(self.rank[key])
            raise ConfigError(f"no rank given for target layer {layer.index} ({short_name(layer.name)})")
        return int(self.rank)

    def alpha_of(self, layer: Layer) -> float:
        return float(self.alpha) if self.alpha is not None else float(self.rank_of(layer))


def short_name(name: str) -> str:
    """A readable layer name: the first of the converter's ';'-joined names, middle path part."""
    first = name.split(";")[0].split("/")
    return first[1] if len(first) > 2 else name.split(";")[0]
