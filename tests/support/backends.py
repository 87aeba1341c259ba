"""Building the C runtime against the CMSIS-NN / ESP-NN test doubles in ``tests/fakes``.

The real libraries are not available here, so ``TL_USE_CMSIS_NN`` / ``TL_USE_ESP_NN`` builds
link the doubles instead: headers with the libraries' documented names, types and signatures
and an independent implementation of their documented semantics that also checks their
documented argument contracts (see ``tests/fakes/README.md``). A test program built this way
calls ``tl_fake_setup`` first (registers scratch through ``tl_kernels_set_scratch``) and
``tl_fake_report`` last, which prints ``T fake <int32 x len(COUNTERS)>``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tinylora import emulate

FAKES = Path(__file__).resolve().parent.parent / "fakes"

#: The values of the ``fake`` report line, in order (tests/fakes/fake_common.h).
COUNTERS = ("fc", "fc_per_channel", "conv", "depthwise", "violations", "scratch_calls")
REPORT_NAME = "fake"


@dataclass(frozen=True)
class Backend:
    name: str
    define: str
    fake_dir: Path
    sources: tuple[Path, ...]


BACKENDS = {
    "cmsis-nn": Backend("cmsis-nn", "TL_USE_CMSIS_NN", FAKES / "cmsis_nn",
                        (FAKES / "cmsis_nn" / "arm_nnfunctions_fake.c",)),
    "esp-nn": Backend("esp-nn", "TL_USE_ESP_NN", FAKES / "esp_nn",
                      (FAKES / "esp_nn" / "esp_nn_fake.c",)),
}


def backend_of(defines: Mapping[str, object] | None) -> Backend | None:
    """The backend a variant's defines select (None: portable / DSP build)."""
    chosen = [b for b in BACKENDS.values() if b.define in (defines or {})]
    assert len(chosen) <= 1, defines
    return chosen[0] if chosen else None


def runners(model_runners: Sequence[str], quant_cases: bool = True) -> list[str]:
    """Runner functions for ``runner_main_c(..., quant_cases=False)``: scratch setup first, the
    quant / status cases (after the setup: their conv call needs scratch), the models, then the
    fake's counters."""
    first = ["tl_fake_setup"] + (["tl_quant_cases", "tl_status_cases"] if quant_cases else [])
    return first + list(model_runners) + ["tl_fake_report"]


def build(target: str, backend: Backend, sources: Sequence[Path | str], out_dir: Path | str,
          defines: Mapping[str, object] | None = None, *, kernels_source: Path | None = None,
          name: str | None = None) -> Path:
    """``emulate.build`` with the backend's define, the fake's headers and sources; with
    ``kernels_source`` that file replaces the runtime file of the same name (mutation tests)."""
    defines = {backend.define: 1, **(defines or {})}
    files = list(sources) + list(backend.sources)
    runtime = kernels_source is None
    if not runtime:
        files += [kernels_source if p.name == kernels_source.name else p
                  for p in emulate.runtime_sources()]
    # firmware/src: the glue's internal header, for a mutated copy built from elsewhere
    return emulate.build(target, files, out_dir, defines, name=name, runtime=runtime,
                         include_dirs=[backend.fake_dir, emulate.firmware_dir() / "src"])


def counts(report: emulate.Report) -> dict[str, int]:
    """The fake's counters from a parsed report."""
    values = report.int32(REPORT_NAME).tolist()
    assert len(values) == len(COUNTERS), values
    return dict(zip(COUNTERS, values))
