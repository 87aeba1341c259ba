"""Which frozen kernels a generated project runs, decided once (issue 12): the board's
``backend`` (boards/*.toml) or ``tinylora gen --backend``.

* On the board: ``-D TL_USE_CMSIS_NN`` / ``-D TL_USE_ESP_NN`` in its ``build_flags`` (the one
  line that switches back to the portable kernels); CMSIS-NN comes from ``lib/cmsis_nn`` (the
  pinned release, vendored), ESP-NN from ``src/idf_component.yml`` (ESP-IDF's component
  manager).
* In the QEMU environments: the local platform (``tools/platform-tinylora-qemu``) builds the
  library from the unmodified tree the environment variable names (``${sysenv.CMSIS_NN_DIR}``,
  ``${sysenv.ESP_NN_DIR}``): an unset variable or a wrong tree stops the build with the fix, it
  never falls back to the portable kernels. A QEMU core the library does not run on (CMSIS-NN
  on Xtensa / RISC-V; ESP-NN on Cortex-M) builds the portable kernels and its section says so.

The kernel scratch the library asks for is planned in the training step's arena
(planning/kernel_scratch.py) whatever the switch: the portable kernels leave it unused.
"""
from __future__ import annotations

from tinylora.errors import InputError
from tinylora.targets import BACKENDS, LIBRARIES, Library

__all__ = ["project_backend", "library", "board_flags", "qemu_options"]

#: The library a board of each platform may use (the others do not build there).
PLATFORM_BACKENDS = {"ststm32": ("portable", "cmsis-nn"), "espressif32": ("portable", "esp-nn")}


def project_backend(board, backend: str | None) -> str:
    """The backend of ``board``'s project: ``backend`` if given, else the board's."""
    chosen = board.backend if backend is None else backend
    allowed = PLATFORM_BACKENDS.get(board.platform, ("portable",))
    if chosen not in BACKENDS or chosen not in allowed:
        raise InputError(f"backend {chosen!r} does not build for board {board.name} "
                         f"({board.platform}); choose one of {', '.join(allowed)}")
    return chosen


def library(backend: str) -> Library | None:
    """The library of ``backend`` (None: portable)."""
    return LIBRARIES.get(backend)


def board_flags(backend: str) -> list[str]:
    """``build_flags`` lines of the board environment that select the library's kernels."""
    lib = library(backend)
    if lib is None:
        return []
    return [f"    -D {lib.define}"]


def qemu_options(backend: str, toolchain: str) -> list[str]:
    """platformio.ini lines of one QEMU environment (its core: ``toolchain``) that link the
    project's library, read by tools/platform-tinylora-qemu/builder/main.py."""
    lib = library(backend)
    if lib is None:
        return ["; frozen kernels: tinylora's portable C (this project's backend)"]
    if toolchain not in lib.toolchains:
        return [f"; frozen kernels: tinylora's portable C ({lib.title} does not run on this core "
                "here)"]
    defines = [lib.define, *(f"{k}={v}" for k, v in lib.defines.items())]
    return [f"; frozen kernels: {lib.title} {lib.version}, built from ${lib.env} (unset or wrong: a "
            "build error)",
            f"custom_kernel_library = {lib.title} {lib.version}",
            f"custom_kernel_library_env = {lib.env}",
            f"custom_kernel_library_dir = ${{sysenv.{lib.env}}}",
            f"custom_kernel_library_marker = {lib.marker}",
            "custom_kernel_library_include =", *(f"    {d}" for d in lib.include),
            "custom_kernel_library_sources =", *(f"    {s}" for s in lib.sources),
            "custom_kernel_library_defines =", *(f"    {d}" for d in defines)]
