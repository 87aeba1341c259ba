"""The argument types of the `tinylora` command line (each error names the range to give)."""
from __future__ import annotations

import argparse


def int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range: give {lo}..{hi}" if hi is not None else f"{value} < {lo}: give >= {lo}")
        return value
    parse.__name__ = "whole number"
    return parse


def real_in(lo: float, hi: float, hi_closed: bool = False):
    """An argparse type: a finite number in (lo, hi) (or (lo, hi])."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (lo < value < hi or (hi_closed and value == hi)):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number in ({lo:g}, {hi:g}"
                                             + ("]" if hi_closed else ")"))
        return value
    parse.__name__ = "number"
    return parse


RANK, COUNT, SEED = int_in(1, 255), int_in(1, 100000), int_in(0, 2**32 - 1)
LR, DENSITY = real_in(0.0, 1.0), real_in(0.0, 1.0, hi_closed=True)
RANK_HELP = ("LoRA rank, 1..255 (default: 3, lowered on a layer too small for it: rank <= "
             "ceil(min(in, out) / 4), adapter <= half the layer's weights)")


def rank_flag(rank: int | None) -> str:
    """The ``--rank N`` of a recorded command (nothing for the default rule)."""
    return "" if rank is None else f" --rank {rank}"


def model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="a full-int8 .tflite file (default: the bundled digits CNN)")
