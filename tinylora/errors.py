"""Every exception tinylora raises. Each message says what is wrong and how to fix it.

All sit under :class:`TinyLoRAError`, so ``except tinylora.TinyLoRAError`` catches anything the
library raises on purpose. Each also keeps the built-in base it had before (``ValueError`` for bad
input, ``RuntimeError`` for a failed tool), so older ``except ValueError`` callers still work.
"""


class TinyLoRAError(Exception):
    """The base class of every error tinylora raises."""


class InputError(TinyLoRAError, ValueError):
    """An argument or data value the function cannot use (shape, range, unknown name)."""


class ModelError(TinyLoRAError, ValueError):
    """A .tflite file that tinylora cannot read or does not support."""


class AdapterError(ModelError):
    """An adapter file (.tla) that is damaged, of another format, or for another model or config."""


class FlatBufferError(TinyLoRAError, ValueError):
    """The bytes are not a well-formed FlatBuffer (out-of-range offset or length)."""


class ConfigError(TinyLoRAError, ValueError):
    """A LoRA or trainer setting that cannot work with this model."""


class BudgetError(TinyLoRAError, ValueError):
    """A training step that does not fit the RAM budget; ``plan`` is the plan that did not fit."""

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class CheckpointError(TinyLoRAError, ValueError):
    """A checkpoint that is damaged, torn, foreign (another model or config) or missing."""


class BoardError(TinyLoRAError, ValueError):
    """An unknown board name or a malformed board file."""


class ProjectError(TinyLoRAError, ValueError):
    """Writing the project would lose a user's changes, or a name does not check out."""


class EmulationError(TinyLoRAError, RuntimeError):
    """A build failed, a program timed out, or its output broke the protocol."""


class PioError(TinyLoRAError, RuntimeError):
    """PlatformIO is missing, a command failed or timed out; the message holds its output."""


class ScheduleError(TinyLoRAError, RuntimeError):
    """The training schedule broke its own invariant (a bug in tinylora, please report it)."""


class ResourceError(TinyLoRAError, FileNotFoundError):
    """A file the package ships (model, data, templates) is missing from the installation."""


class DeviceError(TinyLoRAError, RuntimeError):
    """A device (tinylora push / pull) refused a command or did not answer."""


class MissingDependencyError(TinyLoRAError, ImportError):
    """An optional package a feature needs is not installed; the message names the pip extra."""


class FleetError(TinyLoRAError, RuntimeError):
    """Fleet learning could not run: a process failed or a run timed out."""
