"""`tinylora gen` loses nothing: it never reads, writes or deletes outside --out (whatever
the manifest or a symbolic link says), a write failing midway leaves a project the next run
finishes, and bad inputs (mismatched or one-hot labels, non-finite data, --out a file, a
folder it cannot write) are one clear line and exit 2, never a traceback."""
import hashlib
import json
import os
import pathlib

import numpy as np
import pytest

from tinylora.cli import main
from tinylora.codegen import project as gen
from tinylora.codegen.project import disk

BOARD = "nucleo_f411re"


@pytest.fixture(scope="module")
def planned():
    """The same board planned twice, rank 3 and rank 2 (regeneration changes files)."""
    return gen.plan_project(BOARD, rank=3), gen.plan_project(BOARD, rank=2)


def _tree(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and not f.is_symlink()}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add_to_manifest(out: pathlib.Path, rel: str, digest: str) -> None:
    path = out / gen.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"][rel] = digest
    path.write_text(json.dumps(manifest))


# ------------------------------------------------------------------ never outside --out

@pytest.mark.parametrize("how", ["parent", "absolute", "dot-dot inside", "backslash"])
@pytest.mark.parametrize("force", [False, True])
def test_a_crafted_manifest_cannot_delete_outside_the_project(planned, tmp_path, how, force):
    p3, p2 = planned
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "p"
    gen.write_project(p3, out)
    rel = {"parent": "../victim.txt", "absolute": str(victim),
           "dot-dot inside": "src/../../victim.txt", "backslash": "..\\victim.txt"}[how]
    _add_to_manifest(out, rel, _sha(b"precious\n"))   # a digest that matches the victim
    before = _tree(out)
    with pytest.raises(gen.ProjectError) as e:
        gen.write_project(p2, out, force=force)
    msg = str(e.value)
    assert "damaged" in msg and repr(rel) in msg and "mv " in msg
    assert "--force" not in msg and "delete" not in msg   # neither helps, and USER CODE would go
    assert victim.read_bytes() == b"precious\n"
    assert _tree(out) == before

    # what the message says to do works: move the manifest aside and regenerate
    (out / gen.MANIFEST).rename(tmp_path / "manifest.json.bak")
    gen.write_project(p3, out)
    assert victim.read_bytes() == b"precious\n"


@pytest.mark.parametrize("force", [False, True])
def test_a_symlinked_generated_file_is_not_followed_out(planned, tmp_path, force):
    p3, p2 = planned
    outside = tmp_path / "outside.md"
    out = tmp_path / "p"
    gen.write_project(p3, out)
    outside.write_bytes((out / "README.md").read_bytes())   # same bytes: looks generated
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(outside)
    with pytest.raises(gen.ProjectError, match="README.md.*leads outside the project"):
        gen.write_project(p2, out, force=force)
    assert outside.read_bytes() == p3.files["README.md"]


def test_a_symlinked_folder_is_not_followed_out(planned, tmp_path):
    p3, _ = planned
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "p"
    out.mkdir()
    (out / "lib").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(gen.ProjectError, match="leads outside the project"):
        gen.write_project(p3, out, force=True)
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_inside_the_project_is_fine(planned, tmp_path):
    """--out itself may be a link, and links that stay inside are followed as before."""
    p3, _ = planned
    real = tmp_path / "real"
    gen.write_project(p3, real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    report = gen.write_project(p3, link)
    assert report.written == [] and len(report.unchanged) == len(p3.files)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"files": 3}',
                                  '{"files": {"src/main.c": "abc"}}'])
def test_a_damaged_manifest_says_what_to_do(planned, tmp_path, text, capsys):
    p3, _ = planned
    out = tmp_path / "p"
    gen.write_project(p3, out)
    (out / gen.MANIFEST).write_text(text)
    for force in (False, True):
        with pytest.raises(gen.ProjectError, match="is damaged") as e:
            gen.write_project(p3, out, force=force)
        assert "--force" not in str(e.value) and "delete" not in str(e.value)
    # on the command line: one line, exit 2
    assert main(["gen", "--board", BOARD, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylora: error: ") and err.count("\n") == 1 and "is damaged" in err


def test_plain_relative_paths():
    good = ["src/main.c", "lib/tinylora/src/tl_trainer.c", "platformio.ini"]
    bad = ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "C:/x", "a\\b",
           ".tinylora/manifest.json", "a\0b", 3, None]
    assert all(disk.plain_relative(r) for r in good)
    assert not any(disk.plain_relative(r) for r in bad)


# ------------------------------------------------------------------ atomic, or resumable

def _failing_after(n: int, real):
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)
    return fake


def test_a_write_failing_while_preparing_changes_nothing(planned, tmp_path, monkeypatch):
    """The disk fills up after a few files: the project is as before, and the same command
    then succeeds (it used to leave half a generation that gen called edited)."""
    p3, p2 = planned
    out = tmp_path / "p"
    gen.write_project(p3, out)
    before = _tree(out)
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_bytes", _failing_after(2, pathlib.Path.write_bytes))
        with pytest.raises(gen.ProjectError, match="No space left on device.*Nothing was changed"):
            gen.write_project(p2, out)
    assert _tree(out) == before
    gen.write_project(p2, out)
    fresh = tmp_path / "fresh"
    gen.write_project(p2, fresh)
    assert _tree(out) == _tree(fresh)


def _moves(planned, tmp_path, monkeypatch) -> int:
    """How many os.replace calls rewriting a rank-3 project as rank 2 makes: the journal, one
    per changed file, then the manifest."""
    p3, p2 = planned
    out, calls, real = tmp_path / "count", [], os.replace
    gen.write_project(p3, out)
    with monkeypatch.context() as m:
        m.setattr(disk.os, "replace", lambda a, b: (calls.append(b), real(a, b))[1])
        gen.write_project(p2, out)
    return len(calls)


@pytest.mark.parametrize("when", ["journal", "first file", "third file", "manifest"])
def test_a_move_failing_midway_is_finished_by_the_next_run(planned, tmp_path, monkeypatch, when):
    p3, p2 = planned
    moves = _moves(planned, tmp_path, monkeypatch)
    assert moves >= 5   # journal, >= 3 changed files, manifest
    after = {"journal": 0, "first file": 1, "third file": 3, "manifest": moves - 1}[when]
    out = tmp_path / "p"
    gen.write_project(p3, out)
    with monkeypatch.context() as m:
        m.setattr(disk.os, "replace", _failing_after(after, os.replace))
        with pytest.raises(gen.ProjectError, match="stopped midway.*same tinylora gen command"):
            gen.write_project(p2, out)
    assert (out / disk.PENDING).is_file() == (after > 0)   # the journal goes first
    report = gen.write_project(p2, out)   # no "changed outside its USER CODE regions"
    assert bool(report.written) == (when != "manifest") and not (out / disk.PENDING).exists()
    fresh = tmp_path / "fresh"
    gen.write_project(p2, fresh)
    assert _tree(out) == _tree(fresh)
    assert sorted(p.name for p in (out / ".tinylora").iterdir()) == ["manifest.json"]


# ------------------------------------------------------------------ bad inputs: one line, exit 2

def _gen_error(capsys, *args) -> str:
    assert main(["gen", "--board", BOARD, *args]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("tinylora: error: ") and err.count("\n") == 1, err
    return err


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return str(path)


def test_gen_data_with_mismatched_lengths_is_refused(tmp_path, capsys):
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)
    y = np.arange(10) % 10
    err = _gen_error(capsys, "--data", _npz(tmp_path, x=x, y=y), "--out", str(tmp_path / "o"))
    assert "10 labels for 40 samples" in err
    assert not (tmp_path / "o").exists()


def test_gen_data_with_one_hot_labels_is_refused(tmp_path, capsys):
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)
    y = np.eye(10)[np.arange(40) % 10]
    err = _gen_error(capsys, "--data", _npz(tmp_path, x=x, y=y), "--out", str(tmp_path / "o"))
    assert "(40, 10)" in err and "argmax" in err


def test_gen_data_with_nan_names_the_index(tmp_path, capsys):
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)
    x[7, 2, 3, 0] = np.nan
    y = np.arange(40) % 10
    err = _gen_error(capsys, "--data", _npz(tmp_path, x=x, y=y), "--out", str(tmp_path / "o"))
    assert "(7, 2, 3, 0)" in err and "finite" in err


def test_gen_out_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("mine\n")
    err = _gen_error(capsys, "--out", str(f))
    assert "is a file, not a folder" in err and f.read_text() == "mine\n"


def test_gen_into_a_folder_it_cannot_write(tmp_path, capsys, monkeypatch):
    """A read-only folder (chmod does not stop root, so mkdir is made to fail as it would)."""
    out = tmp_path / "ro"
    out.mkdir()
    real = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if out in (self, *self.parents):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    err = _gen_error(capsys, "--out", str(out))
    assert "Permission denied" in err and "Nothing was changed" in err
    assert list(out.iterdir()) == []


def test_pio_setup_rejects_a_file_as_core(tmp_path, capsys):
    f = tmp_path / "core"
    f.write_text("")
    assert main(["pio-setup", "--core", str(f)]) == 2
    assert capsys.readouterr().err.startswith("tinylora: error: --core")


def test_the_manifest_folder_as_a_link_out_is_refused(planned, tmp_path):
    p3, _ = planned
    out = tmp_path / "p"
    gen.write_project(p3, out)
    elsewhere = tmp_path / "elsewhere"
    (out / ".tinylora").rename(elsewhere)
    (out / ".tinylora").symlink_to(elsewhere, target_is_directory=True)
    before = _tree(elsewhere)
    with pytest.raises(gen.ProjectError, match="leads outside the project"):
        gen.write_project(p3, out, force=True)
    assert _tree(elsewhere) == before


def test_a_file_where_a_folder_belongs_is_a_conflict(planned, tmp_path):
    """Found before anything is written (it used to fail half-way with an OSError)."""
    p3, _ = planned
    out = tmp_path / "p"
    out.mkdir()
    (out / "lib").write_text("mine\n")
    with pytest.raises(gen.ProjectError, match="lib is a file, where a folder should be") as e:
        gen.write_project(p3, out, force=True)
    assert "--force" not in str(e.value)   # it would fail the same way
    assert sorted(p.name for p in out.iterdir()) == ["lib"]


def test_staging_left_by_a_killed_generation_is_cleaned(planned, tmp_path):
    p3, p2 = planned
    out = tmp_path / "p"
    gen.write_project(p3, out)
    (out / ".tinylora" / "staging-killed").mkdir()
    (out / ".tinylora" / "staging-killed" / "0").write_bytes(b"half")
    gen.write_project(p2, out)
    assert sorted(p.name for p in (out / ".tinylora").iterdir()) == ["manifest.json"]


def test_pio_setup_has_help_with_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pio-setup", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "PLATFORMIO_CORE_DIR" in out and "tool-scons" in out


def test_pio_setup_without_pip_access_says_what_to_do(tmp_path, capsys, monkeypatch):
    """pip cannot reach PyPI: exit 2, the advice, and no half-installed package left."""
    import subprocess

    from tinylora import pio

    def no_pypi(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")
    monkeypatch.setattr(pio.subprocess, "run", no_pypi)
    assert main(["pio-setup", "--core", str(tmp_path / "core")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylora: error: preparing PlatformIO core") and "PIP_FIND_LINKS" in err
    assert not (tmp_path / "core" / "packages" / "tool-scons").exists()
