"""The project folder on disk: every path stays inside ``--out``, the manifest is checked
before it is trusted, and a generation lands atomically (or resumes on the next run).

Nothing here reads, writes or deletes outside the project folder: each path comes from the
generator's own file table or from a manifest entry that is a plain relative path
(:func:`plain_relative`), and is resolved (symbolic links followed) before use; a path
whose resolution leaves the folder is refused (:func:`inside`).

A generation is applied in two phases (:func:`commit`). First every new file is written into
a staging folder inside ``.tinylora/`` (a failure there leaves the project untouched). Then
a journal (``.tinylora/pending.json``) records the new digests, the staged files are moved
into place with ``os.replace`` (atomic per file), stale files are deleted, and the manifest
is replaced last. If the second phase stops midway, the journal tells the next ``tinylora
gen`` that the files it finds are either the old or the new generation's, so rerunning the
same command finishes the job instead of reporting the project as edited.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from tinylora.codegen.project.common import MANIFEST
from tinylora.errors import ProjectError

PENDING = ".tinylora/pending.json"
_STATE_DIR = ".tinylora"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def plain_relative(rel: object) -> bool:
    """True for a path like ``src/main.c``: a non-empty string of '/'-separated names, none
    of them empty, '.' or '..', not absolute, no backslash, drive letter or NUL, and not in
    tinylora's own ``.tinylora/`` folder."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel or ":" in rel:
        return False
    parts = rel.split("/")
    if PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return False
    return parts[0] != _STATE_DIR


def project_root(out_dir: Path | str) -> Path:
    """``out_dir`` resolved; a :class:`ProjectError` when it exists and is not a folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ProjectError(f"--out {out} is a file, not a folder: choose a folder for the "
                           "project (a new one is created)")
    return out.resolve()


def inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a path that resolves outside ``root`` (a symbolic link in
    the project pointing elsewhere): tinylora gen never writes or reads there."""
    path = root / rel
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ProjectError(f"{rel} in {root} leads outside the project (to {resolved}, through "
                           "a symbolic link): tinylora gen never reads, writes or deletes "
                           "outside --out. Replace the link with a regular file or folder, "
                           "or choose another --out")
    return path


def blocked(root: Path, rel: str) -> str | None:
    """The folder of ``rel`` that exists as something other than a folder, if any."""
    for parent in reversed(list(PurePosixPath(rel).parents)[:-1]):
        path = root / parent
        if path.exists() and not path.is_dir():
            return str(parent)
    return None


def _damaged(path: Path, why: str) -> ProjectError:
    return ProjectError(f"{path} is damaged ({why}), so tinylora gen will not trust it. Move it "
                        f"aside (mv {path} {path.name}.bak) and run tinylora gen again: files "
                        "equal to what it generates are taken over, USER CODE regions are kept "
                        "and any other difference is listed before anything is written")


def _read_digests(root: Path, rel: str) -> dict[str, str]:
    path = inside(root, rel)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _damaged(path, f"not readable JSON: {e}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise _damaged(path, "no \"files\" table")
    for name, digest in files.items():
        if not plain_relative(name):
            raise _damaged(path, f"entry {name!r} is not a plain relative path inside the project")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise _damaged(path, f"entry {name!r} has no sha256 digest")
    return files


def read_manifest(root: Path) -> dict[str, set[str]]:
    """{file: digests tinylora may have left there}: the manifest's, plus the journal's when a
    previous generation stopped midway."""
    accepted = {rel: {d} for rel, d in _read_digests(root, MANIFEST).items()}
    for rel, digest in _read_digests(root, PENDING).items():
        accepted.setdefault(rel, set()).add(digest)
    return accepted


def _write_error(root: Path, what: str, e: OSError, done: str) -> ProjectError:
    return ProjectError(f"cannot write {what} in {root}: {e.strerror or e}. {done}")


def _stage(root: Path, final: dict[str, bytes]) -> Path:
    """Phase one: every file into a staging folder (removed again if anything fails)."""
    try:
        state = inside(root, _STATE_DIR)
        state.mkdir(parents=True, exist_ok=True)
        for old in state.glob("staging-*"):   # left by a generation that was killed
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=state))
    except OSError as e:
        raise _write_error(root, "the project", e, "Nothing was changed: choose a folder you "
                           "can write to with --out, or fix its permissions") from None
    try:
        for i, data in enumerate(final.values()):
            (staging / str(i)).write_bytes(data)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise _write_error(root, "the project", e, "Nothing was changed (the new files were "
                           "being prepared in .tinylora/): free some space or fix the "
                           "permissions, then run tinylora gen again") from None
    return staging


def _replace_text(root: Path, rel: str, text: bytes) -> None:
    path = inside(root, rel)
    tmp = path.with_name(path.name + ".new")
    try:
        tmp.write_bytes(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def commit(root: Path, final: dict[str, bytes], removable: list[str], manifest: bytes,
           pending: bytes) -> None:
    """Write ``final`` ({file: bytes}, only those that change) and delete ``removable``
    inside ``root``; the manifest last. See the module text for how a failure is handled."""
    staging = _stage(root, final)
    try:
        _replace_text(root, PENDING, pending)
        for i, rel in enumerate(final):
            target = inside(root, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / str(i), target)
        for rel in removable:
            inside(root, rel).unlink(missing_ok=True)
        _replace_text(root, MANIFEST, manifest)
        inside(root, PENDING).unlink()
    except OSError as e:
        raise _write_error(root, "the project", e, "It stopped midway; .tinylora/pending.json "
                           "records what it was writing, so running the same tinylora gen "
                           "command again finishes it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
