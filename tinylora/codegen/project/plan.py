"""Deciding a whole project (:func:`plan_project`): board, model, LoRA configuration, arena
plan checked against the board's budget, embedded samples, every file's bytes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tinylora import datasets, load_tflite, tasks
from tinylora.codegen.project.common import _REGION_FILES, FRAMEWORKS, GEN_LR, Project, _argmax_first, _storage_name
from tinylora.codegen.project.files import _render_files
from tinylora.codegen.project.flash import project_flash
from tinylora.codegen.project.kernels import project_backend
from tinylora.codegen.project.model_code import ModelCodeFactory, model_code
from tinylora.codegen.project.regions import _region_names
from tinylora.codegen.project.simulate import simulate_app
from tinylora.errors import BudgetError, ConfigError, InputError, ProjectError
from tinylora.examples import example_model
from tinylora.formats.adapter import Adapter
from tinylora.planning import autorank
from tinylora.planning.arena import checked_plan
from tinylora.planning.boards import Board, load_board
from tinylora.ref.dag import require_c_input
from tinylora.ref.trainer import LoRAConfig, Trainer

# ---------------------------------------------------------------------------------- samples

def _check_labels(data: str, x: np.ndarray, y: np.ndarray) -> None:
    """One class number per sample in ``--data`` (not one-hot rows, not fewer or more)."""
    if y.ndim != 1:
        raise InputError(f"--data {data}: y has shape {y.shape}; tinylora gen needs one class "
                         "number per sample, shape (N,) (one-hot rows: y.argmax(axis=1))")
    if x.ndim == 0 or len(x) != len(y):
        raise InputError(f"--data {data}: x has {len(x) if x.ndim else 0} samples but y has "
                         f"{len(y)} labels: give exactly one label per sample")


def _default_samples(model, model_path: str | None, data: str | None, count: int):
    """(int8 samples, labels, description) embedded in the application."""
    if data is not None:
        x, y, _, _ = datasets.load_npz(data, model)
        _check_labels(data, np.asarray(x), np.asarray(y))
        x, _ = model._check_input(np.asarray(x)[:count])
        return x.astype(np.int8), np.asarray(y[:count]).astype(np.int64), f"the first {len(x)} of {Path(data).name}"
    if model_path is None:
        t = tasks.task("sensor", 0)
        x = model.quantize(t["x_train"][:count])
        return (x.astype(np.int8), t["y_train"][:count].astype(np.int64),
                f"{len(x)} digits of the bundled 'sensor' task ({t['description']})")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (count,) + tuple(model.input_shape)).astype(np.int8)
    y = _argmax_first(np.asarray(model.forward(x)).reshape(count, -1))
    return x, y.astype(np.int64), (f"{count} random inputs labelled with the model's own "
                                   "predictions (give --data for real samples)")


# ---------------------------------------------------------------------------------- planning

def _initial_adapter(path: str | None, model, auto_rank: bool) -> Adapter | None:
    """gen --adapter: the file read and checked against the model (AdapterError names the
    problem); a masters file only (the device trains it on)."""
    if path is None:
        return None
    if auto_rank:
        raise InputError("--adapter brings its own ranks: leave out --auto-rank")
    loaded = Adapter.load(path).check(model)
    if loaded.form != "masters":
        raise InputError(f"{path} is a deploy-form adapter (int8, inference only): gen --adapter "
                         "needs the masters file (form 1), which the device trains on")
    return loaded


def plan_project(board: str | Board, model_path: str | None = None, rank: int | None = None,
                 auto_rank: bool = False, data: str | None = None, samples: int = 32,
                 epochs: int = 3, command: str | None = None,
                 model_code_factory: ModelCodeFactory | None = None,
                 lr: float = GEN_LR, backend: str | None = None, adapter: str | None = None,
                 loss: str | None = None) -> Project:
    """Decide the whole project for ``board`` (nothing is written); ``backend``: the frozen
    kernels (default: the board's, see codegen/project/kernels.py). ``adapter``: a format-2
    masters file the device starts from (its config, scales and masters; checked against the
    model first) and keeps in adapter slot 0.

    Raises :class:`~tinylora.errors.BudgetError` if the training step's arena does not fit
    the board's arena budget, :class:`~tinylora.planning.boards.BoardError` for an unknown board.
    """

    b = board if isinstance(board, Board) else load_board(board)
    if b.platform not in FRAMEWORKS or b.framework not in FRAMEWORKS[b.platform]:
        raise ProjectError(f"board {b.name}: platform {b.platform!r} / framework {b.framework!r} "
                           f"is not one tinylora generates projects for ({FRAMEWORKS})")
    if samples < 1 or samples > 4096:
        raise InputError("samples must be in [1, 4096]")
    if epochs < 1 or epochs > 1000:
        raise InputError("epochs must be in [1, 1000]")
    path = model_path if model_path is not None else str(example_model())
    model = load_tflite(path)
    require_c_input(model)   # before samples are drawn in the model's input type
    x, y, samples_note = _default_samples(model, model_path, data, samples)

    # The plan is checked against the board's budget before anything else happens.
    loaded = _initial_adapter(adapter, model, auto_rank)
    if loaded is not None:
        config, recompute = None, "none"
        config_text = f"the adapter {Path(adapter).name}: ranks {loaded.config().rank}"
    elif auto_rank:
        result = autorank.auto_rank(model, budget=b.arena_budget, calibration=x[:32])
        config, recompute = result.config, result.recompute
        config_text = f"auto-rank for {b.name}: {result.config.rank}, recompute {recompute}"
    else:
        config, recompute = LoRAConfig(rank=rank, loss=loss), "none"
        config_text = (f"rank {rank}" if rank is not None else "default ranks (3, lower on small layers)") \
            + " on every FULLY_CONNECTED layer"
    if not 0 < lr < 1:
        raise InputError("lr must be in (0, 1)")
    trainer = Trainer(model, config, lr=lr, recompute=recompute, calibration=x[:64], adapter=loaded)
    if trainer.loss != "xent":   # after Trainer: it refuses to guess a loss
        raise ConfigError(f"gen makes classifier projects (loss 'xent'): the generated app's "
                          f"samples, protocol and tests use class labels. The {trainer.loss!r} "
                          "training step itself is C (tinylora verify --loss mse); train this "
                          "model in numpy (tinylora train --loss mse) or with that step")
    trainer.require_classes()
    classes = int(np.prod(model.output_shape))
    if np.any(y < 0) or np.any(y >= classes) or np.any(y > 255):
        raise InputError(f"labels must be class numbers in [0, {min(classes, 256)})")
    if loaded is not None:   # the device counts its own steps from 0 (boot training, checkpoints)
        trainer.step_count = 0
    # BudgetError when it does not fit (a Board given as data: its own budget); the frozen
    # kernels' scratch is planned in the arena like every other buffer
    backend = project_backend(b, backend)
    plan = checked_plan(trainer, board=b.name, backend=backend) if not isinstance(board, Board) \
        else checked_plan(trainer, budget=b.arena_budget, backend=backend)

    factory = model_code_factory or model_code
    extra = {"initial_adapter": loaded.to_bytes("masters")} if loaded is not None else {}
    code = factory(model, trainer, x, y, command=command, plan=plan, backend=backend, **extra)
    arena = max(plan.total_bytes, code.arena_bytes)
    arena = (arena + 7) // 8 * 8
    if arena > b.arena_budget:
        raise BudgetError(f"the model code needs an arena of {arena:,} B but {b.name}'s budget is "
                          f"{b.arena_budget:,} B: choose a smaller model or a larger board",
                          plan=plan)

    if code.checkpoint_bytes:
        storage = b.storage or {}
        unit = int(storage.get("erase_unit", 0) or 0)
        slot = -(-code.checkpoint_bytes // unit) * unit if unit else 0
        if not unit or 2 * slot > int(storage.get("size", 0)):
            raise BudgetError(f"a checkpoint of {code.checkpoint_bytes:,} B needs two slots of "
                              f"{slot:,} B (whole {unit:,} B erase units), more than {b.name}'s "
                              f"checkpoint storage of {int(storage.get('size', 0)):,} B: "
                              "choose a smaller rank or model", plan=plan)
    # BudgetError with the breakdown when code + constants exceed the board's program region
    flash = project_flash(b, trainer, x, y, code, plan)

    name = Path(path).name if model_path is not None else f"bundled {Path(path).name}"
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    every = max(1, len(x))
    project = Project(board=b, model_name=f"{name} (sha256 {digest})", config_text=config_text,
                      arena_bytes=arena, training_arena_bytes=plan.total_bytes,
                      budget=b.arena_budget, plan_report=plan.report(), samples=len(x), code=code,
                      epochs=epochs, checkpoint_every=every, lr=trainer.lr, trainer=trainer,
                      flash=flash, backend=backend,
                      kernel_scratch=max((b.size for b in plan.buffers
                                          if b.what.startswith("kernel scratch")), default=0))
    project.expected_output = simulate_app(trainer, x, y, epochs, every, code.checkpoint_bytes,
                                           _storage_name(b), can_train=code.can_train,
                                           model=model)
    project.files = _render_files(project, model, x, y, samples_note, epochs, command)
    project.regions = {p: tuple(_region_names(t.decode())) for p, t in project.files.items()
                       if p in _REGION_FILES}
    return project
