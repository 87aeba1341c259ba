"""PlatformIO from Python: lint a project, and build / test it offline with the real build system.

A generated project (``tinylora gen``) is a normal PlatformIO project: on a machine that reaches
PlatformIO's registry, ``pio run`` / ``pio test`` just work. Machines without the registry (our
CI) can still run PlatformIO's real build system on the project's QEMU environments, which use
the local platform the project ships (``tools/platform-tinylora-qemu``) and no registry
package, given three things this module provides:

* an own PlatformIO core directory (``PLATFORMIO_CORE_DIR``) holding the one core package the
  build system needs, ``tool-scons`` (SCons 4.11.1 from PyPI, installed by pip with
  ``--no-deps --target``, plus the launcher, ``package.json`` and ``.piopm`` PlatformIO
  expects; ``pio pkg install`` cannot do it offline): :func:`prepare_core`;
* an environment without the weekly upgrade check (60 s against an unreachable server) or
  telemetry: :func:`environment`;
* commands with a time limit, and no ``*.pio-link`` left behind in the core directory (a
  stale link breaks every later run): :func:`run`, :func:`test`.

:func:`lint` is PlatformIO's own ``ProjectConfig.lint`` (option names, types, choices,
interpolations). It does not know board, platform or framework names offline; the generator
checks those against the board data (:func:`tinylora.codegen.project.check_names`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinylora.errors import PioError

__all__ = ["PioError", "PioResult", "available", "prepare_core", "default_core_dir",
           "environment", "lint",
           "run", "test", "SCONS_VERSION", "scons_versions", "parse_test_summary"]

#: PlatformIO Core 6.2 requires tool-scons ~4.41101.0, which is SCons 4.11.1 (the package
#: version 4.4MMPP.0 is SCons 4.MM.PP). :func:`scons_versions` asks the installed PlatformIO.
SCONS_VERSION = "4.11.1"
SCONS_PACKAGE_VERSION = "4.41101.0"


def scons_versions() -> tuple[str, str]:
    """(SCons version on PyPI, tool-scons package version) that this PlatformIO wants."""
    try:
        from platformio.dependencies import get_core_dependencies
        req = get_core_dependencies()["tool-scons"].lstrip("~^=")
        m = re.fullmatch(r"4\.4(\d\d)(\d\d)\.0", req)
        if m:
            return f"4.{int(m.group(1))}.{int(m.group(2))}", req
    except (ImportError, KeyError, AttributeError):
        pass
    return SCONS_VERSION, SCONS_PACKAGE_VERSION

_LAUNCHER = '''"""tool-scons launcher written by tinylora.pio: SCons from this folder."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from SCons.Script import main  # noqa: E402

if __name__ == "__main__":
    main()
'''


@dataclass
class PioResult:
    command: list[str]
    returncode: int
    output: str
    seconds: float


def _pio_command() -> list[str]:
    """How to start PlatformIO: this interpreter's module if it has it, else ``pio`` on PATH."""
    try:
        import platformio  # noqa: F401
        return [sys.executable, "-m", "platformio"]
    except ImportError:
        exe = shutil.which("pio") or shutil.which("platformio")
        if exe is None:
            raise PioError("PlatformIO is not installed: pip install platformio") from None
        return [exe]


def available() -> tuple[bool, str]:
    """(True, "") if PlatformIO can be started here, else (False, why)."""
    try:
        _pio_command()
    except PioError as e:
        return False, str(e)
    return True, ""


def environment(core_dir: Path | str | None = None) -> dict[str, str]:
    """``os.environ`` plus what an offline PlatformIO needs (core dir, no upgrade check,
    no telemetry, no progress bars)."""
    env = dict(os.environ)
    if core_dir is not None:
        env["PLATFORMIO_CORE_DIR"] = str(Path(core_dir).resolve())
    env["PLATFORMIO_DISABLE_UPGRADE_CHECK"] = "true"
    env["PLATFORMIO_SETTING_ENABLE_TELEMETRY"] = "false"
    env["PLATFORMIO_DISABLE_PROGRESSBAR"] = "true"
    env["PLATFORMIO_NO_ANSI"] = "true"
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def default_core_dir() -> Path:
    """The core directory PlatformIO itself uses: ``$PLATFORMIO_CORE_DIR``, else
    ``~/.platformio``."""
    env = os.environ.get("PLATFORMIO_CORE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".platformio"


def _scons_ready(pkg: Path, package_version: str) -> bool:
    try:
        manifest = json.loads((pkg / "package.json").read_text())
        piopm = json.loads((pkg / ".piopm").read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("version") == package_version
            and piopm.get("version") == package_version
            and (pkg / "scons.py").is_file() and (pkg / "SCons" / "__init__.py").is_file())


def prepare_core(core_dir: Path | str, timeout: float = 300.0) -> Path:
    """Make ``core_dir`` a PlatformIO core directory that builds without the registry.

    Installs SCons (``pip install --no-deps --target``; from PyPI or pip's cache) as the
    ``tool-scons`` core package, once. Returns the core directory (absolute).
    """
    core = Path(core_dir).resolve()
    pkg = core / "packages" / "tool-scons"
    scons, package_version = scons_versions()
    if not _scons_ready(pkg, package_version):
        if pkg.exists():
            shutil.rmtree(pkg)
        pkg.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--target", str(pkg), f"scons=={scons}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PioError(f"installing SCons timed out after {timeout:g} s: {' '.join(cmd)}") from None
        if proc.returncode != 0:
            shutil.rmtree(pkg, ignore_errors=True)
            raise PioError(f"installing SCons {scons} failed ({proc.returncode}): pip needs PyPI "
                           f"or a local copy (pip download scons=={scons} on a connected "
                           "machine, then PIP_FIND_LINKS=<that folder> and run it again):\n"
                           f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        # pip's scripts and metadata are not part of the package PlatformIO expects
        shutil.rmtree(pkg / "bin", ignore_errors=True)
        (pkg / "scons.py").write_text(_LAUNCHER)
        (pkg / "package.json").write_text(json.dumps({
            "name": "tool-scons", "version": package_version,
            "description": f"SCons {scons} (installed from PyPI by tinylora.pio)",
            "keywords": ["build tools"], "homepage": "https://scons.org",
            "license": "MIT"}, indent=2) + "\n")
        (pkg / ".piopm").write_text(json.dumps({
            "type": "tool", "name": "tool-scons", "version": package_version,
            "spec": {"owner": "platformio", "id": None, "name": "tool-scons",
                     "requirements": f"~{package_version}", "uri": None}}))
    return core


def _remove_links(core_dir: Path | None) -> None:
    """Delete ``*.pio-link`` files in the core's packages/ and platforms/ (a link to a
    project's local platform is recreated by the next command; a stale one breaks it)."""
    if core_dir is None:
        return
    for sub in ("packages", "platforms"):
        for link in (Path(core_dir) / sub).glob("*.pio-link"):
            link.unlink()


def lint(project_dir: Path | str) -> dict:
    """PlatformIO's ``ProjectConfig.lint`` of ``project_dir/platformio.ini``:
    ``{"errors": [...], "warnings": [...]}`` (messages as strings)."""
    from platformio.project.config import ProjectConfig
    path = (Path(project_dir) / "platformio.ini").resolve()
    cwd = os.getcwd()
    try:
        # ${PROJECT_DIR} (and relative paths) resolve against the working directory
        os.chdir(path.parent)
        result = ProjectConfig.lint(str(path))
    finally:
        os.chdir(cwd)
    return {"errors": [str(e) for e in result.get("errors", [])],
            "warnings": [str(w) for w in result.get("warnings", [])]}


def _pio(args: Sequence[str], project_dir: Path | str, core_dir: Path | str | None,
         timeout: float) -> PioResult:
    core = Path(core_dir).resolve() if core_dir is not None else None
    cmd = _pio_command() + list(args) + ["-d", str(Path(project_dir).resolve())]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                              env=environment(core), cwd=str(project_dir))
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise PioError(f"{' '.join(cmd)} timed out after {timeout:g} s; output ends:\n"
                       f"{out[-3000:]}") from None
    finally:
        _remove_links(core)
    return PioResult(cmd, proc.returncode, proc.stdout, time.perf_counter() - t0)


def run(project_dir: Path | str, env: str, core_dir: Path | str | None = None,
        timeout: float = 300.0, targets: Sequence[str] = (), check: bool = True) -> PioResult:
    """``pio run -e env [-t target...]``; raises :class:`PioError` on failure when ``check``."""
    args = ["run", "-e", env]
    for t in targets:
        args += ["-t", t]
    result = _pio(args, project_dir, core_dir, timeout)
    if check and result.returncode != 0:
        raise PioError(f"pio run -e {env} failed ({result.returncode}):\n{result.output[-6000:]}")
    return result


def test(project_dir: Path | str, env: str, core_dir: Path | str | None = None,
         timeout: float = 300.0, check: bool = True, verbose: bool = False,
         filters: Sequence[str] = ()) -> PioResult:
    """``pio test -e env [-f filter...]``; raises :class:`PioError` on failure when ``check``."""
    args = ["test", "-e", env] + (["-v"] if verbose else [])
    for f in filters:
        args += ["-f", f]
    result = _pio(args, project_dir, core_dir, timeout)
    if check and result.returncode != 0:
        raise PioError(f"pio test -e {env} failed ({result.returncode}):\n{result.output[-6000:]}")
    return result


_SUMMARY = re.compile(r"(\d+) test cases: (?:(\d+) failed, )?(?:(\d+) skipped, )?(\d+) succeeded")


def parse_test_summary(output: str) -> dict[str, int]:
    """Counts from ``pio test``'s last summary line: total, failed, skipped, succeeded, and
    errored (the rest: suites that did not build or run)."""
    found = _SUMMARY.findall(output)
    if not found:
        raise PioError(f"no test summary in pio test output; it ends:\n{output[-2000:]}")
    total, failed, skipped, ok = (int(v or 0) for v in found[-1])
    return {"total": total, "failed": failed, "skipped": skipped,
            "errored": total - failed - skipped - ok, "succeeded": ok}
