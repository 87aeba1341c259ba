"""tinylora: train LoRA adapters on microcontrollers, bit-exactly.

A frozen int8 base model (from a .tflite file) is read into a :class:`Model`
whose forward pass equals TensorFlow Lite Micro's int8 kernels bit for bit.
"""
from .errors import ModelError
from .model import Model, load_tflite
from .train import Adapter, ConfigError, LoRAConfig, Trainer

__version__ = "0.1.0"

__all__ = ["Adapter", "ConfigError", "LoRAConfig", "Model", "ModelError", "Trainer",
           "load_tflite", "example_model", "__version__"]


def example_model():
    """Path of the bundled digits CNN (.tflite, full int8)."""
    from .examples import example_model as _example_model
    return _example_model()
