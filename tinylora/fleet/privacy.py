"""(epsilon, delta) of a fleet run's DP configuration, from Google's `dp-accounting` (RDP).

Client-level DP of Flower's client-side fixed clipping: every round each of the n sampled
clients' updates is clipped to L2 norm C, the uniform mean gets Gaussian noise of standard
deviation sigma * C / n, i.e. the sum gets sigma * C: one Gaussian mechanism of noise multiplier
sigma per round, with sampling rate q = sampled / population (1 when every client takes part:
no amplification). R rounds compose.
"""
from __future__ import annotations

import logging

from tinylora.errors import MissingDependencyError


def epsilon(noise: float, rounds: int, sampling_rate: float = 1.0, delta: float = 1e-5) -> float:
    """epsilon at `delta` after `rounds` rounds of the sampled Gaussian mechanism."""
    try:
        import dp_accounting  # optional dependency (the fleet extra)
    except ImportError:
        raise MissingDependencyError("epsilon needs dp-accounting: pip install tinylora[fleet]") from None
    if noise <= 0:
        return float("inf")
    event = dp_accounting.GaussianDpEvent(noise)
    if sampling_rate < 1.0:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    logging.getLogger("absl").setLevel(logging.ERROR)   # per-order convergence notes
    acc = dp_accounting.rdp.RdpAccountant()   # its default orders
    acc.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(acc.get_epsilon(delta))
