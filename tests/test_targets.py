"""tinylora.targets is the one table of targets: everything that names a compiler flag or a QEMU
command reads it, and the PlatformIO builder's CPU flags (firmware/, run inside SCons where
tinylora is not importable) are checked against it here."""
from __future__ import annotations

import ast
import json

from tinylora import emulate, targets, verify
from tinylora.codegen import project
from tinylora.planning.boards import board_names, load_board
from tinylora.resources import resource_dir

PLATFORM = resource_dir("firmware") / "pio" / "platform-tinylora-qemu"
# Flags every build adds whatever the CPU (the builder puts them in CCFLAGS, not CPU_FLAGS).
GENERIC = {"-O2", "-ffunction-sections", "-fdata-sections", "-fno-builtin", "-fno-tree-loop-distribute-patterns"}


def _builder_cpu_flags() -> dict[str, list[str]]:
    tree = ast.parse((PLATFORM / "builder" / "main.py").read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CPU_FLAGS"
                and isinstance(node.value, ast.Subscript)):
            return ast.literal_eval(node.value.value)
    raise AssertionError("CPU_FLAGS not found in the builder")


def test_builder_cpu_flags_are_the_toolchains():
    flags = _builder_cpu_flags()
    checked = 0
    for tc in targets.PIO_ENVS:
        board = json.loads((PLATFORM / "boards" / f"{tc.pio.board}.json").read_text())
        cpu = board["build"]["cpu"]
        assert set(flags[cpu]) == set(tc.cflags) - GENERIC, (tc.name, cpu)
        checked += 1
    assert checked == 4


def test_every_reader_sees_the_same_table():
    assert emulate.TARGETS == tuple(targets.TOOLCHAINS)
    assert list(verify.TARGETS) == list(targets.VERIFY_TARGETS)
    for name, (tc, defines, what) in verify.TARGETS.items():
        v = targets.VARIANTS[name]
        assert (tc, defines, what) == (v.toolchain, v.defines, v.description) and tc in targets.TOOLCHAINS
    for q in project.QEMU_ENVS:
        tc = targets.TOOLCHAINS[q.emulation]
        assert q.command[2:-1] == tc.qemu and q.env == tc.pio.env and q.board == tc.pio.board


def test_boards_name_known_toolchains_and_backends():
    backends = {v.backend for v in targets.VARIANTS.values()}
    for name in board_names():
        b = load_board(name)
        assert b.emulation in targets.TOOLCHAINS and b.backend in backends, name
