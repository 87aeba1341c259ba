"""tinylora: train LoRA adapters on microcontrollers, bit-exactly.

A frozen int8 base model (from a .tflite file) is read into a :class:`Model`
whose forward pass equals TensorFlow Lite Micro's int8 kernels bit for bit.
"""
from tinylora.errors import BudgetError, CheckpointError, ConfigError, ModelError
from tinylora.ref.model import Model, load_tflite
from tinylora.plan.arena import ArenaPlan
from tinylora.ref.trainer import Adapter, LoRAConfig, Trainer

__version__ = "0.1.0"

__all__ = ["Adapter", "ArenaPlan", "BudgetError", "CheckpointError", "ConfigError", "LoRAConfig",
           "Model", "ModelError", "Trainer", "load_tflite", "example_model", "plan", "__version__"]


def plan(model, config=None, budget=None, board=None, **trainer_options):
    """The static arena plan of a training step of `model` with `config` (see Trainer.plan)."""
    return Trainer(model, config, **trainer_options).plan(budget=budget, board=board)


def example_model():
    """Path of the bundled digits CNN (.tflite, full int8)."""
    from tinylora.examples import example_model as _example_model
    return _example_model()
