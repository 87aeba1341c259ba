"""Every target tinylora builds for, in one table: compiler, flags, QEMU command, PlatformIO
board and environment, kernel backend. ``emulate`` (builds and runs), ``verify`` (its
``--target`` names), the project generator (the QEMU environments of ``platformio.ini``) and
the tests all read these tables; nothing else spells a compiler flag or a QEMU machine.

Two tables:

* :data:`TOOLCHAINS`: a compiler + machine (``emulate`` target): how to compile, link and run.
* :data:`VARIANTS`: a toolchain + preprocessor defines (portable, DSP, CMSIS-NN, ESP-NN
  kernels): what ``tinylora verify --target`` and the emulated test suites run.
* :data:`LIBRARIES`: the optimised kernel libraries (``tinylora verify --backend``): where their
  unmodified sources come from (an environment variable), which files and defines build them,
  and on which toolchains they run.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tinylora.errors import InputError

__all__ = ["WARNINGS", "Toolchain", "Variant", "PioEnv", "Library", "TOOLCHAINS", "VARIANTS", "LIBRARIES",
           "BACKENDS", "VERIFY_TARGETS", "PIO_ENVS", "backend_variant", "backend_build"]

#: Every build of tinylora C: static C is C.
WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")


@dataclass(frozen=True)
class PioEnv:
    """A QEMU environment of generated PlatformIO projects (platform-tinylora-qemu)."""
    env: str            # [env:...] name in platformio.ini
    board: str          # board JSON of the local platform (firmware/pio/.../boards)
    title: str


@dataclass(frozen=True)
class Toolchain:
    name: str
    cc: str
    cflags: tuple[str, ...]                 # code generation flags (optimisation, CPU, ABI)
    ldflags: tuple[str, ...] = ()
    support: tuple[str, ...] = ()           # files under firmware/targets/
    qemu: tuple[str, ...] | None = None     # command before the ELF path; None: run natively
    env: Mapping[str, str] = field(default_factory=dict)
    needs_files: tuple[str, ...] = ()       # files the compiler must find (-print-file-name)
    apt: str = ""                           # Debian package(s) providing it, for messages
    pio: PioEnv | None = None               # its environment in generated projects, if any

    @property
    def nm(self) -> str:
        """The matching ``nm`` (symbol sizes in tests)."""
        return self.cc[: -len("gcc")] + "nm"


@dataclass(frozen=True)
class Variant:
    name: str
    toolchain: str                          # key of TOOLCHAINS
    defines: Mapping[str, int] | None
    description: str
    backend: str = "portable"               # frozen kernels: portable C, "cmsis-nn" or "esp-nn"
    verify: bool = True                     # offered by `tinylora verify --target`


_ARM_SUPPORT = ("cortex-m/startup.c", "stdio/tl_target_stdio.c")
# -semihosting-config enable=on,target=native: what -semihosting means without a debugger
# attached, written out so the generated platformio.ini and emulate run the same command.
# No -nographic: its stdio chardev makes QEMU's standard input non-blocking, and newlib's
# semihosting read then takes "nothing waiting yet" for the end of the input.
_ARM_QEMU_TAIL = ("-display", "none", "-serial", "none", "-monitor", "none", "-semihosting-config",
                  "enable=on,target=native", "-kernel")


def _arm(name: str, cpu_flags: tuple[str, ...], machine: str, pio: PioEnv) -> Toolchain:
    return Toolchain(
        name=name, cc="arm-none-eabi-gcc",
        cflags=("-O2", "-mthumb", *cpu_flags, "-ffunction-sections", "-fdata-sections"),
        ldflags=("--specs=rdimon.specs", "-Wl,--gc-sections", "-T", "{targets}/cortex-m/mps2.ld"),
        support=_ARM_SUPPORT,
        qemu=("qemu-system-arm", "-M", machine, *_ARM_QEMU_TAIL),
        needs_files=("rdimon.specs",), apt="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm",
        pio=pio)


TOOLCHAINS: dict[str, Toolchain] = {t.name: t for t in (
    Toolchain("host", "gcc", ("-O2",), support=("stdio/tl_target_stdio.c",), apt="gcc"),
    Toolchain(
        "host-sanitize", "gcc",
        ("-O1", "-g", "-fsanitize=undefined,address", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer"),
        ldflags=("-fsanitize=undefined,address",), support=("stdio/tl_target_stdio.c",),
        env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
             "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87"},
        needs_files=("libasan.so", "libubsan.so"), apt="gcc (libasan, libubsan)"),
    _arm("cortex-m4", ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), "mps2-an386",
         PioEnv("qemu_cm4", "tl_qemu_cm4", "QEMU mps2-an386, Arm Cortex-M4F")),
    _arm("cortex-m7", ("-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"), "mps2-an500",
         PioEnv("qemu_cm7", "tl_qemu_cm7", "QEMU mps2-an500, Arm Cortex-M7")),
    Toolchain(
        "xtensa", "xtensa-lx106-elf-gcc",
        ("-O2", "-mlongcalls", "-mtext-section-literals", "-fno-builtin",
         "-fno-tree-loop-distribute-patterns", "-ffunction-sections", "-fdata-sections"),
        ldflags=("-nostdlib", "-nostartfiles", "-Wl,--gc-sections", "-T",
                 "{targets}/xtensa/xtensa-sim.ld", "-lgcc"),
        support=("xtensa/start.S", "xtensa/tl_target.c", "xtensa/tl_softfloat.c"),
        qemu=("qemu-system-xtensa", "-M", "sim", "-cpu", "lx106", "-nographic",
              "-monitor", "none", "-semihosting", "-kernel"),
        apt="gcc-xtensa-lx106 picolibc-xtensa-lx106-elf qemu-system-misc",
        pio=PioEnv("qemu_xtensa", "tl_qemu_lx106",
                   "QEMU sim, Xtensa LX106 (the ESP32 family's ISA; no ESP32-S3 SIMD)")),
    Toolchain(
        "rv32imc", "riscv64-unknown-elf-gcc",
        ("-O2", "-march=rv32imc", "-mabi=ilp32", "--specs=picolibc.specs",
         "-ffunction-sections", "-fdata-sections"),
        ldflags=("--oslib=semihost", "--crt0=semihost", "-Wl,--gc-sections",
                 "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x100000",
                 "-Wl,--defsym=__ram=0x80100000", "-Wl,--defsym=__ram_size=0x100000"),
        support=("stdio/tl_target_stdio.c",),
        # One console on QEMU's standard input and output, shared (mux=on) by the virt
        # machine's UART (the application's serial port: tl_board_qemu.c; the UART has the
        # input focus) and the semihosting console (picolibc's stdout: test programs), which
        # QEMU would otherwise send to stderr. Semihosting also gives the exit status and the
        # host files. No -nographic: it would add a second stdio chardev.
        qemu=("qemu-system-riscv32", "-M", "virt", "-display", "none", "-monitor", "none",
              "-bios", "none", "-chardev", "stdio,id=console,mux=on", "-serial", "chardev:console",
              "-semihosting-config", "enable=on,target=native,chardev=console", "-kernel"),
        needs_files=("picolibc.specs",),
        apt="gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc",
        pio=PioEnv("qemu_rv32imc", "tl_qemu_rv32imc", "QEMU virt, RISC-V rv32imc (the ESP32-C3's ISA)")),
)}

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("host", "host", None, "the machine's gcc, native"),
    Variant("host-sanitize", "host-sanitize", None, "gcc -fsanitize=undefined,address, native"),
    Variant("cortex-m4", "cortex-m4", {"TL_NO_DSP": 1}, "Cortex-M4F on QEMU mps2-an386, portable C kernels"),
    Variant("cortex-m4-dsp", "cortex-m4", None, "Cortex-M4F on QEMU mps2-an386, DSP-extension kernels"),
    Variant("cortex-m7", "cortex-m7", None, "Cortex-M7 on QEMU mps2-an500, DSP-extension kernels"),
    Variant("xtensa", "xtensa", None, "Xtensa LX106 on QEMU sim (ESP32's ISA family)"),
    Variant("rv32imc", "rv32imc", None, "RV32IMC on QEMU virt (ESP32-C3's ISA)"),
    # Frozen kernels through the optimised libraries (built from CMSIS_NN_DIR / ESP_NN_DIR, see
    # LIBRARIES): the emulated suites run them; `tinylora verify` reaches every library through
    # --backend on its own targets instead (backend_build).
    Variant("cortex-m4-cmsis-nn", "cortex-m4", {"TL_USE_CMSIS_NN": 1},
            "Cortex-M4F on QEMU mps2-an386, CMSIS-NN frozen kernels", backend="cmsis-nn", verify=False),
    Variant("xtensa-esp-nn", "xtensa", {"TL_USE_ESP_NN": 1},
            "Xtensa LX106 on QEMU sim, ESP-NN frozen kernels (ANSI C path)", backend="esp-nn", verify=False),
)}

#: `tinylora verify --target` names, in the order the CLI lists them.
VERIFY_TARGETS = tuple(name for name, v in VARIANTS.items() if v.verify)
#: The QEMU environments of generated PlatformIO projects, with their toolchain.
PIO_ENVS = tuple(t for t in TOOLCHAINS.values() if t.pio is not None)


@dataclass(frozen=True)
class Library:
    """An optimised int8 kernel library the frozen layers can run on (one ``--backend``)."""
    backend: str                            # --backend name
    title: str
    env: str                                # environment variable naming the source tree
    folder: str                             # its folder in the shared third_party snapshot
    version: str                            # the release generated projects pin
    define: str                             # tinylora's switch (firmware/src/tl_kernels_*.c)
    defines: Mapping[str, int]              # library configuration, for its files and tinylora's
    include: tuple[str, ...]                # include folders, relative to the tree
    sources: tuple[str, ...]                # glob patterns of its C files, relative to the tree
    marker: str                             # a file every release tree has (sanity check)
    toolchains: tuple[str, ...]             # where it builds and runs here


_CMSIS = dict(title="CMSIS-NN", env="CMSIS_NN_DIR", folder="CMSIS-NN", version="v7.0.0",
              define="TL_USE_CMSIS_NN", include=("Include",), marker="Include/arm_nnfunctions.h",
              sources=("Source/ConvolutionFunctions/*.c", "Source/FullyConnectedFunctions/*.c",
                       "Source/PoolingFunctions/*.c", "Source/BasicMathFunctions/*.c",
                       "Source/NNSupportFunctions/*.c"))
_ESP = dict(title="ESP-NN", env="ESP_NN_DIR", folder="esp-nn", version="v1.1.2",
            define="TL_USE_ESP_NN", include=("include", "src/common"), marker="include/esp_nn.h",
            sources=("src/convolution/*_ansi.c", "src/convolution/*_opt.c",
                     "src/fully_connected/*_ansi.c", "src/pooling/*_ansi.c",
                     "src/basic_math/esp_nn_add_ansi.c"))

#: Optimised libraries by --backend name. "esp-nn" is what ESP-IDF builds by default on chips
#: without the ESP32-S3 SIMD (CONFIG_NN_OPTIMIZED: the generic-opt kernels); "esp-nn-ansi" its
#: reference C kernels. The S3 assembly kernels run on no emulator here.
LIBRARIES: dict[str, Library] = {lib.backend: lib for lib in (
    Library("cmsis-nn", defines={}, toolchains=("cortex-m4", "cortex-m7"), **_CMSIS),
    Library("esp-nn", defines={"CONFIG_NN_OPTIMIZED": 1}, toolchains=("xtensa", "rv32imc", "host"), **_ESP),
    Library("esp-nn-ansi", defines={}, toolchains=("xtensa", "rv32imc", "host"), **_ESP),
)}
#: Every --backend name: the portable C kernels, then the libraries.
BACKENDS = ("portable", *LIBRARIES)


def backend_build(target: str, backend: str) -> tuple[str, dict[str, int], Library | None]:
    """(toolchain, defines, library or None) that build verify target ``target`` with the
    frozen kernels of ``backend``. Raises InputError naming the valid choices."""
    variant = VARIANTS[target]
    defines = dict(variant.defines or {})
    if backend == "portable":
        return variant.toolchain, defines, None
    lib = LIBRARIES.get(backend)
    if lib is None:
        raise InputError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if variant.toolchain not in lib.toolchains:
        raise InputError(f"backend {backend} does not run on target {target}: use it on "
                         f"{', '.join(lib.toolchains)}, or --backend portable")
    return variant.toolchain, {**defines, lib.define: 1, **lib.defines}, lib


def backend_variant(backend: str) -> Variant:
    """The emulated variant that runs `backend`'s kernels ("cmsis-nn" or "esp-nn")."""
    return next(v for v in VARIANTS.values() if v.backend == backend)
