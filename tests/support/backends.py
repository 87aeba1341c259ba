"""Building the C runtime against the real CMSIS-NN / ESP-NN for the emulated suites.

``TL_USE_CMSIS_NN`` / ``TL_USE_ESP_NN`` builds link the libraries built from their unmodified
sources (:func:`tinylora.libraries.build_library`; ``CMSIS_NN_DIR`` / ``ESP_NN_DIR``, which
conftest.py points at ``../shared/third_party`` when unset). A test program built this way
calls :data:`SCRATCH_RUNNER` first: it registers ``scratch`` bytes of kernel scratch (default
32 KiB, one byte off a 16-byte boundary so that the runtime's realignment is exercised).
Whether the library's kernels are in the program is read from the ELF (:func:`symbols`).
"""
from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinylora import emulate, libraries, targets

SCRATCH_RUNNER = "tl_test_kernel_scratch"
DEFAULT_SCRATCH = 32768

SCRATCH_C = r"""
#include <stdint.h>

#include "tl_kernels.h"

static uint8_t tl_test_scratch[%(size)d + 1];

void tl_test_kernel_scratch(void);

void tl_test_kernel_scratch(void)
{
    /* one byte in: tl_kernels_set_scratch must realign it */
    tl_kernels_set_scratch(tl_test_scratch + 1, sizeof(tl_test_scratch) - 1u);
}
"""


@dataclass(frozen=True)
class Backend:
    name: str
    define: str
    library: targets.Library
    entry_points: tuple[str, ...]       # the library functions tinylora's glue calls


BACKENDS = {
    "cmsis-nn": Backend("cmsis-nn", "TL_USE_CMSIS_NN", targets.LIBRARIES["cmsis-nn"],
                        ("arm_fully_connected_s8", "arm_fully_connected_per_channel_s8",
                         "arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8")),
    # the ANSI C kernels (no CONFIG_NN_OPTIMIZED); tests/test_verify_backends.py runs generic-opt
    "esp-nn": Backend("esp-nn", "TL_USE_ESP_NN", targets.LIBRARIES["esp-nn-ansi"],
                      ("esp_nn_fully_connected_s8_ansi", "esp_nn_fully_connected_per_ch_s8_ansi",
                       "esp_nn_conv_s8_ansi", "esp_nn_depthwise_conv_s8_ansi")),
}


def backend_of(defines: Mapping[str, object] | None) -> Backend | None:
    """The backend a variant's defines select (None: portable / DSP build)."""
    chosen = [b for b in BACKENDS.values() if b.define in (defines or {})]
    assert len(chosen) <= 1, defines
    return chosen[0] if chosen else None


def runners(model_runners: Sequence[str], quant_cases: bool = True) -> list[str]:
    """Runner functions for ``runner_main_c(..., quant_cases=False)``: scratch registration
    first, then the quant / status cases (their conv call needs scratch), then the models."""
    first = [SCRATCH_RUNNER] + (["tl_quant_cases", "tl_status_cases"] if quant_cases else [])
    return first + list(model_runners)


def build(target: str, backend: Backend, sources: Sequence[Path | str], out_dir: Path | str,
          defines: Mapping[str, object] | None = None, *, kernels_source: Path | None = None,
          name: str | None = None, scratch: int = DEFAULT_SCRATCH) -> Path:
    """``emulate.build`` with the backend's define and the real library; with
    ``kernels_source`` that file replaces the runtime file of the same name (mutation tests)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive, includes = libraries.build_library(target, backend.library)
    scratch_c = out_dir / "kernel_scratch.c"
    scratch_c.write_text(SCRATCH_C % {"size": scratch})
    defines = {backend.define: 1, **backend.library.defines, **(defines or {})}
    files = [*sources, scratch_c]
    runtime = kernels_source is None
    if not runtime:
        files += [kernels_source if p.name == kernels_source.name else p
                  for p in emulate.runtime_sources()]
    # firmware/src: the glue's internal header, for a mutated copy built from elsewhere
    return emulate.build(target, files, out_dir, defines, name=name, runtime=runtime,
                         include_dirs=[*includes, emulate.firmware_dir() / "src"], libs=[archive])


def symbols(target: str, elf: Path | str) -> set[str]:
    """The defined symbols of a built program (``nm``)."""
    out = subprocess.run([targets.TOOLCHAINS[target].nm, str(elf)], capture_output=True,
                         text=True, check=True).stdout
    return {parts[-1] for parts in (line.split() for line in out.splitlines()) if len(parts) == 3}


def linked(target: str, backend: Backend, elf: Path | str) -> set[str]:
    """The library entry points the program links (it is built --gc-sections from an archive:
    linked means tinylora's glue calls them)."""
    return set(backend.entry_points) & symbols(target, elf)
