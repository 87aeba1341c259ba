"""Per-layer cost of the frozen int8 kernels: exact instruction counts under QEMU, per MAC.

    python benchmarks/kernels.py [--targets T ...] [--keep DIR] [--json FILE]

Five layers (stride 1, SAME padding, per-channel quantization, input zero point -17, output
zero point -3), each run once by every implementation on each core (``benchmarks/
kernels_main.c``):

    conv      CONV_2D 3x3, 16 -> 32 channels on 24x24      2,654,208 MACs
    dw        DEPTHWISE_CONV_2D 3x3, 64 channels on 24x24    331,776 MACs
    pw        CONV_2D 1x1, 64 -> 64 channels on 24x24      2,359,296 MACs
    fc256     FULLY_CONNECTED 256 -> 64                        16,384 MACs
    fc1024    FULLY_CONNECTED 1024 -> 128                     131,072 MACs

(MACs are the nominal count, out pixels x kernel taps x input channels, padded taps included,
the same for every path.)

Implementations:
- ``tinylora``: tinylora's kernels, portable C (the frozen kernels have no DSP path: on
  Cortex-M4/M7 the fast path is CMSIS-NN; SMLAD serves only the training kernels).
- ``cmsis-nn``: CMSIS-NN (``$CMSIS_NN_DIR``, default ../shared/third_party/CMSIS-NN,
  unmodified v7.0.0) called directly, built for the core as it is (``__ARM_FEATURE_DSP``
  defined on M4/M7: its DSP code).
- ``cmsis-nn-c``: the same sources built with ``-U__ARM_FEATURE_DSP`` for the same core, so
  CMSIS-NN's ``arm_nn_math_types.h`` leaves ``ARM_MATH_DSP`` undefined and every ``#if``
  takes its pure-C branch: the code a Cortex-M0/M3 build runs, measured on the M4/M7 itself
  (same compiler, same core, same counter as tinylora's portable C). The build checks that
  the library objects then hold no SMLAD / SXTB16.
- ``esp-nn``: ESP-NN's ANSI C kernels (``$ESP_NN_DIR``, default ../shared/third_party/
  esp-nn, unmodified v1.1.2, ``src/*/*_ansi.c``) called directly (Xtensa lx106, rv32imc).
The libraries are compiled from their directories by path (never copied), with the target's
own flags (``tinylora.emulate``).

Counting (as benchmarks/cost.py): RISC-V ``rdinstret`` under ``-icount shift=0`` is exact.
Xtensa CCOUNT ticks 1/25 per instruction at shift 0; it is read again at shift 7 (5.12 ticks
per instruction) where one integer instruction count fits the tick delta. Cortex-M SysTick is
24 bits: at shift 7 (3.2 ticks per instruction) it wraps after 5.2 M instructions, so the
count n is the one integer within one tick (1/40 instruction-rate) of the shift-0 reading whose
3.2 * n matches the shift-7 delta modulo 2^24; exactly one n fits. The counter-read overhead
(an empty region) is subtracted.

Every path's output bytes (FNV-1a digest per layer) must be identical to the host build of
tinylora's portable kernels; a mismatch is an error.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tinylora  # noqa: F401  (resources)
from tinylora import emulate

HERE = Path(__file__).resolve().parent
#: ../shared/third_party beside the repository (unmodified CMSIS-NN and ESP-NN releases)
_THIRD_PARTY = Path(__file__).resolve().parents[2] / "shared" / "third_party"
CMSIS_NN_DIR = Path(os.environ.get("CMSIS_NN_DIR", _THIRD_PARTY / "CMSIS-NN"))
ESP_NN_DIR = Path(os.environ.get("ESP_NN_DIR", _THIRD_PARTY / "esp-nn"))

LAYERS = {  # name -> (description, MACs)
    "conv": ("conv 3x3 16->32, 24x24", 24 * 24 * 32 * 3 * 3 * 16),
    "dw": ("depthwise 3x3 64ch, 24x24", 24 * 24 * 64 * 3 * 3),
    "pw": ("pointwise 64->64, 24x24", 24 * 24 * 64 * 64),
    "fc256": ("FC 256->64", 256 * 64),
    "fc1024": ("FC 1024->128", 1024 * 128),
}

# ticks per instruction at shift 0; counter width in bits
TARGET_RATE = {"cortex-m4": (1 / 40, 24), "cortex-m7": (1 / 40, 24), "xtensa": (1 / 25, 32),
               "rv32imc": (1.0, 32), "host": (None, 32)}
FINE_SHIFT = 7

PATHS = {  # target -> implementations
    "cortex-m4": ("tinylora", "cmsis-nn", "cmsis-nn-c"),
    "cortex-m7": ("tinylora", "cmsis-nn", "cmsis-nn-c"),
    "xtensa": ("tinylora", "esp-nn"),
    "rv32imc": ("tinylora", "esp-nn"),
}


def _library_objects(target: str, impl: str, out: Path) -> tuple[list[Path], list[Path], dict]:
    """Compile the library's sources for this target; returns (objects, include dirs, defines)."""
    spec = emulate._spec(target)
    if impl.startswith("cmsis-nn"):
        if not (CMSIS_NN_DIR / "Include" / "arm_nnfunctions.h").is_file():
            raise SystemExit(f"CMSIS-NN not found at {CMSIS_NN_DIR}: set CMSIS_NN_DIR to an "
                             f"unmodified CMSIS-NN v7.0.0 tree")
        srcs = [p for d in ("ConvolutionFunctions", "FullyConnectedFunctions", "NNSupportFunctions")
                for p in sorted((CMSIS_NN_DIR / "Source" / d).glob("*.c"))]
        incs = [CMSIS_NN_DIR / "Include"]
        extra = ["-U__ARM_FEATURE_DSP"] if impl == "cmsis-nn-c" else []
        defines = {"BENCH_CMSIS_NN": 1}
    else:
        if not (ESP_NN_DIR / "include" / "esp_nn.h").is_file():
            raise SystemExit(f"ESP-NN not found at {ESP_NN_DIR}: set ESP_NN_DIR to an "
                             f"unmodified esp-nn v1.1.2 tree")
        srcs = sorted((ESP_NN_DIR / "src").glob("*/*_ansi.c"))
        incs = [ESP_NN_DIR / "include", ESP_NN_DIR / "src" / "common"]
        extra = []
        defines = {"BENCH_ESP_NN": 1}
    objdir = out / "lib"
    objdir.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in srcs:
        obj = objdir / (src.stem + ".o")
        cmd = [spec.cc, *spec.cflags, *extra, *[f"-I{i}" for i in incs], "-c", str(src),
               "-o", str(obj)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"library build failed:\n$ {' '.join(cmd)}\n{p.stderr}")
        objs.append(obj)
    if impl == "cmsis-nn-c":
        # The pure-C build must be free of CMSIS-NN's SIMD intrinsics (gcc itself may still
        # pick single 16x16 multiply-adds such as SMLABB for plain C, as it does for ours).
        dis = subprocess.run(["arm-none-eabi-objdump", "-d", *map(str, objs)],
                             capture_output=True, text=True, check=True).stdout
        bad = [w for w in ("smlad", "sxtb16", "sxtab16", "smuad", "sadd16", "pkhbt")
               if f"\t{w}" in dis]
        if bad:
            raise RuntimeError(f"CMSIS-NN pure-C build still uses {bad}")
    return objs, incs, defines


def build(target: str, impl: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    sources: list[Path] = [HERE / "kernels_main.c"]
    includes: list[Path] = []
    defines: dict = {}
    if impl in ("cmsis-nn", "cmsis-nn-c", "esp-nn"):
        objs, includes, defines = _library_objects(target, impl, out)
        sources += objs
    return emulate.build(target, sources, out, defines, include_dirs=includes,
                         name=f"{target}-{impl}.elf")


def _run(target: str, elf: Path, shift: int) -> emulate.Report:
    r = emulate.run(target, elf, timeout=900, icount=target != "host", icount_shift=shift)
    rep = emulate.parse_report(r.stdout, r.returncode)
    if rep.errors:
        raise RuntimeError(f"{target} {elf.name}: kernel errors {rep.errors}")
    return rep


def measure(target: str, elf: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(instructions per layer, output digest per layer)."""
    coarse = _run(target, elf, 0)
    names = ["empty", *LAYERS]
    raw0 = {k: int(coarse.int32(f"n_{k}").view("<u4")[0]) for k in names}
    digests = {k: int(coarse.int32(f"h_{k}").view("<u4")[0]) for k in LAYERS}
    rate, bits = TARGET_RATE[target]
    if rate is None:
        return {}, digests
    if rate == 1.0:
        counts = raw0
    else:
        fine = _run(target, elf, FINE_SHIFT)
        fine_rate = rate * 2 ** FINE_SHIFT
        mod = 1 << bits
        counts = {}
        for k in names:
            d7 = int(fine.int32(f"n_{k}").view("<u4")[0])
            if int(fine.int32(f"h_{k}").view("<u4")[0]) != digests.get(k, 0) and k != "empty":
                raise RuntimeError(f"{target} {k}: output differs between two runs")
            centre = raw0[k] / rate
            fits = [n for n in range(max(0, int(centre - 2 / rate) - 2), int(centre + 2 / rate) + 3)
                    if abs(((n * fine_rate) % mod) - d7) < 1 or abs(((n * fine_rate) % mod) - d7) > mod - 1]
            if len(fits) != 1:
                raise RuntimeError(f"{target} {k}: {len(fits)} instruction counts fit "
                                   f"({raw0[k]} / {d7} ticks)")
            counts[k] = fits[0]
    overhead = counts["empty"]
    return {k: counts[k] - overhead for k in LAYERS}, digests


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="*", default=list(PATHS), choices=list(PATHS))
    ap.add_argument("--impls", nargs="*", default=None,
                    help="only these implementations (default: all for each target)")
    ap.add_argument("--keep", default=None, help="keep the builds here")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    results: dict[str, dict[str, dict[str, int]]] = {}
    mismatches = []
    with tempfile.TemporaryDirectory(prefix="tinylora-kernels-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        _, reference = measure("host", build("host", "tinylora", root / "host"))
        for target in args.targets:
            ok, why = emulate.available(target)
            if not ok:
                raise SystemExit(f"{target}: {why}")
            for impl in PATHS[target]:
                if args.impls and impl not in args.impls:
                    continue
                counts, digests = measure(target, build(target, impl, root / target / impl))
                for k in LAYERS:
                    if digests[k] != reference[k]:
                        mismatches.append(f"{target} {impl} {k}: digest {digests[k]:08x} != "
                                          f"host tinylora {reference[k]:08x}")
                results.setdefault(target, {})[impl] = counts
                print(f"  {target:10s} {impl:13s} " + "  ".join(
                    f"{k} {counts[k] / LAYERS[k][1]:.3f}" for k in LAYERS), file=sys.stderr)

    print("Instructions per MAC (exact counts, QEMU -icount; one call per layer, stride 1, "
          "SAME padding, per-channel quantization)")
    for target, per_impl in results.items():
        impls = list(per_impl)
        header = ["layer", "MACs", *impls]
        rows = [[desc, f"{macs:,}", *[f"{per_impl[i][k] / macs:.3f}" for i in impls]]
                for k, (desc, macs) in LAYERS.items()]
        if "tinylora" in per_impl and "cmsis-nn-c" in per_impl:
            header.append("tinylora / cmsis-nn-c")
            for row, k in zip(rows, LAYERS):
                row.append(f"{per_impl['tinylora'][k] / per_impl['cmsis-nn-c'][k]:.2f}x")
        if "tinylora" in per_impl and "esp-nn" in per_impl:
            header.append("tinylora / esp-nn")
            for row, k in zip(rows, LAYERS):
                row.append(f"{per_impl['tinylora'][k] / per_impl['esp-nn'][k]:.2f}x")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        print(f"\n{target}")
        print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                    for i, (c, w) in enumerate(zip(r, widths))) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"macs": {k: m for k, (_, m) in LAYERS.items()},
                                               "instructions": results}, indent=1) + "\n")
    if mismatches:
        print("\nOUTPUT MISMATCH:\n" + "\n".join(mismatches))
        return 1
    print("\nAll paths gave byte-identical outputs (FNV-1a digests equal to the host build of "
          "tinylora's portable kernels).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
