"""tinylora: train LoRA adapters on microcontrollers, bit-exactly.

A frozen int8 base model (from a .tflite file) is read into a :class:`Model`
whose forward pass equals TensorFlow Lite Micro's int8 kernels bit for bit.
"""
from tinylora.errors import (
    AdapterError,
    BoardError,
    BudgetError,
    CheckpointError,
    ConfigError,
    EmulationError,
    InputError,
    ModelError,
    ProjectError,
    TinyLoRAError,
)
from tinylora.examples import example_model
from tinylora.formats.adapter import Adapter
from tinylora.merge import merge
from tinylora.planning.arena import ArenaPlan, checked_plan
from tinylora.ref.model import Model, load_tflite
from tinylora.ref.trainer import LoRAConfig, Trainer
from tinylora.version import __version__  # first: codegen reads it

__all__ = ["Adapter", "AdapterError", "ArenaPlan", "BoardError", "BudgetError", "CheckpointError", "ConfigError",
           "EmulationError", "InputError", "LoRAConfig", "Model", "ModelError", "ProjectError", "TinyLoRAError",
           "Trainer", "load_tflite", "example_model", "merge", "plan", "__version__"]


def plan(model_or_trainer, config=None, budget=None, board=None, **trainer_options):
    """The static arena plan of one training step: of a :class:`Trainer`, or of `model` with
    `config` and trainer options. BudgetError if it exceeds `budget` (default 512 KB) or the
    named `board`'s arena budget (see :func:`tinylora.planning.arena.checked_plan`)."""
    trainer = model_or_trainer
    if not isinstance(trainer, Trainer):
        trainer = Trainer(model_or_trainer, config, **trainer_options)
    elif config is not None or trainer_options:
        raise ConfigError("plan(trainer, ...) takes no config or trainer options: they belong to "
                          "the Trainer; pass a Model to plan another configuration")
    return checked_plan(trainer, budget=budget, board=board)

