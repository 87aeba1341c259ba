"""Drawing an ArenaPlan: offset (vertical) over the training step's timeline (horizontal).

SVG is written directly (no dependency); PNG uses matplotlib when it is installed.
"""
from __future__ import annotations

import pathlib
from xml.sax.saxutils import escape

from tinylora.errors import InputError

COLORS = {"activation": "#4e79a7", "input": "#76b7b2", "gradient": "#e15759",
          "LoRA intermediate": "#f28e2b", "gradient accumulator": "#edc948",
          "sparse gradient (index, value)": "#b07aa1", "masters": "#59a14f",
          "int8 views": "#8cd17d", "accumulators": "#edc948", "momentum": "#ff9da7"}


def _color(what: str) -> str:
    return COLORS.get(what, "#bab0ac")


def _rects(plan):
    n = len(plan.ops) + 1
    for b in plan.buffers:
        first, last = (-1, n - 1) if b.kind == "persistent" else (b.first, b.last)
        yield b, first + 1, last + 2, b.offset, b.padded


def plot_plan(plan, path) -> None:
    path = pathlib.Path(path)
    if path.suffix.lower() == ".svg":
        path.write_text(_svg(plan))
        return
    if path.suffix.lower() != ".png":
        raise InputError(f"plot to .svg or .png, not {path.suffix!r}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("PNG plots need matplotlib (pip install matplotlib); .svg needs nothing") from None
    fig, ax = plt.subplots(figsize=(10, 5))
    for b, x0, x1, y, h in _rects(plan):
        ax.add_patch(plt.Rectangle((x0, y), x1 - x0, h, facecolor=_color(b.what), edgecolor="black", lw=0.4))
    seen = sorted({b.what for b in plan.buffers})
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, facecolor=_color(w)) for w in seen], labels=seen,
              loc="upper left", fontsize=7, ncol=2)
    ax.set_xlim(0, len(plan.ops) + 1)
    ax.set_ylim(0, plan.total_bytes)
    ax.set_xlabel("schedule op")
    ax.set_ylabel("arena offset (bytes)")
    ax.set_title(f"arena {plan.total_bytes:,} B (lower bound {plan.lower_bound_bytes:,} B)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _svg(plan) -> str:
    width, height, left, bottom = 900, 480, 70, 40
    cols = len(plan.ops) + 1
    sx = (width - left - 10) / cols
    sy = (height - bottom - 30) / max(plan.total_bytes, 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{left}" y="16" font-size="13">arena {plan.total_bytes:,} B, lower bound '
        f"{plan.lower_bound_bytes:,} B, budget {plan.budget:,} B</text>",
    ]
    for b, x0, x1, y, h in _rects(plan):
        top = height - bottom - (y + h) * sy
        out.append(f'<rect x="{left + x0 * sx:.1f}" y="{top:.1f}" width="{(x1 - x0) * sx:.1f}" '
                   f'height="{max(h * sy, 0.5):.1f}" fill="{_color(b.what)}" stroke="black" '
                   f'stroke-width="0.4"><title>{escape(b.name)}: {b.size} B at {b.offset}, '
                   f'{escape(b.what)}</title></rect>')
    out.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="30" x2="{left}" y2="{height - bottom}" stroke="black"/>')
    out.append(f'<text x="{left}" y="{height - 12}">schedule op (0 .. {len(plan.ops) - 1}); '
               'persistent state spans the whole step</text>')
    out.append(f'<text x="4" y="34">{plan.total_bytes:,} B</text><text x="4" y="{height - bottom}">0</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
