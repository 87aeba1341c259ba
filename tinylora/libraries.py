"""The optimised kernel libraries (CMSIS-NN, ESP-NN) built from their unmodified sources.

The sources are never part of tinylora: the environment variable of each library
(:data:`tinylora.targets.LIBRARIES`: ``CMSIS_NN_DIR``, ``ESP_NN_DIR``) names a release tree.
:func:`library_dir` checks it (a missing or wrong directory is an error naming the fix, never
a silent fallback to the portable kernels); :func:`build_library` compiles the library's C
files with the target's code-generation flags (not tinylora's warning flags: the code is not
ours) into a static archive, cached by the hash of the compile command and the sources so a
test session builds each (library, toolchain) once.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tinylora.errors import EmulationError, InputError
from tinylora.targets import TOOLCHAINS, Library

__all__ = ["library_dir", "library_sources", "build_library", "cache_root"]


def library_dir(lib: Library) -> Path:
    """The source tree ``$<lib.env>`` names; raises :class:`InputError` (what is wrong and
    how to fix it) if the variable is unset or the folder is not a release tree."""
    value = os.environ.get(lib.env)
    hint = (f"point {lib.env} at an unmodified {lib.title} {lib.version} source tree, e.g. "
            f"export {lib.env}=../shared/third_party/{lib.folder} (or use --backend portable)")
    if not value:
        raise InputError(f"backend {lib.backend} needs the {lib.title} sources: {lib.env} is not set; {hint}")
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise InputError(f"{lib.env}={value}: no such directory; {hint}")
    if not (path / lib.marker).is_file():
        raise InputError(f"{lib.env}={value}: {lib.marker} is missing, not a {lib.title} tree; {hint}")
    return path


def library_sources(lib: Library, root: Path) -> list[Path]:
    """The library's C files under ``root`` (sorted: a stable build)."""
    files = sorted({p for pattern in lib.sources for p in root.glob(pattern)})
    if not files:
        raise InputError(f"{root}: no {lib.title} sources match {', '.join(lib.sources)}")
    return files


def cache_root() -> Path:
    """Where built archives are kept (``TINYLORA_CACHE`` or a per-user temporary folder)."""
    env = os.environ.get("TINYLORA_CACHE")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"tinylora-libs-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _define_flags(defines) -> list[str]:
    return [f"-D{k}={v}" for k, v in sorted(defines.items())]


def build_library(toolchain: str, lib: Library, cache: Path | None = None) -> tuple[Path, list[Path]]:
    """(static archive, include folders) of ``lib`` for ``toolchain``, built on first use.
    Raises :class:`InputError` for a missing tree, :class:`EmulationError` if it does not build."""
    spec = TOOLCHAINS[toolchain]
    root = library_dir(lib)
    sources = library_sources(lib, root)
    includes = [root / d for d in lib.include]
    flags = [*spec.cflags, "-w", *_define_flags(lib.defines), *(f"-I{d}" for d in includes)]
    digest = hashlib.sha256("\0".join([spec.cc, *flags]).encode())
    for src in sources:
        digest.update(str(src.relative_to(root)).encode() + b"\0" + src.read_bytes())
    out = (cache or cache_root()) / f"{lib.backend}-{toolchain}-{digest.hexdigest()[:16]}"
    archive = out / f"lib{lib.backend.replace('-', '_')}.a"
    if archive.is_file():
        return archive, includes
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        objects = []
        for k, src in enumerate(sources):
            obj = work / f"{k:03d}_{src.stem}.o"
            _run([spec.cc, *flags, "-c", str(src), "-o", str(obj)], f"{lib.title} ({toolchain})")
            objects.append(str(obj))
        _run([spec.cc[: -len("gcc")] + "ar", "rcs", str(work / archive.name), *objects],
             f"{lib.title} archive ({toolchain})")
        try:
            work.rename(out)
        except OSError:  # built meanwhile by another process: use theirs
            if not archive.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return archive, includes


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmulationError(f"{what} build failed ({proc.returncode}):\n$ {' '.join(cmd)}\n"
                             f"{proc.stdout}{proc.stderr}")
