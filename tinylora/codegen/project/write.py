"""Writing a planned project to disk (keeping USER CODE regions, refusing to lose edits),
``generate_project`` and the ``platformio.ini`` name check."""
from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from pathlib import Path

from tinylora import __version__
from tinylora.codegen.project.common import (
    _REGION_FILES,
    FRAMEWORKS,
    MANIFEST,
    PLATFORM_DIR,
    QEMU_ENVS,
    Project,
    _json_text,
)
from tinylora.codegen.project.disk import blocked, commit, inside, project_root, read_manifest
from tinylora.codegen.project.plan import plan_project
from tinylora.codegen.project.regions import _digest, _merge, _split_regions, canonical
from tinylora.errors import ProjectError
from tinylora.planning.boards import Board, load_board

# ---------------------------------------------------------------------------------- writing

@dataclass
class WriteReport:
    out_dir: Path
    written: list[str]
    unchanged: list[str]
    removed: list[str]
    preserved_regions: dict[str, list[str]]


def write_project(project: Project, out_dir: Path | str, force: bool = False) -> WriteReport:
    """Write ``project`` into ``out_dir``.

    A file already there is replaced only if tinylora wrote it (``.tinylora/manifest.json``)
    and nobody changed it outside its USER CODE regions, whose contents are carried over.
    Files of an earlier generation that this one no longer has are deleted on the same
    condition. Anything else is a :class:`ProjectError` listing every conflict, and then
    nothing is written -- unless ``force``, which overwrites (regions are still kept).
    Nothing outside ``out_dir`` is read, written or deleted (:mod:`.disk`: a damaged or
    crafted manifest, or a symbolic link leading out, is a :class:`ProjectError` even with
    ``force``), and the files land atomically (:func:`.disk.commit`).
    """
    root = project_root(out_dir)
    old_manifest = read_manifest(root) if root.is_dir() else {}
    conflicts: list[str] = []
    in_the_way: list[str] = []   # --force cannot help with these
    final: dict[str, bytes] = {}
    preserved: dict[str, list[str]] = {}
    for rel, data in project.files.items():
        target = inside(root, rel)
        if target.is_dir():
            in_the_way.append(f"{rel}: a folder is in the way")
            continue
        if blocked(root, rel):
            in_the_way.append(f"{rel}: {blocked(root, rel)} is a file, where a folder should be")
            continue
        if not target.is_file():
            final[rel] = data
            continue
        old = target.read_bytes()
        if rel in old_manifest:
            if _digest(old) not in old_manifest[rel] and not force:
                conflicts.append(f"{rel}: changed outside its USER CODE regions since tinylora "
                                 "wrote it")
                continue
        elif old != data and canonical(old) != canonical(data) and not force:
            conflicts.append(f"{rel}: exists and was not written by tinylora")
            continue
        final[rel] = _keep_regions(rel, data, old, force, conflicts, preserved)
    removable = []
    for rel in sorted(set(old_manifest) - set(project.files)):
        target = inside(root, rel)
        if not target.is_file():
            continue
        if _digest(target.read_bytes()) not in old_manifest[rel] and not force:
            conflicts.append(f"{rel}: no longer generated, but changed since tinylora wrote it")
        else:
            removable.append(rel)
    if in_the_way:
        raise ProjectError("tinylora gen cannot write the project; nothing was written:\n  "
                           + "\n  ".join(in_the_way + conflicts)
                           + "\nMove or rename what is in the way, or choose another --out.")
    if conflicts:
        raise ProjectError("tinylora gen would overwrite your changes; nothing was written:\n  "
                           + "\n  ".join(conflicts)
                           + "\nMove your changes into USER CODE regions, restore the files, "
                             "choose another --out, or use --force to overwrite.")

    changed = {rel: data for rel, data in final.items()
               if not (inside(root, rel).is_file() and inside(root, rel).read_bytes() == data)}
    digests = {rel: _digest(data) for rel, data in sorted(final.items())}
    manifest = {"generator": f"tinylora {__version__}", "board": project.board.name,
                "note": "sha256 of each file tinylora wrote, USER CODE regions excluded: "
                        "tinylora gen uses it to find edits it must not overwrite",
                "files": digests}
    pending = {"note": "a tinylora gen that stopped midway: these files may already be new",
               "files": {rel: digests[rel] for rel in sorted(changed)}}
    text = _json_text(manifest).encode()
    manifest_path = root / MANIFEST
    if changed or removable or not manifest_path.is_file() or manifest_path.read_bytes() != text:
        commit(root, changed, removable, text, _json_text(pending).encode())
    unchanged = sorted(set(final) - set(changed))
    return WriteReport(Path(out_dir), sorted(changed), unchanged, removable, preserved)


def _keep_regions(rel: str, data: bytes, old: bytes, force: bool, conflicts: list[str],
                  preserved: dict[str, list[str]]) -> bytes:
    """``data`` with ``old``'s USER CODE regions (region files only)."""
    if rel not in _REGION_FILES:
        return data
    try:
        merged = _merge(data, old, rel)
    except ProjectError as e:
        if not force:
            conflicts.append(str(e))
            return data
        merged = data
    kept = [n for n, body in _split_regions(old.decode())[1].items() if "".join(body).strip()]
    if kept:
        preserved[rel] = kept
    return merged


def generate_project(board: str, out_dir: Path | str, force: bool = False, **options):
    """:func:`plan_project` then :func:`write_project`; returns (project, report)."""
    project = plan_project(board, **options)
    return project, write_project(project, out_dir, force=force)


# ---------------------------------------------------------------------------------- checks

def check_names(project_dir: Path | str, board: str | Board) -> list[str]:
    """Problems with the names in a generated ``platformio.ini``: the board environment's
    platform, board and framework must be the board data's (PlatformIO cannot check them
    offline), and each QEMU environment's board must exist in the project's local platform.
    Returns [] when everything checks out."""
    b = board if isinstance(board, Board) else load_board(board)
    root = Path(project_dir)
    ini = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    ini.read(root / "platformio.ini")
    problems = []
    section = f"env:{b.name}"
    if section not in ini:
        return [f"platformio.ini has no [{section}]"]
    for key, want in (("platform", b.platform), ("board", b.pio_board), ("framework", b.framework)):
        got = ini[section].get(key, "").strip()
        if got != want:
            problems.append(f"[{section}] {key} = {got!r}, the board data says {want!r}")
    framework = ini[section].get("framework", "").strip()
    if framework not in FRAMEWORKS.get(ini[section].get("platform", "").strip(), ()):
        problems.append(f"[{section}] framework {framework!r} does not belong to its platform")
    platform_json = root / PLATFORM_DIR / "platform.json"
    try:
        platform_name = json.loads(platform_json.read_text())["name"]
    except (OSError, ValueError, KeyError):
        return problems + [f"{platform_json} is missing or broken"]
    for q in QEMU_ENVS:
        sec = f"env:{q.env}"
        if sec not in ini:
            problems.append(f"platformio.ini has no [{sec}]")
            continue
        board_id = ini[sec].get("board", "").strip()
        if not (root / PLATFORM_DIR / "boards" / f"{board_id}.json").is_file():
            problems.append(f"[{sec}] board {board_id!r} is not a board of {platform_name}")
        if ini[sec].get("extends", "").strip() != "qemu":
            problems.append(f"[{sec}] does not extend [qemu]")
    if ini.get("qemu", "platform", fallback="") != f"symlink://${{PROJECT_DIR}}/{PLATFORM_DIR}":
        problems.append("[qemu] platform does not point at the project's local platform")
    return problems
