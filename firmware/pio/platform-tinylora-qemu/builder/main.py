# tinylora-qemu: a PlatformIO development platform for the microcontroller cores QEMU emulates.
#
# It builds with the Debian cross compilers found on PATH (no registry packages):
#   cortex-m  arm-none-eabi-gcc + newlib rdimon (semihosting), QEMU mps2-an386 / mps2-an500
#   xtensa    xtensa-lx106-elf-gcc, no C library (the target shim provides what is needed),
#             QEMU sim -cpu lx106
#   riscv     riscv64-unknown-elf-gcc -march=rv32imc + picolibc semihost, QEMU virt
# and adds each target's startup code and linker script from targets/ (a copy of tinylora's
# firmware/targets; in tinylora's source tree the platform finds them at ../../targets).
# `upload` does nothing: QEMU loads the ELF itself (see test_testing_command in
# platformio.ini, which runs the test firmware under QEMU with semihosting).
# An environment with `custom_kernel_library` options (written by tinylora gen) also links an
# optimised kernel library (CMSIS-NN, ESP-NN), built here from the unmodified source tree its
# environment variable names; without that tree the build stops and says how to fix it.
import glob
import sys
from os.path import isdir, isfile, join, relpath

from SCons.Script import AlwaysBuild, Default, DefaultEnvironment

env = DefaultEnvironment()
platform = env.PioPlatform()
board = env.BoardConfig()

TARGET = board.get("build.tinylora_target")
CPU = board.get("build.cpu")

TARGETS_DIR = join(platform.get_dir(), "targets")
if not isdir(TARGETS_DIR):  # used in place inside tinylora's source tree
    TARGETS_DIR = join(platform.get_dir(), "..", "..", "targets")

PREFIX = {
    "cortex-m": "arm-none-eabi-",
    "xtensa": "xtensa-lx106-elf-",
    "riscv": "riscv64-unknown-elf-",
}[TARGET]

CPU_FLAGS = {
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
    "lx106": ["-mlongcalls", "-mtext-section-literals"],
    "rv32imc": ["-march=rv32imc", "-mabi=ilp32", "--specs=picolibc.specs"],
}[CPU]

env.Replace(
    AR=PREFIX + "gcc-ar",
    AS=PREFIX + "gcc",
    CC=PREFIX + "gcc",
    CXX=PREFIX + "g++",
    GDB=PREFIX + "gdb",
    OBJCOPY=PREFIX + "objcopy",
    RANLIB=PREFIX + "gcc-ranlib",
    SIZETOOL=PREFIX + "size",
    ARFLAGS=["rc"],
    PROGNAME="firmware",
    PROGSUFFIX=".elf",
    SIZEPROGREGEXP=r"^(?:\.text|\.data|\.rodata|\.ARM\.exidx|\.init_array|\.fini_array)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.noinit)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
)

env.Append(
    ASFLAGS=CPU_FLAGS,
    ASPPFLAGS=["-x", "assembler-with-cpp"],
    CCFLAGS=CPU_FLAGS + ["-O2", "-ffunction-sections", "-fdata-sections"],
    LINKFLAGS=CPU_FLAGS + ["-Wl,--gc-sections"],
    CPPDEFINES=["TL_QEMU"],
)

if TARGET == "cortex-m":
    env.Append(LINKFLAGS=["--specs=rdimon.specs"])
    env.Replace(LDSCRIPT_PATH=join(TARGETS_DIR, "cortex-m", "mps2.ld"))
    support = ["+<cortex-m/startup.c>", "+<stdio/tl_target_stdio.c>"]
elif TARGET == "xtensa":
    env.Append(
        CCFLAGS=["-fno-builtin", "-fno-tree-loop-distribute-patterns"],
        LINKFLAGS=["-nostdlib", "-nostartfiles"],
        LIBS=["gcc"],
    )
    env.Replace(LDSCRIPT_PATH=join(TARGETS_DIR, "xtensa", "xtensa-sim.ld"))
    support = ["+<xtensa/start.S>", "+<xtensa/tl_target.c>"]
else:
    env.Append(LINKFLAGS=[
        "--oslib=semihost", "--crt0=semihost",
        "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x100000",
        "-Wl,--defsym=__ram=0x80100000", "-Wl,--defsym=__ram_size=0x100000",
    ])
    support = ["+<stdio/tl_target_stdio.c>"]

# tl_target_write's declaration (tl_report.h) for the target support files: targets/include in
# a project's copy, firmware/testing in tinylora's source tree
env.Append(CPPPATH=[join(TARGETS_DIR, "include"), join(TARGETS_DIR, "..", "testing")])
env.BuildSources(join("$BUILD_DIR", "TinyloraTarget"), TARGETS_DIR, ["-<*>"] + support)



def option_lines(name):
    return [v.strip() for v in env.GetProjectOption(name, "").splitlines() if v.strip()]


def kernel_library():
    title = env.GetProjectOption("custom_kernel_library", "")
    if not title:
        return
    var = env.GetProjectOption("custom_kernel_library_env")
    root = env.GetProjectOption("custom_kernel_library_dir", "").strip()
    marker = env.GetProjectOption("custom_kernel_library_marker")
    if not root or not isfile(join(root, marker)):
        why = "%s is not set" % var if not root else "%s=%s has no %s" % (var, root, marker)
        sys.stderr.write(
            "Error: environment %s links %s, but %s. Point %s at an unmodified %s tree "
            "(export %s=/path/to/it; README.md, \"Accelerated kernels\"), or regenerate the "
            "project with tinylora gen --backend portable.\n"
            % (env.subst("$PIOENV"), title, why, var, title, var))
        env.Exit(1)
    includes = [join(root, d) for d in option_lines("custom_kernel_library_include")]
    defines = [tuple(d.split("=", 1)) if "=" in d else d
               for d in option_lines("custom_kernel_library_defines")]
    sources = sorted(relpath(f, root) for pattern in option_lines("custom_kernel_library_sources")
                     for f in glob.glob(join(root, pattern)))
    libenv = env.Clone()  # the library's own C, unmodified: no project warning flags
    libenv.Append(CCFLAGS=["-w"], CPPPATH=includes, CPPDEFINES=defines)
    lib = libenv.BuildLibrary(join("$BUILD_DIR", "KernelLibrary"), root,
                              ["-<*>"] + ["+<%s>" % s for s in sources])
    env.Append(CPPPATH=includes, CPPDEFINES=defines)
    env.Prepend(LIBS=[lib])


kernel_library()
program = env.BuildProgram()
AlwaysBuild(env.Alias("upload", program, env.VerboseAction(
    lambda target, source, env: None,
    "Nothing to upload: QEMU loads $SOURCE itself (pio test -e %s)" % env.subst("$PIOENV"))))
Default([program])
