"""Building the C runtime against the real CMSIS-NN / ESP-NN for the emulated suites.

``TL_USE_CMSIS_NN`` / ``TL_USE_ESP_NN`` builds link the libraries built from their unmodified
sources (:func:`tinylora.libraries.build_library`; ``CMSIS_NN_DIR`` / ``ESP_NN_DIR``, which
conftest.py points at ``../shared/third_party`` when unset). The kernel scratch travels with
each call (``tl_context``): generate the model C for the backend
(``generate_frozen_c(..., backend=b.scratch_backend)``) and it plans its own.
Whether the library's kernels are in the program is read from the ELF (:func:`symbols`).
"""
from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinylora import emulate, libraries, targets


@dataclass(frozen=True)
class Backend:
    name: str
    define: str
    library: targets.Library
    scratch_backend: str                # the kernel_scratch backend whose rules it follows
    entry_points: tuple[str, ...]       # the library functions tinylora's glue calls


BACKENDS = {
    "cmsis-nn": Backend("cmsis-nn", "TL_USE_CMSIS_NN", targets.LIBRARIES["cmsis-nn"], "cmsis-nn",
                        ("arm_fully_connected_s8", "arm_fully_connected_per_channel_s8",
                         "arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8")),
    # the ANSI C kernels (no CONFIG_NN_OPTIMIZED); tests/test_verify_backends.py runs generic-opt
    "esp-nn": Backend("esp-nn", "TL_USE_ESP_NN", targets.LIBRARIES["esp-nn-ansi"], "esp-nn-ansi",
                      ("esp_nn_fully_connected_s8_ansi", "esp_nn_fully_connected_per_ch_s8_ansi",
                       "esp_nn_conv_s8_ansi", "esp_nn_depthwise_conv_s8_ansi")),
}


def backend_of(defines: Mapping[str, object] | None) -> Backend | None:
    """The backend a variant's defines select (None: portable / DSP build)."""
    chosen = [b for b in BACKENDS.values() if b.define in (defines or {})]
    assert len(chosen) <= 1, defines
    return chosen[0] if chosen else None


def backend_name(backend: Backend | None) -> str:
    """The kernel_scratch / codegen backend name of a test backend (None: portable)."""
    return "portable" if backend is None else backend.scratch_backend


def build(target: str, backend: Backend, sources: Sequence[Path | str], out_dir: Path | str,
          defines: Mapping[str, object] | None = None, *, kernels_source: Path | None = None,
          name: str | None = None) -> Path:
    """``emulate.build`` with the backend's define and the real library; with
    ``kernels_source`` that file replaces the runtime file of the same name (mutation tests)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive, includes = libraries.build_library(target, backend.library)
    defines = {backend.define: 1, **backend.library.defines, **(defines or {})}
    files = list(sources)
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
